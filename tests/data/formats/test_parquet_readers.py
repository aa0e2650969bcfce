"""The Parquet contract (docs/formats.md#parquet-image-datasets), checked with the real readers:
a `fmlkit convert` output loads in Hugging Face ``datasets`` (``image`` an Image that decodes to
PIL, ``label`` a ClassLabel with the class names), polars, DuckDB, pandas and pyarrow, every row
once; and a dataset written the old way (``_manifest.json``) is still read by fmlkit."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars
import pyarrow.dataset as pds
import pytest
from PIL import Image

from fmlkit.columns import CLASS_ID, IMAGE, KEY
from fmlkit.data.convert.from_images import folder_to_parquet
from fmlkit.data.formats.parquet import iter_batches, read_manifest
from fmlkit.data.formats.parquet_checks import manifest_body
from fmlkit.data.formats.parquet_layout import LEGACY_MANIFEST, MANIFEST
from tests.hostile.check import fmlkit, succeeded

CLASSES = ("alice", "bob", "carol")
PER_CLASS = 2


def _size(label: int, n: int) -> tuple[int, int]:
    """A different (width, height) for every image, so a decoded image names its row."""
    return 20 + 4 * label + n, 16 + n


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`fmlkit convert` of a folder of 3 classes × 2 JPEGs, each of its own size. Read-only."""
    root = tmp_path_factory.mktemp("readers")
    for label, name in enumerate(CLASSES):
        (root / "images" / name).mkdir(parents=True)
        for n in range(PER_CLASS):
            image = Image.new("RGB", _size(label, n), (40 * label, 80, 20 * n))
            image.save(root / "images" / name / f"{n}.jpg", quality=90)
    folder_to_parquet(root / "images", root / "ds", workers=1)
    return root / "ds"


def _expected() -> dict[int, tuple[str, tuple[int, int]]]:
    """key → (class name, image size); keys number the rows in (class, file) order."""
    rows = [(name, _size(label, n)) for label, name in enumerate(CLASSES) for n in range(2)]
    return dict(enumerate(rows))


def test_every_file_in_the_folder_is_parquet(converted: Path) -> None:
    # polars' scan_parquet(DIR) refuses a folder holding any other (non-empty) file
    assert all(p.suffix == ".parquet" and p.is_file() for p in converted.iterdir())
    assert (converted / MANIFEST).is_file() and read_manifest(converted).rows == 6


def _hf_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> object:
    """`datasets`, kept off the network and out of the user's cache."""
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    import datasets  # imported here, after the variables are set

    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):  # read at import: set them too
        monkeypatch.setattr(datasets.config, name, True, raising=False)
    return datasets


def _check_hf(table: object) -> None:
    """``table``: a `datasets.Dataset` of the converted folder."""
    from datasets import ClassLabel
    from datasets import Image as HfImage

    features = table.features  # type: ignore[attr-defined]
    assert isinstance(features[IMAGE], HfImage)
    assert isinstance(features[CLASS_ID], ClassLabel)
    assert features[CLASS_ID].names == list(CLASSES)
    assert len(table) == 6  # type: ignore[arg-type]
    expected = _expected()
    for row in table:  # type: ignore[attr-defined]
        name, size = expected.pop(row[KEY])
        assert isinstance(row[IMAGE], Image.Image) and row[IMAGE].size == size
        assert features[CLASS_ID].int2str(row[CLASS_ID]) == name
    assert not expected  # every row once


def test_datasets_load_dataset_data_dir(
    converted: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    datasets = _hf_offline(monkeypatch, tmp_path)
    table = datasets.load_dataset(  # type: ignore[attr-defined]
        "parquet", data_dir=str(converted), split="train", cache_dir=str(tmp_path / "cache")
    )
    _check_hf(table)


def test_datasets_from_parquet(
    converted: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    datasets = _hf_offline(monkeypatch, tmp_path)
    table = datasets.Dataset.from_parquet(  # type: ignore[attr-defined]
        str(converted / "*.parquet"), cache_dir=str(tmp_path / "cache")
    )
    _check_hf(table)


def _keys_and_labels(keys: list[int], labels: list[int]) -> None:
    assert sorted(keys) == list(range(6))
    expected = _expected()
    assert [CLASSES[label] for _, label in sorted(zip(keys, labels, strict=True))] == [
        expected[k][0] for k in range(6)
    ]


def test_polars_scan_parquet_of_the_folder(converted: Path) -> None:
    frame = polars.scan_parquet(converted).select(KEY, CLASS_ID).collect()
    _keys_and_labels(frame[KEY].to_list(), frame[CLASS_ID].to_list())


def test_duckdb_read_parquet_of_the_folder(converted: Path) -> None:
    rows = duckdb.sql(f"SELECT key, label FROM read_parquet('{converted}')").fetchall()
    _keys_and_labels([r[0] for r in rows], [r[1] for r in rows])


def test_pandas_and_pyarrow_read_the_folder(converted: Path) -> None:
    import pandas as pd

    frame = pd.read_parquet(converted, columns=[KEY, CLASS_ID])
    _keys_and_labels(frame[KEY].tolist(), frame[CLASS_ID].tolist())
    table = pds.dataset(converted, format="parquet").to_table(columns=[KEY, CLASS_ID])
    _keys_and_labels(table[KEY].to_pylist(), table[CLASS_ID].to_pylist())


def test_a_dataset_written_the_old_way_is_still_read(converted: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    for shard in converted.glob("part-*.parquet"):
        (old / shard.name).write_bytes(shard.read_bytes())
    body = manifest_body(converted / MANIFEST)
    (old / LEGACY_MANIFEST).write_text(json.dumps(body, indent=2), encoding="utf-8")
    assert read_manifest(old).rows == 6
    assert sum(len(b) for b in iter_batches(old, [KEY, CLASS_ID])) == 6
    result = fmlkit("convert", old, tmp_path / "folder", "--to", "folder")
    succeeded(result)
    assert sorted(p.parent.name for p in (tmp_path / "folder").rglob("*.jpg")) == sorted(
        name for name in CLASSES for _ in range(PER_CLASS)
    )
