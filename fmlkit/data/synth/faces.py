"""Synthetic face-like identities: stable traits per identity, fresh variation per image.

`create_identity` draws an identity's traits (head geometry, skin/hair/eye/clothing colours,
clothing texture, moles, accessories) from a random generator; `render_face` draws one image
of it under random pose, scale, crop, expression, background, lighting, blur and noise.
Identity lives in the traits, so a small CNN can learn it; the per-image variation moves the
low frequencies that a perceptual hash sees, so two images of one identity hash far apart.
Both functions are pure: the same generator state gives the same pixels.
"""

from __future__ import annotations

import colorsys
import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw

RGB = tuple[int, int, int]
_NOISE_SIGMAS = (0.0, 2.0, 4.0, 6.0, 8.0)  # grey levels
_LEVELS = np.arange(256) / 255.0


@dataclass(frozen=True)
class Identity:
    """Traits that stay fixed across an identity's images (lengths are fractions of the size)."""

    skin: RGB
    hair: RGB
    hair_style: int  # 0 bald, 1 short, 2 long, 3 curly
    face_w: float  # half-width of the head
    face_h: float  # half-height of the head
    eye_dx: float  # half the distance between the eyes
    eye_y: float  # eye line below the head centre (negative: above)
    eye_r: float
    iris: RGB
    brow_w: int  # brow thickness in pixels at 112 px
    brow_tilt: float
    nose_len: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lips: RGB
    shirt: RGB
    shirt_pattern: int  # 0 plain, 1 stripes, 2 dots
    pattern: RGB
    glasses: RGB | None
    hat: RGB | None
    beard: bool
    earrings: RGB | None
    marks: tuple[tuple[float, float, float], ...]  # moles: (dx, dy, radius) in head units


def _colour(
    rng: np.random.Generator,
    hue: tuple[float, float],
    sat: tuple[float, float],
    val: tuple[float, float],
) -> RGB:
    h = rng.uniform(*hue) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, rng.uniform(*sat), rng.uniform(*val))
    return (round(r * 255), round(g * 255), round(b * 255))


def create_identity(rng: np.random.Generator) -> Identity:
    """Draw the fixed traits of one identity."""
    hair = _colour(rng, (0.0, 1.0), (0.1, 0.85), (0.08, 0.85))
    marks = tuple(
        (
            float(rng.uniform(-0.6, 0.6)),
            float(rng.uniform(-0.3, 0.6)),
            float(rng.uniform(0.02, 0.05)),
        )
        for _ in range(int(rng.integers(0, 4)))
    )
    return Identity(
        skin=_colour(rng, (0.02, 0.11), (0.2, 0.65), (0.3, 0.97)),
        hair=hair,
        hair_style=int(rng.integers(0, 4)),
        face_w=float(rng.uniform(0.19, 0.27)),
        face_h=float(rng.uniform(0.25, 0.33)),
        eye_dx=float(rng.uniform(0.07, 0.11)),
        eye_y=float(rng.uniform(-0.07, 0.0)),
        eye_r=float(rng.uniform(0.025, 0.045)),
        iris=_colour(rng, (0.0, 1.0), (0.3, 1.0), (0.2, 0.8)),
        brow_w=int(rng.integers(1, 5)),
        brow_tilt=float(rng.uniform(-0.03, 0.03)),
        nose_len=float(rng.uniform(0.06, 0.12)),
        nose_w=float(rng.uniform(0.02, 0.05)),
        mouth_y=float(rng.uniform(0.12, 0.18)),
        mouth_w=float(rng.uniform(0.05, 0.11)),
        lips=_colour(rng, (-0.05, 0.03), (0.3, 0.75), (0.35, 0.85)),
        shirt=_colour(rng, (0.0, 1.0), (0.25, 1.0), (0.25, 1.0)),
        shirt_pattern=int(rng.integers(0, 3)),
        pattern=_colour(rng, (0.0, 1.0), (0.0, 1.0), (0.0, 1.0)),
        glasses=_colour(rng, (0, 1), (0, 0.8), (0.0, 0.6)) if rng.random() < 0.3 else None,
        hat=_colour(rng, (0, 1), (0.3, 1), (0.2, 1)) if rng.random() < 0.2 else None,
        beard=bool(rng.random() < 0.25),
        earrings=_colour(rng, (0.1, 0.17), (0.5, 1), (0.7, 1)) if rng.random() < 0.2 else None,
        marks=marks,
    )


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in [-1, 1] of a size×size image, as float32 (x, y) arrays."""
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    x, y = np.meshgrid(axis, axis)
    return x, y


def _ramp(size: int, phi: float, lo: float, hi: float) -> Image.Image:
    """An 'L' image rising linearly from ``lo`` to ``hi`` along direction ``phi`` (radians)."""
    x, y = _grid(size)
    c, s = math.cos(phi), math.sin(phi)
    half = 0.5 / (abs(c) + abs(s))  # keeps t in [0, 1] up to the corners
    t = x * (half * c) + y * (half * s)
    t += 0.5
    t *= hi - lo
    t += lo
    return Image.fromarray(t.astype(np.uint8), "L")


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A two-colour linear gradient in a random direction, with a few random shapes on it."""
    c1, c2 = (tuple(int(v) for v in c) for c in rng.integers(0, 256, size=(2, 3)))
    img = Image.composite(
        Image.new("RGB", (size, size), c2),
        Image.new("RGB", (size, size), c1),
        _ramp(size, rng.uniform(0, 2 * math.pi), 0, 255),
    )
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 5))):
        x0, y0 = rng.uniform(-0.2, 1.0, size=2) * size
        w, h = rng.uniform(0.15, 0.6, size=2) * size
        fill = tuple(int(v) for v in rng.integers(0, 256, size=3))
        box = (x0, y0, x0 + w, y0 + h)
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    return img


@functools.lru_cache(maxsize=4)
def _noise_bank(size: int) -> tuple[tuple[Image.Image, ...], ...]:
    """Luminance noise images, centred on 128, for sigmas 0, 2, 4, 6, 8 (8 tiles each,
    1.5 × ``size`` square so that random crops differ). Fixed seed: part of the generator."""
    rng = np.random.default_rng(20261122)
    side = size * 3 // 2
    bank = []
    for sigma in _NOISE_SIGMAS:
        tiles = []
        for _ in range(8):
            n = np.clip(rng.standard_normal((side, side)) * sigma + 128.5, 0, 255).astype(np.uint8)
            lum = Image.fromarray(n, "L")
            tiles.append(Image.merge("RGB", (lum, lum, lum)))
        bank.append(tuple(tiles))
    return tuple(bank)


def _darker(c: RGB, f: float) -> RGB:
    return (int(c[0] * f), int(c[1] * f), int(c[2] * f))


@functools.lru_cache(maxsize=256)
def _clothes(ident: Identity, size: int) -> Image.Image:
    """Shoulders, clothing texture and neck: fixed per identity, so drawn once and cached."""
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    s = size
    cx, cy = 0.5 * s, 0.47 * s
    fw, fh = ident.face_w * s, ident.face_h * s
    px = max(1, round(s / 112))
    # shoulders and clothing texture
    top = cy + fh * 0.85
    draw.ellipse((cx - 0.46 * s, top, cx + 0.46 * s, top + 0.9 * s), fill=ident.shirt)
    if ident.shirt_pattern == 1:
        for yy in np.arange(top + 4 * px, s, 5 * px):
            draw.line((cx - 0.3 * s, yy, cx + 0.3 * s, yy), fill=ident.pattern, width=2 * px)
    elif ident.shirt_pattern == 2:
        for yy in np.arange(top + 5 * px, s, 7 * px):
            for xx in np.arange(cx - 0.3 * s, cx + 0.3 * s, 7 * px):
                draw.ellipse((xx, yy, xx + 3 * px, yy + 3 * px), fill=ident.pattern)
    draw.rectangle((cx - 0.35 * fw, cy + 0.6 * fh, cx + 0.35 * fw, top + 0.05 * s), fill=ident.skin)

    return layer


@dataclass(frozen=True)
class HeadGeometry:
    """Where `_draw_head` drew the head, in drawing coordinates (pixel centres at integers).

    Attributes:
        landmarks: (5, 2) x, y: left eye centre, right eye centre, nose tip (the middle of the
            nose's base), left and right mouth corners (ends of the drawn lip line or of the
            open mouth); "left" is the smaller x.
        ellipse: the head ellipse's centre x, y and half-width, half-height.
    """

    landmarks: np.ndarray
    ellipse: tuple[float, float, float, float]


def _draw_head(
    draw: ImageDraw.ImageDraw, ident: Identity, rng: np.random.Generator, size: int
) -> HeadGeometry:
    """Draw the head and shoulders, centred, with the image's yaw, gaze and expression;
    return where its face landmarks and head ellipse lie."""
    s = size
    cx, cy = 0.5 * s, 0.47 * s
    yaw = rng.uniform(-0.35, 0.35)
    pitch = rng.uniform(-0.15, 0.15)
    fw, fh = ident.face_w * s * (1 - 0.2 * abs(yaw)), ident.face_h * s
    dx, dy = yaw * fw * 0.6, pitch * fh * 0.4  # where the features move with the pose
    px = max(1, round(s / 112))  # stroke unit (strokes are ≥ 2 units: posing may shrink them)

    if ident.hair_style == 2:  # long hair behind the head
        draw.ellipse(
            (cx - fw * 1.25, cy - fh * 1.1, cx + fw * 1.25, cy + fh * 1.35), fill=ident.hair
        )
    for side in (-1, 1):  # ears and earrings
        ex = cx + side * fw * 0.97 + dx * 0.3
        draw.ellipse(
            (ex - 0.18 * fw, cy - 0.2 * fh, ex + 0.18 * fw, cy + 0.15 * fh), fill=ident.skin
        )
        if ident.earrings is not None:
            draw.ellipse(
                (ex - 2 * px, cy + 0.15 * fh, ex + 2 * px, cy + 0.15 * fh + 4 * px),
                fill=ident.earrings,
            )
    draw.ellipse((cx - fw, cy - fh, cx + fw, cy + fh), fill=ident.skin)

    if ident.beard:
        draw.chord((cx - fw, cy - 0.2 * fh, cx + fw, cy + fh), 20, 160, fill=ident.hair)
    if ident.hair_style in (1, 2):
        draw.chord(
            (cx - fw * 1.04, cy - fh * 1.08, cx + fw * 1.04, cy + fh * 0.5),
            180,
            360,
            fill=ident.hair,
        )
    elif ident.hair_style == 3:
        for a in np.linspace(math.pi * 1.05, math.pi * 1.95, 9):
            hx, hy = cx + fw * math.cos(a), cy + fh * 0.95 * math.sin(a)
            r = 0.35 * fw
            draw.ellipse((hx - r, hy - r, hx + r, hy + r), fill=ident.hair)
    if ident.hat is not None:
        draw.rectangle(
            (cx - fw * 1.25, cy - fh * 0.78, cx + fw * 1.25, cy - fh * 0.62), fill=ident.hat
        )
        draw.chord(
            (cx - fw * 0.95, cy - fh * 1.45, cx + fw * 0.95, cy - fh * 0.2),
            180,
            360,
            fill=ident.hat,
        )

    # eyes, brows, glasses
    ey = cy + dy + ident.eye_y * s
    er = ident.eye_r * s
    gaze = rng.uniform(-0.35, 0.35, size=2) * er
    blink = rng.random() < 0.08
    points: list[tuple[float, float]] = []
    for side in (-1, 1):
        ex = cx + dx + side * ident.eye_dx * s * (1 - 0.4 * side * yaw)
        points.append((ex, ey))
        if blink:
            draw.line((ex - er, ey, ex + er, ey), fill=_darker(ident.skin, 0.4), width=2 * px)
        else:
            draw.ellipse((ex - er, ey - 0.7 * er, ex + er, ey + 0.7 * er), fill=(245, 245, 240))
            ix, iy, ir = ex + gaze[0], ey + gaze[1] * 0.5, 0.55 * er
            draw.ellipse((ix - ir, iy - ir, ix + ir, iy + ir), fill=ident.iris)
            draw.ellipse((ix - ir / 2, iy - ir / 2, ix + ir / 2, iy + ir / 2), fill=(10, 10, 10))
        by = ey - 1.6 * er
        tilt = side * ident.brow_tilt * s
        draw.line(
            (ex - 1.2 * er, by + tilt, ex + 1.2 * er, by - tilt),
            fill=_darker(ident.hair, 0.8),
            width=(1 + ident.brow_w) * px,
        )
        if ident.glasses is not None:
            gr = 1.6 * er
            draw.ellipse((ex - gr, ey - gr, ex + gr, ey + gr), outline=ident.glasses, width=px + 1)
    if ident.glasses is not None:
        draw.line(
            (cx + dx - 0.35 * ident.eye_dx * s, ey, cx + dx + 0.35 * ident.eye_dx * s, ey),
            fill=ident.glasses,
            width=px + 1,
        )

    # nose, mouth (expression varies), moles
    nx, ny = cx + dx * 1.3, ey + 0.02 * s
    nl, nw = ident.nose_len * s, ident.nose_w * s
    draw.polygon([(nx, ny), (nx - nw, ny + nl), (nx + nw, ny + nl)], fill=_darker(ident.skin, 0.82))
    points.append((nx, ny + nl))
    my, mw = cy + dy + ident.mouth_y * s, ident.mouth_w * s
    smile = rng.uniform(-0.3, 1.0)
    mx = cx + dx
    if rng.random() < 0.15:  # open mouth
        draw.ellipse(
            (mx - 0.6 * mw, my - 0.3 * mw, mx + 0.6 * mw, my + 0.35 * mw), fill=(60, 20, 25)
        )
        corner_dx, corner_dy = 0.6 * mw, 0.025 * mw  # the ends of the ellipse's long axis
    else:
        h = max(2.0, abs(smile) * mw * 0.6)
        box = (mx - mw, my - h, mx + mw, my + h)
        draw.arc(
            box,
            20 if smile >= 0 else 200,
            160 if smile >= 0 else 340,
            fill=ident.lips,
            width=2 * px,
        )
        # the arc's ends, at 20° and 160° (smile) or 200° and 340° (frown) of its box
        corner_dx = mw * math.cos(math.radians(20))
        corner_dy = math.copysign(h * math.sin(math.radians(20)), smile)
    for mdx, mdy, mr in ident.marks:
        x0, y0, r = cx + dx + mdx * fw, cy + dy + mdy * fh, max(1.0, mr * s)
        draw.ellipse((x0 - r, y0 - r, x0 + r, y0 + r), fill=_darker(ident.skin, 0.45))
    points += [(mx - corner_dx, my + corner_dy), (mx + corner_dx, my + corner_dy)]
    return HeadGeometry(np.array(points, dtype=np.float64), (cx, cy, fw, fh))


def _pose_transform(rng: np.random.Generator, size: int) -> tuple[float, ...]:
    """Affine coefficients (output → input pixel) for a random rotation, scale and shift."""
    theta = math.radians(float(np.clip(rng.normal(0.0, 10.0), -25.0, 25.0)))
    scale = rng.uniform(0.8, 1.2)
    tx, ty = rng.uniform(-0.1, 0.1, size=2) * size
    c = size / 2.0
    cos_t, sin_t = math.cos(theta) / scale, math.sin(theta) / scale
    # input = R(-theta)/scale · (output - c - t) + c
    a, b, d, e = cos_t, sin_t, -sin_t, cos_t
    ox, oy = -c - tx, -c - ty
    return (a, b, a * ox + b * oy + c, d, e, d * ox + e * oy + c)


def render_face(ident: Identity, rng: np.random.Generator, size: int = 112) -> Image.Image:
    """Render one RGB image of ``ident`` with fresh pose, background, lighting, blur and noise."""
    layer = _clothes(ident, size).copy()
    _draw_head(ImageDraw.Draw(layer), ident, rng, size)
    # nearest-neighbour keeps the warp cheap; blur, noise and JPEG soften the hard edges
    layer = layer.transform(
        (size, size),
        Image.Transform.AFFINE,
        _pose_transform(rng, size),
        resample=Image.Resampling.NEAREST,
    )
    img = _background(rng, size)
    img.paste(layer, (0, 0), layer)
    if rng.random() < 0.5:  # out of focus / low resolution: down to 45–80 %, back up
        side = max(8, int(size * rng.uniform(0.45, 0.8)))
        img = img.resize((side, side), Image.Resampling.BOX).resize(
            (size, size), Image.Resampling.BILINEAR
        )
    return _photometric(img, rng)


def _photometric(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Exposure, colour temperature and gamma (one lookup table), a directional light falling
    off by up to 62 % across the image, and luminance noise — all in 8-bit Pillow operations."""
    size = img.width
    exposure, slope = rng.uniform(0.7, 1.25), rng.uniform(0.0, 0.45)
    tint = 1.0 + rng.uniform(-0.08, 0.08, size=3)
    gamma = rng.uniform(0.8, 1.25)
    lut = np.minimum(_LEVELS * (exposure * (1 + slope) * tint)[:, None], 1.0) ** gamma
    img = img.point((lut.ravel() * 255 + 0.5).astype(np.uint8).tolist())
    light = _ramp(size, rng.uniform(0, 2 * math.pi), 255 * (1 - slope) / (1 + slope), 255)
    img = ImageChops.multiply(img, Image.merge("RGB", (light, light, light)))
    level = int(rng.integers(len(_NOISE_SIGMAS)))
    if level == 0:
        return img
    tiles = _noise_bank(size)[level]
    tile = tiles[int(rng.integers(len(tiles)))]
    ox, oy = (int(o) for o in rng.integers(0, tile.width - size + 1, size=2))
    return ImageChops.add(img, tile.crop((ox, oy, ox + size, oy + size)), 1.0, -128)
