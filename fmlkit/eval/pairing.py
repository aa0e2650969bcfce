"""Pair lists matched to embeddings, for `fmlkit evaluate` (`fmlkit.eval.evaluate`).

- `benchmark_names`: each list's name in the report; `odd_pairs`: repeated and self pairs,
  counted for the report.
- `stage_files` (model mode, before any model is loaded): each text list's files found under
  ``root``; `model_pairs` embeds them (and each ``.bin``'s images) and pairs them up.
- `table_pairs` (embeddings mode): each list's names looked up in a stored embeddings table.

Each list becomes a `Staged` list: its pairs as rows of a matrix of embeddings (−1: an unusable
image) with the reasons. `check_usable` stops on the first list with unusable images unless
``skip_missing``; then the pairs naming them are dropped and counted.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fmlkit.errors import InputError
from fmlkit.eval.pair_sources import (
    SHOWN,
    PairList,
    locate_files,
    pair_positions,
    unusable_error,
)
from fmlkit.eval.report import RETRIEVAL

if TYPE_CHECKING:
    from fmlkit.data.formats.embeddings import EmbeddingTable
    from fmlkit.eval.embedder import Embedder

REPEATED, SELF_PAIRS = "repeated_pairs", "self_pairs"  # notes counting odd pairs (odd_pairs)
log = logging.getLogger(__name__)
PathLike = str | os.PathLike[str]


def odd_pairs(pairs: PairList) -> dict[str, int]:
    """What a list holds that a benchmark should not, counted so the report records it (the
    pairs are scored as listed): ``repeated_pairs``, pairs equal to an earlier one (in either
    order, same label), and ``self_pairs``, an image paired with itself. Images are told apart
    by file name, a ``.bin``'s by their bytes. Each count is logged as a warning; zero counts
    are left out."""
    first, second = pairs.first.tolist(), pairs.second.tolist()
    if pairs.images is not None:
        first = [pairs.images[i] for i in first]
        second = [pairs.images[i] for i in second]
    seen: set[tuple[object, ...]] = set()
    repeated = selfs = 0
    for a, b, same in zip(first, second, pairs.same.tolist(), strict=True):
        key = (bool(same), *sorted((a, b)))
        repeated += key in seen
        seen.add(key)
        selfs += a == b
    found = {REPEATED: repeated, SELF_PAIRS: selfs}
    for what, count in found.items():
        if count:
            log.warning("%s: %d %s (scored as listed)", pairs.path, count, what.replace("_", " "))
    return {what: count for what, count in found.items() if count}


def benchmark_names(lists: Sequence[PairList], *, retrieval: bool) -> list[str]:
    """Each list's benchmark name: its stem, or ``folder/stem`` where stems clash (with each
    other, or with ``retrieval`` when it is computed).

    Raises:
        InputError: one file given twice, or names that still clash.
    """
    resolved = [p.path.resolve() for p in lists]
    twice = sorted({str(p) for p in resolved if resolved.count(p) > 1})
    if twice:
        raise InputError(f"pair list {twice[0]} is given twice; give each list once")
    taken = Counter(p.name for p in lists)
    if retrieval:
        taken[RETRIEVAL] += 1
    names = [
        f"{path.parent.name}/{p.name}" if taken[p.name] > 1 else p.name
        for p, path in zip(lists, resolved, strict=True)
    ]
    clash = sorted({n for n in names if names.count(n) > 1 or (retrieval and n == RETRIEVAL)})
    if clash:
        raise InputError(
            f"pair lists named {clash[0]!r} clash even with their folder's name: their "
            "benchmark names in the report would be the same; rename or move one"
        )
    return names


@dataclass(eq=False)
class Staged:
    """A list's pairs as positions into a matrix of embeddings (−1: unusable), and why."""

    pairs: PairList
    first: np.ndarray
    second: np.ndarray
    problems: list[tuple[str, str]]
    describe: Callable[[int], str] = str  # a position → how to name its image in messages


Scored = tuple[np.ndarray, np.ndarray, np.ndarray, int]  # first, second, same, pairs dropped


def refuse_bins(lists: Sequence[PairList], embeddings: PathLike) -> None:
    for item in lists:
        if item.images is not None:
            raise InputError(
                f"{item.path} is an InsightFace .bin: its images are inside it, not in "
                f"{embeddings}. Evaluate it with --checkpoint or --onnx, or convert it "
                "(`fmlkit convert X.bin DIR`), embed DIR with `fmlkit embed` and pass "
                "DIR.pairs.csv with those embeddings"
            )


def table_pairs(lists: Sequence[PairList], table: EmbeddingTable, skip: bool) -> list[Scored]:
    staged = []
    for pairs in lists:
        where = {name: _lookup(pairs, name, table.index) for name in pairs.files}
        first, second = pair_positions(pairs, where)
        problems = [(n, f"not in {table.path}") for n, at in where.items() if at < 0]
        staged.append(Staged(pairs, first, second, problems))
    check_usable(staged, skip)
    return [_select(s, table.vectors, skip) for s in staged]


def _lookup(pairs: PairList, name: str, index: dict[str, int]) -> int:
    return next((index[c] for c in pairs.candidates(name) if c in index), -1)


def stage_files(
    lists: Sequence[PairList], root: PathLike | None
) -> tuple[list[Staged], list[Path]]:
    """Model mode, before any model is loaded: find every text list's files under ``root``
    (each file once, however many lists name it)."""
    paths: dict[Path, int] = {}  # every usable file of the text lists → its row
    staged = []
    for pairs in lists:
        if pairs.images is not None:
            staged.append(Staged(pairs, pairs.first, pairs.second, [], _bin_image))
            continue
        if root is None:
            raise InputError(f"{pairs.path} names image files: pass --root, the folder they "
                             "are relative to")  # fmt: skip
        found = locate_files(pairs, root)
        rows = {n: paths.setdefault(p, len(paths)) for n, p in found.paths.items()}
        first, second = pair_positions(pairs, rows)
        named = {row: n for n, row in rows.items()}
        staged.append(Staged(pairs, first, second, found.problems(Path(root)), named.__getitem__))
    return staged, list(paths)


def model_pairs(
    staged: Sequence[Staged],
    files: list[Path],
    embedder: Embedder,
    flip_sum: bool,
    skip: bool,
    batch_size: int,
) -> list[Scored]:
    """Embed the text lists' files, then each .bin's images, and pair the embeddings up."""
    vectors, failed = embedder.embed_images(files, flip_sum=flip_sum, batch_size=batch_size)
    results = []
    for item in staged:
        if item.pairs.images is None:
            _mark_failed(item, failed)
            results.append(_select(item, vectors, skip))
            continue
        own, bad = embedder.embed_images(
            item.pairs.images, flip_sum=flip_sum, batch_size=batch_size
        )
        _mark_failed(item, bad)
        results.append(_select(item, own, skip))
    return results


def _bin_image(at: int) -> str:
    return f"image {at} (pair {at // 2})"


def _mark_failed(item: Staged, failed: dict[int, str]) -> None:
    """Images that could not be decoded become unusable too."""
    if not failed:
        return
    rows = np.fromiter(failed, np.int64, len(failed))
    bad_first, bad_second = np.isin(item.first, rows), np.isin(item.second, rows)
    hit = bad_first | bad_second
    if not hit.any():
        return
    used = set(item.first[hit].tolist()) | set(item.second[hit].tolist())
    item.problems += [(item.describe(at), f"cannot be decoded: {failed[at]}")
                      for at in sorted(used) if at in failed]  # fmt: skip
    item.first = np.where(bad_first, -1, item.first)
    item.second = np.where(bad_second, -1, item.second)


def check_usable(staged: Sequence[Staged], skip: bool) -> None:
    for item in staged:
        if item.problems and not skip:
            dropped = int(((item.first < 0) | (item.second < 0)).sum())
            raise unusable_error(item.pairs, item.problems, dropped)


def _select(item: Staged, vectors: np.ndarray, skip: bool) -> Scored:
    """The embeddings of each usable pair; unusable pairs dropped (``skip``) or an error."""
    check_usable([item], skip)
    keep = (item.first >= 0) & (item.second >= 0)
    if not keep.any():
        shown = "; ".join(f"{n} ({why})" for n, why in item.problems[:SHOWN])
        raise InputError(
            f"no pair of {item.pairs.path} is left once the pairs naming unusable images are "
            f"dropped ({len(item.pairs):,} pairs; e.g. {shown}): check the list and the root"
        )
    first, second = vectors[item.first[keep]], vectors[item.second[keep]]
    return first, second, item.pairs.same[keep], int((~keep).sum())
