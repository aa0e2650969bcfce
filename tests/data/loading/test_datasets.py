from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from fmlkit.columns import CLASS_ID, ERROR, FILE_NAME, FOLD, IMAGE, KEY, SPLIT
from fmlkit.data.convert.from_images import table_to_parquet
from fmlkit.data.formats.parquet import ParquetDatasetWriter
from fmlkit.data.formats.table import read_table, write_table
from fmlkit.data.loading.datasets import (
    ImageFolderDataset,
    ParquetImageDataset,
    Skipped,
    collate_items,
    ensure_arrow_cache,
)
from fmlkit.data.loading.transforms import build_transforms
from fmlkit.data.prepare.scan import scan_dataset
from fmlkit.errors import InputError, SchemaError

# label → number of images; labels deliberately not in sorted order on disk
CLASSES = {"beta": 3, "alpha": 2, "gamma": 4}


@dataclass(frozen=True)
class Tree:
    root: Path
    info: Path  # dataset_info written by `fmlkit prepare`'s scan


def _image(seed: int, size: tuple[int, int] = (24, 20)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    """Nine small images in three class folders (PNG, JPEG, a greyscale PNG), scanned."""
    root = tmp_path / "images"
    seed = 0
    for label, count in CLASSES.items():
        (root / label).mkdir(parents=True)
        for k in range(count):
            seed += 1
            image = _image(seed)
            if k == 1:
                image.save(root / label / f"{k}.jpg", quality=90)
            else:
                image = image.convert("L") if k == 2 else image
                image.save(root / label / f"{k}.png")
    info = tmp_path / "dataset_info.csv"
    scan_dataset(root, info, workers=1)
    return Tree(root, info)


def _with_columns(tree: Tree, path: Path, **columns: list[object]) -> Path:
    df = read_table(tree.info)
    for name, values in columns.items():
        df[name] = pd.Series(values, dtype="Int64" if name == FOLD else object)
    write_table(df, path)
    return path


def test_image_folder_dataset_maps_labels_to_sorted_class_ids(tree: Tree) -> None:
    ds = ImageFolderDataset(tree.info, tree.root)
    assert ds.class_names == ["alpha", "beta", "gamma"]
    assert ds.num_classes == 3 and len(ds) == 9
    assert ds.labels.dtype == np.int64
    names = [name.split("/")[0] for name in ds.file_names]
    assert [ds.class_names[c] for c in ds.labels] == names
    item = ds[3]
    assert not isinstance(item, Skipped)
    assert item["image"].shape == (3, 112, 112) and item["image"].dtype == torch.float32
    assert (item["label"], item["index"]) == (int(ds.labels[3]), 3)
    with pytest.raises(IndexError):
        ds[9]


def test_image_folder_dataset_keeps_rows_without_an_error(tree: Tree, tmp_path: Path) -> None:
    errors = [""] * 9
    errors[0] = "corrupt"
    info = _with_columns(tree, tmp_path / "errors.csv", **{ERROR: errors})
    ds = ImageFolderDataset(info, tree.root)
    assert len(ds) == 8
    assert read_table(info)[FILE_NAME][0] not in ds.file_names


def test_image_folder_dataset_filters_by_fold_and_split(tree: Tree, tmp_path: Path) -> None:
    folds: list[object] = [0, 1, 2, 0, 1, 2, -1, pd.NA, 0]
    splits: list[object] = ["train"] * 5 + ["test"] * 3 + [""]
    info = _with_columns(tree, tmp_path / "split.parquet", **{FOLD: folds, SPLIT: splits})
    names = read_table(info)[FILE_NAME].tolist()
    ds = ImageFolderDataset(info, tree.root, folds=[0, -1])
    assert ds.file_names == [names[i] for i in (0, 3, 6, 8)]
    ds = ImageFolderDataset(info, tree.root, split="test")
    assert ds.file_names == names[5:8]  # gamma images only: one class
    assert ds.class_names == ["gamma"] and ds.labels.tolist() == [0, 0, 0]
    ds = ImageFolderDataset(info, tree.root, folds=[1, 2], split="train")
    assert ds.file_names == [names[i] for i in (1, 2, 4)]
    with pytest.raises(InputError, match="no usable rows"):
        ImageFolderDataset(info, tree.root, folds=[7])
    with pytest.raises(SchemaError, match="fmlkit split"):
        ImageFolderDataset(tree.info, tree.root, split="train")


def test_image_folder_dataset_rejects_a_wrong_root(tree: Tree, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a directory"):
        ImageFolderDataset(tree.info, tmp_path / "missing")
    with pytest.raises(InputError, match="does not exist"):
        ImageFolderDataset(tree.info, tmp_path)


def test_collate_items_drops_skipped_items_and_lists_them() -> None:
    item = {"image": torch.ones(3, 2, 2), "label": 4, "index": 7}
    skipped = Skipped(3, "a/x.jpg", "broken")
    batch = collate_items([item, skipped, item])
    assert batch["image"].shape == (2, 3, 2, 2)
    assert batch["label"].tolist() == [4, 4] and batch["label"].dtype == torch.int64
    assert batch["index"].tolist() == [7, 7]
    assert batch["skipped"] == [skipped]
    empty = collate_items([skipped])
    assert empty["image"].shape[0] == 0 and empty["label"].shape == (0,)


def test_corrupt_images_are_skipped_and_counted_through_dataloader_workers(tree: Tree) -> None:
    ds = ImageFolderDataset(tree.info, tree.root, transform=build_transforms(16, train=False))
    broken = {ds.file_names[1]: b"\xff\xd8\xff garbage", ds.file_names[6]: b""}
    for name, data in broken.items():  # damaged after the scan
        (tree.root / name).write_bytes(data)
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_items)
    seen, skipped = [], []
    for batch in loader:
        assert batch["image"].shape[1:] == (3, 16, 16)
        seen += batch["index"].tolist()
        skipped += batch["skipped"]
    assert sorted(seen) == [i for i in range(9) if i not in (1, 6)]
    assert sorted(s.file_name for s in skipped) == sorted(broken)
    assert all(s.reason for s in skipped)


@pytest.fixture
def parquet(tree: Tree, tmp_path: Path) -> Path:
    """``tree`` converted by `fmlkit convert` (every dataset_info column carried)."""
    folds: list[object] = [0, 1, 2, 0, 1, 2, 0, 1, 2]
    info = _with_columns(tree, tmp_path / "folds.csv", **{FOLD: folds})
    out = tmp_path / "parquet"
    table_to_parquet(info, out, root=tree.root, row_group_rows=4)
    return out


@pytest.mark.parametrize("cache", ["arrow", "memory"])
def test_parquet_dataset_gives_the_folder_datasets_pixels(
    tree: Tree, parquet: Path, tmp_path: Path, cache: str
) -> None:
    folder = ImageFolderDataset(tmp_path / "folds.csv", tree.root, folds=[0, 2])
    ds = ParquetImageDataset(parquet, folds=[0, 2], cache=cache, cache_dir=tmp_path / "c")
    assert (ds.file_names, ds.class_names) == (folder.file_names, folder.class_names)
    assert ds.labels.tolist() == folder.labels.tolist()
    assert len(ds) == 6
    for i in range(len(ds)):
        a, b = ds[i], folder[i]
        assert not isinstance(a, Skipped) and not isinstance(b, Skipped)
        assert torch.equal(a["image"], b["image"]) and a["label"] == b["label"]


def test_parquet_dataset_opens_its_cache_again_after_pickling(
    parquet: Path, tmp_path: Path
) -> None:
    ds = ParquetImageDataset(parquet, cache_dir=tmp_path / "c")
    first = ds[0]
    copy = pickle.loads(pickle.dumps(ds))
    assert copy._images is None  # no memory map travels to a worker
    again = copy[0]
    assert not isinstance(first, Skipped) and not isinstance(again, Skipped)
    assert torch.equal(first["image"], again["image"])
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_items)
    assert sorted(i for batch in loader for i in batch["index"].tolist()) == list(range(9))


def test_ensure_arrow_cache_is_built_once_per_dataset_content(
    parquet: Path, tree: Tree, tmp_path: Path
) -> None:
    import pyarrow as pa

    cache = ensure_arrow_cache(parquet, cache_dir=tmp_path / "c")
    built = cache.stat().st_mtime_ns
    assert ensure_arrow_cache(parquet, cache_dir=tmp_path / "c") == cache
    assert cache.stat().st_mtime_ns == built
    table = pa.ipc.open_file(pa.memory_map(str(cache))).read_all()
    names = read_table(tree.info)[FILE_NAME]
    assert table.column("bytes").to_pylist() == [(tree.root / n).read_bytes() for n in names]
    other = tmp_path / "other"
    table_to_parquet(tree.info, other, root=tree.root, row_group_rows=2)
    assert ensure_arrow_cache(other, cache_dir=tmp_path / "c") != cache  # other shards


def test_ensure_arrow_cache_reports_a_cache_dir_it_cannot_write(
    parquet: Path, tmp_path: Path
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with pytest.raises(InputError, match="cache='memory'"):
        ParquetImageDataset(parquet, cache_dir=blocked / "cache")
    assert len(ParquetImageDataset(parquet, cache="memory", cache_dir=blocked)) == 9


def test_parquet_dataset_without_names_uses_ids_metadata_and_paths(tmp_path: Path) -> None:
    def png(seed: int) -> bytes:
        data = io.BytesIO()
        _image(seed).save(data, format="PNG")
        return data.getvalue()

    names = [f"c{i}" for i in range(12)]
    with ParquetDatasetWriter(tmp_path / "ds", class_names=names) as writer:
        for key, label in enumerate([11, 2, 2, 10]):  # as from a .rec: ids only
            image = {"bytes": png(key), "path": f"{label}/{key}.png"}
            writer.write({IMAGE: image, CLASS_ID: label, KEY: key})
        writer.write({IMAGE: {"bytes": None, "path": "x/4.png"}, CLASS_ID: 2, KEY: 4})
    ds = ParquetImageDataset(tmp_path / "ds", cache_dir=tmp_path / "c")
    assert ds.class_names == ["c2", "c10", "c11"]  # id order, not name order
    assert ds.labels.tolist() == [2, 0, 0, 1, 0]
    assert ds.file_names == ["11/0.png", "2/1.png", "2/2.png", "10/3.png", "x/4.png"]
    assert isinstance(ds[4], Skipped) and not isinstance(ds[3], Skipped)


def test_dataset_seed_gives_each_item_its_augmentation_in_any_worker(tree: Tree) -> None:
    transform = build_transforms(16, train=True, random_resized_crop=(0.3, 1.0))
    ds = ImageFolderDataset(tree.info, tree.root, transform=transform, seed=5)

    def images(workers: int) -> torch.Tensor:
        loader = DataLoader(ds, batch_size=2, num_workers=workers, collate_fn=collate_items)
        return torch.cat([batch["image"] for batch in loader])

    torch.manual_seed(0)
    first = images(0)
    torch.manual_seed(1)
    assert torch.equal(images(2), first)  # other workers, other worker seeds: same images
    ds.set_epoch(1)
    assert not torch.equal(images(0), first)
    unseeded = ImageFolderDataset(tree.info, tree.root, transform=transform)
    torch.manual_seed(0)
    a = torch.cat([unseeded[i]["image"] for i in range(9)])
    torch.manual_seed(1)
    b = torch.cat([unseeded[i]["image"] for i in range(9)])
    assert not torch.equal(a, b)
