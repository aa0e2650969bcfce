"""The similarity fit maps landmarks onto the template; bad landmarks are named; the affine
warp matches an independent reference of OpenCV's warpAffine; the tanh-polar grid keeps its
formula's landmarks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageFilter

from fmlkit.data.align.template import template_points
from fmlkit.data.align.transform import landmark_problem, similarity_transform
from fmlkit.data.align.types import ARCFACE_112
from fmlkit.data.align.warp import tanh_polar_grid, warp_affine, warp_tanh_polar
from fmlkit.errors import InputError, OptionError


def _similarity(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_similarity_transform_recovers_an_exact_similarity() -> None:
    """Landmarks made by a known similarity from the template: the fit inverts it, residual ~0."""
    truth = _similarity(2.3, 0.4, 150.0, 80.0)
    landmarks = _apply(truth, ARCFACE_112)
    matrix, residual = similarity_transform(landmarks, ARCFACE_112)
    print(f"residual of an exact similarity: {residual:.2e} px")
    assert residual < 1e-9
    assert np.allclose(_apply(matrix, landmarks), ARCFACE_112, atol=1e-9)


def test_similarity_transform_residual_is_the_rms_of_the_misfit() -> None:
    noise = np.random.default_rng(0).normal(0, 2.0, (5, 2))
    landmarks = _apply(_similarity(1.0, 0.0, 0.0, 0.0), ARCFACE_112) + noise
    matrix, residual = similarity_transform(landmarks, ARCFACE_112)
    misfit = np.sqrt(((_apply(matrix, landmarks) - ARCFACE_112) ** 2).sum(axis=1).mean())
    assert residual == pytest.approx(misfit)
    assert 0.5 < residual < 4.0


def test_similarity_transform_never_mirrors() -> None:
    """Mirrored points (left and right swapped by a reflection) get a rotation, not a mirror:
    the fit is poor and its residual says so."""
    mirrored = ARCFACE_112 * np.array([-1.0, 1.0]) + [200.0, 0.0]
    matrix, residual = similarity_transform(mirrored, ARCFACE_112)
    assert np.linalg.det(matrix[:, :2]) > 0
    assert residual > 10.0


@pytest.mark.parametrize(
    ("points", "why"),
    [
        (np.full((5, 2), np.nan), "not finite"),
        (ARCFACE_112 + np.array([500.0, 0.0]), "outside"),
        (ARCFACE_112 - np.array([0.0, 200.0]), "outside"),
        (np.stack([np.linspace(10, 90, 5), np.linspace(20, 60, 5)], axis=1), "collinear"),
        (np.full((5, 2), 50.0), "collinear"),
    ],
)
def test_landmark_problem_names_bad_landmarks(points: np.ndarray, why: str) -> None:
    problem = landmark_problem(points, 200, 200)
    assert problem is not None and why in problem


def test_landmark_problem_accepts_a_face_slightly_outside() -> None:
    assert landmark_problem(ARCFACE_112, 112, 112) is None
    assert landmark_problem(ARCFACE_112 - [45.0, 0.0], 112, 112) is None  # 7 px out: slack 11


def test_template_points_scale_shift_and_margin() -> None:
    points, size = template_points(224, "arcface")
    assert size == (224, 224) and np.allclose(points, ARCFACE_112 * 2)
    points, size = template_points(112, "arcface96")
    assert size == (96, 112) and np.allclose(points, ARCFACE_112 - [8.0, 0.0])
    points, _ = template_points(112, "arcface", 1.0)
    assert np.allclose(points, 56 + (ARCFACE_112 - 56) / 2)
    with pytest.raises(OptionError, match="margin"):
        template_points(112, "arcface", -0.1)
    with pytest.raises(InputError, match="template"):
        template_points(112, "vgg")


def _reference_warp(pixels: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OpenCV's warpAffine written out: output (x, y) samples the image at M⁻¹(x, y), pixel
    centres at integers, bilinear, 0 outside (each of the 4 neighbours outside counts 0)."""
    full = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))
    ys, xs = np.mgrid[0 : size[1], 0 : size[0]].astype(np.float64)
    u = full[0, 0] * xs + full[0, 1] * ys + full[0, 2]
    v = full[1, 0] * xs + full[1, 1] * ys + full[1, 2]
    h, w = pixels.shape[:2]
    out = np.zeros((size[1], size[0], 3))
    u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
    for dv in (0, 1):
        for du in (0, 1):
            uu, vv = u0 + du, v0 + dv
            weight = (1 - abs(u - uu)) * (1 - abs(v - vv))
            ok = (uu >= 0) & (uu < w) & (vv >= 0) & (vv < h)
            out[ok] += weight[ok, None] * pixels[vv[ok], uu[ok]]
    return out


@pytest.mark.parametrize("angle", [0.0, 0.35, -1.2])
def test_warp_affine_matches_a_reference_warp_within_one_grey_level(angle: float) -> None:
    rng = np.random.default_rng(1)
    noise = Image.fromarray((rng.random((240, 200, 3)) * 255).astype(np.uint8))
    image = noise.filter(ImageFilter.GaussianBlur(2))
    landmarks = _apply(_similarity(1.7, angle, 100.0, 120.0), ARCFACE_112 - 56)
    points, size = template_points(112)
    matrix, residual = similarity_transform(landmarks, points)
    assert residual < 1e-6
    crop = np.asarray(warp_affine(image, matrix, size), dtype=np.float64)
    reference = _reference_warp(np.asarray(image, dtype=np.float64), matrix, size)
    difference = np.abs(crop - reference).mean()
    print(f"angle {angle}: mean |Pillow − reference| = {difference:.3f} grey levels")
    assert difference <= 1.0


def test_warp_affine_puts_a_marked_landmark_on_its_template_point() -> None:
    """A bright dot at the left eye lands at the template's left eye (to a pixel)."""
    image = np.zeros((300, 300, 3), np.uint8)
    landmarks = _apply(_similarity(2.0, 0.3, 150.0, 150.0), ARCFACE_112 - 56)
    x, y = np.rint(landmarks[0]).astype(int)
    image[y - 2 : y + 3, x - 2 : x + 3] = 255
    points, size = template_points(112)
    matrix, _ = similarity_transform(landmarks, points)
    crop = np.asarray(warp_affine(Image.fromarray(image), matrix, size))[..., 0].astype(float)
    ys, xs = np.nonzero(crop > 0)
    weights = crop[ys, xs]
    centre = np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()
    shift = _apply(matrix, np.array([[x, y]], float))[0] - points[0]
    assert np.allclose(centre, points[0] + shift, atol=0.6)


def test_tanh_polar_grid_maps_the_box_centre_and_ellipse() -> None:
    """Column 0 is the box centre; column width·tanh(1) lies on the box's equal-area ellipse,
    whose half-axes are the box sides / √π; row 0 points along +x."""
    box = (40.0, 60.0, 140.0, 200.0)
    width = height = 256
    xs, ys = tanh_polar_grid(box, width, height)
    assert np.allclose(xs[:, 0], 90.0) and np.allclose(ys[:, 0], 130.0)
    col = math.tanh(1.0) * width
    a, b = 100 / math.sqrt(math.pi), 140 / math.sqrt(math.pi)
    left, right = math.floor(col), math.ceil(col)
    t = col - left
    ex = (1 - t) * xs[:, left] + t * xs[:, right]
    ey = (1 - t) * ys[:, left] + t * ys[:, right]
    on_ellipse = ((ex - 90) / a) ** 2 + ((ey - 130) / b) ** 2
    assert np.allclose(on_ellipse, 1.0, atol=0.01)
    assert ys[0, 10] == pytest.approx(130.0) and xs[0, 10] > 90.0


def test_warp_tanh_polar_samples_the_box_centre_in_column_zero() -> None:
    image = np.zeros((200, 200, 3), np.uint8)
    image[95:106, 95:106] = (255, 0, 0)
    crop = np.asarray(warp_tanh_polar(Image.fromarray(image), (50.0, 50.0, 150.0, 150.0), 64))
    assert crop.shape == (64, 64, 3)
    assert (crop[:, 0, 0] == 255).all() and (crop[:, -1, 0] == 0).all()
