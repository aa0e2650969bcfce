"""`fmlkit synth`: a synthetic identity-labelled image tree with planted, documented defects.

The tree is ``OUT_DIR/<identity>/<image>``: N × M clean images, plus (with defects) the faults
real collections have, and (with label noise, `label_noise`) faults in the labels, each listed
in a truth CSV so later stages can be checked against known answers. Every image draws from its
own seeded generator, so the output is a pure function of the arguments:
byte-identical on every run, whatever the number of workers.

Here: the stage (`generate_synthetic_dataset`, `SynthReport`), the plan (names, variants, which
defects go where) and the truth CSV. Drawing the images is `draw`; the checks of a request and
its outputs are `checks`.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmlkit import columns as C
from fmlkit.data.formats.hashing import DEFAULT_NEAR_DUPLICATE_BITS
from fmlkit.data.synth.checks import (
    check_outputs,
    check_request,
    estimated_bytes,
    output_folder,
)
from fmlkit.data.synth.draw import (
    CLEAN,
    EXTRA_STREAM,
    NOISE_STREAM,
    PLAN_STREAM,
    IdentityJob,
    IdentityResult,
    broken_file,
    near_duplicate,
    render_identity,
    seeded_rng,
    separate_identities,
    write_new,
)
from fmlkit.data.synth.label_noise import (
    JobPlan,
    TreePlan,
    check_label_noise,
    noise_counts,
    plan_label_noise,
)
from fmlkit.io import atomic_path
from fmlkit.parallel import default_workers, worker_pool
from fmlkit.progress import track

log = logging.getLogger(__name__)

DUPLICATE_KINDS = ("exact_duplicate", "near_duplicate", "cross_label_duplicate")
BROKEN_KINDS = ("tiny", "corrupt", "empty", "not_image")
TRUTH_KINDS = (CLEAN, *DUPLICATE_KINDS, *BROKEN_KINDS, *C.LABEL_NOISE_KINDS)

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

MAX_WORKERS_PER_CPU = 4  # worker processes started at most, per CPU
CROSS_CHECK_LIMIT = 20_000  # clean images; above this the all-pairs identity check is skipped


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
    split_identities: int = 0  # label noise: identities whose images lie in two folders
    mixed_folders: int = 0  # label noise: folders holding the images of a second identity

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
        if self.counts.get(C.MISLABEL) or self.split_identities or self.mixed_folders:
            lines.append(
                f"Label noise: {self.counts.get(C.MISLABEL, 0)} mislabelled images; identities "
                f"split over two folders: {self.split_identities} "
                f"({self.counts.get(C.SPLIT_IDENTITY, 0)} images moved); folders mixed with a "
                f"new identity: {self.mixed_folders} ({self.counts.get(C.MIXED, 0)} images)."
            )
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


def _count(rate: float, clean: int) -> int:
    return max(1, math.ceil(rate * clean))


def _plant_defects(
    root: Path,
    clean: list[tuple[str, str, str, str]],
    labels: list[str],
    *,
    seed: int,
    size: int,
    width: int,
    plan: np.random.Generator,
    files: list[tuple[str, str, str, str]] | None = None,
    owners: Mapping[str, int] | None = None,
) -> list[tuple[str, str, str, str]]:
    """Add duplicates of the ``clean`` images and broken files; return their truth rows.

    ``files`` are every file written so far (default: ``clean``), so planted files take the next
    free numbers; ``owners`` the identity whose images fill each label's folder (default: the
    label's position), from which broken images are drawn."""
    kinds = [k for k in DEFECT_RATES if k != "cross_label_duplicate" or len(labels) > 1]
    todo = [kind for kind in kinds for _ in range(_count(DEFECT_RATES[kind], len(clean)))]
    todo = [todo[i] for i in plan.permutation(len(todo))]  # names must not reveal the kind
    n_dup = sum(k in DUPLICATE_KINDS for k in todo)
    sources = iter(plan.choice(len(clean), size=n_dup, replace=n_dup > len(clean)))
    per_label = Counter(row[1] for row in (clean if files is None else files))
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
                data = near_duplicate(data, seeded_rng(seed, EXTRA_STREAM, k))
            ext = Path(src_name).suffix if kind != "near_duplicate" else ".jpg"
            source = src_name
        else:
            position = int(plan.integers(len(labels)))
            label = labels[position]
            identity = position if owners is None else owners[label]
            data, ext, source = broken_file(kind, seed, k, identity, size), ".jpg", ""
        name = f"{label}/{per_label[label]:0{width}d}{ext}"
        per_label[label] += 1
        write_new(root / name, data)
        rows.append((name, label, kind, source))
    return rows


def _name_width(n: int, m: int, extra: int = 0) -> int:
    """Digits of image numbers, so names sort in number order even if every planted file
    (and ``extra`` images of label noise) lands in one folder."""
    planted = sum(_count(rate, n * m) for rate in DEFECT_RATES.values())
    return max(4, len(str(m + extra + planted - 1)))


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
    label_noise: bool = False,
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
        label_noise: also plant mislabelled images, identities split over two folders and
            folders mixing two identities (`fmlkit.data.synth.label_noise`; N ≥ 4, M ≥ 4).

    Raises:
        InputError: a count out of range or beyond `fmlkit.data.synth.checks.MAX_CLEAN_IMAGES`,
            too few identities or images for label noise,
            too little disk space, or outputs that may not be written
            (`fmlkit.data.synth.checks.check_outputs`).
    """
    check_request(identities, images_per_identity, size, workers)
    if label_noise:
        check_label_noise(identities, images_per_identity)
    out = output_folder(out_dir)
    truth = Path(truth_path) if truth_path is not None else default_truth_path(out)
    needed = estimated_bytes(identities, images_per_identity, size)
    check_outputs(out, truth, overwrite=overwrite, needed_bytes=needed)
    workers = min(workers, identities, MAX_WORKERS_PER_CPU * default_workers())

    start = time.perf_counter()
    plan = seeded_rng(seed, PLAN_STREAM)
    tree, variants, width = _plan_tree(
        plan, identities, images_per_identity, seed=seed, defects=defects, label_noise=label_noise
    )
    with atomic_path(truth) as tmp_truth, atomic_path(out) as root:
        root.mkdir()
        jobs = [
            IdentityJob(root, seed, p.index, p.label, p.names, p.greyscale, size, p.placed)
            for p in tree.jobs
        ]
        results, cross_unseparated = _draw_identities(jobs, workers)
        rows = [row for r in results for row in r.rows]
        if defects:
            rows += _plant_defects(
                root,
                [row for row in rows if row[2] == CLEAN],
                list(tree.labels),
                seed=seed,
                size=size,
                width=width,
                plan=plan,
                files=rows,
                owners=tree.owners,
            )
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
        split_identities=len({row[3] for row in rows if row[2] == C.SPLIT_IDENTITY}),
        mixed_folders=len({row[3] for row in rows if row[2] == C.MIXED}),
    )
    log.info("synth: %d files, %d redraws for pHash separation", report.files, report.redraws)
    return report


def _plan_tree(
    plan: np.random.Generator,
    n: int,
    m: int,
    *,
    seed: int,
    defects: bool,
    label_noise: bool,
) -> tuple[TreePlan, Counter[str], int]:
    """Every identity's images, where each is filed, and under which name; also how many clean
    images are stored unusually, and the digits of image numbers."""
    extra = m + noise_counts(n, m)[C.MISLABEL] if label_noise else 0  # a mixed folder's gain
    width = _name_width(n, m, extra)
    names, grey, variants = _plan_names(plan, n, m, defects, width)
    if label_noise:
        noise = plan_label_noise(names, grey, width=width, rng=seeded_rng(seed, NOISE_STREAM))
        return noise, variants, width
    digits = max(5, len(str(n - 1)))
    labels = [f"id{i:0{digits}d}" for i in range(n)]
    jobs = tuple(JobPlan(i, labels[i], tuple(names[i]), (), frozenset(grey[i])) for i in range(n))
    return (
        TreePlan(tuple(labels), jobs, {label: i for i, label in enumerate(labels)}),
        variants,
        width,
    )


def _draw_identities(
    jobs: list[IdentityJob], workers: int
) -> tuple[list[IdentityResult], int | None]:
    """Draw every identity's clean images (in ``workers`` processes when more than one), then
    keep clean images of different identities apart; the results, and how many clean images
    stay too close to another identity's (None: not checked, over `CROSS_CHECK_LIMIT`)."""
    if workers > 1:
        with worker_pool(workers) as pool:
            results = list(
                track(
                    pool.map(render_identity, jobs, chunksize=4),
                    total=len(jobs),
                    desc="synth",
                    unit="id",
                )
            )
    else:
        results = [render_identity(job) for job in track(jobs, desc="synth", unit="id")]
    clean = sum(len(r.rows) for r in results)
    if clean <= CROSS_CHECK_LIMIT:
        return results, separate_identities(jobs, results)
    log.warning(
        "synth: %d clean images: skipped the check that images of different "
        "identities are > %d pHash bits apart (limit %d)",
        clean,
        DEFAULT_NEAR_DUPLICATE_BITS,
        CROSS_CHECK_LIMIT,
    )
    return results, None


def _write_truth(path: Path, rows: list[tuple[str, str, str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(C.TRUTH_COLUMNS)
        writer.writerows(rows)
