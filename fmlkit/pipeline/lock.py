"""The lock file ``pipelines/NAME.lock``: for each stage, what it last ran with and made.

::

    schema: 1
    stages:
      <id>:
        run: split
        params: {mode: classes, test_fraction: 0.2}
        deps: {dataset_info: {path: demo/filtered.csv, version: file:3fa2…}}
        outs: {output: {path: demo/split.csv, version: file:9c1e…}}
        fmlkit_version: 0.1.0
        started: '2025-01-31T10:15:02.153Z'
        duration_s: 0.41

The runner rewrites it (atomically) after each stage that succeeds, and never otherwise, so a
run that skips every stage leaves it byte-identical.
"""

from __future__ import annotations

import os
import reprlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmlkit.errors import FmlkitError, FormatError
from fmlkit.io import atomic_write_text

if TYPE_CHECKING:
    from fmlkit.pipeline.spec import Pipeline

SCHEMA = 1
_FIELDS = ("run", "params", "deps", "outs", "fmlkit_version", "started", "duration_s")
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80


def shown(value: Any, width: int = 60) -> str:
    """``repr(value)`` cut to about ``width`` characters; bounded in time however large or
    nested ``value`` is (a YAML alias bomb), unlike ``f"{value!r:.60}"``."""
    text = _REPR.repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass(frozen=True)
class LockEntry:
    """One stage's record (also kept, per artifact version, as its provenance).

    Attributes:
        run: the stage name.
        params: the params as given in the pipeline file.
        deps: key → ``{path, version}`` (path and version are lists for a list of paths).
        outs: key → ``{path, version}``.
        fmlkit_version: the fmlkit that ran it.
        started: UTC start time, ISO 8601 with milliseconds.
        duration_s: wall time in seconds.
    """

    run: str
    params: dict[str, Any]
    deps: dict[str, dict[str, Any]]
    outs: dict[str, dict[str, Any]]
    fmlkit_version: str
    started: str
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, *, where: str) -> LockEntry:
        """Raises `FormatError` when ``data`` is not a lock entry (keys or types wrong)."""
        if not isinstance(data, dict) or set(data) != set(_FIELDS):
            raise FormatError(
                f"{where}: expected the keys {', '.join(_FIELDS)}; found {shown(data, 80)}"
            )
        for key in ("params", "deps", "outs"):
            if not isinstance(data[key], dict):
                raise FormatError(f"{where}.{key}: expected a mapping, found {shown(data[key])}")
        for key in ("deps", "outs"):
            for name, value in data[key].items():
                if not isinstance(value, dict) or set(value) != {"path", "version"}:
                    raise FormatError(
                        f"{where}.{key}.{name}: expected {{path: …, version: …}}, "
                        f"found {shown(value)}"
                    )
        for key in ("run", "fmlkit_version", "started"):
            if not isinstance(data[key], str):
                raise FormatError(f"{where}.{key}: expected text, found {shown(data[key])}")
        duration = data["duration_s"]
        if not isinstance(duration, (int, float)) or isinstance(duration, bool):
            raise FormatError(f"{where}.duration_s: expected seconds, found {shown(duration)}")
        return cls(**{k: data[k] for k in _FIELDS})


def read_lock(path: str | os.PathLike[str]) -> dict[str, LockEntry]:
    """The entries of a lock file, by stage id; empty when the file does not exist.

    Raises:
        FormatError: a file that is not a lock (the message says to delete it).
    """
    from fmlkit.schema import parse_yaml

    path = Path(path)
    if not path.exists():
        return {}
    fix = f"delete {path} to run every stage again"
    try:
        data = parse_yaml(read_utf8(path), where=str(path))
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise FormatError(f"{path}: not an fmlkit lock file of schema {SCHEMA}")
        stages = {} if data.get("stages") is None else data["stages"]
        if not isinstance(stages, dict):
            raise FormatError(f"{path}: stages: expected a mapping, found {shown(stages)}")
        return {
            str(k): LockEntry.from_dict(v, where=f"{path}: stages.{k}") for k, v in stages.items()
        }
    except FmlkitError as e:  # a YAML error's message shows the place on lines of its own
        raise FormatError(f"{e}\n{fix}" if "\n" in str(e) else f"{e}; {fix}") from None


def read_utf8(path: Path) -> str:
    """The UTF-8 text of ``path``.

    Raises:
        FormatError: it is not UTF-8 text (binary, or another encoding).
    """
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None


def write_lock(
    path: str | os.PathLike[str], entries: Mapping[str, LockEntry], *, pipeline: str
) -> None:
    """Write ``entries`` (in their order) to ``path`` atomically."""
    from fmlkit.schema import dump_yaml

    header = (
        f"# What each stage of {pipeline} last ran with and made. Written by `fmlkit run`\n"
        "# after each stage that succeeds; compared by `fmlkit run` and `fmlkit status`.\n"
    )
    body = {"schema": SCHEMA, "stages": {k: e.to_dict() for k, e in entries.items()}}
    atomic_write_text(path, header + dump_yaml(body))


def write_pipeline_lock(pipeline: Pipeline, entries: Mapping[str, LockEntry]) -> None:
    """Write ``pipeline``'s lock file with ``entries`` in the pipeline's run order (entries of
    stages no longer in the pipeline are dropped)."""
    ordered = {k: entries[k] for k in pipeline.stages if k in entries}
    write_lock(pipeline.lock_path, ordered, pipeline=str(pipeline.path))
