"""Run a pipeline: stages in dependency order, each skipped when nothing it depends on changed.

A stage is skipped when its lock entry has the same stage name, params, fmlkit version and dep
paths and versions as now, and its outputs still have their locked versions. Otherwise it runs:
into ``<store>/<stage>/.staging``, then its outputs are versioned, moved to
``<store>/<stage>/<version>/``, linked from their declared paths, and its lock entry is written.
A downstream stage runs when an upstream stage ran in the same run (the issue's rule: a re-run
stage re-runs what depends on it, even when its outputs came out the same), or when a dep's
version changed for any other reason (a file edited outside the pipeline).
`fmlkit.pipeline.assess` says where each stage stands; this module plans the run, runs the
stages (staging, versioning, linking, the lock) and holds the fault hook and signal handling.
A stage runs in this process through its command, except a train stage that asks for several
processes (``nproc_per_node``, ``nnodes``): torchrun runs it in child processes
(`fmlkit.pipeline.launch`), with the same staging, versioning and lock.

A stage that fails or is interrupted (Ctrl-C, SIGTERM) leaves its lock entry and its declared
outputs as they were; its staging folder is deleted (a SIGKILL leaves it for the next run to
delete). A run killed at any instant leaves a state that `pipeline_status` describes and the
next run repairs: the lock entry is written last, so a stage killed before it is not up to
date, and its version folder, if complete, is reused.

Test hook: ``FMLKIT_FAULT_RUN=<point>@<stage id>`` makes the runner SIGKILL its own process at
that point of running that stage (``<point>@<stage id>:SIGTERM`` sends that signal instead),
to test what a kill leaves: ``before-stage`` (nothing done for it yet), ``staged`` (its empty
staging folder made), ``stage-done`` (the command wrote its outputs into staging),
``committed`` (staging moved to its version folder), ``recorded`` (the version's provenance
written), ``linked`` (the declared outputs link to it), ``locked`` (its lock entry written:
the stage is done). Unset, it does nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Literal

import click

from fmlkit import __version__
from fmlkit.errors import FmlkitError, OptionError, PipelineError
from fmlkit.pipeline.artifacts import (
    STAGING,
    begin_staging,
    commit_staging,
    exclusive,
    foreign,
    link_outputs,
    record_provenance,
    remove_tree,
)
from fmlkit.pipeline.assess import State, Versions, as_tuple, assess, plain
from fmlkit.pipeline.launch import run_torchrun
from fmlkit.pipeline.lock import LockEntry, read_lock, write_pipeline_lock
from fmlkit.pipeline.settings import keep_copy
from fmlkit.pipeline.spec import Pipeline, Stage
from fmlkit.pipeline.versions import HashCache, version_of

Action = Literal["running", "ran", "skipped", "would run", "not needed"]
HASHES = ".hashes.sqlite"
FAULT_ENV = "FMLKIT_FAULT_RUN"
FAULT_POINTS = (
    "before-stage", "staged", "stage-done", "committed", "recorded", "linked", "locked"
)  # fmt: skip


@dataclass(frozen=True)
class StageStatus:
    """Where a stage stands against its lock entry: ``missing`` (an output is gone or it never
    ran), ``changed`` (``reason`` says which param, dep or output) or ``up-to-date``."""

    state: State
    reason: str


@dataclass(frozen=True)
class StageResult:
    """What `run_pipeline` did with one stage, and why."""

    stage: str
    action: Action
    reason: str
    seconds: float = 0.0
    artifact: Path | None = None


@dataclass(frozen=True)
class RunReport:
    """The stages of one `run_pipeline` call, in run order."""

    pipeline: Pipeline
    results: tuple[StageResult, ...]
    seconds: float
    hashed_bytes: int = 0
    dry_run: bool = False

    def count(self, action: Action) -> int:
        return sum(r.action == action for r in self.results)

    def summary(self) -> str:
        """One line: counts per action, the time and the lock file."""
        actions: tuple[Action, ...] = ("ran", "would run", "skipped", "not needed")
        counts = ", ".join(f"{self.count(a)} {a}" for a in actions if self.count(a))
        lock = "unchanged" if self.dry_run or not self.count("ran") else "updated"
        return (
            f"{self.pipeline.name}: {counts or 'no stages'} in {self.seconds:.1f} s; "
            f"lock {self.pipeline.lock_path} {lock}"
        )


def pipeline_status(pipeline: Pipeline) -> dict[str, StageStatus]:
    """Each stage's state against the lock file, in run order; a stage after one that is not
    up to date is ``changed`` (it waits for that one), unless an output of its own is missing.
    Nothing is run or written."""
    lock = read_lock(pipeline.lock_path)
    found: dict[str, StageStatus] = {}
    pending: dict[str, str] = {}
    with HashCache(pipeline.store / HASHES, write=False) as cache:
        versions = Versions(cache)
        for stage in pipeline.stages.values():
            state, reasons = assess(pipeline, stage, lock.get(stage.id), versions, pending)
            found[stage.id] = StageStatus(state, "; ".join(reasons) or "unchanged")
            if state != "up-to-date":
                pending[stage.id] = "is " + state
    return found


def run_pipeline(
    pipeline: Pipeline,
    *,
    force: bool | str = False,
    until: str | None = None,
    dry_run: bool = False,
    on_stage: Callable[[StageResult], None] | None = None,
    quiet: bool = False,
) -> RunReport:
    """Run the stages that are not up to date, in order (see the module docstring).

    Args:
        pipeline: from `load_pipeline`.
        force: True runs every stage; a stage id runs that stage even if it is up to date
            (and then the stages downstream of it).
        until: run only this stage and the stages it depends on.
        dry_run: decide and report, but run and write nothing.
        on_stage: called with a ``running`` result before each stage runs and with the final
            result of each stage.
        quiet: silence the stages' own summaries (when not called from the fmlkit CLI).

    Raises:
        PipelineError: a stage id that does not exist, deps that are missing, outputs in the
            way, or a stage that failed (after the stages before it were kept).
    """
    start = time.perf_counter()
    forced: set[str] = set()
    if force:
        forced = set(pipeline.stages) if force is True else {pipeline.check_id(force, "--force")}
    selected = set(pipeline.stages)
    if until is not None:
        selected = {pipeline.check_id(until, "--until"), *pipeline.upstream_of(until)}
    _preflight(pipeline, selected)
    run = _Run(pipeline, read_lock(pipeline.lock_path), quiet, on_stage or (lambda r: None))
    results: list[StageResult] = []
    with contextlib.ExitStack() as stack:
        if not dry_run:
            stack.enter_context(exclusive(pipeline.store))
            for stage_id in pipeline.stages:  # what a killed run left behind
                remove_tree(pipeline.store / stage_id / STAGING)
        stack.enter_context(_sigterm_as_interrupt())
        cache = stack.enter_context(HashCache(pipeline.store / HASHES, write=not dry_run))
        versions = Versions(cache)
        pending: dict[str, str] = {}  # stages that ran (or would run, in a dry run)
        for stage in pipeline.stages.values():
            if stage.id not in selected:
                result = StageResult(stage.id, "not needed", f"not upstream of --until {until}")
            else:
                entry = run.lock.get(stage.id)
                state, reasons = assess(pipeline, stage, entry, versions, pending)
                if stage.id in forced:
                    state, reasons = "changed", ["forced", *reasons]
                result = run.decide(stage, state, "; ".join(reasons), versions, dry_run)
                if result.action in ("ran", "would run"):
                    pending[stage.id] = result.action
            results.append(result)
            run.notify(result)
        hashed = cache.hashed_bytes
    return RunReport(pipeline, tuple(results), time.perf_counter() - start, hashed, dry_run)


def _preflight(pipeline: Pipeline, selected: set[str]) -> None:
    problems = []
    for stage in pipeline.stages.values():
        if stage.id not in selected:
            continue
        for key, value in stage.deps.items():
            for path in as_tuple(value):
                if pipeline.producer(path) is None and not Path(path).exists():
                    problems.append(f"stages.{stage.id}.deps.{key}: {path} does not exist")
        for key, path in stage.outs.items():
            found = foreign(path, pipeline.store)
            if found is not None:
                problems.append(
                    f"stages.{stage.id}.outs.{key}: {path} exists and is {found}, not a link "
                    f"into {pipeline.store} (made outside the pipeline?): move it away or "
                    "delete it; the runner never replaces what it did not put there"
                )
    if problems:
        raise PipelineError(f"{pipeline.path}: nothing was run:\n  " + "\n  ".join(problems))


def _fault_point(stage_id: str) -> tuple[str, signal.Signals] | None:
    """The point at which the test hook ``FMLKIT_FAULT_RUN`` signals the run of ``stage_id``,
    and the signal (SIGKILL, or the one named after a colon: ``stage-done@split:SIGTERM``)."""
    value = os.environ.get(FAULT_ENV)
    if not value:
        return None
    point, _, at = value.partition("@")
    at, _, name = at.partition(":")
    if point not in FAULT_POINTS or not at or name not in ("", *signal.Signals.__members__):
        raise ValueError(
            f"{FAULT_ENV}={value!r}: expected <point>@<stage id>[:<signal>] with <point> one "
            f"of {', '.join(FAULT_POINTS)}"
        )
    return (point, signal.Signals[name or "SIGKILL"]) if at == stage_id else None


def _reached(point: str, fault: tuple[str, signal.Signals] | None) -> None:
    if fault is not None and fault[0] == point:
        os.kill(os.getpid(), fault[1])


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, so that a stopped stage cleans up like on Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class _Run:
    pipeline: Pipeline
    lock: dict[str, LockEntry]
    quiet: bool
    notify: Callable[[StageResult], None]
    _parent: click.Context | None = field(default=None, init=False)

    def decide(
        self, stage: Stage, state: State, reason: str, versions: Versions, dry_run: bool
    ) -> StageResult:
        """Skip the stage, say it would run, or run it."""
        if state == "up-to-date":
            since = self.lock[stage.id].started
            return StageResult(stage.id, "skipped", f"unchanged since {since}")
        if dry_run:
            return StageResult(stage.id, "would run", reason)
        self.notify(StageResult(stage.id, "running", reason))
        return self.stage(stage, versions, reason)

    def parent(self) -> click.Context:
        """The click context the stage commands run under: the CLI's own when there is one
        (so --quiet reaches them), else a root that carries ``quiet``."""
        current = click.get_current_context(silent=True)
        if current is not None:
            return current
        if self._parent is None:
            self._parent = click.Context(click.Command("fmlkit"))
            self._parent.params["quiet"] = self.quiet
        return self._parent

    def stage(self, stage: Stage, versions: Versions, reason: str) -> StageResult:
        fault = _fault_point(stage.id)
        _reached("before-stage", fault)
        stage_dir = self.pipeline.store / stage.id
        started = datetime.now(timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"
        t0 = time.perf_counter()
        deps = {k: {"path": plain(v), "version": versions.of(v)} for k, v in stage.deps.items()}
        for key, value in stage.deps.items():  # a config file's content, for `fmlkit status`
            if isinstance(value, str):
                keep_copy(self.pipeline.store, value, deps[key]["version"])
        versions.cache.commit()  # hold no lock on the cache while the stage runs
        try:
            outputs = begin_staging(stage_dir, stage.outs)
            _reached("staged", fault)
            self._invoke(stage, outputs)
            _reached("stage-done", fault)
            out_versions = {k: version_of(p, versions.cache) for k, p in outputs.items()}
            lacking = [k for k, v in out_versions.items() if v is None]
            if lacking:
                raise PipelineError(
                    f"stage {stage.id} ({stage.run}) wrote no {', '.join(lacking)}: with the "
                    "params given the command does not write that output; remove it from outs"
                )
            made = {k: v for k, v in out_versions.items() if v is not None}
            version_dir = commit_staging(stage_dir, outputs, made, versions.cache)
        except BaseException:
            remove_tree(stage_dir / STAGING)
            raise
        _reached("committed", fault)
        versions.cache.commit()
        versions.forget(stage_dir)
        outs = {k: {"path": p, "version": made[k]} for k, p in stage.outs.items()}
        duration = round(time.perf_counter() - t0, 2)
        entry = LockEntry(stage.run, dict(stage.params), deps, outs, __version__, started, duration)
        record_provenance(version_dir, entry)
        _reached("recorded", fault)
        link_outputs(version_dir, stage.outs)
        _reached("linked", fault)
        self.lock[stage.id] = entry
        write_pipeline_lock(self.pipeline, self.lock)
        _reached("locked", fault)
        return StageResult(stage.id, "ran", reason, duration, version_dir)

    def _invoke(self, stage: Stage, outputs: Mapping[str, Path]) -> None:
        where = f"stage {stage.id} ({stage.run})"
        launch = stage.adapter.launch(stage.params)
        try:
            if launch is None:
                stage.adapter.invoke(stage.deps, stage.params, outputs, parent=self.parent())
            else:  # torchrun, in child processes: fmlkit.pipeline.launch
                args = stage.adapter.command_line(stage.deps, stage.params, outputs)
                root = self.parent().find_root().params
                verbosity = ["-q"] if root.get("quiet") else ["-v"] * int(root.get("verbose") or 0)
                run_torchrun(launch, [*verbosity, *args], stage=stage.id)
        except click.ClickException as e:
            raise PipelineError(f"{where}: {e.format_message()}") from e
        except OptionError as e:
            raise PipelineError(f"{where}: {stage.adapter.option_message(e)}") from e
        except FmlkitError as e:
            raise PipelineError(f"{where} failed: {e}") from e
        except OSError as e:
            place = f": {e.filename}" if e.filename else ""
            raise PipelineError(f"{where} failed: {e.strerror or e}{place}") from e
