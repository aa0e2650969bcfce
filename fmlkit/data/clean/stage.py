"""`fmlkit clean`: curation of a labelled dataset with a face model's embeddings.

Reads `fmlkit embed`'s Parquet, decides every image and class (`fmlkit.data.clean.decide`)
and writes the decisions folder atomically (a temporary name, renamed at the end): images.csv,
classes.csv, merges.csv, summary.json; with ``apply``, dataset_info.csv (the table with the
decisions applied); with ``report``, the HTML report (`fmlkit.data.clean.report`), committed
together with the folder. Nothing is deleted on disk. docs/clean.md has the rules.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmlkit.columns import DECISION, FILE_NAME, LABEL, NEW_LABEL
from fmlkit.data.clean.decide import Decisions, decide
from fmlkit.data.clean.options import CleanOptions
from fmlkit.data.formats.embeddings import read_embeddings
from fmlkit.data.formats.table import check_unique_names, read_table
from fmlkit.errors import InputError
from fmlkit.io import atomic_path, check_apart, check_output, committed_together

FLOAT_FORMAT = "%.6f"
REMOVED = ("drop", "duplicate")
DECISION_FILES = ("images.csv", "classes.csv", "merges.csv", "summary.json", "dataset_info.csv")


@dataclass(frozen=True)
class CleanReport:
    """What one run of `clean` decided."""

    output: Path
    images: int
    classes: int
    decisions: dict[str, int]  # images per decision
    class_decisions: dict[str, int]  # classes per decision
    merge_pairs: int
    merge_groups: int
    thresholds: dict[str, float]
    auto: bool
    picked: tuple[str, ...] = ()  # the thresholds --auto picked
    warnings: tuple[str, ...] = ()
    applied: Path | None = None  # DECISIONS/dataset_info.csv with ``apply``
    applied_rows: int = 0  # rows written there
    untouched_rows: int = 0  # rows of the table that have no embedding (kept as they were)
    truth: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """A few lines for the terminal."""
        counts = ", ".join(f"{v:,} {k}" for k, v in self.decisions.items() if v)
        kinds = ", ".join(f"{v:,} {k}" for k, v in self.class_decisions.items() if v)
        how = "given"
        if self.auto:
            how = f"--auto picked {', '.join(self.picked) or 'none'}; the others given"
        lines = [
            f"{self.images:,} images: {counts}",
            f"{self.classes:,} classes: {kinds}; {self.merge_pairs:,} merge pairs in "
            f"{self.merge_groups:,} groups",
            "thresholds " + how + ": "
            + ", ".join(f"{k} {v:.3f}" for k, v in self.thresholds.items()),
        ]  # fmt: skip
        if self.applied is not None:
            lines.append(
                f"applied: {self.applied} ({self.applied_rows:,} rows; "
                f"{self.untouched_rows:,} without an embedding kept as they were)"
            )
        if self.truth:
            t = self.truth
            lines += [
                f"against the truth: {t['mislabels_planted']} planted mislabels: drop + relabel "
                f"precision {t['mislabel_precision']}, recall {t['mislabel_recall']} (with "
                f"review: {t['flagged_precision']}, {t['flagged_recall']})",
                f"  split identities {t['split_identities_planted']}: found "
                f"{t['split_identities_found']}, false merge groups {t['merge_groups_false']}; "
                f"mixed classes {t['mixed_classes_planted']}: found {t['mixed_classes_found']}",
            ]
        lines += [f"warning: {w}" for w in self.warnings]
        lines.append(f"decisions in {self.output}")
        return "\n".join(lines)


def clean(
    embeddings: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    report: str | os.PathLike[str] | None = None,
    apply: str | os.PathLike[str] | None = None,
    truth: str | os.PathLike[str] | None = None,
    options: CleanOptions | None = None,
    overwrite: bool = False,
) -> CleanReport:
    """Decide which images to keep, review, drop, relabel or remove as near-duplicates, and
    which classes to merge or split, from the embeddings ``embeddings`` (`fmlkit embed`'s
    Parquet, with labels); write the decisions folder ``output``.

    Args:
        embeddings: the embeddings Parquet (file_name, label, embedding).
        output: the decisions folder (images.csv, classes.csv, merges.csv, summary.json).
        root: the dataset folder the file names are relative to (for ``report``).
        report: write the HTML report to this folder.
        apply: a dataset_info table (CSV or Parquet): write it with the decisions applied as
            ``output``/dataset_info.csv.
        truth: `fmlkit synth`'s truth CSV: score the decisions (summary.json's ``truth``).
        options: thresholds and checks (`CleanOptions`; the defaults when None).
        overwrite: replace an existing ``output`` (and ``report``).

    Raises:
        InputError: unreadable or unusable embeddings (no rows, mixed dimensions, repeated or
            missing file names, empty labels), an output that exists without ``overwrite``,
            or an output that is an input.
        SchemaError: a missing column (``label`` included) in the embeddings, the table or
            the truth.
        OutputError: the disk is full (nothing is left under ``output``).
    """
    options = options or CleanOptions()
    out = Path(output)
    _check_paths(embeddings, out, root, report, apply, truth, overwrite)
    table = read_embeddings(embeddings, lenient=True, require_label=True)
    assert table.labels is not None and table.unusable is not None  # require_label, lenient
    _check_labels(table.path, table.file_names, table.labels)
    if table.unusable.all():
        raise InputError(
            f"{table.path}: no embedding can be used (every one holds NaN or infinite values, "
            "or is all zeros); the model or the embedding step failed: embed the images again"
        )
    info = _read_apply(apply) if apply is not None else None
    truth_table = None
    if truth is not None:
        from fmlkit.data.clean.truth import read_truth

        truth_table = read_truth(truth)
    found = decide(table.file_names, table.labels, table.vectors, table.unusable, options)
    if truth_table is not None:
        from fmlkit.data.clean.truth import score

        found.summary["truth"] = score(truth_table, found.images, found.classes, found.centroids)
    applied = _applied(info, found.images) if info is not None else None
    if applied is not None:
        found.summary["applied"] = {"rows": len(applied[0]), "untouched": applied[1]}
    _write(out, found, applied, report=report, root=root)
    return CleanReport(
        output=out,
        images=len(found.images),
        classes=len(found.classes),
        decisions=found.summary["images"],
        class_decisions=found.summary["classes"],
        merge_pairs=found.summary["merge_pairs"],
        merge_groups=found.summary["merge_groups"],
        thresholds=found.summary["thresholds"],
        auto=found.options.auto,
        picked=tuple(found.summary.get("auto_picked", ())),
        warnings=tuple(found.summary.get("warnings", ())),
        applied=None if applied is None else out / "dataset_info.csv",
        applied_rows=0 if applied is None else len(applied[0]),
        untouched_rows=0 if applied is None else applied[1],
        truth={k: v for k, v in found.summary.get("truth", {}).items() if "curve" not in k},
    )


def _check_paths(
    embeddings: str | os.PathLike[str],
    out: Path,
    root: str | os.PathLike[str] | None,
    report: str | os.PathLike[str] | None,
    apply: str | os.PathLike[str] | None,
    truth: str | os.PathLike[str] | None,
    overwrite: bool,
) -> None:
    """The outputs' rules, before any work (`fmlkit.io.check_output`)."""
    check_output(out, overwrite=overwrite, what="decisions folder")
    _check_replaceable(out)
    if report is not None:
        from fmlkit.data.clean.report import check_report_dir

        check_output(report, overwrite=overwrite, what="report folder")
        check_report_dir(Path(report), root=None if root is None else Path(root), output=out)
    fix = "give the decisions folder a new path"
    for what, path in (("embeddings", embeddings), ("table to apply", apply), ("truth", truth)):
        if path is not None:
            check_apart({"decisions folder": out, what: path}, fix=fix)
            if out.resolve() in Path(path).resolve().parents:
                raise InputError(
                    f"the {what} {path} lies in the decisions folder {out}, which would be "
                    f"replaced; {fix}"
                )


def _check_replaceable(out: Path) -> None:
    """An existing ``out`` is replaced only when it is an earlier decisions folder."""
    if not os.path.lexists(out):
        return
    if out.is_symlink() or not out.is_dir():
        raise InputError(f"the decisions folder {out} is a file or a link, not an earlier "
                         "decisions folder; choose a new path")  # fmt: skip
    foreign = sorted(p.name for p in out.iterdir() if p.name not in DECISION_FILES)
    if foreign:
        shown = ", ".join(foreign[:3]) + (" …" if len(foreign) > 3 else "")
        raise InputError(
            f"the decisions folder {out} holds files clean does not write ({shown}); "
            "--overwrite replaces only an earlier decisions folder: choose a new path"
        )


def _check_labels(source: Path, names: list[str], labels: np.ndarray) -> None:
    empty = [names[i] for i, v in enumerate(labels.tolist()) if v is None or v == ""]
    if empty:
        shown = ", ".join(empty[:3]) + (f", … {len(empty) - 3:,} more" if len(empty) > 3 else "")
        raise InputError(
            f"{source}: {len(empty):,} rows have no label ({shown}); clean compares each "
            "image with its class: embed a table whose rows all have a label"
        )


def _read_apply(path: str | os.PathLike[str]) -> pd.DataFrame:
    df = read_table(path, required=[FILE_NAME, LABEL], what="table to apply")
    check_unique_names(df, path)
    return df


def _applied(info: pd.DataFrame, images: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The table with the decisions applied: drops and duplicates left out, labels replaced
    by ``new_label``; rows without an embedding kept as they were (and counted)."""
    decided = images.set_index(FILE_NAME)
    decision = info[FILE_NAME].map(decided[DECISION])
    new_label = info[FILE_NAME].map(decided[NEW_LABEL])
    known = decision.notna()
    out = info.copy()
    out.loc[known, LABEL] = new_label[known].astype(str)
    return out[~decision.isin(REMOVED)], int((~known).sum())


def _write(
    out: Path,
    found: Decisions,
    applied: tuple[pd.DataFrame, int] | None,
    *,
    report: str | os.PathLike[str] | None,
    root: str | os.PathLike[str] | None,
) -> None:
    outputs = [out] + ([Path(report)] if report is not None else [])
    with committed_together(*outputs):
        with atomic_path(out) as tmp:
            tmp.mkdir()
            for name, frame in (
                ("images.csv", found.images),
                ("classes.csv", found.classes),
                ("merges.csv", found.merges),
            ):
                frame.to_csv(
                    tmp / name, index=False, lineterminator="\n", float_format=FLOAT_FORMAT
                )
            if applied is not None:
                applied[0].to_csv(tmp / "dataset_info.csv", index=False, lineterminator="\n")
            (tmp / "summary.json").write_text(
                json.dumps(_jsonable(found.summary), indent=2, allow_nan=False) + "\n"
            )
        if report is not None:
            from fmlkit.data.clean.report import write_clean_report

            write_clean_report(
                found.images,
                found.classes,
                found.merges,
                found.summary,
                root=None if root is None else Path(root),
                out_dir=Path(report),
            )


def _jsonable(value: Any) -> Any:
    """NaN → None, numpy scalars → Python, recursively."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
