"""Face detection for `fmlkit align`: RetinaFace (MobileNetV1 ×0.25, 5 landmarks) on onnxruntime.

The model ships inside fmlkit (``weights/retinaface_mnet025.onnx``, MIT; provenance and sha256 in
``weights/LICENSE.retinaface`` and docs/align.md); nothing is downloaded. Pre- and
post-processing follow biubug6/Pytorch_Retinaface (BGR minus (104, 117, 123); prior boxes of
sides 16–512 on strides 8, 16, 32; variances 0.1 and 0.2), written here in numpy without OpenCV
(adapted, with thanks, from the MIT-licensed tiny-retinaface 0.1.0).

Each image is detected at a bounded working size: its longer side scaled down to ``max_side``
(scaled up to `MIN_SIDE` when smaller, so a 25-pixel face is found), centred on a canvas of at
least `MIN_CANVAS` pixels a side, so a face that fills its photo keeps some context. Boxes and
landmarks come back in full-image pixels, pixel centres at integers (the template's convention).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from fmlkit.data.align.types import Detector, Face
from fmlkit.errors import FmlkitError, InputError, OptionError

#: The detectors `create_detector` knows, by name.
DETECTOR_NAMES: tuple[str, ...] = ("retinaface",)


def check_detector_name(name: str) -> None:
    """Raise `OptionError` (naming ``{detector}``) for a detector that is not bundled."""
    if name not in DETECTOR_NAMES:
        raise OptionError(
            f"{{detector}} is not a known detector; choose one of: {', '.join(DETECTOR_NAMES)}",
            detector=name,
        )


MODEL_FILE = "retinaface_mnet025.onnx"
MODEL_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"

MIN_SIDE = 128  # a smaller image is scaled up until its longer side is this long
MIN_CANVAS = 256  # and centred on a canvas at least this large, its border the mean colour
_STRIDE = 32  # the coarsest feature map's step: canvases are multiples of it
_PRIORS = ((8, (16, 32)), (16, (64, 128)), (32, (256, 512)))  # step, prior sides (pixels)
_VARIANCE = (0.1, 0.2)  # centre, size
_MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
_PAD_RGB = np.array([123, 117, 104], dtype=np.uint8)  # the mean: zero after normalisation
_CANDIDATE_SCORE = 0.02  # lower scores are dropped before NMS; --min-score filters later
_TOP_BEFORE_NMS = 5000
_KEEP_AFTER_NMS = 750


@dataclass(frozen=True)
class _Placement:
    """Where one image lies on its working canvas: scale factors and offset (pixels)."""

    scale_x: float
    scale_y: float
    left: int
    top: int


class RetinaFaceDetector:
    """RetinaFace-mobilenet0.25 on onnxruntime's CPU provider (see the module docstring).

    Attributes:
        name: ``"retinaface"``.
        max_side: the longest working side, in pixels; larger images are scaled down to it.
        batch_size: images per inference call (padded to one canvas per call).
        threads: onnxruntime's intra-op threads.
    """

    name = "retinaface"

    def __init__(self, *, max_side: int = 640, batch_size: int = 1, threads: int = 1) -> None:
        self.max_side = max_side
        self.batch_size = batch_size
        self.threads = threads

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces in each image, best score first, every candidate scoring at least 0.02.

        Args:
            images: H×W×3 uint8 RGB arrays at full resolution.

        Returns:
            One list of faces per image, boxes and landmarks in full-image pixels (a box may
            reach a little past the image's edge).

        Raises:
            InputError: an image is not H×W×3 uint8.
        """
        for index, image in enumerate(images):
            _check_image(index, image)
        results: list[list[Face]] = [[] for _ in images]
        sizes = [_working_size(image.shape[0], image.shape[1], self.max_side) for image in images]
        order = sorted(range(len(images)), key=lambda i: sizes[i])  # like shapes batch together
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            faces = self._detect_batch([images[i] for i in chunk], [sizes[i] for i in chunk])
            for i, found in zip(chunk, faces, strict=True):
                results[i] = found
        return results

    def _detect_batch(
        self, images: list[np.ndarray], sizes: list[tuple[int, int]]
    ) -> list[list[Face]]:
        """Run one padded batch through the model and decode each image's faces."""
        height = _round_up(max(MIN_CANVAS, *(h for h, _ in sizes)))
        width = _round_up(max(MIN_CANVAS, *(w for _, w in sizes)))
        canvas = np.empty((len(images), height, width, 3), dtype=np.uint8)
        canvas[:] = _PAD_RGB
        placements = []
        for slot, (image, (h, w)) in enumerate(zip(images, sizes, strict=True)):
            top, left = (height - h) // 2, (width - w) // 2
            canvas[slot, top : top + h, left : left + w] = _resize(image, h, w)
            placements.append(
                _Placement(w / image.shape[1], h / image.shape[0], left=left, top=top)
            )
        blob = (canvas[..., ::-1].astype(np.float32) - _MEAN_BGR).transpose(0, 3, 1, 2)
        loc, conf, points = _session(self.threads).run(None, {"input": np.ascontiguousarray(blob)})
        priors = _priors(height, width)
        return [
            _faces(loc[k], conf[k, :, 1], points[k], priors, placements[k])
            for k in range(len(images))
        ]


def create_detector(
    name: str = "retinaface",
    *,
    max_side: int = 640,
    batch_size: int = 1,
    threads: int | None = None,
) -> Detector:
    """The face detector called ``name`` (one of `DETECTOR_NAMES`).

    Args:
        name: the detector; ``"retinaface"`` (bundled, see docs/align.md).
        max_side: the longest side images are detected at, in pixels (64–4096); larger
            images are scaled down, their faces mapped back to full resolution.
        batch_size: images per inference call (1–256), padded to one canvas. On CPU one at a
            time was as fast or faster (docs/align.md); larger batches suit a busy accelerator.
        threads: onnxruntime intra-op threads; None: `fmlkit.parallel.auto_threads` (every
            usable CPU; give 1 in each of several worker processes).

    Raises:
        OptionError: an unknown name or an option out of range.
    """
    from fmlkit.parallel import auto_threads

    check_detector_name(name)
    if not 64 <= max_side <= 4096:
        raise OptionError("{max_side} is out of range: 64–4096 pixels", max_side=max_side)
    if not 1 <= batch_size <= 256:
        raise OptionError("{batch_size} is out of range: 1–256 images", batch_size=batch_size)
    if threads is not None and threads < 1:
        raise OptionError("{threads} must be at least 1", threads=threads)
    chosen = auto_threads() if threads is None else threads
    return RetinaFaceDetector(max_side=max_side, batch_size=batch_size, threads=chosen)


def _check_image(index: int, image: np.ndarray) -> None:
    """Refuse what is not an H×W×3 uint8 array with pixels."""
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] != 3
        or image.shape[0] < 1
        or image.shape[1] < 1
    ):
        what = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image)
        raise InputError(
            f"image {index} given to the face detector is {what}: expected an H×W×3 uint8 RGB "
            "array (decode with fmlkit.data.formats.images, convert to RGB)"
        )


def _working_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """The (height, width) an image is detected at: longer side ≤ ``max_side``, ≥ `MIN_SIDE`."""
    longest = max(height, width)
    if longest > max_side:
        scale = max_side / longest
    elif longest < MIN_SIDE:
        scale = MIN_SIDE / longest
    else:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


def _round_up(pixels: int) -> int:
    return -(-pixels // _STRIDE) * _STRIDE


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` at ``height`` × ``width`` (Pillow, bilinear; area-averaging when shrinking)."""
    if image.shape[:2] == (height, width):
        return image
    from PIL import Image

    resized = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized)


@functools.lru_cache(maxsize=8)
def _priors(height: int, width: int) -> np.ndarray:
    """Prior boxes (cx, cy, side, side) in canvas pixels, in the model's output order."""
    parts = []
    for step, sides in _PRIORS:
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        yy, xx = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centres = (np.stack([xx.ravel(), yy.ravel()], axis=1) + 0.5) * step
        size = np.tile(np.asarray(sides, dtype=np.float64), rows * cols)[:, None]
        parts.append(np.hstack([np.repeat(centres, len(sides), axis=0), size, size]))
    return np.vstack(parts)


def _faces(
    loc: np.ndarray,
    scores: np.ndarray,
    points: np.ndarray,
    priors: np.ndarray,
    placement: _Placement,
) -> list[Face]:
    """Decode one image's outputs, keep candidates after NMS, map them to full resolution."""
    keep = np.flatnonzero(scores >= _CANDIDATE_SCORE)
    keep = keep[np.argsort(-scores[keep], kind="stable")][:_TOP_BEFORE_NMS]
    prior = priors[keep]
    centre = prior[:, :2] + loc[keep, :2] * _VARIANCE[0] * prior[:, 2:]
    size = prior[:, 2:] * np.exp(loc[keep, 2:] * _VARIANCE[1])
    boxes = np.hstack([centre - size / 2, centre + size / 2])
    marks = prior[:, None, :2] + points[keep].reshape(-1, 5, 2) * _VARIANCE[0] * prior[:, None, 2:]
    chosen = _nms(boxes, iou=0.4)[:_KEEP_AFTER_NMS]
    offset = np.array([placement.left, placement.top], dtype=np.float64)
    scale = np.array([placement.scale_x, placement.scale_y])
    # working pixel centres at integers, like full-image ones: x = (x' - left + 0.5) / s - 0.5
    boxes = (boxes[chosen].reshape(-1, 2, 2) - offset + 0.5) / scale - 0.5
    marks = (marks[chosen] - offset + 0.5) / scale - 0.5
    faces = []
    for box, mark, score in zip(boxes, marks, scores[keep][chosen], strict=True):
        (x1, y1), (x2, y2) = box.tolist()
        faces.append(Face(box=(x1, y1, x2, y2), landmarks=mark.copy(), score=float(score)))
    return faces


def _nms(boxes: np.ndarray, *, iou: float) -> list[int]:
    """Greedy non-maximum suppression over ``boxes`` (x1, y1, x2, y2) sorted best first: the
    indices kept, best first."""
    areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    rest = np.arange(len(boxes))
    kept: list[int] = []
    while rest.size:
        best, rest = rest[0], rest[1:]
        kept.append(int(best))
        width = (
            np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0])
        ).clip(0)
        height = (
            np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1])
        ).clip(0)
        overlap = width * height
        union = areas[best] + areas[rest] - overlap
        rest = rest[overlap <= iou * np.maximum(union, 1e-9)]
    return kept


_SESSIONS: dict[tuple[int, int], Any] = {}


def _session(threads: int) -> Any:
    """The onnxruntime session for ``threads`` in this process (made once; a forked worker
    makes its own, since onnxruntime's thread pools do not survive a fork)."""
    key = (os.getpid(), threads)
    if key not in _SESSIONS:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # no warnings about unused initialisers on stderr
        _SESSIONS[key] = ort.InferenceSession(
            _model_bytes(), options, providers=["CPUExecutionProvider"]
        )
    return _SESSIONS[key]


def _model_bytes() -> bytes:
    """The bundled model, checked against its sha256."""
    path = resources.files(__name__.rpartition(".")[0]).joinpath("weights").joinpath(MODEL_FILE)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise FmlkitError(
            f"the bundled face detector model {MODEL_FILE} cannot be read ({e}); reinstall fmlkit"
        ) from e
    if hashlib.sha256(data).hexdigest() != MODEL_SHA256:
        raise FmlkitError(
            f"the bundled face detector model {path} is damaged (its sha256 is not "
            f"{MODEL_SHA256}); reinstall fmlkit"
        )
    return data
