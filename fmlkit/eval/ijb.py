"""`fmlkit evaluate --ijb DIR`: IJB-B / IJB-C template-based 1:1 verification (and the 1:N
protocol when its gallery and probe files are there), computed as insightface's
arcface_torch ``eval_ijbc.py`` computes it (docs/evaluate.md, "IJB-B and IJB-C").

Steps: `fmlkit.data.formats.ijb.read_ijb` reads and checks the meta files; every loose crop
is aligned from its 5 points to ArcFace's template (`fmlkit.data.align`, the warp
``fmlkit align --landmarks`` uses) at the model's input size and embedded, plain and
mirrored; `fmlkit.eval.templates` turns the image features into template features (the
flip, norm-score and detector-score switches), scores the pairs and reads TAR@FAR off the
ROC; `fmlkit.eval.identify.ijb_identification` does the 1:N part.

The embeddings of a model are cached (``cache_dir``/<kind>/<key>/): the flip sum and the
plain embedding of every crop, as two `fmlkit embed` Parquets (``file_name``,
``embedding``), keyed by the model file's SHA-256, its options, the landmark file's SHA-256
and every crop's name, size and modification time. Switching a mode (``flip``,
``norm_score``, ``detector_score``) or the report folder reuses them; ``flip_sum.parquet``
is also what ``--embeddings`` takes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from fmlkit.errors import InputError

if TYPE_CHECKING:
    import torch

    from fmlkit.data.formats.ijb import IjbProtocol
    from fmlkit.eval.embedder import Embedder

PathLike = str | os.PathLike[str]
CACHE_ENV = "FMLKIT_CACHE_DIR"  # overrides the default cache folder (~/.cache/fmlkit)
FLIP_SUM, PLAIN = "flip_sum.parquet", "plain.parquet"
_SHOWN = 3  # unusable crops named in an error


@dataclass(frozen=True)
class IjbResult:
    """One IJB benchmark scored.

    Attributes:
        name: ``ijbb`` or ``ijbc`` (the benchmark's name in the report).
        scores: each pair's score, in the pair file's order (float64; written as
            ``<name>.npy``, as insightface's eval_ijbc.py saves it).
        far, tar: the ROC over every score threshold (for the plot).
        result: the 1:1 metrics, as written in ``metrics.json``.
        identification: the 1:N metrics (None without the 1:N files).
        embedded: crops embedded by this call (0 when the cache or ``embeddings`` served).
        cache: the cache folder used (None without a model).
    """

    name: str
    scores: np.ndarray
    far: np.ndarray
    tar: np.ndarray
    result: dict[str, object]
    identification: dict[str, object] | None
    embedded: int
    cache: Path | None


def default_cache_dir() -> Path:
    """``$FMLKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/fmlkit``, else ``~/.cache/fmlkit``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fmlkit"


def evaluate_ijb(
    folder: PathLike,
    *,
    embedder: Embedder | None = None,
    model_key: dict[str, object] | None = None,
    embeddings: PathLike | None = None,
    cache_dir: PathLike | None = None,
    flip: bool = True,
    norm_score: bool = True,
    detector_score: bool = True,
    skip_missing: bool = False,
    batch_size: int = 64,
) -> IjbResult:
    """Score the IJB-B or IJB-C folder ``folder`` with ``embedder`` (its identity in
    ``model_key``, for the cache) or with precomputed per-crop ``embeddings`` (the flip sum
    already taken; looked up by image name, or ``loose_crop/<name>``).

    Raises:
        InputError: bad meta files (named with their line), crops that cannot be used (missing,
            undecodable, outside ``loose_crop``) unless ``skip_missing``, crops absent from
            ``embeddings``, or nothing left to score.
    """
    from fmlkit.data.formats.ijb import read_ijb
    from fmlkit.eval.templates import image_features

    if (embedder is None) == (embeddings is None):
        raise InputError("score an IJB folder with either a model or precomputed embeddings")
    protocol = read_ijb(folder, crops=embeddings is None)
    cache = None
    embedded = 0
    if embeddings is not None:
        vectors, usable = _from_table(protocol, embeddings, skip_missing)
        flip = True  # the table holds the flip sums (docs/evaluate.md)
    else:
        assert embedder is not None
        cache = _cache_folder(protocol, model_key or {}, cache_dir)
        vectors, usable, embedded = _cached_embeddings(
            protocol, embedder, cache, flip, skip_missing, batch_size
        )
    scores = protocol.detector_scores[usable] if detector_score else None
    feats = image_features(
        vectors[usable],
        None,
        scores,
        flip=False,
        norm_score=norm_score,
        detector_score=detector_score,
    )  # fmt: skip (unusable rows are zeros)
    modes = {"flip": flip, "norm_score": norm_score, "detector_score": detector_score}
    return _score(protocol, feats, usable, embedded, cache, modes)


def _score(
    protocol: IjbProtocol,
    feats: np.ndarray,
    usable: np.ndarray,
    embedded: int,
    cache: Path | None,
    modes: dict[str, bool],
) -> IjbResult:
    """Template features (``feats``: the usable images' features), pair scores, TAR@FAR
    and the 1:N metrics."""
    from fmlkit.eval.identify import ijb_identification
    from fmlkit.eval.templates import (
        pair_scores,
        tar_at_far_ijb,
        template_features,
    )

    ids, template_feats = template_features(
        feats, protocol.templates[usable], protocol.medias[usable]
    )
    known: np.ndarray = np.ones(len(protocol.pairs), bool)
    if not usable.all():  # read_ijb checked that every pair's templates have images
        known = np.asarray(np.isin(protocol.pairs, ids).all(axis=1))
    pairs, labels = protocol.pairs[known], protocol.labels[known]
    if not len(pairs) or labels.min() == labels.max():
        raise InputError(
            f"{protocol.meta}: no genuine and imposter pairs left to score "
            f"({len(pairs):,} pairs whose templates have usable images)"
        )
    scores = pair_scores(ids, template_feats, pairs)
    roc = tar_at_far_ijb(labels, scores)
    far, tar = roc["fpr"], roc["tpr"]
    result: dict[str, object] = {
        "tar_at_far": roc["closest"],
        "tar_at_far_interpolated": roc["interpolated"],
        "auc": roc["auc"],
        "pairs": len(pairs),
        "genuine": roc["genuine"],
        "imposter": roc["imposter"],
        "templates": len(ids),
        "images": int(usable.sum()),
        **modes,
    }
    if not usable.all():
        result["skipped_images"] = int((~usable).sum())
        result["skipped_pairs"] = int((~known).sum())
    identification = None
    if protocol.galleries and protocol.probes is not None:
        identification = ijb_identification(ids, template_feats, protocol.galleries,
                                            protocol.probes)  # fmt: skip
    return IjbResult(protocol.kind, scores, far, tar, result, identification, embedded, cache)


def _from_table(
    protocol: IjbProtocol, embeddings: PathLike, skip_missing: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The table's vector of every crop (zeros where absent) and which crops have one."""
    from fmlkit.data.formats.embeddings import read_embeddings

    table = read_embeddings(embeddings)
    rows = np.full(len(protocol.images), -1, np.int64)
    for i, name in enumerate(protocol.images.tolist()):
        rows[i] = table.index.get(name, table.index.get(f"loose_crop/{name}", -1))
    missing = {int(i): "absent from the embeddings" for i in np.flatnonzero(rows < 0)}
    _refuse_unusable(protocol, missing, skip_missing, f"{embeddings}")
    vectors = np.zeros((len(rows), table.vectors.shape[1]), np.float32)
    vectors[rows >= 0] = table.vectors[rows[rows >= 0]]
    return vectors, rows >= 0


def _cache_folder(
    protocol: IjbProtocol, model_key: dict[str, object], cache_dir: PathLike | None
) -> Path:
    """The cache folder of this model on this IJB folder's crops and landmarks."""
    landmarks = protocol.meta / f"{protocol.kind}_name_5pts_score.txt"
    key = {
        **model_key,
        "landmarks_sha256": _sha256(landmarks),
        "kind": protocol.kind,
        "crops": str(protocol.crops.resolve()),
        "crop_files": _crop_fingerprint(protocol),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return Path(cache_dir or default_cache_dir()) / "ijb" / protocol.kind / digest[:24]


def _crop_fingerprint(protocol: IjbProtocol) -> str:
    """SHA-256 of every crop's name, size and modification time: a crop replaced in place
    (or removed) changes the cache key, without reading any crop."""
    digest = hashlib.sha256()
    for name in protocol.images.tolist():
        try:
            stat = (protocol.crops / str(name)).stat()
            digest.update(f"{name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{name}\tmissing\n".encode())
    return digest.hexdigest()


def model_identity(path: PathLike, **options: object) -> dict[str, object]:
    """What identifies a model's embeddings: its file's SHA-256 and the options given."""
    return {"model_sha256": _sha256(Path(path)), **options}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cached_embeddings(
    protocol: IjbProtocol,
    embedder: Embedder,
    cache: Path,
    flip: bool,
    skip_missing: bool,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Per crop: the flip sum (``flip``) or plain embedding, from the cache when it holds
    this model's embeddings of these crops, else embedded and cached; which crops are usable;
    and how many were embedded now."""
    from fmlkit.data.formats.embeddings import read_embeddings, write_embeddings
    from fmlkit.io import committed_together

    names = protocol.images.tolist()
    wanted = cache / (FLIP_SUM if flip else PLAIN)
    if wanted.is_file():
        table = read_embeddings(wanted, lenient=True)
        if table.file_names == names:
            assert table.unusable is not None
            usable = ~table.unusable
            failed = {int(i): "unusable when it was cached" for i in np.flatnonzero(~usable)}
            _refuse_unusable(protocol, failed, skip_missing, str(protocol.crops))
            return table.vectors, usable, 0
    summed, plain, failed = embed_crops(protocol, embedder, batch_size=batch_size)
    _refuse_unusable(protocol, failed, skip_missing, str(protocol.crops))
    cache.mkdir(parents=True, exist_ok=True)
    with committed_together(cache / FLIP_SUM, cache / PLAIN):
        write_embeddings(cache / FLIP_SUM, names, None, summed)
        write_embeddings(cache / PLAIN, names, None, plain)
    usable = np.ones(len(names), bool)
    usable[list(failed)] = False
    return (summed if flip else plain), usable, len(names)


def _refuse_unusable(
    protocol: IjbProtocol, failed: dict[int, str], skip_missing: bool, where: str
) -> None:
    if not failed or skip_missing:
        return
    shown = "; ".join(f"{protocol.images[i]} ({why})" for i, why in list(failed.items())[:_SHOWN])
    raise InputError(
        f"{len(failed):,} of {len(protocol.images):,} IJB crops cannot be used ({where}): "
        f"{shown}{' …' if len(failed) > _SHOWN else ''}; fix them, or pass --skip-missing to "
        "leave them out of their templates"
    )


def embed_crops(
    protocol: IjbProtocol, embedder: Embedder, *, batch_size: int = 64, workers: int | None = None
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Align every crop to ArcFace's template at the model's size and embed it and its mirror
    image: (flip sums, plain embeddings, {position: why} of crops that could not be used; their
    rows are zero). Decoding and warping run in ``workers`` threads (default: the usable CPUs)."""
    import torch

    from fmlkit.parallel import default_workers
    from fmlkit.progress import progress_counter

    prepare = _crop_preparer(protocol, embedder)
    n = len(protocol.images)
    summed: np.ndarray | None = None
    plain: np.ndarray | None = None
    failed: dict[int, str] = {}
    with (
        ThreadPoolExecutor(workers or default_workers()) as pool,
        progress_counter(total=n, desc="embed IJB crops", unit="img") as advance,
    ):
        for start in range(0, n, batch_size):
            at = range(start, min(start + batch_size, n))
            tensors: list[torch.Tensor] = []
            done: list[int] = []
            for i, (tensor, why) in zip(at, pool.map(prepare, at), strict=True):
                if tensor is None:
                    failed[i] = why
                else:
                    tensors.append(tensor)
                    done.append(i)
            if tensors:
                batch = torch.stack(tensors)
                a, b = embedder.run(batch), embedder.run(batch.flip(3))
                if summed is None or plain is None:
                    summed = np.zeros((n, a.shape[1]), np.float32)
                    plain = np.zeros((n, a.shape[1]), np.float32)
                summed[done], plain[done] = a + b, a
            advance(len(at))
    if summed is None or plain is None:
        raise InputError(f"none of the {n:,} IJB crops under {protocol.crops} could be used")
    return summed, plain, failed


def _crop_preparer(
    protocol: IjbProtocol, embedder: Embedder
) -> Callable[[int], tuple[torch.Tensor | None, str]]:
    """A function: crop position → (its aligned, normalised tensor, "") or (None, why)."""
    from fmlkit.data.align.template import template_points
    from fmlkit.data.align.transform import similarity_transform
    from fmlkit.data.align.warp import warp_affine
    from fmlkit.data.formats.images import decode_image

    points, size = template_points(_input_size(embedder))
    crops = protocol.crops.resolve()

    def prepare(i: int) -> tuple[torch.Tensor | None, str]:
        name = str(protocol.images[i])
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts:
            return None, "leads outside loose_crop (never opened)"
        path = crops / relative
        try:
            if not path.resolve().is_relative_to(crops):
                return None, "leads outside loose_crop (never opened)"
            image = decode_image(path.read_bytes())
        except FileNotFoundError:
            return None, "missing"
        except Exception as exc:  # unreadable or undecodable: named in the error
            return None, f"{type(exc).__name__}: {exc}"
        matrix, _ = similarity_transform(protocol.landmarks[i], points)
        return embedder.transform(warp_affine(image, matrix, size)), ""

    return prepare


def _input_size(embedder: Embedder) -> int:
    """The model's input height: its transform's resize step, else 112 (ArcFace's)."""
    for step in getattr(embedder.transform, "steps", ()):
        size = getattr(step, "size", None)
        if isinstance(size, Sequence) and len(size) == 2:
            return int(size[0])
    return 112
