"""One worker's share of `align_dataset`: open a chunk of images, find their faces (given, or
from the detector in batches), choose one per image, align it and write the crop; one table row
per image, with the reason when it gave no crop."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fmlkit.columns import BOX_COLUMNS, LANDMARK_COLUMNS
from fmlkit.data.align.template import template_points
from fmlkit.data.align.transform import (
    MAX_RESIDUAL,
    invert_affine,
    landmark_problem,
    similarity_transform,
)
from fmlkit.data.align.types import Detector, Face
from fmlkit.data.align.warp import warp_affine, warp_tanh_polar
from fmlkit.data.formats.images import decode_image

log = logging.getLogger(__name__)

DETECT_BATCH = 16  # images per detector call
_MEASURES = len(BOX_COLUMNS) + len(LANDMARK_COLUMNS) + 2  # box, landmarks, score, residual
Row = tuple[Any, ...]

# The detector of this process: set before the workers fork (a Detector object given to
# `align_dataset`), or made on first use from its name.
_detectors: dict[str, Detector] = {}


@dataclass(frozen=True)
class ImageJob:
    """One input image: ``rel`` under the root, its label, the output name under the aligned
    tree ("" when another image takes that name), and its faces from a landmark file (None:
    ask the detector; an empty tuple: the file has no row for it)."""

    rel: str
    label: str
    out_rel: str
    faces: tuple[Face, ...] | None


@dataclass(frozen=True)
class AlignSettings:
    """`align_dataset`'s options, as every worker needs them."""

    size: int
    template: str
    select: str
    min_score: float
    warp: str
    margin: float
    image_format: str
    quality: int
    detector: str | None
    detector_threads: int | None = None


@dataclass(frozen=True)
class ChunkTask:
    """Images to align: read from ``root``, crops written under ``out_root``."""

    root: Path
    out_root: Path
    jobs: tuple[ImageJob, ...]
    settings: AlignSettings


def use_detector(detector: Detector) -> str:
    """Make ``detector`` the one workers forked after this call use; its key for the task."""
    key = f"object:{id(detector)}"
    _detectors[key] = detector
    return key


def _detector(name: str, threads: int | None) -> Detector:
    if name not in _detectors:
        from fmlkit.data.align.detect import create_detector

        _detectors[name] = create_detector(name, threads=threads)
    return _detectors[name]


def open_image(path: Path) -> tuple[Image.Image | None, str]:
    """The image at ``path`` upright (EXIF orientation applied) in RGB, or None and the reason
    (``unreadable``, ``truncated``, ``decompression_bomb``)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        log.debug("%s: cannot read: %s", path, e)
        return None, "unreadable"
    try:
        return decode_image(data), ""
    except Image.DecompressionBombError:
        return None, "decompression_bomb"
    except Exception as e:  # a damaged file can raise nearly anything inside a Pillow plugin
        log.debug("%s: cannot decode: %r", path, e)
        return None, "truncated" if "truncated" in str(e) else "unreadable"


def align_chunk(task: ChunkTask) -> list[Row]:
    """Align every image of ``task``: its rows, in order (`fmlkit.columns.ALIGN_COLUMNS`)."""
    opened = [open_image(task.root / job.rel) for job in task.jobs]
    faces: list[Sequence[Face] | None] = [job.faces for job in task.jobs]
    wanted = [i for i, (img, _) in enumerate(opened) if img is not None and faces[i] is None]
    if wanted:
        assert task.settings.detector is not None, "no landmarks and no detector"
        detector = _detector(task.settings.detector, task.settings.detector_threads)
        for start in range(0, len(wanted), DETECT_BATCH):
            batch = wanted[start : start + DETECT_BATCH]
            found = detector.detect([np.asarray(opened[i][0]) for i in batch])
            for i, detected in zip(batch, found, strict=True):
                faces[i] = detected
    rows = []
    for job, (img, error), image_faces in zip(task.jobs, opened, faces, strict=True):
        rows.append(_align_one(task, job, img, error, image_faces))
    return rows


def _align_one(
    task: ChunkTask,
    job: ImageJob,
    img: Image.Image | None,
    error: str,
    faces: Sequence[Face] | None,
) -> Row:
    blank: tuple[Any, ...] = (None,) * _MEASURES  # box, landmarks, score, residual
    if not job.out_rel:
        return (job.rel, job.label, "", None, *blank, "name_clash")
    if img is None or faces is None:
        return (job.rel, job.label, "", None, *blank, error or "unreadable")
    s = task.settings
    count = sum(1 for f in faces if f.score >= s.min_score)  # candidates below it are not faces
    face, reason = choose_face(faces, img.size, s.select, s.min_score, given=job.faces is not None)
    if face is None:
        return (job.rel, job.label, "", count, *blank, reason)
    points, (width, height) = template_points(s.size, s.template, s.margin)
    matrix = residual = None
    problem = landmark_problem(face.landmarks, img.width, img.height)
    if problem is None:
        matrix, residual = similarity_transform(face.landmarks, points)
        if residual > MAX_RESIDUAL * height:
            problem = f"residual {residual:.1f} px"
    box = face.box if job.faces is None or matrix is None else crop_footprint(matrix, width, height)
    values = (*box, *np.asarray(face.landmarks, dtype=np.float64).ravel(), face.score, residual)
    if problem is not None or matrix is None:
        log.debug("%s: bad landmarks: %s", job.rel, problem)
        return (job.rel, job.label, "", count, *values, "bad_landmarks")
    if s.warp == "tanh-polar":
        crop = warp_tanh_polar(img, box, s.size)
    else:
        crop = warp_affine(img, matrix, (width, height))
    # a chunk run again (its cluster worker died) writes each of its crops again, whole
    target = task.out_root / job.out_rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if s.image_format == "jpg":
        crop.save(target, "JPEG", quality=s.quality)
    else:
        crop.save(target, "PNG")
    return (job.rel, job.label, job.out_rel, count, *values, "")


def choose_face(
    faces: Sequence[Face],
    image_size: tuple[int, int],
    select: str,
    min_score: float,
    *,
    given: bool,
) -> tuple[Face | None, str]:
    """The face ``select`` picks among those scoring ≥ ``min_score``, or None and the reason
    (``no_face``; ``no_landmarks`` when the faces are ``given`` by a landmark file; ``low_score``;
    ``several_faces`` under ``single``)."""
    if not faces:
        return None, "no_landmarks" if given else "no_face"
    kept = [f for f in faces if f.score >= min_score]
    if not kept:
        return None, "low_score"
    if select == "single":
        return (kept[0], "") if len(kept) == 1 else (None, "several_faces")
    if select == "best":
        return max(kept, key=lambda f: f.score), ""
    if select == "center":
        cx, cy = image_size[0] / 2, image_size[1] / 2
        return min(
            kept,
            key=lambda f: (
                ((f.box[0] + f.box[2]) / 2 - cx) ** 2 + ((f.box[1] + f.box[3]) / 2 - cy) ** 2
            ),
        ), ""
    return max(kept, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1])), ""


def crop_footprint(
    matrix: np.ndarray, width: int, height: int
) -> tuple[float, float, float, float]:
    """The box (x1, y1, x2, y2, image pixels) around what the aligned crop shows."""
    corners = np.array([[0, 0], [width, 0], [0, height], [width, height]], dtype=np.float64)
    inverse = invert_affine(matrix)
    mapped = corners @ inverse[:, :2].T + inverse[:, 2]
    low, high = mapped.min(axis=0), mapped.max(axis=0)
    return float(low[0]), float(low[1]), float(high[0]), float(high[1])
