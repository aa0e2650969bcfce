"""`fmlkit synth --scenes`: synthetic "in the wild" photos with their true boxes and 5 landmarks.

N × M photos (`scene_draw` draws them: 0–3 faces each on a larger background), a truth CSV (one
row per file, with the faces drawn) and a landmark CSV (one row per face: box and 5 points, in
the layout `fmlkit align --landmarks` reads). Here: the stage (`generate_scenes`,
`ScenesReport`), the plan (faces per photo, planted broken files) and the output checks; the
names, checks and broken files follow `fmlkit synth` (`synth`, `draw`, `checks`).
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmlkit import columns as C
from fmlkit.data.synth.checks import (
    check_outputs,
    check_request,
    foreign_csv,
    output_folder,
)
from fmlkit.data.synth.draw import PLAN_STREAM, broken_file, seeded_rng, write_new
from fmlkit.data.synth.scene_draw import (
    DEFAULT_SCENE_SIZE,
    SceneJob,
    SceneResult,
    render_scene_identity,
)
from fmlkit.errors import InputError
from fmlkit.io import atomic_path, check_apart, check_output
from fmlkit.parallel import default_workers, worker_pool
from fmlkit.progress import track

log = logging.getLogger(__name__)

SCENE_SIDES = (64, 4096)  # allowed width and height, pixels
# Photos with 0, 2 or 3 faces, as a fraction of all photos (exact counts, rounded up, ≥ 1 each
# when there are enough photos); the rest have one face.
FACE_COUNT_RATES: Mapping[int, float] = {0: 0.05, 2: 0.15, 3: 0.10}
BROKEN_RATES: Mapping[str, float] = {
    "tiny": 0.01,
    "corrupt": 0.01,
    "empty": 0.005,
    "not_image": 0.005,
}


def _plan_faces(plan: np.random.Generator, total: int) -> list[int]:
    """Faces asked for in each of ``total`` photos: exact counts per `FACE_COUNT_RATES`."""
    counts = np.ones(total, dtype=np.int64)
    order = plan.permutation(total)
    start = 0
    for faces, rate in FACE_COUNT_RATES.items():
        n = min(total - start - 1, math.ceil(rate * total)) if total > 1 else 0
        counts[order[start : start + max(0, n)]] = faces
        start += max(0, n)
    return [int(c) for c in counts]


def default_landmarks_path(out_dir: str | Path) -> Path:
    """``OUT_DIR.landmarks.csv``, beside the folder."""
    out = Path(out_dir)
    return out.with_name(out.name + ".landmarks.csv")


@dataclass(frozen=True)
class ScenesReport:
    """What `generate_scenes` wrote."""

    out_dir: Path
    truth_path: Path
    landmarks_path: Path
    identities: int
    photos_by_faces: Mapping[int, int]  # photos with 0, 1, 2, 3 faces
    broken: Mapping[str, int]  # planted broken files per kind
    seconds: float

    @property
    def photos(self) -> int:
        return sum(self.photos_by_faces.values())

    @property
    def faces(self) -> int:
        return sum(k * v for k, v in self.photos_by_faces.items())

    @property
    def files(self) -> int:
        return self.photos + sum(self.broken.values())

    def summary(self) -> str:
        by_faces = ", ".join(f"{v} with {k}" for k, v in sorted(self.photos_by_faces.items()))
        rate = self.files / self.seconds if self.seconds > 0 else float("inf")
        lines = [
            f"Wrote {self.photos} scene photos of {self.identities} identities ({by_faces} "
            f"faces; {self.faces} faces in all)"
            + (
                " + " + ", ".join(f"{k} {v}" for k, v in self.broken.items()) + " broken files"
                if self.broken
                else ""
            )
            + f" to {self.out_dir} in {self.seconds:.1f} s ({rate:.0f} images/s).",
            f"Truth: {self.truth_path}",
            f"Landmarks: {self.landmarks_path}",
        ]
        return "\n".join(lines)


def check_scene_size(scene_size: tuple[int, int]) -> None:
    """Raise `InputError` unless both sides are integers in `SCENE_SIDES`."""
    lo, hi = SCENE_SIDES
    if not (
        len(scene_size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in scene_size)
        and all(lo <= v <= hi for v in scene_size)
    ):
        raise InputError(
            f"scene size must be WIDTHxHEIGHT with each side {lo}–{hi} px, got {scene_size!r}"
        )


def _check_landmarks_output(landmarks: Path, out: Path, truth: Path, overwrite: bool) -> None:
    check_apart({"truth file": truth, "landmark file": landmarks}, fix="Choose another path.")
    if landmarks.resolve().is_relative_to(out.resolve()):
        raise InputError(
            f"the landmark file {landmarks} must not be inside the output folder {out}"
        )
    check_output(landmarks, overwrite=overwrite, what="landmark file")
    foreign = foreign_csv(landmarks, C.SCENE_LANDMARK_COLUMNS)
    if foreign:
        raise InputError(
            f"{landmarks} was not written by synth ({foreign}); it is not replaced even with "
            "overwrite. Delete it yourself, or choose another path"
        )


def generate_scenes(
    out_dir: str | Path,
    *,
    identities: int,
    images_per_identity: int,
    seed: int = 0,
    size: int = 112,
    scene_size: tuple[int, int] = DEFAULT_SCENE_SIZE,
    defects: bool = True,
    truth_path: str | Path | None = None,
    landmarks_path: str | Path | None = None,
    overwrite: bool = False,
    workers: int = 1,
) -> ScenesReport:
    """Write synthetic photos with 0–3 faces each, a truth CSV and a landmark CSV (atomically).

    Args:
        out_dir: folder to create; it receives ``<identity>/<photo>.jpg`` files.
        identities: number of identities (N ≥ 1).
        images_per_identity: photos per identity (M ≥ 1), some with no face (`FACE_COUNT_RATES`).
        seed: the whole output is a function of the arguments and this seed.
        size: side of each face's drawing in pixels before it is scaled into the photo (64–1024).
        scene_size: width, height of the photos in pixels.
        defects: also plant tiny, truncated, empty and non-image files (`BROKEN_RATES`).
        truth_path: one row per file; default ``OUT_DIR.truth.csv``.
        landmarks_path: one row per face; default ``OUT_DIR.landmarks.csv``.
        overwrite: replace existing outputs, if synth wrote them.
        workers: processes drawing identities in parallel (the output does not depend on it).

    Raises:
        InputError: a count or size out of range, too little disk space, or outputs that may
            not be written.
    """
    check_request(identities, images_per_identity, size, workers)
    check_scene_size(scene_size)
    out = output_folder(out_dir)
    truth = Path(truth_path) if truth_path is not None else out.with_name(out.name + ".truth.csv")
    landmarks = Path(landmarks_path) if landmarks_path is not None else default_landmarks_path(out)
    side = max(64, math.isqrt(scene_size[0] * scene_size[1]))
    needed = int(identities * images_per_identity * (0.25 * side * side + 4096))
    check_outputs(out, truth, overwrite=overwrite, needed_bytes=needed)
    _check_landmarks_output(landmarks, out, truth, overwrite)
    workers = min(workers, identities, 4 * default_workers())

    start = time.perf_counter()
    plan = seeded_rng(seed, PLAN_STREAM)
    labels = [f"id{i:0{max(5, len(str(identities - 1)))}d}" for i in range(identities)]
    m, total = images_per_identity, identities * images_per_identity
    planted = sum(max(1, math.ceil(rate * total)) for rate in BROKEN_RATES.values())
    width = max(4, len(str(m + planted - 1)))  # digits of photo numbers, planted files included
    wanted = _plan_faces(plan, total)
    with (
        atomic_path(truth) as tmp_truth,
        atomic_path(landmarks) as tmp_landmarks,
        atomic_path(out) as root,
    ):
        root.mkdir()
        jobs = [
            SceneJob(
                root,
                seed,
                i,
                labels[i],
                tuple(f"{j:0{width}d}.jpg" for j in range(m)),
                tuple(wanted[i * m : (i + 1) * m]),
                scene_size,
                size,
            )
            for i in range(identities)
        ]
        results = _draw(jobs, workers)
        truth_rows = [row for r in results for row in r.truth]
        broken = _plant_broken(root, labels, m, width, seed, size, plan) if defects else []
        truth_rows += broken
        truth_rows.sort(key=lambda row: row[0])
        _write_csv(tmp_truth, C.SCENE_TRUTH_COLUMNS, truth_rows)
        _write_csv(
            tmp_landmarks, C.SCENE_LANDMARK_COLUMNS, [r for x in results for r in x.landmarks]
        )
    kinds = Counter(row[2] for row in broken)
    report = ScenesReport(
        out_dir=out,
        truth_path=truth,
        landmarks_path=landmarks,
        identities=identities,
        photos_by_faces=dict(sorted(Counter(int(r[4]) for r in truth_rows if r[4]).items())),
        broken={k: kinds[k] for k in BROKEN_RATES if kinds[k]},
        seconds=time.perf_counter() - start,
    )
    log.info("synth --scenes: %d photos, %d faces", report.photos, report.faces)
    return report


def _draw(jobs: list[SceneJob], workers: int) -> list[SceneResult]:
    if workers > 1:
        with worker_pool(workers) as pool:
            return list(
                track(pool.map(render_scene_identity, jobs), total=len(jobs), desc="scenes")
            )
    return [render_scene_identity(job) for job in track(jobs, desc="scenes", unit="id")]


def _plant_broken(
    root: Path,
    labels: list[str],
    m: int,
    width: int,
    seed: int,
    size: int,
    plan: np.random.Generator,
) -> list[tuple[str, ...]]:
    """Broken files (`BROKEN_RATES` of the photos, ≥ 1 each) after the photos of random
    identities, as `fmlkit synth` plants them; their truth rows (no faces)."""
    total = len(labels) * m
    todo = [k for k, rate in BROKEN_RATES.items() for _ in range(max(1, math.ceil(rate * total)))]
    todo = [todo[i] for i in plan.permutation(len(todo))]
    per_label = Counter(dict.fromkeys(labels, m))
    rows: list[tuple[str, ...]] = []
    for k, kind in enumerate(todo):
        identity = int(plan.integers(len(labels)))
        label = labels[identity]
        name = f"{label}/{per_label[label]:0{width}d}.jpg"
        per_label[label] += 1
        write_new(root / name, broken_file(kind, seed, k, identity, size))
        rows.append((name, label, kind, "", ""))
    return rows


def _write_csv(path: Path, header: Sequence[str], rows: list[tuple[str, ...]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
