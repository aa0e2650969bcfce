from __future__ import annotations

import sys
import time

import pytest

from fmlkit.progress import progress_counter, progress_enabled, set_progress, track


def test_track_without_progress_yields_items_and_draws_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    set_progress(False)
    try:
        assert list(track(range(5), total=5, desc="x")) == [0, 1, 2, 3, 4]
    finally:
        set_progress(None)
    assert capsys.readouterr().err == ""


def test_track_with_progress_draws_a_bar_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    set_progress(True)
    try:
        assert list(track(range(3), total=3, desc="scan")) == [0, 1, 2]
    finally:
        set_progress(None)
    assert "scan" in capsys.readouterr().err


@pytest.mark.parametrize("tty", [True, False])
def test_default_follows_whether_stderr_is_a_terminal(
    monkeypatch: pytest.MonkeyPatch, tty: bool
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    set_progress(None)
    assert progress_enabled() is tty


def test_progress_counter_counts_when_enabled_and_is_silent_otherwise(
    capsys: pytest.CaptureFixture[str],
) -> None:
    set_progress(False)
    try:
        with progress_counter(desc="quiet", unit="img") as advance:
            advance(5)
    finally:
        set_progress(None)
    assert capsys.readouterr().err == ""
    set_progress(True)
    try:
        with progress_counter(desc="scan", unit="img") as advance:
            advance(7)
            time.sleep(0.2)  # tqdm redraws at most every 0.1 s
            advance(5)
    finally:
        set_progress(None)
    err = capsys.readouterr().err
    assert "scan" in err and "12" in err
