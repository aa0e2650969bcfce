"""The filter report in a real browser: headless Chromium (playwright) opens ``index.html``
from ``file://`` and checks what a person would see. ``make test`` installs Debian's
``chromium`` when it is absent; the test skips, saying why, only when neither it nor
playwright is there."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fmlkit.columns import FILE_NAME, LABEL
from tests.browser import opened
from tests.hostile.check import fmlkit, succeeded

SCRIPT_LABEL = "<script>alert(1)</script>"  # a folder cannot hold '/': a table carries it


def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    small = np.random.default_rng(seed).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(small).resize((48, 40), Image.Resampling.BICUBIC).save(path, "JPEG")


@pytest.fixture
def report(tmp_path: Path) -> Path:
    """A report over a tiny tree whose table files a copy of another label's image under a
    script-tag label (a cross-label duplicate)."""
    root = tmp_path / "data"
    for k, label in enumerate(("alice", "bob", "carol")):
        for j in range(2):
            _image(root / label / f"{j}.jpg", 10 * k + j)
    shutil.copy(root / "alice" / "0.jpg", root / "bob" / "copy of alice.jpg")
    info = tmp_path / "info.csv"
    succeeded(fmlkit("prepare", root, "-o", info, "-j", "1"))
    table = pd.read_csv(info, dtype=str, keep_default_na=False)
    # the cross-label copy's label: it shows in a figure, the summary and the table
    table.loc[table[FILE_NAME] == "bob/copy of alice.jpg", LABEL] = SCRIPT_LABEL
    table.to_csv(info, index=False)
    out = tmp_path / "report"
    args = ("--dedup", "--scope", "global", "--min-size", "0", "--report", out, "--root", root)
    succeeded(fmlkit("filter", info, "-o", tmp_path / "kept.csv", *args))
    return out / "index.html"


def test_report_renders_in_chromium(report: Path) -> None:
    with opened(report) as seen:
        page = seen.page
        widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
        captions = page.eval_on_selector_all("figure", "els => els.map(e => e.innerText)")
        text = page.inner_text("body")
        scripts = page.eval_on_selector_all("script", "els => els.map(e => e.textContent)")
        page.click("table.sortable th:nth-child(2)")  # the sorting script runs cleanly
    errors, dialogs = seen.errors, seen.dialogs
    assert errors == [] and dialogs == []
    assert widths and all(w > 0 for w in widths)
    assert any("bob/copy of alice.jpg" in c and "alice/0.jpg" in c for c in captions)
    assert SCRIPT_LABEL in text  # shown as text, not run
    assert not any("alert" in s for s in scripts)
