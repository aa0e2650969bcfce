"""Where a curation report may be written: the one check of `fmlkit filter --report` and
`fmlkit clean --report`, so that writing a report never replaces what is not a report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fmlkit.errors import InputError
from fmlkit.report.gallery import THUMBS

REPORT_SUFFIXES = (".html", ".png", ".jpg")  # the files a report writes


def check_report_dir(
    out_dir: Path, *, protected: Sequence[tuple[str, Path | None]], kind: str = "report"
) -> None:
    """Refuse a report folder whose writing would replace what is not an earlier report: a
    file, a folder holding anything but a report's ``.html``/``.png``/``.jpg`` files and its
    ``thumbs/`` folder, or one of the ``protected`` folders (``(what, path)``, e.g. the
    dataset folder), a folder holding one, or a folder inside one (links followed).
    ``kind`` names the report in the message ("filter report").

    Raises:
        InputError: naming the folder and what it holds.
    """
    target = out_dir.resolve()
    fix = "choose a new folder for the report"
    for what, other in protected:
        if other is None:
            continue
        there = other.resolve()
        if target == there or target in there.parents:
            raise InputError(
                f"the report folder {out_dir} is or holds the {what} {other}: writing the "
                f"report would replace it; {fix}"
            )
        if there in target.parents:
            raise InputError(
                f"the report folder {out_dir} lies inside the {what} {other}; {fix}, outside it"
            )
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"the report folder {out_dir} is a file, not a folder; {fix}")
    if out_dir.is_dir():
        entries = sorted(out_dir.iterdir())
        foreign = [e.name for e in entries if not _report_entry(e)]
        if entries and (foreign or not (out_dir / "index.html").is_file()):
            shown = ", ".join(foreign[:3]) or "no index.html"
            raise InputError(
                f"the report folder {out_dir} is not an earlier {kind} ({shown}); writing "
                f"the report would delete what it holds. Empty it, or {fix}"
            )


def _report_entry(entry: Path) -> bool:
    """A file a report writes, or its thumbnail folder holding only such files."""
    if entry.is_symlink():
        return False
    if entry.is_dir():
        return entry.name == THUMBS and all(
            _report_entry(e) and e.is_file() for e in entry.iterdir()
        )
    return entry.is_file() and entry.suffix in REPORT_SUFFIXES
