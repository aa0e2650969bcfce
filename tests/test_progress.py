from __future__ import annotations

import re
import sys
import time
from pathlib import Path

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


def _run_under_pty(
    args: list[str], *, stderr_tty: bool = True, columns: int = 120
) -> tuple[int, str]:
    """Run ``python -m fmlkit ARGS`` with stderr on a pseudo-terminal ``columns`` wide (or on
    a pipe); return its exit code and everything it wrote to stderr."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import termios

    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm"}
    command = [sys.executable, "-m", "fmlkit", *args]
    if not stderr_tty:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        return done.returncode, done.stderr
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    try:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, env=env
        )
    finally:
        os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return process.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 labels × 10 tiny PNGs, and a text file that is not an image."""
    from PIL import Image

    root = tmp_path_factory.mktemp("tree") / "faces"
    for label in range(4):
        (root / f"id{label}").mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (8, 8), (label * 60, i * 20, 0)).save(root / f"id{label}/{i}.png")
    (root / "id0" / "notes.txt").write_text("not an image")
    return root


@pytest.mark.parametrize("columns", [120, 0])  # 0: a terminal that does not tell its width
def test_prepare_on_a_terminal_shows_a_bar_with_the_total(
    small_tree: Path, tmp_path: Path, columns: int
) -> None:
    output = tmp_path / "a.csv"
    code, err = _run_under_pty(["prepare", str(small_tree), "-o", str(output)], columns=columns)
    assert code == 0, err
    assert "prepare faces" in err and "/40 " in err and "img" in err, err
    # the bar's format carries elapsed<remaining (the ETA) and the rate, even in its first
    # frame ("0/40 [00:00<?, ?img/s]"); later frames depend on timing and are not asserted
    assert re.search(r"/40 \[\d\d:\d\d<[^,\]]+, [^\]]*img/s\]", err), err
    assert "Traceback" not in err


def test_prepare_draws_no_bar_when_stderr_is_not_a_terminal(
    small_tree: Path, tmp_path: Path
) -> None:
    code, err = _run_under_pty(
        ["prepare", str(small_tree), "-o", str(tmp_path / "a.csv")], stderr_tty=False
    )
    assert code == 0, err
    assert "/40" not in err and "img/s" not in err and "\r" not in err, err


def test_prepare_quiet_draws_no_bar_on_a_terminal(small_tree: Path, tmp_path: Path) -> None:
    code, err = _run_under_pty(["-q", "prepare", str(small_tree), "-o", str(tmp_path / "a.csv")])
    assert code == 0, err
    assert "/40" not in err and "img/s" not in err and "prepare faces" not in err, err
    assert (tmp_path / "a.csv").is_file()


def test_long_library_loops_draw_bars_with_their_totals(
    small_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """convert (rows read) and the dedup's hash passes show ``done/total``."""
    import numpy as np

    from fmlkit.data.convert.from_images import table_to_parquet
    from fmlkit.data.filter.hamming import radius_pairs
    from fmlkit.data.prepare.scan import scan_dataset

    info = tmp_path / "info.csv"
    scan_dataset(small_tree, info, workers=1)
    set_progress(True)
    try:
        table_to_parquet(info, tmp_path / "parquet", root=small_tree)
        # spread hashes at 3 bits: the multi-index search, one pass per chunk (r + 1)
        radius_pairs(np.random.default_rng(0).integers(0, 2**63, 50, dtype=np.uint64), 3)
    finally:
        set_progress(None)
    err = capsys.readouterr().err
    assert "convert" in err and "/40" in err and "img" in err, err
    assert "dedup: pairs within 3 bits" in err and "/4" in err and "pass" in err, err


def test_the_training_bar_counts_steps_to_the_run_total_and_is_off_without_progress(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from fmlkit.train.callbacks import ProgressBar

    set_progress(False)
    try:
        quiet = ProgressBar(40)
        quiet.on_log(10, {"loss": 1.0})
        quiet.close()
    finally:
        set_progress(None)
    assert quiet.bar is None and capsys.readouterr().err == ""
    set_progress(True)
    try:
        bar = ProgressBar(40, initial=10)
        bar.on_log(20, {"loss": 1.5, "lr": 0.1, "img_per_s": 50.0})
        bar.close()
    finally:
        set_progress(None)
    err = capsys.readouterr().err
    assert "train" in err and "20/40" in err and "step" in err and "loss=1.5" in err, err
