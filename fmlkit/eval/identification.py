"""1:N identification metrics of probe embeddings searched against a gallery (issue #25's
first part: the library function; the command line follows with the IJB protocol).

The gallery is enrolled as one template per identity: the mean of its L2-normalised
embeddings, normalised again (as IJB-C's 1:N gallery of subject templates). A probe's score
for an identity is the cosine of the probe's normalised embedding with that template; the
identities are ranked by score, ties by the identity's position in the sorted gallery labels
(the lower first, as a stable sort). A probe is *mated* when its label is a gallery identity,
else *non-mated*. Definitions as in NIST's FRVT 1:N reports:

- ``cmc``: for each rank r, the fraction of mated probes whose identity is among the r best
  (closed-set identification; rank 1 is the identification rate);
- ``tpir_at_fpir``: for each f, the threshold t is the one that lets through at most
  ⌊f · non-mated⌋ non-mated probes (their best score must be *above* t: t is the
  (⌊f · non-mated⌋ + 1)-th highest non-mated best score); TPIR is the fraction of mated
  probes whose identity ranks first with a score above t (open-set, rank 1); ``None`` where
  there is no non-mated probe, or fewer than 1 / f (the FPIR cannot be told apart from 0).

Memory: a block of probes against every template at a time (float32, ``PROBE_BLOCK`` rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fmlkit.errors import InputError

PROBE_BLOCK = 4096  # probes per block of the probe × template similarity matrix
RANKS = (1, 5, 10, 20)
FPIRS = (1e-3, 1e-2, 1e-1)


def identification_metrics(
    gallery: np.ndarray,
    gallery_labels: Sequence[object] | np.ndarray,
    probes: np.ndarray,
    probe_labels: Sequence[object] | np.ndarray,
    *,
    ranks: Sequence[int] = RANKS,
    fpirs: Sequence[float] = FPIRS,
) -> dict[str, object]:
    """CMC and TPIR@FPIR of ``probes`` against the identity templates of ``gallery`` (module
    doc).

    Returns:
        ``cmc`` ({"1": …, "5": …}), ``tpir_at_fpir`` ({"0.001": …}), ``thresholds`` (the t of
        each FPIR), ``mated``, ``non_mated`` (probe counts) and ``identities`` (templates).

    Raises:
        InputError: empty or mismatched inputs, different dimensions, NaN/infinite or zero
            embeddings, ranks below 1 or FPIRs outside (0, 1).
    """
    g, p = _unit(gallery, "gallery"), _unit(probes, "probes")
    if g.shape[1] != p.shape[1]:
        raise InputError(
            f"the gallery embeddings have {g.shape[1]} dimensions and the probes {p.shape[1]}; "
            "embed both with one model"
        )
    g_labels = _labels(gallery_labels, len(g), "gallery")
    p_labels = _labels(probe_labels, len(p), "probes")
    if any(int(r) < 1 for r in ranks) or not all(0 < float(f) < 1 for f in fpirs):
        raise InputError(f"ranks must be ≥ 1 and FPIRs in (0, 1), got {ranks} and {fpirs}")
    names, codes = np.unique(g_labels, return_inverse=True)
    templates = np.zeros((len(names), g.shape[1]), np.float64)
    np.add.at(templates, codes, g)
    templates /= np.linalg.norm(templates, axis=1, keepdims=True)
    index = {name: k for k, name in enumerate(names.tolist())}
    mate = np.array([index.get(label, -1) for label in p_labels.tolist()], np.int64)
    best, best_score, mate_rank = _search(p, templates.astype(np.float32), mate)
    mated = mate >= 0
    cmc = {str(int(r)): _mean(mate_rank[mated] <= int(r)) for r in ranks}
    non_mated = np.sort(best_score[~mated])[::-1]
    tpir: dict[str, float | None] = {}
    thresholds: dict[str, float | None] = {}
    for f in fpirs:
        allowed = int(np.floor(float(f) * len(non_mated)))
        if len(non_mated) == 0 or len(non_mated) * float(f) < 1:
            tpir[str(f)], thresholds[str(f)] = None, None
            continue
        t = float(non_mated[allowed]) if allowed < len(non_mated) else -np.inf
        hit = mated & (best == mate) & (best_score > t)
        tpir[str(f)], thresholds[str(f)] = _mean(hit[mated]), t
    return {
        "cmc": cmc,
        "tpir_at_fpir": tpir,
        "thresholds": thresholds,
        "mated": int(mated.sum()),
        "non_mated": int((~mated).sum()),
        "identities": len(names),
    }


def _search(
    probes: np.ndarray, templates: np.ndarray, mate: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per probe: the best identity (lowest on ties), its score, and the rank of ``mate``
    (1-based; 0 where the probe has no mate)."""
    best = np.zeros(len(probes), np.int64)
    score = np.zeros(len(probes), np.float64)
    rank = np.zeros(len(probes), np.int64)
    columns = np.arange(len(templates))
    for start in range(0, len(probes), PROBE_BLOCK):
        part = slice(start, start + PROBE_BLOCK)
        sims = probes[part].astype(np.float32) @ templates.T
        best[part] = sims.argmax(axis=1)  # the first maximum: the lowest index on ties
        score[part] = sims[np.arange(len(sims)), best[part]]
        m = mate[part]
        has = np.flatnonzero(m >= 0)
        if len(has):
            own = sims[has, m[has]][:, None]
            ahead = (sims[has] > own) | ((sims[has] == own) & (columns < m[has][:, None]))
            rank[start + has] = ahead.sum(axis=1) + 1
    return best, score, rank


def _unit(vectors: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or not len(x) or not x.shape[1]:
        raise InputError(f"the {what} must be a non-empty (items, dimensions) matrix")
    norms = np.linalg.norm(x, axis=1)
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1) | (norms == 0))
    if len(bad):
        raise InputError(
            f"{len(bad):,} {what} embeddings hold NaN or infinite values or are all zeros "
            f"(rows {', '.join(str(int(b)) for b in bad[:3])}); embed those images again"
        )
    return x / norms[:, None]


def _labels(labels: Sequence[object] | np.ndarray, n: int, what: str) -> np.ndarray:
    values = np.asarray([str(v) for v in labels], dtype=object)
    if len(values) != n:
        raise InputError(f"the {what} have {n:,} embeddings but {len(values):,} labels")
    return values


def _mean(flags: np.ndarray) -> float:
    return float(flags.mean()) if len(flags) else 0.0
