"""Lineage in the artifact store: which version of an upstream stage a record's deps came from.

A dep (``demo/run/checkpoints/last.pt``) lies in the output of the stage that makes it
(``train``, out ``demo/run``); the version that made it is the one whose output, at the same
place inside its version folder, has the content version the record holds for the dep. Records
keep no version folder names, so this is found by content: from the records' out versions when
the dep is a whole output, else by hashing the file or folder there (the hash cache has it,
from the run that recorded it). `Tracer.train_of` follows such steps, through export or embed
stages, to the train stage's version (`fmlkit.pipeline.runs`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from fmlkit.pipeline.artifacts import ArtifactVersion, list_versions
from fmlkit.pipeline.lock import LockEntry
from fmlkit.pipeline.paths import canonical_in, within
from fmlkit.pipeline.spec import Pipeline
from fmlkit.pipeline.versions import HashCache, version_of


class Tracer:
    """Follows a record's deps to the versions of the stages that made them, up to a train
    stage (each stage's versions listed once)."""

    def __init__(self, pipeline: Pipeline, cache: HashCache) -> None:
        self.pipeline = pipeline
        self.cache = cache
        self.canonical = canonical_in(str(pipeline.store.parent))
        self._versions: dict[str, list[ArtifactVersion]] = {}
        trains = {s.id for s in pipeline.stages.values() if s.run == "train"}
        self._leads = {  # the stages that are, or stand after, a train stage
            s for s in pipeline.stages if s in trains or trains & pipeline.upstream_of(s)
        }

    def versions(self, stage_id: str) -> list[ArtifactVersion]:
        """The stage's versions, oldest first (`list_versions`), listed once."""
        if stage_id not in self._versions:
            outs = self.pipeline.stages[stage_id].outs
            self._versions[stage_id] = list_versions(self.pipeline.store, stage_id, outs)
        return self._versions[stage_id]

    def train_of(self, record: LockEntry, depth: int = 0) -> tuple[str, ArtifactVersion] | None:
        """(stage id, version) of the train stage upstream of ``record``, if found."""
        for path, version in _dep_paths(record):
            producer = self.pipeline.producer(path)
            if producer not in self._leads:  # None, or data no training made: not followed
                continue
            made = self._made(producer, path, version)
            if made is None:
                continue
            if self.pipeline.stages[producer].run == "train":
                return producer, made
            if made.records and depth < len(self.pipeline.stages):
                found = self.train_of(made.records[-1], depth + 1)
                if found is not None:
                    return found
        return None

    def _made(self, stage_id: str, path: str, version: str) -> ArtifactVersion | None:
        """The newest version of ``stage_id`` whose output at ``path`` has ``version``."""
        target = self.canonical(path)
        for key, out in self.pipeline.stages[stage_id].outs.items():
            root = self.canonical(out)
            if not within(target, root):
                continue
            inside = os.path.relpath(target, root)
            for made in reversed(self.versions(stage_id)):
                if inside == "." and any(
                    r.outs.get(key, {}).get("version") == version for r in made.records
                ):
                    return made
                candidate = made.path / key / Path(out).name / inside
                try:
                    if version_of(os.path.normpath(candidate), self.cache) == version:
                        return made
                except OSError:
                    continue
        return None


def _dep_paths(record: LockEntry) -> Iterator[tuple[str, str]]:
    """(path, version) of each path ``record``'s deps name (a list dep gives several)."""
    for dep in record.deps.values():
        paths, versions = dep.get("path"), dep.get("version")
        if isinstance(paths, str) and isinstance(versions, str):
            yield paths, versions
        elif isinstance(paths, list) and isinstance(versions, list):
            for path, version in zip(paths, versions, strict=False):
                if isinstance(path, str) and isinstance(version, str):
                    yield path, version
