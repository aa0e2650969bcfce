"""`fmlkit evaluate`: verification metrics on pair lists and retrieval metrics, from a model
(checkpoint, ONNX or bare weights) or from stored embeddings, written as one report.

Two ways in:

- **embeddings** (the Parquet `fmlkit embed` writes: ``file_name``, ``embedding``, optional
  ``label``): each pair's images are looked up by file name; the embeddings are used as stored
  (flip-summed or not when they were made). Retrieval uses the table's labels.
- **model** (a checkpoint, an ONNX model, or a bare backbone state dict such as
  arcface_torch's ``backbone.pth`` with its backbone's name): exactly the images the pair
  lists name are embedded (files under ``root``; a ``.bin``'s images from the file itself),
  flip-summed unless ``flip_sum`` is off. Retrieval embeds ``retrieval_input`` (a
  dataset_info table with ``root``, or a Parquet dataset folder).

Every pair list is checked before anything is embedded. Names that are absent (from the
embeddings, or under ``root``), that lead outside ``root`` (never opened), or whose images
cannot be decoded stop the evaluation with an error listing the first few; with
``skip_missing`` the pairs naming them are dropped instead and counted per benchmark
(``skipped_missing`` in ``metrics.json``). Scores come from `fmlkit.eval.verification`
(docs/formats.md) and `fmlkit.eval.retrieval`; `fmlkit.eval.report` writes the files.

This module holds the stage, its options and its report; `fmlkit.eval.pairing` matches the
pair lists to the embeddings.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmlkit.errors import InputError, OptionError
from fmlkit.eval.pair_sources import PairList, load_pairs
from fmlkit.eval.pairing import (
    REPEATED,
    SELF_PAIRS,
    Scored,
    benchmark_names,
    check_usable,
    model_pairs,
    odd_pairs,
    refuse_bins,
    stage_files,
    table_pairs,
)
from fmlkit.eval.report import (
    IDENTIFICATION,
    METRICS_JSON,
    RETRIEVAL,
    check_report_folder,
    write_report,
)

if TYPE_CHECKING:
    from fmlkit.eval.embedder import Embedder
    from fmlkit.eval.ijb import IjbResult

SKIPPED = "skipped_missing"  # the note counting the pairs skip_missing dropped
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
    caches: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        """A short table of the main numbers, for the command line."""
        lines = []
        verification = {k: v for k, v in self.metrics.items() if "accuracy" in v}
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
        lines += _ijb_lines(self.metrics)
        for cache in self.caches:
            lines.append(f"IJB embeddings cached in {cache}")
        for name, count in self.skipped.items():
            if count:
                lines.append(f"{name}: {count:,} pairs naming unusable images skipped")
        for name, m in verification.items():
            odd = [f"{m[k]:,} {k.replace('_', ' ')}" for k in (REPEATED, SELF_PAIRS) if k in m]
            if odd:
                lines.append(f"{name}: {' and '.join(odd)} (scored as listed)")
        ijb = any("tar_at_far_interpolated" in m for m in self.metrics.values())
        files = "metrics.json, metrics.md" + (", roc.png" if verification or ijb else "")
        files += ", scores.png" if verification else ""
        files += "".join(
            f", {n}.npy" for n, m in self.metrics.items() if "tar_at_far_interpolated" in m
        )
        lines.append(f"wrote {self.out_dir} ({files}) in {self.seconds:.1f} s")
        return "\n".join(lines)


def _ijb_lines(metrics: dict[str, dict[str, Any]]) -> list[str]:
    """The summary lines of the IJB and 1:N benchmarks in ``metrics``."""
    lines = []
    for name, m in metrics.items():
        if "tar_at_far_interpolated" in m:
            for how, key in (
                ("closest", "tar_at_far"),
                ("interpolated", "tar_at_far_interpolated"),
            ):
                tar = ", ".join(f"{f} {_num(v, 100)}" for f, v in (m.get(key) or {}).items())
                lines.append(f"{name} TAR@FAR (%, {how}): {tar}")
            lines.append(
                f"{name}: {m.get('pairs', 0):,} pairs of {m.get('templates', 0):,} templates "
                f"({m.get('images', 0):,} images), AUC {_num(m.get('auc'), 1, 4)}"
            )
            continue
        galleries = {"all": m} if "cmc" in m else {
            k: v for k, v in m.items() if isinstance(v, dict) and "cmc" in v
        }  # fmt: skip
        for gallery, g in galleries.items():
            cmc = ", ".join(f"rank-{r} {_num(v, 100)}" for r, v in (g.get("cmc") or {}).items())
            tpir = ", ".join(
                f"{f} {_num(v, 100)}" for f, v in (g.get("tpir_at_fpir") or {}).items()
            )
            lines.append(f"{name} {gallery} (%): {cmc}; TPIR@FPIR {tpir}")
    return lines


def _num(value: object, scale: float, digits: int = 2) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—"
    return f"{value * scale:.{digits}f}"


# the options naming the source of embeddings
_SOURCES = ("checkpoint", "onnx", "weights", "embeddings")


@dataclass(frozen=True, kw_only=True)
class EvaluateOptions:
    """`evaluate`'s options, checked on construction: `OptionError` (naming the options) for
    options that do not fit together or a bad value. See `evaluate` for each option.

    The rules: exactly one of ``checkpoint``, ``onnx``, ``weights`` and ``embeddings``;
    ``backbone`` with ``weights`` and only with it, ``image_size`` only with it; something to
    evaluate (``pairs``, ``retrieval`` or both); ``batch_size`` ≥ 1; ``retrieval_input`` only
    with ``retrieval``, which with a model needs it; ``fold`` or ``split`` (not both) only with
    ``retrieval_input``; with ``embeddings``, no ``root``, no ``retrieval_input`` and
    ``flip_sum`` left on (it was chosen when the embeddings were made).
    """

    pairs: Sequence[PathLike] = ()
    checkpoint: PathLike | None = None
    onnx: PathLike | None = None
    weights: PathLike | None = None
    backbone: str | None = None
    image_size: int | None = None
    preprocess: str | None = None
    embeddings: PathLike | None = None
    root: PathLike | None = None
    retrieval: bool = False
    retrieval_input: PathLike | None = None
    fold: int | None = None
    split: str | None = None
    flip_sum: bool = True
    skip_missing: bool = False
    batch_size: int = 64
    ijb: PathLike | None = None
    norm_score: bool = True
    detector_score: bool = True
    cache_dir: PathLike | None = None
    gallery: PathLike | None = None
    probes: PathLike | None = None

    def __post_init__(self) -> None:
        from fmlkit.eval.embed import check_model_options

        given = [f"{{{n}}}" for n in _SOURCES if getattr(self, n) is not None]
        if len(given) > 1 or (not given and (self._needs_source() or self.gallery is None)):
            raise OptionError(
                "give exactly one of {checkpoint}, {onnx}, {weights} and {embeddings} (the "
                f"source of the embeddings); found {', '.join(given) or 'none'}"
            )
        self._check_ijb_and_identification()
        check_model_options(
            self.checkpoint,
            self.onnx,
            self.weights,
            self.backbone,
            self.image_size,
            self.preprocess,
        )
        if not (self.pairs or self.retrieval or self.ijb is not None or self.gallery is not None):
            raise OptionError(
                "nothing to evaluate: give {pairs}, {retrieval}, {ijb} or {gallery} with {probes}",
                retrieval=True,
            )
        if self.batch_size < 1:
            raise OptionError(f"{{batch_size}}: expected ≥ 1, found {self.batch_size}")
        if self.retrieval_input is not None and not self.retrieval:
            raise OptionError(
                "{retrieval_input} is the retrieval dataset: add {retrieval}", retrieval=True
            )
        if (self.fold is not None or self.split is not None) and self.retrieval_input is None:
            raise OptionError(
                "{fold} and {split} select rows of the retrieval dataset: pass "
                "{retrieval_input} (and {retrieval}), or drop them",
                retrieval=True,
            )
        if self.fold is not None and self.split is not None:
            raise OptionError("select the retrieval rows with one of {fold} or {split}, not both")
        if self.embeddings is not None:
            self._check_embeddings_mode()
        elif self.retrieval and self.retrieval_input is None:
            raise OptionError(
                "retrieval with a model embeds a dataset: pass {retrieval_input} (a "
                "dataset_info table with {root}, or a Parquet dataset folder)"
            )

    def _needs_source(self) -> bool:
        """Whether something asked for needs a model or an embeddings table (1:N alone
        reads its gallery and probes as embeddings tables)."""
        return bool(self.pairs) or self.retrieval or self.ijb is not None

    def _check_ijb_and_identification(self) -> None:
        if (self.gallery is None) != (self.probes is None):
            raise OptionError("1:N identification needs both {gallery} and {probes}")
        if self.gallery is not None and self.embeddings is not None:
            raise OptionError(
                "{gallery} and {probes} are embeddings tables themselves (or image tables with "
                "a model): drop {embeddings}, or evaluate them in a separate run"
            )
        ijb_only = [n for n in ("norm_score", "detector_score") if not getattr(self, n)]
        if ijb_only and self.ijb is None:
            raise OptionError(
                f"{{{ijb_only[0]}}} is a switch of the IJB protocol: add {{ijb}} or drop it",
                **{ijb_only[0]: False},
            )
        model = any(getattr(self, n) is not None for n in ("checkpoint", "onnx", "weights"))
        if self.cache_dir is not None and (self.ijb is None or not model):
            raise OptionError(
                "{cache_dir} holds a model's IJB embeddings: use it with {ijb} and a model"
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
    weights: PathLike | None = None,
    backbone: str | None = None,
    image_size: int | None = None,
    preprocess: str | None = None,
    embeddings: PathLike | None = None,
    root: PathLike | None = None,
    retrieval: bool = False,
    retrieval_input: PathLike | None = None,
    fold: int | None = None,
    split: str | None = None,
    flip_sum: bool = True,
    skip_missing: bool = False,
    batch_size: int = 64,
    ijb: PathLike | None = None,
    norm_score: bool = True,
    detector_score: bool = True,
    cache_dir: PathLike | None = None,
    gallery: PathLike | None = None,
    probes: PathLike | None = None,
) -> EvaluateReport:
    """Score every pair list (and, with ``retrieval``, labelled embeddings) and write the
    report into ``out_dir`` (see the module docstring and `fmlkit.eval.report`).

    Args:
        out_dir: the report folder (created; other files in it are kept).
        pairs: pair lists (``1,a,b`` CSV, LFW pairs.txt or InsightFace .bin, told apart by
            content). Each is a benchmark named by its file stem; stems that clash (with each
            other or with ``retrieval``) are prefixed with their folder's name.
        checkpoint, onnx, weights, embeddings: the one source of embeddings; ``weights`` is
            a bare backbone state dict (arcface_torch's ``backbone.pth``) of the backbone
            ``backbone``, for ``image_size`` px images (default 112), normalised as
            arcface_torch does, (x/255 − 0.5)/0.5.
        preprocess: with ``onnx``: ``auto`` (the file's fmlkit metadata when present, else
            fmlkit's default), ``insightface`` (BGR, (x − 127.5)/127.5) or ``fmlkit``.
        root: model mode: the folder the text lists' (and a retrieval table's) file names are
            relative to. Not used with ``embeddings``.
        retrieval: also compute leave-one-out retrieval metrics.
        retrieval_input: model mode: the dataset to retrieve over (a dataset_info table with
            ``root``, or a Parquet dataset folder).
        fold, split: retrieve over the rows of this fold or split of ``retrieval_input`` only
            (the columns `fmlkit split` writes); an error names the values present when none
            match.
        flip_sum: model mode: embed each image plus its mirror image (insightface's way).
        skip_missing: drop the pairs naming unusable images instead of failing (with ``ijb``:
            leave unusable crops out of their templates).
        batch_size: images per forward pass (model mode).
        ijb: an IJB-B or IJB-C folder (``meta/`` and ``loose_crop/``): template-based 1:1
            verification, and 1:N when its gallery and probe files are there
            (`fmlkit.eval.ijb`); with ``embeddings``, that table holds the crops' flip sums.
        norm_score, detector_score: the IJB switches of insightface (its N1 and D1 modes):
            keep each image feature's norm, weight it by its detector score. ``flip_sum`` is
            the third (F1).
        cache_dir: where a model's IJB embeddings are cached (default
            `fmlkit.eval.ijb.default_cache_dir`).
        gallery, probes: 1:N identification: `fmlkit embed` Parquets (optional ``template``
            and ``media`` columns pool rows into templates), or with a model image tables
            embedded as ``retrieval_input`` is (`fmlkit.eval.identify`).

    Raises:
        OptionError: options that do not fit together (`EvaluateOptions`), checked first.
        InputError: unusable images (without ``skip_missing``), an empty pair list, or a bad
            embeddings table.
        FormatError: a pair list in no known format, or embeddings that are not Parquet.
        SchemaError: an embeddings table without the needed columns.
    """
    from fmlkit.eval.verification import score_pairs

    start = time.perf_counter()
    options = EvaluateOptions(
        pairs=pairs,
        checkpoint=checkpoint,
        onnx=onnx,
        weights=weights,
        backbone=backbone,
        image_size=image_size,
        preprocess=preprocess,
        embeddings=embeddings,
        root=root,
        retrieval=retrieval,
        retrieval_input=retrieval_input,
        fold=fold,
        split=split,
        flip_sum=flip_sum,
        skip_missing=skip_missing,
        batch_size=batch_size,
        ijb=ijb,
        norm_score=norm_score,
        detector_score=detector_score,
        cache_dir=cache_dir,
        gallery=gallery,
        probes=probes,
    )
    check_report_folder(out_dir)
    lists = [load_pairs(p) for p in pairs]
    names = benchmark_names(lists, retrieval=retrieval)
    notes: dict[str, dict[str, object]] = {
        name: dict(odd) for name, p in zip(names, lists, strict=True) if (odd := odd_pairs(p))
    }
    templates: dict[str, IjbResult] = {}
    identification: dict[str, dict[str, object]] = {}
    scored: list[Scored] = []
    found = None
    if embeddings is not None:
        scored, found = _from_table(lists, embeddings, options)
        if ijb is not None:
            result = _ijb(options, embeddings=embeddings)
            templates[result.name] = result
    elif options.checkpoint or options.onnx or options.weights:
        from fmlkit.parallel import torch_threads

        with torch_threads(None, what="evaluate"):  # torch on the CPUs this process may use
            scored, found, undecodable, embedder = _from_model(lists, options)
            if ijb is not None:
                result = _ijb(options, embedder=embedder)
                templates[result.name] = result
            if gallery is not None and probes is not None:
                identification[IDENTIFICATION] = _identify(options, embedder)
        if undecodable is not None:
            notes[RETRIEVAL] = {"skipped_undecodable": undecodable}
    if gallery is not None and probes is not None and not identification:
        identification[IDENTIFICATION] = _identify(options, None)
    for name, result in templates.items():
        if result.identification is not None:
            identification[f"{name}_1n"] = result.identification
    scores = {n: score_pairs(a, b, same) for n, (a, b, same, _) in zip(names, scored, strict=True)}
    dropped = {name: part[3] for name, part in zip(names, scored, strict=True)}
    if skip_missing:
        for name, count in dropped.items():
            notes.setdefault(name, {})[SKIPPED] = count
    out = write_report(out_dir, verification=scores, retrieval=found, notes=notes or None,
                       templates=templates, identification=identification)  # fmt: skip
    metrics = json.loads((out / METRICS_JSON).read_text(encoding="utf-8"))
    caches = [r.cache for r in templates.values() if r.cache is not None]
    return EvaluateReport(out, metrics, dropped if skip_missing else {},
                          time.perf_counter() - start, caches)  # fmt: skip


def _ijb(
    options: EvaluateOptions,
    *,
    embedder: Embedder | None = None,
    embeddings: PathLike | None = None,
) -> IjbResult:
    """The IJB benchmark of ``options.ijb``, from the model or the crops' embeddings."""
    from fmlkit.eval.ijb import evaluate_ijb, model_identity

    assert options.ijb is not None
    key = None
    if embedder is not None:
        model = options.checkpoint or options.onnx or options.weights
        assert model is not None
        key = model_identity(model, backbone=options.backbone, image_size=options.image_size,
                             preprocess=options.preprocess)  # fmt: skip
    return evaluate_ijb(
        options.ijb,
        embedder=embedder,
        model_key=key,
        embeddings=embeddings,
        cache_dir=options.cache_dir,
        flip=options.flip_sum,
        norm_score=options.norm_score,
        detector_score=options.detector_score,
        skip_missing=options.skip_missing,
        batch_size=options.batch_size,
    )


def _identify(options: EvaluateOptions, embedder: Embedder | None) -> dict[str, object]:
    """1:N identification of ``options.probes`` against ``options.gallery``."""
    from fmlkit.eval.identify import identify

    assert options.gallery is not None and options.probes is not None
    return identify(options.gallery, options.probes, embedder=embedder, root=options.root,
                    flip_sum=options.flip_sum, batch_size=options.batch_size)  # fmt: skip


def _from_table(
    lists: Sequence[PairList], embeddings: PathLike, options: EvaluateOptions
) -> tuple[list[Scored], dict[str, object] | None]:
    """Embeddings mode: each list's pairs and the retrieval metrics (None without
    ``retrieval``) from the stored table."""
    from fmlkit.data.formats.embeddings import read_embeddings

    refuse_bins(lists, embeddings)
    table = read_embeddings(embeddings)
    scored = table_pairs(lists, table, options.skip_missing)
    found = _retrieval(table.vectors, table.labels, embeddings) if options.retrieval else None
    return scored, found


def _from_model(
    lists: Sequence[PairList], options: EvaluateOptions
) -> tuple[list[Scored], dict[str, object] | None, int | None, Embedder]:
    """Model mode: each list's pairs, the retrieval metrics and the number of retrieval
    images that could not be decoded (both None without ``retrieval``), and the model."""
    from fmlkit.eval.embed import load_embedder

    staged, files = stage_files(lists, options.root)
    check_usable(staged, options.skip_missing)  # every list checked before the model is loaded
    embedder = load_embedder(
        checkpoint=options.checkpoint,
        onnx=options.onnx,
        weights=options.weights,
        backbone=options.backbone,
        image_size=options.image_size,
        preprocess=options.preprocess,
    )
    flip_sum, batch_size = options.flip_sum, options.batch_size
    scored = model_pairs(staged, files, embedder, flip_sum, options.skip_missing, batch_size)
    if not options.retrieval:
        return scored, None, None, embedder
    assert options.retrieval_input is not None  # checked by EvaluateOptions
    found, undecodable = _model_retrieval(embedder, options, flip_sum, batch_size)
    return scored, found, undecodable, embedder


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
    import torch

    device = "cuda" if torch.cuda.is_available() else None  # the same results (tested)
    return dict(retrieval_metrics(vectors, labels, device=device))


def _model_retrieval(
    embedder: Embedder, options: EvaluateOptions, flip_sum: bool, batch_size: int
) -> tuple[dict[str, object], int]:
    """Retrieval over the embeddings of the retrieval dataset (its fold or split, if one is
    asked for); also the number of undecodable images."""
    from fmlkit.eval.embed import embed_dataset

    input = options.retrieval_input
    assert input is not None  # checked by EvaluateOptions
    data = embed_dataset(
        embedder,
        input,
        root=options.root,
        fold=options.fold,
        split=options.split,
        flip_sum=flip_sum,
        batch_size=batch_size,
    )
    return _retrieval(data.embeddings, np.asarray(data.labels, object), input), len(data.skipped)
