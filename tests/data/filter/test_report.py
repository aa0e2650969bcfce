"""The curation report of `fmlkit filter --report` (fmlkit/data/filter/report.py over the
generic page builder fmlkit/report/gallery.py): structure, escaping, caps, placeholders."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from fmlkit.columns import FILE_NAME, LABEL, PHASH, REASON
from fmlkit.data.filter import report as report_module
from fmlkit.data.filter.confirm import Confirmer
from fmlkit.data.filter.dedup import CROSS, EXACT, NEAR
from fmlkit.data.filter.filter import FilterRules, decide, filter_dataset
from fmlkit.data.filter.report import check_report_dir, write_filter_report
from fmlkit.data.formats.table import read_dataset_info
from fmlkit.errors import InputError
from fmlkit.report.gallery import THUMB
from tests.conftest import SynthTree


@pytest.fixture(scope="module")
def page(synth_tree: SynthTree, synth_scan: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the reference dataset, filtered with --dedup --scope global."""
    out = tmp_path_factory.mktemp("report") / "report"
    filter_dataset(
        synth_scan,
        out.parent / "kept.csv",
        FilterRules(dedup=True, scope="global"),
        report_dir=out,
        root=synth_tree.root,
    )
    return out


def _truth(synth_tree: SynthTree, kind: str) -> list[tuple[str, str]]:
    return [(t[FILE_NAME], t["source"]) for t in synth_tree.truth if t["kind"] == kind]


def test_report_summary_counts_and_one_figure_per_removed_duplicate(
    synth_tree: SynthTree, synth_scan: Path, page: Path
) -> None:
    text = (page / "index.html").read_text(encoding="utf-8")
    df = read_dataset_info(synth_scan)
    confirmer = Confirmer(synth_tree.root)
    decision = decide(df, FilterRules(dedup=True, scope="global"), confirmer=confirmer)
    kept = int((decision[REASON] == "").sum())
    assert f"<b>{len(df):,}</b><span>rows in</span>" in text
    assert f"<b>{kept:,}</b><span>kept</span>" in text
    for reason, n in decision[REASON][decision[REASON] != ""].value_counts().items():
        assert f"<b>{n:,}</b><span>removed: {html.escape(reason)}</span>" in text
    # every removed row is a figure (the reference set is small: nothing is capped)
    assert text.count("<figure>") == int((decision[REASON] != "").sum())
    for name, source in _truth(synth_tree, "exact_duplicate"):
        # kept and removed tiles, both file names, in one figure with the full reason
        figure = next(f for f in text.split("<figure>") if html.escape(name) in f)
        assert html.escape(source) in figure and f"<span>{EXACT}</span>" in figure
        assert "pHash distance 0 bits to the kept image" in figure
        assert '<div class="tile kept">' in figure and '<div class="tile removed">' in figure
    assert f"({NEAR})" in text and "Class sizes after filtering" in text
    assert "<svg" in text and "<table" in text and "<script" in text
    assert not list(page.glob("*.png"))  # no contact sheets any more


def test_report_groups_cross_label_duplicates_by_label_pair(
    synth_tree: SynthTree, page: Path
) -> None:
    text = (page / "index.html").read_text(encoding="utf-8")
    labels = {t[FILE_NAME]: t[LABEL] for t in synth_tree.truth}
    cross = _truth(synth_tree, "cross_label_duplicate")
    assert cross
    pairs = {" ↔ ".join(sorted((labels[f], labels[s]))) for f, s in cross}
    section = text.split(f"({CROSS}) <span", 1)[1].split("</section>", 1)[0]
    for pair in pairs:
        assert f"<h3>{html.escape(pair)} <span" in section
    assert f"{len(pairs):,} label pairs" in section


def test_report_thumbnails_exist_at_their_natural_size(page: Path) -> None:
    text = (page / "index.html").read_text(encoding="utf-8")
    images = re.findall(r'<img src="(thumbs/\d{6}\.jpg)" width="(\d+)" height="(\d+)"', text)
    assert images and len(images) == text.count("<img ")
    for src, width, height in images:
        with Image.open(page / src) as img:
            assert img.size == (int(width), int(height))
            assert max(img.size) == THUMB  # 64 px images scaled up to fill the tile
    assert "http://" not in text and "https://" not in text  # nothing fetched: works offline
    assert "<link" not in text and "<script src" not in text


def _fake(n_labels: int, per_label: int) -> pd.DataFrame:
    """A table with no images on disk: every row of a label shares one hash (duplicates)."""
    labels = [f"l{k:04d}" for k in range(n_labels) for _ in range(per_label)]
    names = [f"{label}/{j}.jpg" for k, label in enumerate(labels) for j in [k]]
    hashes = [f"{k // per_label:016x}" for k in range(len(labels))]
    return pd.DataFrame({FILE_NAME: names, LABEL: labels, PHASH: hashes})


def test_report_caps_sections_and_the_label_table_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report_module, "FIGURES", 5)
    monkeypatch.setattr(report_module, "LABEL_ROWS", 7)
    df = _fake(30, 3)
    decision = decide(df, FilterRules(dedup=True, min_size=None, confirm="none"))
    (tmp_path / "data").mkdir()
    write_filter_report(df, decision, tmp_path / "r", root=tmp_path / "data")
    text = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert text.count("<figure>") == 5
    assert "5 of 60 shown" in text
    assert "30 labels; the 7 with most removed rows are listed" in text
    assert text.count("<tr>") == 1 + 7  # heading row + 7 labels
    # no image on disk: placeholders naming why, and no <img> at all
    assert "<img " not in text and text.count('class="ph"') == 10
    assert "file missing" in text


def test_report_escapes_labels_names_and_reasons(tmp_path: Path) -> None:
    evil = '<script>alert("x")</script>'
    df = pd.DataFrame(
        {
            FILE_NAME: [f"{evil}/a.jpg", f"{evil}/b\"'.jpg", "plain/c.jpg"],
            LABEL: [evil, evil, "plain"],
            PHASH: ["0" * 16, "0" * 16, "0" * 16],
            "error": ["", "", evil],
        }
    )
    decision = decide(df, FilterRules(dedup=True, scope="global", min_size=None, confirm="none"))
    (tmp_path / "data").mkdir()
    write_filter_report(df, decision, tmp_path / "r", root=tmp_path / "data")
    text = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert "<script>alert" not in text and "b\"'.jpg" not in text
    assert html.escape(f"{evil}/b\"'.jpg") in text
    assert html.escape(f"error:{evil}") in text
    assert text.count("<script>") == 1  # the page's own sorting script only


def test_check_report_dir_accepts_an_earlier_report_with_thumbs_only(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    report = tmp_path / "r"
    rules = FilterRules(dedup=True, min_size=None, confirm="none")
    write_filter_report(_fake(2, 2), decide(_fake(2, 2), rules), report, root=tmp_path / "data")
    (report / "thumbs").mkdir(exist_ok=True)
    (report / "thumbs" / "000000.jpg").write_bytes(b"")
    check_report_dir(report, root=tmp_path / "data")  # an earlier report: accepted
    (report / "thumbs" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not an earlier filter report"):
        check_report_dir(report, root=tmp_path / "data")


def test_report_never_reads_an_image_outside_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "secret.png"
    Image.new("RGB", (40, 40), "red").save(outside)
    df = pd.DataFrame(
        {
            FILE_NAME: ["a/1.png", "../secret.png", str(outside)],
            LABEL: ["a", "a", "a"],
            PHASH: ["0" * 16] * 3,
        }
    )
    (tmp_path / "data" / "a").mkdir(parents=True)
    Image.new("RGB", (40, 40), "blue").save(tmp_path / "data" / "a" / "1.png")
    decision = decide(df, FilterRules(dedup=True, min_size=None, confirm="none"))
    write_filter_report(df, decision, tmp_path / "r", root=tmp_path / "data")
    text = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert text.count("<img ") == 2  # the kept a/1.png, once per figure; the rest are grey
    assert len(list((tmp_path / "r" / "thumbs").iterdir())) == 1
    assert html.escape("../secret.png") in text and text.count("no image") == 2
