"""The HTML report of `fmlkit clean --report` (fmlkit/data/clean/report.py and
report_figures.py over the page builder fmlkit/report/): sections, captions, caps, escaping,
images it must not read, the report folder's safety, and frames as read back from the CSVs."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fmlkit.columns import (
    CLEAN_CLASS_COLUMNS,
    CLEAN_IMAGE_COLUMNS,
    CLEAN_MERGE_COLUMNS,
    FILE_NAME,
    KIND,
)
from fmlkit.data.clean import report_figures
from fmlkit.data.clean.decide import IMAGE_DECISIONS
from fmlkit.data.clean.report import check_report_dir, write_clean_report
from fmlkit.data.formats.embeddings import write_embeddings
from fmlkit.errors import InputError, SchemaError
from tests.conftest import SynthTree
from tests.hostile.check import fmlkit, nothing_complete, refused, succeeded

SCRIPT = "<script>alert(1)</script>"  # a label no folder can hold: a table carries it
ODD = "s/Zoë 0.jpg"  # a file name with an accent and a space (the script label's drop)
NAN = float("nan")
THRESHOLDS = {
    "drop_below": 0.3,
    "review_below": 0.45,
    "relabel_above": 0.45,
    "relabel_margin": 0.1,
    "merge_above": 0.6,
    "split_below": 0.45,
    "duplicate_above": 0.95,
}


class Faces:
    """`fmlkit synth` images to lay out as a test tree: ``next_to(path)`` copies the next
    clean face there; ``broken`` is a corrupt file of the same tree."""

    def __init__(self, tree: SynthTree) -> None:
        clean = [t[FILE_NAME] for t in tree.truth if t[KIND] == "clean"]
        self.faces = [tree.root / name for name in clean]
        self.broken = tree.root / next(t[FILE_NAME] for t in tree.truth if t[KIND] == "corrupt")
        self.used = 0

    def next_to(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.faces[self.used], path)
        self.used += 1


def _row(name: str, label: str, decision: str = "keep", own: float = 0.8, **more: Any) -> dict:
    row: dict[str, Any] = dict.fromkeys(CLEAN_IMAGE_COLUMNS, "")
    row.update(file_name=name, label=label, decision=decision, own_similarity=own)
    row.update(nearest_similarity=NAN, similarity=NAN, split_group=NAN, new_label=label)
    row["reason"] = f"cosine {own:.2f} to its class centroid" if decision != "keep" else ""
    row.update(more)
    return row


def contract_frames(
    root: Path, tree: SynthTree
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Images under ``root`` (synth's faces of ``tree``, copied here) and decision frames
    following the contract: a class with drops and reviews, a relabel to another class, a
    merge group of two classes, a split class, a near duplicate, an unusable row (a corrupt
    file), a script-tag label (a drop, its file name with a space and an accent), a singleton,
    a file name leading outside ``root`` and one that is missing."""
    faces = Faces(tree)
    rows = []
    for c in range(6):
        for j in range(5):
            faces.next_to(root / f"c{c}" / f"{j}.jpg")
            rows.append(_row(f"c{c}/{j}.jpg", f"c{c}", own=0.9 - 0.01 * j))
    for name in (ODD, "single/0.jpg"):
        faces.next_to(root / name)
    faces.next_to(root.parent / "outside.jpg")
    shutil.copyfile(faces.broken, root / "c5" / "2.jpg")
    by_name = {r[FILE_NAME]: r for r in rows}
    drop = "cosine 0.12 to its class centroid < 0.30 (drop)"
    review = "cosine 0.41 to its class centroid < 0.45 (review)"
    relabel = "cosine 0.71 to c5 beats 0.20 to c1 by 0.51 ≥ 0.10 (relabel)"
    by_name["c0/4.jpg"].update(decision="drop", own_similarity=0.12, new_label="", reason=drop)
    by_name["c0/3.jpg"].update(decision="review", own_similarity=0.41, reason=review)
    by_name["c1/2.jpg"].update(decision="relabel", own_similarity=0.2, new_label="c5")
    by_name["c1/2.jpg"].update(nearest_label="c5", nearest_similarity=0.71, reason=relabel)
    for j in range(5):
        by_name[f"c2/{j}.jpg"]["new_label"] = "c3"  # merged into c3
        by_name[f"c4/{j}.jpg"]["split_group"] = float(j % 2)
    copy = "cosine 0.97 to c5/0.jpg ≥ 0.95 (duplicate)"
    by_name["c5/1.jpg"].update(decision="duplicate", duplicate_of="c5/0.jpg", similarity=0.97)
    by_name["c5/1.jpg"].update(new_label="", reason=copy)
    by_name["c5/2.jpg"].update(decision="unusable", own_similarity=NAN, new_label="")
    by_name["c5/2.jpg"]["reason"] = "the embedding is a zero vector"
    rows += [
        _row("c0/missing.jpg", "c0", "drop", 0.05, new_label=""),
        _row("../outside.jpg", "c0", "review", 0.40),
        _row(ODD, SCRIPT, "drop", 0.1, new_label=""),
        _row("single/0.jpg", "single", own=NAN, reason="singleton"),
    ]
    images = pd.DataFrame(rows, columns=list(CLEAN_IMAGE_COLUMNS))
    classes = pd.DataFrame(
        [
            ("c0", 7, 0.6, 0.3, 0.05, "keep", NAN, "", ""),
            ("c1", 5, 0.7, 0.2, 0.2, "keep", NAN, "", ""),
            ("c2", 5, 0.88, 0.01, 0.86, "merge", 0, "c3", "cosine 0.83 to c3 ≥ 0.60"),
            ("c3", 5, 0.88, 0.01, 0.86, "merge", 0, "c3", "target of merge group 0"),
            ("c4", 5, 0.5, 0.1, 0.4, "split", NAN, "", "two groups of 3 and 2, cosine 0.10"),
            ("c5", 5, 0.85, 0.03, 0.8, "keep", NAN, "", ""),
            (SCRIPT, 1, 0.1, 0.0, 0.1, "keep", NAN, "", ""),
            ("single", 1, NAN, NAN, NAN, "singleton", NAN, "", "singleton"),
        ],
        columns=list(CLEAN_CLASS_COLUMNS),
    )
    merges = pd.DataFrame([("c2", "c3", 0.83, 0)], columns=list(CLEAN_MERGE_COLUMNS))
    summary = {"thresholds": THRESHOLDS, "auto": False, "truth": {"mislabel": {"recall": 0.5}}}
    return images, classes, merges, summary


@pytest.fixture
def frames(
    tmp_path: Path, synth_tree: SynthTree
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    return contract_frames(tmp_path / "data", synth_tree)


def _write(tmp_path: Path, frames: tuple, root: Path | None = None) -> str:
    out = tmp_path / "report"
    write_clean_report(*frames, root=tmp_path / "data" if root is None else root, out_dir=out)
    return (out / "index.html").read_text(encoding="utf-8")


def _section(text: str, title: str) -> str:
    """The HTML of the section whose heading starts with ``title``."""
    start = text.index(f"<h2>{html.escape(title)}")
    return text[start : text.index("</section>", start)]


def test_report_summary_and_every_section(tmp_path: Path, frames: tuple) -> None:
    text = _write(tmp_path, frames)
    cards = {"images": 34, "drop": 3, "review": 2, "relabel": 1, "duplicate": 1}
    cards |= {"unusable": 1, "classes": 8, "merge groups": 1, "split candidates": 1}
    cards |= {"singletons": 1}
    for name, count in cards.items():
        assert f"<b>{count:,}</b><span>{name}</span>" in text, name
    titles = ["Thresholds", "Scores against the truth", "Flagged images, by class"]
    titles += ["Merge candidates", "Split candidates", "Near duplicates (embedding)"]
    titles += ["Unusable embeddings", "Classes", "Mean cosine to the centroid per class"]
    for title in titles:
        assert f">{html.escape(title)}" in text, title
    assert "mislabel.recall" in text and "--drop-below" in text
    # the histograms carry the thresholds as labelled markers
    assert ">drop below 0.3</text>" in text and ">review below 0.45</text>" in text
    assert ">merge above 0.6</text>" in text and ">duplicate above 0.95</text>" in text
    assert ">relabel above 0.45</text>" in text


def test_report_flagged_class_shows_typical_images_beside_flagged(
    tmp_path: Path, frames: tuple
) -> None:
    text = _write(tmp_path, frames)
    flagged = _section(text, "Flagged images, by class")
    c0 = flagged[flagged.index("<h3>c0 ") :].split('<div class="sub">')[0]
    figures = c0.split("<figure>")[1:]
    # first the typical images (highest cosine first), then the flagged, lowest cosine first
    assert figures[0].count('<div class="tile typical">') == 3  # its 3 kept images
    assert figures[0].index("c0/0.jpg") < figures[0].index("c0/1.jpg")
    names = [re.search(r'class="line">([^<]*)</span>', f).group(1) for f in figures[1:]]
    assert names == ["c0/missing.jpg", "c0/4.jpg", "../outside.jpg", "c0/3.jpg"]
    drop = figures[2]
    assert "cosine 0.12 to its class centroid &lt; 0.30 (drop)" in drop
    assert '<div class="tile drop">' in drop and "cosine 0.120 to its class" in drop
    # the relabel: beside a typical image of the suggested class, with both similarities
    c1 = flagged[flagged.index("<h3>c1 ") :]
    relabel = next(f for f in c1.split("<figure>") if "c1/2.jpg" in f)
    assert "cosine 0.710 to c5" in relabel and "suggested: c5" in relabel
    assert '<div class="tile typical">' in relabel and "c5/0.jpg" in relabel


def test_report_merge_split_and_duplicate_figures(tmp_path: Path, frames: tuple) -> None:
    text = _write(tmp_path, frames)
    merge = _section(text, "Merge candidates")
    assert "c2 ↔ c3 0.830" in merge and "merge into c3" in merge
    assert "target of the merge" in merge and merge.count("<figure>") == 2
    split = _section(text, "Split candidates")
    groups = split.split("<figure>")[1:]
    assert len(groups) == 2 and "group 0" in groups[0] and "group 1" in groups[1]
    assert "c4/0.jpg" in groups[0] and "c4/1.jpg" in groups[1] and "c4/1.jpg" not in groups[0]
    duplicate = _section(text, "Near duplicates (embedding)")
    assert '<div class="tile kept">' in duplicate and "c5/0.jpg" in duplicate
    assert "cosine 0.970 to the kept image" in duplicate


def test_report_caps_sections_and_says_so(
    tmp_path: Path, frames: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report_figures, "CLASSES", 1)
    monkeypatch.setattr(report_figures, "PER_CLASS", 2)
    text = _write(tmp_path, frames)
    flagged = _section(text, "Flagged images, by class")
    # c0 has most flagged images (4): the one class shown, 2 of its 4; 6 flagged in all
    assert flagged.startswith('<h2>Flagged images, by class <span class="count">2 of 6 shown')
    assert '<h3>c0 <span class="count">2 of 4 shown</span></h3>' in flagged
    assert "<h3>c1 " not in flagged and "3 classes with flagged images; the 1 with" in flagged


def test_report_escapes_a_script_label(tmp_path: Path, frames: tuple) -> None:
    text = _write(tmp_path, frames)
    assert SCRIPT not in text and html.escape(SCRIPT) in text
    assert text.count("<script>") == 1  # the page's own sorting script
    assert f"<h3>{html.escape(SCRIPT)} " in _section(text, "Flagged images, by class")


def test_report_reads_no_image_outside_root_and_says_why(tmp_path: Path, frames: tuple) -> None:
    text = _write(tmp_path, frames)
    outside = next(f for f in text.split("<figure>") if "../outside.jpg" in f)
    assert "outside the dataset folder: not read" in outside and "<img" not in outside
    missing = next(f for f in text.split("<figure>") if "c0/missing.jpg" in f)
    assert "file missing" in missing
    corrupt = next(f for f in text.split("<figure>") if "c5/2.jpg" in f)
    assert "cannot be read" in corrupt and "<img" not in corrupt
    # one thumbnail per shown source image, none for the outside file
    thumbs = sorted((tmp_path / "report" / "thumbs").iterdir())
    assert len(thumbs) == len(set(re.findall(r'src="thumbs/(\d+\.jpg)"', text)))


def test_report_without_root_shows_no_image(tmp_path: Path, frames: tuple) -> None:
    out = tmp_path / "report"
    write_clean_report(*frames, root=None, out_dir=out)
    text = (out / "index.html").read_text(encoding="utf-8")
    assert "<img" not in text and "no image folder given (--root)" in text
    assert not (out / "thumbs").exists()


def test_report_of_frames_read_back_from_csv(tmp_path: Path, frames: tuple) -> None:
    """The stage may pass the frames as the CSVs read back: strings, empty cells."""
    images, classes, merges, summary = frames
    read = []
    for k, frame in enumerate((images, classes, merges)):
        frame.to_csv(tmp_path / f"{k}.csv", index=False)
        read.append(pd.read_csv(tmp_path / f"{k}.csv", dtype=str, keep_default_na=False))
    write_clean_report(*read, summary, root=tmp_path / "data", out_dir=tmp_path / "read")
    write_clean_report(
        images, classes, merges, summary, root=tmp_path / "data", out_dir=tmp_path / "frames"
    )
    text = (tmp_path / "read" / "index.html").read_text(encoding="utf-8")
    assert text == (tmp_path / "frames" / "index.html").read_text(encoding="utf-8")


def test_report_of_an_empty_table(tmp_path: Path, frames: tuple) -> None:
    images, classes, merges, _ = frames
    text = _write(tmp_path, (images.iloc[:0], classes.iloc[:0], merges.iloc[:0], {}))
    assert "<b>0</b><span>images</span>" in text
    assert "No image is flagged" in text


def test_report_refuses_frames_without_a_contract_column(tmp_path: Path, frames: tuple) -> None:
    images, classes, merges, summary = frames
    with pytest.raises(SchemaError, match="own_similarity"):
        _write(tmp_path, (images.drop(columns="own_similarity"), classes, merges, summary))
    assert not (tmp_path / "report").exists()


def test_report_folder_refusals(tmp_path: Path, frames: tuple) -> None:
    root = tmp_path / "data"

    for out, says in [
        (root, "is or holds the dataset folder"),
        (tmp_path, "is or holds the dataset folder"),
        (root / "report", "lies inside the dataset folder"),
        (tmp_path / "decisions", "is or holds the decisions folder"),
        (tmp_path / "decisions" / "r", "lies inside the decisions folder"),
    ]:
        with pytest.raises(InputError, match=says):
            check_report_dir(out, root=root, output=tmp_path / "decisions")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    (tmp_path / "file").write_text("mine")
    with pytest.raises(InputError, match=r"not an earlier report \(keep.txt"):
        write_clean_report(*frames, root=root, out_dir=tmp_path / "notes")
    with pytest.raises(InputError, match="is a file"):
        write_clean_report(*frames, root=root, out_dir=tmp_path / "file")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
    # an earlier report is replaced
    write_clean_report(*frames, root=root, out_dir=tmp_path / "report")
    write_clean_report(*frames, root=root, out_dir=tmp_path / "report")
    assert (tmp_path / "report" / "index.html").is_file()


def test_report_knows_every_image_decision() -> None:
    """The report colours and counts the decisions the stage makes: the same names."""
    assert set(report_figures.COLOURS) == set(IMAGE_DECISIONS)


def test_report_auto_thresholds_and_their_figures(tmp_path: Path, frames: tuple) -> None:
    """--auto's picks are marked and its figures tabled; numpy numbers count as numbers."""
    images, classes, merges, summary = frames
    summary = {
        **summary,
        "thresholds": {**THRESHOLDS, "merge_above": np.float32(0.6)},
        "auto": True,
        "auto_picked": ["drop_below", "merge_above"],
        "auto_figures": {"genuine": {"q1": np.float64(0.5), "count": np.int64(30)}},
    }
    text = _write(tmp_path, (images, classes, merges, summary))
    assert "thresholds picked by --auto" in text
    thresholds = _section(text, "Thresholds")
    assert re.search(r"<td>--drop-below</td><td [^>]*>0.300</td><td>--auto</td>", thresholds)
    assert re.search(r"<td>--merge-above</td><td [^>]*>0.600</td><td>--auto</td>", thresholds)
    assert re.search(r"<td>--review-below</td><td [^>]*>0.450</td><td>given", thresholds)
    figures = _section(text, "Figures --auto picked from")
    assert "<th>q1</th><th>count</th>" in figures
    assert re.search(r"<td>genuine</td><td [^>]*>0.500</td><td [^>]*>30</td>", figures)
    assert ">merge above 0.6</text>" in text


def test_report_of_the_command_end_to_end(tmp_path: Path, synth_tree: SynthTree) -> None:
    """`fmlkit clean --report --root` on embeddings of synth's faces (clustered by identity,
    with a planted mislabel, two identities under two names, a near copy): the page counts
    what images.csv says, and shows the planted cases with their images."""
    clean_rows = [t for t in synth_tree.truth if t[KIND] == "clean"]
    names = [t[FILE_NAME] for t in clean_rows]
    labels = [t["label"] for t in clean_rows]
    rng = np.random.default_rng(0)
    ids = sorted(set(labels))
    centre = {label: rng.normal(size=32) for label in ids}
    centre[ids[4]] = centre[ids[3]] + 0.05 * rng.normal(size=32)  # one identity, two names
    vectors = np.stack([centre[label] + 0.3 * rng.normal(size=32) for label in labels])
    mislabel = labels.index(ids[1]) + 1
    vectors[mislabel] = centre[ids[2]] + 0.3 * rng.normal(size=32)
    copy = labels.index(ids[5]) + 1
    vectors[copy] = vectors[copy - 1] + 0.001 * rng.normal(size=32)
    emb = write_embeddings(tmp_path / "emb.parquet", names, labels, vectors)
    out, report = tmp_path / "decisions", tmp_path / "report"
    succeeded(fmlkit("clean", emb, "-o", out, "--root", synth_tree.root, "--report", report))
    text = (report / "index.html").read_text(encoding="utf-8")
    decided = pd.read_csv(out / "images.csv", dtype=str, keep_default_na=False)
    for decision, n in decided["decision"].value_counts().items():
        assert f"<b>{n:,}</b><span>{html.escape(decision)}</span>" in text, decision
    flagged = _section(text, "Flagged images, by class")
    figure = next(f for f in flagged.split("<figure>") if html.escape(names[mislabel]) in f)
    assert f"suggested: {ids[2]}" in figure and "relabel" in figure
    merge = _section(text, "Merge candidates")
    assert f"{ids[3]} ↔ {ids[4]}" in merge
    duplicate = _section(text, "Near duplicates (embedding)")
    assert html.escape(names[copy]) in duplicate and html.escape(names[copy - 1]) in duplicate
    shown = re.findall(r'<img src="(thumbs/[^"]+)"', text)
    assert shown and all((report / src).is_file() for src in shown)


def test_the_command_refuses_a_report_folder_that_would_replace_data(
    tmp_path: Path, synth_tree: SynthTree
) -> None:
    """`fmlkit clean --report` never writes over the dataset, the decisions folder or a
    folder of the user's: one Error: line naming it, exit 1, nothing written."""
    clean_rows = [t for t in synth_tree.truth if t[KIND] == "clean"][:12]
    vectors = np.random.default_rng(0).normal(size=(len(clean_rows), 8))
    names, labels = [t[FILE_NAME] for t in clean_rows], [t["label"] for t in clean_rows]
    emb = write_embeddings(tmp_path / "emb.parquet", names, labels, vectors)
    out, mine = tmp_path / "decisions", tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    root = tmp_path / "data"  # a copy: a failure must not write into the shared tree
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(synth_tree.root / name, root / name)
    for report, says in [
        (root, ["report folder", "dataset folder"]),
        (root / "report", ["report folder", "inside the dataset folder"]),
        (out / "report", ["report folder", "inside the decisions folder"]),
        (mine, ["report folder", "not an earlier report", "notes.txt"]),
    ]:
        args = ("clean", emb, "-o", out, "--root", root, "--report", report, "--overwrite")
        refused(fmlkit(*args), says=says)
        nothing_complete(out, root / "report")
    assert (mine / "notes.txt").read_text() == "mine"
