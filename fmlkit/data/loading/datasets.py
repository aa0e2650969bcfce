"""Training datasets: images listed in a dataset_info table under a folder, or a Parquet dataset.

Both are map-style torch Datasets whose items are dicts ``{"image": float32 C×H×W tensor,
"label": class id, "index": position in the dataset}``. Rows are kept when their ``error`` is
empty and, optionally, their ``fold`` is one of ``folds`` and their ``split`` is ``split``
(columns written by `fmlkit split`). Class ids are 0..C−1 over the kept rows, in sorted label
order; ``labels`` (int64 per item) feeds the samplers of `fmlkit.data.loading.samplers`.

**Undecodable images are skipped, never fatal.** An item whose bytes cannot be read or decoded
comes back as a `Skipped` (index, file name, reason) instead of a dict; `collate_items`, the
DataLoader's ``collate_fn``, drops it from the batch and lists it in ``batch["skipped"]``, which
travels from the worker processes to the training loop with the batch. A batch may therefore
hold fewer items than asked, even none (``batch["image"]`` then has 0 rows).

**Workers.** The datasets hold paths and arrays, never an open file: files and memory maps are
opened on first use in each process, so a dataset can be pickled into spawned or forked
DataLoader workers.

**Parquet random access.** `ParquetImageDataset` copies the image bytes once into an
uncompressed Arrow IPC file (`fmlkit.data.loading.arrow_cache.ensure_arrow_cache`) that every worker
memory-maps: reading an image is a slice of the map, with no Parquet decoding and no per-worker
copy, for any dataset size and any sampler (m-per-class needs true random access, which
row-group-aware shuffling would give up). ``cache="memory"`` reads the shards into each
worker's memory instead. Every Parquet read goes through the checks `fmlkit convert` makes
(`fmlkit.data.formats.parquet_checks`): a damaged or lying dataset (truncated shard, foreign
schema, a label that is not a class id) is an error naming the file and row when the dataset
is made, before any model is built; a row without image bytes is a `Skipped` item.

**Augmentation seeds.** With ``seed`` set, the transform of item ``i`` runs under torch's RNG
seeded from (seed, epoch, i) (`set_epoch`), so an item gets the same augmentation whichever
worker decodes it, and a run resumed mid-epoch sees the same images as an uninterrupted one
(an index drawn twice in one epoch, as m-per-class does for small classes, gets the same
augmentation twice). Without it the transform draws from the worker's RNG, which the
DataLoader seeds per worker. Set the epoch before creating the epoch's iterator (persistent
workers would not see it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate

from fmlkit.columns import CLASS_ID, ERROR, FILE_NAME, FOLD, LABEL, LABEL_NAME, SPLIT
from fmlkit.data.formats.images import decode_image
from fmlkit.data.loading.arrow_cache import ImageBytes
from fmlkit.data.loading.arrow_cache import default_cache_dir as default_cache_dir  # re-exported
from fmlkit.data.loading.arrow_cache import ensure_arrow_cache as ensure_arrow_cache
from fmlkit.data.loading.parquet_rows import parquet_rows
from fmlkit.data.loading.transforms import build_transforms
from fmlkit.errors import InputError, SchemaError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

Transform = Callable[[Image.Image], torch.Tensor]


@dataclass(frozen=True)
class Skipped:
    """An item that could not be used: its dataset index, file name and why."""

    index: int
    file_name: str
    reason: str


class Item(TypedDict):
    image: torch.Tensor  # float32 C×H×W, normalised
    label: int  # class id 0..C−1
    index: int  # position in the dataset


class Batch(TypedDict):
    image: torch.Tensor  # float32 B×C×H×W (B may be 0)
    label: torch.Tensor  # int64 B
    index: torch.Tensor  # int64 B
    skipped: list[Skipped]  # items dropped from this batch


def collate_items(items: Sequence[Item | Skipped]) -> Batch:
    """Stack items into a `Batch`; `Skipped` ones are left out and listed in ``skipped``.

    In a DataLoader worker the images are stacked straight into shared memory (torch's
    ``default_collate`` does it), so the batch reaches the main process without another copy.
    """
    kept = [item for item in items if not isinstance(item, Skipped)]
    images = [item["image"] for item in kept]
    return {
        "image": default_collate(images) if kept else torch.empty(0),
        "label": torch.tensor([item["label"] for item in kept], dtype=torch.int64),
        "index": torch.tensor([item["index"] for item in kept], dtype=torch.int64),
        "skipped": [item for item in items if isinstance(item, Skipped)],
    }


class ImageDataset(Dataset[Any]):
    """Base of the image datasets: rows, labels and the decode → transform of an item.

    Subclasses set the attributes below and implement `read`.

    Attributes:
        labels: class id of each item (int64).
        class_names: the label of each class id.
        file_names: each item's file name (relative to the image root).
    """

    labels: np.ndarray
    class_names: list[str]
    file_names: list[str]

    def __init__(self, *, transform: Transform | None, seed: int | None) -> None:
        self.transform: Transform = transform or build_transforms(train=False)
        self.seed = seed
        self.epoch = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def set_epoch(self, epoch: int) -> None:
        """The epoch that seeds augmentations when ``seed`` is set."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.labels)

    def item_seed(self, index: int) -> int | None:
        """The seed of item ``index``'s augmentation in this epoch, from (seed, epoch, index);
        None without ``seed``."""
        return None if self.seed is None else _item_seed(self.seed, self.epoch, index)

    def read(self, index: int) -> bytes | memoryview:
        """The encoded image of item ``index``."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> Item | Skipped:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is outside the dataset's {len(self)} items")
        try:
            image = decode_image(self.read(index))
        except Exception as e:  # any failure of reading or of PIL's decoders: skip the item
            reason = f"{type(e).__name__}: {e}"
            log.debug("skipped %s: %s", self.file_names[index], reason)
            return Skipped(index, self.file_names[index], reason)
        seed = self.item_seed(index)
        if seed is None:
            tensor = self.transform(image)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)
                tensor = self.transform(image)
        return {"image": tensor, "label": int(self.labels[index]), "index": index}

    def _set_rows(self, labels: Sequence[Any], file_names: Sequence[str]) -> None:
        """Class ids 0..C−1 of ``labels`` in sorted order, and the items' file names."""
        codes, names = _factorize(labels)
        self.labels = codes.astype(np.int64)
        self.class_names = [str(name) for name in names]
        self.file_names = list(file_names)


def _item_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0] >> 1)


def _factorize(values: Sequence[Any]) -> tuple[np.ndarray, Any]:
    import pandas as pd

    return pd.factorize(pd.Series(values), sort=True)


class ImageFolderDataset(ImageDataset):
    """The images of a dataset_info table (`fmlkit prepare`, `filter`, `split`), read from
    ``root/file_name``.

    Args:
        info: dataset_info CSV or Parquet.
        root: the folder the ``file_name`` column is relative to.
        transform: PIL image → tensor; default ``build_transforms(train=False)``: resized
            to 112 px and normalised.
        folds: keep rows whose ``fold`` is one of these (e.g. the training folds).
        split: keep rows whose ``split`` is this (``train`` or ``test``).
        seed: seed augmentations per item (see the module docstring); None: worker RNG.

    Raises:
        InputError: a missing table or root, a first file missing under root (the wrong root),
            no rows left after the filters, or file names leading outside root (absolute,
            or up through '..').
        SchemaError: no ``file_name``/``label`` column, or a filter's column is missing.
    """

    def __init__(
        self,
        info: str | os.PathLike[str],
        root: str | os.PathLike[str],
        *,
        transform: Transform | None = None,
        folds: Sequence[int] | None = None,
        split: str | None = None,
        seed: int | None = None,
    ) -> None:
        from fmlkit.data.formats.table import read_table

        super().__init__(transform=transform, seed=seed)
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"image root {self.root} is not a directory; pass the folder "
                             "the dataset_info's file names are relative to")  # fmt: skip
        df = read_table(info, required=[FILE_NAME, LABEL], what="dataset_info")
        df = df[select_rows(df, folds=folds, split=split, what=str(info))]
        self._set_rows(df[LABEL].tolist(), df[FILE_NAME].tolist())
        leaving = [n for n in self.file_names if _leaves(n)]
        if leaving:
            shown = ", ".join(repr(n) for n in leaving[:3])
            raise InputError(
                f"{info}: {len(leaving):,} file names lead outside the image root {self.root} "
                f"({shown}); they must be relative to it, without '..' up and out. Such "
                "files are never opened: fix the table (fmlkit prepare never writes such names)"
            )
        self._real_root = os.path.realpath(self.root) + os.sep
        first = self.root / self.file_names[0]
        if not first.is_file():
            raise InputError(
                f"{first} does not exist: is {self.root} the folder {info} was made from? "
                "Pass the image root the file names are relative to."
            )

    def read(self, index: int) -> bytes:
        """The bytes of row ``index``'s file; a symbolic link leading outside the root is
        not followed (the item is skipped, the reason recorded), as `fmlkit prepare` does."""
        path = os.path.realpath(f"{self.root}/{self.file_names[index]}")
        if not path.startswith(self._real_root):
            raise InputError(f"leads outside the image root {self.root} (a symbolic link?)")
        return _read_file(path)


def _leaves(name: str) -> bool:
    """Whether a table's file name leads outside its root by its text: absolute, or up
    through '..' (symbolic links are checked when the file is read)."""
    return Path(name).is_absolute() or os.path.normpath(name).split(os.sep, 1)[0] == ".."


def _read_file(path: str) -> bytes:
    """The bytes of a file, with plain system calls (half the time of ``Path.read_bytes``,
    which matters in the input pipeline's hot path)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        parts = [os.read(fd, max(os.fstat(fd).st_size, 1))]
        while parts[-1]:  # to the end, should a read come back short
            parts.append(os.read(fd, 1 << 20))
        return b"".join(parts)
    finally:
        os.close(fd)


class ParquetImageDataset(ImageDataset):
    """The images of a Parquet dataset written by `fmlkit convert`, with fast random access.

    A row's class is its ``label_name`` when the dataset has one (datasets made from a
    dataset_info), else its ``label`` id, named by the dataset's metadata. File names are the
    carried ``file_name`` column, else the ``image.path`` field.

    Args:
        path: the dataset directory (``part-*.parquet`` and their manifest).
        transform, folds, split, seed: as for `ImageFolderDataset` (``fold`` and ``split`` are
            the columns carried over from a dataset_info).
        cache: ``arrow``: read from the Arrow cache (`ensure_arrow_cache`, called here),
            memory-mapped; ``memory``: every shard's image bytes are read (and checked) into
            memory when the dataset is made, and again by each worker process (no cache file;
            for datasets far smaller than memory / workers).
        cache_dir: where the Arrow cache lives (default `default_cache_dir`).

    Raises:
        InputError: not a finished Parquet dataset, no rows, or none left after the filters.
        FormatError: a damaged or lying dataset: manifest, shard, row group, a label that is
            not a class id of the dataset, a null key or ``label_name`` (named, with the row).
        SchemaError: a shard without fmlkit's columns, shards whose columns disagree, or a
            filter's column missing.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        transform: Transform | None = None,
        folds: Sequence[int] | None = None,
        split: str | None = None,
        seed: int | None = None,
        cache: Literal["arrow", "memory"] = "arrow",
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(transform=transform, seed=seed)
        self.path = Path(path)
        df, names = parquet_rows(self.path)
        keep = select_rows(df, folds=folds, split=split, what=str(self.path))
        self.rows = np.flatnonzero(keep.to_numpy()).astype(np.int64)  # item -> dataset row
        df = df[keep]
        if LABEL_NAME in df:
            self._set_rows(df[LABEL_NAME].tolist(), df[FILE_NAME].tolist())
        else:  # class ids in id order, named from the metadata
            self._set_rows(df[CLASS_ID].tolist(), df[FILE_NAME].tolist())
            self.class_names = [names.get(int(i), i) for i in self.class_names]
        self.cache = cache
        self._images: ImageBytes | None = None
        if cache == "arrow":
            self._source = ensure_arrow_cache(self.path, cache_dir=cache_dir)
        else:  # read (and checked) now: a damaged image column is an error, not skipped rows
            self._source = self.path
            self._images = ImageBytes.open(self._source, arrow=False)

    def read(self, index: int) -> bytes | memoryview:
        if self._images is None:
            self._images = ImageBytes.open(self._source, arrow=self.cache == "arrow")
        return self._images.get(int(self.rows[index]))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_images"] = None  # maps and tables are opened again in each process
        return state


def select_rows(
    df: pd.DataFrame, *, folds: Sequence[int] | None, split: str | None, what: str
) -> pd.Series:
    """A boolean mask: rows with an empty ``error`` (if the column exists), whose ``fold`` is
    in ``folds`` and whose ``split`` equals ``split`` (filters left None are not applied).

    Raises:
        SchemaError: a filter's column is missing.
        InputError: no row is left.
    """
    import pandas as pd

    keep = pd.Series(True, index=df.index)
    if ERROR in df:
        keep &= df[ERROR].fillna("") == ""
    for column, wanted in ((FOLD, folds), (SPLIT, split)):
        if wanted is None:
            continue
        if column not in df:
            raise SchemaError(
                f"{what} has no {column} column, so it cannot be filtered by {column}; "
                f"add one with `fmlkit split` or remove the {column} filter"
            )
        values = [wanted] if isinstance(wanted, str) else list(wanted)
        keep &= df[column].isin(values).fillna(False).astype(bool)
    if not keep.any():
        found = {
            c: sorted(map(str, df[c].dropna().unique()))[:20] for c in (FOLD, SPLIT) if c in df
        }
        raise InputError(
            f"{what}: no usable rows with folds={folds} and split={split!r} (rows with an error "
            f"are never used); values found: {found or 'no fold or split column'}"
        )
    return keep
