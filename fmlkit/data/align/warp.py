"""Pixels of the aligned crop: an affine warp with Pillow that matches OpenCV's ``warpAffine``
(bilinear, black outside), and the RoI tanh-polar warp of Lin et al. 2021 from a face box."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from fmlkit.data.align.transform import invert_affine


def warp_affine(image: Image.Image, matrix: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """Warp ``image`` by the 2×3 ``matrix`` (image pixels → output pixels) into a crop of
    ``size`` (width, height), bilinear, black outside the image.

    Pixel centres are at integers, as in OpenCV's ``warpAffine``: output pixel (x, y) samples
    the image at M⁻¹ (x, y). Pillow puts centres at half-integers (it maps x + ½ and samples at
    u − ½), so the inverse's translation t becomes t + ½ − A (½, ½).
    """
    inverse = invert_affine(matrix)
    a = inverse[:, :2]
    shift = inverse[:, 2] + 0.5 - a @ np.array([0.5, 0.5])
    data = (a[0, 0], a[0, 1], shift[0], a[1, 0], a[1, 1], shift[1])
    return image.transform(size, Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR)


def tanh_polar_grid(
    box: tuple[float, float, float, float], width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Image coordinates (x, y) sampled by each pixel of a ``width`` × ``height`` tanh-polar crop.

    With c the box's centre and (a, b) = (box width, box height) / √π (the ellipse of the box's
    area): output column u gives ρ = u / width, row v the angle θ = −2π v / height; the pixel
    samples c + r(θ) · artanh(ρ) · (cos θ, sin θ), where r(θ) = ab / √(b² cos²θ + a² sin²θ) is
    the ellipse's radius in direction θ. Column 0 is the box's centre, the ellipse lies at
    column width · tanh(1) ≈ 0.76 · width, and the whole image is compressed into the rest.
    """
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    a, b = max(x2 - x1, 1e-6) / math.sqrt(math.pi), max(y2 - y1, 1e-6) / math.sqrt(math.pi)
    rho = np.arange(width, dtype=np.float64) / width
    theta = -2.0 * math.pi * np.arange(height, dtype=np.float64) / height
    cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]
    radius = a * b / np.sqrt(b**2 * cos**2 + a**2 * sin**2) * np.arctanh(rho)[None, :]
    return cx + radius * cos, cy + radius * sin


def sample_bilinear(pixels: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Bilinear samples of an H×W×C uint8 array at (xs, ys), pixel centres at integers; points
    outside the image (and its neighbours' weights there) are black, as OpenCV's constant
    border."""
    h, w = pixels.shape[:2]
    x0, y0 = np.floor(xs), np.floor(ys)
    fx, fy = (xs - x0)[..., None], (ys - y0)[..., None]
    out = np.zeros((*xs.shape, pixels.shape[2]), dtype=np.float64)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            xc = np.clip(xi, 0, w - 1).astype(np.intp)
            yc = np.clip(yi, 0, h - 1).astype(np.intp)
            out += np.where(inside[..., None], pixels[yc, xc], 0) * (wx * wy)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def warp_tanh_polar(
    image: Image.Image, box: tuple[float, float, float, float], size: int
) -> Image.Image:
    """The RoI tanh-polar warp (`tanh_polar_grid`) of ``image`` about ``box``: size × size."""
    xs, ys = tanh_polar_grid(box, size, size)
    return Image.fromarray(sample_bilinear(np.asarray(image.convert("RGB")), xs, ys))
