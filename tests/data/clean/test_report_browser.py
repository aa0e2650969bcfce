"""The clean report in a real browser: headless Chromium (playwright) opens ``index.html``
from ``file://`` and checks what a person would see. ``make test`` installs Debian's
``chromium`` when it is absent; the test skips, saying why, only when neither it nor
playwright is there."""

from __future__ import annotations

from pathlib import Path

from fmlkit.data.clean.report import write_clean_report
from tests.browser import opened
from tests.conftest import SynthTree
from tests.data.clean.test_report import ODD, SCRIPT, contract_frames


def test_clean_report_renders_in_chromium(tmp_path: Path, synth_tree: SynthTree) -> None:
    frames = contract_frames(tmp_path / "data", synth_tree)
    write_clean_report(*frames, root=tmp_path / "data", out_dir=tmp_path / "report")
    with opened(tmp_path / "report" / "index.html") as seen:
        page = seen.page
        widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
        captions = page.eval_on_selector_all("figure", "els => els.map(e => e.innerText)")
        markers = page.eval_on_selector_all(
            "svg .marker text", "els => els.map(e => e.textContent)"
        )
        text = page.inner_text("body")
        scripts = page.eval_on_selector_all("script", "els => els.map(e => e.textContent)")
        classes = "table.sortable >> nth=-1"
        page.click(f"{classes} >> th:nth-child(4)")  # sort the classes by mean cosine
        order = page.eval_on_selector_all(
            f"{classes} >> tbody tr", "rows => rows.map(r => r.cells[0].textContent)"
        )
    errors, dialogs = seen.errors, seen.dialogs
    assert errors == [] and dialogs == []
    assert len(widths) >= 20 and all(w > 0 for w in widths)  # every <img> loaded
    # captions hold the file names, decisions and suggested label
    assert any("c1/2.jpg" in c and "suggested: c5" in c and "c5/0.jpg" in c for c in captions)
    assert any("c5/1.jpg" in c and "c5/0.jpg" in c and "cosine 0.970" in c for c in captions)
    assert any("outside the dataset folder" in c for c in captions)
    assert any("cannot be read" in c and "c5/2.jpg" in c for c in captions)  # corrupt
    assert any(ODD in c and "DROP" in c.upper() for c in captions)
    assert "drop below 0.3" in markers and "merge above 0.6" in markers
    assert SCRIPT in text  # shown as text, not run
    assert not any("alert" in s for s in scripts)
    # ascending: the singleton's "–" (no mean) first, then the script label's 0.100, …
    assert order[:3] == ["single", SCRIPT, "c4"]
