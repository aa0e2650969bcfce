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
import shlex
import shutil
import stat
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmlkit.errors import FmlkitError, FormatError, InputError, PipelineError
from fmlkit.io import STORE_MARKER, STORE_STAGING, atomic_write_text, temp_sibling
from fmlkit.pipeline.lock import LockEntry, read_lock, read_utf8, shown, write_pipeline_lock
from fmlkit.pipeline.paths import within
from fmlkit.pipeline.versions import HashCache, combined_version, version_of

if TYPE_CHECKING:
    from fmlkit.pipeline.spec import Pipeline

logger = logging.getLogger(__name__)
STAGING = STORE_STAGING  # commands may write here (`fmlkit.io.check_output`)
PROVENANCE = "provenance.yaml"
RUNNING = STORE_MARKER  # marks the folder as a store: commands write nothing in it
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
    """Delete a folder of the store (read-only files included, and folders made read-only
    by hand, ``chmod -R a-w``) if it exists."""
    if path.is_dir() and not path.is_symlink():
        try:
            shutil.rmtree(path)
        except PermissionError:
            _make_folders_writable(path)
            shutil.rmtree(path)
    elif path.is_symlink() or path.exists():
        path.unlink()


def _make_folders_writable(folder: Path) -> None:
    """Give the owner read, write and search rights on ``folder`` and every folder in it."""
    rights = stat.S_IRUSR | stat.S_IWUSR | stat.S_IXUSR
    folder.chmod(folder.stat().st_mode | rights)
    for root, dirs, _ in os.walk(folder):  # top-down: each folder is opened before walked
        for name in dirs:
            sub = Path(root, name)
            if not sub.is_symlink():
                sub.chmod(sub.stat().st_mode | rights)


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
            for key in out_versions:  # a run killed before it made them read-only
                _make_read_only(final / key)
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


def foreign(path: str | os.PathLike[str], store: Path) -> str | None:
    """What a declared output path holds that the pipeline did not put there, said in a few
    words (``a file``, ``a link to /data/mine.csv``); None when it holds nothing, or a link
    into the pipeline's artifact folder ``store`` (made by a run, a restore, or by hand with
    ``ln -sfn``; it may dangle, when its version was deleted). The runner never replaces what
    it did not put there: a user's own link is not replaced either."""
    path = Path(path)
    if not os.path.lexists(path):
        return None
    if not path.is_symlink():
        return "a folder" if path.is_dir() else "a file"
    target = os.path.realpath(path)
    return None if within(target, os.path.realpath(store)) else f"a link to {target}"


def _link(target: Path, link: Path, store: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    relative = os.path.relpath(os.path.realpath(target), os.path.realpath(link.parent))
    if link.is_symlink() and str(link.readlink()) == relative:
        return
    found = foreign(link, store)
    if found is not None:
        raise InputError(
            f"{link} exists and is {found}, not a link into {store}: move it away or "
            "delete it, then run again"
        )
    tmp = temp_sibling(link)
    tmp.symlink_to(relative)
    tmp.replace(link)


def link_outputs(version_dir: Path, outs: Mapping[str, str]) -> None:
    """Point each declared output path (and files written beside it) into ``version_dir``
    (``<store>/<stage>/<version>``).

    Raises:
        InputError: a declared output path holds something the pipeline did not put there
            (see `foreign`); a file written beside it is then not linked (a warning).
    """
    store = version_dir.parent.parent
    for key, declared in outs.items():
        link = Path(declared)
        for entry in sorted((version_dir / key).iterdir()):
            beside = link if entry.name == link.name else link.parent / entry.name
            try:
                _link(entry, beside, store)
            except InputError:
                if beside == link:
                    raise
                logger.warning("not linking %s beside %s: %s exists", entry.name, link, beside)


def record_provenance(version_dir: Path, entry: LockEntry) -> None:
    """Add ``entry`` to the version's provenance, unless an equal run is recorded already."""
    from fmlkit.schema import dump_yaml

    try:
        records = read_provenance(version_dir)
    except FormatError as e:  # damaged by hand: what it said is lost either way
        logger.warning("%s; writing it anew", e)
        records = []
    same = [r for r in records if _made_by(r) == _made_by(entry)]
    if not same:
        body = {"records": [r.to_dict() for r in (*records, entry)]}
        atomic_write_text(version_dir / PROVENANCE, dump_yaml(body), fsync=False)


def _made_by(entry: LockEntry) -> tuple[Any, ...]:
    return entry.run, entry.params, entry.deps, entry.fmlkit_version


def read_provenance(version_dir: Path) -> list[LockEntry]:
    """The records of a version folder (empty when it has none).

    Raises:
        FormatError: its provenance file is not one (damaged, or edited by hand).
    """
    from fmlkit.schema import parse_yaml

    path = version_dir / PROVENANCE
    if not path.is_file():
        return []
    try:
        data = parse_yaml(read_utf8(path), where=str(path))
    except FmlkitError as e:
        raise FormatError(str(e)) from None
    records = data.get("records") if isinstance(data, dict) else None
    if not isinstance(records, list):
        raise FormatError(f"{path}: expected `records:`, a list of runs; found {shown(data)}")
    return [LockEntry.from_dict(r, where=f"{path}: records[{i}]") for i, r in enumerate(records)]


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
        try:
            records = tuple(read_provenance(folder))
        except FormatError as e:
            logger.warning("%s: listing version %s without it", e, folder.name)
            records = ()
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
        InputError: a declared output path holds something the pipeline did not put there.
    """
    lacking = [k for k in outs if not (version.path / k).is_dir()]
    if lacking:
        raise PipelineError(
            f"version {version.version} of stage {version.stage} has no output "
            f"{', '.join(lacking)} (the pipeline file declares outputs it did not make)"
        )
    store = version.path.parent.parent
    for declared in outs.values():  # before any link moves
        found = foreign(declared, store)
        if found is not None:
            raise InputError(
                f"{declared} exists and is {found}, not a link into {store}: move it away "
                "or delete it; nothing was changed"
            )
    link_outputs(version.path, outs)


@contextlib.contextmanager
def exclusive(store: Path) -> Iterator[None]:
    """Hold ``<store>/.running`` locked: one `fmlkit run` (or ``artifacts --restore``) of a
    pipeline at a time. The holder writes its process id, start time and command line into
    the file, so that a second one can name it.

    Raises:
        PipelineError: another process holds it (the message names that process).
    """
    import fcntl

    store.mkdir(parents=True, exist_ok=True)
    with (store / RUNNING).open("a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = " ".join(f.read(500).split()) or "a process that has not said which"
            raise PipelineError(
                "another `fmlkit run` (or `artifacts --restore`) of this pipeline is running "
                f"({store / RUNNING} is "
                f"locked by {holder}); wait for it to finish: nothing was done"
            ) from None
        try:
            f.seek(0)
            f.truncate()
            f.write(f"process {os.getpid()}, since {_now()}: {shlex.join(sys.argv)}\n")
            f.flush()
            yield
        finally:
            with contextlib.suppress(OSError):
                f.truncate(0)
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")[:-6] + "Z"


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
        PipelineError: no such stage or version, or the version lacks a declared output or
            a record of how it was made (then nothing is changed).
        InputError: a declared output path holds something the pipeline did not put there
            (nothing is changed).
    """
    stage = pipeline.stages[pipeline.check_id(stage_id, "stage")]
    with exclusive(pipeline.store):
        chosen = find_version(list_versions(pipeline.store, stage.id, stage.outs), version)
        made = chosen.records[-1] if chosen.records else None
        lacking = [] if made is None else [k for k in stage.outs if k not in made.outs]
        if made is None or lacking:  # checked before anything is changed
            record = chosen.path / PROVENANCE
            why = (
                f"its record {record} lacks the outputs {', '.join(lacking)}"
                if lacking
                else f"it has no readable record of how it was made ({record})"
            )
            raise PipelineError(
                f"version {chosen.version} of stage {stage.id}: {why}, so the lock file "
                "cannot say how it was made; nothing was changed (link the outputs to it "
                "by hand, ln -sfn, if you want it anyway: the stage then re-runs on the next "
                "`fmlkit run`)"
            )
        lock = read_lock(pipeline.lock_path)  # a damaged lock is refused before any link moves
        outs = {k: {"path": p, "version": made.outs[k]["version"]} for k, p in stage.outs.items()}
        restore_links(chosen, stage.outs)
        lock[stage.id] = dataclasses.replace(made, outs=outs)
        write_pipeline_lock(pipeline, lock)
    return dataclasses.replace(chosen, current=True)
