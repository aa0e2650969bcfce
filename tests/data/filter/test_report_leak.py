"""`fmlkit filter --against`: the leakage check (fmlkit/data/filter/leak.py), its search
(`hamming.nearest_within`) and its section of the report."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pytest

from fmlkit.columns import DISTANCE, DUPLICATE_OF, FILE_NAME, REASON
from fmlkit.data.filter.filter import FilterRules, filter_dataset
from fmlkit.data.filter.hamming import nearest_within, popcount
from fmlkit.data.filter.leak import LEAK
from fmlkit.data.formats.insightface_bin import write_bin
from fmlkit.data.formats.table import read_dataset_info, read_table
from fmlkit.eval.leak_reference import load_reference
from tests.conftest import SynthTree


@pytest.mark.parametrize("radius", [0, 1, 3, 10, 64])
def test_nearest_within_equals_brute_force(radius: int) -> None:
    rng = np.random.default_rng(radius)
    base = rng.integers(0, 2**63, 400, dtype=np.int64).astype(np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, 60).astype(np.uint64)
    query = np.concatenate([base[rng.integers(0, 400, 60)] ^ flips, base[:5], base[:5]])
    index, distance = nearest_within(base, query, radius)
    d = popcount(base[:, None] ^ query[None, :])
    best = np.argmin(d, axis=1)  # the lowest index among ties
    near = d[np.arange(len(base)), best] <= radius
    assert (index == np.where(near, best, -1)).all()
    assert (distance == np.where(near, d[np.arange(len(base)), best], -1)).all()


@pytest.fixture
def picked(synth_tree: SynthTree, synth_filtered: Path) -> list[str]:
    """Three clean training images that a benchmark will share."""
    return read_dataset_info(synth_filtered)[FILE_NAME].tolist()[5:8]


def _run(
    synth_tree: SynthTree, synth_filtered: Path, out: Path, against: Path, root: Path | None = None
) -> Path:
    filter_dataset(
        synth_filtered,
        out / "kept.csv",
        FilterRules(min_size=None),
        removed=out / "removed.csv",
        report_dir=out / "report",
        root=synth_tree.root,
        against=load_reference(against, root=root),
    )
    return out


def test_leaks_from_a_bin_are_removed_and_shown(
    synth_tree: SynthTree, synth_filtered: Path, picked: list[str], tmp_path: Path
) -> None:
    images = [(synth_tree.root / n).read_bytes() for n in picked]
    write_bin(tmp_path / "bench.bin", images[:2], [True])
    out = _run(synth_tree, synth_filtered, tmp_path, against=tmp_path / "bench.bin")
    removed = read_table(out / "removed.csv")
    leaks = removed[removed[REASON] == LEAK]
    assert sorted(leaks[FILE_NAME]) == sorted(picked[:2])
    assert set(leaks[DUPLICATE_OF]) == {"bench.bin#0", "bench.bin#1"}
    assert set(leaks[DISTANCE].astype(int)) == {0}
    kept = read_table(out / "kept.csv")
    assert not set(picked[:2]) & set(kept[FILE_NAME])
    text = (out / "report" / "index.html").read_text(encoding="utf-8")
    section = text.split(f"({LEAK}) <span", 1)[1].split("</section>", 1)[0]
    assert section.count("<figure>") == 2 and section.count('class="tile benchmark"') == 2
    assert "bench.bin#0" in section and html.escape(picked[0]) in section
    assert section.count("<img ") == 4  # the .bin's own images are shown, from its bytes


def test_leaks_from_a_pair_list_and_a_dataset_info(
    synth_tree: SynthTree, synth_filtered: Path, picked: list[str], tmp_path: Path
) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"0,{picked[0]},{picked[1]}\n", encoding="utf-8")
    out = _run(synth_tree, synth_filtered, tmp_path, against=pairs, root=synth_tree.root)
    removed = read_table(out / "removed.csv")
    assert sorted(removed.loc[removed[REASON] == LEAK, FILE_NAME]) == sorted(picked[:2])
    table = tmp_path / "bench_info.csv"
    info = read_dataset_info(synth_filtered)
    info[info[FILE_NAME].isin(picked)].to_csv(table, index=False)
    (tmp_path / "t").mkdir()
    out = _run(synth_tree, synth_filtered, tmp_path / "t", against=table)
    removed = read_table(out / "removed.csv")
    assert sorted(removed.loc[removed[REASON] == LEAK, FILE_NAME]) == sorted(picked)


def test_no_leak_is_said_in_the_report(
    synth_tree: SynthTree, synth_filtered: Path, tmp_path: Path
) -> None:
    from PIL import Image

    Image.new("RGB", (64, 64), "white").save(tmp_path / "blank.png")
    write_bin(tmp_path / "b.bin", [(tmp_path / "blank.png").read_bytes()] * 2, [True])
    out = _run(synth_tree, synth_filtered, tmp_path, against=tmp_path / "b.bin")
    text = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert "No row is within reach of an image of b.bin." in text


def test_a_benchmark_table_naming_files_outside_its_root_is_never_read(
    synth_tree: SynthTree, synth_filtered: Path, picked: list[str], tmp_path: Path
) -> None:
    """A dataset_info --against whose names lead outside its root (``../``, absolute): the
    leaks are still found by their hashes, but the report reads no file there (grey tiles)."""
    info = read_dataset_info(synth_filtered)
    bench = info[info[FILE_NAME].isin(picked[:2])].copy()
    inside = synth_tree.root / "nested"
    inside.mkdir()
    outside = synth_tree.root / picked[0]  # a real image, but outside the --against root
    bench[FILE_NAME] = ["../" + picked[0], str(outside)]
    table = tmp_path / "bench_info.csv"
    bench.to_csv(table, index=False)
    reference = load_reference(table, root=inside)
    assert reference.sources == [None, None]
    out = _run(synth_tree, synth_filtered, tmp_path, against=table, root=inside)
    removed = read_table(out / "removed.csv")
    assert sorted(removed.loc[removed[REASON] == LEAK, FILE_NAME]) == sorted(picked[:2])
    text = (out / "report" / "index.html").read_text(encoding="utf-8")
    section = text.split(f"({LEAK}) <span", 1)[1].split("</section>", 1)[0]
    assert section.count("<img ") == 2  # the training images only: no benchmark file read
