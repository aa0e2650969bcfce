"""Small random clustered embeddings with planted defects, for the clean tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Planted:
    file_names: list[str]
    labels: np.ndarray  # object array of str
    vectors: np.ndarray  # (N, E) float32, not normalised
    mislabelled: list[int]  # rows filed under the wrong class
    split_pairs: list[tuple[str, str]]  # two folders of one identity
    mixed: list[str]  # classes holding two identities
    copies: list[tuple[int, int]]  # (original, near copy)


def clustered(
    seed: int = 0, classes: int = 24, per_class: int = 7, dim: int = 32, noise: float = 0.9
) -> Planted:
    """``classes`` identities of ``per_class`` images around random centres, with a few
    mislabelled images, one identity split over two folders, one mixed folder, near copies
    (within and across classes) and a singleton class."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes + 2, dim))
    names, labels, rows = [], [], []
    sizes = rng.integers(max(per_class - 3, 2), per_class + 3, classes)
    for c in range(classes):
        for k in range(int(sizes[c])):
            names.append(f"c{c:02d}/{k}.jpg")
            labels.append(f"c{c:02d}")
            rows.append(centres[c] + noise * rng.normal(size=dim) * np.sqrt(1 / dim) * 4)
    x = np.array(rows)
    lab = np.array(labels, dtype=object)
    starts = np.searchsorted(lab, [f"c{c:02d}" for c in range(classes)])
    mislabelled = [int(starts[c]) + 1 for c in (2, 5, 9)]
    for r, c in zip(mislabelled, (3, 6, 10), strict=True):
        x[r] = centres[c] + noise * rng.normal(size=dim) * np.sqrt(1 / dim) * 4
    # c12 is c11's identity (a split identity); c14 holds a second identity in half its images
    x[labels.index("c12") : labels.index("c13")] = (
        centres[11] + noise * rng.normal(size=(int(sizes[12]), dim)) * np.sqrt(1 / dim) * 4
    )
    half = int(sizes[14]) // 2
    at = labels.index("c14")
    x[at : at + half] = (
        centres[classes] + noise * rng.normal(size=(half, dim)) * np.sqrt(1 / dim) * 4
    )
    copies = [(at + half + 1, len(names)), (int(starts[0]), len(names) + 1)]
    names += ["c15/copy.jpg", "c16/copy_of_c00.jpg", "single/0.jpg"]
    labels_extra = ["c15", "c16", "single"]
    extra = np.stack(
        [
            x[copies[0][0]] * 1.3 + 0.01 * rng.normal(size=dim),
            x[copies[1][0]] + 0.01 * rng.normal(size=dim),
            centres[classes + 1],
        ]
    )
    x = np.concatenate([x, extra])
    lab = np.concatenate([lab, np.array(labels_extra, dtype=object)])
    return Planted(names, lab, x.astype(np.float32), mislabelled, [("c11", "c12")], ["c14"], copies)
