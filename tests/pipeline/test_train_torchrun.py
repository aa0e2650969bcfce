"""A train stage run under torchrun by `fmlkit run` (fmlkit/pipeline/launch.py), on CPU (gloo).

Two processes write the lock entry, provenance and checkpoints as a one-process stage does, and
the next run skips the stage; a rank that fails (an error found at run time, or a rank killed)
fails the stage with one error and leaves no output, lock entry or staging folder; two nodes
(two torchrun launches on this machine) meet at the endpoint, the second started with the line
the runner prints; bad launch params are refused before anything runs.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fmlkit.pipeline.launch import Launch, other_nodes_message
from fmlkit.pipeline.lock import read_lock
from fmlkit.train.checkpoint import FAULT_ENV
from tests.hostile.check import fmlkit, refused, succeeded
from tests.train.test_loop import write_images

CONFIG = """\
data: {image_size: 32}
model: {backbone: mobilefacenet, embedding_size: 32}
head: {name: cosface, args: {margin: 0.2, scale: 16.0}}
optim: {name: sgd, lr: 0.2}
train: {batch_size: 8, max_steps: 3, num_workers: 0, log_every: 1}
checkpoint: {every_steps: 3}
seed: 0
"""
# 2 processes × batch 8: lr 0.2 × 16 / 1024, poly-decayed to 2/3 after step 1 (1 process: half)
LR_STEP_1 = 0.2 * 16 / 1024 * 2 / 3


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_images(tmp_path_factory.mktemp("images"))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder holding cfg.yaml, as the current working directory."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "cfg.yaml").write_text(CONFIG, encoding="utf-8")
    monkeypatch.chdir(root)
    return root


def _pipeline(root: Path, images: Path, params: str) -> None:
    """t.yaml: one train stage on ``images`` with these params (a YAML flow mapping)."""
    info, folder = json.dumps(str(images / "info.csv")), json.dumps(str(images))
    (root / "t.yaml").write_text(
        "stages:\n"
        "  train:\n"
        "    run: train\n"
        f"    deps: {{config: cfg.yaml, data.dataset_info: {info}, data.root: {folder}}}\n"
        f"    params: {params}\n"
        "    outs: {output_dir: out/run}\n",
        encoding="utf-8",
    )


def _metrics(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _trained_by_two(root: Path) -> None:
    """out/run links to a version holding the checkpoints and metrics of a 2-process run."""
    run = root / "out" / "run"
    assert run.is_symlink() and (run / "checkpoints" / "last.pt").is_file()
    rows = _metrics(run)
    assert [r["step"] for r in rows] == ["1", "2", "3"]  # rank 0 alone wrote the table
    assert float(rows[0]["lr"]) == pytest.approx(LR_STEP_1, rel=1e-4)  # 2 processes' batch
    assert not (root / "artifacts" / "t" / "train" / ".staging").exists()


def _nothing_left(root: Path) -> None:
    """A failed stage: no lock entry, no output link, no version folder, no staging."""
    assert not (root / "t.lock").exists()
    assert not (root / "out" / "run").exists() and not (root / "out" / "run").is_symlink()
    store = root / "artifacts" / "t" / "train"
    assert not store.exists() or not list(store.iterdir()), list(store.iterdir())


def test_two_processes_write_the_lock_entry_and_checkpoints_and_the_next_run_skips(
    project: Path, images: Path
) -> None:
    _pipeline(project, images, "{device: cpu, nproc_per_node: 2}")
    result = fmlkit("run", "t.yaml")
    succeeded(result)
    assert result.stdout.count("trained 3 steps") == 1, result.stdout  # rank 0 alone reports
    _trained_by_two(project)
    entry = read_lock(project / "t.lock")["train"]
    assert entry.params == {"device": "cpu", "nproc_per_node": 2}
    assert set(entry.outs) == {"output_dir"} and entry.outs["output_dir"]["path"] == "out/run"
    version = (project / "out" / "run").resolve().parents[1]
    assert "nproc_per_node: 2" in (version / "provenance.yaml").read_text()
    lock = (project / "t.lock").read_bytes()

    again = fmlkit("run", "t.yaml")
    succeeded(again)
    assert "train: skipped" in again.stdout and (project / "t.lock").read_bytes() == lock

    _pipeline(project, images, "{device: cpu, nproc_per_node: 1}")
    dry = fmlkit("run", "t.yaml", "--dry-run")
    succeeded(dry)
    assert "train: would run — params.nproc_per_node: 2 → 1" in dry.stdout


def test_an_error_in_the_ranks_fails_the_stage_as_in_one_process(
    project: Path, images: Path
) -> None:
    # a split filter on a table without a split column: found when the data is read
    _pipeline(project, images, "{device: cpu, overrides: {data.split: nosuch}}")
    alone = refused(fmlkit("run", "t.yaml"), says="no split column")
    _nothing_left(project)
    _pipeline(project, images, "{device: cpu, nproc_per_node: 2, overrides: {data.split: nosuch}}")
    result = fmlkit("run", "t.yaml")
    error = refused(result, says=["stage train (train) failed", "no split column"])
    assert error == alone  # the same one error as the one-process stage
    assert "torch.distributed" not in result.stderr and "ChildFailedError" not in result.stderr
    _nothing_left(project)


def test_a_rank_killed_fails_the_stage_and_leaves_no_output(
    project: Path, images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAULT_ENV, "tmp-written@3")  # rank 0 SIGKILLs itself mid-save
    _pipeline(project, images, "{device: cpu, nproc_per_node: 2}")
    result = fmlkit("run", "t.yaml")
    error = refused(result, says="stage train (train) failed")
    # rank 0's kill is the cause; rank 1 then loses its peer (either may be seen first)
    assert re.search(r"rank [01] ended with (signal SIGKILL|exit code 1)", error), error
    _nothing_left(project)


def _processes_in(folder: Path) -> list[str]:
    """The command lines of the processes (other than this one) working in ``folder``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if (proc / "cwd").readlink() == folder.resolve():
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def test_sigterm_stops_torchrun_and_its_ranks_and_leaves_no_output(
    project: Path, images: Path
) -> None:
    """The signal comes once rank 0 has logged a step (the ranks are training), not at a time."""
    long = "{train.max_steps: 100000, checkpoint.every_steps: 100000}"
    _pipeline(project, images, f"{{device: cpu, nproc_per_node: 2, overrides: {long}}}")
    metrics = project / "artifacts/t/train/.staging/output_dir/run/metrics.csv"
    log = project / "run.err"
    with log.open("w") as stderr:
        runner = subprocess.Popen(
            [sys.executable, "-m", "fmlkit", "run", "t.yaml"],
            stdout=subprocess.DEVNULL, stderr=stderr, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while runner.poll() is None and time.monotonic() < deadline:
                if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2:
                    break
                time.sleep(0.2)
            assert runner.poll() is None, log.read_text()
            runner.send_signal(signal.SIGTERM)
            runner.wait(timeout=180)
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
    assert runner.returncode != 0 and "Traceback" not in log.read_text(), log.read_text()
    _nothing_left(project)
    deadline = time.monotonic() + 30  # the ranks are gone: torchrun waited for them
    while _processes_in(project) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _processes_in(project)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _line_for_other_nodes(log: Path, runner: subprocess.Popen[str]) -> str:
    """The command line the runner logs for the other node (waits until it is written)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and runner.poll() is None:
        lines = log.read_text(encoding="utf-8").splitlines()
        found = [line.strip() for line in lines if line.startswith("  cd ")]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no line for the other node:\n{log.read_text(encoding='utf-8')}")


def test_two_nodes_meet_at_the_endpoint_with_the_printed_line(
    project: Path, images: Path, tmp_path: Path
) -> None:
    endpoint = f"127.0.0.1:{_free_port()}"
    _pipeline(project, images, f"{{device: cpu, nnodes: 2, rdzv_endpoint: '{endpoint}'}}")
    out, err = project / "run.out", project / "run.err"
    elsewhere = tmp_path / "elsewhere"  # the line carries its own `cd`
    elsewhere.mkdir()
    with out.open("w") as stdout, err.open("w") as stderr:
        runner = subprocess.Popen(
            [sys.executable, "-m", "fmlkit", "run", "t.yaml"],
            stdout=stdout, stderr=stderr, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            line = _line_for_other_nodes(err, runner)
            assert f"--nnodes 2 --node-rank 1 --rdzv-endpoint {endpoint}" in line, line
            other = subprocess.run(
                ["bash", "-c", line], cwd=elsewhere, capture_output=True, text=True, timeout=240
            )
            code = runner.wait(timeout=240)
        finally:
            if runner.poll() is None:
                runner.send_signal(signal.SIGTERM)
                runner.wait(timeout=120)
    shown = f"{out.read_text()}\n{err.read_text()}"
    assert other.returncode == 0, other.stderr[-3000:]
    assert code == 0, shown
    assert "waits at " + endpoint in err.read_text()
    assert out.read_text().count("trained 3 steps") == 1 and "trained" not in other.stdout
    _trained_by_two(project)
    entry = read_lock(project / "t.lock")["train"]
    assert entry.params == {"device": "cpu", "nnodes": 2, "rdzv_endpoint": endpoint}


@pytest.mark.parametrize(
    ("params", "where", "says"),
    [
        ("{nproc_per_node: 0}", "params.nproc_per_node", "a whole number from 1 to 256"),
        ("{nproc_per_node: '2'}", "params.nproc_per_node", "found '2'"),
        ("{nproc_per_node: true}", "params.nproc_per_node", "found True"),
        ("{nproc_per_node: 1000}", "params.nproc_per_node", "from 1 to 256"),
        ("{nnodes: 0}", "params.nnodes", "a whole number from 1 to 4096"),
        ("{nnodes: 2}", "params", "missing rdzv_endpoint: nnodes 2 needs the HOST:PORT"),
        ("{nproc_per_node: 2, rdzv_endpoint: 'h:29500'}", "params.rdzv_endpoint", "nnodes > 1"),
        ("{nnodes: 2, rdzv_endpoint: node01}", "params.rdzv_endpoint", "expected HOST:PORT"),
        ("{nnodes: 2, rdzv_endpoint: 'node01:70000'}", "params.rdzv_endpoint", "HOST:PORT"),
        ("{nnodes: 2, rdzv_endpoint: ':29500'}", "params.rdzv_endpoint", "HOST:PORT"),
        ("{nproc_per_node: 2, device: cuda}", "params.device", "all 2 processes of a node"),
        ("{nprocs_per_node: 2}", "params.nprocs_per_node", "did you mean 'nproc_per_node'"),
    ],
)
def test_bad_launch_params_are_refused_before_anything_runs(
    project: Path, images: Path, params: str, where: str, says: str
) -> None:
    _pipeline(project, images, params)
    result = fmlkit("run", "t.yaml")
    refused(result, says=["t.yaml: 1 problem", "nothing was run"])
    assert f"stages.train.{where}: " in result.stderr and says in result.stderr, result.stderr
    assert not (project / "t.lock").exists() and not (project / "artifacts").exists()


def test_an_unknown_param_lists_the_valid_ones_without_the_runners_own(
    project: Path, images: Path
) -> None:
    _pipeline(project, images, "{nproc: 2}")
    result = fmlkit("run", "t.yaml")
    refused(result, says="nothing was run")
    valid = "(valid: overrides, device, nproc_per_node, nnodes, rdzv_endpoint)"
    assert f"stages.train.params.nproc: unknown param of train {valid}" in result.stderr


def test_the_line_for_other_nodes_names_their_rank_and_quotes_paths() -> None:
    args = ["train", "--config", "my cfg.yaml", 'output_dir="a/b"']
    four = other_nodes_message(Launch(8, 4, "node01:29500"), args, stage="train")
    head, _, line = four.partition("\n  ")
    assert "node 0 of 4 and waits at node01:29500" in head and "NODE_RANK=1 … 3" in head
    assert line.startswith(f"cd {Path.cwd()} && ") or line.startswith("cd '")
    assert "--nnodes 4 --node-rank $NODE_RANK --rdzv-endpoint node01:29500" in line
    assert "--nproc-per-node 8 -m fmlkit train --config 'my cfg.yaml' 'output_dir=\"a/b\"'" in line
    two = other_nodes_message(Launch(1, 2, "[::1]:29500"), args, stage="train")
    assert "--node-rank 1 --rdzv-endpoint '[::1]:29500'" in two


LAUNCHER_FAILED = """\
W1207 05:06:03.198000 10647 torch/distributed/elastic/multiprocessing/api.py:1028] Sending process 10729 closing signal SIGTERM
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/torch/distributed/run.py", line 1142, in <module>
    main()
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
Root Cause (first observed failure):
[0]:
  rank      : 0 (local_rank: 0)
  exitcode  : -9 (pid: 10728)
============================================================
"""  # noqa: E501
RENDEZVOUS_TIMED_OUT = """\
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/torch/distributed/run.py", line 1142, in <module>
    main()
torch.distributed.DistStoreError: Timed out after 601 seconds waiting for clients. 1/2 clients joined.
"""  # noqa: E501


def test_the_relay_keeps_what_says_why_torchrun_failed(capsys: pytest.CaptureFixture[str]) -> None:
    from fmlkit.pipeline.launch import Relay

    rank = ["[rank1]: Traceback (most recent call last):", '[rank1]:   File "x.py", line 1']
    rank.append("[rank1]: RuntimeError: Connection closed by peer")
    relay = Relay()
    relay.stderr([*rank, "a warning", *LAUNCHER_FAILED.splitlines()])
    shown = capsys.readouterr().err
    assert shown.splitlines() == [
        "[rank1]: RuntimeError: Connection closed by peer (-v shows its traceback)",
        "a warning",
    ]
    assert relay.failure(1) == "rank 0 ended with signal SIGKILL (its messages are above)"
    relay = Relay()
    relay.stderr(["Error: bad data", "  on two lines", "Error: bad data", "  on two lines"])
    assert relay.failure(1) == "bad data\n  on two lines" and capsys.readouterr().err == ""
    relay = Relay()
    relay.stderr(RENDEZVOUS_TIMED_OUT.splitlines())
    assert relay.failure(1) == (
        "torchrun failed: DistStoreError: Timed out after 601 seconds waiting for clients. "
        "1/2 clients joined."
    )
    assert capsys.readouterr().err == "" and Relay().failure(3).startswith("torchrun ended")
