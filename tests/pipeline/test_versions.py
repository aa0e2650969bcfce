from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pytest

from fmlkit.data.formats.parquet_checks import write_manifest
from fmlkit.data.formats.parquet_layout import LEGACY_MANIFEST, MANIFEST
from fmlkit.pipeline.versions import HashCache, combined_version, version_of


def _old(path: Path) -> None:
    """Date a file 10 s back, past the racy window, so that its hash may be cached."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 10**10))


@pytest.fixture
def cache() -> HashCache:
    return HashCache(None)


def test_version_of_file_is_its_sha256(tmp_path: Path, cache: HashCache) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 3_000_000)
    assert version_of(path, cache) == "file:" + hashlib.sha256(b"x" * 3_000_000).hexdigest()
    assert version_of(tmp_path / "missing", cache) is None


def test_version_of_follows_links(tmp_path: Path, cache: HashCache) -> None:
    (tmp_path / "a").write_text("a", encoding="utf-8")
    (tmp_path / "link").symlink_to("a")
    (tmp_path / "dangling").symlink_to("nothing")
    assert version_of(tmp_path / "link", cache) == version_of(tmp_path / "a", cache)
    assert version_of(tmp_path / "dangling", cache) is None


def _tree(root: Path) -> Path:
    (root / "x" / "y").mkdir(parents=True)
    (root / "x" / "1.jpg").write_bytes(b"one")
    (root / "x" / "y" / "2.jpg").write_bytes(b"two")
    return root


def test_version_of_folder_changes_with_content_names_and_structure(
    tmp_path: Path, cache: HashCache
) -> None:
    first = version_of(_tree(tmp_path / "a"), cache)
    assert first is not None and first.startswith("dir:")
    assert version_of(_tree(tmp_path / "b"), cache) == first  # the same tree elsewhere
    variants = []
    for change in ("content", "rename", "empty_dir", "link"):
        root = _tree(tmp_path / change)
        if change == "content":
            (root / "x" / "1.jpg").write_bytes(b"ONE")
        elif change == "rename":
            (root / "x" / "1.jpg").rename(root / "x" / "3.jpg")
        elif change == "empty_dir":
            (root / "z").mkdir()
        else:
            (root / "x" / "l.jpg").symlink_to("1.jpg")
        variants.append(version_of(root, cache))
    assert first not in variants and len(set(variants)) == len(variants)


def test_version_of_file_and_folder_differ(tmp_path: Path, cache: HashCache) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_bytes(b"")
    assert version_of(tmp_path / "d", cache) != version_of(tmp_path / "f", cache)


def _parquet(root: Path, *, legacy: bool = True) -> Path:
    """A dataset folder whose manifest lists one 100-byte shard: an older fmlkit's
    ``_manifest.json``, or (``legacy`` False) today's ``_manifest.parquet``."""
    root.mkdir()
    (root / "part-00000.parquet").write_bytes(b"P" * 100)
    manifest = {"rows": 1, "shards": [{"file": "part-00000.parquet", "bytes": 100}]}
    if legacy:
        (root / LEGACY_MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    else:
        write_manifest(root / MANIFEST, pa.schema([pa.field("label", pa.int64())]), manifest)
    return root


@pytest.mark.parametrize("legacy", [True, False], ids=["_manifest.json", "_manifest.parquet"])
def test_version_of_parquet_dataset_reads_the_manifest_not_the_shards(
    tmp_path: Path, cache: HashCache, legacy: bool
) -> None:
    root = _parquet(tmp_path / "pq", legacy=legacy)
    first = version_of(root, cache)
    assert first is not None and first.startswith("parquet:")
    (root / "part-00000.parquet").write_bytes(b"Q" * 100)  # same size: not read, not seen
    assert version_of(root, cache) == first
    manifest = root / (LEGACY_MANIFEST if legacy else MANIFEST)
    assert cache.hashed_bytes == 2 * manifest.stat().st_size
    (root / "part-00000.parquet").write_bytes(b"Q" * 99)  # truncated: seen by its size
    assert version_of(root, cache) != first


def test_version_of_parquet_dataset_hashes_other_files(tmp_path: Path, cache: HashCache) -> None:
    root = _parquet(tmp_path / "pq")
    first = version_of(root, cache)
    (root / "_pairs.csv").write_text("1,a,b\n", encoding="utf-8")
    second = version_of(root, cache)
    (root / "_pairs.csv").write_text("0,a,b\n", encoding="utf-8")
    assert len({first, second, version_of(root, cache)}) == 3


def test_hash_cache_reads_an_unchanged_file_once(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"a" * 1000)
    _old(path)
    with HashCache(tmp_path / "cache.sqlite") as cache:
        first = version_of(path, cache)
        assert cache.hashed_bytes == 1000
    with HashCache(tmp_path / "cache.sqlite") as cache:  # persisted
        assert version_of(path, cache) == first
        assert cache.hashed_bytes == 0
        path.write_bytes(b"b" * 1000)  # same size, new mtime
        assert version_of(path, cache) != first
        assert cache.hashed_bytes == 1000


def test_hash_cache_does_not_trust_a_racily_fresh_file(tmp_path: Path) -> None:
    path = tmp_path / "fresh"
    path.write_bytes(b"a" * 1000)
    with HashCache(None) as cache:
        version_of(path, cache)
        stamp = path.stat().st_mtime_ns
        path.write_bytes(b"b" * 1000)  # within the same clock tick, on a coarse clock
        os.utime(path, ns=(stamp, stamp))
        assert version_of(path, cache) == "file:" + hashlib.sha256(b"b" * 1000).hexdigest()


def test_combined_version_ignores_order() -> None:
    assert combined_version({"a": "1", "b": "2"}) == combined_version({"b": "2", "a": "1"})
    assert combined_version({"a": "1", "b": "2"}) != combined_version({"a": "2", "b": "1"})


def test_hash_cache_sees_a_same_size_edit_whose_mtime_was_restored(tmp_path: Path) -> None:
    """``touch -r``/``rsync -t`` put an edited file's mtime back; its ctime, which nobody can
    set back, still tells the cache the file changed."""
    path = tmp_path / "table.csv"
    path.write_bytes(b"a" * 1000)
    _old(path)
    with HashCache(tmp_path / "cache.sqlite") as cache:
        first = version_of(path, cache)
    before = path.stat()
    path.write_bytes(b"b" * 1000)  # same size, same inode
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    while path.stat().st_ctime_ns == before.st_ctime_ns:  # one tick of the kernel's clock
        time.sleep(0.005)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )
    with HashCache(tmp_path / "cache.sqlite") as cache:
        assert version_of(path, cache) == "file:" + hashlib.sha256(b"b" * 1000).hexdigest()
        assert version_of(path, cache) != first
