"""Where the 5 landmarks go in the aligned crop: ArcFace's 112×112 template, its 112×96
variant, any size scaled from them, and a margin for looser crops."""

from __future__ import annotations

import numpy as np

from fmlkit.choices import AlignTemplate
from fmlkit.data.align.types import ARCFACE_112
from fmlkit.errors import InputError, OptionError

TemplateName = AlignTemplate
TEMPLATES: dict[str, tuple[np.ndarray, tuple[int, int]]] = {
    # name: (points in output pixels, (width, height)) at height 112
    "arcface": (ARCFACE_112, (112, 112)),
    "arcface96": (ARCFACE_112 - np.array([8.0, 0.0]), (96, 112)),  # insightface's 112×96
}
MAX_MARGIN = 2.0  # the crop at most 3× the template's


def template_points(
    size: int = 112, template: str = "arcface", margin: float = 0.0
) -> tuple[np.ndarray, tuple[int, int]]:
    """The 5 target points (output pixels, centres at integers) and the crop's (width, height).

    ``size`` is the output height; the width scales with it (112×96 → ``size`` × round(96 ·
    size / 112)). The points scale by s = size / 112 about the origin, then shrink by
    1 / (1 + ``margin``) towards the crop's centre c = (width / 2, height / 2):
    p = c + (s · p₁₁₂ − c) / (1 + margin), so margin 0.25 shows a quarter more of the face
    around the same centre.

    Raises:
        InputError: an unknown template.
        OptionError: a size under 16 or over 1024, a margin outside [0, `MAX_MARGIN`].
    """
    if template not in TEMPLATES:
        raise InputError(f"template {template!r} is unknown; choose one of {', '.join(TEMPLATES)}")
    if not 16 <= size <= 1024:
        raise OptionError("{size} is out of range: 16–1024 pixels", size=size)
    if not 0.0 <= margin <= MAX_MARGIN:
        raise OptionError(f"{{margin}} is out of range: 0–{MAX_MARGIN:g}", margin=margin)
    base, (width, height) = TEMPLATES[template]
    scale = size / height
    out_w, out_h = round(width * scale), size
    centre = np.array([out_w / 2, out_h / 2])
    points = centre + (base * scale - centre) / (1.0 + margin)
    return points, (out_w, out_h)
