"""The curation report of `fmlkit filter --report DIR`: one self-contained page
(`fmlkit.report.gallery`) built from the table and `decide`'s result.

``DIR/index.html`` shows, in order: summary counts; the class sizes after filtering and the
distances of the removed duplicates (bar charts); the leaks (the training image beside the
benchmark image); the cross-label duplicates grouped by label pair (each pair a candidate
identity merge), pairs by count; a section per other reason: exact and near duplicates (the
kept image beside the removed one), then broken and badly sized rows (alone, with their
reason) — every figure with both file names and labels, the full reason and the pHash
distance; and a per-label table. Sections show at
most `FIGURES` figures (cross-label: `PAIRS` pairs of `PAIR_FIGURES`), the largest distances
first, and say "N of M shown"; the table lists the `LABEL_ROWS` labels with most removals.
Everything but the shown figures is vectorised pandas, and thumbnails are made only for them,
so a million rows take seconds. With dedup, histograms of the pHash candidate pairs' distances
and of their pixel (and embedding) similarities, confirmed against not, with the thresholds
marked; implausible removals (`fmlkit.data.filter.plausible`) show in a banner at the top.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fmlkit.columns import (
    DISTANCE,
    DUPLICATE_OF,
    FILE_NAME,
    HEIGHT,
    LABEL,
    PIXEL_SIMILARITY,
    REASON,
    WIDTH,
)
from fmlkit.data.filter.dedup import CROSS, DUPLICATE_REASONS, EXACT, NEAR, Candidates
from fmlkit.data.filter.leak import LEAK, Reference
from fmlkit.data.filter.report_charts import candidate_charts
from fmlkit.io import atomic_path
from fmlkit.report.folder import check_report_dir as check_folder
from fmlkit.report.gallery import (
    Bars,
    Block,
    Figure,
    Page,
    Section,
    Table,
    Tile,
    write_gallery,
)

if TYPE_CHECKING:
    from fmlkit.data.filter.rules import FilterRules

FIGURES = 48  # figures per section
PAIRS = 24  # label pairs shown in the cross-label section
PAIR_FIGURES = 8  # figures per label pair
LABEL_ROWS = 500  # labels in the per-label table
KEPT = "kept"
COLOURS = {EXACT: "#4c72b0", NEAR: "#dd8452", CROSS: "#c44e52", LEAK: "#8172b2"}
TITLES = {
    LEAK: "Leaks: training images that are benchmark images",
    CROSS: "Cross-label duplicates, by label pair (candidate identity merges)",
    EXACT: "Exact duplicates within a label",
    NEAR: "Near duplicates within a label",
}
NOTES = {
    LEAK: "Each removed row beside the image of the --against list it is within reach of.",
    CROSS: "One picture filed under two labels: label noise, or two labels of one identity. "
    "Pairs with many shared pictures are the likeliest merges.",
    EXACT: "Same label, same md5: the kept image, then the removed copy.",
    NEAR: "Same label, pHash within the threshold. Largest distances first: the borderline "
    "cases that tell whether the threshold is right.",
}


def check_report_dir(out_dir: Path, *, root: Path) -> None:
    """Refuse a report folder whose writing would replace the dataset folder ``root`` or what
    is not an earlier filter report (`fmlkit.report.folder.check_report_dir`).

    Raises:
        InputError: naming the folder and what it holds.
    """
    check_folder(out_dir, protected=[("dataset folder", root)], kind="filter report")


def write_filter_report(
    df: pd.DataFrame,
    decision: pd.DataFrame,
    out_dir: Path,
    *,
    root: Path,
    against: Reference | None = None,
    candidates: Candidates | None = None,
    rules: FilterRules | None = None,
    warnings: Sequence[str] = (),
) -> None:
    """Write the report folder ``out_dir`` (replaced atomically) for a `decide` result
    (`check_report_dir` first); ``against``: the leak check's reference images;
    ``candidates`` and ``rules``: the dedup step's pairs and thresholds (histograms);
    ``warnings``: implausible removals (a banner)."""
    check_report_dir(out_dir, root=root)
    page = build_page(
        df, decision, root=root, against=against, candidates=candidates, rules=rules,
        warnings=warnings,
    )  # fmt: skip
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        write_gallery(page, tmp)


def build_page(
    df: pd.DataFrame,
    decision: pd.DataFrame,
    *,
    root: Path,
    against: Reference | None = None,
    candidates: Candidates | None = None,
    rules: FilterRules | None = None,
    warnings: Sequence[str] = (),
) -> Page:
    """The report's `Page` (no I/O: images are read when the page is written)."""
    rows = _Rows(df, decision, root, against)
    counts = _Counts(rows)
    cross_keys = _pair_keys(rows, rows.where(CROSS))
    pair_counts = _label_pairs(cross_keys)
    kept = counts.kept_rows
    summary: list[tuple[str, str | int]] = [
        ("rows in", len(df)),
        ("kept", kept),
        ("removed", len(df) - kept),
        *((f"removed: {r}", n) for r, n in counts.by_reason.items()),
        ("labels in", len(counts.labels)),
        ("labels kept", int((counts.kept > 0).sum())),
        ("cross-label pairs", len(pair_counts)),
    ]
    if against is not None:
        summary.append((f"{against.path.name} images checked", len(against)))
    blocks: list[Block] = [counts.class_sizes()]
    if set(COLOURS) & set(counts.by_reason):
        blocks.append(_distances(rows))
    if candidates is not None and rules is not None:
        blocks += candidate_charts(candidates, rules)
    if against is not None or LEAK in counts.by_reason:
        blocks.append(_pair_section(rows, LEAK))
    if CROSS in counts.by_reason:
        blocks.append(_cross_section(rows, cross_keys, pair_counts))
    for reason in (EXACT, NEAR):
        if reason in counts.by_reason:
            blocks.append(_pair_section(rows, reason))
    for reason in sorted(set(counts.by_reason) - {*DUPLICATE_REASONS, LEAK}):
        blocks.append(_single_section(rows, reason))
    blocks.append(counts.table())
    return Page(
        title="fmlkit filter report",
        subtitle=f"{len(df):,} rows, {kept:,} kept; images under {root}",
        summary=summary,
        blocks=blocks,
        warnings=tuple(warnings),
    )


class _Rows:
    """The table and its decisions as plain arrays (by row position), and the figures."""

    def __init__(
        self, df: pd.DataFrame, decision: pd.DataFrame, root: Path, against: Reference | None
    ) -> None:
        self.names = df[FILE_NAME].to_numpy(dtype=object, na_value="").astype(str)
        self.labels = df[LABEL].to_numpy(dtype=object, na_value="").astype(str)
        self.reasons = decision[REASON].to_numpy(dtype=object, na_value="").astype(str)
        self.other = decision[DUPLICATE_OF].to_numpy(dtype=object, na_value="").astype(str)
        self.distance = decision[DISTANCE].to_numpy(dtype=float, na_value=-1.0)
        self.pixel = (
            decision[PIXEL_SIMILARITY].to_numpy(dtype=float, na_value=np.nan)
            if PIXEL_SIMILARITY in decision
            else np.full(len(decision), np.nan)
        )
        sized = WIDTH in df and HEIGHT in df
        self.width = df[WIDTH].to_numpy(float, na_value=np.nan) if sized else None
        self.height = df[HEIGHT].to_numpy(float, na_value=np.nan) if sized else None
        self.root, self.inside = root, root.resolve()
        self.against = (
            {} if against is None else dict(zip(against.names, against.sources, strict=True))
        )
        self.against_name = "" if against is None else against.path.name
        self._position: pd.Index | None = None

    def where(self, reason: str) -> np.ndarray:
        """Positions of the rows removed for ``reason``, in input order."""
        return np.flatnonzero(self.reasons == reason)

    def label_of(self, names: np.ndarray) -> np.ndarray:
        """The labels of rows given by file name ("" for a name not in the table)."""
        if self._position is None:
            self._position = pd.Index(self.names, dtype=object)  # built once
        at = self._position.get_indexer(names)
        return np.where(at >= 0, self.labels[np.maximum(at, 0)], "")

    def tile(self, name: str, role: str) -> Tile:
        """A tile of one row of the table, by file name (no image for a name that leads
        outside the root: the report never reads a file there)."""
        (label,) = self.label_of(np.array([name], dtype=object))
        path = self.root / name
        inside = not Path(name).is_absolute() and path.resolve().is_relative_to(self.inside)
        return Tile(path if inside else None, (name, f"label {label}"), role)

    def figure(self, at: int) -> Figure:
        """The figure of a removed row: alone, or beside what it duplicates or leaks."""
        name, reason, other = self.names[at], self.reasons[at], self.other[at]
        distance = int(self.distance[at])
        removed = self.tile(name, "removed")
        if reason == LEAK:
            bench = Tile(self.against.get(other), (other, self.against_name), "benchmark")
            return Figure((removed, bench), (reason, f"pHash distance {distance} bits"))
        if reason in DUPLICATE_REASONS:
            pixel = self.pixel[at]
            said = "" if np.isnan(pixel) else f", pixel correlation {pixel:.3f}"
            caption = (reason, f"pHash distance {distance} bits to the kept image{said}")
            return Figure((self.tile(other, KEPT), removed), caption)
        return Figure((removed,), (reason, self._size(at)))

    def _size(self, at: int) -> str:
        if self.width is None or self.height is None:
            return ""
        w, h = self.width[at], self.height[at]
        return "" if np.isnan(w) or np.isnan(h) else f"{int(w)} × {int(h)} px"

    def ordered(self, positions: np.ndarray) -> np.ndarray:
        """``positions``, largest distance first, then in input order."""
        return positions[np.lexsort((positions, -self.distance[positions]))]


def _pair_section(rows: _Rows, reason: str) -> Section:
    positions = rows.where(reason)
    note = NOTES[reason]
    if reason == LEAK and not len(positions):
        note = f"No row is within reach of an image of {rows.against_name}."
    figures = [rows.figure(at) for at in rows.ordered(positions)[:FIGURES]]
    return Section(f"{TITLES[reason]} ({reason})", figures, len(positions), note)


def _single_section(rows: _Rows, reason: str) -> Section:
    positions = rows.where(reason)
    note = "Removed rows alone, in input order; a grey tile is an image that cannot be shown."
    figures = [rows.figure(at) for at in positions[:FIGURES]]
    return Section(f"Removed: {reason}", figures, len(positions), note)


def _pair_keys(rows: _Rows, positions: np.ndarray) -> pd.Series:
    """Per cross-label duplicate (by position), its unordered label pair ``"a ↔ b"``."""
    removed = rows.labels[positions]
    kept = rows.label_of(rows.other[positions])
    low = np.where(removed <= kept, removed, kept)
    high = np.where(removed <= kept, kept, removed)
    keys = [f"{a} ↔ {b}" for a, b in zip(low.tolist(), high.tolist(), strict=True)]
    return pd.Series(keys, index=positions, dtype=object)


def _label_pairs(keys: pd.Series) -> pd.Series:
    """Duplicates per label pair, most first (ties by pair)."""
    counts = keys.value_counts()
    order = sorted(counts.index, key=lambda k: (-counts[k], k))
    return counts.reindex(order)


def _cross_section(rows: _Rows, keys: pd.Series, pair_counts: pd.Series) -> Section:
    subsections = []
    groups = keys.groupby(keys.to_numpy(), sort=False).groups
    for pair, count in pair_counts.head(PAIRS).items():
        members = np.asarray(groups[pair], np.int64)
        shown = rows.ordered(members)[:PAIR_FIGURES]
        subsections.append(Section(str(pair), [rows.figure(at) for at in shown], int(count)))
    more = f"; the {PAIRS} with most duplicates are shown" if len(pair_counts) > PAIRS else ""
    note = f"{NOTES[CROSS]} {len(pair_counts):,} label pairs{more}."
    return Section(f"{TITLES[CROSS]} ({CROSS})", (), len(keys), note, subsections)


class _Counts:
    """Rows per (label, reason), counted once with one ``bincount``."""

    def __init__(self, rows: _Rows) -> None:
        label_code, self.labels = pd.factorize(rows.labels)
        outcome = np.where(rows.reasons == "", KEPT, rows.reasons)
        reason_code, reasons = pd.factorize(outcome)
        cells = np.bincount(
            label_code * len(reasons) + reason_code, minlength=len(self.labels) * len(reasons)
        ).reshape(len(self.labels), len(reasons))
        self.columns = {str(r): cells[:, k] for k, r in enumerate(reasons)}
        self.kept = self.columns.pop(KEPT, np.zeros(len(self.labels), np.int64))
        self.kept_rows = int(self.kept.sum())
        self.by_reason = {r: int(self.columns[r].sum()) for r in sorted(self.columns)}

    def class_sizes(self) -> Bars:
        """How many labels keep how many images (labels that lose every image count as 0)."""
        top = int(self.kept.max()) if len(self.kept) else 0
        width = max(1, -(-(top + 1) // 40))  # at most 40 bars
        hist = np.bincount(self.kept // width, minlength=top // width + 1)
        cats = [
            str(b * width) if width == 1 else f"{b * width}–{b * width + width - 1}"
            for b in range(len(hist))
        ]
        lost = int((self.kept == 0).sum())
        return Bars(
            "Class sizes after filtering",
            cats,
            [("labels", hist.tolist(), "#4c72b0")],
            "images kept per label",
            "labels",
            f"{len(self.labels):,} labels; {lost:,} lost every image.",
        )

    def table(self) -> Table:
        """Per label: images, kept, removed and removed by reason; most removals first."""
        by_reason = sorted(self.columns)
        removed = sum((self.columns[r] for r in by_reason), np.zeros(len(self.labels), np.int64))
        names = np.asarray(self.labels, dtype=object).astype(str)
        order = np.lexsort((names, -removed))[:LABEL_ROWS]
        rows: list[tuple[str | int, ...]] = [
            (
                str(names[k]),
                int(self.kept[k] + removed[k]),
                int(self.kept[k]),
                int(removed[k]),
                *(int(self.columns[r][k]) for r in by_reason),
            )
            for k in order
        ]
        more = len(names) > LABEL_ROWS
        listed = f"; the {LABEL_ROWS} with most removed rows are listed" if more else ""
        note = f"{len(names):,} labels{listed}. Click a heading to sort."
        return Table("Labels", ["label", "images", KEPT, "removed", *by_reason], rows, note)


def _distances(rows: _Rows) -> Bars:
    """Removed duplicates and leaks by pHash distance, one colour per reason."""
    top = int(rows.distance.max()) if len(rows.distance) else 0
    series = []
    for reason, colour in COLOURS.items():
        d = rows.distance[rows.reasons == reason].astype(np.int64)
        if len(d):
            series.append((reason, np.bincount(d, minlength=top + 1).tolist(), colour))
    return Bars(
        "pHash distances of the removed duplicates",
        [str(d) for d in range(max(top, 0) + 1)],
        series,
        "pHash distance to the kept (or benchmark) image, bits",
        "rows",
        "Hover a bar for its counts.",
    )
