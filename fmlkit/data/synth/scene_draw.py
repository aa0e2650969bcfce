"""How `fmlkit synth --scenes` draws a photo: a larger background with 0–3 synthetic faces
(`faces`), each at a random scale, position and in-plane rotation (`render_scene`), and one
identity's photos as a worker writes them (`render_scene_identity`).

The first face is the photo's identity; the others are strangers (identities of no folder),
drawn smaller and behind it. Every face's box and landmarks go through the same affine as its
pixels, so they are exact in the photo's pixels (pixel centres at integers, as OpenCV and
insightface count).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from fmlkit.data.synth.draw import CLEAN, IDENTITY_STREAM, seeded_rng, write_new
from fmlkit.data.synth.faces import Identity, _clothes, _draw_head, create_identity

SCENE_STREAM, STRANGER_STREAM = 6, 7  # after synth's streams (draw.py): never shared draws
DEFAULT_SCENE_SIZE = (320, 240)  # width, height in pixels
MAX_ROTATION = 30.0  # degrees, either way
MAIN_SIDE = (0.4, 0.75)  # side of the labelled face's drawing, × the scene's shorter side
STRANGER_SCALE = (0.5, 0.8)  # a stranger's head size, × the labelled face's (so it is smaller)
PLACEMENT_TRIES = 30  # positions tried for a stranger before it is left out
JPEG_QUALITY = (80, 96)


@dataclass(frozen=True)
class SceneFace:
    """One face drawn in a scene, in the scene's pixels (pixel centres at integers).

    Attributes:
        box: x1, y1, x2, y2: the bounding box of the head ellipse, as rotated and scaled.
        landmarks: (5, 2) x, y in insightface order: left eye, right eye, nose, left mouth
            corner, right mouth corner ("left": smaller x before the rotation).
        matrix: (2, 3) forward affine from the face's drawing to the scene.
        canonical: (5, 2) the same landmarks in the face's drawing.
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    matrix: np.ndarray
    canonical: np.ndarray


def _similarity(scale: float, degrees: float, anchor: np.ndarray, to: np.ndarray) -> np.ndarray:
    """(2, 3) forward affine: rotate by ``degrees``, scale about ``anchor``, move it to ``to``."""
    t = math.radians(degrees)
    a = scale * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return np.hstack([a, (to - a @ anchor)[:, None]])


def _pillow_inverse(matrix: np.ndarray) -> tuple[float, ...]:
    """Pillow's AFFINE data (output → input) for a forward ``matrix`` between pixel-centre
    coordinates: Pillow samples output pixel centres at x + 0.5 of a grid whose pixels span
    [i, i + 1), so both sides shift by half a pixel."""
    a, t = matrix[:, :2], matrix[:, 2]
    t_corner = t + 0.5 - a @ np.array([0.5, 0.5])
    inv = np.linalg.inv(a)
    c = -inv @ t_corner
    return (inv[0, 0], inv[0, 1], c[0], inv[1, 0], inv[1, 1], c[1])


def _head_extent(matrix: np.ndarray, half: tuple[float, float]) -> np.ndarray:
    """Half-width and half-height of the axis-aligned box of an ellipse of half-axes ``half``
    under ``matrix``."""
    a = matrix[:, :2] * np.array(half)
    return np.sqrt((a**2).sum(axis=1))


def _overlaps(box: np.ndarray, others: Sequence[np.ndarray], gap: float) -> bool:
    return any(
        box[0] < o[2] + gap and o[0] < box[2] + gap and box[1] < o[3] + gap and o[1] < box[3] + gap
        for o in others
    )


def _place(
    rng: np.random.Generator,
    half: np.ndarray,
    scene_size: tuple[int, int],
    footprints: Sequence[np.ndarray],
    tries: int,
) -> np.ndarray | None:
    """A head centre whose box (half-extents ``half``) lies inside the scene, clear of every
    footprint; None after ``tries`` random positions that are not (the first is taken when
    there are no footprints)."""
    lo = half + 1
    hi = np.maximum(lo, np.array(scene_size, dtype=np.float64) - 2 - half)
    for _ in range(tries):
        centre = rng.uniform(lo, hi)
        if not _overlaps(np.concatenate([centre - half, centre + half]), footprints, gap=2.0):
            return centre
    return None


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A two-colour linear gradient in a random direction, with 2–7 random shapes on it."""
    c1, c2 = rng.integers(0, 256, size=(2, 3)).astype(np.float32)
    phi = rng.uniform(0, 2 * math.pi)
    x = np.linspace(-0.5, 0.5, width, dtype=np.float32)
    y = np.linspace(-0.5, 0.5, height, dtype=np.float32) * (height / width)
    ramp = np.clip(x[None, :] * math.cos(phi) + y[:, None] * math.sin(phi) + 0.5, 0, 1)
    pixels = c1 + ramp[..., None] * (c2 - c1)
    img = Image.fromarray(pixels.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 8))):
        x0, y0 = rng.uniform(-0.2, 1.0) * width, rng.uniform(-0.2, 1.0) * height
        w, h = rng.uniform(0.1, 0.5, size=2) * min(width, height)
        fill = tuple(int(v) for v in rng.integers(0, 256, size=3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x0 + w, y0 + h), fill)
    return img


def _photometric(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Defocus (a third of the photos), exposure, colour temperature and gamma, and luminance
    noise (σ 0–6 grey levels). None of them moves a pixel."""
    if rng.random() < 1 / 3:
        side = (max(8, int(img.width * rng.uniform(0.5, 0.8))), 0)
        side = (side[0], max(8, round(img.height * side[0] / img.width)))
        img = img.resize(side, Image.Resampling.BOX).resize(img.size, Image.Resampling.BILINEAR)
    return exposure_and_noise(img, rng, darkest=0.75, sigma_max=6.0)[0]


def exposure_and_noise(
    img: Image.Image, rng: np.random.Generator, *, darkest: float, sigma_max: float
) -> tuple[Image.Image, float]:
    """Exposure (``darkest``–1.25), colour temperature, gamma and luminance noise (σ drawn in
    0–``sigma_max`` grey levels), in that order of draws; the image and its σ."""
    exposure, gamma = rng.uniform(darkest, 1.25), rng.uniform(0.8, 1.25)
    tint = 1.0 + rng.uniform(-0.08, 0.08, size=3)
    lut = np.minimum(np.arange(256) / 255.0 * (exposure * tint)[:, None], 1.0) ** gamma
    img = img.point((lut.ravel() * 255 + 0.5).astype(np.uint8).tolist())
    sigma = rng.uniform(0.0, sigma_max)
    noise = rng.standard_normal((img.height, img.width), dtype=np.float32) * sigma + 128.5
    lum = Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8), "L")
    return ImageChops.add(img, Image.merge("RGB", (lum, lum, lum)), 1.0, -128), sigma


def render_scene(
    identities: Sequence[Identity],
    rng: np.random.Generator,
    *,
    scene_size: tuple[int, int] = DEFAULT_SCENE_SIZE,
    face_size: int = 112,
    photometric: bool = True,
) -> tuple[Image.Image, list[SceneFace]]:
    """Draw one photo: ``identities[0]`` the labelled face, the rest strangers behind it.

    Args:
        identities: the faces to draw (empty: a photo with no face).
        rng: the photo's generator; the same state gives the same pixels and faces.
        scene_size: width, height of the photo in pixels.
        face_size: side of each face's drawing before it is scaled into the photo.
        photometric: apply defocus, exposure, colour and noise (off: the pasted pixels as drawn).

    Returns:
        The RGB photo and its faces, the labelled one first. A stranger with no free place
        (`PLACEMENT_TRIES`) is left out, so there may be fewer faces than identities.
    """
    width, height = scene_size
    img = _background(rng, width, height)
    faces: list[SceneFace] = []
    layers: list[tuple[Image.Image, np.ndarray]] = []
    footprints: list[np.ndarray] = []  # what each earlier (nearer) face covers
    main_scale = rng.uniform(*MAIN_SIDE) * min(width, height) / face_size
    for k, ident in enumerate(identities):
        layer = _clothes(ident, face_size).copy()
        head = _draw_head(ImageDraw.Draw(layer), ident, rng, face_size)
        cx, cy, fw, fh = head.ellipse
        if k == 0:
            main_half = fw * fh
        scale = main_scale
        if k:  # the head's geometric-mean half-axis: a set fraction of the labelled face's
            scale *= rng.uniform(*STRANGER_SCALE) * math.sqrt(main_half / (fw * fh))
        degrees = rng.uniform(-MAX_ROTATION, MAX_ROTATION)
        probe = _similarity(scale, degrees, np.array([cx, cy]), np.zeros(2))
        half = _head_extent(probe, (fw, fh))
        placed = _place(rng, half, scene_size, footprints, PLACEMENT_TRIES if k else 1)
        if placed is None:
            continue  # no free place for this stranger
        matrix = _similarity(scale, degrees, np.array([cx, cy]), placed)
        corners = np.array([[0, 0, 1], [face_size, 0, 1], [0, face_size, 1], [face_size] * 2 + [1]])
        covered = corners @ matrix.T
        footprints.append(np.concatenate([covered.min(axis=0), covered.max(axis=0)]))
        points = head.landmarks @ matrix[:, :2].T + matrix[:, 2]
        x1, y1, x2, y2 = (float(v) for v in (*(placed - half), *(placed + half)))
        faces.append(SceneFace((x1, y1, x2, y2), points, matrix, head.landmarks))
        layers.append((layer, matrix))
    for layer, matrix in reversed(layers):  # strangers first: the labelled face is in front
        warped = layer.transform(
            (width, height),
            Image.Transform.AFFINE,
            _pillow_inverse(matrix),
            resample=Image.Resampling.BILINEAR,
        )
        img.paste(warped, (0, 0), warped)
    return (_photometric(img, rng) if photometric else img), faces


@dataclass(frozen=True)
class SceneJob:
    """One identity's photos to draw: what a worker process gets."""

    root: Path
    seed: int
    index: int
    label: str
    names: tuple[str, ...]
    faces: tuple[int, ...]  # faces asked for in each photo (0–3)
    scene_size: tuple[int, int]
    face_size: int


@dataclass
class SceneResult:
    """What `render_scene_identity` wrote: a truth row per photo, a landmark row per face."""

    truth: list[tuple[str, ...]] = field(default_factory=list)
    landmarks: list[tuple[str, ...]] = field(default_factory=list)


def _number(v: float) -> str:
    return f"{v:.3f}"


def render_scene_identity(job: SceneJob) -> SceneResult:
    """Draw and write one identity's photos (JPEG); every photo has its own generator."""
    ident = create_identity(seeded_rng(job.seed, IDENTITY_STREAM, job.index))
    folder = job.root / job.label
    folder.mkdir()
    result = SceneResult()
    for j, (name, wanted) in enumerate(zip(job.names, job.faces, strict=True)):
        rng = seeded_rng(job.seed, SCENE_STREAM, job.index, j)
        strangers = [
            create_identity(seeded_rng(job.seed, STRANGER_STREAM, job.index, j, k))
            for k in range(1, wanted)
        ]
        img, faces = render_scene(
            [ident, *strangers][:wanted],
            rng,
            scene_size=job.scene_size,
            face_size=job.face_size,
        )
        file_name = f"{job.label}/{name}"
        write_new(folder / name, _jpeg(img, int(rng.integers(*JPEG_QUALITY))))
        result.truth.append((file_name, job.label, CLEAN, "", str(len(faces))))
        for k, face in enumerate(faces):
            result.landmarks.append(
                (
                    file_name,
                    *(_number(v) for v in face.landmarks.ravel()),
                    job.label if k == 0 else "",
                    str(k),
                    *(_number(v) for v in face.box),
                )
            )
    return result


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()
