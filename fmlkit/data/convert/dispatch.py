"""`fmlkit convert`'s entry point: which conversion a pair of paths asks for, and running it.

=========================================  ==========  ===============================
INPUT                                      OUTPUT      conversion
=========================================  ==========  ===============================
``X.rec`` (``X.idx`` beside it, or none)   directory   `rec_to_parquet`
``X.bin`` (InsightFace verification set)   directory   `bin_to_parquet` (+ DIR.pairs.csv)
dataset_info ``.csv``/``.parquet`` + root  directory   `table_to_parquet`
image folder tree ``label/…/file``         directory   `folder_to_parquet`
Parquet dataset (has a manifest)           ``Y.rec``   `parquet_to_rec` (+ .idx, property)
Parquet dataset                            directory   `parquet_to_folder`
=========================================  ==========  ===============================

Whatever the conversion, the output never replaces what it reads (`check_output_apart`):
``fmlkit convert d d --overwrite`` would otherwise delete the source images; an existing
output (and the files written beside it: a .rec's .idx and property, a .bin's pair list) is
replaced only with ``--overwrite``, never in a pipeline's artifact store
(`fmlkit.io.check_output`), and only when it is a previous output of the same kind
(`check_output_replaceable`). ``fold``/``split`` convert the rows of one fold or split of a
dataset_info or Parquet source.
"""

from __future__ import annotations

import os
from pathlib import Path

from fmlkit.choices import Target
from fmlkit.data.convert.report import ConvertReport
from fmlkit.data.formats.parquet import SHARD_BYTES
from fmlkit.data.formats.parquet_layout import MANIFEST, manifest_path, pairs_path
from fmlkit.data.formats.recordio import MAGIC_BYTES
from fmlkit.errors import InputError, OptionError
from fmlkit.io import check_output

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
_ON_CLUSTER = ("rec_to_parquet", "table_to_parquet", "folder_to_parquet")  # take --cluster


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
    elif source.is_dir() and manifest_path(source) is not None:
        wanted = to or ("rec" if output.suffix.lower() == ".rec" else "folder")
        kind = {"rec": "parquet_to_rec", "folder": "parquet_to_folder"}.get(wanted, "")
    elif source.is_dir() and next(source.glob("*.parquet"), None) is not None:
        raise InputError(
            f"{source} holds Parquet files but no {MANIFEST}: not an fmlkit Parquet dataset, or "
            "its write did not finish (fmlkit writes the manifest last); re-create it with "
            "`fmlkit convert`"
        )
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


def check_output_apart(source: Path, output: Path, *, root: Path | None = None) -> None:
    """Refuse an ``output`` that would replace (or be written into) what is read.

    The output must not be the source (nor a .rec source's .idx), nor a folder holding it,
    nor lie inside a source folder; nor be, or hold, ``root`` (a table's image folder).
    Symlinks are followed: the paths compared are where the files really are.

    Raises:
        InputError: the output and an input overlap.
    """
    inputs = [("input", source)]
    if source.suffix.lower() == ".rec" and source.with_suffix(".idx").exists():
        inputs.append(("index", source.with_suffix(".idx")))
    if root is not None:
        inputs.append(("image folder (--root)", root))
    target = output.resolve()
    fix = "write the output somewhere else"
    for what, path in inputs:
        real = path.resolve()
        same = output.exists() and path.exists() and output.samefile(path)
        if target == real or same:
            raise InputError(f"the output {output} is the {what} {path}; {fix}")
        if target in real.parents:
            raise InputError(
                f"the output {output} holds the {what} {path}: writing it would replace the "
                f"{what}; {fix}"
            )
        if what == "input" and real in target.parents:
            raise InputError(
                f"the output {output} lies inside the input folder {path}; {fix}, outside it"
            )


def output_paths(output: Path, kind: str) -> list[Path]:
    """The paths a conversion of ``kind`` writes: ``output``, and beside it a .rec's .idx and
    ``property``, or a .bin dataset's pair list."""
    if kind == "parquet_to_rec":
        return [output, output.with_suffix(".idx"), output.with_name("property")]
    if kind == "bin_to_parquet":
        return [output, pairs_path(output)]
    return [output]


def check_output_replaceable(output: Path, kind: str) -> None:
    """Refuse an existing ``output`` that a conversion of ``kind`` must never replace, even
    with ``overwrite``: the current folder or one above it; for a Parquet dataset, anything
    but a Parquet dataset or an empty folder; for an image folder, anything but an empty
    folder or a ``label/file`` tree; for a .rec, anything but a RecordIO file.

    ``--overwrite`` replaces a previous output, never a folder of the user's (``fmlkit convert
    x.rec ~ --overwrite`` would otherwise delete the home folder).

    Raises:
        InputError: ``output`` (or the .idx beside a .rec output) is not what it may replace.
    """
    target = output.resolve()
    if target == Path.cwd().resolve() or target in Path.cwd().resolve().parents:
        raise InputError(
            f"the output {output} is the current folder or holds it; name a new folder"
        )
    if not output.exists():
        return
    fix = "remove it yourself if it may go, or choose another path"
    if kind == "parquet_to_rec":
        for path in (output, output.with_suffix(".idx")):
            if path.exists() and not _is_recordio(path):
                raise InputError(
                    f"{path} exists and is not a RecordIO file; --overwrite replaces only a "
                    f"previous .rec and .idx: {fix}"
                )
    elif kind == "parquet_to_folder":
        if not _is_image_folder(output):
            raise InputError(
                f"{output} exists and is not an image folder of label/file entries; --overwrite "
                f"replaces only a previous output of `--to folder`: {fix}"
            )
    elif not output.is_dir() or not (
        manifest_path(output) is not None or next(output.iterdir(), None) is None
    ):
        raise InputError(
            f"{output} exists and is not a Parquet dataset (no {MANIFEST}); --overwrite replaces "
            f"only a previous dataset: {fix}"
        )


def _is_recordio(path: Path) -> bool:
    """A regular file that is empty or starts with RecordIO's magic (an .idx: text)."""
    if not path.is_file():
        return False
    if path.suffix.lower() == ".idx":
        return True
    with path.open("rb") as f:
        head = f.read(4)
    return head in (b"", MAGIC_BYTES)


def _is_image_folder(path: Path) -> bool:
    """A folder whose entries are folders of regular files (what `--to folder` writes)."""
    if not path.is_dir() or path.is_symlink():
        return False
    for label in os.scandir(path):
        if not label.is_dir(follow_symlinks=False):
            return False
        for entry in os.scandir(label.path):
            if not entry.is_file(follow_symlinks=False):
                return False
    return True


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
    fold: int | None = None,
    split: str | None = None,
    overwrite: bool = False,
    cluster: str | None = None,
) -> ConvertReport:
    """Run the conversion `infer_conversion` names for ``source`` → ``output``.

    ``shuffle``/``seed`` apply to Parquet → rec only (a random row order for sequential
    readers); ``root`` to a dataset_info source only; ``workers`` to an image folder
    (scanning) and to a .rec (writing shards); ``cluster`` (the per-image work on a Dask
    cluster, `fmlkit.cluster`: ``tcp://host:port`` or ``local:N``) to a .rec, a dataset_info
    or an image folder; ``fold``/``split`` (the rows of one fold or split; rows with an
    error are then left out too) to a dataset_info source and to Parquet → rec.

    Raises:
        InputError: the paths name no conversion, an option does not apply to it, or the
            output would replace an input (`check_output_apart`) or something that is not a
            previous output (`check_output_replaceable`), ``overwrite`` or not; an existing
            output without ``overwrite``, or one in a pipeline's store (`check_output`).
        OptionError: both ``fold`` and ``split``.
        SchemaError: no fold/split column to select by.
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
    if cluster is not None and kind not in _ON_CLUSTER:
        raise InputError(
            f"--cluster applies to a .rec, dataset_info or image folder SOURCE (to Parquet), "
            f"not to {src} → {out}: this conversion runs in this process; drop --cluster"
        )
    selecting = fold is not None or split is not None
    if selecting and kind not in ("table_to_parquet", "parquet_to_rec"):
        raise InputError(
            f"--fold and --split apply to a dataset_info source or a Parquet → .rec "
            f"conversion, not to {src} → {out}"
        )
    if fold is not None and split is not None:
        raise OptionError("select the rows with one of {fold} or {split}, not both")
    check_output_apart(src, out, root=None if root is None else Path(root))
    check_output_replaceable(out, kind)
    for path in output_paths(out, kind):
        check_output(path, overwrite=overwrite)
    if kind == "rec_to_parquet":
        return rec.rec_to_parquet(
            src,
            out,
            skip_bad=skip_bad,
            shard_bytes=shard_bytes,
            workers=workers,
            overwrite=overwrite,
            cluster=cluster,
        )
    if kind == "bin_to_parquet":
        return images.bin_to_parquet(src, out, overwrite=overwrite)
    if kind == "table_to_parquet":
        assert root is not None
        return images.table_to_parquet(
            src,
            out,
            root=root,
            skip_bad=skip_bad,
            shard_bytes=shard_bytes,
            fold=fold,
            split=split,
            overwrite=overwrite,
            cluster=cluster,
        )
    if kind == "folder_to_parquet":
        return images.folder_to_parquet(
            src,
            out,
            workers=workers,
            skip_bad=skip_bad,
            shard_bytes=shard_bytes,
            overwrite=overwrite,
            cluster=cluster,
        )
    if kind == "parquet_to_rec":
        return parquet.parquet_to_rec(
            src, out, shuffle=shuffle, seed=seed, fold=fold, split=split, overwrite=overwrite
        )
    return parquet.parquet_to_folder(src, out, overwrite=overwrite)
