"""`fmlkit filter --dedup` confirms pHash candidates on the pixels (and embeddings): a planted
near duplicate goes, two distinct images at a small pHash distance both stay, an unreadable
candidate is not confirmed (and said), and implausible removals are said loudly."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fmlkit.columns import DUPLICATE_OF, EMBEDDING_SIMILARITY, FILE_NAME, PIXEL_SIMILARITY, REASON
from fmlkit.data.filter.confirm import (
    DEFAULT_EMBEDDING_THRESHOLD,
    DEFAULT_PIXEL_THRESHOLD,
    Confirmer,
    thumbnail,
)
from fmlkit.data.filter.dedup import NEAR
from fmlkit.data.formats.embeddings import write_embeddings
from fmlkit.data.formats.hashing import hamming, hex_to_int
from fmlkit.data.formats.table import read_table
from tests.hostile.check import fmlkit, nothing_complete, refused, succeeded

SIDE = 112


def _smooth(seed: int) -> np.ndarray:
    small = np.random.default_rng(seed).uniform(40, 215, (4, 4)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((SIDE, SIDE), Image.Resampling.BICUBIC), float)


def _stripes(cycles: int = 8, amplitude: float = 60) -> np.ndarray:
    """A pattern of ``cycles`` per image side: above the frequencies a 64-bit pHash keeps
    (its 8 × 8 DCT block of a 32 px image spans < 4 cycles), well inside a 16 px thumbnail."""
    wave = np.sin(2 * np.pi * cycles * np.arange(SIDE) / SIDE)
    return amplitude * wave[None, :] * wave[:, None]


def _png(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.clip(values, 0, 255).astype(np.uint8)).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


def _near_copy(data: bytes) -> bytes:
    """Re-encoded as JPEG, 4 % larger and 5 % brighter: what `fmlkit synth` plants."""
    with Image.open(io.BytesIO(data)) as img:
        bigger = img.resize((round(SIDE * 1.04),) * 2, Image.Resampling.BILINEAR)
    brighter = bigger.point([min(255, round(v * 1.05)) for v in range(256)] * 3)
    buf = io.BytesIO()
    brighter.save(buf, "JPEG", quality=65)
    return buf.getvalue()


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """Label ``a``: ``0.png``, ``1.png`` = 0 plus stripes (distinct, a few pHash bits away),
    ``2.jpg`` = a near copy of 0; label ``b``: three unrelated images. Scanned."""
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    base = _smooth(3)
    original = _png(base)
    (root / "a" / "0.png").write_bytes(original)
    (root / "a" / "1.png").write_bytes(_png(base + _stripes()))
    (root / "a" / "2.jpg").write_bytes(_near_copy(original))
    for k in range(3):
        (root / "b" / f"{k}.png").write_bytes(_png(_smooth(10 + k)))
    info = tmp_path / "info.csv"
    succeeded(fmlkit("prepare", root, "-o", info, "-j", "1"))
    return root, info


def _bits(info: Path, a: str, b: str) -> int:
    hashes = dict(zip(*(read_table(info)[c] for c in (FILE_NAME, "phash")), strict=True))
    return hamming(hex_to_int(hashes[a]), hex_to_int(hashes[b]))


def _correlation(root: Path, a: str, b: str) -> float:
    ta, tb = (thumbnail((root / n).read_bytes()).astype(float) for n in (a, b))
    return float(np.corrcoef(ta, tb)[0, 1])


def _filter(info: Path, tmp_path: Path, *extra: str | Path) -> tuple[pd.DataFrame, str]:
    out, removed = tmp_path / "kept.csv", tmp_path / "removed.csv"
    result = fmlkit("filter", info, "-o", out, "--removed", removed, "--dedup", *extra,
                    "--min-size", "0", "--overwrite")  # fmt: skip
    succeeded(result)
    return read_table(removed), result.stdout


def test_the_crafted_pairs_are_what_the_tests_need(tree: tuple[Path, Path]) -> None:
    root, info = tree
    # the distinct pair is a pHash candidate at the default threshold, and differs on the pixels
    assert _bits(info, "a/0.png", "a/1.png") <= 10
    assert _correlation(root, "a/0.png", "a/1.png") < 0.95
    assert _bits(info, "a/0.png", "a/2.jpg") <= 10
    assert _correlation(root, "a/0.png", "a/2.jpg") >= DEFAULT_PIXEL_THRESHOLD


def test_a_near_copy_is_removed_and_a_distinct_image_at_a_small_distance_kept(
    tree: tuple[Path, Path], tmp_path: Path
) -> None:
    root, info = tree
    removed, stdout = _filter(info, tmp_path, "--root", root)
    assert list(removed[FILE_NAME]) == ["a/2.jpg"]
    row = removed.iloc[0]
    assert (row[REASON], row[DUPLICATE_OF]) == (NEAR, "a/0.png")
    assert float(row[PIXEL_SIMILARITY]) >= DEFAULT_PIXEL_THRESHOLD
    assert row[EMBEDDING_SIMILARITY] in ("", None) or pd.isna(row[EMBEDDING_SIMILARITY])
    # the three images of a are within 10 bits of each other: three candidate pairs
    assert "Confirmed 1 of 3 pHash candidate pairs on the pixels" in stdout
    # the hashes alone remove the distinct image too: the confirmation is what keeps it
    hash_only, _ = _filter(info, tmp_path, "--confirm", "none")
    assert sorted(hash_only[FILE_NAME]) == ["a/1.png", "a/2.jpg"]
    assert PIXEL_SIMILARITY not in hash_only


def test_an_unreadable_candidate_is_not_confirmed_and_said(
    tree: tuple[Path, Path], tmp_path: Path
) -> None:
    root, info = tree
    (root / "a" / "2.jpg").write_bytes(b"\xff\xd8 not a jpeg any more")  # after the scan
    removed, stdout = _filter(info, tmp_path, "--root", root)
    assert removed.empty
    assert "Confirmed 0 of 3 pHash candidate pairs" in stdout
    assert "; 2 with an unreadable image (not confirmed)" in stdout  # 2.jpg with 0 and 1


def test_embeddings_must_agree_too(tree: tuple[Path, Path], tmp_path: Path) -> None:
    root, info = tree
    names = sorted(read_table(info)[FILE_NAME])
    vectors = np.eye(len(names), 8, dtype=np.float32) + 0.01  # every image its own direction
    embeddings = write_embeddings(tmp_path / "emb.parquet", names, None, vectors)
    removed, stdout = _filter(info, tmp_path, "--root", root, "--embeddings", embeddings)
    assert removed.empty, "cosine ≈ 0 between the near copy and its source: not confirmed"
    assert "on the pixels and embeddings" in stdout
    vectors[names.index("a/2.jpg")] = vectors[names.index("a/0.png")]
    write_embeddings(embeddings, names, None, vectors)
    removed, _ = _filter(info, tmp_path, "--root", root, "--embeddings", embeddings)
    assert list(removed[FILE_NAME]) == ["a/2.jpg"]
    assert float(removed.iloc[0][EMBEDDING_SIMILARITY]) == pytest.approx(1.0)
    # an image without an embedding is not confirmed, and counted
    keep = [n != "a/2.jpg" for n in names]
    kept_names = [n for n, k in zip(names, keep, strict=True) if k]
    write_embeddings(embeddings, kept_names, None, vectors[keep])
    removed, stdout = _filter(info, tmp_path, "--root", root, "--embeddings", embeddings)
    assert removed.empty
    assert "; 2 with an image missing from the embeddings (not confirmed)" in stdout


@pytest.mark.parametrize("processes", [False, True])
def test_confirmer_scores_pairs_by_position(
    tree: tuple[Path, Path], processes: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmlkit.data.filter import confirm

    if processes:  # many images are read in worker processes: one chunk per image here
        monkeypatch.setattr(confirm, "_READ_CHUNK", 1)
    root, _ = tree
    # a copy of 2.jpg beside the dataset folder: a name leading there is never read
    (root.parent / "outside.jpg").write_bytes((root / "a" / "2.jpg").read_bytes())
    names = np.array(["a/0.png", "a/1.png", "a/2.jpg", "a/missing.png", "../outside.jpg",
                      str(root.parent / "outside.jpg")], object)  # fmt: skip
    said = Confirmer(root)(names, np.array([0, 0, 0, 0, 0]), np.array([1, 2, 3, 4, 5]))
    assert said.confirmed.tolist() == [False, True, False, False, False]
    assert said.unreadable.tolist() == [False, False, True, True, True]
    assert np.isnan(said.pixel[2]) and said.pixel[0] < said.pixel[1]


def _copies(root: Path, label: str, n: int, seed: int) -> None:
    """``n`` near copies of one image under ``label`` (a class that is all duplicates)."""
    (root / label).mkdir(parents=True)
    original = _png(_smooth(seed))
    (root / label / "0.png").write_bytes(original)
    for k in range(1, n):
        (root / label / f"{k}.jpg").write_bytes(_near_copy(original))


def test_implausible_removals_warn_and_strict_refuses(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _copies(root, "same", 5, 1)  # 4 of 5 go: 80 % of a label, 4 of 9 rows: 44 % of the rows
    for k in range(4):
        _copies(root, f"other{k}", 1, 20 + k)
    info = tmp_path / "info.csv"
    succeeded(fmlkit("prepare", root, "-o", info, "-j", "1"))
    removed, stdout = _filter(info, tmp_path, "--root", root)
    assert len(removed) == 4
    assert "Warning: 4 of 9 rows (44%) removed as near or cross-label duplicates" in stdout
    assert "Warning: 1 label(s) lost at least 50% of their rows as duplicates (same 4 of 5" in (
        stdout
    )
    out, report = tmp_path / "strict.csv", tmp_path / "report"
    result = fmlkit("filter", info, "-o", out, "--removed", tmp_path / "r2.csv", "--dedup",
                    "--root", root, "--min-size", "0", "--strict", "--report", report)  # fmt: skip
    refused(result, says=["strict: 4 of 9 rows (44%)", "Nothing was written to", "index.html"])
    nothing_complete(out, tmp_path / "r2.csv")
    page = (report / "index.html").read_text(encoding="utf-8")
    assert "4 of 9 rows (44%) removed" in page and "pixel correlation" in page
    # the limits are options of the library: a share above them is no warning
    assert "Warning" not in _filter(info, tmp_path, "--root", root, "--confirm", "none",
                                    "--threshold", "0")[1]  # fmt: skip


def test_cli_defaults_are_the_library_defaults() -> None:
    from fmlkit.cli.data import filter_

    defaults = {p.name: p.default for p in filter_.params}
    assert defaults["pixel_threshold"] == DEFAULT_PIXEL_THRESHOLD
    assert defaults["embedding_threshold"] == DEFAULT_EMBEDDING_THRESHOLD
