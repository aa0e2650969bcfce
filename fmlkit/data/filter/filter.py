"""`fmlkit filter`: drop broken, badly sized and duplicate rows from a dataset_info table.

Decisions, in order: rows with an ``error`` go (reason ``error:<kind>``) unless kept; then
``too_small`` (shorter side < min_size) and ``too_large`` (longer side > max_size); then, with
a reference set (``--against``), ``leak``: within ``against_threshold`` pHash bits of one of
its images (`fmlkit.data.filter.leak`); then duplicates among the rows left
(`fmlkit.data.filter.dedup`), each pHash candidate pair confirmed on the images' pixels
(and embeddings when given: `fmlkit.data.filter.confirm`) unless ``confirm="none"``. Every
input row ends up in exactly one
of the two outputs: FILTERED (input columns, input order) or REMOVED (plus ``reason``,
``duplicate_of`` and ``distance``). Rules that remove every row are not an error (the outputs
are still written, to be looked at) but a warning: logged, and a line of the report's summary
naming the rule that removed most rows and how to relax it. Duplicate removals of an
implausible share of a label or of the dataset (`fmlkit.data.filter.plausible`) are warned
about too; with ``strict`` they are an error, and only the report is written.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fmlkit.choices import Confirm
from fmlkit.columns import (
    DISTANCE,
    DUPLICATE_OF,
    EMBEDDING_SIMILARITY,
    ERROR,
    FILE_NAME,
    HEIGHT,
    LABEL,
    PHASH,
    PIXEL_SIMILARITY,
    REASON,
    WIDTH,
    validate_columns,
)
from fmlkit.data.filter.confirm import Confirmer
from fmlkit.data.filter.dedup import Candidates, deduplicate
from fmlkit.data.filter.hamming import MalformedHash, hex_to_uint64
from fmlkit.data.filter.leak import LEAK, Reference, find_leaks
from fmlkit.data.filter.plausible import implausible
from fmlkit.data.filter.rules import FilterRules
from fmlkit.data.formats.embeddings import read_embeddings
from fmlkit.data.formats.table import check_unique_names, read_table, write_table
from fmlkit.errors import InputError, OptionError
from fmlkit.io import check_apart, committed_together

log = logging.getLogger(__name__)
DEFAULT_RULES = FilterRules()  # frozen: safe to share as a default

TOO_SMALL, TOO_LARGE = "too_small", "too_large"


@dataclass(frozen=True)
class FilterReport:
    """What `filter_dataset` decided and wrote."""

    output: Path
    removed_output: Path | None
    report_dir: Path | None
    rows: int
    kept: int
    removed: Mapping[str, int]  # by reason
    seconds: float
    warning: str = ""  # set when the rules removed every row
    against: Path | None = None  # the reference set of the leakage check
    against_images: int = 0  # its images
    warnings: tuple[str, ...] = ()  # implausible removals (`fmlkit.data.filter.plausible`)
    candidates: Candidates | None = None  # the pHash candidate pairs, with --dedup
    confirm: Confirm = "none"  # how the candidates were confirmed

    def summary(self) -> str:
        by_reason = ", ".join(f"{k} {v:,}" for k, v in sorted(self.removed.items())) or "none"
        lines = [
            f"Filtered {self.rows:,} rows in {self.seconds:.2f} s: kept {self.kept:,}, "
            f"removed {self.rows - self.kept:,} ({by_reason})",
            f"Wrote {self.output}",
        ]
        if self.against is not None:
            lines.insert(
                1,
                f"Leak check: {self.removed.get(LEAK, 0):,} rows within reach of the "
                f"{self.against_images:,} images of {self.against} (removed as {LEAK})",
            )
        c = self.candidates
        if c is not None and self.confirm != "none":
            yes = int(c.confirmed.sum())
            note = "".join(
                f"; {k:,} {what} (not confirmed)"
                for k, what in (
                    (c.unreadable, "with an unreadable image"),
                    (c.no_embedding, "with an image missing from the embeddings"),
                )
                if k
            )
            both = " and embeddings" if np.isfinite(c.embedding).any() else ""
            lines.insert(
                1,
                f"Confirmed {yes:,} of {c.pairs:,} pHash candidate pairs on the pixels{both}{note}",
            )
        if self.removed_output is not None:
            lines.append(f"Wrote {self.removed_output}")
        if self.report_dir is not None:
            lines.append(f"Report: {self.report_dir / 'index.html'}")
        if self.warning:
            lines.append(f"Warning: {self.warning}")
        lines += [f"Warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def decide(
    df: pd.DataFrame,
    rules: FilterRules = DEFAULT_RULES,
    *,
    against: Reference | None = None,
    confirmer: Confirmer | None = None,
) -> pd.DataFrame:
    """`decide_with_candidates`'s table alone."""
    return decide_with_candidates(df, rules, against=against, confirmer=confirmer)[0]


def decide_with_candidates(
    df: pd.DataFrame,
    rules: FilterRules = DEFAULT_RULES,
    *,
    against: Reference | None = None,
    confirmer: Confirmer | None = None,
) -> tuple[pd.DataFrame, Candidates | None]:
    """Why each row of ``df`` goes: ``reason`` ("" to keep), ``duplicate_of``, ``distance``
    (and with confirmation ``pixel_similarity``, ``embedding_similarity``).

    No I/O but ``confirmer``'s reading of the candidates' images (``against``: the hashed
    reference images, `load_reference`). See the module docstring for the order of
    decisions; a ``leak`` row's ``duplicate_of`` names the reference image. Also the
    dedup step's `Candidates` (None without ``dedup``).

    Raises:
        OptionError: ``dedup`` with ``confirm="pixels"`` but no ``confirmer``.
    """
    confirming = rules.dedup and rules.confirm == "pixels"
    if confirming and confirmer is None:
        raise OptionError(
            "{dedup} with {confirm} pixels reads the candidates' images: give the "
            "`Confirmer` of {root}, the dataset folder, or {confirm} none to trust the "
            "hashes alone"
        )
    sized = rules.min_size is not None or rules.max_size is not None
    hashed = rules.dedup or against is not None
    required = [FILE_NAME, LABEL] + ([PHASH] if hashed else [])
    if sized or rules.keep == "largest":
        required += [WIDTH, HEIGHT]
    validate_columns(df, required, what="the table to filter")
    out = pd.DataFrame(
        {
            REASON: pd.Series("", index=df.index, dtype=object),
            DUPLICATE_OF: "",
            DISTANCE: pd.Series(pd.NA, index=df.index, dtype="Int64"),
        }
    )
    errors = df[ERROR].astype(str) if ERROR in df else pd.Series("", index=df.index)
    has_error = errors != ""
    if not rules.keep_errors:
        out.loc[has_error, REASON] = "error:" + errors[has_error]
    if sized:
        width, height = df[WIDTH].astype("Int64"), df[HEIGHT].astype("Int64")
        open_rows = (out[REASON] == "") & width.notna() & height.notna()
        sides = pd.concat([width, height], axis=1)
        short, long = sides.min(axis=1), sides.max(axis=1)
        if rules.min_size is not None:
            out.loc[open_rows & (short < rules.min_size), REASON] = TOO_SMALL
        if rules.max_size is not None:
            out.loc[(out[REASON] == "") & open_rows & (long > rules.max_size), REASON] = TOO_LARGE
    if against is not None:
        _mark_leaks(df, out, (out[REASON] == "") & ~has_error, against, rules.against_threshold)
    if rules.dedup:
        open_rows = (out[REASON] == "") & ~has_error  # kept broken rows have no hash
        rows = df.loc[open_rows]
        names = rows[FILE_NAME].astype(str).to_numpy(object)
        dup, candidates = deduplicate(
            rows,
            threshold=rules.threshold,
            scope=rules.scope,
            global_threshold=rules.global_threshold,
            keep=rules.keep,
            confirm=None
            if not confirming or confirmer is None
            else lambda i, j: confirmer(names, i, j),
        )
        out.loc[dup.index, [REASON, DUPLICATE_OF]] = dup[[REASON, DUPLICATE_OF]].to_numpy()
        out.loc[dup.index, DISTANCE] = dup[DISTANCE]
        if confirming:
            for column in (PIXEL_SIMILARITY, EMBEDDING_SIMILARITY):
                out[column] = pd.Series(pd.NA, index=df.index, dtype="Float64")
                out.loc[dup.index, column] = dup[column]
        return out, candidates
    return out, None


def _mark_leaks(
    df: pd.DataFrame, out: pd.DataFrame, rows: pd.Series, against: Reference, radius: int
) -> None:
    """Set ``leak`` on the ``rows`` within ``radius`` bits of a reference image."""
    candidates = df.loc[rows]
    try:
        hashes = hex_to_uint64(candidates[PHASH].astype(str).tolist())
    except MalformedHash as e:
        raise InputError(
            f"row {candidates.index[e.position]} ({candidates[FILE_NAME].iloc[e.position]}): "
            f"phash {e.value!r} is not 16 hexadecimal characters; re-create the table with "
            "`fmlkit prepare`"
        ) from e
    index, distance = find_leaks(hashes, against, radius)
    hit = index >= 0
    where = candidates.index[hit]
    out.loc[where, REASON] = LEAK
    out.loc[where, DUPLICATE_OF] = np.asarray(against.names, dtype=object)[index[hit]]
    out.loc[where, DISTANCE] = distance[hit]


def check_filter_paths(
    info: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    removed: str | os.PathLike[str] | None = None,
    report_dir: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    against: str | os.PathLike[str] | None = None,
    rules: FilterRules | None = None,
    embeddings: str | os.PathLike[str] | None = None,
) -> None:
    """What `filter_dataset` checks before it reads anything, callable on its own so that a
    caller can refuse the paths before it loads (and hashes) an ``--against`` list.

    Raises:
        OptionError: ``report_dir`` without ``root``; ``rules`` that confirm duplicates on
            the pixels without ``root``; ``embeddings`` without pixel confirmation.
        InputError: two of the paths are one, or the report folder is not a report's.
    """
    if report_dir is not None and root is None:
        raise OptionError("{report_dir} needs {root}, the dataset folder, to show the images")
    if rules is not None and rules.dedup and rules.confirm == "pixels" and root is None:
        raise OptionError(
            "{dedup} confirms each pHash candidate on the images' pixels ({confirm} pixels, "
            "the default): give {root}, the dataset folder, or {confirm} none to trust the "
            "hashes alone (on real photos they remove distinct images)"
        )
    if embeddings is not None and (rules is None or not rules.dedup or rules.confirm != "pixels"):
        raise OptionError(
            "{embeddings} confirms duplicates: it needs {dedup} with {confirm} pixels (and {root})"
        )
    paths = {"input table": info, "leak-check list (--against)": against, "output": output}
    paths["embeddings table"] = embeddings
    paths["removed table"] = removed
    check_apart({**paths, "report folder": report_dir}, fix="give each output a path of its own")
    if report_dir is not None and root is not None:
        from fmlkit.data.filter.report import check_report_dir

        check_report_dir(Path(report_dir), root=Path(root))


def filter_dataset(
    info: str | os.PathLike[str],
    output: str | os.PathLike[str],
    rules: FilterRules = DEFAULT_RULES,
    *,
    removed: str | os.PathLike[str] | None = None,
    report_dir: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    against: Reference | None = None,
    embeddings: str | os.PathLike[str] | None = None,
) -> FilterReport:
    """Read ``info``, `decide` by ``rules`` (a frozen default is safe to share), write the kept
    rows to ``output`` and the removed ones to ``removed``; with ``report_dir`` (and the
    dataset folder ``root``), an HTML report. With ``against`` (the images of a test list or
    benchmark: `fmlkit.eval.leak_reference.load_reference`), rows within
    ``rules.against_threshold`` bits of one of them are removed as ``leak``. With dedup and
    ``rules.confirm == "pixels"`` (the default) each pHash candidate is confirmed on the
    images under ``root`` (and on ``embeddings``, an `fmlkit embed` Parquet, when given).

    Outputs are CSV or Parquet by suffix, written atomically. Implausible duplicate removals
    (`fmlkit.data.filter.plausible`) are warnings in the summary and the report; with
    ``rules.strict`` they raise instead, and only the report (when asked) is written: it
    shows the pairs, and no later stage reads a table that lost half a class.

    Raises:
        OptionError: ``report_dir`` without ``root``, or pixel confirmation without it.
        InputError: two of the paths are one (the input, an output, the report folder), the
            report folder is not a report's (`check_report_dir`), the table has no rows, or
            ``rules.strict`` and an implausible removal.
        SchemaError: the table cannot be read whole, or names a file twice.
    """
    start = time.perf_counter()
    check_filter_paths(
        info,
        output,
        removed=removed,
        report_dir=report_dir,
        root=root,
        against=None if against is None else against.path,
        rules=rules,
        embeddings=embeddings,
    )
    confirmer = None
    if rules.dedup and rules.confirm == "pixels" and root is not None:
        confirmer = Confirmer(
            Path(root),
            pixel_threshold=rules.pixel_threshold,
            embeddings=None if embeddings is None else read_embeddings(embeddings),
            embedding_threshold=rules.embedding_threshold,
        )
    df = read_table(info, required=[FILE_NAME, LABEL], what="dataset_info")
    if df.empty:
        raise InputError(
            f"{info} has no rows (a header only): there is nothing to filter. Check the "
            "stage that wrote it (a filter that removed every row says so in a warning)"
        )
    check_unique_names(df, info)
    decision, candidates = decide_with_candidates(df, rules, against=against, confirmer=confirmer)
    gone = decision[REASON] != ""
    counts = Counter(decision.loc[gone, REASON])
    warnings = implausible(
        df,
        decision,
        label_share=rules.label_share,
        label_min=rules.label_min,
        dataset_share=rules.dataset_share,
        confirmed=rules.confirm == "pixels",
    )
    report_path = None if report_dir is None else Path(report_dir)
    refused = rules.strict and bool(warnings)
    tables = [] if refused else [p for p in (output, removed) if p is not None]
    outputs = tables + ([report_path] if report_path is not None else [])
    with committed_together(*outputs):  # a full disk at the report leaves the tables as they were
        if not refused:
            write_table(df.loc[~gone], output)
            if removed is not None:
                write_table(pd.concat([df.loc[gone], decision.loc[gone]], axis=1), removed)
        if report_path is not None and root is not None:
            from fmlkit.data.filter.report import write_filter_report

            write_filter_report(
                df,
                decision,
                report_path,
                root=Path(root),
                against=against,
                candidates=candidates,
                rules=rules,
                warnings=warnings,
            )
    if refused:
        shown = f"; the report {report_path / 'index.html'} shows the pairs" if report_path else ""
        raise InputError(
            f"strict: {warnings[0]}{' (and more)' if len(warnings) > 1 else ''}. Nothing was "
            f"written to {output}{shown}"
        )
    for w in warnings:
        log.warning(w)
    warning = nothing_kept(counts, rules) if len(df) and gone.all() else ""
    if warning:
        log.warning(warning)
    return FilterReport(
        output=Path(output),
        removed_output=None if removed is None else Path(removed),
        report_dir=report_path,
        rows=len(df),
        kept=int((~gone).sum()),
        removed=dict(counts),
        seconds=time.perf_counter() - start,
        warning=warning,
        against=None if against is None else against.path,
        against_images=0 if against is None else len(against),
        warnings=tuple(warnings),
        candidates=candidates,
        confirm=rules.confirm if rules.dedup else "none",
    )


def nothing_kept(removed: Mapping[str, int], rules: FilterRules) -> str:
    """The warning for rules that removed every row: how many, the rule that removed most
    (``removed``: rows by reason, errors counted together) and how to relax it."""
    by_rule: Counter[str] = Counter()
    for reason, n in removed.items():
        by_rule["error" if reason.startswith("error:") else reason] += n
    rule, most = by_rule.most_common(1)[0]
    hints = {
        TOO_SMALL: f"shorter side < min_size {rules.min_size}: lower min_size "
        "(--min-size; 0 turns the limit off)",
        TOO_LARGE: f"longer side > max_size {rules.max_size}: raise max_size (--max-size) "
        "or leave it unset",
        "error": "the images could not be read: see the `error` column of the removed "
        "rows and check the dataset folder (keep_errors, --keep-errors, keeps such rows)",
    }
    why = hints.get(rule, f"reason {rule}")
    n = sum(removed.values())
    return (
        f"the filter rules removed every row ({n:,} of {n:,}); most ({most:,}) as {rule} "
        f"({why}). The filtered table is empty."
    )
