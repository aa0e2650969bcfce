"""How `fmlkit synth --ijb` draws a loose crop: one synthetic face (`faces`, as `fmlkit synth`
and `--scenes` draw it) at a random scale, in-plane rotation and offset, on a background larger
than the face, with its 5 true landmarks and a detector score (`render_ijb_identity`).

A media's frames share the head's pose and expression, the background and the placement, each
with a small jitter (a video's frames); every frame has its own lighting, blur, noise and JPEG
quality. The face's pixels and landmarks go through the same affine (`scene_draw`'s convention:
pixel centres at integers), so the landmarks are exact in the crop's pixels.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fmlkit.data.synth.draw import IDENTITY_STREAM, seeded_rng, write_new
from fmlkit.data.synth.faces import HeadGeometry, Identity, _clothes, _draw_head, create_identity
from fmlkit.data.synth.scene_draw import (
    _background,
    _pillow_inverse,
    _similarity,
    exposure_and_noise,
)

# Streams of the seed sequence (after synth's and scenes', `draw` and `scene_draw`).
IJB_PLAN_STREAM, IJB_MEDIA_STREAM, IJB_FRAME_STREAM = 8, 9, 10
MAX_ROTATION = 20.0  # degrees, either way
FACE_SCALE = (1.2, 1.6)  # the face's drawing in the crop, × its drawing at --size
CROP_RATIO = (1.6, 2.0)  # the crop's side, × the head's height (forehead to chin) in it
MAX_OFFSET = 0.06  # the head's centre from the crop's centre, × the crop's side, each axis
BODY_HEIGHT = 1.6  # the drawn layer's height, × --size (its width is --size)
JPEG_QUALITY = (75, 96)
SCORE_RANGE = (0.5, 0.999999)  # detector scores, 6 decimals


@dataclass(frozen=True)
class IjbFrame:
    """One loose crop to draw: image number ``k`` (``<k>.jpg``), frame ``frame`` of ``frames``
    of media ``media`` (the media's generator is keyed by it)."""

    k: int
    media: int
    frame: int
    frames: int


@dataclass(frozen=True)
class IjbJob:
    """One identity's loose crops: what a worker process gets."""

    folder: Path  # the loose_crop folder
    seed: int
    index: int  # the identity (its traits: `IDENTITY_STREAM`, as `fmlkit synth` draws them)
    size: int
    frames: tuple[IjbFrame, ...]


@dataclass
class IjbResult:
    """What `render_ijb_identity` wrote: per crop, its number, 5 landmarks and score."""

    rows: list[tuple[int, np.ndarray, float]] = field(default_factory=list)


def draw_media_head(
    ident: Identity, seed: int, media: int, size: int
) -> tuple[Image.Image, HeadGeometry, np.random.Generator]:
    """The head and shoulders of ``media`` (RGBA, ``size`` wide, upright), where its landmarks
    lie in that drawing, and the media's generator after the head's draws (its placement and
    background come next)."""
    rng = seeded_rng(seed, IJB_MEDIA_STREAM, media)
    # the drawing's shoulders stop at its bottom edge; a loose crop shows more of them: the
    # shirt's ellipse (as `_clothes` draws it) on a taller layer, the drawing over it
    layer = Image.new("RGBA", (size, round(BODY_HEIGHT * size)), (0, 0, 0, 0))
    top = 0.47 * size + 0.85 * ident.face_h * size
    ImageDraw.Draw(layer).ellipse(
        (0.04 * size, top, 0.96 * size, top + 0.9 * size), fill=ident.shirt
    )
    layer.alpha_composite(_clothes(ident, size))
    head = _draw_head(ImageDraw.Draw(layer), ident, rng, size)
    return layer, head, rng


def _photometric(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, float]:
    """Defocus (down to 35–80 % and back, 40 % of the crops), exposure, colour temperature,
    gamma and luminance noise (σ 0–8); none moves a pixel. Also how degraded the crop is, 0–1."""
    loss = 0.0
    if rng.random() < 0.4:
        factor = rng.uniform(0.35, 0.8)
        small = (max(8, round(img.width * factor)), max(8, round(img.height * factor)))
        img = img.resize(small, Image.Resampling.BOX).resize(img.size, Image.Resampling.BILINEAR)
        loss += (0.8 - factor) / 0.45 * 0.6
    img, sigma = exposure_and_noise(img, rng, darkest=0.7, sigma_max=8.0)
    return img, loss + sigma / 8.0 * 0.4


def render_crop(
    ident: Identity, seed: int, frame: IjbFrame, size: int
) -> tuple[Image.Image, np.ndarray, float]:
    """Draw one loose crop: the RGB image, its (5, 2) landmarks in the crop's pixels
    (insightface order) and a detector score in `SCORE_RANGE` (lower for a blurred, noisy
    crop)."""
    layer, head, media_rng = draw_media_head(ident, seed, frame.media, size)
    scale = media_rng.uniform(*FACE_SCALE)
    side = round(2 * head.ellipse[3] * scale * media_rng.uniform(*CROP_RATIO))
    degrees = media_rng.uniform(-MAX_ROTATION, MAX_ROTATION)
    offset = media_rng.uniform(-MAX_OFFSET, MAX_OFFSET, size=2) * side
    background = _background(media_rng, side, side)
    rng = seeded_rng(seed, IJB_FRAME_STREAM, frame.k)
    if frame.frames > 1:  # a video's frames: the same face, moved a little
        scale *= rng.uniform(0.97, 1.03)
        degrees = float(np.clip(degrees + rng.uniform(-2.0, 2.0), -MAX_ROTATION, MAX_ROTATION))
        offset = offset + rng.uniform(-2.0, 2.0, size=2)
    cx, cy = head.ellipse[:2]
    matrix = _similarity(scale, degrees, np.array([cx, cy]), side / 2 - 0.5 + offset)
    warped = layer.transform(
        (side, side),
        Image.Transform.AFFINE,
        _pillow_inverse(matrix),
        resample=Image.Resampling.BILINEAR,
    )
    background.paste(warped, (0, 0), warped)
    img, loss = _photometric(background, rng)
    points = head.landmarks @ matrix[:, :2].T + matrix[:, 2]
    score = float(np.clip(0.99 - 0.45 * loss + rng.normal(0.0, 0.02), *SCORE_RANGE))
    return img, points, score


def render_ijb_identity(job: IjbJob) -> IjbResult:
    """Draw and write one identity's loose crops (``<k>.jpg``, JPEG)."""
    ident = create_identity(seeded_rng(job.seed, IDENTITY_STREAM, job.index))
    result = IjbResult()
    for frame in job.frames:
        img, points, score = render_crop(ident, job.seed, frame, job.size)
        quality = int(seeded_rng(job.seed, IJB_FRAME_STREAM, frame.k, 1).integers(*JPEG_QUALITY))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)
        write_new(job.folder / f"{frame.k}.jpg", buf.getvalue())
        result.rows.append((frame.k, points, round(score, 6)))
    return result
