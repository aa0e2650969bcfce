"""`fmlkit synth --ijb`: a small synthetic IJB-B / IJB-C folder, in the layout insightface's
IJB evaluation reads.

``OUT/loose_crop/<k>.jpg`` (one face each, `ijb_draw`), and in ``OUT/meta/`` the image →
template and media list, the 5 true landmarks and a detector score per image, the template pair
list of 1:1 verification and the 1:N gallery and probe lists; a truth CSV beside the folder.
Here: the stage (`generate_ijb`, `IjbReport`) and the files; the plan (templates, medias,
pairs) is `ijb_plan`, the output checks are `fmlkit synth`'s (`checks`).
"""

from __future__ import annotations

import csv
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fmlkit import columns as C
from fmlkit.data.synth.checks import check_outputs, check_request, output_folder
from fmlkit.data.synth.draw import seeded_rng
from fmlkit.data.synth.ijb_draw import IJB_PLAN_STREAM, IjbJob, IjbResult, render_ijb_identity
from fmlkit.data.synth.ijb_plan import (
    Template,
    image_rows,
    number_frames,
    plan_pairs,
    plan_templates,
)
from fmlkit.errors import InputError
from fmlkit.io import atomic_path
from fmlkit.parallel import default_workers, worker_pool
from fmlkit.progress import track

log = logging.getLogger(__name__)

IJB_KINDS = ("ijbb", "ijbc")
GALLERIES = {"ijbb": ("S1", "S2"), "ijbc": ("G1", "G2")}  # 1:N gallery file suffixes
MIN_IMAGES = 3  # per identity: a gallery template of ≥ 2 images and ≥ 1 probe image
MIN_IDENTITIES = 2  # imposter pairs need two identities
TREE_FOLDERS = re.compile("loose_crop|meta")  # what the output folder holds


def meta_names(kind: str) -> dict[str, str]:
    """The meta files of ``kind`` (``ijbb``/``ijbc``) by role: ``faces``, ``landmarks``,
    ``pairs``, ``gallery1``, ``gallery2``, ``probes``."""
    g1, g2 = GALLERIES[kind]
    return {
        "faces": f"{kind}_face_tid_mid.txt",
        "landmarks": f"{kind}_name_5pts_score.txt",
        "pairs": f"{kind}_template_pair_label.txt",
        "gallery1": f"{kind}_1N_gallery_{g1}.csv",
        "gallery2": f"{kind}_1N_gallery_{g2}.csv",
        "probes": f"{kind}_1N_probe_mixed.csv",
    }


@dataclass(frozen=True)
class IjbReport:
    """What `generate_ijb` wrote."""

    out_dir: Path
    truth_path: Path
    kind: str
    identities: int
    images: int
    templates: int
    gallery_templates: int
    medias: int
    videos: int  # medias of more than one image
    genuine_pairs: int
    imposter_pairs: int
    seconds: float

    def summary(self) -> str:
        rate = self.images / self.seconds if self.seconds > 0 else float("inf")
        probes = self.templates - self.gallery_templates
        return "\n".join(
            [
                f"Wrote {self.images} {self.kind.upper().replace('IJB', 'IJB-')} loose crops of "
                f"{self.identities} identities to {self.out_dir} in {self.seconds:.1f} s "
                f"({rate:.0f} images/s): {self.templates} templates ({self.gallery_templates} "
                f"gallery, {probes} probe), {self.medias} medias ({self.videos} videos), "
                f"{self.genuine_pairs + self.imposter_pairs} template pairs "
                f"({self.genuine_pairs} genuine, {self.imposter_pairs} imposter).",
                f"Meta: {self.out_dir / 'meta'}",
                f"Truth: {self.truth_path}",
            ]
        )


def check_ijb_request(kind: str, identities: int, images_per_identity: int) -> None:
    """Raise `InputError` for an unknown ``kind`` or too few identities or images."""
    if kind not in IJB_KINDS:
        raise InputError(f"IJB kind must be one of {', '.join(IJB_KINDS)}, got {kind!r}")
    if images_per_identity < MIN_IMAGES or identities < MIN_IDENTITIES:
        raise InputError(
            f"an IJB layout needs ≥ {MIN_IDENTITIES} identities (imposter pairs) and ≥ "
            f"{MIN_IMAGES} images per identity (a gallery template of 2 and a probe), got "
            f"{identities} × {images_per_identity}; ask for more"
        )


def generate_ijb(
    out_dir: str | Path,
    *,
    identities: int,
    images_per_identity: int,
    kind: str = "ijbc",
    seed: int = 0,
    size: int = 112,
    truth_path: str | Path | None = None,
    overwrite: bool = False,
    workers: int = 1,
) -> IjbReport:
    """Write a synthetic IJB-B/IJB-C folder (loose crops and meta files) and its truth CSV.

    Args:
        out_dir: folder to create; it receives ``loose_crop/<k>.jpg`` and ``meta/<kind>_*``.
        identities: number of identities (N ≥ 2).
        images_per_identity: loose crops per identity (M ≥ 3).
        kind: ``ijbc`` or ``ijbb``: the meta files' names.
        seed: the whole output is a function of the arguments and this seed.
        size: side of a face's drawing before it is scaled into its crop (64–1024); the
            crops are about 1.3–2 × this.
        truth_path: one row per crop; default ``OUT_DIR.truth.csv``.
        overwrite: replace existing outputs, if synth --ijb wrote them.
        workers: processes drawing identities in parallel (the output does not depend on it).

    Raises:
        InputError: a count, kind or size out of range, too little disk space, or outputs
            that may not be written.
    """
    check_request(identities, images_per_identity, size, workers)
    check_ijb_request(kind, identities, images_per_identity)
    out = output_folder(out_dir)
    truth = Path(truth_path) if truth_path is not None else out.with_name(out.name + ".truth.csv")
    needed = int(identities * images_per_identity * (0.2 * (2.2 * size) ** 2 + 4096))
    check_outputs(
        out,
        truth,
        overwrite=overwrite,
        needed_bytes=needed,
        folders=TREE_FOLDERS,
        truth_headers=(C.IJB_TRUTH_COLUMNS,),
    )
    workers = min(workers, identities, 4 * default_workers())

    start = time.perf_counter()
    plan = seeded_rng(seed, IJB_PLAN_STREAM)
    templates = plan_templates(plan, identities, images_per_identity)
    pairs = plan_pairs(plan, templates)
    frames = number_frames(templates)
    with atomic_path(truth) as tmp_truth, atomic_path(out) as root:
        (root / "loose_crop").mkdir(parents=True)
        (root / "meta").mkdir()
        jobs = [
            IjbJob(root / "loose_crop", seed, i, size, tuple(frames[i])) for i in range(identities)
        ]
        results = _draw(jobs, workers)
        _write_meta(root / "meta", kind, templates, pairs, results)
        _write_truth(tmp_truth, templates)
    genuine = sum(label for _, _, label in pairs)
    report = IjbReport(
        out_dir=out,
        truth_path=truth,
        kind=kind,
        identities=identities,
        images=identities * images_per_identity,
        templates=len(templates),
        gallery_templates=sum(t.role == C.IJB_ROLES[0] for t in templates),
        medias=sum(len(t.medias) for t in templates),
        videos=sum(f > 1 for t in templates for _, f in t.medias),
        genuine_pairs=genuine,
        imposter_pairs=len(pairs) - genuine,
        seconds=time.perf_counter() - start,
    )
    log.info("synth --ijb: %d crops, %d templates", report.images, report.templates)
    return report


def _draw(jobs: list[IjbJob], workers: int) -> list[IjbResult]:
    if workers > 1:
        with worker_pool(workers) as pool:
            return list(track(pool.map(render_ijb_identity, jobs), total=len(jobs), desc="ijb"))
    return [render_ijb_identity(job) for job in track(jobs, desc="ijb", unit="id")]


def _write_meta(
    meta: Path,
    kind: str,
    templates: Sequence[Template],
    pairs: Sequence[tuple[int, int, int]],
    results: Sequence[IjbResult],
) -> None:
    names = meta_names(kind)
    images = image_rows(templates)
    marks = sorted((row for r in results for row in r.rows), key=lambda row: row[0])
    _write_lines(meta / names["faces"], (f"{k}.jpg {t.id} {m}" for k, t, m in images))
    _write_lines(
        meta / names["landmarks"],
        (
            f"{k}.jpg " + " ".join(f"{v:.3f}" for v in points.ravel()) + f" {score:.6f}"
            for k, points, score in marks
        ),
    )
    _write_lines(meta / names["pairs"], (f"{a} {b} {label}" for a, b, label in pairs))
    for name, keep in (
        (names["gallery1"], lambda t: t.role == C.IJB_ROLES[0] and t.identity % 2 == 0),
        (names["gallery2"], lambda t: t.role == C.IJB_ROLES[0] and t.identity % 2 == 1),
        (names["probes"], lambda t: t.role == C.IJB_ROLES[1]),
    ):
        rows = [(t.id, t.identity + 1, f"{k}.jpg") for k, t, _ in images if keep(t)]
        _write_csv(meta / name, C.IJB_1N_COLUMNS, rows)


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        f.writelines(line + "\n" for line in lines)


def _write_truth(path: Path, templates: Sequence[Template]) -> None:
    """One row per crop, in number order; labels as `fmlkit synth` names identity folders."""
    digits = max(5, len(str(templates[-1].identity)))
    rows = [
        (f"loose_crop/{k}.jpg", f"id{t.identity:0{digits}d}", t.identity + 1, t.id, m, t.role)
        for k, t, m in image_rows(templates)
    ]
    _write_csv(path, C.IJB_TRUTH_COLUMNS, rows)


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
