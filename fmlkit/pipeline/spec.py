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
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmlkit.errors import FmlkitError, InputError, PipelineError
from fmlkit.pipeline.lock import read_utf8, shown
from fmlkit.pipeline.paths import absolute, canonical, canonical_in, within
from fmlkit.pipeline.stages import STAGES, DepValue, StageAdapter, get_stage, normalize_key

SECTIONS = ("run", "deps", "params", "outs")
TOP_KEYS = ("stages", "artifacts")
ARTIFACTS = "artifacts"  # the default store folder
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*")
_REF = re.compile(r"\$\{([^}]*)\}")
_REF_BODY = re.compile(r"\s*stages\.([^.\s]+)\.outs\.([^\s]+)\s*")


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
    problems = _Problems()
    stages: dict[str, Stage] = {}
    for stage_id, body in _top_level(data, problems).items():
        stage = _read_stage(stage_id, body, problems)
        if stage is not None:
            stages[stage_id] = stage
    artifacts = str(data.get("artifacts", ARTIFACTS)) if isinstance(data, dict) else ARTIFACTS
    stages = _resolve_references(stages, problems)
    stages = _order(_link(stages, canonical_in(artifacts), problems), problems)
    _check_places(stages, path, artifacts, problems)
    if problems:
        lines = "\n".join(f"  {where}: {what}" for where, what in problems)
        count = f"{len(problems)} problem{'s' * (len(problems) > 1)}"
        raise PipelineError(f"{path}: {count}, nothing was run:\n{lines}")
    return Pipeline(path.stem, path, stages, Path(data.get("artifacts", ARTIFACTS)) / path.stem)


class _Problems(list[tuple[str, str]]):
    """(YAML path, message) pairs."""

    def add(self, where: str, what: str) -> None:
        self.append((where, what))


def _top_level(data: Any, problems: _Problems) -> dict[str, Any]:
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


def _read_stage(stage_id: Any, body: Any, problems: _Problems) -> Stage | None:
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


def _mapping(value: Any, where: str, problems: _Problems) -> dict[str, Any]:
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
                valid = ", ".join(k for k in known if adapter.section(k) == section) or "none"
                what = f"unknown {section[:-1]} of {adapter.name} (valid: {valid}){hint}"
                yield f"{section}.{key}", what
            elif home != section:
                yield f"{section}.{key}", f"{key} is one of {adapter.name}'s {home}: move it there"
    for section, key in adapter.required():
        if key not in sections[section]:
            yield section, f"missing {key} (required by {adapter.name})"


def _paths(value: Any, where: str, multiple: bool, problems: _Problems) -> DepValue:
    if multiple and isinstance(value, list):
        if value and all(isinstance(v, str) and v for v in value):
            return tuple(value)
    elif isinstance(value, str) and value:
        return value
    kind = "a path or a list of paths" if multiple else "a path"
    problems.add(where, f"expected {kind}, found {shown(value)}")
    return ""


def _substitute(text: str, where: str, stages: Mapping[str, Stage], problems: _Problems) -> str:
    """``text`` with each ``${stages.ID.outs.KEY}`` replaced by that output's path."""

    def one(match: re.Match[str]) -> str:
        ref = match.group(0)
        body = _REF_BODY.fullmatch(match.group(1))
        if body is None:
            problems.add(where, f"{ref}: expected ${{stages.ID.outs.KEY}}")
            return ref
        target, key = body.groups()
        if target not in stages:
            close = difflib.get_close_matches(target, stages, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.add(where, f"{ref}: no stage {target!r}{hint}")
        elif key not in stages[target].outs:
            outs = ", ".join(stages[target].outs) or "none"
            problems.add(where, f"{ref}: stage {target} has no output {key!r} (outs: {outs})")
        else:
            return stages[target].outs[key]
        return ref

    return _REF.sub(one, text)


def _resolve_references(stages: dict[str, Stage], problems: _Problems) -> dict[str, Stage]:
    resolved = {}
    for stage in stages.values():
        deps: dict[str, DepValue] = {}
        for key, value in stage.deps.items():
            where = f"stages.{stage.id}.deps.{key}"
            if isinstance(value, tuple):
                deps[key] = tuple(_substitute(v, where, stages, problems) for v in value)
            else:
                deps[key] = _substitute(value, where, stages, problems)
        for key, value in stage.outs.items():
            if "${" in value:
                problems.add(f"stages.{stage.id}.outs.{key}", "expected a path, not a reference")
        resolved[stage.id] = dataclasses.replace(stage, deps=deps)
    return resolved


def _dep_paths(stage: Stage) -> Iterator[tuple[str, str]]:
    for key, value in stage.deps.items():
        for path in (value,) if isinstance(value, str) else value:
            yield key, path


def _link(
    stages: dict[str, Stage], canonical: Callable[[str], str], problems: _Problems
) -> dict[str, Stage]:
    """Find each stage's upstream stages by path (a dep at or inside another stage's output);
    refuse outputs that overlap, that their own stage reads, or that lie inside a folder a
    stage reads that no stage makes (a source tree); check the params' values. Paths are
    compared by their ``canonical`` form (symbolic links followed)."""
    outs = [(s.id, k, canonical(p)) for s in stages.values() for k, p in s.outs.items()]
    for i, (sid, key, path) in enumerate(outs):
        for other, other_key, other_path in outs[:i]:
            if within(path, other_path) or within(other_path, path):
                what = f"overlaps stages.{other}.outs.{other_key} ({other_path})"
                problems.add(f"stages.{sid}.outs.{key}", f"{what}; give each output its own path")
    linked = {}
    for stage in stages.values():
        upstream: list[str] = []
        for key, dep in _dep_paths(stage):
            made_by = [(sid, k) for sid, k, path in outs if within(canonical(dep), path)]
            for sid, out_key in made_by:
                if sid == stage.id:
                    problems.add(f"stages.{stage.id}.deps.{key}", f"is its own outs.{out_key}")
                elif sid not in upstream:
                    upstream.append(sid)
            if not made_by:  # a source: no output may be written into it
                for sid, out_key, path in outs:
                    if within(path, canonical(dep)):
                        problems.add(
                            f"stages.{sid}.outs.{out_key}",
                            f"lies inside {dep}, which stages.{stage.id}.deps.{key} reads: "
                            "writing there changes that stage's input; put it elsewhere",
                        )
        linked[stage.id] = dataclasses.replace(stage, upstream=tuple(upstream))
        for where, what in stage.adapter.check(stage.deps, stage.params):
            problems.add(f"stages.{stage.id}.{where}", what)
    return linked


def _check_places(
    stages: dict[str, Stage], path: Path, artifacts: str, problems: _Problems
) -> None:
    """Refuse outputs that lie in the artifact store, or that hold it, the pipeline file or
    its lock file (as an output ``/``, ``..`` or ``.`` does)."""
    store = os.path.realpath(artifacts)
    kept = {
        f"the artifact store {artifacts}": store,
        f"the pipeline file {path}": canonical(str(path), store),
        f"its lock file {path.with_suffix('.lock')}": canonical(
            str(path.with_suffix(".lock")), store
        ),
    }
    for stage in stages.values():
        for key, out in stage.outs.items():
            where, target = f"stages.{stage.id}.outs.{key}", canonical(out, store)
            held = [name for name, p in kept.items() if within(p, target)]
            if held:
                what = f"{out} is or holds {' and '.join(held)}"
                problems.add(where, f"{what}: give the output a file or folder of its own")
            elif within(target, store):
                problems.add(where, "overlaps the artifact store")


def _order(stages: dict[str, Stage], problems: _Problems) -> dict[str, Stage]:
    """Dependencies first, otherwise file order; a cycle is a problem."""
    ordered: dict[str, Stage] = {}
    waiting = list(stages)
    while waiting:
        ready = next((s for s in waiting if all(u in ordered for u in stages[s].upstream)), None)
        if ready is None:
            problems.add(*_cycle(stages, waiting))
            return stages
        ordered[ready] = stages[ready]
        waiting.remove(ready)
    return ordered


def _cycle(stages: dict[str, Stage], waiting: list[str]) -> tuple[str, str]:
    """A cycle among the stages left ``waiting``: (the dep that closes it, the chain)."""
    path = [waiting[0]]  # every waiting stage reads from another waiting one
    while True:
        nxt = next(u for u in stages[path[-1]].upstream if u in waiting)
        if nxt in path:
            loop = [*path[path.index(nxt) :], nxt]
            break
        path.append(nxt)
    reader, maker = loop[0], loop[1]  # loop[i] reads an output of loop[i + 1]
    made = [absolute(o) for o in stages[maker].outs.values()]
    key = next(
        k for k, d in _dep_paths(stages[reader]) if any(within(absolute(d), o) for o in made)
    )
    chain = " → ".join(reversed(loop))
    return f"stages.{reader}.deps.{key}", f"cycle: {chain} (each reads the one before)"
