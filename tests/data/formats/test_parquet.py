from __future__ import annotations

from pathlib import Path

from fmlkit.columns import KEY
from fmlkit.data.formats.parquet import ParquetDatasetWriter, iter_batches, take_rows


def _dataset(path: Path, rows: int) -> Path:
    with ParquetDatasetWriter(
        path, class_names=["a", "b"], row_group_rows=3, shard_bytes=50
    ) as writer:
        for key in range(rows):
            image = {"bytes": b"x" * 10, "path": f"{key}.jpg"}
            writer.write({"image": image, "label": key % 2, "key": key})
    return path


def test_take_rows_reads_the_rows_asked_for_across_row_groups_and_shards(tmp_path: Path) -> None:
    ds = _dataset(tmp_path / "ds", 10)  # row groups of 3, two row groups per shard
    assert len(list((tmp_path / "ds").glob("part-*.parquet"))) == 2
    parts = list(take_rows(ds, [9, 0, 4, 4, 5], [KEY]))
    assert [part[KEY].to_pylist() for part in parts] == [[0], [4, 5], [9]]
    assert list(take_rows(ds, [], [KEY])) == []
    assert sum(len(b) for b in iter_batches(ds)) == 10
