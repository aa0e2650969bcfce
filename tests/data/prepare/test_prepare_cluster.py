"""`fmlkit prepare --cluster`: the same table as without it, on a real 2-worker LocalCluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fmlkit.cluster import ClusterError
from fmlkit.data.prepare.scan import ScanReport, scan_dataset
from fmlkit.progress import set_progress
from tests.bad_tree import BadTree
from tests.conftest import SynthTree
from tests.dask_kill import kill_workers, local_scheduler, seen_here_only
from tests.hostile.check import fmlkit, refused, succeeded


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """One LocalCluster of 2 worker processes for the module: its tcp:// address."""
    with local_scheduler(2) as address:
        yield address


def _same_report(a: ScanReport, b: ScanReport) -> None:
    assert (a.images, a.readable, a.labels) == (b.images, b.readable, b.labels)
    assert (a.errors, a.skipped, a.notices) == (b.errors, b.skipped, b.notices)


def test_prepare_on_cluster_writes_the_local_table_byte_for_byte(
    synth_tree: SynthTree, scheduler: str, tmp_path: Path
) -> None:
    local, remote = tmp_path / "local.csv", tmp_path / "cluster.csv"
    succeeded(fmlkit("prepare", synth_tree.root, "-o", local, "--workers", "2"))
    result = fmlkit("prepare", synth_tree.root, "-o", remote, "--cluster", scheduler)
    succeeded(result)
    assert "with 2 worker(s)" in result.stdout
    assert remote.read_bytes() == local.read_bytes()
    assert not list(tmp_path.glob(".*"))  # no temporary file left beside the tables


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_scan_dataset_on_cluster_records_bad_files_as_locally(
    bad_tree: BadTree, scheduler: str, tmp_path: Path, suffix: str
) -> None:
    hashes = ("phash", "dhash")
    local = scan_dataset(bad_tree.root, tmp_path / f"l{suffix}", hashes=hashes, chunk_files=3)
    remote = scan_dataset(
        bad_tree.root, tmp_path / f"c{suffix}", hashes=hashes, chunk_files=3, cluster=scheduler
    )
    assert {"corrupt", "truncated", "empty", "not_image"} <= set(remote.errors)
    _same_report(local, remote)
    assert remote.workers == 2
    assert (tmp_path / f"c{suffix}").read_bytes() == (tmp_path / f"l{suffix}").read_bytes()


def test_scan_dataset_on_cluster_survives_a_worker_killed_mid_task(
    synth_tree: SynthTree, scheduler: str, tmp_path: Path
) -> None:
    local = scan_dataset(synth_tree.root, tmp_path / "local.csv", workers=1, chunk_files=16)
    with kill_workers(scheduler, tmp_path / "killed", "probe_chunk") as marker:
        remote = scan_dataset(
            synth_tree.root, tmp_path / "cluster.csv", chunk_files=16, cluster=scheduler
        )
    assert marker.read_text().startswith("probe_chunk")  # a worker did die in a task
    _same_report(local, remote)
    assert (tmp_path / "cluster.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()


def test_scan_dataset_on_cluster_stops_on_a_chunk_that_kills_every_worker(
    synth_tree: SynthTree, scheduler: str, tmp_path: Path
) -> None:
    out = tmp_path / "info.csv"
    with (
        kill_workers(scheduler, tmp_path / "killed", "probe_chunk", times=4),
        pytest.raises(
            ClusterError, match=r"files id00000/0000\.jpg … .* in /.*demo_data\) killed 4 workers"
        ),
    ):
        scan_dataset(synth_tree.root, out, chunk_files=1000, cluster=scheduler)
    assert list(tmp_path.iterdir()) == [tmp_path / "killed"]  # no table, no temporary file


def test_scan_dataset_on_cluster_reuses_previous_rows_as_locally(
    synth_tree: SynthTree, synth_scan: Path, scheduler: str, tmp_path: Path
) -> None:
    local = scan_dataset(synth_tree.root, tmp_path / "l.csv", previous=synth_scan, workers=1)
    remote = scan_dataset(
        synth_tree.root, tmp_path / "c.csv", previous=synth_scan, cluster=scheduler
    )
    assert (remote.reused, remote.read) == (local.reused, local.read) and remote.reused > 0
    assert (tmp_path / "c.csv").read_bytes() == (tmp_path / "l.csv").read_bytes()


def test_scan_dataset_on_cluster_shows_shards_and_images_unless_quiet(
    synth_tree: SynthTree, scheduler: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    try:
        set_progress(True)
        scan_dataset(synth_tree.root, tmp_path / "a.csv", chunk_files=40, cluster=scheduler)
        shown = capfd.readouterr().err
        set_progress(False)  # what -q does
        scan_dataset(synth_tree.root, tmp_path / "b.csv", chunk_files=40, cluster=scheduler)
        quiet = capfd.readouterr().err
    finally:
        set_progress(None)
    name = synth_tree.root.name
    assert f"prepare {name} shards" in shown and "shard" in shown
    assert f"prepare {name}:" in shown and "img" in shown
    assert quiet == ""


def test_prepare_refuses_a_folder_the_workers_do_not_see(
    synth_tree: SynthTree, scheduler: str, tmp_path: Path
) -> None:
    out = tmp_path / "info.csv"
    with seen_here_only(synth_tree.root) as private:
        result = fmlkit("prepare", private, "-o", out, "--cluster", scheduler)
    refused(result, says=["worker tcp://", f"{private} does not exist", "shared filesystem"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("address", ["local:0", "http://node:8786", "node"])
def test_prepare_refuses_a_malformed_cluster_address(
    synth_tree: SynthTree, tmp_path: Path, address: str
) -> None:
    out = tmp_path / "info.csv"
    refused(
        fmlkit("prepare", synth_tree.root, "-o", out, "--cluster", address),
        says="--cluster",
        code=2,
    )
    assert not out.exists()


def test_prepare_on_a_local_cluster_prints_no_dask_logs(
    synth_tree: SynthTree, tmp_path: Path
) -> None:
    """The command as users run it, in a process of its own with the CLI's logging: Dask's
    INFO logs (scheduler start, workers, closed connections) stay off stderr; -v shows
    fmlkit's own line."""
    from tests.hostile.check import fmlkit_process

    out = tmp_path / "t.csv"
    done = fmlkit_process("prepare", synth_tree.root, "-o", out, "--cluster", "local:2")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and out.is_file()
    verbose = fmlkit_process("-v", "prepare", synth_tree.root, "-o", tmp_path / "v.csv",
                             "--cluster", "local:2")  # fmt: skip
    assert "2 worker(s) on local:2" in verbose.stderr and "Traceback" not in verbose.stderr
