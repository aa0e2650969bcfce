"""`align_dataset`: raw photos in, an aligned class-folder tree and its table out.

The input is a class-folder tree (walked as `fmlkit prepare` walks it) or a dataset_info table
with the folder its file names are relative to. Faces come from a landmark file
(`fmlkit.data.align.landmarks`) or a detector (`fmlkit.data.align.detect`); chunks of images go
to worker processes (`fmlkit.data.align.job`); the tree and the table (``OUT.csv`` beside the
tree by default) are written under temporary names and renamed into place at the end, the table
last, so a run killed half-way leaves nothing that looks complete.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, get_args

from fmlkit.choices import AlignWarp, CropFormat, FaceSelect
from fmlkit.columns import ALIGN_COLUMNS, ALIGN_REASONS, FILE_NAME, LABEL
from fmlkit.data.align.job import (
    AlignSettings,
    ChunkTask,
    ImageJob,
    Row,
    align_chunk,
    use_detector,
)
from fmlkit.data.align.landmarks import Landmarks, read_landmarks
from fmlkit.data.align.template import template_points
from fmlkit.data.align.types import Detector, Face
from fmlkit.data.formats.table import read_table
from fmlkit.data.prepare.walk import FileEntry, check_dataset_dir, walk_dataset
from fmlkit.errors import InputError, OptionError
from fmlkit.io import atomic_path, check_apart, check_output, committed_together
from fmlkit.parallel import default_workers, run_tasks

log = logging.getLogger(__name__)

SELECT = get_args(FaceSelect)
WARPS = get_args(AlignWarp)
FORMATS = get_args(CropFormat)
CHUNK_IMAGES = 16  # images per worker task, at most (fewer when that leaves workers idle)
SHOWN = 5  # names listed in the summary, per kind


@dataclass(frozen=True)
class AlignReport:
    """What `align_dataset` wrote.

    Attributes:
        output: the aligned tree.
        table: the table beside it: one row per input image (`fmlkit.columns.ALIGN_COLUMNS`).
        images: input images (rows of the table).
        aligned: crops written.
        reasons: error reason → images (`fmlkit.columns.ALIGN_REASONS`).
        unmatched: landmark-file names that named no input image (first ones).
        unmatched_count: how many names named no input image.
        missing: input images the landmark file has no row for (first ones).
        missing_count: how many input images it has no row for.
        seconds: wall time.
    """

    output: Path
    table: Path
    images: int
    aligned: int
    reasons: dict[str, int]
    unmatched: tuple[str, ...]
    unmatched_count: int
    missing: tuple[str, ...]
    missing_count: int
    seconds: float

    def summary(self) -> str:
        """One paragraph for the command line."""
        parts = [f"aligned {self.aligned} of {self.images} images into {self.output}"]
        if self.reasons:
            parts.append(", ".join(f"{n} {r}" for r, n in sorted(self.reasons.items())))
        lines = ["; ".join(parts) + f" ({self.seconds:.1f} s); table {self.table}"]
        if self.missing_count:
            lines.append(
                f"{self.missing_count} image(s) without a landmark row: "
                f"{_listing(self.missing, self.missing_count)}"
            )
        if self.unmatched_count:
            lines.append(
                f"{self.unmatched_count} landmark name(s) naming no input image: "
                f"{_listing(self.unmatched, self.unmatched_count)}"
            )
        return "\n".join(lines)


def _listing(names: tuple[str, ...], count: int) -> str:
    more = f", … ({count - len(names)} more)" if count > len(names) else ""
    return ", ".join(names) + more


def default_table_path(out: str | os.PathLike[str]) -> Path:
    """``OUT.csv``, beside the aligned tree."""
    path = Path(out)
    return path.with_name(path.name + ".csv")


def align_dataset(
    input: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    landmarks: str | os.PathLike[str] | None = None,
    detector: str | Detector | None = None,
    size: int = 112,
    template: str = "arcface",
    select: str = "largest",
    min_score: float = 0.5,
    warp: str = "cartesian",
    margin: float = 0.0,
    workers: int = 1,
    root: str | os.PathLike[str] | None = None,
    table: str | os.PathLike[str] | None = None,
    image_format: str = "png",
    quality: int = 95,
    overwrite: bool = False,
    cluster: str | None = None,
) -> AlignReport:
    """Align the faces of every image of ``input`` into ``out``, one crop per image.

    Args:
        input: a class-folder tree, or a dataset_info table (CSV/Parquet) with ``root``.
        out: the aligned tree to write: the input's relative names, suffix ``image_format``.
        landmarks: a landmark file (`fmlkit.data.align.landmarks`); excludes ``detector``.
        detector: a detector name (`fmlkit.data.align.detect.create_detector`) or object.
        size: crop height in pixels (16–1024); the width follows the template.
        template: ``arcface`` (112×112) or ``arcface96`` (112×96), scaled to ``size``.
        select: which face of several: ``largest`` box, nearest the image ``center``, ``best``
            score, or ``single`` (an image with several is a ``several_faces`` row).
        min_score: faces scoring below it are ignored (``low_score`` when none is left).
        warp: ``cartesian`` (similarity to the template) or ``tanh-polar`` (from the box).
        margin: looser crops: the template shrinks by 1 / (1 + margin) about the centre.
        workers: processes aligning chunks of up to `CHUNK_IMAGES` images (at most 2 per CPU).
        root: the folder a table's file names are relative to (a table input only).
        table: the table to write; default ``OUT.csv`` beside the tree.
        image_format: ``png`` or ``jpg``.
        quality: JPEG quality (1–100).
        overwrite: replace an existing tree and table.
        cluster: run the chunks on a Dask cluster (`fmlkit.cluster`; ``workers`` is then
            unused): ``local:N`` or a scheduler's ``tcp://host:port``. The image folder and
            the output's folder must be on a filesystem every worker sees; each worker writes
            its crops into the temporary tree and returns its rows. The output is the same,
            byte for byte, as without it (and as with ``workers=1``).

    Raises:
        OptionError: options out of range or that do not fit together (a detector object,
            not a name, with ``cluster``).
        InputError: a missing input, a bad landmark file, outputs that may not be written.
        ClusterError: a cluster that cannot be reached, or paths a worker does not see.
    """
    start = time.perf_counter()
    _check_options(landmarks, detector, select, warp, image_format, quality, min_score, workers)
    if cluster is not None:
        _check_cluster(cluster, detector)
    template_points(size, template, margin)  # refuses a bad size, template or margin
    source, out_dir = Path(input), Path(out)
    table_path = Path(table) if table is not None else default_table_path(out_dir)
    _check_paths(source, out_dir, table_path, root, overwrite, landmarks)
    images = _list_images(source, root)
    base = Path(root) if root is not None else source
    given = read_landmarks(landmarks) if landmarks is not None else None
    jobs, unmatched, missing = _plan(images, given, image_format)
    if isinstance(detector, str) or detector is None:
        detector_key = detector
    else:
        detector_key = use_detector(detector)
    # on a cluster, chunks as with one local worker (a detector batch holds the same images)
    workers = 1 if cluster is not None else max(1, min(workers, default_workers() * 2, len(jobs)))
    chunk = max(1, min(CHUNK_IMAGES, -(-len(jobs) // workers)))
    threads = 1 if workers > 1 or cluster is not None else None  # the detector's, per process
    settings = AlignSettings(size, template, select, min_score, warp, margin, image_format,
                             quality, detector_key, threads)  # fmt: skip
    # the tree is renamed into place first, the table last (`committed_together`)
    with (
        committed_together(out_dir, table_path),
        atomic_path(table_path) as tmp_table,
        atomic_path(out_dir) as tmp_out,
    ):
        tmp_out.mkdir()
        tasks = [
            ChunkTask(base.absolute(), tmp_out.absolute(), tuple(jobs[i : i + chunk]), settings)
            for i in range(0, len(jobs), chunk)
        ]
        if cluster is None:
            chunks = run_tasks(align_chunk, tasks, workers, desc="align", unit="chunk")
        else:
            chunks = _align_on_cluster(cluster, tasks, base, tmp_out)
        rows = [row for chunk in chunks for row in chunk]
        _write_table(tmp_table, rows)
    reasons = Counter(str(row[-1]) for row in rows if row[-1])
    return AlignReport(
        output=out_dir,
        table=table_path,
        images=len(rows),
        aligned=sum(1 for row in rows if not row[-1]),
        reasons=dict(reasons),
        unmatched=tuple(unmatched[:SHOWN]),
        unmatched_count=len(unmatched),
        missing=tuple(missing[:SHOWN]),
        missing_count=len(missing),
        seconds=time.perf_counter() - start,
    )


def _check_options(
    landmarks: object,
    detector: object,
    select: str,
    warp: str,
    image_format: str,
    quality: int,
    min_score: float,
    workers: int,
) -> None:
    if (landmarks is None) == (detector is None):
        raise OptionError("give one of {landmarks} or {detector}: where the faces come from")
    for name, value, allowed in (
        ("select", select, SELECT),
        ("warp", warp, WARPS),
        ("image_format", image_format, FORMATS),
    ):
        if value not in allowed:
            raise OptionError(f"{{{name}}} is not one of {', '.join(allowed)}", **{name: value})
    if isinstance(detector, str):
        from fmlkit.data.align.detect import check_detector_name

        check_detector_name(detector)
    if not 1 <= quality <= 100:
        raise OptionError("{quality} is out of range: 1–100", quality=quality)
    if not 0.0 <= min_score <= 1.0:
        raise OptionError("{min_score} is out of range: 0–1", min_score=min_score)
    if workers < 1:
        raise OptionError("{workers} must be at least 1", workers=workers)


def _check_cluster(cluster: str, detector: object) -> None:
    from fmlkit.cluster import parse_address

    parse_address(cluster)  # a malformed address: before any work
    if detector is not None and not isinstance(detector, str):
        raise OptionError(
            "{cluster} needs the detector by name (e.g. retinaface): a detector object lives "
            "in this process only, and the workers make their own"
        )


def _align_on_cluster(
    cluster: str, tasks: list[ChunkTask], images: Path, tmp_out: Path
) -> list[list[Row]]:
    """``align_chunk`` of every task on the cluster, the rows in task order; the workers
    must see the image folder and the temporary tree first."""
    from fmlkit.cluster import cluster_session

    with cluster_session(cluster, what="align") as session:
        session.check_shared(read=[images], write=[tmp_out])
        sizes = [len(task.jobs) for task in tasks]
        return session.map(align_chunk, tasks, sizes=sizes, desc="align", unit="img")


def _check_paths(
    source: Path,
    out: Path,
    table: Path,
    root: str | os.PathLike[str] | None,
    overwrite: bool,
    landmarks: str | os.PathLike[str] | None,
) -> None:
    if not source.exists():
        raise InputError(f"input {source} does not exist; give a class folder or a table")
    if source.is_dir() and root is not None:
        raise OptionError("{root} applies to a dataset_info table input, not to a folder")
    if not source.is_dir() and root is None:
        raise OptionError("a dataset_info table names files relative to a folder: give {root}")
    images = source if source.is_dir() else Path(root or ".")
    check_output(out, overwrite=overwrite, what="output folder")
    check_output(table, overwrite=overwrite, what="output table")
    check_apart(
        {"input": source, "landmark file": landmarks, "output folder": out, "output table": table},
        fix="choose another output path",
    )
    real_out, real_images = out.resolve(), images.resolve()
    if real_out.is_relative_to(real_images) or real_images.is_relative_to(real_out):
        raise InputError(
            f"the output folder {out} and the image folder {images} hold one another; "
            "write the output beside the input"
        )
    if table.resolve().is_relative_to(real_out):
        raise InputError(f"the table {table} must not be inside the output folder {out}")


def _list_images(source: Path, root: str | os.PathLike[str] | None) -> list[tuple[str, str]]:
    """(file name, label) of every input image, sorted by file name."""
    if source.is_dir():
        entries = [e for e in walk_dataset(source) if isinstance(e, FileEntry)]
        return [(e.rel, e.label) for e in entries]
    check_dataset_dir(root or ".")
    df = read_table(source, required=(FILE_NAME, LABEL), what=f"dataset_info {source}")
    names = df[FILE_NAME].astype(str)
    for number, name in enumerate(names, 1):
        parts = PurePosixPath(name).parts
        if not parts or name.startswith("/") or ".." in parts or "\\" in name:
            raise InputError(
                f"{source} row {number}: file_name {name!r} is not a relative POSIX path inside "
                "--root (no leading /, no .., no \\); its crop would be written outside the "
                "output folder. Fix the table, e.g. re-create it with `fmlkit prepare`"
            )
    return sorted(zip(names, df[LABEL].astype(str), strict=True))


def _plan(
    images: list[tuple[str, str]], given: Landmarks | None, image_format: str
) -> tuple[list[ImageJob], list[str], list[str]]:
    """The jobs, the landmark names that name no image, and the images with no landmark row."""
    used: set[str] = set()
    taken: set[str] = set()
    jobs, missing = [], []
    for rel, label in images:
        out_rel = str(PurePosixPath(rel).with_suffix("." + image_format))
        if out_rel in taken:
            out_rel = ""
        taken.add(out_rel)
        faces: tuple[Face, ...] | None = None
        if given is not None:
            found = given.lookup(rel)
            if found is None:
                missing.append(rel)
                faces = ()
            else:
                used.add(found[0])
                faces = tuple(found[1])
        jobs.append(ImageJob(rel, label, out_rel, faces))
    unmatched = sorted(set(given.faces) - used) if given is not None else []
    return jobs, unmatched, missing


def _write_table(path: Path, rows: list[Row]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(ALIGN_COLUMNS)
        writer.writerows([_cell(v) for v in row] for row in rows)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return value


assert set(ALIGN_REASONS) >= {"no_face", "several_faces", "low_score", "bad_landmarks"}
