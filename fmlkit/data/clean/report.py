"""The HTML report of `fmlkit clean --report DIR`: one self-contained page
(`fmlkit.report`) built from the decision tables the stage writes.

What the stage passes (the agreement with the core of `fmlkit.data.clean`): ``images``,
``classes`` and ``merges`` are the frames of ``images.csv``, ``classes.csv`` and ``merges.csv``
exactly as written (numbers may be floats with NaN or strings; empty cells empty or NaN);
``summary`` is the ``summary.json`` dict, of which the report reads

- ``summary["thresholds"]``: ``{"drop_below": …, "review_below": …, "relabel_above": …,
  "relabel_margin": …, "merge_above": …, "split_below": …, "duplicate_above": …}`` (a missing
  or non-numeric one is drawn as no marker);
- ``summary["auto"]``: True with ``--auto``; ``summary["auto_picked"]`` (optional): the
  names of the thresholds it picked; ``summary["auto_figures"]`` (optional): the figures it
  picked them from, ``{distribution: {figure: number}}``;
- ``summary["truth"]`` (optional, ``--truth``): the scores against the truth, ``{name:
  number}`` (nested dicts flattened to ``a.b``; lists left out);
- ``summary["warnings"]`` (optional): sentences shown at the top of the page.

Other keys are ignored. ``DIR/index.html`` shows, in order: summary counts; the thresholds
(and truth scores); histograms with the thresholds marked: every image's cosine to its class
centroid (drop and review lines), the flagged images' cosine to the nearest other class
(relabel line), the merge pairs' centroid cosines (merge line), the near duplicates' cosines
(duplicate line) and the classes' mean similarity; per flagged class, most flagged first, its
typical images (highest cosine to the centroid) beside its flagged ones (a relabel beside a
typical image of the suggested class); merge groups, each class's typical images side by side
with the pair similarities; split candidates, group 0 beside group 1; near duplicates, the
kept image beside the copy; unusable rows; a sortable per-class quality table. Sections are
capped and say "N of M shown"; thumbnails are made only for shown tiles, and everything else
is vectorised, so a million rows take seconds. An image outside ``root``, or with no ``root``,
is a grey tile saying why; the report never reads a file outside ``root``.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmlkit.columns import (
    CLEAN_CLASS_COLUMNS,
    CLEAN_IMAGE_COLUMNS,
    CLEAN_MERGE_COLUMNS,
    DECISION,
    IMAGES,
    LABEL,
    MEAN_SIMILARITY,
    MERGE_GROUP,
    MERGE_INTO,
    MIN_SIMILARITY,
    REASON,
    SIMILARITY,
    SPREAD,
    validate_columns,
)
from fmlkit.data.clean import report_figures as figures
from fmlkit.data.clean.options import THRESHOLDS
from fmlkit.data.clean.report_figures import (
    COLOURS,
    DROP,
    DUPLICATE,
    FLAGGED,
    KEEP,
    RELABEL,
    REVIEW,
    SINGLETON,
    SPLIT,
    TYPICAL,
    UNUSABLE,
    Images,
)
from fmlkit.io import atomic_path
from fmlkit.report import Histogram, Marker, Page, Table, write_gallery
from fmlkit.report.folder import check_report_dir as check_folder
from fmlkit.report.gallery import Block

CLASS_ROWS = 500  # classes in the quality table
FIX = "Run `fmlkit clean` again to write it."


def check_report_dir(out_dir: Path, *, root: Path | None, output: Path | None = None) -> None:
    """Refuse a report folder whose writing would replace what is not an earlier report: a
    file, a folder holding anything but a report's files and ``thumbs/``, the dataset folder
    ``root`` or the decisions folder ``output``, a folder holding one of them, or a folder
    inside one of them (links followed). Call it before the work, to fail early.

    Raises:
        InputError: naming the folder and what it holds.
    """
    check_folder(out_dir, protected=[("dataset folder", root), ("decisions folder", output)])


def write_clean_report(
    images: pd.DataFrame,
    classes: pd.DataFrame,
    merges: pd.DataFrame,
    summary: Mapping[str, Any],
    *,
    root: Path | None,
    out_dir: Path,
) -> None:
    """Write the report folder ``out_dir`` (``index.html`` and ``thumbs/``, replaced
    atomically; `check_report_dir` first) for one run of `fmlkit clean`.

    Args:
        images: images.csv's rows; classes: classes.csv's; merges: merges.csv's.
        summary: summary.json's dict (see the module docstring for the keys read).
        root: the dataset folder the file names are relative to; None shows no images.
        out_dir: the report folder.

    Raises:
        InputError: the report folder is not one to write (see `check_report_dir`).
        SchemaError: a frame lacks a column of the decisions' contract.
    """
    check_report_dir(out_dir, root=root)
    page = build_page(images, classes, merges, summary, root=root)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        write_gallery(page, tmp)


def build_page(
    images: pd.DataFrame,
    classes: pd.DataFrame,
    merges: pd.DataFrame,
    summary: Mapping[str, Any],
    *,
    root: Path | None,
) -> Page:
    """The report's `Page` (no I/O: images are read when the page is written)."""
    validate_columns(images, CLEAN_IMAGE_COLUMNS, what="the decisions' images table", fix=FIX)
    validate_columns(classes, CLEAN_CLASS_COLUMNS, what="the decisions' classes table", fix=FIX)
    validate_columns(merges, CLEAN_MERGE_COLUMNS, what="the decisions' merges table", fix=FIX)
    rows = Images(images, root)
    cls = _Classes(classes)
    thresholds = _thresholds(summary)
    counts = {d: int(rows.decided(d).sum()) for d in COLOURS}
    cards: list[tuple[str, str | int]] = [("images", len(rows.names))]
    cards += [(d, n) for d, n in counts.items() if n or d == KEEP]
    cards += [
        ("classes", len(cls.labels)),
        ("merge groups", len(cls.merge_groups())),
        ("split candidates", int((cls.decisions == SPLIT).sum())),
        ("singletons", int((cls.decisions == SINGLETON).sum())),
    ]
    blocks = _threshold_tables(thresholds, summary)
    truth = _flat(summary.get("truth"))
    if truth:
        blocks.append(Table("Scores against the truth", ["score", "value"], truth))
    blocks += _histograms(rows, cls, merges, thresholds)
    blocks.append(figures.flagged_section(rows))
    if cls.merge_groups():
        blocks.append(figures.merge_section(rows, cls.merge_groups(), cls.info, merges))
    if (cls.decisions == SPLIT).any():
        blocks.append(figures.split_section(rows, cls.labels[cls.decisions == SPLIT], cls.info))
    for decision in (DUPLICATE, UNUSABLE):
        if counts[decision]:
            blocks.append(figures.single_section(rows, decision))
    blocks.append(cls.table(rows))
    picked = "picked by --auto" if summary.get("auto") else "as given (or the defaults)"
    where = f"images under {root}" if root is not None else "no image folder given (--root)"
    warnings = summary.get("warnings") or ()
    return Page(
        title="fmlkit clean report",
        subtitle=f"{len(rows.names):,} images in {len(cls.labels):,} classes; thresholds "
        f"{picked}; {where}",
        summary=cards,
        blocks=blocks,
        warnings=[str(w) for w in warnings] if isinstance(warnings, list | tuple) else [],
        roles={**COLOURS, TYPICAL: "#2a7a2a", "group-0": "#4c72b0", "group-1": "#dd8452"},
    )


def _thresholds(summary: Mapping[str, Any]) -> dict[str, float]:
    """The numeric thresholds of ``summary["thresholds"]``, by name."""
    given = summary.get("thresholds")
    if not isinstance(given, Mapping):
        return {}
    return {str(k): float(v) for k, v in given.items() if _number(v) and np.isfinite(float(v))}


def _number(value: object) -> bool:
    """A real number, Python's or numpy's (not a bool)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _threshold_tables(thresholds: dict[str, float], summary: Mapping[str, Any]) -> list[Block]:
    """The thresholds, each marked as picked by --auto or not; with --auto, the figures it
    picked them from: one row per distribution, one column per figure."""
    order = [k for k in THRESHOLDS if k in thresholds]
    order += sorted(set(thresholds) - set(THRESHOLDS))
    picked = summary.get("auto_picked")
    auto = {str(k) for k in picked} if isinstance(picked, list | tuple) else set()
    rows: list[list[str | int | float]] = [
        ["--" + k.replace("_", "-"), thresholds[k], "--auto" if k in auto else "given or default"]
        for k in order
    ]
    note = "As given on the command line (or the defaults)."
    if summary.get("auto"):
        note = "--auto picked those so marked from the data; the others are as given."
    tables: list[Block] = [Table("Thresholds", ["threshold", "value", "set by"], rows, note)]
    found = summary.get("auto_figures")
    if isinstance(found, Mapping) and found:
        per = {str(k): {str(n): v for n, v in _flat(v)} for k, v in found.items()}
        columns = list(dict.fromkeys(c for figures in per.values() for c in figures))
        body: list[list[str | int | float]] = [
            [name, *(figures.get(c, "") for c in columns)] for name, figures in per.items()
        ]
        note = "The similarity distributions --auto read the thresholds from."
        tables.append(Table("Figures --auto picked from", ["distribution", *columns], body, note))
    return tables


def _flat(value: object, prefix: str = "") -> list[list[str | int | float]]:
    """A dict's numbers as ``[name, value]`` rows (nested dicts as ``a.b``; the rest left out)."""
    if not isinstance(value, Mapping):
        return []
    rows: list[list[str | int | float]] = []
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, Mapping):
            rows += _flat(item, f"{name}.")
        elif _number(item):
            rows.append([name, int(item) if isinstance(item, numbers.Integral) else float(item)])
    return rows


def _markers(thresholds: dict[str, float], *names: str) -> list[Marker]:
    return [Marker(thresholds[n], n.replace("_", " ")) for n in names if n in thresholds]


def _histograms(
    rows: Images, cls: _Classes, merges: pd.DataFrame, thresholds: dict[str, float]
) -> list[Block]:
    """The similarity distributions with their thresholds (a chart only where there are
    values to draw)."""
    by_decision = [(d, rows.own[rows.decided(d)], c) for d, c in COLOURS.items() if d != UNUSABLE]
    charts: list[Block] = [
        Histogram(
            "Cosine of each image to its class centroid (without itself)",
            by_decision,
            "cosine to the class centroid",
            _markers(thresholds, "drop_below", "review_below"),
            log_y=True,
            note="Counts on a log scale: a few outliers show beside the bulk. Singletons and "
            "unusable rows have no value. Hover a bar for its counts.",
        )
    ]
    near = np.isfinite(rows.nearest)
    if near.any():
        charts.append(
            Histogram(
                "Cosine of the examined images to the nearest other class centroid",
                [(d, rows.nearest[near & rows.decided(d)], COLOURS[d]) for d in FLAGGED],
                "cosine to the best other class centroid",
                _markers(thresholds, "relabel_above"),
                note="Computed for images under the review threshold; a relabel also needs "
                f"to beat its own class by the margin ({thresholds.get('relabel_margin', '?')}).",
            )
        )
    pairs = pd.to_numeric(merges[SIMILARITY], errors="coerce").to_numpy(float)
    if len(pairs):
        charts.append(
            Histogram(
                "Centroid cosine of the class pairs over the merge threshold",
                [("class pairs", pairs, "#8172b2")],
                "cosine between class centroids",
                _markers(thresholds, "merge_above"),
            )
        )
    copies = rows.similarity[rows.decided(DUPLICATE)]
    if len(copies):
        charts.append(
            Histogram(
                "Cosine of each near duplicate to the image it copies",
                [(DUPLICATE, copies, COLOURS[DUPLICATE])],
                "cosine to the kept image",
                _markers(thresholds, "duplicate_above"),
            )
        )
    charts.append(
        Histogram(
            "Mean cosine to the centroid per class",
            [("classes", cls.mean[np.isfinite(cls.mean)], "#4c72b0")],
            "mean cosine of the class's images to its centroid",
            _markers(thresholds, "drop_below", "review_below"),
            note="Low means: noisy or mixed classes. Singletons have none.",
        )
    )
    return charts


class _Classes:
    """classes.csv as arrays, and its merge groups."""

    def __init__(self, classes: pd.DataFrame) -> None:
        def number(column: str) -> np.ndarray:
            return pd.to_numeric(classes[column], errors="coerce").to_numpy(float)

        def text(column: str) -> np.ndarray:
            if column not in classes:
                return np.full(len(classes), "", dtype=object)
            return classes[column].fillna("").astype(str).to_numpy(dtype=object)

        self.labels, self.decisions = text(LABEL), text(DECISION)
        self.size, self.mean = number(IMAGES), number(MEAN_SIMILARITY)
        self.spread, self.min = number(SPREAD), number(MIN_SIMILARITY)
        self.group, self.into, self.reasons = number(MERGE_GROUP), text(MERGE_INTO), text(REASON)
        sizes = np.nan_to_num(self.size, nan=0.0, posinf=0.0, neginf=0.0).astype(np.int64)
        self.info = dict(
            zip(
                self.labels.tolist(),
                zip(sizes.tolist(), self.into.tolist(), self.reasons.tolist(), strict=True),
                strict=True,
            )
        )
        self._groups: dict[int, list[str]] | None = None

    def merge_groups(self) -> dict[int, list[str]]:
        """Merge group → its labels, in classes.csv order."""
        if self._groups is None:
            self._groups = {}
            for label, g in zip(self.labels, self.group, strict=True):
                if np.isfinite(g):
                    self._groups.setdefault(int(g), []).append(str(label))
        return self._groups

    def table(self, rows: Images) -> Table:
        """Per class: size, decision, similarity figures and its images' decisions; the
        classes with most flagged images first, then the lowest mean similarity."""
        code, labels = pd.factorize(pd.Series(rows.labels, dtype=object))
        counted = [DROP, REVIEW, RELABEL, DUPLICATE, UNUSABLE]
        at = pd.Index(labels).get_indexer(self.labels)
        per = {}
        for d in counted:
            n = np.bincount(code[rows.decided(d)], minlength=len(labels))
            per[d] = np.where(at >= 0, n[np.maximum(at, 0)], 0)
        flagged = per[DROP] + per[REVIEW] + per[RELABEL]
        mean = np.where(np.isfinite(self.mean), self.mean, np.inf)
        order = np.lexsort((self.labels.astype(str), mean, -flagged))[:CLASS_ROWS]
        body: list[list[str | int | float]] = [
            [
                str(self.labels[k]),
                int(self.size[k]) if np.isfinite(self.size[k]) else 0,
                str(self.decisions[k]),
                float(self.mean[k]),
                float(self.spread[k]),
                float(self.min[k]),
                str(self.into[k]),
                *(int(per[d][k]) for d in counted),
            ]
            for k in order
        ]
        listed = (
            f"; the {CLASS_ROWS} with most flagged images are listed"
            if (len(self.labels) > CLASS_ROWS)
            else ""
        )
        columns = ["label", "images", "decision", "mean cosine", "spread", "min cosine"]
        return Table(
            "Classes",
            [*columns, "merge into", *counted],
            body,
            f"{len(self.labels):,} classes{listed}. Click a heading to sort.",
        )
