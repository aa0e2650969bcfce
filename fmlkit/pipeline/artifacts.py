"""The artifact store: every version of every stage's outputs, and how each was made.

Layout of ``<artifacts>/<pipeline>/`` (``<artifacts>`` is the pipeline file's ``artifacts:``
key, default ``artifacts`` in the current folder)::

    <stage>/.staging/<out key>/<file name>      the stage being run (gone when it ends)
    <stage>/<version>/<out key>/<file name>     a finished version (files read-only)
    <stage>/<version>/provenance.yaml           the params and inputs that made it
    .hashes.sqlite                              the file-hash cache (`HashCache`)
    .running                                    locked while `fmlkit run` runs

``<version>`` is the first 16 hex digits of the sha256 of the stage's output versions, so a
stage that makes the same outputs again reuses its folder. Each declared output path is a
relative symbolic link to ``<version>/<out key>/<file name>``; files a stage writes beside an
output (a .rec's .idx, synth's truth CSV when not declared) are linked beside it too. Restoring
an older version re-points those links (`restore`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmlkit.errors import InputError, PipelineError
from fmlkit.io import atomic_write_text, temp_sibling
from fmlkit.pipeline.lock import LockEntry, read_lock, write_pipeline_lock
from fmlkit.pipeline.versions import HashCache, combined_version, version_of

if TYPE_CHECKING:
    from fmlkit.pipeline.spec import Pipeline

logger = logging.getLogger(__name__)
STAGING = ".staging"
PROVENANCE = "provenance.yaml"
VERSION_DIGITS = 16


@dataclass(frozen=True)
class ArtifactVersion:
    """One version of a stage's outputs.

    Attributes:
        stage: the stage id.
        version: the folder name under ``<store>/<stage>/``.
        path: that folder.
        records: how it was made, oldest first (several when other params or inputs made the
            same outputs).
        current: whether the declared outputs link to it now.
    """

    stage: str
    version: str
    path: Path
    records: tuple[LockEntry, ...]
    current: bool


def begin_staging(stage_dir: Path, outs: Mapping[str, str]) -> dict[str, Path]:
    """Make a fresh staging folder for a stage (a leftover one is deleted); for each out key,
    the path the stage writes it to (its declared file name, in a folder of its own)."""
    staging = stage_dir / STAGING
    remove_tree(staging)
    paths = {}
    for key, declared in outs.items():
        (staging / key).mkdir(parents=True)
        paths[key] = staging / key / Path(declared).name
    return paths


def remove_tree(path: Path) -> None:
    """Delete a folder (read-only files included) if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.is_symlink() or path.exists():
        path.unlink()


def commit_staging(
    stage_dir: Path, outputs: Mapping[str, Path], out_versions: Mapping[str, str], cache: HashCache
) -> Path:
    """Move a finished staging folder to its version folder (files made read-only) and return
    it; if that version exists intact already, keep it and drop the staging folder.

    Args:
        stage_dir: ``<store>/<stage>``.
        outputs: out key → the path the stage wrote it to (from `begin_staging`).
        out_versions: out key → its version.
        cache: the file-hash cache.
    """
    staging = stage_dir / STAGING
    final = stage_dir / combined_version(dict(out_versions))[:VERSION_DIGITS]
    if final.is_dir():
        kept = {k: version_of(final / k / p.name, cache) for k, p in outputs.items()}
        if kept == dict(out_versions):
            remove_tree(staging)
            return final
        remove_tree(final)  # damaged by hand: replace it
    staging.rename(final)
    for key in out_versions:
        _make_read_only(final / key)
    return final


def _make_read_only(folder: Path) -> None:
    no_write = ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root, name)
            if not path.is_symlink():
                path.chmod(path.stat().st_mode & no_write)


def is_foreign(path: str | os.PathLike[str]) -> bool:
    """Whether a declared output path holds something the pipeline did not put there (a file
    or folder rather than a link)."""
    return os.path.lexists(path) and not Path(path).is_symlink()


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    relative = os.path.relpath(os.path.realpath(target), os.path.realpath(link.parent))
    if link.is_symlink() and str(link.readlink()) == relative:
        return
    if is_foreign(link):
        raise InputError(
            f"{link} exists and is not a link into the artifact store: move it away or "
            "delete it, then run again"
        )
    tmp = temp_sibling(link)
    tmp.symlink_to(relative)
    tmp.replace(link)


def link_outputs(version_dir: Path, outs: Mapping[str, str]) -> None:
    """Point each declared output path (and files written beside it) into ``version_dir``."""
    for key, declared in outs.items():
        link = Path(declared)
        for entry in sorted((version_dir / key).iterdir()):
            beside = link if entry.name == link.name else link.parent / entry.name
            try:
                _link(entry, beside)
            except InputError:
                if beside == link:
                    raise
                logger.warning("not linking %s beside %s: %s exists", entry.name, link, beside)


def record_provenance(version_dir: Path, entry: LockEntry) -> None:
    """Add ``entry`` to the version's provenance, unless an equal run is recorded already."""
    from fmlkit.schema import dump_yaml

    records = read_provenance(version_dir)
    same = [r for r in records if _made_by(r) == _made_by(entry)]
    if not same:
        body = {"records": [r.to_dict() for r in (*records, entry)]}
        atomic_write_text(version_dir / PROVENANCE, dump_yaml(body), fsync=False)


def _made_by(entry: LockEntry) -> tuple[Any, ...]:
    return entry.run, entry.params, entry.deps, entry.fmlkit_version


def read_provenance(version_dir: Path) -> list[LockEntry]:
    """The records of a version folder (empty when it has none)."""
    from fmlkit.schema import parse_yaml

    path = version_dir / PROVENANCE
    if not path.is_file():
        return []
    data = parse_yaml(path.read_text(encoding="utf-8"), where=str(path)) or {}
    return [LockEntry.from_dict(r, where=str(path)) for r in data.get("records") or []]


def list_versions(store: Path, stage_id: str, outs: Mapping[str, str]) -> list[ArtifactVersion]:
    """The versions of one stage, oldest first; ``current`` marks the one linked now."""
    stage_dir = store / stage_id
    if not stage_dir.is_dir():
        return []
    linked = {os.path.realpath(p) for p in outs.values() if Path(p).is_symlink()}
    found = []
    for folder in stage_dir.iterdir():
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        records = tuple(read_provenance(folder))
        real = os.path.realpath(folder)
        current = any(p.startswith(real + os.sep) for p in linked)
        found.append(ArtifactVersion(stage_id, folder.name, folder, records, current))
    return sorted(found, key=lambda v: (v.records[0].started if v.records else "", v.version))


def find_version(versions: list[ArtifactVersion], prefix: str) -> ArtifactVersion:
    """The version whose name starts with ``prefix``.

    Raises:
        PipelineError: none or several match.
    """
    matches = [v for v in versions if v.version.startswith(prefix)]
    if len(matches) != 1:
        names = ", ".join(v.version for v in versions) or "none"
        what = "no version" if not matches else "several versions"
        verb = "starts" if not matches else "start"
        raise PipelineError(f"{what} of this stage {verb} with {prefix!r}; its versions: {names}")
    return matches[0]


def restore_links(version: ArtifactVersion, outs: Mapping[str, str]) -> None:
    """Point the declared outputs at ``version``.

    Raises:
        PipelineError: the version lacks one of the outputs declared now.
    """
    lacking = [k for k in outs if not (version.path / k).is_dir()]
    if lacking:
        raise PipelineError(
            f"version {version.version} of stage {version.stage} has no output "
            f"{', '.join(lacking)} (the pipeline file declares outputs it did not make)"
        )
    link_outputs(version.path, outs)


@contextlib.contextmanager
def exclusive(store: Path) -> Iterator[None]:
    """Hold ``<store>/.running`` locked: one `fmlkit run` of a pipeline at a time.

    Raises:
        PipelineError: another process holds it.
    """
    import fcntl

    store.mkdir(parents=True, exist_ok=True)
    with (store / ".running").open("a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PipelineError(
                f"another `fmlkit run` of this pipeline is running ({store / '.running'} is "
                "locked); wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def list_artifacts(pipeline: Pipeline) -> dict[str, list[ArtifactVersion]]:
    """Every stage's versions in the store, oldest first, by stage id in run order."""
    return {sid: list_versions(pipeline.store, sid, s.outs) for sid, s in pipeline.stages.items()}


def restore(pipeline: Pipeline, stage_id: str, version: str) -> ArtifactVersion:
    """Point a stage's declared outputs at an older (or newer) version of them, and make its
    lock entry the record of how that version was made, so that `fmlkit status` compares the
    pipeline file with it (and `fmlkit run` re-runs the stage if the file asks for something
    else).

    Args:
        pipeline: from `load_pipeline`.
        stage_id: the stage.
        version: the version folder's name, or a unique prefix of it.

    Raises:
        PipelineError: no such stage or version, or the version lacks a declared output.
    """
    stage = pipeline.stages[pipeline.check_id(stage_id, "stage")]
    with exclusive(pipeline.store):
        chosen = find_version(list_versions(pipeline.store, stage.id, stage.outs), version)
        restore_links(chosen, stage.outs)
        if chosen.records:
            made = chosen.records[-1]
            outs = {
                k: {"path": p, "version": made.outs[k]["version"]} for k, p in stage.outs.items()
            }
            lock = read_lock(pipeline.lock_path)
            lock[stage.id] = dataclasses.replace(made, outs=outs)
            write_pipeline_lock(pipeline, lock)
    return dataclasses.replace(chosen, current=True)
