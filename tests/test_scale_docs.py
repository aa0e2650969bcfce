"""docs/scale.md's SLURM recipe, tested without SLURM: examples/slurm_cluster.py (which the
page shows verbatim) builds a dask-jobqueue cluster whose job script starts single-thread
workers of the configured Python; that very command line, run here instead of by sbatch,
joins the scheduler the script started, and `fmlkit prepare --cluster tcp://…` on it writes
the same table as without a cluster."""

from __future__ import annotations

import importlib.util
import logging
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import SynthTree
from tests.hostile.check import fmlkit, fmlkit_process, succeeded

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "slurm_cluster.py"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("slurm_cluster", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scale_md_shows_the_tested_example_verbatim() -> None:
    page = (ROOT / "docs" / "scale.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert EXAMPLE.read_text(encoding="utf-8") in blocks


def test_the_slurm_job_runs_workers_that_fmlkit_prepare_can_use(
    synth_tree: SynthTree, tmp_path: Path
) -> None:
    pytest.importorskip("dask_jobqueue")
    dask_logger = logging.getLogger("distributed")
    level = dask_logger.level
    dask_logger.setLevel(logging.ERROR)  # the scheduler runs in this process
    cluster = _example().make_cluster(port=0, dashboard="127.0.0.1:0")
    worker = None
    try:
        script = cluster.job_script()
        for line in ("#SBATCH -p cpu", "#SBATCH -A myproject", "#SBATCH --cpus-per-task=32",
                     "#SBATCH -t 04:00:00", "#SBATCH --exclusive"):  # fmt: skip
            assert line in script
        command = shlex.split(script.strip().splitlines()[-1])
        python = "/shared/envs/fmlkit/bin/python"
        assert command[:3] == [python, "-m", "distributed.cli.dask_worker"]
        assert command[3] == cluster.scheduler_address
        options = " ".join(command[4:])
        assert "--nthreads 1" in options and "--nworkers 32" in options
        # the job's command on this machine: our Python, 2 workers instead of 32
        here = [sys.executable, *command[1:]]
        here[here.index("--nworkers") + 1] = "2"
        here[here.index("--local-directory") + 1] = str(tmp_path / "scratch")
        worker = subprocess.Popen(here, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        from distributed import Client

        with Client(cluster.scheduler_address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)  # both processes of the "job" joined
        local, remote = tmp_path / "local.csv", tmp_path / "cluster.csv"
        succeeded(fmlkit("prepare", synth_tree.root, "-o", local, "--workers", "2"))
        # a process of its own, as a user runs it (the scheduler's logs stay in this one)
        result = fmlkit_process("prepare", synth_tree.root, "-o", remote, "--cluster",
                                cluster.scheduler_address)  # fmt: skip
        assert result.returncode == 0 and result.stderr == "", result.stderr
        assert "with 2 worker(s)" in result.stdout
        assert remote.read_bytes() == local.read_bytes()
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=60)
        cluster.close()
        dask_logger.setLevel(level)
