"""`fmlkit synth`: a synthetic identity-labelled image tree with planted, documented defects.

The tree is ``OUT_DIR/<identity>/<image>``: exactly N × M clean images, plus (with defects) the
faults real collections have, each listed in a truth CSV so later stages can be checked against
known answers. Every image draws from its own seeded generator, so the output is a pure function
of the arguments: byte-identical on every run, whatever the number of workers.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from fmlkit import columns as C
from fmlkit.data.formats.hashing import DEFAULT_NEAR_DUPLICATE_BITS, hamming, hex_to_int, phash_hex
from fmlkit.data.synth.checks import (
    check_outputs,
    check_request,
    estimated_bytes,
    output_folder,
)
from fmlkit.data.synth.faces import Identity, create_identity, render_face
from fmlkit.io import atomic_path
from fmlkit.parallel import default_workers, worker_pool
from fmlkit.progress import track

log = logging.getLogger(__name__)

CLEAN = "clean"
DUPLICATE_KINDS = ("exact_duplicate", "near_duplicate", "cross_label_duplicate")
BROKEN_KINDS = ("tiny", "corrupt", "empty", "not_image")
TRUTH_KINDS = (CLEAN, *DUPLICATE_KINDS, *BROKEN_KINDS)

# Planted defects per clean image (each kind at least once); cross-label needs two identities.
DEFECT_RATES: Mapping[str, float] = {
    "exact_duplicate": 0.03,
    "near_duplicate": 0.03,
    "cross_label_duplicate": 0.015,
    "tiny": 0.01,
    "corrupt": 0.01,
    "empty": 0.005,
    "not_image": 0.005,
}
# Clean images stored in an unusual way (still clean: readable and unique), each at least once.
VARIANT_RATES: Mapping[str, float] = {"png": 0.03, "greyscale": 0.03, "odd_name": 0.03}
# The number comes first, so every copy planted later (next free numbers) sorts after its source.
ODD_NAMES = ("{} img.jpg", "{}_Zoë.jpg", "{} фото.jpg", "{}_写真.jpg", "{} café au lait.jpg")
NOT_IMAGE = b"<html><head><title>404 Not Found</title></head><body>Not Found</body></html>\n"

MAX_REDRAWS = 25  # attempts per clean image to stay > DEFAULT_NEAR_DUPLICATE_BITS from its siblings
TINY_SIDE = (12, 28)  # px, below the 32 px minimum that filters drop
# Streams of the seed sequence, so identities, images, defects and the plan never share draws.
_IDENTITY, _IMAGE, _EXTRA, _PLAN, _SEPARATE = 1, 2, 3, 4, 5
MAX_WORKERS_PER_CPU = 4  # worker processes started at most, per CPU
CROSS_CHECK_LIMIT = 20_000  # clean images; above this the all-pairs identity check is skipped
_PAIR_CHUNK = 1024


@dataclass(frozen=True)
class SynthReport:
    """What `generate_synthetic_dataset` wrote."""

    out_dir: Path
    truth_path: Path
    identities: int
    counts: Mapping[str, int]  # files per truth kind
    variants: Mapping[str, int]  # clean images stored as PNG / greyscale / with an odd name
    redraws: int  # clean images re-drawn for being within the near-duplicate distance of a sibling
    unseparated: int  # clean images still within that distance after MAX_REDRAWS attempts
    seconds: float
    identities_checked: bool = True  # clean images of different identities were checked too

    @property
    def clean(self) -> int:
        return self.counts.get(CLEAN, 0)

    @property
    def files(self) -> int:
        return sum(self.counts.values())

    @property
    def images_per_s(self) -> float:
        return self.files / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> str:
        planted = ", ".join(f"{k} {self.counts[k]}" for k in TRUTH_KINDS[1:] if self.counts.get(k))
        lines = [
            f"Wrote {self.clean} clean images of {self.identities} identities"
            + (f" + {self.files - self.clean} planted defects ({planted})" if planted else "")
            + f" to {self.out_dir} in {self.seconds:.1f} s ({self.images_per_s:.0f} images/s).",
            f"Truth: {self.truth_path}",
        ]
        if any(self.variants.values()):
            lines.append(
                "Clean images stored unusually: "
                + ", ".join(f"{k} {v}" for k, v in self.variants.items())
            )
        if not self.identities_checked:
            lines.append(
                f"Note: over {CROSS_CHECK_LIMIT} clean images, so images of different "
                "identities were not checked for chance pHash near-duplicates."
            )
        if self.unseparated:
            lines.append(
                f"Warning: {self.unseparated} clean images stay within "
                f"{DEFAULT_NEAR_DUPLICATE_BITS} pHash bits of another clean image."
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class _IdentityJob:
    root: Path
    seed: int
    index: int
    label: str
    names: tuple[str, ...]  # file name of each clean image
    greyscale: frozenset[int]
    size: int


@dataclass
class _IdentityResult:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    hashes: list[int] = field(default_factory=list)  # pHash of each row's file, as written
    redraws: int = 0
    unseparated: int = 0


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(list(key))


def _encode(img: Image.Image, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if fmt == "PNG":
        img.save(buf, "PNG", optimize=False, compress_level=6)
    else:
        img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _phash_of(data: bytes) -> int:
    """pHash of encoded bytes, as a reader of the file will compute it."""
    opener = JpegImageFile if data[:2] == b"\xff\xd8" else Image.open  # skip format probing
    with opener(io.BytesIO(data)) as img:
        return hex_to_int(phash_hex(img))


def _write(path: Path, data: bytes) -> None:
    """Create ``path`` holding ``data``. A short write (a full disk, a file-size limit) is
    followed by another, which raises the OSError that says why."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _draw_clean(
    ident: Identity, rng: np.random.Generator, name: str, grey: bool, size: int
) -> tuple[bytes, int]:
    """Encoded bytes of one fresh clean image, and their pHash."""
    img = render_face(ident, rng, size)
    if grey:
        img = img.convert("L")
    fmt = "PNG" if name.lower().endswith(".png") else "JPEG"
    data = _encode(img, fmt, quality=int(rng.integers(75, 96)))
    return data, _phash_of(data)


def _far_from(h: int, others: Iterable[int]) -> bool:
    return all(hamming(h, other) > DEFAULT_NEAR_DUPLICATE_BITS for other in others)


def _render_identity(job: _IdentityJob) -> _IdentityResult:
    """Write one identity's clean images; each stays > the near-duplicate distance from the rest."""
    ident = create_identity(_rng(job.seed, _IDENTITY, job.index))
    folder = job.root / job.label
    folder.mkdir()
    result = _IdentityResult()
    rng = _rng(job.seed, _IMAGE, job.index)  # drawn in sequence: redraws included, still pure
    for j, name in enumerate(job.names):
        for _ in range(MAX_REDRAWS):
            data, h = _draw_clean(ident, rng, name, j in job.greyscale, job.size)
            if _far_from(h, result.hashes):
                break
            result.redraws += 1
        else:
            result.unseparated += 1
        result.hashes.append(h)
        _write(folder / name, data)
        result.rows.append((f"{job.label}/{name}", job.label, CLEAN, ""))
    return result


def _far_from_all_but(h: int, hashes: np.ndarray, k: int) -> bool:
    """Whether ``h`` is beyond the near-duplicate distance of every hash except ``hashes[k]``."""
    distance = np.bitwise_count(hashes ^ np.uint64(h))
    distance[k] = 64
    return bool(distance.min() > DEFAULT_NEAR_DUPLICATE_BITS)


def _close_pairs(hashes: np.ndarray, owner: np.ndarray) -> list[tuple[int, int]]:
    """Index pairs (i < j) of different owners whose hashes are within the near-duplicate
    distance: all pairs, vectorised in chunks."""
    pairs = []
    for start in range(0, len(hashes), _PAIR_CHUNK):
        block = hashes[start : start + _PAIR_CHUNK, None]
        close = np.bitwise_count(block ^ hashes[None, :]) <= DEFAULT_NEAR_DUPLICATE_BITS
        close &= owner[start : start + _PAIR_CHUNK, None] != owner[None, :]
        rows, cols = np.nonzero(close)
        pairs += [
            (start + r, c)
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
            if start + r < c
        ]
    return pairs


def _separate_identities(jobs: list[_IdentityJob], results: list[_IdentityResult]) -> int:
    """Redraw clean images within the near-duplicate distance of another identity's image, so
    that no clean pair anywhere is a pHash near-duplicate. Returns the number still unseparated.
    """
    flat = [(i, j) for i, r in enumerate(results) for j in range(len(r.hashes))]
    hashes = np.array([results[i].hashes[j] for i, j in flat], dtype=np.uint64)
    owner = np.array([i for i, _ in flat])
    unseparated = 0
    for _, k in _close_pairs(hashes, owner):
        i, j = flat[k]
        job, result = jobs[i], results[i]
        if _far_from_all_but(int(hashes[k]), hashes, k):
            continue  # an earlier redraw already moved it
        ident = create_identity(_rng(job.seed, _IDENTITY, job.index))
        rng = _rng(job.seed, _SEPARATE, job.index, j)
        for _ in range(MAX_REDRAWS):
            data, h = _draw_clean(ident, rng, job.names[j], j in job.greyscale, job.size)
            result.redraws += 1
            if _far_from_all_but(h, hashes, k):
                break
        else:
            unseparated += 1
        hashes[k] = h
        result.hashes[j] = h
        (job.root / job.label / job.names[j]).write_bytes(data)
    return unseparated


def _count(rate: float, clean: int) -> int:
    return max(1, math.ceil(rate * clean))


def _near_duplicate(source: bytes, rng: np.random.Generator) -> bytes:
    """Re-encode at another quality, resized a few % and slightly brighter; stay within the
    near-duplicate distance of the source (milder changes are tried until one does)."""
    src_hash = _phash_of(source)
    with Image.open(io.BytesIO(source)) as src:
        src.load()
        base = src.convert("L") if src.mode == "L" else src.convert("RGB")
    data = b""
    for strength in (1.0, 0.5, 0.25, 0.0):
        factor = 1.0 + strength * rng.choice([-1, 1]) * rng.uniform(0.02, 0.06)
        side = (max(8, round(base.width * factor)), max(8, round(base.height * factor)))
        img = base.resize(side, Image.Resampling.BILINEAR) if side != base.size else base
        gain = 1.0 + strength * rng.uniform(0.03, 0.08)
        img = img.point([min(255, round(v * gain)) for v in range(256)] * len(img.getbands()))
        data = _encode(img, "JPEG", quality=int(rng.integers(55, 75)))
        if hamming(_phash_of(data), src_hash) <= DEFAULT_NEAR_DUPLICATE_BITS:
            return data
    return data  # pragma: no cover - re-encoding alone moves a 64-bit pHash by a few bits at most


def _broken(kind: str, seed: int, k: int, identity: int, size: int) -> bytes:
    """Bytes of a tiny, truncated, empty or non-image file (a fresh rendering, not a copy)."""
    if kind == "empty":
        return b""
    if kind == "not_image":
        return NOT_IMAGE
    rng = _rng(seed, _EXTRA, k)
    img = render_face(create_identity(_rng(seed, _IDENTITY, identity)), rng, size)
    if kind == "tiny":
        side = int(rng.integers(TINY_SIDE[0], TINY_SIDE[1] + 1))
        return _encode(img.resize((side, side), Image.Resampling.BILINEAR), "JPEG", 90)
    data = _encode(img, "JPEG", 90)
    return data[: int(len(data) * rng.uniform(0.35, 0.7))]  # corrupt: truncated JPEG


def _plant_defects(
    root: Path,
    clean: list[tuple[str, str, str, str]],
    labels: list[str],
    *,
    seed: int,
    size: int,
    width: int,
    plan: np.random.Generator,
) -> list[tuple[str, str, str, str]]:
    """Add duplicates and broken files beside the clean images; return their truth rows."""
    kinds = [k for k in DEFECT_RATES if k != "cross_label_duplicate" or len(labels) > 1]
    todo = [kind for kind in kinds for _ in range(_count(DEFECT_RATES[kind], len(clean)))]
    todo = [todo[i] for i in plan.permutation(len(todo))]  # names must not reveal the kind
    n_dup = sum(k in DUPLICATE_KINDS for k in todo)
    sources = iter(plan.choice(len(clean), size=n_dup, replace=n_dup > len(clean)))
    per_label = Counter(row[1] for row in clean)
    rows = []
    for k, kind in enumerate(todo):
        if kind in DUPLICATE_KINDS:
            src_name, src_label = clean[int(next(sources))][:2]
            label = src_label
            if kind == "cross_label_duplicate":
                # the copy goes to a later label, so it sorts after its source in file order
                # (keep-first dedup then keeps the original): never from the last label
                if src_label == labels[-1]:
                    earlier = [row for row in clean if row[1] != labels[-1]]
                    src_name, src_label = earlier[int(plan.integers(len(earlier)))][:2]
                after = len(labels) - 1 - labels.index(src_label)
                label = labels[labels.index(src_label) + 1 + int(plan.integers(after))]
            data = (root / src_name).read_bytes()
            if kind == "near_duplicate":
                data = _near_duplicate(data, _rng(seed, _EXTRA, k))
            ext = Path(src_name).suffix if kind != "near_duplicate" else ".jpg"
            source = src_name
        else:
            identity = int(plan.integers(len(labels)))
            label, data, ext, source = (
                labels[identity],
                _broken(kind, seed, k, identity, size),
                ".jpg",
                "",
            )
        name = f"{label}/{per_label[label]:0{width}d}{ext}"
        per_label[label] += 1
        _write(root / name, data)
        rows.append((name, label, kind, source))
    return rows


def _name_width(n: int, m: int) -> int:
    """Digits of image numbers, so names sort in number order even if every planted file
    lands in one folder."""
    planted = sum(_count(rate, n * m) for rate in DEFECT_RATES.values())
    return max(4, len(str(m + planted - 1)))


def _plan_names(
    plan: np.random.Generator, n: int, m: int, defects: bool, width: int
) -> tuple[list[list[str]], list[set[int]], Counter[str]]:
    """File names of every clean image, and which are greyscale; PNG/odd names only with defects."""
    names = [[f"{j:0{width}d}.jpg" for j in range(m)] for _ in range(n)]
    grey: list[set[int]] = [set() for _ in range(n)]
    variants: Counter[str] = Counter()
    if not defects:
        return names, grey, variants
    total = n * m
    for variant, rate in VARIANT_RATES.items():
        for flat in plan.choice(total, size=min(total, _count(rate, total)), replace=False):
            i, j = divmod(int(flat), m)
            if variant == "png":
                names[i][j] = names[i][j][:-4] + ".png"
            elif variant == "greyscale":
                grey[i].add(j)
            else:
                template = ODD_NAMES[int(plan.integers(len(ODD_NAMES)))]
                names[i][j] = template.format(f"{j:0{width}d}")[:-4] + names[i][j][-4:]
            variants[variant] += 1
    return names, grey, variants


def default_truth_path(out_dir: str | Path) -> Path:
    """``OUT_DIR.truth.csv``, beside the folder."""
    out = Path(out_dir)
    return out.with_name(out.name + ".truth.csv")


def generate_synthetic_dataset(
    out_dir: str | Path,
    *,
    identities: int,
    images_per_identity: int,
    seed: int = 0,
    size: int = 112,
    defects: bool = True,
    truth_path: str | Path | None = None,
    overwrite: bool = False,
    workers: int = 1,
) -> SynthReport:
    """Write a synthetic identity dataset and its truth CSV (both atomically).

    Args:
        out_dir: folder to create; it receives ``<identity>/<image>`` files.
        identities: number of identities (N ≥ 1).
        images_per_identity: clean images per identity (M ≥ 1).
        seed: the whole output is a function of the arguments and this seed.
        size: side of the clean images in pixels (64–1024).
        defects: plant duplicates, broken files and unusual formats/names.
        truth_path: where to write the truth CSV; default ``OUT_DIR.truth.csv``.
        overwrite: replace an existing folder and truth file, if synth wrote them.
        workers: processes rendering identities in parallel (output is the same for any count;
            more than one per identity or `MAX_WORKERS_PER_CPU` per CPU are not started).

    Raises:
        InputError: a count out of range or beyond `fmlkit.data.synth.checks.MAX_CLEAN_IMAGES`,
            too little disk space, or outputs that may not be written
            (`fmlkit.data.synth.checks.check_outputs`).
    """
    check_request(identities, images_per_identity, size, workers)
    out = output_folder(out_dir)
    truth = Path(truth_path) if truth_path is not None else default_truth_path(out)
    needed = estimated_bytes(identities, images_per_identity, size)
    check_outputs(out, truth, overwrite=overwrite, needed_bytes=needed)
    workers = min(workers, identities, MAX_WORKERS_PER_CPU * default_workers())

    start = time.perf_counter()
    plan = _rng(seed, _PLAN)
    width = max(5, len(str(identities - 1)))
    labels = [f"id{i:0{width}d}" for i in range(identities)]
    width = _name_width(identities, images_per_identity)  # digits of image numbers
    names, grey, variants = _plan_names(plan, identities, images_per_identity, defects, width)
    with atomic_path(truth) as tmp_truth, atomic_path(out) as root:
        root.mkdir()
        jobs = [
            _IdentityJob(root, seed, i, labels[i], tuple(names[i]), frozenset(grey[i]), size)
            for i in range(identities)
        ]
        if workers > 1:
            with worker_pool(workers) as pool:
                results = list(
                    track(
                        pool.map(_render_identity, jobs, chunksize=4),
                        total=len(jobs),
                        desc="synth",
                        unit="id",
                    )
                )
        else:
            results = [_render_identity(job) for job in track(jobs, desc="synth", unit="id")]
        clean = sum(len(r.rows) for r in results)
        cross_unseparated: int | None = None
        if clean <= CROSS_CHECK_LIMIT:
            cross_unseparated = _separate_identities(jobs, results)
        else:
            log.warning(
                "synth: %d clean images: skipped the check that images of different "
                "identities are > %d pHash bits apart (limit %d)",
                clean,
                DEFAULT_NEAR_DUPLICATE_BITS,
                CROSS_CHECK_LIMIT,
            )
        rows = [row for r in results for row in r.rows]
        if defects:
            rows += _plant_defects(root, rows, labels, seed=seed, size=size, width=width, plan=plan)
        rows.sort(key=lambda row: row[0])
        _write_truth(tmp_truth, rows)
    report = SynthReport(
        out_dir=out,
        truth_path=truth,
        identities=identities,
        counts=dict(Counter(row[2] for row in rows)),
        variants=dict(variants),
        redraws=sum(r.redraws for r in results),
        unseparated=sum(r.unseparated for r in results) + (cross_unseparated or 0),
        identities_checked=cross_unseparated is not None,
        seconds=time.perf_counter() - start,
    )
    log.info("synth: %d files, %d redraws for pHash separation", report.files, report.redraws)
    return report


def _write_truth(path: Path, rows: list[tuple[str, str, str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(C.TRUTH_COLUMNS)
        writer.writerows(rows)
