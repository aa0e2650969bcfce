"""`align_dataset` from landmark files: the crops are the reference similarity warp, every
input image is a row, and the outputs are written whole."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from fmlkit.columns import ALIGN_COLUMNS, LANDMARK_COLUMNS
from fmlkit.data.align import align_dataset
from fmlkit.data.align.template import template_points
from fmlkit.data.align.transform import similarity_transform
from fmlkit.data.align.types import ARCFACE_112, Face
from fmlkit.errors import InputError, OptionError
from tests.data.align.test_transform import _reference_warp

ANGLES = {"a/1.jpg": 0.2, "a/2.png": -0.4, "b/3.jpg": 0.0}


def _landmarks(angle: float) -> np.ndarray:
    c, s = 1.6 * math.cos(angle), 1.6 * math.sin(angle)
    return (ARCFACE_112 - 56) @ np.array([[c, s], [-s, c]]) + [120.0, 110.0]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """``photos/{a,b}/…``: smooth noise images (PNG: lossless), and a landmark CSV beside."""
    root = tmp_path / "photos"
    rng = np.random.default_rng(3)
    for name in ANGLES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        noise = Image.fromarray((rng.random((220, 240, 3)) * 255).astype(np.uint8))
        noise.filter(ImageFilter.GaussianBlur(2)).save(root / name, "PNG")
    lines = [f"file_name,{','.join(LANDMARK_COLUMNS)}"]
    for name, angle in ANGLES.items():
        lines.append(f"{name}," + ",".join(repr(float(v)) for v in _landmarks(angle).ravel()))
    (tmp_path / "marks.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_align_dataset_crops_equal_the_reference_warp(photos: Path, tmp_path: Path) -> None:
    report = align_dataset(photos, tmp_path / "out", landmarks=tmp_path / "marks.csv")
    assert (report.images, report.aligned, report.reasons) == (3, 3, {})
    rows = _rows(tmp_path / "out.csv")
    assert list(rows[0]) == list(ALIGN_COLUMNS)
    assert [r["file_name"] for r in rows] == sorted(ANGLES)
    points, size = template_points(112)
    for row in rows:
        matrix, _ = similarity_transform(_landmarks(ANGLES[row["file_name"]]), points)
        image = np.asarray(Image.open(photos / row["file_name"]).convert("RGB"), np.float64)
        crop = np.asarray(Image.open(tmp_path / "out" / row["aligned"]), np.float64)
        assert row["aligned"].endswith(".png") and crop.shape == (112, 112, 3)
        difference = np.abs(crop - _reference_warp(image, matrix, size)).mean()
        assert difference <= 1.0, (row["file_name"], difference)
        assert float(row["residual"]) < 1e-3 and row["error"] == ""


def test_align_dataset_is_the_same_with_workers_and_from_a_table(
    photos: Path, tmp_path: Path
) -> None:
    marks = tmp_path / "marks.csv"
    align_dataset(photos, tmp_path / "one", landmarks=marks)
    info = tmp_path / "info.csv"
    info.write_text("file_name,label\nb/3.jpg,b\na/2.png,a\na/1.jpg,a\n", encoding="utf-8")
    align_dataset(info, tmp_path / "two", landmarks=marks, root=photos, workers=2)
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()
    for name in ("a/1.png", "a/2.png", "b/3.png"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_align_dataset_jpeg_96_wide_tanh_polar(photos: Path, tmp_path: Path) -> None:
    marks = tmp_path / "marks.csv"
    align_dataset(photos, tmp_path / "j", landmarks=marks, template="arcface96",
                  image_format="jpg", quality=80, size=56)  # fmt: skip
    with Image.open(tmp_path / "j/a/1.jpg") as img:
        assert (img.format, img.size) == ("JPEG", (48, 56))
    align_dataset(photos, tmp_path / "t", landmarks=marks, warp="tanh-polar", size=64)
    with Image.open(tmp_path / "t/a/2.png") as img:
        assert img.size == (64, 64)


def test_align_dataset_lists_unmatched_names_and_images_without_rows(
    photos: Path, tmp_path: Path
) -> None:
    marks = tmp_path / "marks.csv"
    text = marks.read_text(encoding="utf-8").splitlines()
    marks.write_text("\n".join([*text[:2], "z/gone.jpg" + text[1][7:]]) + "\n", encoding="utf-8")
    report = align_dataset(photos, tmp_path / "out", landmarks=marks)
    assert report.reasons == {"no_landmarks": 2}
    assert report.missing == ("a/2.png", "b/3.jpg") and report.unmatched == ("z/gone.jpg",)
    assert (report.missing_count, report.unmatched_count) == (2, 1)
    summary = report.summary()
    assert "2 image(s) without a landmark row: a/2.png, b/3.jpg" in summary
    assert "1 landmark name(s) naming no input image: z/gone.jpg" in summary


class _Fixed:
    """A detector that finds the given faces in every image."""

    name = "fixed"

    def __init__(self, faces: list[Face]) -> None:
        self.faces = faces
        self.calls: list[int] = []

    def detect(self, images: list[np.ndarray]) -> list[list[Face]]:
        self.calls.append(len(images))
        return [list(self.faces) for _ in images]


def test_align_dataset_select_picks_the_face(photos: Path, tmp_path: Path) -> None:
    small = Face((100.0, 90.0, 140.0, 130.0), _landmarks(0.0) * 0.3 + 84, 0.99)
    large = Face((60.0, 40.0, 180.0, 190.0), _landmarks(0.0), 0.7)
    detector = _Fixed([small, large])
    for select, score in (("largest", 0.7), ("best", 0.99), ("center", 0.99)):
        align_dataset(photos, tmp_path / select, detector=detector, select=select)
        assert {float(r["score"]) for r in _rows(tmp_path / f"{select}.csv")} == {score}
    assert detector.calls == [3, 3, 3], "one batch per chunk"
    report = align_dataset(photos, tmp_path / "forked", detector=detector, workers=2)
    assert report.aligned == 3 and detector.calls == [3, 3, 3], "detected in 2 worker processes"
    report = align_dataset(photos, tmp_path / "single", detector=detector, select="single")
    assert report.reasons == {"several_faces": 3}
    report = align_dataset(photos, tmp_path / "strict", detector=detector, min_score=0.995)
    assert report.reasons == {"low_score": 3}
    rows = _rows(tmp_path / "strict.csv")
    assert {r["faces"] for r in rows} == {"0"} and not any(r["aligned"] for r in rows)


def test_align_dataset_refuses_bad_options_and_outputs(photos: Path, tmp_path: Path) -> None:
    marks = tmp_path / "marks.csv"
    with pytest.raises(OptionError, match="landmarks"):
        align_dataset(photos, tmp_path / "o", landmarks=marks, detector="retinaface")
    with pytest.raises(OptionError, match="root"):
        align_dataset(marks, tmp_path / "o", landmarks=marks)
    with pytest.raises(InputError, match="hold one another"):
        align_dataset(photos, photos / "a" / "out", landmarks=marks)
    (tmp_path / "o").mkdir()
    with pytest.raises(InputError, match="already exists"):
        align_dataset(photos, tmp_path / "o", landmarks=marks)
    assert not (tmp_path / "o.csv").exists()


def test_align_dataset_applies_exif_orientation_first(photos: Path, tmp_path: Path) -> None:
    """Landmarks refer to the upright image: a file stored turned, with EXIF orientation 6,
    gives the crop of the upright one."""
    upright = Image.open(photos / "b/3.jpg").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored turned 90° clockwise
    upright.transpose(Image.Transpose.ROTATE_90).save(photos / "b/3.jpg", "PNG", exif=exif)
    report = align_dataset(photos, tmp_path / "out", landmarks=tmp_path / "marks.csv")
    assert report.reasons == {}
    crop = np.asarray(Image.open(tmp_path / "out/b/3.png"), np.float64)
    matrix, _ = similarity_transform(_landmarks(ANGLES["b/3.jpg"]), template_points(112)[0])
    reference = _reference_warp(np.asarray(upright, np.float64), matrix, (112, 112))
    assert np.abs(crop - reference).mean() <= 1.0
