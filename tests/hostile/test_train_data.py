"""`fmlkit train`, `fmlkit embed` and `fmlkit evaluate --retrieval` on damaged or lying Parquet
datasets: each refuses with one `Error:` line naming the file (and row) when the dataset is
made, before a model is built, leaving no run folder, checkpoint, embeddings or Arrow cache
behind; a row without image bytes is skipped and counted, like an undecodable image. The
damage is that of tests/hostile/test_convert.py: the same checks guard every Parquet read.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fmlkit.data.convert.from_rec import rec_to_parquet
from fmlkit.data.loading.arrow_cache import ensure_arrow_cache
from tests.data.recs import flavour_a_rec
from tests.hostile.check import fmlkit, nothing_complete, refused, succeeded
from tests.hostile.test_convert import (
    DAMAGE,
    LABELS,
    NO_IMAGE,
    _column,
    _edit_manifest,
    _image_type,
    _rewrite,
    _set_rows,
    _shard,
)

SHARD = "part-00000.parquet"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Parquet dataset of 5 images in 3 classes (``ds``, row groups of 2 rows), the empty
    config ``e.yaml``, and a 2-step run trained on it (``run/checkpoints/last.pt``)."""
    root = tmp_path_factory.mktemp("train_data")
    (root / "r").mkdir()
    rec_to_parquet(flavour_a_rec(root / "r", LABELS), root / "ds", row_group_rows=2, workers=1)
    (root / "e.yaml").write_text("{}\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(root / "cache"))
        succeeded(_train(root, root / "ds", root / "run"))
    return root


@pytest.fixture
def ds(base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the base dataset for a case to damage; the Arrow cache under
    ``tmp_path/cache`` (empty)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return Path(shutil.copytree(base / "ds", tmp_path / "ds"))


def _train(base: Path, ds: Path, out: Path, *extra: str) -> object:
    return fmlkit(
        "train",
        "--config",
        base / "e.yaml",
        f"data.parquet={ds}",
        "data.image_size=32",
        "model.backbone=mobilefacenet",
        "model.embedding_size=32",
        "head.name=cosface",
        "train.batch_size=2",
        "train.max_steps=2",
        "train.num_workers=0",
        f"output_dir={out}",
        "seed=3",
        *extra,
    )


def _caches(tmp_path: Path) -> list[Path]:
    """Arrow caches under the case's cache folder (temporary ones are hidden)."""
    return sorted((tmp_path / "cache").rglob("*.arrow"))


def _break_image_pages(ds: Path, group: int) -> None:
    """Overwrite the first page header of row group ``group``'s image bytes: the footer, the
    size and the other columns stay intact, so only reading the images finds the damage."""
    shard = ds / SHARD
    meta = pq.ParquetFile(shard).metadata.row_group(group)
    column = next(
        meta.column(i)
        for i in range(meta.num_columns)
        if meta.column(i).path_in_schema == "image.bytes"
    )
    with shard.open("r+b") as f:
        f.seek(column.data_page_offset)
        f.write(b"\xff" * 24)


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_or_lying_parquet_dataset_is_refused_by_train(
    case: str, base: Path, ds: Path, tmp_path: Path
) -> None:
    damage, says = DAMAGE[case]
    damage(ds)
    refused(_train(base, ds, tmp_path / "run"), says=says)
    nothing_complete(tmp_path / "run")
    assert _caches(tmp_path) == []


@pytest.mark.parametrize(
    "case", ["shard truncated, manifest agrees", "image is a string", "label -3", "null label"]
)
def test_a_damaged_parquet_dataset_is_refused_by_embed_and_evaluate(
    case: str, base: Path, ds: Path, tmp_path: Path
) -> None:
    damage, says = DAMAGE[case]
    damage(ds)
    checkpoint = base / "run" / "checkpoints" / "last.pt"
    out = tmp_path / "emb.parquet"
    refused(fmlkit("embed", "--checkpoint", checkpoint, "--input", ds, "-o", out), says=says)
    nothing_complete(out)
    args = ("--checkpoint", checkpoint, "--retrieval", "--input", ds, "-o", tmp_path / "eval")
    refused(fmlkit("evaluate", *args), says=says)
    nothing_complete(tmp_path / "eval")


@pytest.mark.parametrize("case", list(NO_IMAGE))
def test_a_dataset_without_any_image_bytes_trains_on_nothing_and_fails(
    case: str, base: Path, ds: Path, tmp_path: Path
) -> None:
    """Every row is skipped (counted, named in a warning); not one image: no checkpoint."""
    NO_IMAGE[case](ds)
    result = _train(base, ds, tmp_path / "run")
    refused(result, says=("not one image could be decoded", "4 skipped"))
    assert result.stderr.count("the row has no image bytes (null or empty)") == 4
    assert not list((tmp_path / "run").rglob("*.pt"))


def test_rows_without_image_bytes_are_skipped_and_counted(
    base: Path, ds: Path, tmp_path: Path
) -> None:
    images = _shard(ds).column("image").to_pylist()
    images[1]["bytes"] = None
    images[3] = {"bytes": b"", "path": images[3]["path"]}
    _column(ds, "image", pa.array(images, _image_type(ds)))
    for epochs in (1, 2):  # an epoch draws 4 of the 5 rows: both bad ones within two
        result = _train(base, ds, tmp_path / f"run{epochs}", f"train.max_steps={2 * epochs}")
        succeeded(result)
        warned = [line for line in result.stderr.splitlines() if "no image bytes" in line]
        assert f"; {len(warned)} images skipped" in result.stdout
    assert {images[1]["path"], images[3]["path"]} <= {w.split()[2].rstrip(":") for w in warned}
    assert (tmp_path / "run2" / "checkpoints" / "last.pt").is_file()
    out = tmp_path / "emb.parquet"
    checkpoint = base / "run" / "checkpoints" / "last.pt"
    result = fmlkit("embed", "--checkpoint", checkpoint, "--input", ds, "-o", out)
    succeeded(result)
    assert (
        "wrote 3 embeddings" in result.stdout and "2 images could not be decoded" in result.stdout
    )
    assert pq.read_table(out).num_rows == 3


def test_an_unreadable_image_column_leaves_no_arrow_cache(
    base: Path, ds: Path, tmp_path: Path
) -> None:
    """Footer, size and labels intact: the damage shows only when the cache reads the images."""
    _break_image_pages(ds, group=1)
    says = (SHARD, "row group 1 is unreadable")
    refused(_train(base, ds, tmp_path / "run"), says=says)
    nothing_complete(tmp_path / "run")
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # nor a temp file
    out = tmp_path / "emb.parquet"
    checkpoint = base / "run" / "checkpoints" / "last.pt"
    refused(fmlkit("embed", "--checkpoint", checkpoint, "--input", ds, "-o", out), says=says)
    nothing_complete(out)


def test_a_shard_rewritten_under_the_same_manifest_gets_a_new_cache(
    base: Path, ds: Path, tmp_path: Path
) -> None:
    """The manifest's sha256 is not verified on read: the cache is named by the files too, so
    a shard changed in place is never read through the cache of its old content."""
    old = ensure_arrow_cache(ds, cache_dir=tmp_path / "cache" / "fmlkit" / "arrow")
    NO_IMAGE["null image bytes"](ds)  # same manifest sha256, another file
    refused(_train(base, ds, tmp_path / "run"), says="not one image could be decoded")
    assert len(_caches(tmp_path)) == 2 and old in _caches(tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "fewer rows", "not arrow"])
def test_a_cache_that_falls_short_is_built_again(
    damage: str, ds: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache_dir = tmp_path / "c"
    cache = ensure_arrow_cache(ds, cache_dir=cache_dir)
    good = cache.read_bytes()
    if damage == "truncated":
        cache.write_bytes(good[: len(good) // 2])
    elif damage == "fewer rows":
        schema = pa.schema([pa.field("bytes", pa.binary())])
        with pa.OSFile(str(cache), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            writer.write_batch(pa.record_batch([pa.array([b"x"], pa.binary())], schema=schema))
    else:
        cache.write_text("hello")
    with caplog.at_level(logging.WARNING):
        assert ensure_arrow_cache(ds, cache_dir=cache_dir) == cache
    assert cache.read_bytes() == good
    assert "building it again" in caplog.text and str(cache) in caplog.text


def test_a_zero_row_dataset_is_refused_by_train(base: Path, ds: Path, tmp_path: Path) -> None:
    _rewrite(ds, _shard(ds).slice(0, 0))
    _edit_manifest(ds, lambda m: _set_rows(m, 0))
    refused(_train(base, ds, tmp_path / "run"), says=("has no rows", "nothing to read"))
    nothing_complete(tmp_path / "run")


def test_a_null_label_name_is_refused_by_train(base: Path, ds: Path, tmp_path: Path) -> None:
    names = pa.array(["a", "a", "b", "b", None], pa.string())
    _rewrite(ds, _shard(ds).append_column("label_name", names))
    refused(_train(base, ds, tmp_path / "run"), says=("row 4", "no label_name"))
    nothing_complete(tmp_path / "run")


def test_a_batch_of_one_image_is_refused_before_the_model(
    base: Path, ds: Path, tmp_path: Path
) -> None:
    """Batch norm cannot train on one image: a batch left with one by skipped images is not
    trained on (test above), and a batch size of 1 is refused."""
    refused(_train(base, ds, tmp_path / "run", "train.batch_size=1"), says="train.batch_size is 1")
    nothing_complete(tmp_path / "run")
