from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from fmlkit.data.convert import rec_to_parquet
from fmlkit.data.parquet_dataset import MANIFEST, iter_batches, read_manifest
from fmlkit.data.recordio import MAGIC_BYTES, IRHeader, RecordIOError, RecordWriter, pack


def _jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG")
    return out.getvalue()


def _flavour_a(path: Path, labels: list[int], *, identities: bool = True) -> Path:
    """An InsightFace-style .rec: header record 0, images 1..N, identity records after."""
    n, k = len(labels), max(labels) + 1
    rec = path / "train.rec"
    with RecordWriter(rec, path / "train.idx") as writer:
        writer.write(0, pack(IRHeader(2, (float(n + 1), float(n + 1 + k)))))
        for key, label in enumerate(labels, 1):
            image = _jpeg(key) + (MAGIC_BYTES if key % 2 else b"")  # some hold the magic
            writer.write(key, pack(IRHeader(0, float(label), id=key), image))
        if identities:
            for c in range(k):
                keys = [i for i, lab in enumerate(labels, 1) if lab == c]
                writer.write(n + 1 + c, pack(IRHeader(2, (float(keys[0]), float(keys[-1] + 1)))))
    return rec


def test_rec_to_parquet_rows_are_the_image_records(tmp_path: Path) -> None:
    labels = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    rec = _flavour_a(tmp_path, labels)
    report = rec_to_parquet(rec, tmp_path / "ds", row_group_rows=4)
    assert (report.rows, report.classes, report.flavour, report.warnings) == (9, 3, "A", ())
    table = pq.read_table(tmp_path / "ds").sort_by("key")
    assert table["key"].to_pylist() == list(range(1, 10))
    assert table["label"].to_pylist() == labels
    images = [img["bytes"] for img in table["image"].to_pylist()]
    expected = [_jpeg(k) + (MAGIC_BYTES if k % 2 else b"") for k in range(1, 10)]
    assert images == expected  # split records joined back, nothing truncated
    assert table["image"].to_pylist()[0]["path"] == "0/1.jpg"
    meta = json.loads(table.schema.metadata[b"huggingface"])["info"]["features"]
    assert meta["image"] == {"_type": "Image"}
    assert meta["label"] == {"names": ["0", "1", "2"], "_type": "ClassLabel"}
    manifest = read_manifest(tmp_path / "ds")
    assert manifest.rows == 9 and manifest.classes == 3 and manifest.source["flavour"] == "A"
    parquet = pq.ParquetFile(tmp_path / "ds" / "part-00000.parquet")
    assert parquet.num_row_groups == 3  # 4 + 4 + 1 rows
    assert parquet.metadata.row_group(0).column(0).compression == "UNCOMPRESSED"
    assert sum(b.num_rows for b in iter_batches(tmp_path / "ds")) == 9


def test_rec_to_parquet_without_idx_scans(tmp_path: Path) -> None:
    rec = tmp_path / "c.rec"
    with RecordWriter(rec, None) as writer:
        for key in range(5):
            writer.write(key, pack(IRHeader(0, float(key % 2)), _jpeg(key)))
    report = rec_to_parquet(rec, tmp_path / "ds")
    assert (report.rows, report.classes, report.flavour) == (5, 2, "C")


def test_rec_to_parquet_warns_when_identity_records_disagree(tmp_path: Path) -> None:
    labels = [0, 0, 1, 1]
    rec = tmp_path / "train.rec"
    with RecordWriter(rec, tmp_path / "train.idx") as writer:
        writer.write(0, pack(IRHeader(2, (5.0, 7.0))))
        for key, label in enumerate(labels, 1):
            writer.write(key, pack(IRHeader(0, float(label)), _jpeg(key)))
        writer.write(5, pack(IRHeader(2, (1.0, 4.0))))  # wrong: claims keys 1..3 for class 0
        writer.write(6, pack(IRHeader(2, (4.0, 5.0))))
    report = rec_to_parquet(rec, tmp_path / "ds")
    assert report.rows == 4 and pq.read_table(tmp_path / "ds")["label"].to_pylist() == labels
    assert any("1 of 2 identity records disagree" in w for w in report.warnings)


def test_rec_to_parquet_damaged_record_fails_and_leaves_nothing(tmp_path: Path) -> None:
    rec = _flavour_a(tmp_path, [0, 1, 1])
    with RecordWriter(tmp_path / "bad.rec", tmp_path / "bad.idx") as writer:
        writer.write(0, pack(IRHeader(0, 0.0), _jpeg(0)))
        writer.write(1, pack(IRHeader(0, 1.0), b""))  # zero-length image
        writer.write(2, pack(IRHeader(0, 1.0), _jpeg(2)))
    with pytest.raises(RecordIOError, match=r"key 1 at byte \d+: zero-length image"):
        rec_to_parquet(tmp_path / "bad.rec", tmp_path / "ds")
    assert not (tmp_path / "ds").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ds")]
    report = rec_to_parquet(tmp_path / "bad.rec", tmp_path / "ds", skip_bad=True)
    assert report.rows == 2 and [b.key for b in report.bad] == [1]
    assert "Skipped 1 bad records" in report.summary()
    assert rec.exists()


def test_rec_to_parquet_truncated_file_is_an_error_naming_the_offset(tmp_path: Path) -> None:
    rec = _flavour_a(tmp_path, [0, 0, 1], identities=False)
    rec.write_bytes(rec.read_bytes()[:-10])
    with pytest.raises(RecordIOError, match="truncated"):
        rec_to_parquet(rec, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_rec_to_parquet_refuses_an_existing_output(tmp_path: Path) -> None:
    rec = _flavour_a(tmp_path, [0, 1])
    (tmp_path / "ds").mkdir()
    with pytest.raises(Exception, match="already exists"):
        rec_to_parquet(rec, tmp_path / "ds")
    rec_to_parquet(rec, tmp_path / "ds", overwrite=True)
    assert (tmp_path / "ds" / MANIFEST).is_file()
