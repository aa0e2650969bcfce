"""The 10-fold protocol against a straightforward re-implementation of insightface's
calculate_roc (per fold: every threshold's accuracy on the other folds, the first best)."""

from __future__ import annotations

import numpy as np
import pytest

from fmlkit.errors import InputError
from fmlkit.eval.verification import (
    _kfold,
    _slinear_at,
    pair_distances,
    roc_points,
    score_pairs,
    val_at_far,
    verify,
)


def _reference(dist: np.ndarray, same: np.ndarray) -> tuple[float, float, float]:
    n = len(dist)
    sizes = [n // 10 + (1 if k < n % 10 else 0) for k in range(10)]
    starts = np.cumsum([0, *sizes])
    accs, thrs = [], []
    for k in range(10):
        test = np.arange(starts[k], starts[k + 1])
        train = np.array([i for i in range(n) if i not in set(test.tolist())])
        best_t, best_acc = 0.0, -1.0
        for t in [i / 100 for i in range(400)]:
            acc = np.mean((dist[train] < t) == same[train])
            if acc > best_acc:
                best_t, best_acc = t, acc
        thrs.append(best_t)
        accs.append(np.mean((dist[test] < best_t) == same[test]))
    return float(np.mean(accs)), float(np.std(accs)), float(np.mean(thrs))


@pytest.mark.parametrize(("n", "seed"), [(60, 0), (203, 1), (600, 2)])
def test_verify_equals_the_straightforward_protocol(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.5
    dist = np.clip(np.where(same, 1.0, 2.2) + rng.normal(0, 0.45, n), 0, 4)
    dist[:5] = np.round(dist[:5], 2)  # distances exactly on a threshold
    got = verify(dist, same)
    accuracy, std, threshold = _reference(dist, same)
    assert got.accuracy == pytest.approx(accuracy, abs=1e-12)
    assert got.accuracy_std == pytest.approx(std, abs=1e-12)
    assert got.threshold == pytest.approx(threshold, abs=1e-9)
    assert 0.8 < got.accuracy < 1.0 and got.pairs == n


def test_pair_distances_are_squared_l2_of_normalised_rows() -> None:
    a = np.array([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    b = np.array([[5.0, 0.0], [0.0, -1.0], [-1.0, 1.0]])
    np.testing.assert_allclose(pair_distances(a, b), [0.0, 4.0, 2.0])


def test_verify_refuses_too_few_pairs_and_nan() -> None:
    with pytest.raises(InputError, match="cannot make 10 folds"):
        verify(np.zeros(5), np.ones(5, bool))
    with pytest.raises(InputError, match="NaN"):
        verify(np.full(20, np.nan), np.ones(20, bool))


# --- score_pairs: every metric of one pair list ---------------------------------------------


def _pairs(n: int, seed: int, dim: int = 8, noise: float = 1.0) -> tuple[np.ndarray, ...]:
    """Embedding pairs whose classes alternate in blocks (as LFW's folds do), not normalised."""
    rng = np.random.default_rng(seed)
    same = (np.arange(n) // 3) % 2 == 0
    first = rng.normal(size=(n, dim)) * rng.uniform(0.5, 3, size=(n, 1))
    second = np.where(same[:, None], first, rng.normal(size=(n, dim))) + rng.normal(
        0, noise, size=(n, dim)
    )
    return first, second, same


def _brute_roc(sim: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TAR) accepting similarity ≥ t, for t = +inf then every distinct score, descending."""
    far, tar = [], []
    for t in [np.inf, *sorted(set(sim.tolist()), reverse=True)]:
        far.append(np.mean(sim[~same] >= t))
        tar.append(np.mean(sim[same] >= t))
    return np.array(far), np.array(tar)


def test_score_pairs_accuracy_equals_verify_and_the_straightforward_protocol() -> None:
    first, second, same = _pairs(500, 3, noise=1.3)
    got = score_pairs(first, second, same).result
    expected = verify(pair_distances(first, second), same)
    assert (got["accuracy"], got["accuracy_std"], got["threshold"], got["pairs"]) == (
        expected.accuracy,
        expected.accuracy_std,
        expected.threshold,
        500,
    )
    accuracy, std, threshold = _reference(pair_distances(first, second), same)
    assert got["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert got["accuracy_std"] == pytest.approx(std, abs=1e-12)
    assert got["threshold"] == pytest.approx(threshold, abs=1e-9)
    assert 0.6 < got["accuracy"] < 0.99


def test_score_pairs_similarities_are_cosines_in_file_order() -> None:
    first, second, same = _pairs(40, 4)
    scores = score_pairs(first, second, same)
    for i in (0, 17, 39):
        a, b = first[i], second[i]
        assert scores.similarities[i] == pytest.approx(
            a @ b / np.linalg.norm(a) / np.linalg.norm(b)
        )
    assert scores.similarities.dtype == np.float64 and scores.same.dtype == bool


def test_score_pairs_auc_equals_sklearn() -> None:
    from sklearn.metrics import roc_auc_score

    first, second, same = _pairs(300, 5, noise=1.5)
    scores = score_pairs(first, second, same)
    sim = [
        float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
        for a, b in zip(first, second, strict=True)
    ]
    assert scores.result["auc"] == pytest.approx(roc_auc_score(same, sim), abs=1e-12)
    assert 0.6 < scores.result["auc"] < 0.99


def test_score_pairs_eer_and_tar_at_far_agree_with_a_brute_force_roc() -> None:
    from sklearn.metrics import roc_curve

    first, second, same = _pairs(3000, 6, noise=1.4)
    keep = np.ones(3000, bool)
    keep[np.flatnonzero(same)[::200]] = False  # 1,492 genuine, 1,500 imposters: 1e-1 … 1e-3
    first, second, same = first[keep], second[keep], same[keep]
    scores = score_pairs(first, second, same)
    far, tar = _brute_roc(scores.similarities, same)
    np.testing.assert_allclose(scores.roc(), (far, tar), atol=1e-12)
    sk_far, sk_tar, _ = roc_curve(same, scores.similarities, drop_intermediate=False)
    np.testing.assert_allclose((far, tar), (sk_far, sk_tar), atol=1e-12)
    # EER: the point on the polyline of ROC points where FNR = FAR
    fnr = 1 - tar
    for i in range(1, len(far)):
        if fnr[i] <= far[i]:
            # FNR - FAR is linear along the segment; solve for its zero
            t = (fnr[i - 1] - far[i - 1]) / ((fnr[i - 1] - far[i - 1]) - (fnr[i] - far[i]))
            eer = far[i - 1] + t * (far[i] - far[i - 1])
            assert eer == pytest.approx(fnr[i - 1] + t * (fnr[i] - fnr[i - 1]), abs=1e-12)
            assert far[i - 1] <= eer <= far[i] and fnr[i] <= eer <= fnr[i - 1]
            break
    assert scores.result["eer"] == pytest.approx(eer, abs=1e-12)
    assert eer not in far.tolist()  # FAR and FNR steps differ: EER lies between ROC points
    assert 0.02 < scores.result["eer"] < 0.4
    expected = {}
    for key in ("1e-1", "1e-2", "1e-3"):
        expected[key] = max(tar[i] for i in range(len(far)) if far[i] <= float(key))
    assert scores.result["tar_at_far"] == pytest.approx(expected, abs=1e-12)
    assert list(scores.result["tar_at_far"]) == ["1e-1", "1e-2", "1e-3"]


def test_score_pairs_eer_at_a_roc_point_and_perfect_separation() -> None:
    same = np.array([True, False] * 10)
    first = np.eye(2)[np.zeros(20, int)]
    # genuine similarities 1, imposter -1: perfect; one genuine pair swapped with one imposter
    second = np.where(same[:, None], first, -first)
    perfect = score_pairs(first, second, same).result
    assert (perfect["eer"], perfect["auc"], perfect["tar_at_far"]) == (0.0, 1.0, {"1e-1": 1.0})
    second[0], second[1] = -first[0], first[1]
    swapped = score_pairs(first, second, same).result
    assert swapped["eer"] == pytest.approx(0.1)  # 1 of 10 on each side
    assert swapped["tar_at_far"] == {"1e-1": 0.9}


def _calculate_val(dist: np.ndarray, same: np.ndarray, far_target: float, folds: int) -> float:
    """insightface's calculate_val, loop by loop, with scipy ≤ 1.8's interp1d(kind='slinear'):
    a degree-1 B-spline on the mergesorted points with the end knots doubled."""
    from scipy.interpolate import BSpline

    thresholds = np.arange(0, 4, 0.001)
    n = len(dist)
    sizes = [n // folds + (1 if k < n % folds else 0) for k in range(folds)]
    starts = np.cumsum([0, *sizes])
    vals = []
    for k in range(folds):
        test = np.arange(starts[k], starts[k + 1])
        train = np.setdiff1d(np.arange(n), test)
        far_train = np.zeros(len(thresholds))
        for j, t in enumerate(thresholds):
            accept = dist[train] < t
            far_train[j] = np.sum(accept & ~same[train]) / np.sum(~same[train])
        if np.max(far_train) >= far_target:
            order = np.argsort(far_train, kind="mergesort")
            x, y = far_train[order], thresholds[order]
            threshold = float(BSpline(np.r_[x[0], x, x[-1]], y, 1)(far_target))
        else:
            threshold = 0.0
        if not same[test].any():  # insightface: ZeroDivisionError; here: left out
            continue
        accept = dist[test] < threshold
        vals.append(np.sum(accept & same[test]) / np.sum(same[test]))
    return float(np.mean(vals))


@pytest.mark.parametrize(("n", "folds", "seed"), [(2000, 10, 7), (4000, 2, 8), (620, 10, 9)])
def test_val_at_far_equals_insightface_calculate_val(n: int, folds: int, seed: int) -> None:
    # (4000, 2): 1,000 imposters per training half, so FAR = 1e-3 is met exactly on the grid
    first, second, same = _pairs(n, seed, noise=1.2)
    dist = pair_distances(first, second)
    on_grid = np.minimum(np.round(dist[::7] * 1000).astype(int), 3999)
    dist[::7] = np.arange(0, 4, 0.001)[on_grid]  # exactly on a threshold: < versus <=
    got = val_at_far(dist, same, far=1e-3, folds=folds)
    assert got == _calculate_val(dist, same, 1e-3, folds)
    assert 0.0 < got < 1.0
    if folds == 10:
        scores = score_pairs(first, second, same).result["val_at_far_1e-3"]
        assert scores == _calculate_val(pair_distances(first, second), same, 1e-3, folds)


def test_val_at_far_is_zero_when_no_imposter_is_accepted_below_4() -> None:
    same = np.array([True, False] * 20)
    dist = np.where(same, 0.5, 4.0)  # antipodal imposters: FAR stays 0 on the whole grid
    assert val_at_far(dist, same) == _calculate_val(dist, same, 1e-3, 10) == 0.0


def test_val_at_far_leaves_out_folds_without_genuine_pairs() -> None:
    rng = np.random.default_rng(10)
    same = np.arange(200) < 100  # folds 5-9 hold imposters only: insightface divides by 0
    dist = np.where(same, rng.uniform(0, 1.5, 200), rng.uniform(1, 4, 200))
    got = val_at_far(dist, same)
    assert got == _calculate_val(dist, same, 1e-3, 10)
    assert 0.0 < got < 1.0


def test_val_at_far_counts_distances_strictly_below_the_thresholds() -> None:
    grid = np.arange(0, 4, 0.001)
    # per fold: 1,000 imposters, at 0.5 and 1.0 (grid points) and 3.5; FAR = 1e-3 is reached
    # between 0.5 and 1.0 with "<", so the threshold is 1.0; with "<=" it would be 0.999
    imposters = np.r_[grid[500], grid[1000], np.full(998, 3.5)]
    genuine = np.r_[grid[1000], 0.9995, 0.2, 1.5]  # accepted: 0.9995 and 0.2
    dist = np.r_[genuine, imposters, genuine, imposters]
    same = np.r_[np.ones(4, bool), np.zeros(1000, bool)]
    same = np.r_[same, same]
    assert val_at_far(dist, same, folds=2) == _calculate_val(dist, same, 1e-3, 2) == 0.5


@pytest.mark.parametrize(
    ("far", "target"),
    [
        ([0, 0, 0, 0.001, 0.001, 0.002, 0.5, 1, 1], 0.001),  # target on a repeated value
        ([0, 0, 0, 0.0005, 0.0015, 0.0015, 0.3, 1, 1], 0.001),  # between two values
        ([0, 0, 0, 0, 0, 0, 0, 0.001, 0.001], 0.001),  # repeated at the very end: 0
        ([0, 0.0002, 0.0004, 0.0006, 0.0008, 0.0009, 0.00095, 0.001, 0.002], 0.001),
        ([0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08], 0.0),  # at the first point
    ],
)
def test_slinear_at_is_scipy_1_8_interp1d(far: list[float], target: float) -> None:
    from scipy.interpolate import BSpline

    x = np.array(far)
    y = np.arange(len(x)) * 0.001
    expected = float(BSpline(np.r_[x[0], x, x[-1]], y, 1)(target))
    assert _slinear_at(x, y, target) == expected


def test_score_pairs_result_is_json_ready_in_the_documented_order() -> None:
    import json

    first, second, same = _pairs(120, 11)
    result = score_pairs(first.astype(np.float32), second, same.astype(int)).result
    assert list(result) == [
        "accuracy",
        "accuracy_std",
        "threshold",
        "val_at_far_1e-3",
        "auc",
        "eer",
        "tar_at_far",
        "pairs",
    ]
    assert json.loads(json.dumps(result)) == result
    assert all(type(v) is float for k, v in result.items() if k not in ("tar_at_far", "pairs"))
    assert type(result["pairs"]) is int and result["tar_at_far"].keys() == {"1e-1"}
    assert all(type(v) is float for v in result["tar_at_far"].values())


def _bad(kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    first, second, same = _pairs(30, 12)
    if kind == "shape":
        second = second[:, :5]
    elif kind == "flags":
        same = same[:-1]
    elif kind == "nan":
        first[3, 1] = np.nan
    elif kind == "inf":
        second[4, 0] = np.inf
    elif kind == "zero":
        second[7] = 0
    elif kind == "one class":
        same = np.ones(30, bool)
    elif kind == "few":
        first, second, same = first[:9], second[:9], same[:9]
    elif kind == "not 0/1":
        same = np.full(30, 2)
    return first, second, same


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("shape", r"one shape, found \(30, 8\) and \(30, 5\)"),
        ("flags", "expected 30 same/different flags"),
        ("nan", r"1 first embeddings hold NaN or infinite values \(pairs 3\)"),
        ("inf", r"1 second embeddings hold NaN or infinite values \(pairs 4\)"),
        ("zero", r"1 second embeddings are all zeros .*\(pairs 7\)"),
        ("one class", "found 30 genuine and 0 imposter pairs"),
        ("few", "9 pairs cannot make 10 folds"),
        ("not 0/1", "booleans or 0/1"),
    ],
)
def test_score_pairs_refuses_bad_input(kind: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        score_pairs(*_bad(kind))


@pytest.mark.parametrize("n", [10, 11, 19, 20, 203, 600])
def test_kfold_equals_scikit_learns_kfold_without_shuffle(n: int) -> None:
    from sklearn.model_selection import KFold

    ours = list(_kfold(n, 10))
    theirs = list(KFold(n_splits=10, shuffle=False).split(np.zeros(n)))
    assert len(ours) == len(theirs) == 10
    for (train, test), (sk_train, sk_test) in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(train, sk_train)
        np.testing.assert_array_equal(test, sk_test)


@pytest.mark.parametrize("levels", [None, 7])
def test_roc_points_equal_scikit_learns_roc_curve_with_every_point(levels: int | None) -> None:
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(3)
    same = rng.random(500) < 0.4
    sim = rng.normal(size=500) + same
    if levels is not None:  # many ties: one ROC point per distinct similarity
        sim = np.round(sim * levels) / levels
    far, tar = roc_points(same, sim)
    sk_far, sk_tar, _ = roc_curve(same, sim, drop_intermediate=False)
    np.testing.assert_allclose(far, sk_far, rtol=0, atol=1e-15)
    np.testing.assert_allclose(tar, sk_tar, rtol=0, atol=1e-15)
