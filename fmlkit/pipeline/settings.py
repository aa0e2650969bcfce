"""Settings as dotted keys (``optim.lr``): what `fmlkit status` names when a config file changed,
and what `fmlkit runs` compares between training runs.

A stage's deps that are small YAML files (``.yaml``/``.yml``, at most `MAX_COPY_BYTES`; the
train stage's ``config``) are kept, when the stage runs, as
``<artifacts>/<pipeline>/.deps/<sha256>.yaml``: named by the sha256 of their bytes, which is
the dep's version in the lock file (``file:<sha256>``). Status reads the copy of the locked
version back and compares it with the file as it is now, key by key (`describe_changes`). A
lock written before these copies were kept, a copy deleted or edited by hand, or a file that
is not a YAML mapping leave the plain ``deps.config (…) changed``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fmlkit.errors import FmlkitError
from fmlkit.io import atomic_write_bytes

logger = logging.getLogger(__name__)
COPIES = ".deps"  # under <artifacts>/<pipeline>/
MAX_COPY_BYTES = 1 << 20
YAML_SUFFIXES = (".yaml", ".yml")
MAX_NAMED = 5  # changed keys named before "and N more"
UNSET = "(unset)"


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``data`` as ``{dotted key: leaf value}``; a list or an empty mapping is one value."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def shown_value(value: Any, width: int = 40) -> str:
    """A setting's value as a user wrote it in YAML (``0.1``, ``sgd``, ``true``, ``null``,
    ``[0.5, 0.5]``), cut to about ``width`` characters."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, float):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError, RecursionError):
            text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def describe_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """The keys whose values differ, ``optim.lr 0.1 → 0.2, train.max_steps 200 → 400``, the
    first `MAX_NAMED` of them (in the new file's order) and ``and N more``; a key only on one
    side is ``(unset)`` on the other. Empty when no value differs."""
    before, after = flatten(old), flatten(new)
    keys = [*after, *(k for k in before if k not in after)]
    changed = [
        f"{k} {_side(before, k)} → {_side(after, k)}"
        for k in keys
        if k not in before or k not in after or not _same(before[k], after[k])
    ]
    more = len(changed) - MAX_NAMED
    return ", ".join(changed[:MAX_NAMED]) + (f" and {more} more" if more > 0 else "")


def _side(flat: Mapping[str, Any], key: str) -> str:
    return shown_value(flat[key]) if key in flat else UNSET


def _same(a: Any, b: Any) -> bool:
    """Equal as YAML values: ``1`` and ``1.0`` are the same number, ``true`` and ``1`` not."""
    return (type(a) is type(b) and a == b) or (_number(a) and _number(b) and a == b)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_mapping(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The YAML mapping in the file ``path``; None when it is not a small YAML file
    (`MAX_COPY_BYTES`) holding a mapping, or cannot be read."""
    path = Path(path)
    if path.suffix.lower() not in YAML_SUFFIXES:
        return None
    try:
        if not path.is_file() or path.stat().st_size > MAX_COPY_BYTES:
            return None
        return _mapping(path.read_bytes(), where=str(path))
    except OSError:
        return None


def _mapping(data: bytes, *, where: str) -> dict[str, Any] | None:
    from fmlkit.schema import parse_yaml

    try:
        parsed = parse_yaml(data.decode("utf-8"), where=where)
    except (UnicodeDecodeError, FmlkitError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _copy_path(store: Path, version: str) -> Path | None:
    kind, _, digest = version.partition(":")
    if kind != "file" or len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
        return None
    return store / COPIES / f"{digest}.yaml"


def keep_copy(store: Path, path: str, version: Any) -> None:
    """Keep the bytes of the dep ``path`` under its ``version`` (``file:<sha256>``) in the
    store, if it is a small YAML file whose bytes still have that version. Only a shortcut for
    `fmlkit status`: a copy that cannot be written is a warning, never an error."""
    target = _copy_path(store, version) if isinstance(version, str) else None
    source = Path(path)
    if target is None or target.is_file() or source.suffix.lower() not in YAML_SUFFIXES:
        return
    try:
        if source.stat().st_size > MAX_COPY_BYTES:
            return
        data = source.read_bytes()
        if f"file:{hashlib.sha256(data).hexdigest()}" != version:
            return  # edited since it was versioned: the locked bytes are gone
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, data, fsync=False)
    except (OSError, FmlkitError) as e:
        logger.warning(
            "could not keep a copy of %s in %s (%s): `fmlkit status` will say that it "
            "changed, not which keys",
            path,
            target.parent,
            e,
        )


def kept_mapping(store: Path, version: Any) -> dict[str, Any] | None:
    """The YAML mapping kept for a dep of ``version`` (see `keep_copy`); None when there is no
    intact copy of it (an older lock, deleted or edited by hand) or it is not a mapping."""
    target = _copy_path(store, version) if isinstance(version, str) else None
    if target is None:
        return None
    try:
        if target.stat().st_size > MAX_COPY_BYTES:
            return None
        data = target.read_bytes()
    except OSError:
        return None
    if f"file:{hashlib.sha256(data).hexdigest()}" != version:
        return None
    return _mapping(data, where=str(target))
