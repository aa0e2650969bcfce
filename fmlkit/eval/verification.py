"""Verification accuracy by insightface's 10-fold protocol (REFERENCE §4), pure array code.

Embeddings (flip-summed by the caller) are L2-normalised; a pair's distance is the squared L2
distance between them, in [0, 4]; a pair is called "same" when its distance is below the
threshold. The pairs are cut into 10 folds in file order (scikit-learn's ``KFold`` without
shuffling, as insightface); for each fold the threshold in 0, 0.01, …, 3.99 with the best
accuracy on the other 9 folds (the first one on ties) is applied to it. Reported: the mean of
the 10 fold accuracies, their population standard deviation (insightface's ±, not FaceX-Zoo's
standard error), and the mean of the 10 thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmlkit.errors import InputError

THRESHOLDS = np.arange(0, 4, 0.01)


@dataclass(frozen=True)
class Verification:
    accuracy: float  # mean of the fold accuracies
    accuracy_std: float  # population std of the fold accuracies
    threshold: float  # mean of the fold thresholds, squared-L2 units
    pairs: int


def pair_distances(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Squared L2 distances between the L2-normalised rows of ``first`` and ``second``."""
    a = first / np.linalg.norm(first, axis=1, keepdims=True)
    b = second / np.linalg.norm(second, axis=1, keepdims=True)
    return np.square(a - b).sum(axis=1)


def verify(distances: np.ndarray, same: np.ndarray, *, folds: int = 10) -> Verification:
    """The 10-fold verification accuracy of pairs at ``distances`` whose truth is ``same``.

    Raises:
        InputError: fewer pairs than folds, or NaN distances.
    """
    from sklearn.model_selection import KFold

    distances, same = np.asarray(distances, np.float64), np.asarray(same, bool)
    if len(distances) < folds:
        raise InputError(f"{len(distances)} pairs cannot make {folds} folds")
    if np.isnan(distances).any():
        raise InputError("some pair distances are NaN: the embeddings hold NaN")
    # correct[t, i]: pair i is classified right at threshold t
    correct = (distances[None, :] < THRESHOLDS[:, None]) == same[None, :]
    accuracies, thresholds = [], []
    for train, test in KFold(n_splits=folds, shuffle=False).split(distances):
        best = int(np.argmax(correct[:, train].mean(axis=1)))  # first best on ties
        thresholds.append(THRESHOLDS[best])
        accuracies.append(correct[best, test].mean())
    return Verification(
        float(np.mean(accuracies)),
        float(np.std(accuracies)),
        float(np.mean(thresholds)),
        len(distances),
    )
