"""1:N identification stage: probes searched against a gallery (issue #25), each side an
embeddings Parquet (`fmlkit embed`'s ``file_name``, ``label``, ``embedding``) or, with a model,
an image table embedded here; and the IJB-B / IJB-C 1:N protocol over template features.

`identify`: a side whose table has a ``template`` column is pooled per template as IJB pools
(`fmlkit.eval.templates.template_features`: the images of one ``media`` averaged, the media
summed, the sum L2-normalised; without a ``media`` column each image is its own media), so a
template is one probe or one gallery entry; without it every row is one. Each image's
feature keeps its norm in the pooling (``norm_score``, insightface's default) unless
``norm_score=False``. The gallery is then enrolled per identity and searched by
`fmlkit.eval.identification.identification_metrics` (its module doc has the definitions).

`ijb_identification`: the IJB 1:N protocol: the probe templates searched against each gallery
(IJB-C's G1 and G2, IJB-B's S1 and S2) in turn, open set (a probe whose subject is in the other
gallery is non-mated), their mean, and the galleries joined (closed set: the number
insightface's ``ijb_1n.py`` prints).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from fmlkit.columns import EMBEDDING, FILE_NAME, LABEL, MEDIA, TEMPLATE
from fmlkit.errors import InputError
from fmlkit.eval.identification import identification_metrics

if TYPE_CHECKING:
    from fmlkit.eval.embedder import Embedder

GROUPING = (TEMPLATE, MEDIA)  # the optional columns that group a side's rows
SHOWN = 3  # names quoted in a message


@dataclass(frozen=True, eq=False)
class _Rows:
    """One side's images as read or embedded, in row order."""

    source: Path
    names: list[str]
    labels: np.ndarray  # str per row (object)
    vectors: np.ndarray  # (rows, E)
    grouping: dict[str, list[Any]]  # TEMPLATE / MEDIA values per row, where the table has them
    skipped: int  # undecodable images left out


@dataclass(frozen=True, eq=False)
class _Side:
    """One side ready to search: an entry per image or per template."""

    labels: np.ndarray
    vectors: np.ndarray  # (entries, E) float32
    summary: dict[str, object]


def identify(
    gallery: str | os.PathLike[str],
    probes: str | os.PathLike[str],
    *,
    embedder: Embedder | None = None,
    root: str | os.PathLike[str] | None = None,
    flip_sum: bool = True,
    norm_score: bool = True,
    batch_size: int = 64,
) -> dict[str, object]:
    """CMC and TPIR@FPIR of ``probes`` searched against ``gallery`` (module doc).

    Args:
        gallery, probes: each an embeddings Parquet (`fmlkit embed`'s, with labels), or,
            with ``embedder``, an image table (a dataset_info CSV/Parquet whose file names
            are relative to ``root``, or a Parquet dataset folder) embedded with it (an
            embeddings Parquet is read as is even then). Either may carry ``template`` (and
            ``media``) columns (a dataset folder cannot).
        embedder: the model for image tables (`fmlkit.eval.embed.load_embedder`).
        root: the folder the image tables' file names are relative to (both sides).
        flip_sum: embed each image plus its mirror image (insightface's evaluation).
        norm_score: keep each image feature's norm when pooling templates (insightface's
            ``use_norm_score=True``: the norm weighs the image); False normalises it first.
        batch_size: images per forward pass.

    Returns:
        `identification_metrics`'s ``cmc``, ``tpir_at_fpir``, ``thresholds``, ``mated``,
        ``non_mated``, ``identities``; ``gallery`` and ``probes``: ``source``, ``images``,
        ``templates`` (None without a template column) and ``entries`` (what was searched);
        ``skipped_undecodable`` ({"gallery": n, "probes": n}) when images could not be
        decoded.

    Raises:
        InputError: a side without labels, with null labels, no rows, zero vectors, a
            template whose rows carry two labels or no template value; dimensions that differ
            between the sides; no probe whose identity is in the gallery; an image table
            without ``embedder``.
    """
    sides = {}
    for what, path in (("gallery", gallery), ("probes", probes)):
        rows = _read_rows(Path(path), what, embedder, root, flip_sum, batch_size)
        sides[what] = (rows, _entries(rows, norm_score))
    (g_rows, g), (p_rows, p) = sides["gallery"], sides["probes"]
    if g.vectors.shape[1] != p.vectors.shape[1]:
        raise InputError(
            f"the gallery {g_rows.source} holds {g.vectors.shape[1]}-dimensional embeddings "
            f"and the probes {p_rows.source} {p.vectors.shape[1]}-dimensional ones: they come "
            "from different models; embed both with one model"
        )
    known = set(g.labels.tolist())
    if not any(label in known for label in p.labels.tolist()):
        raise InputError(
            f"no probe's identity is in the gallery (probes {p_rows.source}: "
            f"{_first(sorted(set(p.labels.tolist())))}; gallery {g_rows.source}: "
            f"{_first(sorted(known))}), so the CMC is undefined: give a gallery that enrols "
            "some of the probes' identities, under the same label names"
        )
    metrics = identification_metrics(g.vectors, g.labels, p.vectors, p.labels)
    metrics["gallery"], metrics["probes"] = g.summary, p.summary
    if g_rows.skipped or p_rows.skipped:
        metrics["skipped_undecodable"] = {"gallery": g_rows.skipped, "probes": p_rows.skipped}
    return metrics


def ijb_identification(
    template_ids: np.ndarray,
    template_feats: np.ndarray,
    galleries: Mapping[str, tuple[np.ndarray, np.ndarray]],
    probes: tuple[np.ndarray, np.ndarray],
) -> dict[str, object]:
    """The IJB 1:N protocol over pooled template features (module doc).

    Args:
        template_ids: (t,) the id of each row of ``template_feats``.
        template_feats: (t, E) template features (`fmlkit.eval.templates.template_features`).
        galleries: name → (template ids, subject ids) of each gallery (IJB-C: G1, G2).
        probes: (template ids, subject ids) of the probe templates.

    Returns:
        Per gallery name, `identification_metrics` of every probe against it; ``mean``: the
        galleries' ``cmc`` and ``tpir_at_fpir`` averaged (None where one is None); with two
        galleries or more, the joined name (``G1+G2``): the closed-set CMC of the probes
        against all galleries together, as insightface's ``ijb_1n.py`` reports it.

    Raises:
        InputError: no gallery, a template absent from ``template_ids``, a template whose
            feature is all zeros, or mismatched lengths.
    """
    ids = np.asarray(template_ids).astype(np.int64, copy=False).reshape(-1)
    feats = np.asarray(template_feats)
    if feats.ndim != 2 or len(feats) != len(ids) or not len(ids):
        raise InputError(
            f"{len(ids):,} template ids for template features of shape {feats.shape}; "
            "give one (t, E) row per id, and some templates"
        )
    if not galleries:
        raise InputError("no 1:N gallery given: the IJB 1:N protocol needs G1 and G2")
    order = np.argsort(ids, kind="stable")
    probe_rows = _template_rows(ids, order, feats, probes, "the probe templates")
    results: dict[str, object] = {}
    chosen = {}
    for name, gallery in galleries.items():
        chosen[name] = _template_rows(ids, order, feats, gallery, f"gallery {name}")
        results[name] = identification_metrics(
            feats[chosen[name]], gallery[1], feats[probe_rows], probes[1]
        )
    results["mean"] = _mean_metrics(
        [cast("dict[str, object]", results[name]) for name in galleries]
    )
    if len(galleries) > 1:
        joined = np.concatenate(list(chosen.values()))
        subjects = np.concatenate([np.asarray(g[1]).reshape(-1) for g in galleries.values()])
        results["+".join(galleries)] = identification_metrics(
            feats[joined], subjects, feats[probe_rows], probes[1]
        )
    return results


def _template_rows(
    ids: np.ndarray,
    order: np.ndarray,
    feats: np.ndarray,
    chosen: tuple[np.ndarray, np.ndarray],
    what: str,
) -> np.ndarray:
    """The rows of ``feats`` of the templates ``chosen[0]``, after checking each is known,
    has a subject and a non-zero feature."""
    wanted = np.asarray(chosen[0]).astype(np.int64, copy=False).reshape(-1)
    if len(wanted) != len(np.asarray(chosen[1]).reshape(-1)) or not len(wanted):
        raise InputError(
            f"{what}: {len(wanted):,} template ids and {len(np.asarray(chosen[1])):,} subject "
            "ids; expected one subject per template, and some templates"
        )
    at = np.searchsorted(ids, wanted, sorter=order).clip(max=len(ids) - 1)
    rows = order[at]
    missing = wanted[ids[rows] != wanted]
    if len(missing):
        raise InputError(
            f"{what}: {len(missing):,} templates have no feature ({_first(missing.tolist())}); "
            "every 1:N template must be among the templates of face_tid_mid"
        )
    zero = wanted[~feats[rows].any(axis=1)]
    if len(zero):
        raise InputError(
            f"{what}: {len(zero):,} templates pool to an all-zero feature "
            f"({_first(zero.tolist())}): their images' features are zero or cancel out; "
            "check those images' embeddings (and detector scores)"
        )
    return rows


def _mean_metrics(results: Sequence[Mapping[str, object]]) -> dict[str, object]:
    """The ``cmc`` and ``tpir_at_fpir`` of several results averaged key by key (None where
    one of them is None)."""
    mean: dict[str, object] = {}
    for key in ("cmc", "tpir_at_fpir"):
        tables = [cast("dict[str, float | None]", r[key]) for r in results]
        values = {k: [t[k] for t in tables] for k in tables[0]}
        mean[key] = {
            k: None if None in v else float(np.mean(cast("list[float]", v)))
            for k, v in values.items()
        }
    return mean


def _read_rows(
    path: Path,
    what: str,
    embedder: Embedder | None,
    root: str | os.PathLike[str] | None,
    flip_sum: bool,
    batch_size: int,
) -> _Rows:
    """One side's rows: an embeddings Parquet read as is, else the image table embedded."""
    if not path.exists():
        raise InputError(f"the {what} {path}: no such file or folder")
    if _is_embeddings(path):
        return _read_embeddings(path)
    if embedder is None:
        raise InputError(
            f"the {what} {path} is not an embeddings Parquet (`fmlkit embed`'s {FILE_NAME}, "
            f"{LABEL}, {EMBEDDING}): to search its images, give a model to embed them with"
        )
    from fmlkit.eval.embed import embed_dataset

    data = embed_dataset(embedder, path, root=root, flip_sum=flip_sum, batch_size=batch_size)
    labels = np.asarray(data.labels, object)
    grouping: dict[str, list[Any]] = {}
    if path.is_file():
        grouping = _table_grouping(path, data.file_names)
    return _Rows(path, data.file_names, labels, data.embeddings, grouping, len(data.skipped))


def _is_embeddings(path: Path) -> bool:
    """Whether ``path`` is a Parquet file with an ``embedding`` column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file() or path.suffix.lower() not in (".parquet", ".pq"):
        return False
    try:
        return EMBEDDING in pq.read_schema(path).names
    except (pa.ArrowException, OSError):
        return False  # read_table or read_embeddings names the damage


def _read_embeddings(path: Path) -> _Rows:
    import pyarrow.parquet as pq

    from fmlkit.data.formats.embeddings import read_embeddings

    table = read_embeddings(path)
    if table.labels is None:
        raise InputError(
            f"{path} has no {LABEL} column: 1:N identification needs each embedding's "
            "identity. Embed a dataset_info with labels (`fmlkit embed` keeps them)"
        )
    present = [c for c in GROUPING if c in pq.read_schema(path).names]
    grouping = {}
    if present:
        extra = pq.read_table(path, columns=present)
        grouping = {c: extra.column(c).to_pylist() for c in present}
    return _Rows(path, table.file_names, table.labels, table.vectors, grouping, 0)


def _table_grouping(path: Path, names: list[str]) -> dict[str, list[Any]]:
    """The ``template``/``media`` values of an image table's rows named ``names``."""
    from fmlkit.data.formats.table import read_table

    df = read_table(path, required=[FILE_NAME], what="image table")
    present = [c for c in GROUPING if c in df.columns]
    if not present:
        return {}
    twice = df[FILE_NAME][df[FILE_NAME].duplicated()].tolist()
    if twice:
        raise InputError(
            f"{path}: {len(twice):,} file names appear more than once ({_first(twice)}), so "
            "their templates cannot be told apart; list each image once"
        )
    at = dict(zip(df[FILE_NAME].tolist(), range(len(df)), strict=True))
    rows = [at[n] for n in names]
    return {c: [df[c].iloc[i] for i in rows] for c in present}


def _entries(rows: _Rows, norm_score: bool) -> _Side:
    """Check ``rows`` and pool them per template where the side has templates."""
    missing = [
        n
        for n, label in zip(rows.names, rows.labels.tolist(), strict=True)
        if label is None or label == ""
    ]
    if missing:
        raise InputError(
            f"{rows.source}: {len(missing):,} rows have no {LABEL} ({_first(missing)}); 1:N "
            "identification needs each image's identity: label them or leave them out"
        )
    vectors = np.asarray(rows.vectors, np.float32)
    zero = [rows.names[i] for i in np.flatnonzero(~vectors.any(axis=1))]
    if zero:
        raise InputError(
            f"{rows.source}: {len(zero):,} embeddings are all zeros ({_first(zero)}); the "
            "model failed on them: embed those images again"
        )
    summary: dict[str, object] = {"source": str(rows.source), "images": len(rows.names)}
    if TEMPLATE not in rows.grouping:
        summary.update(templates=None, entries=len(vectors))
        return _Side(np.asarray(rows.labels, object), vectors, summary)
    labels, pooled = _pool(rows, vectors, norm_score)
    summary.update(templates=len(pooled), entries=len(pooled))
    return _Side(labels, pooled, summary)


def _pool(rows: _Rows, vectors: np.ndarray, norm_score: bool) -> tuple[np.ndarray, np.ndarray]:
    """Labels and IJB-pooled features of ``rows``'s templates, in sorted template order."""
    from fmlkit.eval.templates import template_features

    templates = _codes(rows, TEMPLATE)
    medias = _codes(rows, MEDIA) if MEDIA in rows.grouping else np.arange(len(vectors))
    if not norm_score:
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    ids, pooled = template_features(vectors, templates, medias)
    label_names, label_codes = np.unique(rows.labels.astype(str), return_inverse=True)
    pairs = np.unique(np.stack([templates, label_codes.reshape(-1)], axis=1), axis=0)
    mixed = np.flatnonzero(np.bincount(pairs[:, 0]) > 1)
    if len(mixed):
        values = np.asarray(rows.grouping[TEMPLATE], object)
        shown = [
            f"{values[templates == t][0]} ({', '.join(label_names[pairs[pairs[:, 0] == t, 1]])})"
            for t in mixed[:SHOWN]
        ]
        raise InputError(
            f"{rows.source}: {len(mixed):,} {TEMPLATE}s hold images of two identities or "
            f"more: {'; '.join(shown)}. A template is one identity: fix its rows' labels or "
            "templates"
        )
    labels = label_names[pairs[np.searchsorted(pairs[:, 0], ids), 1]]
    zero = np.flatnonzero(~pooled.any(axis=1))
    if len(zero):
        values = np.asarray(rows.grouping[TEMPLATE], object)
        names = [values[templates == ids[z]][0] for z in zero]
        raise InputError(
            f"{rows.source}: {len(zero):,} {TEMPLATE}s pool to an all-zero feature "
            f"({_first(names)}): their images' features cancel out; check their embeddings"
        )
    return np.asarray(labels, object), pooled


def _codes(rows: _Rows, column: str) -> np.ndarray:
    """An int64 code per row for the values of ``column`` (equal values, equal codes)."""
    values = rows.grouping[column]
    empty = [rows.names[i] for i, v in enumerate(values) if _is_null(v)]
    if empty:
        raise InputError(
            f"{rows.source}: {len(empty):,} rows have no {column} ({_first(empty)}); give "
            f"every row its {column}, or drop the column"
        )
    _, codes = np.unique(np.asarray([str(v) for v in values], object), return_inverse=True)
    return codes.reshape(-1).astype(np.int64)


def _is_null(value: object) -> bool:
    return value is None or value == "" or (isinstance(value, float) and np.isnan(value))


def _first(items: Sequence[object]) -> str:
    more = f", … {len(items) - SHOWN:,} more" if len(items) > SHOWN else ""
    return ", ".join(str(i) for i in items[:SHOWN]) + more
