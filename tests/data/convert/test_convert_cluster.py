"""`fmlkit convert --cluster`: the same Parquet dataset as without it, on a real 2-worker
LocalCluster (a .rec's shards; a dataset_info's or an image folder's files and shards)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fmlkit.columns import CLASS_ID, IMAGE, KEY
from fmlkit.data.convert.from_images import table_to_parquet
from fmlkit.data.convert.from_rec import rec_to_parquet
from fmlkit.data.convert.table_cluster import plan_shards
from fmlkit.data.formats.parquet import ParquetDatasetWriter, read_manifest
from tests.conftest import SynthTree
from tests.dask_kill import kill_workers, local_scheduler, seen_here_only
from tests.data.recs import flavour_a_rec
from tests.hostile.check import fmlkit, refused, succeeded

LABELS = [c for c in range(12) for _ in range(c % 4 + 1)]  # 30 images in 12 classes


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """One LocalCluster of 2 worker processes for the module: its tcp:// address."""
    with local_scheduler(2) as address:
        yield address


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too), by relative path: its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _same_dataset(a: Path, b: Path, *, shards: int = 1) -> None:
    files = _files(a)
    assert "_manifest.parquet" in files and len(read_manifest(a).shards) >= shards
    assert _files(b) == files


def test_convert_folder_on_cluster_writes_the_local_dataset_byte_for_byte(
    synth_tree: SynthTree, scheduler: str, tmp_path: Path
) -> None:
    local, remote = tmp_path / "local", tmp_path / "cluster"
    args = ("--skip-bad",)
    succeeded(fmlkit("convert", synth_tree.root, local, "--workers", "2", *args))
    result = fmlkit("convert", synth_tree.root, remote, "--cluster", scheduler, *args)
    succeeded(result)
    _same_dataset(local, remote)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster", "local"]


def test_convert_folder_on_cluster_fails_on_a_bad_file_as_locally(
    synth_tree: SynthTree, scheduler: str, tmp_path: Path
) -> None:
    local = refused(fmlkit("convert", synth_tree.root, tmp_path / "l", "--workers", "2"))
    remote = refused(fmlkit("convert", synth_tree.root, tmp_path / "c", "--cluster", scheduler))
    assert remote == local.replace(str(tmp_path / "l"), str(tmp_path / "c"))
    assert "--skip-bad" in remote and ".jpg" in remote  # names the file, says what to do
    assert list(tmp_path.iterdir()) == []


def test_rec_to_parquet_on_cluster_writes_the_local_shards(scheduler: str, tmp_path: Path) -> None:
    rec = flavour_a_rec(tmp_path, LABELS)
    sizes = {"shard_bytes": 2000, "row_group_rows": 3}
    local = rec_to_parquet(rec, tmp_path / "local", workers=2, **sizes)
    remote = rec_to_parquet(rec, tmp_path / "cluster", cluster=scheduler, **sizes)
    assert remote.rows == local.rows == len(LABELS) and remote.shards == local.shards
    _same_dataset(tmp_path / "local", tmp_path / "cluster", shards=4)


def test_rec_to_parquet_on_cluster_survives_a_worker_killed_mid_task(
    scheduler: str, tmp_path: Path
) -> None:
    rec = flavour_a_rec(tmp_path, LABELS)
    sizes = {"shard_bytes": 2000, "row_group_rows": 3}
    rec_to_parquet(rec, tmp_path / "local", workers=1, **sizes)
    with kill_workers(scheduler, tmp_path / "killed", "_write_rec_shard") as marker:
        rec_to_parquet(rec, tmp_path / "cluster", cluster=scheduler, **sizes)
    assert marker.read_text().startswith("_write_rec_shard")  # a worker did die in a task
    _same_dataset(tmp_path / "local", tmp_path / "cluster", shards=4)


def test_convert_command_rec_on_cluster_equals_local(scheduler: str, tmp_path: Path) -> None:
    rec = flavour_a_rec(tmp_path, LABELS)
    succeeded(fmlkit("convert", rec, tmp_path / "local", "--shard-size", "2KB"))
    succeeded(
        fmlkit("convert", rec, tmp_path / "cluster", "--shard-size", "2KB", "--cluster", scheduler)
    )
    _same_dataset(tmp_path / "local", tmp_path / "cluster")  # one shard: 1,000-row groups


def test_rec_to_parquet_refuses_an_output_the_workers_do_not_see(
    scheduler: str, tmp_path: Path
) -> None:
    rec = flavour_a_rec(tmp_path, LABELS)
    (tmp_path / "mine").mkdir()
    with seen_here_only(tmp_path / "mine") as private:
        result = fmlkit("convert", rec, private / "ds", "--cluster", scheduler)
    refused(result, says=["worker tcp://", f"{private}", "shared filesystem"])
    assert list((tmp_path / "mine").iterdir()) == []  # the staging folder is gone too


def _table_with_a_missing_file(scan: Path, folder: Path) -> Path:
    """``scan`` with one readable row's file renamed to a file that does not exist."""
    text = scan.read_text(encoding="utf-8")
    assert text.count("id00001/0001.jpg") == 1
    table = folder / "info.csv"
    table.write_text(text.replace("id00001/0001.jpg", "id00001/gone.jpg"), encoding="utf-8")
    return table


def test_table_to_parquet_on_cluster_writes_the_local_shards(
    synth_tree: SynthTree, synth_scan: Path, scheduler: str, tmp_path: Path
) -> None:
    table = _table_with_a_missing_file(synth_scan, tmp_path)
    sizes = {"shard_bytes": 30_000, "row_group_rows": 7, "skip_bad": True, "root": synth_tree.root}
    local = table_to_parquet(table, tmp_path / "local", **sizes)
    remote = table_to_parquet(table, tmp_path / "cluster", cluster=scheduler, **sizes)
    assert remote.bad == local.bad and len(local.bad) == 5  # 4 error rows, the missing file
    assert "unreadable: No such file or directory" in {bad.reason for bad in local.bad}
    assert (remote.rows, remote.classes, remote.shards) == (local.rows, local.classes, local.shards)
    _same_dataset(tmp_path / "local", tmp_path / "cluster", shards=4)


def test_table_to_parquet_on_cluster_fails_on_a_bad_file_as_locally(
    synth_tree: SynthTree, synth_scan: Path, scheduler: str, tmp_path: Path
) -> None:
    table = _table_with_a_missing_file(synth_scan, tmp_path)
    errors = []
    for out, more in (("local", ()), ("cluster", ("--cluster", scheduler))):
        result = fmlkit("convert", table, tmp_path / out, "--root", synth_tree.root, *more)
        errors.append(refused(result, says="--skip-bad").replace(out, "OUT"))
    assert errors[0] == errors[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["info.csv"]


def test_table_to_parquet_on_cluster_survives_a_worker_killed_mid_shard(
    synth_tree: SynthTree, synth_scan: Path, scheduler: str, tmp_path: Path
) -> None:
    sizes = {"shard_bytes": 30_000, "row_group_rows": 7, "skip_bad": True, "root": synth_tree.root}
    table_to_parquet(synth_scan, tmp_path / "local", **sizes)
    with kill_workers(scheduler, tmp_path / "killed", "write_table_shard") as marker:
        table_to_parquet(synth_scan, tmp_path / "cluster", cluster=scheduler, **sizes)
    assert marker.read_text().startswith("write_table_shard")
    _same_dataset(tmp_path / "local", tmp_path / "cluster", shards=4)


@pytest.mark.parametrize(
    ("sizes", "shard_bytes", "group"),
    [
        ([5] * 10, 10, 2),
        ([5] * 10, 11, 2),
        ([1, 9, 0, 0, 30, 2, 2], 10, 3),
        ([], 1, 1),
        ([4], 1, 5),
    ],
)
def test_plan_shards_cuts_where_the_writer_does(
    tmp_path: Path, sizes: list[int], shard_bytes: int, group: int
) -> None:
    with ParquetDatasetWriter(
        tmp_path / "ds", class_names=["a"], shard_bytes=shard_bytes, row_group_rows=group
    ) as writer:
        for key, size in enumerate(sizes):
            writer.write({IMAGE: {"bytes": b"x" * size, "path": "p"}, CLASS_ID: 0, KEY: key})
    written = [int(s["rows"]) for s in read_manifest(tmp_path / "ds").shards]
    planned = [end - first for first, end in plan_shards(sizes, shard_bytes, group)]
    assert planned == (written if sizes else [])


def test_convert_refuses_cluster_where_nothing_runs_on_workers(
    scheduler: str, tmp_path: Path
) -> None:
    rec = flavour_a_rec(tmp_path, LABELS)
    rec_to_parquet(rec, tmp_path / "ds")
    result = fmlkit("convert", tmp_path / "ds", tmp_path / "images", "--cluster", scheduler)
    refused(result, says=["--cluster", ".rec, dataset_info or image folder", "drop --cluster"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "train.idx", "train.rec"]


def test_convert_refuses_a_malformed_cluster_address(tmp_path: Path) -> None:
    rec = flavour_a_rec(tmp_path, LABELS)
    result = fmlkit("convert", rec, tmp_path / "ds", "--cluster", "local:many")
    refused(result, says="--cluster", code=2)
    assert not (tmp_path / "ds").exists()
