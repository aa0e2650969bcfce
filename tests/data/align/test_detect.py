"""The bundled RetinaFace detector on real faces shipped in installed packages (scikit-image's
``lfw_subset`` and ``astronaut``, matplotlib's ``grace_hopper.jpg``), on images with no face,
on large images (bounded working size, landmarks mapped back), and on bad input."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image
from skimage import data

from fmlkit.data.align import detect
from fmlkit.data.align.detect import DETECTOR_NAMES, create_detector
from fmlkit.data.align.types import Face
from fmlkit.errors import FmlkitError, InputError, OptionError
from fmlkit.parallel import run_tasks


@pytest.fixture(scope="module")
def detector() -> detect.RetinaFaceDetector:
    found = create_detector(threads=1)
    assert isinstance(found, detect.RetinaFaceDetector)
    return found


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.asarray(data.astronaut())


def _confident(faces: list[Face], min_score: float = 0.5) -> list[Face]:
    return [face for face in faces if face.score >= min_score]


def _holds_centre(face: Face, image: np.ndarray) -> bool:
    cy, cx = (image.shape[0] - 1) / 2, (image.shape[1] - 1) / 2
    x1, y1, x2, y2 = face.box
    return x1 <= cx <= x2 and y1 <= cy <= y2


def _grey_to_rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat((image * 255).round().astype(np.uint8)[..., None], 3, axis=2)


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def _assert_plausible(face: Face) -> None:
    """Eyes above the nose above the mouth corners, left (in the image) before right, all
    inside the box."""
    (lex, ley), (rex, rey), (nx, ny), (lmx, lmy), (rmx, rmy) = face.landmarks
    assert face.landmarks.shape == (5, 2) and face.landmarks.dtype == np.float64
    assert lex < nx < rex and lmx < rmx
    assert max(ley, rey) < ny < min(lmy, rmy)
    x1, y1, x2, y2 = face.box
    assert (x1 <= face.landmarks[:, 0]).all() and (face.landmarks[:, 0] <= x2).all()
    assert (y1 <= face.landmarks[:, 1]).all() and (face.landmarks[:, 1] <= y2).all()
    assert 0.0 <= face.score <= 1.0


def test_detect_finds_at_least_90_of_the_100_lfw_subset_faces(
    detector: detect.RetinaFaceDetector,
) -> None:
    # lfw_subset: 100 faces, then 100 non-faces, 25×25 grey; 100 of 100 found when written
    images = [_grey_to_rgb(image) for image in data.lfw_subset()]
    results = detector.detect(images)
    found = sum(
        any(_holds_centre(face, image) for face in _confident(faces))
        for faces, image in zip(results[:100], images[:100], strict=True)
    )
    false = sum(bool(_confident(faces)) for faces in results[100:])
    assert found >= 90, f"{found} of 100 lfw_subset faces found"
    assert false <= 5, f"{false} of 100 lfw_subset non-faces hold a face scoring ≥ 0.5"


def test_detect_finds_the_astronaut_with_plausible_landmarks(
    detector: detect.RetinaFaceDetector, astronaut: np.ndarray
) -> None:
    (face,) = _confident(detector.detect([astronaut])[0])
    _assert_plausible(face)
    x1, y1, x2, y2 = face.box
    assert 150 < x1 < x2 < 300 and 30 < y1 < y2 < 210  # her face, not the flag or the suit


def test_detect_finds_grace_hopper(detector: detect.RetinaFaceDetector) -> None:
    with Image.open(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))) as opened:
        image = np.asarray(opened.convert("RGB"))
    (face,) = _confident(detector.detect([image])[0])
    _assert_plausible(face)


@pytest.mark.parametrize("kind", ["flat", "noise", "tiny"])
def test_detect_finds_no_face_where_there_is_none(
    detector: detect.RetinaFaceDetector, kind: str
) -> None:
    rng = np.random.default_rng(0)
    image = {
        "flat": np.full((300, 400, 3), 128, dtype=np.uint8),
        "noise": rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8),
        "tiny": np.zeros((1, 1, 3), dtype=np.uint8),
    }[kind]
    faces = detector.detect([image])[0]
    assert not _confident(faces)
    assert all(0.0 <= face.score < 0.5 for face in faces)


def test_detect_maps_a_large_image_back_from_its_working_size(
    detector: detect.RetinaFaceDetector, astronaut: np.ndarray
) -> None:
    # 3000×2000: detected at 640×427; its landmarks come back in full-image pixels, per axis
    big = np.full((2000, 3000, 3), 90, dtype=np.uint8)
    big[100:1892, 900:2692] = _resize(astronaut, 1792, 1792)  # ×3.5 at (900, 100)
    assert detect._working_size(2000, 3000, detector.max_side) == (427, 640)
    (face,) = _confident(detector.detect([big])[0])
    _assert_plausible(face)
    # the same working image given directly: the mapping back is exact
    (working,) = _confident(detector.detect([_resize(big, 640, 427)])[0])
    scale = np.array([3000 / 640, 2000 / 427])
    np.testing.assert_allclose(face.landmarks, (working.landmarks + 0.5) * scale - 0.5, atol=1e-3)
    # and it agrees with the astronaut detected at her own size, to a few working pixels
    (small,) = _confident(detector.detect([astronaut])[0])
    expected = (small.landmarks + 0.5) * 3.5 - 0.5 + [900, 100]
    error = np.abs(face.landmarks - expected).max() * 640 / 3000
    assert error < 3, f"landmarks {error:.2f} working pixels from the small image's"


def test_detect_batches_of_mixed_sizes_agree_with_one_at_a_time(astronaut: np.ndarray) -> None:
    images = [
        astronaut,
        _resize(astronaut, 300, 200),
        _grey_to_rgb(data.lfw_subset()[0]),
        np.ascontiguousarray(astronaut[:, ::-1]),  # mirrored: the eyes swap sides
    ]
    one = create_detector(threads=1, batch_size=1).detect(images)
    batched = create_detector(threads=1, batch_size=4).detect(images)
    assert len(batched) == len(images)
    for alone, together, image in zip(one, batched, images, strict=True):
        (a,) = _confident(alone)
        (b,) = _confident(together)
        _assert_plausible(b)
        assert np.abs(a.landmarks - b.landmarks).max() < 0.03 * max(image.shape) + 1
        assert abs(a.score - b.score) < 0.05


def test_detect_of_no_images_is_empty(detector: detect.RetinaFaceDetector) -> None:
    assert detector.detect([]) == []


def _detect_in_worker(image: np.ndarray) -> int:
    return len(_confident(create_detector(threads=1).detect([image])[0]))


def test_detect_in_forked_workers_after_the_parent_detected(
    detector: detect.RetinaFaceDetector, astronaut: np.ndarray
) -> None:
    # the parent's onnxruntime session exists; each forked worker makes its own
    assert len(_confident(detector.detect([astronaut])[0])) == 1
    assert run_tasks(_detect_in_worker, [astronaut, astronaut[300:]], workers=2) == [1, 0]


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((64, 64), dtype=np.uint8),
        np.zeros((64, 64, 4), dtype=np.uint8),
        np.zeros((64, 64, 3), dtype=np.float32),
        np.zeros((0, 64, 3), dtype=np.uint8),
    ],
    ids=["grey", "rgba", "float", "empty"],
)
def test_detect_refuses_what_is_not_an_rgb_uint8_image(
    detector: detect.RetinaFaceDetector, image: np.ndarray
) -> None:
    good = np.zeros((64, 64, 3), dtype=np.uint8)
    with pytest.raises(InputError, match=r"image 1 .* expected an H×W×3 uint8 RGB array"):
        detector.detect([good, image])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "mtcnn"}, r"detector='mtcnn' is not a known detector; choose one of: retinaface"),
        ({"max_side": 16}, r"max_side=16 is out of range: 64–4096 pixels"),
        ({"batch_size": 0}, r"batch_size=0 is out of range"),
        ({"threads": 0}, r"threads=0 must be at least 1"),
    ],
)
def test_create_detector_refuses_bad_options(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(OptionError, match=message):
        create_detector(**kwargs)  # type: ignore[arg-type]


def test_create_detector_knows_its_names() -> None:
    assert DETECTOR_NAMES == ("retinaface",)
    assert create_detector("retinaface", threads=1).name == "retinaface"


def test_model_bytes_refuses_a_damaged_model(monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(detect._model_bytes()) == 1_736_694  # the bundled model passes its check
    monkeypatch.setattr(detect, "MODEL_SHA256", "0" * 64)
    with pytest.raises(FmlkitError, match=r"is damaged .* reinstall fmlkit"):
        detect._model_bytes()
