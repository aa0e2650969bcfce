"""The image sections of the `fmlkit clean` report (`fmlkit.data.clean.report` assembles the
page): flagged classes, merge groups, split candidates, near duplicates and unusable rows, each
a `Section` of figures with captions, capped, the shown tiles' thumbnails only made later.

`Images` holds images.csv as arrays (by row position) and makes the tiles: a tile reads its
file only inside the dataset folder; any other file name is a grey tile saying why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fmlkit.columns import (
    DECISION,
    DUPLICATE_OF,
    FILE_NAME,
    LABEL,
    LABEL_A,
    LABEL_B,
    MERGE_GROUP,
    NEAREST_LABEL,
    NEAREST_SIMILARITY,
    NEW_LABEL,
    OWN_SIMILARITY,
    REASON,
    SIMILARITY,
    SPLIT_GROUP,
)
from fmlkit.data.clean.decide import CLASS_DECISIONS, IMAGE_DECISIONS
from fmlkit.report import Figure, Section, Tile

KEEP, REVIEW, DROP, RELABEL, DUPLICATE, UNUSABLE = IMAGE_DECISIONS
_, _, SPLIT, SINGLETON = CLASS_DECISIONS  # keep, merge, split, singleton
FLAGGED = (DROP, REVIEW, RELABEL)  # the image decisions a person looks at per class
COLOURS = {  # an image decision's colour: bars, tile borders
    KEEP: "#4c72b0",
    REVIEW: "#dd8452",
    DROP: "#c44e52",
    RELABEL: "#8172b2",
    DUPLICATE: "#937860",
    UNUSABLE: "#8c8c8c",
}
TYPICAL = "typical"  # the role of a class's typical images
TYPICAL_CAPTION = "typical: highest cosine to the class"
CLASSES = 24  # flagged classes shown
PER_CLASS = 8  # flagged images shown per class
TYPICAL_TILES = 4  # typical images beside them
GROUPS = 24  # merge groups shown
GROUP_CLASSES = 6  # classes shown per merge group
GROUP_TILES = 3  # typical images per class of a merge group
SPLITS = 24  # split candidates shown
SPLIT_TILES = 4  # images per split group
PAIRS_LISTED = 10  # pair similarities listed per merge group
FIGURES = 48  # near duplicates, unusable rows


class Images:
    """images.csv as arrays by row position, and its tiles."""

    def __init__(self, images: pd.DataFrame, root: Path | None) -> None:
        def text(column: str) -> np.ndarray:
            return images[column].fillna("").astype(str).to_numpy(dtype=object)

        def number(column: str) -> np.ndarray:
            return pd.to_numeric(images[column], errors="coerce").to_numpy(float)

        self.names, self.labels = text(FILE_NAME), text(LABEL)
        self.decisions, self.reasons = text(DECISION), text(REASON)
        self.own, self.nearest_label = number(OWN_SIMILARITY), text(NEAREST_LABEL)
        self.nearest, self.duplicate_of = number(NEAREST_SIMILARITY), text(DUPLICATE_OF)
        self.similarity, self.group = number(SIMILARITY), number(SPLIT_GROUP)
        self.new_label = text(NEW_LABEL)
        code, found = pd.factorize(self.decisions)
        self._decided = {str(d): code == k for k, d in enumerate(found)}
        self.root = root
        self.inside = None if root is None else root.resolve()

    def decided(self, *decisions: str) -> np.ndarray:
        """Whether each row's decision is one of ``decisions`` (a bool mask)."""
        mask = np.zeros(len(self.names), dtype=bool)
        for d in decisions:
            mask |= self._decided.get(d, False)
        return mask

    @staticmethod
    def of(values: np.ndarray, wanted: Sequence[str]) -> np.ndarray:
        """Whether each of ``values`` is one of ``wanted`` (hashed: one pass, not one per
        wanted value)."""
        return pd.Series(values, dtype=object).isin(set(wanted)).to_numpy(dtype=bool)

    def first_rows(self, names: Sequence[str]) -> dict[str, int]:
        """The first row position of each of ``names`` in the table (one hashed pass)."""
        found = np.flatnonzero(self.of(self.names, names))
        first: dict[str, int] = {}
        for k in found.tolist():
            first.setdefault(str(self.names[k]), k)
        return first

    def source(self, name: str) -> tuple[Path | None, str]:
        """The image file of a file name, or None and why it is not shown."""
        if self.root is None or self.inside is None:
            return None, "no image folder given (--root)"
        path = self.root / name
        if Path(name).is_absolute() or not path.resolve().is_relative_to(self.inside):
            return None, "outside the dataset folder: not read"
        return path, ""

    def tile(self, k: int, role: str = "") -> Tile:
        """Row ``k``'s tile: file name, label, its similarities and any suggested label;
        ``role`` defaults to its decision."""
        name, label = str(self.names[k]), str(self.labels[k])
        lines = [name, f"label {label}"]
        if np.isfinite(self.own[k]):
            lines.append(f"cosine {self.own[k]:.3f} to its class")
        if np.isfinite(self.nearest[k]) and self.nearest_label[k]:
            lines.append(f"cosine {self.nearest[k]:.3f} to {self.nearest_label[k]}")
        new = str(self.new_label[k])
        if new and new != label and self.decisions[k] != DUPLICATE:
            lines.append(f"suggested: {new}")
        source, why = self.source(name)
        return Tile(source, tuple(lines), role or str(self.decisions[k]), why or "no image")

    def name_tile(self, name: str, role: str, first: Mapping[str, int]) -> Tile:
        """The tile of a file name that may not be a row (a duplicate's original);
        ``first``: `first_rows` of the names to show."""
        if name in first:
            return self.tile(first[name], role)
        source, why = self.source(name)
        return Tile(source, (name, "not in the table"), role, why or "no image")

    def typical(self, keys: np.ndarray, wanted: Sequence[str], n: int) -> dict[str, np.ndarray]:
        """Per key in ``wanted`` (``keys`` gives each row's), the positions of up to ``n`` kept
        rows with the highest cosine to their class centroid (ties: input order)."""
        rows = np.flatnonzero(self.of(keys, wanted) & self.decided(KEEP))
        frame = pd.DataFrame({"key": keys[rows], "own": self.own[rows], "at": rows})
        frame = frame.sort_values(["key", "own", "at"], ascending=[True, False, True])
        top = frame.groupby("key", sort=False).head(n)
        return {str(k): g.to_numpy(np.int64) for k, g in top.groupby("key")["at"]}


def flagged_section(rows: Images) -> Section:
    """Per class with drop/review/relabel images (most first, ties by label): its typical
    images, then its flagged ones (lowest cosine first), a relabel beside a typical image of
    the suggested class."""
    flagged = np.flatnonzero(rows.decided(*FLAGGED))
    counts = pd.Series(rows.labels[flagged], dtype=object).value_counts()
    order = sorted(counts.index, key=lambda k: (-counts[k], str(k)))
    shown = [str(k) for k in order[:CLASSES]]
    by_class = pd.Series(flagged, dtype=np.int64).groupby(rows.labels[flagged]).groups
    targets = {str(new) for c in shown for new in rows.new_label[flagged[np.asarray(by_class[c])]]}
    typical = rows.typical(rows.labels, sorted({*shown, *targets} - {""}), TYPICAL_TILES)
    subsections = []
    for label in shown:
        members = flagged[np.asarray(by_class[label], np.int64)]
        members = members[np.lexsort((members, np.nan_to_num(rows.own[members], nan=2.0)))]
        found = typical.get(label, np.zeros(0, np.int64))
        lead = [Figure(tuple(rows.tile(int(k), TYPICAL) for k in found), (TYPICAL_CAPTION,))]
        figures = [_flagged_figure(rows, k, typical) for k in members[:PER_CLASS]]
        note = f"{len(members):,} flagged: " + ", ".join(
            f"{(rows.decisions[members] == d).sum():,} {d}" for d in FLAGGED
        )
        note += "" if len(found) else "; no kept image in the class"
        lead = lead if len(found) else []
        subsections.append(Section(label, figures, len(members), note, lead=lead))
    more = f"; the {CLASSES} with most are shown" if len(counts) > CLASSES else ""
    note = (
        f"{len(counts):,} classes with flagged images{more}. Each class's typical images "
        "(highest cosine to its centroid, green) beside its flagged images, lowest cosine "
        "first; a relabel beside a typical image of the suggested class."
    )
    if not len(flagged):
        note = "No image is flagged (drop, review or relabel)."
    return Section("Flagged images, by class", (), len(flagged), note, subsections)


def _flagged_figure(rows: Images, k: int, typical: Mapping[str, np.ndarray]) -> Figure:
    tiles = [rows.tile(k)]
    new = str(rows.new_label[k])
    if rows.decisions[k] == RELABEL and new in typical and len(typical[new]):
        tiles.append(rows.tile(int(typical[new][0]), TYPICAL))
    return Figure(tuple(tiles), (str(rows.decisions[k]), str(rows.reasons[k])))


def merge_section(
    rows: Images,
    groups: Mapping[int, list[str]],
    info: Mapping[str, tuple[int, str, str]],
    merges: pd.DataFrame,
) -> Section:
    """Per merge group (highest pair cosine first): each class's typical images side by
    side, captioned with its size and target, the pair cosines in the note."""
    pairs = pd.DataFrame(
        {
            "a": merges[LABEL_A].fillna("").astype(str),
            "b": merges[LABEL_B].fillna("").astype(str),
            "s": pd.to_numeric(merges[SIMILARITY], errors="coerce"),
            "g": pd.to_numeric(merges[MERGE_GROUP], errors="coerce"),
        }
    ).sort_values("s", ascending=False, kind="stable")
    best = pairs.groupby("g")["s"].max()
    order = sorted(groups, key=lambda g: (-best.get(g, -np.inf), g))
    shown = order[:GROUPS]
    labels = sorted({label for g in shown for label in groups[g][:GROUP_CLASSES]})
    typical = rows.typical(rows.labels, labels, GROUP_TILES)
    by_group = pairs.groupby("g")
    subsections = []
    for g in shown:
        members = groups[g]
        figures = []
        for label in members[:GROUP_CLASSES]:
            size, into, _ = info.get(label, (0, "", ""))
            target = f"merge into {into}" if into and into != label else "target of the merge"
            found = typical.get(label, np.zeros(0, np.int64))
            tiles = tuple(rows.tile(int(k), TYPICAL) for k in found)
            figures.append(Figure(tiles, (label, f"{size:,} images", target)))
        evidence = by_group.get_group(g) if g in best.index else pairs.iloc[:0]
        listed = "; ".join(
            f"{a} ↔ {b} {s:.3f}"
            for a, b, s in evidence[["a", "b", "s"]].head(PAIRS_LISTED).itertuples(index=False)
        )
        unlisted = len(evidence) - PAIRS_LISTED
        listed += f"; and {unlisted:,} more" if unlisted > 0 else ""
        title = f"merge group {g}: {len(members):,} classes"
        subsections.append(Section(title, figures, len(members), f"Pairs: {listed}."))
    more = f"; the {GROUPS} with the most similar pairs are shown" if len(groups) > GROUPS else ""
    plural = "s" if len(groups) != 1 else ""
    note = (
        f"{len(groups):,} merge group{plural}{more}: classes whose centroids lie within the merge "
        "threshold, grouped transitively (one identity filed under several names is the "
        "likeliest cause). Typical images of each class side by side; the pairs' centroid "
        "cosines under each group's title."
    )
    total = sum(len(m) for m in groups.values())
    return Section("Merge candidates", (), total, note, subsections)


def split_section(
    rows: Images, labels: np.ndarray, info: Mapping[str, tuple[int, str, str]]
) -> Section:
    """Per split candidate (in classes.csv order): group 0 beside group 1, the first
    images of each in input order."""
    subsections = []
    shown = [str(label) for label in labels[:SPLITS]]
    at = np.flatnonzero(rows.of(rows.labels, shown))
    by_label = pd.Series(at, dtype=np.int64).groupby(rows.labels[at]).groups
    for label in shown:
        members = at[np.asarray(by_label.get(label, []), dtype=np.int64)]
        figures = []
        for group in (0, 1):
            inside = members[rows.group[members] == group]
            tiles = tuple(rows.tile(int(k), f"group-{group}") for k in inside[:SPLIT_TILES])
            figures.append(Figure(tiles, (f"group {group}", f"{len(inside):,} images")))
        reason = info.get(str(label), (0, "", ""))[2]
        subsections.append(Section(str(label), figures, 2, reason))
    more = f"; the first {SPLITS} are shown" if len(labels) > SPLITS else ""
    note = (
        f"{len(labels):,} class{'es' if len(labels) != 1 else ''}{more} whose images form two "
        "well-separated groups (two people under one name is the likeliest cause). The first "
        "images of each group, side by side."
    )
    return Section("Split candidates", (), 2 * len(labels), note, subsections)


def single_section(rows: Images, decision: str) -> Section:
    """Near duplicates (the kept image beside the copy, lowest cosine first) or unusable
    rows (alone, in input order)."""
    positions = np.flatnonzero(rows.decided(decision))
    if decision == DUPLICATE:
        positions = positions[np.lexsort((positions, rows.similarity[positions]))]
        figures = []
        first = rows.first_rows(rows.duplicate_of[positions[:FIGURES]].tolist())
        for k in positions[:FIGURES]:
            kept = rows.name_tile(str(rows.duplicate_of[k]), "kept", first)
            caption = (str(rows.reasons[k]), f"cosine {rows.similarity[k]:.3f} to the kept image")
            figures.append(Figure((kept, rows.tile(int(k))), caption))
        note = (
            "The kept image beside its near copy (re-encoded, cropped, recoloured), lowest "
            "cosine first: the borderline cases that tell whether the threshold is right."
        )
        return Section("Near duplicates (embedding)", figures, len(positions), note)
    figures = [Figure((rows.tile(int(k)),), (str(rows.reasons[k]),)) for k in positions[:FIGURES]]
    note = "Rows whose embedding cannot be used (NaN, infinite or zero), in input order."
    return Section("Unusable embeddings", figures, len(positions), note)
