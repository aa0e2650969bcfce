"""Paths as the pipeline compares them: absolute, and with symbolic links followed.

Two declared paths that meet through a linked folder (``b/x.csv`` where ``b`` links to ``a``)
are one path. Links into the artifact store are not followed: they are the pipeline's own
declared outputs (and files linked beside them), and stand where they are declared.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def absolute(path: str) -> str:
    """``path`` absolute and normalised (``..`` removed by its text), links not followed."""
    return os.path.normpath(Path(path).absolute())


def within(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or inside it (both absolute, in the same form)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def canonical(path: str, store: str) -> str:
    """``path`` absolute, with every symbolic link in it followed except links into the real
    artifact store ``store`` (a declared output, or what a stage wrote beside it)."""
    parts = Path(absolute(path)).parts
    resolved = Path(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        candidate = resolved / part
        if candidate.is_symlink():
            target = os.path.realpath(candidate)
            if within(target, store):
                return str(candidate.joinpath(*parts[i + 1 :]))
            resolved = Path(target)
        else:
            resolved = candidate
    return str(resolved)


def canonical_in(artifacts: str) -> Callable[[str], str]:
    """`canonical` for the artifact store at ``artifacts`` (any path to it)."""
    store = os.path.realpath(artifacts)
    return lambda path: canonical(path, store)
