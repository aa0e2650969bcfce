"""Pipeline commands: fmlkit run, fmlkit status, fmlkit artifacts, fmlkit runs (see
docs/pipelines.md)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from fmlkit.cli._common import CONTEXT_SETTINGS, echo_report

if TYPE_CHECKING:
    from fmlkit.pipeline.artifacts import ArtifactVersion
    from fmlkit.pipeline.runner import StageResult

_ALL = "\0all"  # --force without a stage


def _show(result: StageResult) -> None:
    if result.action == "ran":
        where = f" → {result.artifact}" if result.artifact else ""
        echo_report(f"{result.stage}: ran in {result.seconds:.1f} s{where}")
    else:
        echo_report(f"{result.stage}: {result.action} — {result.reason}")


@click.command("run", context_settings=CONTEXT_SETTINGS)
@click.argument("pipeline", required=False, metavar="PIPELINE")
@click.option(
    "--force",
    is_flag=False,
    flag_value=_ALL,
    default=None,
    metavar="[STAGE]",
    help="Run every stage, or only STAGE, even if up to date (stages after it run if its "
    "outputs change). Put it after PIPELINE.",
)
@click.option("--until", metavar="STAGE", help="Run only STAGE and the stages it depends on.")
@click.option("--dry-run", is_flag=True, help="Say what would run and why; run nothing.")
def run(pipeline: str | None, force: str | None, until: str | None, dry_run: bool) -> None:
    """Run the stages of PIPELINE (pipelines/NAME.yaml, or just NAME) that are not up to date.

    A stage is skipped when its params, the versions of its deps and the fmlkit version equal
    those in the lock file (pipelines/NAME.lock) and its outputs still have their locked
    versions. Each stage runs into a staging folder; on success its outputs move to
    ARTIFACTS/NAME/STAGE/VERSION/, the declared paths become links to them, and the lock file
    is updated. A stage that fails or is interrupted changes neither.

    \b
    Examples:
      fmlkit run pipelines/demo.yaml
      fmlkit run demo --force train     # re-run train (and what its new outputs change)
      fmlkit run demo --until split --dry-run
    """
    from fmlkit.pipeline.runner import run_pipeline
    from fmlkit.pipeline.spec import load_pipeline

    if pipeline is None and force not in (None, _ALL) and str(force).endswith((".yaml", ".yml")):
        pipeline, force = force, _ALL  # `fmlkit run --force pipelines/x.yaml`
    if pipeline is None:
        raise click.UsageError("Missing argument 'PIPELINE'.")
    loaded = load_pipeline(pipeline)
    report = run_pipeline(
        loaded,
        force=True if force == _ALL else (force or False),
        until=until,
        dry_run=dry_run,
        on_stage=_show,
    )
    echo_report(report.summary())


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("pipeline")
@click.option("--json", "as_json", is_flag=True, help='Print {stage: {"state": …, "reason": …}}.')
def status(pipeline: str, as_json: bool) -> None:
    """Show whether each stage of PIPELINE is up-to-date, changed (which param, dep or output)
    or missing (an output is gone, or it never ran). Runs nothing."""
    from fmlkit.pipeline.runner import pipeline_status
    from fmlkit.pipeline.spec import load_pipeline

    found = pipeline_status(load_pipeline(pipeline))
    if as_json:
        body = {k: {"state": s.state, "reason": s.reason} for k, s in found.items()}
        click.echo(json.dumps(body, indent=2, ensure_ascii=False))
        return
    width = max(len(k) for k in found)
    for stage_id, s in found.items():
        click.echo(f"{stage_id:<{width}}  {s.state:<10}  {s.reason}")


def _describe(version: ArtifactVersion) -> list[str]:
    mark = "*" if version.current else " "
    if not version.records:
        return [f"  {mark} {version.version}  (no provenance record)"]
    lines = []
    for i, record in enumerate(version.records):
        params = ", ".join(f"{k}={_short(v)}" for k, v in record.params.items()) or "—"
        deps = ", ".join(f"{k}={_short(d['version'])}" for k, d in record.deps.items()) or "—"
        head = f"  {mark} {version.version}" if i == 0 else " " * (4 + len(version.version))
        lines.append(
            f"{head}  {record.started}  {record.duration_s:g} s  fmlkit {record.fmlkit_version}"
        )
        lines.append(f"{' ' * (4 + len(version.version))}  params: {params}")
        lines.append(f"{' ' * (4 + len(version.version))}  deps: {deps}")
    return lines


def _short(value: Any) -> str:
    if isinstance(value, str) and ":" in value and len(value) > 40:
        kind, _, digest = value.partition(":")
        return f"{kind}:{digest[:12]}"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("pipeline")
@click.option(
    "--restore",
    nargs=2,
    metavar="STAGE VERSION",
    help="Point STAGE's outputs at VERSION (a unique prefix will do) and make its lock entry "
    "that version's record.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
def artifacts(pipeline: str, restore: tuple[str, str] | None, as_json: bool) -> None:
    """List every stored version of each stage's outputs, with the params and input versions
    that made it (* marks the version the outputs link to now), or restore one."""
    from fmlkit.pipeline.artifacts import list_artifacts
    from fmlkit.pipeline.artifacts import restore as restore_version
    from fmlkit.pipeline.spec import load_pipeline

    loaded = load_pipeline(pipeline)
    if restore:
        chosen = restore_version(loaded, *restore)
        echo_report(
            f"{chosen.stage}: outputs now link to {chosen.path}; lock entry updated "
            f"(`fmlkit status {pipeline}` compares the pipeline file with it)"
        )
        return
    found = list_artifacts(loaded)
    if as_json:
        body = {
            stage: [
                {"version": v.version, "path": str(v.path), "current": v.current,
                 "records": [r.to_dict() for r in v.records]}
                for v in versions
            ]
            for stage, versions in found.items()
        }  # fmt: skip
        click.echo(json.dumps(body, indent=2, ensure_ascii=False))
        return
    for stage_id, versions in found.items():
        outs = ", ".join(f"{k} → {p}" for k, p in loaded.stages[stage_id].outs.items())
        click.echo(f"{stage_id} ({outs}): {len(versions)} version(s) in {loaded.store / stage_id}")
        for version in versions:
            for line in _describe(version):
                click.echo(line)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("pipeline")
@click.option(
    "--sort",
    metavar="COLUMN",
    help="Order by a metric column, best first (accuracy, auc, p@1, map@r, tar@far=1e-3, or "
    "BENCHMARK/METRIC), or by a setting (ascending).",
)
@click.option("--all", "all_settings", is_flag=True, help="Show every setting, not only those "
              "that differ between rows.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the table as CSV.")
def runs(pipeline: str, sort: str | None, all_settings: bool, as_json: bool, as_csv: bool) -> None:
    """Compare runs: one row per evaluate version, with the train version it evaluated, the
    training settings that differ between rows (optim.lr, …) and the metrics (accuracy, AUC,
    TAR@FAR, P@1, MAP@R). Reads the artifact store only; * marks the version linked now.

    \b
    Examples:
      fmlkit runs demo
      fmlkit runs demo --sort accuracy --csv > runs.csv
    """
    from fmlkit.pipeline.runs import compare_runs, render_csv, render_json, render_text
    from fmlkit.pipeline.spec import load_pipeline

    if as_json and as_csv:
        raise click.UsageError("--json and --csv exclude each other")
    loaded = load_pipeline(pipeline)
    table = compare_runs(loaded, sort=sort, all_settings=all_settings)
    if as_json or as_csv:
        click.echo(render_json(table) if as_json else render_csv(table), nl=as_json)
    elif not table.rows:
        places = ", ".join(str(loaded.store / s) for s in table.stages)
        click.echo(f"{loaded.name}: no runs yet (no version in {places}); `fmlkit run "
                   f"{pipeline}` makes one")  # fmt: skip
    else:
        click.echo(render_text(table))
        if table.hidden:
            click.echo(
                f"({table.hidden} settings the same in every row not shown: --all shows them)"
            )
