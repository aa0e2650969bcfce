"""`fmlkit.data.clean.decide`: every decision kind equal to a brute-force reference written
from the definitions (plain loops), on small random clustered data with planted defects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

import fmlkit.data.clean.decide as decide_module
from fmlkit.data.clean.decide import Decisions, decide
from fmlkit.data.clean.options import CleanOptions
from fmlkit.errors import OptionError
from tests.data.clean.clustered import Planted, clustered

SEEDS = (0, 1, 2)


def _run(p: Planted, unusable: np.ndarray | None = None, **options: Any) -> Decisions:
    bad = np.zeros(len(p.labels), bool) if unusable is None else unusable
    return decide(p.file_names, p.labels, p.vectors.copy(), bad, CleanOptions(**options))


def _unit(p: Planted) -> np.ndarray:
    x = p.vectors.astype(np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _reference_own(p: Planted, drop_below: float, robust: bool) -> tuple[list[float], dict]:
    """own similarity and the (robust) centroid sums, by loops over the definitions."""
    x, labels = _unit(p), list(p.labels)
    own = []
    for i in range(len(x)):
        others = [j for j in range(len(x)) if labels[j] == labels[i] and j != i]
        own.append(_cos(x[i], x[others].sum(0)) if others else float("nan"))
    sums = {c: x[[j for j in range(len(x)) if labels[j] == c]].sum(0) for c in set(labels)}
    if not robust:
        return own, sums
    low = [i for i in range(len(x)) if own[i] < drop_below]
    final = list(own)
    for c in set(labels):
        members = [j for j in range(len(x)) if labels[j] == c]
        out = [j for j in members if j in low]
        stay = [j for j in members if j not in low]
        if not out or len(stay) < 2:
            continue
        sums[c] = x[stay].sum(0)
        for j in members:
            rest = [k for k in stay if k != j]
            final[j] = _cos(x[j], x[rest].sum(0))
    return final, sums


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("robust", [False, True])
def test_own_similarity_equals_the_leave_one_out_loop(seed: int, robust: bool) -> None:
    p = clustered(seed)
    found = _run(p, robust=robust, drop_below=0.3)
    want, _ = _reference_own(p, 0.3, robust)
    np.testing.assert_allclose(found.images["own_similarity"], want, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_drop_review_relabel_equal_the_rules_applied_by_loops(seed: int) -> None:
    p = clustered(seed)
    o = {"drop_below": 0.2, "review_below": 0.75, "relabel_above": 0.4, "relabel_margin": 0.1}
    found = _run(p, None, checks=("outliers",), **o).images
    own, sums = _reference_own(p, o["drop_below"], True)
    x, labels = _unit(p), list(p.labels)
    want, want_label = [], []
    for i in range(len(x)):
        if np.isnan(own[i]) or own[i] >= o["review_below"]:
            want.append("keep")
            want_label.append("")
            continue
        best = max((c for c in sorted(sums) if c != labels[i]), key=lambda c: _cos(x[i], sums[c]))
        near = _cos(x[i], sums[best])
        want_label.append(best)
        if near >= o["relabel_above"] and near - own[i] >= o["relabel_margin"]:
            want.append("relabel")
        else:
            want.append("drop" if own[i] < o["drop_below"] else "review")
    assert found["decision"].tolist() == want
    assert found["nearest_label"].tolist() == want_label
    assert {"relabel", "review"} <= set(want)  # the case exercises the rules
    moved = found["decision"] == "relabel"
    assert (found.loc[moved, "new_label"] == found.loc[moved, "nearest_label"]).all()


def test_a_threshold_is_strict_at_its_own_value() -> None:
    p = clustered(0)
    own = _run(p, checks=("outliers",), robust=False).images["own_similarity"].to_numpy()
    row = int(np.nanargmin(np.where(own > 0.5, own, np.nan)))
    at = float(own[row])
    kept = _run(p, checks=("outliers",), robust=False, drop_below=at, review_below=at)
    assert kept.images["decision"][row] == "keep"
    above = float(np.nextafter(at, 1.0))
    flagged = _run(p, checks=("outliers",), robust=False, drop_below=above, review_below=above,
                   relabel_above=1.0)  # fmt: skip
    assert flagged.images["decision"][row] == "drop"


def _reference_merges(p: Planted, threshold: float) -> tuple[set, dict]:
    x, labels = _unit(p), list(p.labels)
    names = sorted(set(labels))
    sums = {c: x[[j for j in range(len(x)) if labels[j] == c]].sum(0) for c in names}
    pairs = {
        (a, b)
        for ai, a in enumerate(names)
        for b in names[ai + 1 :]
        if _cos(sums[a], sums[b]) >= threshold
    }
    group: dict[str, set] = {}
    for a, b in sorted(pairs):
        joined = group.get(a, {a}) | group.get(b, {b})
        for m in joined:
            group[m] = joined
    return pairs, group


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("threshold", [0.3, 0.6])
def test_merges_equal_the_all_pairs_loop(seed: int, threshold: float) -> None:
    p = clustered(seed)
    found = _run(p, checks=("merges",), robust=False, merge_above=threshold)
    pairs, group = _reference_merges(p, threshold)
    got = set(zip(found.merges["label_a"], found.merges["label_b"], strict=True))
    assert got == pairs and ("c11", "c12") in got
    classes = found.classes.set_index("label")
    sizes = pd.Series(p.labels).value_counts()
    for label, members in group.items():
        target = sorted(members, key=lambda m: (-sizes[m], m))[0]
        assert classes.loc[label, "merge_into"] == target
        assert classes.loc[label, "decision"] == "merge"
        same = classes.loc[sorted(members), "merge_group"]
        assert same.nunique() == 1
    assert (classes.loc[[c for c in classes.index if c not in group], "merge_group"].isna()).all()


def _reference_duplicates(
    p: Planted, threshold: float, allowed: Callable[[str, str], bool] | None = None
) -> list[int]:
    """The keep walk: each row, in input order, duplicates the most similar row kept before
    it at ≥ threshold (ties to the earlier)."""
    x, labels = _unit(p), list(p.labels)
    dup = [-1] * len(x)
    for i in range(len(x)):
        best, best_sim = -1, -2.0
        for j in range(i):
            if dup[j] >= 0:
                continue
            if allowed is not None and labels[i] != labels[j] and not allowed(labels[i], labels[j]):
                continue
            s = float(x[i] @ x[j])
            if s >= threshold and s > best_sim:
                best, best_sim = j, s
        dup[i] = best
    return dup


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("threshold", [0.9, 0.97])
def test_duplicates_equal_the_keep_walk_over_all_pairs(seed: int, threshold: float) -> None:
    p = clustered(seed)
    found = _run(p, checks=("duplicates",), duplicate_above=threshold).images
    want = _reference_duplicates(p, threshold)
    names = np.array(p.file_names, dtype=object)
    assert found["duplicate_of"].tolist() == [names[d] if d >= 0 else "" for d in want]
    assert ((found["decision"] == "duplicate") == (np.array(want) >= 0)).all()
    for original, copy in p.copies:
        assert found["duplicate_of"][copy] == p.file_names[original]


def test_large_inputs_look_for_duplicates_across_linked_classes_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(decide_module, "DUPLICATES_ALL_PAIRS", 0)
    p = clustered(0)
    found = _run(p, checks=("outliers", "merges", "duplicates"), duplicate_above=0.9)
    linked = set(zip(found.merges["label_a"], found.merges["label_b"], strict=True))
    relabels = _run(p, checks=("outliers",)).images  # what duplicate may hide
    moved = relabels[relabels["decision"] == "relabel"]
    linked |= set(zip(moved["label"], moved["nearest_label"], strict=True))
    want = _reference_duplicates(p, 0.9, lambda a, b: (a, b) in linked or (b, a) in linked)
    got = found.images["duplicate_of"].tolist()
    names = np.array(p.file_names, dtype=object)
    assert got == [names[d] if d >= 0 else "" for d in want]
    assert "linked" in found.summary["duplicates_across_classes"]
    for original, copy in p.copies:  # linked by their relabel
        assert got[copy] == p.file_names[original]
    unlinked = _run(p, checks=("merges", "duplicates"), duplicate_above=0.9).images
    assert [unlinked["duplicate_of"][copy] for _, copy in p.copies] == ["", ""]


@pytest.mark.parametrize("seed", SEEDS)
def test_the_mixed_class_is_split_into_its_two_identities(seed: int) -> None:
    p = clustered(seed)
    found = _run(p, checks=("mixed",))
    classes = found.classes.set_index("label")
    assert classes.index[classes["decision"] == "split"].tolist() == p.mixed
    rows = found.images[found.images["label"] == "c14"]
    groups = rows["split_group"].astype(int).to_numpy()
    half = len(rows) // 2
    truth = np.r_[np.zeros(half, int), np.ones(len(rows) - half, int)]
    assert (groups == truth).all() or (groups == 1 - truth).all()
    assert found.images.loc[found.images["label"] != "c14", "split_group"].isna().all()


def test_singletons_are_kept_and_never_outliers() -> None:
    p = clustered(0)
    found = _run(p, drop_below=0.99, review_below=0.99)
    row = p.file_names.index("single/0.jpg")
    assert found.images.loc[row, ["decision", "reason"]].tolist() == ["keep", "singleton"]
    assert np.isnan(found.images.loc[row, "own_similarity"])
    single = found.classes.set_index("label").loc["single"]
    assert single["decision"] == "singleton" and single["images"] == 1


def test_unusable_rows_are_left_out_of_the_centroids() -> None:
    p = clustered(0)
    bad = np.zeros(len(p.labels), bool)
    bad[[0, 1]] = True
    with_bad = _run(p, unusable=bad, robust=False)
    p.vectors = np.delete(p.vectors, [0, 1], axis=0)
    p.labels = np.delete(p.labels, [0, 1])
    p.file_names = p.file_names[2:]
    without = _run(p, robust=False)
    assert with_bad.images["decision"][:2].tolist() == ["unusable", "unusable"]
    np.testing.assert_allclose(
        with_bad.images["own_similarity"][2:], without.images["own_similarity"], atol=1e-6
    )


def test_quality_columns_follow_their_definitions() -> None:
    p = clustered(1)
    found = _run(p)
    own = found.images.groupby("label")["own_similarity"]
    classes = found.classes.set_index("label")
    np.testing.assert_allclose(classes["mean_similarity"], own.mean(), atol=1e-9)
    np.testing.assert_allclose(classes["spread"], own.std(ddof=0).fillna(np.nan), atol=1e-9)
    np.testing.assert_allclose(classes["min_similarity"], own.min(), atol=1e-9)
    assert classes["images"].to_dict() == pd.Series(p.labels).value_counts().to_dict()


def test_auto_picks_thresholds_from_the_distributions_and_says_so() -> None:
    p = clustered(0)
    found = _run(p, auto=True)
    picked = found.summary["thresholds"]
    figures = found.summary["auto_figures"]
    assert picked["drop_below"] == pytest.approx(figures["imposter"]["q99"], abs=1e-4)
    assert picked["drop_below"] <= picked["review_below"]
    assert set(found.summary["auto_picked"]) >= {"drop_below", "merge_above"}
    assert picked["duplicate_above"] == CleanOptions().duplicate_above  # not picked
    assert found.options.auto


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"drop_below": 0.5, "review_below": 0.4}, "review_below (0.4) is below drop_below"),
        ({"merge_above": 1.5}, "merge_above is a cosine similarity: expected -1 to 1"),
        ({"relabel_margin": -0.1}, "relabel_margin is a cosine similarity: expected 0 to 2"),
        ({"checks": ("outliers", "faces")}, "checks: expected one or more of"),
        ({"checks": ()}, "found none"),
        ({"split_below": float("nan")}, "split_below: expected a number"),
    ],
)
def test_options_out_of_range_are_refused(options: dict, words: str) -> None:
    with pytest.raises(OptionError, match=words.replace("(", r"\(").replace(")", r"\)")):
        CleanOptions(**options)


def _best_bipartition(x: np.ndarray) -> np.ndarray:
    """The 0/1 grouping of the unit rows ``x`` that maximises spherical 2-means' objective,
    |sum of group 0| + |sum of group 1|, by trying every bipartition (the first row in group
    1, as a label swap changes nothing)."""
    n = len(x)
    best, best_value = np.zeros(n, int), -np.inf
    for mask in range(1 << (n - 1)):
        group = np.array([(mask >> k) & 1 for k in range(n - 1)] + [1])
        if group.all():
            continue
        value = sum(np.linalg.norm(x[group == g].sum(axis=0)) for g in (0, 1))
        if value > best_value + 1e-9:
            best, best_value = group, value
    return best


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("split_below", [0.2, 0.45, 0.7])
def test_splits_equal_the_rule_over_the_best_bipartition_found_by_trying_all(
    seed: int, split_below: float
) -> None:
    """The split rule of docs/clean.md from its definition: the pre-filter (classes of ≥ 4
    images with a mean own similarity under 0.9 × the median class's, or a spread over 2 ×
    the median), the best of all bipartitions, then both groups ≥ 2 images and ≥ 20 %, the
    group centroids' cosine under ``split_below``, each group's leave-one-out cohesion ≥
    ``relabel_above``."""
    p = clustered(seed)
    found = _run(p, checks=("mixed",), robust=False, split_below=split_below)
    x = _unit(p)
    labels = p.labels.astype(str)
    own = found.images["own_similarity"].to_numpy(dtype=float)
    stats = {}
    for label in sorted(set(labels)):
        rows = np.flatnonzero(labels == label)
        stats[label] = (len(rows), own[rows].mean(), own[rows].std())
    big = [k for k, (n, _, _) in stats.items() if n >= 4]
    median_mean = np.median([stats[k][1] for k in big])
    median_spread = np.median([stats[k][2] for k in big])
    expected, groups = [], {}
    for label in big:
        n, mean, spread = stats[label]
        if not (mean < 0.9 * median_mean or spread > 2 * median_spread):
            continue
        rows = np.flatnonzero(labels == label)
        group = _best_bipartition(x[rows])
        parts = [x[rows][group == g] for g in (0, 1)]
        sizes = [len(part) for part in parts]
        between = _cos(parts[0].sum(axis=0), parts[1].sum(axis=0))
        cohesion = [
            np.mean([_cos(part[i], part.sum(axis=0) - part[i]) for i in range(len(part))])
            if len(part) > 1
            else np.nan
            for part in parts
        ]
        if (
            min(sizes) >= 2
            and min(sizes) >= 0.2 * n
            and between < split_below
            and min(cohesion) >= CleanOptions().relabel_above
        ):
            expected.append(label)
            groups[label] = group
    classes = found.classes.set_index("label")
    assert sorted(classes.index[classes["decision"] == "split"]) == expected
    assert expected == ["c14"] or split_below != 0.45  # the planted mixed class, at the default
    for label, group in groups.items():
        got = found.images.loc[labels == label, "split_group"].astype(int).to_numpy()
        assert (got == group).all() or (got == 1 - group).all()
