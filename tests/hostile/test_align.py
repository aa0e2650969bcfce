"""`fmlkit align` against hostile input: no face, several faces, landmarks outside the image,
collinear or NaN, images that are empty, text, truncated or a decompression bomb — each a row
with its reason, never a crash; a landmark file with a malformed line (the error names the
line); options that do not fit; a run killed half-way leaves nothing that looks complete."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from fmlkit.columns import LANDMARK_COLUMNS
from fmlkit.data.align.types import ARCFACE_112
from fmlkit.io import FAULT_ENV
from tests.bad_tree import bomb_png
from tests.hostile.check import (
    fmlkit,
    fmlkit_process,
    nothing_complete,
    refused,
    succeeded,
    unchanged,
)

GOOD = ARCFACE_112 * 1.5 + [20.0, 10.0]  # a face inside a 200×200 photo
LINE = np.stack([np.linspace(40, 160, 5), np.linspace(50, 110, 5)], axis=1)


def _photo(seed: int) -> Image.Image:
    noise = np.random.default_rng(seed).random((200, 200, 3)) * 255
    return Image.fromarray(noise.astype(np.uint8)).filter(ImageFilter.GaussianBlur(2))


def _jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    _photo(seed).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _csv_row(name: str, points: np.ndarray | str) -> str:
    cells = [points] * 10 if isinstance(points, str) else [f"{v:.3f}" for v in points.ravel()]
    return ",".join([name, *cells])


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return {row["file_name"]: row for row in csv.DictReader(f)}


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """``photos/p/…``: one file per bad case, and ``marks.csv`` for them."""
    folder = tmp_path / "photos" / "p"
    folder.mkdir(parents=True)
    for i, name in enumerate(("good", "two", "outside", "line", "nan", "norow")):
        _photo(i).save(folder / f"{name}.png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_bytes(b"not an image at all\n")
    whole = _jpeg(9)
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "bomb.png").write_bytes(bomb_png(30000, 30000))
    rows = [f"file_name,{','.join(LANDMARK_COLUMNS)}"]
    rows += [_csv_row(f"p/{n}", GOOD) for n in ("good", "two", "two", "empty", "text")]
    rows += [_csv_row("p/truncated.jpg", GOOD), _csv_row("p/bomb.png", GOOD)]
    rows += [
        _csv_row("p/outside.png", GOOD + np.array([5000.0, 0.0])),
        _csv_row("p/line.png", LINE),
    ]
    rows += [_csv_row("p/nan.png", "nan")]
    (tmp_path / "marks.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return tmp_path


def test_every_bad_image_is_a_row_with_its_reason(hostile: Path) -> None:
    out = hostile / "out"
    result = fmlkit("align", hostile / "photos", "-o", out, "--landmarks", hostile / "marks.csv",
                    "--select", "single")  # fmt: skip
    succeeded(result)
    rows = _rows(hostile / "out.csv")
    reasons = {name: row["error"] for name, row in rows.items()}
    assert reasons == {
        "p/bomb.png": "decompression_bomb",
        "p/empty.jpg": "unreadable",
        "p/good.png": "",
        "p/line.png": "bad_landmarks",
        "p/nan.png": "bad_landmarks",
        "p/norow.png": "no_landmarks",
        "p/outside.png": "bad_landmarks",
        "p/text.jpg": "unreadable",
        "p/truncated.jpg": "truncated",
        "p/two.png": "several_faces",
    }
    assert rows["p/two.png"]["faces"] == "2" and rows["p/outside.png"]["x1"] != ""
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["p/good.png"]
    assert "aligned 1 of 10 images" in result.stdout
    assert "1 image(s) without a landmark row: p/norow.png" in result.stdout


def test_several_faces_are_chosen_from_unless_single(hostile: Path) -> None:
    succeeded(fmlkit("align", hostile / "photos", "-o", hostile / "out",
                     "--landmarks", hostile / "marks.csv"))  # fmt: skip
    assert _rows(hostile / "out.csv")["p/two.png"]["error"] == ""


def test_faces_below_min_score_are_a_low_score_row(tmp_path: Path) -> None:
    (tmp_path / "photos/p").mkdir(parents=True)
    for name in ("weak", "sure"):
        _photo(1).save(tmp_path / f"photos/p/{name}.png")
    points = " ".join(f"{v:.2f}" for v in GOOD.ravel())
    marks = tmp_path / "marks.txt"
    marks.write_text(f"p/weak.png {points} 0.2\np/sure.png {points} 0.9\n", encoding="utf-8")
    succeeded(fmlkit("align", tmp_path / "photos", "-o", tmp_path / "out", "--landmarks", marks,
                     "--min-score", "0.5"))  # fmt: skip
    rows = _rows(tmp_path / "out.csv")
    assert (rows["p/weak.png"]["error"], rows["p/sure.png"]["error"]) == ("low_score", "")


def test_a_photo_without_a_face_is_a_no_face_row(tmp_path: Path) -> None:
    (tmp_path / "photos/p").mkdir(parents=True)
    Image.new("RGB", (160, 120), (128, 128, 128)).save(tmp_path / "photos/p/wall.png")
    succeeded(fmlkit("align", tmp_path / "photos", "-o", tmp_path / "out",
                     "--detector", "retinaface"))  # fmt: skip
    row = _rows(tmp_path / "out.csv")["p/wall.png"]
    assert (row["faces"], row["error"], row["aligned"]) == ("0", "no_face", "")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("p/a.png 1 2 3 4 5 6 7 8 9 10\np/b.png 1 2 3\n", ["marks.txt line 2", "4 fields, exp"]),
        (
            "p/a.png 1 2 3 4 5 6 7 8 9 10\n\np/b.png 1 2 x 4 5 6 7 8 9 10\n",
            ["marks.txt line 3", "'x' is not a number"],
        ),
        ("just some words\n", ["marks.txt line 1", "3 fields"]),
    ],
)
def test_a_malformed_landmark_line_is_refused_naming_it(
    hostile: Path, text: str, says: list[str]
) -> None:
    marks = hostile / "marks.txt"
    marks.write_text(text, encoding="utf-8")
    out = hostile / "out"
    refused(fmlkit("align", hostile / "photos", "-o", out, "--landmarks", marks), says=says)
    nothing_complete(out, hostile / "out.csv")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--landmarks", "marks.csv", "--detector", "retinaface"), "--landmarks"),
        ((), "--detector"),
        (("--detector", "nosuch"), "nosuch"),
        (("--landmarks", "marks.csv", "--size", "4"), "--size"),
        (("--landmarks", "marks.csv", "--root", "photos"), "--root"),
    ],
)
def test_options_that_do_not_fit_are_a_usage_error(
    hostile: Path, args: tuple[str, ...], says: str
) -> None:
    refused(fmlkit("align", "photos", "-o", "out", *args, cwd=hostile), says=says, code=2)
    nothing_complete(hostile / "out", hostile / "out.csv")


def test_a_table_input_needs_root_and_an_existing_output_needs_overwrite(hostile: Path) -> None:
    (hostile / "info.csv").write_text("file_name,label\np/good.png,p\n", encoding="utf-8")
    refused(fmlkit("align", "info.csv", "-o", "out", "--landmarks", "marks.csv", cwd=hostile),
            says="--root", code=2)  # fmt: skip
    args = ("align", "info.csv", "-o", "out", "--landmarks", "marks.csv", "--root", "photos")
    succeeded(fmlkit(*args, cwd=hostile))
    before = (hostile / "out.csv").read_bytes()
    refused(fmlkit(*args, cwd=hostile), says=["out", "--overwrite"])
    unchanged(hostile / "out.csv", before)
    succeeded(fmlkit(*args, "--overwrite", cwd=hostile))
    marks = (hostile / "marks.csv").read_bytes()
    refused(fmlkit(*args, "--table", "marks.csv", "--overwrite", cwd=hostile),
            says=["output table marks.csv is the landmark file"])  # fmt: skip
    unchanged(hostile / "marks.csv", marks)


@pytest.mark.parametrize("name", ["../escape.png", "/etc/x.png", ".", ""])
def test_a_table_naming_a_file_outside_root_is_refused(hostile: Path, name: str) -> None:
    """Its crop would land outside the output folder."""
    (hostile / "info.csv").write_text(f"file_name,label\np/good.png,p\n{name},p\n", "utf-8")
    args = ("align", "info.csv", "-o", "out", "--landmarks", "marks.csv", "--root", "photos")
    refused(fmlkit(*args, cwd=hostile), says=["info.csv row 2", "outside the output folder"])
    nothing_complete(hostile / "out", hostile / "out.csv", hostile / "escape.png")


@pytest.mark.parametrize("name", ["out", "out.csv"])
def test_a_run_killed_half_way_leaves_no_complete_looking_output(hostile: Path, name: str) -> None:
    """Killed before the tree (or, after it, the table) is renamed into place: no table, the
    mark of a finished run; the tree is absent or whole. A rerun with --overwrite succeeds."""
    args = ("align", "photos", "-o", "out", "--landmarks", "marks.csv", "-j", "2")
    killed = fmlkit_process(*args, cwd=hostile, env={FAULT_ENV: f"written@{name}"})
    assert killed.returncode == -9, killed.stderr
    nothing_complete(hostile / "out.csv")
    if name == "out":
        nothing_complete(hostile / "out")
    else:
        assert sorted(p.name for p in (hostile / "out/p").iterdir()) == ["good.png", "two.png"]
    succeeded(fmlkit(*args, "--overwrite", cwd=hostile))
    assert len(_rows(hostile / "out.csv")) == 10
