from __future__ import annotations

from pathlib import Path

import pytest

from fmlkit.errors import FormatError
from fmlkit.pipeline.lock import LockEntry, read_lock, write_lock

ENTRY = LockEntry(
    run="split",
    params={"mode": "classes", "test_fraction": 0.2},
    deps={"dataset_info": {"path": "a.csv", "version": "file:ab"}},
    outs={"output": {"path": "b.csv", "version": "file:cd"}},
    fmlkit_version="0.1.0",
    started="2025-01-31T10:15:02Z",
    duration_s=0.41,
)


def test_write_lock_round_trips_and_is_stable(tmp_path: Path) -> None:
    path = tmp_path / "p.lock"
    write_lock(path, {"split": ENTRY, "other": ENTRY}, pipeline="p.yaml")
    assert read_lock(path) == {"split": ENTRY, "other": ENTRY}
    assert list(read_lock(path)) == ["split", "other"]
    first = path.read_bytes()
    write_lock(path, read_lock(path), pipeline="p.yaml")
    assert path.read_bytes() == first
    assert not list(tmp_path.glob(".*tmp*"))


def test_read_lock_missing_is_empty(tmp_path: Path) -> None:
    assert read_lock(tmp_path / "none.lock") == {}


@pytest.mark.parametrize(
    "text",
    [
        "- a list\n",
        "schema: 2\nstages: {}\n",
        "schema: 1\nstages: {s: {run: x}}\n",
        "schema: 1\nstages: {s: {run: x, params: [], deps: {}, outs: {}, fmlkit_version: v, "
        "started: t, duration_s: 1}}\n",
        "a: [\n",
    ],
)
def test_read_lock_refuses_what_is_not_a_lock(tmp_path: Path, text: str) -> None:
    path = tmp_path / "p.lock"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FormatError, match=r"delete .*p\.lock to run every stage again"):
        read_lock(path)
