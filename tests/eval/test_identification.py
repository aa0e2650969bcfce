"""`fmlkit.eval.identification`: CMC and TPIR@FPIR equal plain loops written from the
definitions (module doc), on random galleries with several images per identity, mated and
non-mated probes, and ties."""

from __future__ import annotations

import numpy as np
import pytest

from fmlkit.errors import InputError
from fmlkit.eval.identification import identification_metrics


def _reference(gallery, g_labels, probes, p_labels, ranks, fpirs):
    """The definitions, one probe and one identity at a time."""
    names = sorted(set(g_labels))
    templates = []
    for name in names:
        rows = [
            g / np.linalg.norm(g) for g, lab in zip(gallery, g_labels, strict=True) if lab == name
        ]
        total = np.sum(rows, axis=0)
        templates.append(total / np.linalg.norm(total))
    results = []  # (mated, best index, best score, rank of the mate)
    for probe, label in zip(probes, p_labels, strict=True):
        q = probe / np.linalg.norm(probe)
        scores = [float(np.float32(q) @ np.float32(t)) for t in templates]
        order = sorted(range(len(names)), key=lambda k: (-scores[k], k))
        mate = names.index(label) if label in names else -1
        rank = order.index(mate) + 1 if mate >= 0 else 0
        results.append((mate >= 0, order[0], scores[order[0]], rank, mate))
    mated = [r for r in results if r[0]]
    cmc = {str(r): sum(m[3] <= r for m in mated) / len(mated) for r in ranks}
    non = sorted((r[2] for r in results if not r[0]), reverse=True)
    tpir = {}
    for f in fpirs:
        if not non or len(non) * f < 1:
            tpir[str(f)] = None
            continue
        t = non[int(np.floor(f * len(non)))]
        assert sum(s > t for s in non) <= np.floor(f * len(non))
        tpir[str(f)] = sum(m[1] == m[4] and m[2] > t for m in mated) / len(mated)
    return cmc, tpir


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cmc_and_tpir_equal_the_loops_over_the_definitions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    identities, dim = 40, 16
    centres = rng.normal(size=(identities + 30, dim))
    g_labels = [f"id{k:02d}" for k in range(identities) for _ in range(rng.integers(1, 4))]
    gallery = np.stack([centres[int(lab[2:])] + 0.8 * rng.normal(size=dim) for lab in g_labels])
    who = list(rng.integers(0, identities + 30, size=300))  # ids ≥ 40 are not in the gallery
    p_labels = [f"id{k:02d}" for k in who]
    probes = np.stack([centres[k] + 0.8 * rng.normal(size=dim) for k in who])
    ranks, fpirs = (1, 5, 10, 20), (1e-2, 1e-1, 0.3)
    got = identification_metrics(gallery, g_labels, probes, p_labels, ranks=ranks, fpirs=fpirs)
    cmc, tpir = _reference(gallery, g_labels, probes, p_labels, ranks, fpirs)
    assert got["cmc"] == pytest.approx(cmc)
    assert got["tpir_at_fpir"]["0.01"] == pytest.approx(tpir["0.01"])
    assert got["tpir_at_fpir"]["0.1"] == pytest.approx(tpir["0.1"])
    assert got["tpir_at_fpir"]["0.3"] == pytest.approx(tpir["0.3"])
    assert got["mated"] + got["non_mated"] == 300 and got["identities"] == identities
    assert 0 < got["cmc"]["1"] < got["cmc"]["20"] <= 1  # the data is neither trivial nor hopeless


def test_ties_rank_the_lower_identity_first() -> None:
    gallery = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    got = identification_metrics(gallery, ["b", "a", "c"], np.array([[1.0, 0.0]] * 2), ["a", "b"])
    # "a" and "b" tie: "a" (sorted first) ranks 1, "b" ranks 2
    assert got["cmc"]["1"] == 0.5 and got["cmc"]["5"] == 1.0


def test_fpir_needs_enough_non_mated_probes() -> None:
    rng = np.random.default_rng(0)
    gallery, probes = rng.normal(size=(5, 4)), rng.normal(size=(50, 4))
    labels = ["a", "b", "c", "d", "e"]
    p_labels = ["a"] * 10 + ["x"] * 40  # 40 non-mated: FPIR 1e-2 cannot be told from 0
    got = identification_metrics(gallery, labels, probes, p_labels, fpirs=(1e-2, 0.1))
    assert got["tpir_at_fpir"]["0.01"] is None and got["thresholds"]["0.01"] is None
    assert got["tpir_at_fpir"]["0.1"] is not None and got["non_mated"] == 40
    none = identification_metrics(gallery, labels, probes[:10], ["a"] * 10)
    assert all(v is None for v in none["tpir_at_fpir"].values())


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"probes": np.ones((3, 5))}, "dimensions"),
        ({"gallery": np.array([[0.0, 0.0, 0.0, 0.0], [1, 0, 0, 0]])}, "all zeros"),
        ({"probes": np.array([[np.nan, 0, 0, 0]] * 3)}, "NaN"),
        ({"probe_labels": ["a"]}, "labels"),
        ({"ranks": (0,)}, "ranks"),
        ({"fpirs": (1.5,)}, "FPIRs"),
        ({"gallery": np.zeros((0, 4))}, "non-empty"),
    ],
)
def test_bad_input_is_refused_with_what_is_wrong(change: dict, says: str) -> None:
    args = {
        "gallery": np.eye(4)[:2],
        "gallery_labels": ["a", "b"],
        "probes": np.eye(4)[:3],
        "probe_labels": ["a", "b", "c"],
    }
    args.update(change)
    if "gallery" in change and len(change["gallery"]) != 2:
        args["gallery_labels"] = ["a"] * len(change["gallery"])
    with pytest.raises(InputError, match=says):
        identification_metrics(**args)


def test_a_score_at_the_threshold_is_not_let_through() -> None:
    """A mated probe scoring exactly the threshold (a non-mated probe's best score) is not
    counted: only scores above t pass, so at most ⌊f · non-mated⌋ non-mated probes do."""
    gallery = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    near = np.array([0.8, 0.0, 0.6])  # cosine 0.8 to "a"
    far = np.array([0.5, 0.0, np.sqrt(0.75)])  # cosine 0.5 to "a"
    probes = np.stack([near] + [far] * 9 + [near])  # ten non-mated, the last is mated to "a"
    labels = ["x"] * 10 + ["a"]
    got = identification_metrics(gallery, ["a", "b"], probes, labels, fpirs=(0.1,))
    assert got["thresholds"]["0.1"] == pytest.approx(0.5)  # one non-mated (0.8) may pass
    assert got["tpir_at_fpir"]["0.1"] == 1.0
    strict = identification_metrics(gallery, ["a", "b"], probes[1:], labels[1:], fpirs=(0.1,))
    # nine non-mated at 0.5: fewer than 10, FPIR 0.1 cannot be told from 0
    assert strict["tpir_at_fpir"]["0.1"] is None
    at = identification_metrics(
        gallery, ["a", "b"], np.stack([near] * 10 + [near]), labels, fpirs=(0.1,)
    )
    assert at["thresholds"]["0.1"] == pytest.approx(0.8)  # every non-mated at 0.8: t = 0.8
    assert at["tpir_at_fpir"]["0.1"] == 0.0  # the mated 0.8 is not above it
