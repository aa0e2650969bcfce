"""Progress bars for long work: on for an interactive terminal, off when not a TTY or `--quiet`.

Library code wraps long loops in `track`; only the CLI decides whether bars are shown, through
`set_progress`.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_enabled: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "fmlkit_progress", default=None
)


def set_progress(enabled: bool | None) -> None:
    """Force bars on (True) or off (False); None restores the default (on only for a TTY)."""
    _enabled.set(enabled)


def progress_enabled() -> bool:
    """Whether `track` draws a bar right now."""
    forced = _enabled.get()
    return sys.stderr.isatty() if forced is None else forced


def track(
    iterable: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it"
) -> Iterator[T]:
    """Iterate over ``iterable``, drawing a bar on stderr when progress is enabled."""
    if not progress_enabled():
        yield from iterable
        return
    from tqdm import tqdm

    yield from tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, **bar_width())


@contextlib.contextmanager
def progress_counter(
    *, total: int | None = None, desc: str = "", unit: str = "it"
) -> Iterator[Callable[[int], None]]:
    """Yield an ``advance(n)`` callable that moves a bar on stderr (a no-op when disabled).

    For work that finishes in batches, where wrapping an iterable with `track` does not fit.
    """
    if not progress_enabled():
        yield lambda n: None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit=unit, leave=False, **bar_width()) as bar:

        def advance(n: int) -> None:
            bar.update(n)

        yield advance


def bar_width() -> dict[str, Any]:
    """tqdm's width options: follow the terminal's width as it changes, or 100 columns where
    the terminal says it has none (``script``, some ``docker exec -t``), in which tqdm would
    draw an empty bar."""
    try:
        columns = os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError, AttributeError):  # not a terminal, or no file descriptor
        columns = 0
    return {"dynamic_ncols": True} if columns > 0 else {"ncols": 100}
