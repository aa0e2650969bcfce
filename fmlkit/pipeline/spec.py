"""Read a pipeline file (``pipelines/NAME.yaml``) and check all of it before anything runs.

::

    artifacts: artifacts          # optional: the versioned output store (default: artifacts)
    stages:
      <id>:
        run: <stage name>         # synth, prepare, filter, split, pairs, convert, train, …
        deps: {<key>: <path or ${stages.<id>.outs.<key>}>}
        params: {<key>: <value>}  # the command's other options
        outs: {<key>: <path>}

Paths are relative to the current working directory. Problems (unknown stage names and keys,
values the command refuses, references to missing stages or outputs, outputs that overlap,
cycles) are all collected and raised as one `PipelineError`, each named by its YAML path
(``stages.train.deps.config``).

This module reads each stage on its own (`load_pipeline`, `Pipeline`, `Stage`);
`fmlkit.pipeline.graph` checks how the stages connect (references, overlaps, order, cycles).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmlkit.errors import FmlkitError, InputError, PipelineError
from fmlkit.pipeline.graph import check_places, link_stages, order_stages, resolve_references
from fmlkit.pipeline.lock import read_utf8, shown
from fmlkit.pipeline.paths import canonical_in, within
from fmlkit.pipeline.stages import STAGES, DepValue, StageAdapter, get_stage, normalize_key

SECTIONS = ("run", "deps", "params", "outs")
TOP_KEYS = ("stages", "artifacts")
ARTIFACTS = "artifacts"  # the default store folder
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*")


@dataclass(frozen=True)
class Stage:
    """One checked stage.

    Attributes:
        id: its key under ``stages``.
        run: the stage name (the command it runs).
        deps: key → path (or paths), references already replaced by the outputs' paths.
        params: key → value, keys as the stage reads them (``-`` written as ``_``).
        outs: key → path.
        upstream: ids of the stages whose outputs it reads.
    """

    id: str
    run: str
    deps: dict[str, DepValue]
    params: dict[str, Any]
    outs: dict[str, str]
    upstream: tuple[str, ...]

    @property
    def adapter(self) -> StageAdapter:
        return get_stage(self.run)


@dataclass(frozen=True)
class Pipeline:
    """A checked pipeline; ``stages`` in the order they run (dependencies first, then file
    order).

    Attributes:
        name: the file's stem (``demo`` for pipelines/demo.yaml).
        path: the pipeline file.
        stages: id → stage, in run order.
        store: this pipeline's artifact folder (``<artifacts>/<name>``).
    """

    name: str
    path: Path
    stages: dict[str, Stage]
    store: Path

    @property
    def lock_path(self) -> Path:
        """``pipelines/NAME.lock`` beside the pipeline file."""
        return self.path.with_suffix(".lock")

    def check_id(self, name: str, option: str) -> str:
        """``name`` if it is one of the stage ids.

        Raises:
            PipelineError: it is not (the message names the closest id); ``option`` says
                where the name came from (e.g. ``--until``).
        """
        if name in self.stages:
            return name
        close = difflib.get_close_matches(name, self.stages, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise PipelineError(
            f"{option} {name}: no such stage in {self.path} "
            f"(stages: {', '.join(self.stages)}){hint}"
        )

    def upstream_of(self, stage_id: str) -> set[str]:
        """Every stage ``stage_id`` depends on, directly or not (not itself)."""
        found: set[str] = set()
        todo = list(self.stages[stage_id].upstream)
        while todo:
            current = todo.pop()
            if current not in found:
                found.add(current)
                todo.extend(self.stages[current].upstream)
        return found

    def producer(self, path: str) -> str | None:
        """The id of the stage whose output holds ``path``, if any (symbolic links followed,
        as `load_pipeline` follows them)."""
        canonical = canonical_in(str(self.store.parent))
        target = canonical(path)
        for stage in self.stages.values():
            if any(within(target, canonical(out)) for out in stage.outs.values()):
                return stage.id
        return None


def resolve_pipeline_path(name: str | os.PathLike[str]) -> Path:
    """A pipeline file from a path, or from a bare name (``demo`` → ``pipelines/demo.yaml``).

    Raises:
        InputError: neither exists.
    """
    path = Path(name)
    if path.is_file():
        return path
    candidate = Path("pipelines") / f"{path}.yaml"
    if path.suffix == "" and len(path.parts) == 1 and candidate.is_file():
        return candidate
    raise InputError(
        f"pipeline {name} not found: expected a YAML file such as pipelines/demo.yaml "
        "(paths are relative to the current folder)"
    )


def load_pipeline(path: str | os.PathLike[str]) -> Pipeline:
    """Read and check a pipeline file (see the module docstring).

    Raises:
        InputError: the file does not exist.
        PipelineError: every problem found, each named by its YAML path.
    """
    from fmlkit.schema import parse_yaml

    path = resolve_pipeline_path(path)
    try:
        data = parse_yaml(read_utf8(path), where=str(path))
    except FmlkitError as e:
        raise PipelineError(str(e)) from None
    problems = Problems()
    stages: dict[str, Stage] = {}
    for stage_id, body in _top_level(data, problems).items():
        stage = _read_stage(stage_id, body, problems)
        if stage is not None:
            stages[stage_id] = stage
    artifacts = str(data.get("artifacts", ARTIFACTS)) if isinstance(data, dict) else ARTIFACTS
    stages = resolve_references(stages, problems)
    stages = order_stages(link_stages(stages, canonical_in(artifacts), problems), problems)
    check_places(stages, path, artifacts, problems)
    if problems:
        lines = "\n".join(f"  {where}: {what}" for where, what in problems)
        count = f"{len(problems)} problem{'s' * (len(problems) > 1)}"
        raise PipelineError(f"{path}: {count}, nothing was run:\n{lines}")
    return Pipeline(path.stem, path, stages, Path(data.get("artifacts", ARTIFACTS)) / path.stem)


class Problems(list[tuple[str, str]]):
    """(YAML path, message) pairs."""

    def add(self, where: str, what: str) -> None:
        self.append((where, what))


def _top_level(data: Any, problems: Problems) -> dict[str, Any]:
    if not isinstance(data, dict):
        problems.add("(top)", f"expected a mapping with `stages:`, found {shown(data)}")
        return {}
    for key in data:
        if key not in TOP_KEYS:
            problems.add(str(key), f"unknown key; expected one of {', '.join(TOP_KEYS)}")
    artifacts = data.get("artifacts", ARTIFACTS)
    if not isinstance(artifacts, str) or not artifacts:
        problems.add("artifacts", f"expected a folder path, found {shown(artifacts)}")
    stages = data.get("stages")
    if not isinstance(stages, dict) or not stages:
        problems.add("stages", f"expected a mapping of stage ids, found {shown(stages)}")
        return {}
    return stages


def _read_stage(stage_id: Any, body: Any, problems: Problems) -> Stage | None:
    where = f"stages.{stage_id}"
    if not isinstance(stage_id, str) or not _ID.fullmatch(stage_id):
        problems.add(where, "expected an id of letters, digits, '_' and '-'")
        return None
    if not isinstance(body, dict):
        problems.add(where, f"expected a mapping with {', '.join(SECTIONS)}; found {shown(body)}")
        return None
    for key in body:
        if key not in SECTIONS:
            problems.add(f"{where}.{key}", f"unknown key; expected {', '.join(SECTIONS)}")
    run = body.get("run")
    if not isinstance(run, str):
        problems.add(f"{where}.run", f"expected a stage name: {', '.join(STAGES.names())}")
        return None
    try:
        adapter = get_stage(run)
    except FmlkitError as e:
        problems.add(f"{where}.run", str(e))
        return None
    sections = {s: _mapping(body.get(s), f"{where}.{s}", problems) for s in SECTIONS[1:]}
    for key_where, what in _key_problems(adapter, sections):
        problems.add(f"{where}.{key_where}", what)
    sections = {  # keep what is valid, so that references and values are checked too
        name: {k: v for k, v in values.items() if adapter.belongs(k, name)}
        for name, values in sections.items()
    }
    deps: dict[str, DepValue] = {}
    for key, value in sections["deps"].items():
        deps[key] = _paths(value, f"{where}.deps.{key}", adapter.is_multiple(key), problems)
    outs: dict[str, str] = {}
    for key, value in sections["outs"].items():
        outs[key] = str(_paths(value, f"{where}.outs.{key}", False, problems))
    return Stage(stage_id, run, deps, sections["params"], outs, ())


def _mapping(value: Any, where: str, problems: Problems) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(where, f"expected a mapping of key: value, found {shown(value)}")
        return {}
    return {normalize_key(k): v for k, v in value.items()}


def _key_problems(
    adapter: StageAdapter, sections: Mapping[str, dict[str, Any]]
) -> Iterator[tuple[str, str]]:
    known = adapter.all_keys()
    for section, values in sections.items():
        for key in values:
            home = adapter.section(key)
            if key in adapter.fixed:
                yield f"{section}.{key}", f"set by the pipeline runner for {adapter.name}"
            elif key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                valid = ", ".join(k for k in known if adapter.belongs(k, section)) or "none"
                what = f"unknown {section[:-1]} of {adapter.name} (valid: {valid}){hint}"
                yield f"{section}.{key}", what
            elif home != section:
                yield f"{section}.{key}", f"{key} is one of {adapter.name}'s {home}: move it there"
    for section, key in adapter.required():
        if key not in sections[section]:
            yield section, f"missing {key} (required by {adapter.name})"


def _paths(value: Any, where: str, multiple: bool, problems: Problems) -> DepValue:
    if multiple and isinstance(value, list):
        if value and all(isinstance(v, str) and v for v in value):
            return tuple(value)
    elif isinstance(value, str) and value:
        return value
    kind = "a path or a list of paths" if multiple else "a path"
    problems.add(where, f"expected {kind}, found {shown(value)}")
    return ""
