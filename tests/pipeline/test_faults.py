"""Pipelines under faults: `fmlkit run` killed (SIGKILL) at each point of running a stage, a
deleted artifact version, a hand-edited read-only artifact, two runs at once. Each ends in a
state that `fmlkit status` describes truthfully and that the next `fmlkit run` repairs.

The kills are deterministic: the runner's test hook ``FMLKIT_FAULT_RUN=<point>@<stage>`` makes
it SIGKILL itself at that point (see fmlkit/pipeline/runner.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fmlkit.pipeline.artifacts import STAGING, exclusive
from fmlkit.pipeline.lock import read_lock
from fmlkit.pipeline.runner import FAULT_ENV, FAULT_POINTS
from tests.hostile.check import fmlkit, fmlkit_process, refused, succeeded
from tests.pipeline.conftest import ORDER, TINY, edit
from tests.processes import end_session

STORE = Path("artifacts/tiny")


def _links(project: Path) -> dict[str, str]:
    return {p.name: str(p.readlink()) for p in sorted((project / "tiny").iterdir())}


def _status(project: Path) -> dict[str, dict[str, str]]:
    """``fmlkit status --json``, as a user runs it."""
    result = fmlkit("status", "tiny.yaml", "--json", cwd=project)
    succeeded(result)
    found: dict[str, dict[str, str]] = json.loads(result.stdout)
    return found


def _run(project: Path) -> dict[str, str]:
    """``fmlkit run``, as a user runs it: each stage's action (ran, skipped)."""
    result = fmlkit("run", "tiny.yaml", cwd=project)
    succeeded(result)
    lines = [line.split(":", 1) for line in result.stdout.splitlines() if ": " in line]
    return {
        stage: rest.split()[0] for stage, rest in lines if stage in ORDER and "running" not in rest
    }


def _all_up_to_date(project: Path) -> None:
    status = _status(project)
    assert {s: v["state"] for s, v in status.items()} == dict.fromkeys(ORDER, "up-to-date")
    assert not list((project / STORE).glob(f"*/{STAGING}"))


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_run_killed_at_any_point_of_a_stage_is_described_and_repaired(
    project: Path, point: str
) -> None:
    """split's new params make split, pairs and convert run; the run is killed in pairs."""
    edit(project / "tiny.yaml", "test_fraction: 0.34", "test_fraction: 0.5")
    lock_before = read_lock(project / "tiny.lock")
    links_before = _links(project)
    killed = fmlkit_process("run", "tiny.yaml", cwd=project, env={FAULT_ENV: f"{point}@pairs"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    lock = read_lock(project / "tiny.lock")
    assert lock["split"].params["test_fraction"] == 0.5  # done before the kill: kept
    done = point == "locked"
    assert (lock["pairs"] != lock_before["pairs"]) == done  # the lock entry is written last
    relinked = point in ("linked", "locked")
    assert (_links(project)["pairs.csv"] != links_before["pairs.csv"]) == relinked

    status = _status(project)
    states = {s: v["state"] for s, v in status.items()}
    assert states == {
        **dict.fromkeys(ORDER, "up-to-date"),
        "pairs": "up-to-date" if done else "changed",
        "convert": "changed",  # reads split's new output, not run yet
    }
    if not done:
        reason = status["pairs"]["reason"]
        assert "deps.split_info (tiny/split.csv) changed" in reason
        assert ("links to version" in reason) == relinked  # not "was modified": it was not

    ran = _run(project)
    assert [s for s, a in ran.items() if a == "ran"] == (
        ["convert"] if done else ["pairs", "convert"]
    )  # and split, complete before the kill, is not run again
    _all_up_to_date(project)
    lock = read_lock(project / "tiny.lock")
    assert lock["pairs"].deps["split_info"]["version"] == lock["split"].outs["output"]["version"]


def test_first_run_killed_half_way_keeps_what_ran(tmp_path: Path) -> None:
    """What ran before the kill is recorded and kept; the rest is missing, then made."""
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "tiny.yaml").write_text(TINY, encoding="utf-8")
    killed = fmlkit_process("run", "tiny.yaml", cwd=fresh, env={FAULT_ENV: "staged@filter"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert list(read_lock(fresh / "tiny.lock")) == ["synth", "prepare"]
    states = {s: v["state"] for s, v in _status(fresh).items()}
    assert states["synth"] == states["prepare"] == "up-to-date"
    assert states["filter"] == "missing" and states["folds"] == "missing"
    ran = _run(fresh)
    assert [s for s, a in ran.items() if a == "skipped"] == ["synth", "prepare"]
    _all_up_to_date(fresh)


def test_deleted_artifact_version_is_missing_then_made_again(project: Path) -> None:
    version = (project / "tiny" / "split.csv").resolve().parent.parent
    shutil.rmtree(version)  # as a user reclaims space: rm -r
    status = _status(project)
    assert status["split"]["state"] == "missing"
    assert "outs.output (tiny/split.csv) is missing" in status["split"]["reason"]
    assert status["pairs"]["state"] == "changed" and "upstream split" in status["pairs"]["reason"]
    assert status["folds"]["state"] == "up-to-date"
    ran = _run(project)
    assert ran["split"] == "ran" and ran["folds"] == "skipped" and ran["filter"] == "skipped"
    assert version.is_dir()  # the same outputs: the same version folder, made again
    _all_up_to_date(project)


@pytest.mark.parametrize("folders", [False, True], ids=["files-read-only", "all-read-only"])
def test_hand_edited_read_only_artifact_is_reported_and_replaced(
    project: Path, folders: bool
) -> None:
    target = (project / "tiny" / "split.csv").resolve()
    version = target.parent.parent
    target.chmod(0o644)
    target.write_text("edited by hand\n", encoding="utf-8")
    target.chmod(0o444)
    if folders:  # chmod -R a-w on the version folder
        for folder in (target.parent, version):
            folder.chmod(folder.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    status = _status(project)
    assert status["split"]["state"] == "changed"
    assert f"its files in {version} were edited" in status["split"]["reason"]
    ran = _run(project)
    assert [s for s, a in ran.items() if a == "ran"] == ["split", "pairs", "convert"]
    assert "edited" not in (project / "tiny" / "split.csv").read_text(encoding="utf-8")
    assert (project / "tiny" / "split.csv").resolve() == target  # the same version, made again
    _all_up_to_date(project)


def test_second_run_at_once_names_the_first_and_touches_nothing(project: Path) -> None:
    edit(project / "tiny.yaml", "k: 3", "k: 4")  # something to do
    leftover = project / STORE / "folds" / STAGING  # what a killed run left: not cleaned
    leftover.mkdir()
    lock = (project / "tiny.lock").read_bytes()
    links = _links(project)
    cache = (project / STORE / ".hashes.sqlite").read_bytes()
    with exclusive(project / STORE):  # held the way a running `fmlkit run` holds it
        result = fmlkit("run", "tiny.yaml", cwd=project)
    line = refused(result, says=["another `fmlkit run`", f"process {os.getpid()}", "running"])
    assert "nothing was done" in line
    assert (project / "tiny.lock").read_bytes() == lock
    assert _links(project) == links
    assert (project / STORE / ".hashes.sqlite").read_bytes() == cache
    assert leftover.is_dir()
    assert _run(project)["folds"] == "ran"  # once the first has finished


def test_status_while_a_stage_runs_answers_at_once(project: Path) -> None:
    """`fmlkit run` stopped inside a stage (SIGSTOP from the test hook: as a long stage
    would be) holds no lock on the hash cache: `fmlkit status` answers at once, without
    a warning, and truthfully."""
    old = time.time() - 3600  # files older than the racy window: their hashes get cached
    for path in (project / STORE).rglob("*"):
        os.utime(path, (old, old), follow_symlinks=False)
    edit(project / "tiny.yaml", "test_fraction: 0.34", "test_fraction: 0.5")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fmlkit", "run", "tiny.yaml"],
        cwd=project,
        env={**os.environ, FAULT_ENV: "staged@split:SIGSTOP"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _, wait_status = os.waitpid(proc.pid, os.WUNTRACED)  # until it stops itself
        assert os.WIFSTOPPED(wait_status)
        started = time.monotonic()
        result = fmlkit("status", "tiny.yaml", cwd=project)
        assert time.monotonic() - started < 30  # not the 60 s a writer waits for a lock
    finally:
        end_session(proc)
    succeeded(result)
    assert result.stderr == ""
    states = dict(line.split()[:2] for line in result.stdout.splitlines())
    assert states["split"] == "changed" and states["filter"] == "up-to-date"
