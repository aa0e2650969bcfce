"""How the stages of a pipeline file connect, checked by `load_pipeline`
(`fmlkit.pipeline.spec`) after each stage was read on its own.

- `resolve_references`: each ``${stages.ID.outs.KEY}`` in a dep replaced by that output's path.
- `link_stages`: each stage's upstream stages found by path (a dep at or inside another stage's
  output); outputs that overlap, that their own stage reads, or that lie in a source folder a
  stage reads are refused; each stage's params checked by its command.
- `check_places`: no output in the artifact store, nor holding it, the pipeline file or its lock.
- `order_stages`: dependencies first, otherwise file order; a cycle is named with its chain.

Every problem is added to the one `Problems` list, named by its YAML path.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from fmlkit.pipeline.paths import absolute, canonical, within
from fmlkit.pipeline.stages import DepValue

if TYPE_CHECKING:
    from fmlkit.pipeline.spec import Problems, Stage

_REF = re.compile(r"\$\{([^}]*)\}")
_REF_BODY = re.compile(r"\s*stages\.([^.\s]+)\.outs\.([^\s]+)\s*")


def _substitute(text: str, where: str, stages: Mapping[str, Stage], problems: Problems) -> str:
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


def resolve_references(stages: dict[str, Stage], problems: Problems) -> dict[str, Stage]:
    """The stages with their deps' references replaced (unresolved ones are problems); an
    output that is a reference is a problem too."""
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


def link_stages(
    stages: dict[str, Stage], canonical: Callable[[str], str], problems: Problems
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


def check_places(stages: dict[str, Stage], path: Path, artifacts: str, problems: Problems) -> None:
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


def order_stages(stages: dict[str, Stage], problems: Problems) -> dict[str, Stage]:
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
