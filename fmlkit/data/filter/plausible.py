"""Removals too large to be believed: said loudly, not silently applied.

A hash verdict that removes half of a class, or a fifth of a dataset, is far more likely a
wrong threshold than a dataset that full of copies (Fashion-MNIST at the old hash-only default:
66 % of the images "near duplicates", none of them). `implausible` counts the rows removed as
``near_duplicate`` or ``cross_label_duplicate`` (the verdicts a hash or a threshold can get
wrong; md5 copies, broken and badly sized rows are certain) per label and overall, and returns
one warning per share over its limit: the summary prints them (``Warning: …``), the report
shows them in a banner, and ``--strict`` turns them into exit status 1.
"""

from __future__ import annotations

import pandas as pd

from fmlkit.columns import LABEL, REASON
from fmlkit.data.filter.dedup import CROSS, NEAR

LABEL_SHARE = 0.5  # of a label's rows, for a label with at least LABEL_MIN rows
LABEL_MIN = 4
DATASET_SHARE = 0.2  # of all rows
_NAMED = 5  # labels named in the warning


def implausible(
    df: pd.DataFrame,
    decision: pd.DataFrame,
    *,
    label_share: float = LABEL_SHARE,
    label_min: int = LABEL_MIN,
    dataset_share: float = DATASET_SHARE,
    confirmed: bool = True,
) -> list[str]:
    """The warnings for duplicate removals over ``dataset_share`` of all rows, or over
    ``label_share`` of a label with at least ``label_min`` rows ([] when plausible);
    ``confirmed``: whether the pairs were confirmed on the pixels (the advice differs)."""
    hashed = decision[REASON].isin([NEAR, CROSS])
    warnings: list[str] = []
    n, gone = len(df), int(hashed.sum())
    fix = "check the pairs in the report (--report), and " + (
        "raise --pixel-threshold or lower --threshold"
        if confirmed
        else "confirm them on the pixels (--confirm pixels --root DIR, the default)"
    )
    if gone and gone >= dataset_share * n:
        warnings.append(
            f"{gone:,} of {n:,} rows ({gone / n:.0%}) removed as near or cross-label "
            f"duplicates, at least {dataset_share:.0%} of the dataset: implausible for real "
            f"data; {fix}"
        )
    labels = df[LABEL].astype(str)
    size = labels.value_counts()
    removed = labels[hashed].value_counts().reindex(size.index, fill_value=0)
    share = removed / size
    over = share[(size >= label_min) & (share >= label_share) & (removed > 0)]
    if len(over):
        over = over.sort_values(ascending=False, kind="stable")
        named = ", ".join(
            f"{label} {removed[label]:,} of {size[label]:,}" for label in over.index[:_NAMED]
        )
        more = f" and {len(over) - _NAMED:,} more" if len(over) > _NAMED else ""
        warnings.append(
            f"{len(over):,} label(s) lost at least {label_share:.0%} of their rows as "
            f"duplicates ({named}{more}; labels of at least {label_min} rows counted): "
            f"implausible for real data; {fix}"
        )
    return warnings
