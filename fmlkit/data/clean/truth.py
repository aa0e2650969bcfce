"""`fmlkit clean --truth`: the decisions scored against `fmlkit synth`'s truth CSV
(``file_name, label, kind, source``; the label-noise kinds of docs/synth.md).

Only what the embeddings hold counts as planted: the mislabelled images among their rows, the
split identities with both folders among their labels, the mixed folders among their labels.

- mislabels: found = ``drop`` or ``relabel``, the decisions taken without a person (the
  ``mislabel_precision`` / ``mislabel_recall`` figures); flagged = those or ``review`` (the
  ``flagged_*`` figures: what a person is shown). Precision counts as right a planted
  ``mislabel`` and a ``mixed`` image whose class is split; recall is over the planted
  mislabels. ``relabel_right``: the share of relabels that name the true identity.
- split identities (an identity's images in two folders): found when both folders are in one
  merge group; a merge group is false when its classes are not all one true identity; false
  groups are also given per 1,000 classes.
- mixed classes (two identities in one folder): found when the class is split.
- curves: precision and recall of "own similarity < t" over a sweep of the drop threshold;
  split identities found and false merge groups over a sweep of the merge threshold.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from fmlkit.columns import (
    DECISION,
    FILE_NAME,
    KIND,
    LABEL,
    MERGE_GROUP,
    MISLABEL,
    MIXED,
    OWN_SIMILARITY,
    SOURCE,
    SPLIT_IDENTITY,
    TRUTH_COLUMNS,
)
from fmlkit.data.clean.groups import merge_groups
from fmlkit.data.clean.similarity import pairs_above
from fmlkit.data.formats.table import read_table

FOUND = ("drop", "relabel")
FLAGGED = (*FOUND, "review")
DROP_SWEEP = np.round(np.arange(-0.2, 0.951, 0.05), 2)
MERGE_SWEEP = np.round(np.arange(0.2, 0.991, 0.05), 2)


def read_truth(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The truth CSV `fmlkit synth` writes (`TRUTH_COLUMNS`).

    Raises:
        InputError, SchemaError: a missing file or column (`read_table`).
    """
    return read_table(path, required=TRUTH_COLUMNS, what="truth",
                      fix="Pass the truth CSV `fmlkit synth` wrote.")  # fmt: skip


def score(
    truth: pd.DataFrame,
    images: pd.DataFrame,
    classes: pd.DataFrame,
    centroids: np.ndarray,
) -> dict[str, Any]:
    """The scores (module doc) of the decision tables against ``truth``."""
    kind = truth.set_index(FILE_NAME)[KIND]
    source = truth.set_index(FILE_NAME)[SOURCE]
    names = images[FILE_NAME]
    planted = names.map(kind).fillna("").to_numpy()
    found = images[DECISION].isin(FOUND).to_numpy()
    flagged = images[DECISION].isin(FLAGGED).to_numpy()
    split_classes = set(classes.loc[classes[DECISION] == "split", LABEL])
    mixed_right = (planted == MIXED) & images[LABEL].isin(split_classes).to_numpy()
    mislabel = planted == MISLABEL
    right = mislabel | mixed_right
    relabel = (images[DECISION] == "relabel").to_numpy()
    true_source = names.map(source).to_numpy()
    scores: dict[str, Any] = {
        "mislabels_planted": int(mislabel.sum()),
        "found": int(found.sum()),
        "mislabel_precision": _ratio(int((found & right).sum()), int(found.sum())),
        "mislabel_recall": _ratio(int((found & mislabel).sum()), int(mislabel.sum())),
        "flagged": int(flagged.sum()),
        "flagged_precision": _ratio(int((flagged & right).sum()), int(flagged.sum())),
        "flagged_recall": _ratio(int((flagged & mislabel).sum()), int(mislabel.sum())),
        "relabel_right": _ratio(
            int((relabel & mislabel & (images["new_label"].to_numpy() == true_source)).sum()),
            int(relabel.sum()),
        ),
    }
    scores |= _merge_scores(truth, classes)
    mixed = set(truth.loc[truth[KIND] == MIXED, LABEL]) & set(classes[LABEL])
    scores["mixed_classes_planted"] = len(mixed)
    scores["mixed_classes_found"] = _ratio(len(mixed & split_classes), len(mixed))
    scores["splits_false"] = len(split_classes - mixed)
    scores["drop_curve"] = _drop_curve(images, mislabel, mixed_right)
    scores["merge_curve"] = _merge_curve(truth, classes, centroids)
    return scores


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _identities(truth: pd.DataFrame, labels: pd.Series) -> dict[str, str]:
    """Class → its true identity: a split folder maps to the folder it came from."""
    split = truth[truth[KIND] == SPLIT_IDENTITY]
    moved = dict(zip(split[LABEL], split[SOURCE], strict=True))
    return {label: moved.get(label, label) for label in labels}


def _merge_scores(truth: pd.DataFrame, classes: pd.DataFrame) -> dict[str, Any]:
    groups = classes[MERGE_GROUP].to_numpy(dtype=float, na_value=np.nan)
    return _groups_scores(truth, classes[LABEL], np.nan_to_num(groups).astype(np.int64))


def _groups_scores(truth: pd.DataFrame, labels: pd.Series, group: np.ndarray) -> dict[str, Any]:
    identity = _identities(truth, labels)
    by_label = dict(zip(labels, group.tolist(), strict=True))
    split = truth[truth[KIND] == SPLIT_IDENTITY][[LABEL, SOURCE]].drop_duplicates()
    present = set(labels)
    pairs = [(a, b) for a, b in zip(split[LABEL], split[SOURCE], strict=True) if {a, b} <= present]
    found = sum(
        1 for a, b in pairs if by_label.get(a, 0) > 0 and by_label.get(a) == by_label.get(b)
    )
    false = 0
    for g in np.unique(group[group > 0]).tolist():
        members = [label for label, k in by_label.items() if k == g]
        false += len({identity[m] for m in members}) > 1
    return {
        "split_identities_planted": len(pairs),
        "split_identities_found": _ratio(found, len(pairs)),
        "merge_groups_false": false,
        "merge_groups_false_per_1000_classes": round(1000 * false / max(len(labels), 1), 3),
    }


def _drop_curve(images: pd.DataFrame, mislabel: np.ndarray, mixed_right: np.ndarray) -> list:
    own = images[OWN_SIMILARITY].to_numpy(dtype=float)
    curve = []
    for t in DROP_SWEEP.tolist():
        with np.errstate(invalid="ignore"):
            flagged = own < t
        curve.append(
            {
                "threshold": t,
                "precision": _ratio(
                    int((flagged & (mislabel | mixed_right)).sum()), int(flagged.sum())
                ),
                "recall": _ratio(int((flagged & mislabel).sum()), int(mislabel.sum())),
            }
        )
    return curve


def _merge_curve(truth: pd.DataFrame, classes: pd.DataFrame, centroids: np.ndarray) -> list:
    labels = classes[LABEL]
    sizes = classes["images"].to_numpy()
    present = np.flatnonzero(sizes > 0)
    i, j, sim = pairs_above(centroids[present], float(MERGE_SWEEP[0]))
    curve = []
    for t in MERGE_SWEEP.tolist():
        over = sim >= t
        group, _ = merge_groups(len(labels), present[i[over]], present[j[over]], sizes)
        found = _groups_scores(truth, labels, group)
        curve.append(
            {
                "threshold": t,
                "split_identities_found": found["split_identities_found"],
                "merge_groups_false": found["merge_groups_false"],
            }
        )
    return curve
