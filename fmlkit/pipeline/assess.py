"""Where a stage stands against its lock entry, and why: what `pipeline_status` reports and
what `run_pipeline` decides by (`fmlkit.pipeline.runner`).

A stage is up to date when its lock entry has the same stage name, params, fmlkit version and
dep paths and versions as now, and its outputs still have their locked versions; `assess` says
which of these changed, each as one reason (for a YAML config file, the keys that changed:
`fmlkit.pipeline.settings`). `Versions` memoises the content versions of paths
(`fmlkit.pipeline.versions`) for one run or one status.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from fmlkit import __version__
from fmlkit.pipeline.artifacts import VERSION_DIGITS
from fmlkit.pipeline.lock import LockEntry, shown
from fmlkit.pipeline.settings import describe_changes, kept_mapping, read_mapping
from fmlkit.pipeline.spec import Pipeline, Stage
from fmlkit.pipeline.versions import HashCache, combined_version, version_of

State = Literal["up-to-date", "changed", "missing"]


class Versions:
    """Versions of paths, memoised by real path for one run. A stage that runs may make a
    version folder again at the same real path (deleted, or edited by hand, before): `forget`
    its folder then."""

    def __init__(self, cache: HashCache) -> None:
        self.cache = cache
        self._memo: dict[str, str | None] = {}

    def __call__(self, path: str) -> str | None:
        real = os.path.realpath(path)
        if real not in self._memo:
            self._memo[real] = version_of(real, self.cache)
        return self._memo[real]

    def forget(self, folder: Path) -> None:
        """Drop what is memoised for paths in ``folder``."""
        inside = os.path.realpath(folder) + os.sep
        self._memo = {k: v for k, v in self._memo.items() if not k.startswith(inside)}

    def of(self, value: str | tuple[str, ...]) -> str | list[str | None] | None:
        """The version of a dep's path, or the list of its paths' versions."""
        return self(value) if isinstance(value, str) else [self(v) for v in value]


def plain(value: Any) -> Any:
    """A dep's value as the lock file holds it (a list of paths, not a tuple)."""
    return list(value) if isinstance(value, tuple) else value


def as_tuple(value: str | tuple[str, ...]) -> tuple[str, ...]:
    """A dep's path or paths, as a tuple."""
    return (value,) if isinstance(value, str) else value


def assess(
    pipeline: Pipeline,
    stage: Stage,
    entry: LockEntry | None,
    versions: Versions,
    pending: Mapping[str, str],
) -> tuple[State, list[str]]:
    """The state of ``stage`` and its reasons. Deps made by a stage in ``pending`` (id → what
    it is about to do) are not compared: the stage waits for that one."""
    missing = [f"outs.{k} ({p}) is missing" for k, p in stage.outs.items() if versions(p) is None]
    if entry is None:
        return ("missing" if missing else "changed"), ["first run (no lock entry)"]
    reasons: list[str] = []
    if entry.run != stage.run:
        reasons.append(f"run: {entry.run} → {stage.run}")
    if entry.fmlkit_version != __version__:
        reasons.append(f"fmlkit {entry.fmlkit_version} → {__version__}")
    reasons += _param_changes(entry.params, stage.params)
    waiting = [u for u in stage.upstream if u in pending]
    reasons += [f"upstream {u} {pending[u]}" for u in waiting]
    reasons += _dep_changes(pipeline, stage, entry, versions, set(waiting))
    for key, path in stage.outs.items():
        locked = entry.outs.get(key, {})
        if locked.get("path") != path:
            reasons.append(f"outs.{key}: {locked.get('path')} → {path}")
        elif versions(path) not in (None, locked.get("version")):
            reasons.append(_out_change(pipeline, stage.id, key, path, entry))
    state: State = "missing" if missing else "changed" if reasons else "up-to-date"
    return state, missing + reasons


def _out_change(pipeline: Pipeline, stage_id: str, key: str, path: str, entry: LockEntry) -> str:
    """Why output ``key`` at ``path`` is not the version ``entry`` records: its files were
    edited, or it links to another version folder (a run stopped before it wrote the lock, or
    a link made by hand)."""
    stage_dir = Path(os.path.realpath(pipeline.store / stage_id))
    made = {k: str(o.get("version")) for k, o in entry.outs.items()}
    locked = combined_version(made)[:VERSION_DIGITS]
    real = Path(os.path.realpath(path))
    if stage_dir not in real.parents:
        return f"outs.{key} ({path}) was modified"
    folder = real.relative_to(stage_dir).parts[0]
    if folder == locked:
        return f"outs.{key} ({path}) was modified: its files in {stage_dir / folder} were edited"
    return (
        f"outs.{key} ({path}) links to version {folder}, not to the locked {locked} (a run "
        "stopped before it wrote the lock, or a link changed by hand)"
    )


def _param_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    changes = []
    for key in [*new, *(k for k in old if k not in new)]:
        if key not in old:
            changes.append(f"params.{key}: (default) → {shown(new[key])}")
        elif key not in new:
            changes.append(f"params.{key}: {shown(old[key])} → (default)")
        elif old[key] != new[key]:
            keys = _mapping_changes(old[key], new[key])  # overrides: the keys that changed
            changes.append(f"params.{key}: {keys or f'{shown(old[key])} → {shown(new[key])}'}")
    return changes


def _mapping_changes(old: Any, new: Any) -> str:
    both = isinstance(old, dict) and isinstance(new, dict)
    return describe_changes(old, new) if both else ""


def _dep_changes(
    pipeline: Pipeline, stage: Stage, entry: LockEntry, versions: Versions, waiting: set[str]
) -> list[str]:
    """What changed in the deps; those that stages in ``waiting`` make are not compared."""
    changes = [f"deps.{k} removed" for k in entry.deps if k not in stage.deps]
    for key, value in stage.deps.items():
        locked = entry.deps.get(key)
        if locked is None:
            changes.append(f"deps.{key} added")
        elif locked.get("path") != plain(value):
            changes.append(f"deps.{key}: {locked.get('path')} → {plain(value)}")
        elif not waiting & {pipeline.producer(p) for p in as_tuple(value)}:
            now = versions.of(value)
            if now is None or (isinstance(now, list) and None in now):
                changes.append(f"deps.{key} ({plain(value)}) does not exist")
            elif now != locked.get("version"):
                keys = _keys_changed(pipeline.store, value, locked.get("version"))
                changes.append(f"deps.{key} ({plain(value)}) changed{keys}")
    return changes


def _keys_changed(store: Path, value: str | tuple[str, ...], locked: Any) -> str:
    """``: optim.lr 0.1 → 0.2, …`` for a YAML dep whose locked version the store kept a copy
    of (`fmlkit.pipeline.settings`); empty when there is none, or either side is not a YAML
    mapping."""
    old = kept_mapping(store, locked) if isinstance(value, str) else None
    new = read_mapping(value) if old is not None and isinstance(value, str) else None
    if old is None or new is None:
        return ""
    return ": " + (describe_changes(old, new) or "no setting changed (comments or layout only)")
