"""The 10-fold protocol against a straightforward re-implementation of insightface's
calculate_roc (per fold: every threshold's accuracy on the other folds, the first best)."""

from __future__ import annotations

import numpy as np
import pytest

from fmlkit.errors import InputError
from fmlkit.eval.verification import pair_distances, verify


def _reference(dist: np.ndarray, same: np.ndarray) -> tuple[float, float, float]:
    n = len(dist)
    sizes = [n // 10 + (1 if k < n % 10 else 0) for k in range(10)]
    starts = np.cumsum([0, *sizes])
    accs, thrs = [], []
    for k in range(10):
        test = list(range(starts[k], starts[k + 1]))
        train = [i for i in range(n) if i not in set(test)]
        best_t, best_acc = None, -1.0
        for t in [i / 100 for i in range(400)]:
            acc = sum((dist[i] < t) == same[i] for i in train) / len(train)
            if acc > best_acc:
                best_t, best_acc = t, acc
        thrs.append(best_t)
        accs.append(sum((dist[i] < best_t) == same[i] for i in test) / len(test))
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
