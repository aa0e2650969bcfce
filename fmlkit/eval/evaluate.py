"""`fmlkit evaluate`: verification metrics on pair lists and retrieval metrics, from a model
(checkpoint or ONNX) or from stored embeddings, written as one report.

Two ways in:

- **embeddings** (the Parquet `fmlkit embed` writes: ``file_name``, ``embedding``, optional
  ``label``): each pair's images are looked up by file name; the embeddings are used as stored
  (flip-summed or not when they were made). Retrieval uses the table's labels.
- **model** (a checkpoint or an ONNX model): exactly the images the pair lists name are
  embedded (files under ``root``; a ``.bin``'s images from the file itself), flip-summed unless
  ``flip_sum`` is off. Retrieval embeds ``retrieval_input`` (a dataset_info table with ``root``,
  or a Parquet dataset folder).

Every pair list is checked before anything is embedded. Names that are absent (from the
embeddings, or under ``root``), that lead outside ``root`` (never opened), or whose images
cannot be decoded stop the evaluation with an error listing the first few; with
``skip_missing`` the pairs naming them are dropped instead and counted per benchmark
(``skipped_missing`` in ``metrics.json``). Scores come from `fmlkit.eval.verification`
(docs/formats.md) and `fmlkit.eval.retrieval`; `fmlkit.eval.report` writes the files.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmlkit.errors import InputError, OptionError
from fmlkit.eval.pair_sources import (
    SHOWN,
    PairList,
    load_pairs,
    locate_files,
    pair_positions,
    unusable_error,
)
from fmlkit.eval.report import METRICS_JSON, RETRIEVAL, check_report_folder, write_report

if TYPE_CHECKING:
    from fmlkit.eval.embed import Embedder, EmbeddingTable

SKIPPED = "skipped_missing"  # the note counting the pairs skip_missing dropped
REPEATED, SELF_PAIRS = "repeated_pairs", "self_pairs"  # notes counting odd pairs (odd_pairs)
log = logging.getLogger(__name__)
PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class EvaluateReport:
    """What `evaluate` computed and wrote.

    Attributes:
        out_dir: the report folder (metrics.json, metrics.md, roc.png, scores.png).
        metrics: ``{benchmark: {metric: value}}`` exactly as in ``metrics.json``.
        skipped: per pair list, the pairs dropped by ``skip_missing`` (empty without it).
        seconds: wall time of the whole evaluation.
    """

    out_dir: Path
    metrics: dict[str, dict[str, Any]]
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        """A short table of the main numbers, for the command line."""
        lines = []
        verification = {k: v for k, v in self.metrics.items() if k != RETRIEVAL}
        if verification:
            width = max(9, *(len(k) for k in verification))
            lines.append(
                f"{'benchmark':<{width}}  {'pairs':>7}  {'accuracy (%) ± std':>18}  "
                f"{'threshold':>9}  {'AUC':>6}  {'EER (%)':>7}  {'TAR@1e-3 (%)':>12}"
            )
            for name, m in verification.items():
                tar = (m.get("tar_at_far") or {}).get("1e-3")
                accuracy = f"{_num(m.get('accuracy'), 100)} ± {_num(m.get('accuracy_std'), 100)}"
                lines.append(
                    f"{name:<{width}}  {m.get('pairs', 0):>7,}  {accuracy:>18}  "
                    f"{_num(m.get('threshold'), 1, 3):>9}  {_num(m.get('auc'), 1, 4):>6}  "
                    f"{_num(m.get('eer'), 100):>7}  {_num(tar, 100):>12}"
                )
        if RETRIEVAL in self.metrics:
            m = self.metrics[RETRIEVAL]
            recall = ", ".join(
                f"R@{k} {_num(v, 100)}" for k, v in (m.get("recall_at_k") or {}).items()
            )
            lines.append(
                f"retrieval (%): P@1 {_num(m.get('precision_at_1'), 100)}, R-precision "
                f"{_num(m.get('r_precision'), 100)}, MAP@R {_num(m.get('map_at_r'), 100)}"
                + (f", {recall}" if recall else "")
            )
        for name, count in self.skipped.items():
            if count:
                lines.append(f"{name}: {count:,} pairs naming unusable images skipped")
        for name, m in verification.items():
            odd = [f"{m[k]:,} {k.replace('_', ' ')}" for k in (REPEATED, SELF_PAIRS) if k in m]
            if odd:
                lines.append(f"{name}: {' and '.join(odd)} (scored as listed)")
        files = "metrics.json, metrics.md" + (", roc.png, scores.png" if verification else "")
        lines.append(f"wrote {self.out_dir} ({files}) in {self.seconds:.1f} s")
        return "\n".join(lines)


def _num(value: object, scale: float, digits: int = 2) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—"
    return f"{value * scale:.{digits}f}"


_SOURCES = ("checkpoint", "onnx", "embeddings")  # the options naming the source of embeddings


@dataclass(frozen=True, kw_only=True)
class EvaluateOptions:
    """`evaluate`'s options, checked on construction: `OptionError` (naming the options) for
    options that do not fit together or a bad value. See `evaluate` for each option.

    The rules: exactly one of ``checkpoint``, ``onnx`` and ``embeddings``; something to
    evaluate (``pairs``, ``retrieval`` or both); ``batch_size`` ≥ 1; ``retrieval_input`` only
    with ``retrieval``, which with a model needs it; with ``embeddings``, no ``root``, no
    ``retrieval_input`` and ``flip_sum`` left on (it was chosen when the embeddings were made).
    """

    pairs: Sequence[PathLike] = ()
    checkpoint: PathLike | None = None
    onnx: PathLike | None = None
    embeddings: PathLike | None = None
    root: PathLike | None = None
    retrieval: bool = False
    retrieval_input: PathLike | None = None
    flip_sum: bool = True
    skip_missing: bool = False
    batch_size: int = 64

    def __post_init__(self) -> None:
        given = [f"{{{n}}}" for n in _SOURCES if getattr(self, n) is not None]
        if len(given) != 1:
            raise OptionError(
                "give exactly one of {checkpoint}, {onnx} and {embeddings} (the source of the "
                f"embeddings); found {', '.join(given) or 'none'}"
            )
        if not self.pairs and not self.retrieval:
            raise OptionError(
                "nothing to evaluate: give {pairs}, {retrieval}, or both", retrieval=True
            )
        if self.batch_size < 1:
            raise OptionError(f"{{batch_size}}: expected ≥ 1, found {self.batch_size}")
        if self.retrieval_input is not None and not self.retrieval:
            raise OptionError(
                "{retrieval_input} is the retrieval dataset: add {retrieval}", retrieval=True
            )
        if self.embeddings is not None:
            self._check_embeddings_mode()
        elif self.retrieval and self.retrieval_input is None:
            raise OptionError(
                "retrieval with a model embeds a dataset: pass {retrieval_input} (a "
                "dataset_info table with {root}, or a Parquet dataset folder)"
            )

    def _check_embeddings_mode(self) -> None:
        if not self.flip_sum:
            raise OptionError(
                "{flip_sum} has no effect with {embeddings}: flip-sum is chosen at `fmlkit embed`",
                flip_sum=False,
            )
        model_only = [
            f"{{{n}}}" for n in ("root", "retrieval_input") if getattr(self, n) is not None
        ]
        if model_only:
            are = "is" if len(model_only) == 1 else "are"
            raise OptionError(
                f"{' and '.join(model_only)} {are} for model mode; with {{embeddings}}, pairs "
                "are looked up by file name and retrieval uses the table's labels: drop "
                + ("it" if len(model_only) == 1 else "them")
            )


def evaluate(
    out_dir: PathLike,
    *,
    pairs: Sequence[PathLike] = (),
    checkpoint: PathLike | None = None,
    onnx: PathLike | None = None,
    embeddings: PathLike | None = None,
    root: PathLike | None = None,
    retrieval: bool = False,
    retrieval_input: PathLike | None = None,
    flip_sum: bool = True,
    skip_missing: bool = False,
    batch_size: int = 64,
) -> EvaluateReport:
    """Score every pair list (and, with ``retrieval``, labelled embeddings) and write the
    report into ``out_dir`` (see the module docstring and `fmlkit.eval.report`).

    Args:
        out_dir: the report folder (created; other files in it are kept).
        pairs: pair lists (``1,a,b`` CSV, LFW pairs.txt or InsightFace .bin, told apart by
            content). Each is a benchmark named by its file stem; stems that clash (with each
            other or with ``retrieval``) are prefixed with their folder's name.
        checkpoint, onnx, embeddings: the one source of embeddings.
        root: model mode: the folder the text lists' (and a retrieval table's) file names are
            relative to. Not used with ``embeddings``.
        retrieval: also compute leave-one-out retrieval metrics.
        retrieval_input: model mode: the dataset to retrieve over (a dataset_info table with
            ``root``, or a Parquet dataset folder).
        flip_sum: model mode: embed each image plus its mirror image (insightface's way).
        skip_missing: drop the pairs naming unusable images instead of failing.
        batch_size: images per forward pass (model mode).

    Raises:
        OptionError: options that do not fit together (`EvaluateOptions`), checked first.
        InputError: unusable images (without ``skip_missing``), an empty pair list, or a bad
            embeddings table.
        FormatError: a pair list in no known format, or embeddings that are not Parquet.
        SchemaError: an embeddings table without the needed columns.
    """
    from fmlkit.eval.verification import score_pairs

    start = time.perf_counter()
    EvaluateOptions(
        pairs=pairs,
        checkpoint=checkpoint,
        onnx=onnx,
        embeddings=embeddings,
        root=root,
        retrieval=retrieval,
        retrieval_input=retrieval_input,
        flip_sum=flip_sum,
        skip_missing=skip_missing,
        batch_size=batch_size,
    )
    check_report_folder(out_dir)
    lists = [load_pairs(p) for p in pairs]
    names = benchmark_names(lists, retrieval=retrieval)
    notes: dict[str, dict[str, object]] = {
        name: dict(odd) for name, p in zip(names, lists, strict=True) if (odd := odd_pairs(p))
    }
    found: dict[str, object] | None = None
    if embeddings is not None:
        from fmlkit.eval.embed import read_embeddings

        _refuse_bins(lists, embeddings)
        table = read_embeddings(embeddings)
        scored = _table_pairs(lists, table, skip_missing)
        found = _retrieval(table.vectors, table.labels, embeddings) if retrieval else None
    else:
        from fmlkit.eval.embed import load_embedder

        staged, files = _stage_files(lists, root)
        _check_usable(staged, skip_missing)  # every list checked before the model is loaded
        embedder = load_embedder(checkpoint=checkpoint, onnx=onnx)
        scored = _model_pairs(staged, files, embedder, flip_sum, skip_missing, batch_size)
        if retrieval:
            assert retrieval_input is not None
            found, undecodable = _model_retrieval(
                embedder, retrieval_input, root, flip_sum, batch_size
            )
            notes[RETRIEVAL] = {"skipped_undecodable": undecodable}
    scores = {n: score_pairs(a, b, same) for n, (a, b, same, _) in zip(names, scored, strict=True)}
    dropped = {name: part[3] for name, part in zip(names, scored, strict=True)}
    if skip_missing:
        for name, count in dropped.items():
            notes.setdefault(name, {})[SKIPPED] = count
    out = write_report(out_dir, verification=scores, retrieval=found, notes=notes or None)
    metrics = json.loads((out / METRICS_JSON).read_text(encoding="utf-8"))
    return EvaluateReport(out, metrics, dropped if skip_missing else {},
                          time.perf_counter() - start)  # fmt: skip


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
class _Staged:
    """A list's pairs as positions into a matrix of embeddings (−1: unusable), and why."""

    pairs: PairList
    first: np.ndarray
    second: np.ndarray
    problems: list[tuple[str, str]]
    describe: Callable[[int], str] = str  # a position → how to name its image in messages


Scored = tuple[np.ndarray, np.ndarray, np.ndarray, int]  # first, second, same, pairs dropped


def _refuse_bins(lists: Sequence[PairList], embeddings: PathLike) -> None:
    for item in lists:
        if item.images is not None:
            raise InputError(
                f"{item.path} is an InsightFace .bin: its images are inside it, not in "
                f"{embeddings}. Evaluate it with --checkpoint or --onnx, or convert it "
                "(`fmlkit convert X.bin DIR`), embed DIR with `fmlkit embed` and pass "
                "DIR/_pairs.csv with those embeddings"
            )


def _table_pairs(lists: Sequence[PairList], table: EmbeddingTable, skip: bool) -> list[Scored]:
    staged = []
    for pairs in lists:
        where = {name: _lookup(pairs, name, table.index) for name in pairs.files}
        first, second = pair_positions(pairs, where)
        problems = [(n, f"not in {table.path}") for n, at in where.items() if at < 0]
        staged.append(_Staged(pairs, first, second, problems))
    _check_usable(staged, skip)
    return [_select(s, table.vectors, skip) for s in staged]


def _lookup(pairs: PairList, name: str, index: dict[str, int]) -> int:
    return next((index[c] for c in pairs.candidates(name) if c in index), -1)


def _stage_files(
    lists: Sequence[PairList], root: PathLike | None
) -> tuple[list[_Staged], list[Path]]:
    """Model mode, before any model is loaded: find every text list's files under ``root``
    (each file once, however many lists name it)."""
    paths: dict[Path, int] = {}  # every usable file of the text lists → its row
    staged = []
    for pairs in lists:
        if pairs.images is not None:
            staged.append(_Staged(pairs, pairs.first, pairs.second, [], _bin_image))
            continue
        if root is None:
            raise InputError(f"{pairs.path} names image files: pass --root, the folder they "
                             "are relative to")  # fmt: skip
        found = locate_files(pairs, root)
        rows = {n: paths.setdefault(p, len(paths)) for n, p in found.paths.items()}
        first, second = pair_positions(pairs, rows)
        named = {row: n for n, row in rows.items()}
        staged.append(_Staged(pairs, first, second, found.problems(Path(root)), named.__getitem__))
    return staged, list(paths)


def _model_pairs(
    staged: Sequence[_Staged],
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


def _mark_failed(item: _Staged, failed: dict[int, str]) -> None:
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


def _check_usable(staged: Sequence[_Staged], skip: bool) -> None:
    for item in staged:
        if item.problems and not skip:
            dropped = int(((item.first < 0) | (item.second < 0)).sum())
            raise unusable_error(item.pairs, item.problems, dropped)


def _select(item: _Staged, vectors: np.ndarray, skip: bool) -> Scored:
    """The embeddings of each usable pair; unusable pairs dropped (``skip``) or an error."""
    _check_usable([item], skip)
    keep = (item.first >= 0) & (item.second >= 0)
    if not keep.any():
        shown = "; ".join(f"{n} ({why})" for n, why in item.problems[:SHOWN])
        raise InputError(
            f"no pair of {item.pairs.path} is left once the pairs naming unusable images are "
            f"dropped ({len(item.pairs):,} pairs; e.g. {shown}): check the list and the root"
        )
    first, second = vectors[item.first[keep]], vectors[item.second[keep]]
    return first, second, item.pairs.same[keep], int((~keep).sum())


def _retrieval(
    vectors: np.ndarray, labels: np.ndarray | None, where: PathLike
) -> dict[str, object]:
    """Leave-one-out retrieval over labelled embeddings."""
    import pandas as pd

    from fmlkit.eval.retrieval import retrieval_metrics

    if labels is None:
        raise InputError(
            f"{where} has no label column: retrieval needs each embedding's identity "
            "(`fmlkit embed` writes one)"
        )
    unlabelled = int(pd.isna(labels).sum())  # retrieval_metrics factorizes the labels itself
    if unlabelled:
        raise InputError(f"{where}: {unlabelled} rows have no label; retrieval "
                         "needs a label on every row")  # fmt: skip
    return dict(retrieval_metrics(vectors, labels))


def _model_retrieval(
    embedder: Embedder, input: PathLike, root: PathLike | None, flip_sum: bool, batch_size: int
) -> tuple[dict[str, object], int]:
    """Retrieval over the embeddings of a dataset; also the number of undecodable images."""
    from fmlkit.eval.embed import embed_dataset

    data = embed_dataset(embedder, input, root=root, flip_sum=flip_sum, batch_size=batch_size)
    return _retrieval(data.embeddings, np.asarray(data.labels, object), input), len(data.skipped)
