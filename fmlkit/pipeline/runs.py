"""Compare runs (`fmlkit runs`): one row per stored version of each evaluate stage, with the
training settings that differ between rows and the metrics.

Everything comes from the artifact store (`fmlkit.pipeline.artifacts`); nothing is written.
For each version of a stage whose ``run`` is ``evaluate``:

- its date and deps from its provenance (the newest record);
- the train version it evaluated: each dep is followed to the version of the stage that made
  it (the version whose output at that path has the dep's recorded content version), through
  export or embed stages if need be, up to a stage whose ``run`` is ``train``;
- that train version's settings: its resolved ``config.yaml`` (the config file with the
  pipeline's overrides and every default, as `fmlkit train` writes it into its output folder),
  flattened to dotted keys (``optim.lr``), plus the stage's other params (``device``) and the
  content versions of its data deps (``deps.data.parquet``). ``output_dir`` (always the staging
  folder) is left out;
- the metrics in its ``metrics.json``: per benchmark ``accuracy``, ``auc``, ``tar@far=1e-3`` …,
  and for retrieval ``p@1`` and ``map@r``; column names carry the benchmark
  (``lfw/accuracy``) unless every row has the same single one.

A version whose record, train version, config or metrics cannot be found or read is still a
row, with what is known and a note saying what is missing.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fmlkit.columns import (
    RUN_COLUMNS,
    RUN_CURRENT,
    RUN_NOTES,
    RUN_STAGE,
    RUN_STARTED,
    RUN_TRAIN,
    RUN_VERSION,
)
from fmlkit.errors import OptionError, PipelineError
from fmlkit.pipeline.artifacts import ArtifactVersion
from fmlkit.pipeline.lineage import Tracer
from fmlkit.pipeline.settings import flatten, read_mapping, shown_value
from fmlkit.pipeline.spec import Pipeline
from fmlkit.pipeline.versions import HashCache

METRICS_FILE = "metrics.json"  # fmlkit.eval.report.METRICS_JSON
CONFIG_FILE = "config.yaml"  # written by `fmlkit train` into its output folder
MAX_METRICS_BYTES = 10 << 20
MISSING = "—"


@dataclass(frozen=True)
class RunRow:
    """One evaluate version.

    Attributes:
        stage: the evaluate stage's id.
        version: its version folder's name.
        started: when it was made (UTC, ISO 8601), empty when unknown.
        current: whether the stage's output links to it now.
        train: the train version it evaluated, None when not found.
        settings: dotted key → value, of the train version (only the shown columns' keys).
        metrics: column → value.
        notes: what could not be found or read.
    """

    stage: str
    version: str
    started: str
    current: bool
    train: str | None
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def cells(self, table: RunsTable) -> dict[str, Any]:
        """The row as ``{column: value}`` in the table's column order (None: no value)."""
        fixed = (self.stage, self.version, self.started, self.current, self.train)
        return {
            **dict(zip(RUN_COLUMNS, fixed, strict=True)),
            **{k: self.settings.get(k) for k in table.settings},
            **{k: self.metrics.get(k) for k in table.metrics},
            RUN_NOTES: "; ".join(self.notes),
        }


@dataclass(frozen=True)
class RunsTable:
    """The rows of `compare_runs` and the columns they show.

    Attributes:
        rows: in the order asked for (oldest first, or sorted).
        settings: the setting columns (those that differ between rows, or all).
        metrics: the metric columns.
        hidden: how many settings are the same in every row and not shown.
        stages: the pipeline's evaluate stages.
    """

    rows: tuple[RunRow, ...]
    settings: tuple[str, ...]
    metrics: tuple[str, ...]
    hidden: int
    stages: tuple[str, ...]

    @property
    def columns(self) -> list[str]:
        return [*RUN_COLUMNS, *self.settings, *self.metrics, RUN_NOTES]


def compare_runs(
    pipeline: Pipeline, *, sort: str | None = None, all_settings: bool = False
) -> RunsTable:
    """The table of runs of ``pipeline`` (see the module docstring).

    Args:
        pipeline: from `load_pipeline`.
        sort: a metric column (best first: descending), or a setting or fixed column
            (ascending); a metric's name alone (``accuracy``) will do when one column ends
            with it. Rows without a value go last.
        all_settings: show every setting, not only those that differ between rows.

    Raises:
        PipelineError: the pipeline has no evaluate stage.
        OptionError: ``sort`` names no column (the message lists them).
    """
    from fmlkit.pipeline.runner import HASHES

    stages = [s for s in pipeline.stages.values() if s.run == "evaluate"]
    if not stages:
        raise PipelineError(
            f"{pipeline.path} has no evaluate stage (run: evaluate): `fmlkit runs` compares "
            "the versions of an evaluate stage; add one (docs/pipelines.md)"
        )
    with HashCache(pipeline.store / HASHES, write=False) as cache:
        tracer = Tracer(pipeline, cache)
        raw = [_row(tracer, s.id, v) for s in stages for v in tracer.versions(s.id)]
    rows, metric_columns = _metric_columns(raw)
    settings = _setting_columns([r for r, _ in raw])
    shown = settings if all_settings else [k for k in settings if _differs(rows, k)]
    rows = [replace(r, settings={k: r.settings[k] for k in shown if k in r.settings}) for r in rows]
    table = RunsTable(
        tuple(rows), tuple(shown), metric_columns, len(settings) - len(shown),
        tuple(s.id for s in stages),
    )  # fmt: skip
    return table if sort is None or not rows else _sorted(table, sort)


def _row(
    tracer: Tracer, stage_id: str, version: ArtifactVersion
) -> tuple[RunRow, dict[str, dict[str, float]]]:
    """A row (metrics not yet in columns) and its metrics by benchmark."""
    notes: list[str] = []
    record = version.records[-1] if version.records else None
    metrics = _metrics(tracer.pipeline, stage_id, version, notes)
    train, settings = None, {}
    if record is None:
        notes.append(f"no readable provenance in {version.path}: its train version is unknown")
    else:
        found = tracer.train_of(record)
        if found is None:
            notes.append("the train version it evaluated was not found in the store")
        else:
            train = found[1].version
            settings = _settings(tracer.pipeline, *found, notes)
    started = record.started if record else ""
    row = RunRow(stage_id, version.version, started, version.current, train, settings, {})
    return replace(row, notes=tuple(notes)), metrics


def _metrics(
    pipeline: Pipeline, stage_id: str, version: ArtifactVersion, notes: list[str]
) -> dict[str, dict[str, float]]:
    """``{benchmark: {column name: value}}`` from the version's metrics.json."""
    outs = pipeline.stages[stage_id].outs
    files = [version.path / k / Path(p).name / METRICS_FILE for k, p in outs.items()]
    path = next((f for f in files if f.is_file()), None)
    if path is None:
        notes.append(f"no {METRICS_FILE} in {version.path}")
        return {}
    try:
        if path.stat().st_size > MAX_METRICS_BYTES:
            raise ValueError(f"larger than {MAX_METRICS_BYTES >> 20} MiB")
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"expected {{benchmark: {{metric: value}}}}, found {type(data)}")
    except (OSError, ValueError, RecursionError) as e:
        notes.append(f"{path} unreadable: {e}")
        return {}
    found: dict[str, dict[str, float]] = {}
    for bench, values in data.items():
        if not isinstance(values, dict):
            continue
        picked: dict[str, Any] = {"accuracy": values.get("accuracy"), "auc": values.get("auc")}
        tar = values.get("tar_at_far")
        if isinstance(tar, dict):
            picked.update({f"tar@far={k}": v for k, v in tar.items()})
        picked.update({"p@1": values.get("precision_at_1"), "map@r": values.get("map_at_r")})
        found[str(bench)] = {k: float(v) for k, v in picked.items() if _finite(v)}
    if not any(found.values()):
        notes.append(f"no accuracy, auc, tar_at_far, precision_at_1 or map_at_r in {path}")
    return {b: values for b, values in found.items() if values}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _settings(
    pipeline: Pipeline, stage_id: str, version: ArtifactVersion, notes: list[str]
) -> dict[str, Any]:
    """The train version's resolved config as dotted keys, its other params, its data deps."""
    settings: dict[str, Any] = {}
    outs = pipeline.stages[stage_id].outs
    configs = [version.path / k / Path(p).name / CONFIG_FILE for k, p in outs.items()]
    config = next((read_mapping(c) for c in configs if c.is_file()), None)
    if config is None:
        notes.append(f"no readable {CONFIG_FILE} in train version {version.path}")
    else:
        settings.update(flatten(config))
        settings.pop("output_dir", None)  # the staging folder, in every run
    record = version.records[-1] if version.records else None
    if record is not None:
        settings.update({k: v for k, v in record.params.items() if k != "overrides"})
        for key, dep in record.deps.items():
            if key != "config":
                settings[f"deps.{key}"] = _short(dep.get("version"))
    return settings


def _short(version: Any) -> Any:
    """A content version cut to its kind and 12 hex digits (``parquet:3fa2c1d0e9ab``)."""
    if isinstance(version, list):
        return [_short(v) for v in version]
    if isinstance(version, str) and ":" in version:
        kind, _, digest = version.partition(":")
        return f"{kind}:{digest[:12]}"
    return version


def _metric_columns(
    raw: list[tuple[RunRow, dict[str, dict[str, float]]]],
) -> tuple[list[RunRow], tuple[str, ...]]:
    """Rows with their metrics under column names, and those names in first-seen order."""
    benchmarks = {b for _, metrics in raw for b in metrics}
    single = len(benchmarks) == 1
    rows, columns = [], {}
    for row, metrics in raw:
        named = {
            (name if single else f"{bench}/{name}"): value
            for bench, values in metrics.items()
            for name, value in values.items()
        }
        columns.update(dict.fromkeys(named))
        rows.append(replace(row, metrics=named))
    return rows, tuple(columns)


def _setting_columns(rows: list[RunRow]) -> list[str]:
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row.settings))
    return list(keys)


def _differs(rows: list[RunRow], key: str) -> bool:
    """Whether the rows that hold ``key`` disagree on its value. A key that only some rows
    hold (one a newer fmlkit added, with its default) differs only where values do."""
    values = {json.dumps(r.settings[key], default=str) for r in rows if key in r.settings}
    return len(values) > 1


def _sorted(table: RunsTable, sort: str) -> RunsTable:
    column = _sort_column(table, sort)
    descending = column in table.metrics

    def key(row: RunRow) -> tuple[bool, int, Any]:
        value = row.cells(table)[column]
        if value is None or value == "":
            return (True, 0, 0)
        if _finite(value):
            return (False, 0, -value if descending else value)
        return (False, 1, shown_value(value, 200))

    return replace(table, rows=tuple(sorted(table.rows, key=key)))


def _sort_column(table: RunsTable, sort: str) -> str:
    if sort in table.columns and sort != RUN_NOTES:
        return sort
    ends = [c for c in table.metrics if c.endswith("/" + sort)]
    if len(ends) == 1:
        return ends[0]
    sortable = [*table.metrics, *table.settings, RUN_STARTED, RUN_VERSION, RUN_TRAIN]
    what = "is the name of several metric columns" if ends else "names no column of the table"
    raise OptionError(f"{{sort}} {what}; sort by one of: {', '.join(sortable)}", sort=sort)


# ---- rendering ---------------------------------------------------------------------------------


def _text_cell(column: str, value: Any, table: RunsTable) -> str:
    if value is None or value == "":
        return MISSING
    if column == RUN_CURRENT:
        return "*" if value else ""
    if column == RUN_STARTED:
        return str(value)[:19].replace("T", " ")
    if column in table.metrics:
        return f"{value:.4f}"
    return str(value) if column == RUN_NOTES else shown_value(value, 24)


def render_text(table: RunsTable) -> str:
    """An aligned table (metrics right-aligned), ``*`` before the version linked now."""
    columns = [RUN_CURRENT, *(c for c in table.columns if c != RUN_CURRENT)]
    if len(table.stages) == 1:
        columns.remove(RUN_STAGE)
    if not any(r.notes for r in table.rows):
        columns.remove(RUN_NOTES)
    header = {c: ("" if c == RUN_CURRENT else c) for c in columns}
    body = [{c: _text_cell(c, v, table) for c, v in r.cells(table).items()} for r in table.rows]
    width = {c: max(len(x[c]) for x in [header, *body]) for c in columns}

    def line(cells: dict[str, str]) -> str:
        parts = [
            cells[c].rjust(width[c]) if c in table.metrics else cells[c].ljust(width[c])
            for c in columns
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(header), *(line(b) for b in body)])


def render_csv(table: RunsTable) -> str:
    """The table as CSV: the fixed columns, settings, metrics and notes, one row per version."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow(_csv_cell(v) for v in row.cells(table).values())
    return out.getvalue()


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else shown_value(value, 1 << 20)


def render_json(table: RunsTable) -> str:
    """The rows as a JSON list: the fixed columns, then ``settings``, ``metrics`` (objects)
    and ``notes`` (a list)."""
    body = [
        {
            RUN_STAGE: r.stage, RUN_VERSION: r.version, RUN_STARTED: r.started,
            RUN_CURRENT: r.current, RUN_TRAIN: r.train, "settings": r.settings,
            "metrics": r.metrics, RUN_NOTES: list(r.notes),
        }
        for r in table.rows
    ]  # fmt: skip
    return json.dumps(body, indent=2, ensure_ascii=False, default=str)
