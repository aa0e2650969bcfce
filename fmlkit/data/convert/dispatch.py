"""`fmlkit convert`'s entry point: which conversion a pair of paths asks for, and running it.

=========================================  ==========  ===============================
INPUT                                      OUTPUT      conversion
=========================================  ==========  ===============================
``X.rec`` (``X.idx`` beside it, or none)   directory   `rec_to_parquet`
``X.bin`` (InsightFace verification set)   directory   `bin_to_parquet` (+ _pairs.csv)
dataset_info ``.csv``/``.parquet`` + root  directory   `table_to_parquet`
image folder tree ``label/…/file``         directory   `folder_to_parquet`
Parquet dataset (has ``_manifest.json``)   ``Y.rec``   `parquet_to_rec` (+ .idx, property)
Parquet dataset                            directory   `parquet_to_folder`
=========================================  ==========  ===============================
"""

from __future__ import annotations

import os
from pathlib import Path

from fmlkit.choices import Target
from fmlkit.data.convert.from_rec import ConvertReport
from fmlkit.data.formats.parquet import MANIFEST, SHARD_BYTES
from fmlkit.errors import InputError

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def infer_conversion(source: Path, output: Path, to: Target | None = None) -> str:
    """The name of the conversion from ``source`` to ``output`` (see the module table).

    Raises:
        InputError: the input is missing, or the pair (or ``to``) names no conversion.
    """
    if not source.exists():
        raise InputError(f"input {source} does not exist")
    suffix = source.suffix.lower()
    if source.is_file() and suffix in (".rec", ".bin", *TABLE_SUFFIXES):
        kind = {".rec": "rec_to_parquet", ".bin": "bin_to_parquet"}.get(suffix, "table_to_parquet")
        wanted: Target = "parquet"
    elif source.is_dir() and (source / MANIFEST).is_file():
        wanted = to or ("rec" if output.suffix.lower() == ".rec" else "folder")
        kind = {"rec": "parquet_to_rec", "folder": "parquet_to_folder"}.get(wanted, "")
    elif source.is_dir():
        kind, wanted = "folder_to_parquet", "parquet"
    else:
        raise InputError(
            f"cannot tell what {source} is: expected a .rec, a .bin, a dataset_info table, an "
            "image folder or a Parquet dataset directory"
        )
    if (to is not None and to != wanted) or not kind:
        raise InputError(f"cannot convert {source} to {to or wanted}: see `fmlkit convert --help`")
    if wanted == "rec" and output.suffix.lower() != ".rec":
        raise InputError(f"a RecordIO output must end in .rec, not {output.name}")
    return kind


def convert(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    to: Target | None = None,
    root: str | os.PathLike[str] | None = None,
    skip_bad: bool = False,
    shard_bytes: int = SHARD_BYTES,
    workers: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
    overwrite: bool = False,
) -> ConvertReport:
    """Run the conversion `infer_conversion` names for ``source`` → ``output``.

    ``shuffle``/``seed`` apply to Parquet → rec only (a random row order for sequential
    readers); ``root`` to a dataset_info source only; ``workers`` to an image folder
    (scanning) and to a .rec (writing shards).
    """
    from fmlkit.data.convert import from_images as images
    from fmlkit.data.convert import from_parquet as parquet
    from fmlkit.data.convert import from_rec as rec

    src, out = Path(source), Path(output)
    kind = infer_conversion(src, out, to)
    if kind == "table_to_parquet" and root is None:
        raise InputError("a dataset_info table names files relative to its folder: give --root")
    if kind != "table_to_parquet" and root is not None:
        raise InputError(f"--root applies to a dataset_info input, not to {src}")
    if kind != "parquet_to_rec" and shuffle:
        raise InputError("--shuffle applies to Parquet → .rec only")
    if kind == "rec_to_parquet":
        return rec.rec_to_parquet(
            src,
            out,
            skip_bad=skip_bad,
            shard_bytes=shard_bytes,
            workers=workers,
            overwrite=overwrite,
        )
    if kind == "bin_to_parquet":
        return images.bin_to_parquet(src, out, overwrite=overwrite)
    if kind == "table_to_parquet":
        assert root is not None
        return images.table_to_parquet(
            src, out, root=root, skip_bad=skip_bad, shard_bytes=shard_bytes, overwrite=overwrite
        )
    if kind == "folder_to_parquet":
        return images.folder_to_parquet(
            src,
            out,
            workers=workers,
            skip_bad=skip_bad,
            shard_bytes=shard_bytes,
            overwrite=overwrite,
        )
    if kind == "parquet_to_rec":
        return parquet.parquet_to_rec(src, out, shuffle=shuffle, seed=seed, overwrite=overwrite)
    return parquet.parquet_to_folder(src, out, overwrite=overwrite)
