from __future__ import annotations

import hashlib
import itertools
import signal
import unicodedata
from collections import Counter
from pathlib import Path

import imagehash
import pytest
from PIL import Image, UnidentifiedImageError

from fmlkit.columns import LABEL_NOISE_KINDS
from fmlkit.data.synth.synth import TRUTH_KINDS, default_truth_path, generate_synthetic_dataset
from fmlkit.errors import InputError
from fmlkit.io import FAULT_ENV
from tests.conftest import SynthTree, read_truth
from tests.hostile.check import fmlkit, fmlkit_process, nothing_complete, succeeded, unchanged


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _phash(path: Path) -> imagehash.ImageHash:
    with Image.open(path) as img:
        return imagehash.phash(img)


def _by_kind(tree: SynthTree) -> dict[str, list[dict[str, str]]]:
    kinds: dict[str, list[dict[str, str]]] = {k: [] for k in TRUTH_KINDS}
    for row in tree.truth:
        kinds[row["kind"]].append(row)
    return kinds


def test_synth_is_byte_identical_across_runs_and_worker_counts(tmp_path: Path) -> None:
    a = generate_synthetic_dataset(tmp_path / "a", identities=4, images_per_identity=5, seed=7)
    b = generate_synthetic_dataset(
        tmp_path / "b", identities=4, images_per_identity=5, seed=7, workers=2
    )
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    assert a.truth_path.read_bytes() == b.truth_path.read_bytes()


def test_synth_seed_changes_the_images(tmp_path: Path) -> None:
    digests = []
    for seed in (1, 2):
        report = generate_synthetic_dataset(
            tmp_path / str(seed), identities=2, images_per_identity=3, seed=seed
        )
        tree = _tree_digest(tmp_path / str(seed))
        digests.append(
            {tree[r["file_name"]] for r in read_truth(report.truth_path) if r["kind"] == "clean"}
        )
    assert len(digests[0]) == len(digests[1]) == 6
    assert digests[0].isdisjoint(digests[1])  # (empty/not-image files are constant by design)


def test_truth_lists_every_file_once_sorted(synth_tree: SynthTree) -> None:
    names = [row["file_name"] for row in synth_tree.truth]
    assert names == sorted(names)
    assert len(names) == len(set(names))
    assert set(names) == set(_tree_digest(synth_tree.root))
    assert list(synth_tree.truth[0]) == ["file_name", "label", "kind", "source"]
    for row in synth_tree.truth:
        assert row["label"] == row["file_name"].split("/")[0]
        assert row["kind"] in TRUTH_KINDS


def test_exactly_n_times_m_clean_images(synth_tree: SynthTree) -> None:
    clean = _by_kind(synth_tree)["clean"]
    assert len(clean) == synth_tree.identities * synth_tree.per_identity == 160
    per_label = Counter(row["label"] for row in clean)
    assert set(per_label.values()) == {synth_tree.per_identity}
    assert synth_tree.report.clean == 160


def test_every_planted_kind_is_present(synth_tree: SynthTree) -> None:
    counts = Counter(row["kind"] for row in synth_tree.truth)
    for kind in TRUTH_KINDS:
        if kind not in LABEL_NOISE_KINDS:  # planted only on request: test_label_noise.py
            assert counts[kind] >= 1, kind
        else:
            assert counts[kind] == 0, kind
    assert dict(counts) == dict(synth_tree.report.counts)


def test_duplicates_match_their_sources(synth_tree: SynthTree) -> None:
    kinds = _by_kind(synth_tree)
    clean_names = {row["file_name"] for row in kinds["clean"]}
    root = synth_tree.root
    for row in kinds["exact_duplicate"] + kinds["cross_label_duplicate"]:
        assert row["source"] in clean_names
        assert (root / row["file_name"]).read_bytes() == (root / row["source"]).read_bytes()
    for row in kinds["exact_duplicate"]:
        assert row["label"] == row["source"].split("/")[0]
    for row in kinds["cross_label_duplicate"]:
        assert row["label"] != row["source"].split("/")[0]
    for row in kinds["near_duplicate"]:
        assert row["source"] in clean_names
        assert row["label"] == row["source"].split("/")[0]
        dup, src = root / row["file_name"], root / row["source"]
        assert dup.read_bytes() != src.read_bytes()
        assert _phash(dup) - _phash(src) <= 10
        with Image.open(dup) as a, Image.open(src) as b:
            assert a.size != b.size  # resized a few percent
            assert abs(a.width - b.width) <= 0.07 * b.width
    for row in kinds["clean"]:
        assert row["source"] == ""


def test_broken_files_are_broken_as_labelled(synth_tree: SynthTree) -> None:
    kinds = _by_kind(synth_tree)
    root = synth_tree.root
    for row in kinds["tiny"]:
        with Image.open(root / row["file_name"]) as img:
            img.load()
            assert max(img.size) < 32
    for row in kinds["corrupt"]:
        path = root / row["file_name"]
        assert path.stat().st_size > 0
        with pytest.raises(OSError, match="truncated"), Image.open(path) as img:
            img.load()
    for row in kinds["empty"]:
        assert (root / row["file_name"]).stat().st_size == 0
    for row in kinds["not_image"]:
        path = root / row["file_name"]
        assert path.suffix == ".jpg"
        with pytest.raises(UnidentifiedImageError):
            Image.open(path)
        assert path.read_bytes().decode("utf-8")  # text


def test_clean_images_are_readable_and_include_unusual_ones(synth_tree: SynthTree) -> None:
    modes, formats, odd_names = Counter(), Counter(), []
    for row in _by_kind(synth_tree)["clean"]:
        with Image.open(synth_tree.root / row["file_name"]) as img:
            img.load()
            assert img.size == (112, 112)
            modes[img.mode] += 1
            formats[img.format] += 1
        name = row["file_name"].split("/")[1]
        if " " in name or not name.isascii():
            odd_names.append(name)
    assert modes["L"] >= 1 and modes["RGB"] >= 1
    assert formats["PNG"] >= 1 and formats["JPEG"] >= 1
    assert any(" " in n for n in odd_names) and any(not n.isascii() for n in odd_names)
    assert all(unicodedata.is_normalized("NFC", n) for n in odd_names)


def test_same_identity_images_are_more_than_10_phash_bits_apart(synth_tree: SynthTree) -> None:
    hashes: dict[str, list[imagehash.ImageHash]] = {}
    for row in _by_kind(synth_tree)["clean"]:
        hashes.setdefault(row["label"], []).append(_phash(synth_tree.root / row["file_name"]))
    pairs = close = 0
    for group in hashes.values():
        for a, b in itertools.combinations(group, 2):
            pairs += 1
            close += (a - b) <= 10
    assert pairs == 20 * 28
    assert close / pairs <= 0.01


def test_no_defects_writes_only_plain_clean_jpegs(tmp_path: Path) -> None:
    report = generate_synthetic_dataset(
        tmp_path / "d", identities=3, images_per_identity=4, seed=0, defects=False
    )
    truth = read_truth(report.truth_path)
    assert {row["kind"] for row in truth} == {"clean"} and len(truth) == 12
    for row in truth:
        assert row["file_name"].isascii() and " " not in row["file_name"]
        with Image.open(tmp_path / "d" / row["file_name"]) as img:
            assert (img.format, img.mode) == ("JPEG", "RGB")


def test_truth_defaults_beside_the_folder_and_custom_path(tmp_path: Path) -> None:
    assert default_truth_path(tmp_path / "data") == tmp_path / "data.truth.csv"
    report = generate_synthetic_dataset(
        tmp_path / "data",
        identities=1,
        images_per_identity=1,
        truth_path=tmp_path / "t" / "truth.csv",
        defects=False,
    )
    assert report.truth_path.is_file() and not (tmp_path / "data.truth.csv").exists()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"identities": 0, "images_per_identity": 1},
        {"identities": 1, "images_per_identity": 0},
        {"identities": 1, "images_per_identity": 1, "size": 8},
    ],
)
def test_bad_arguments_raise_input_error(tmp_path: Path, kwargs: dict[str, int]) -> None:
    with pytest.raises(InputError):
        generate_synthetic_dataset(tmp_path / "d", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "d").exists()


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    generate_synthetic_dataset(tmp_path / "d", identities=1, images_per_identity=2, seed=0)
    before = _tree_digest(tmp_path / "d")
    with pytest.raises(InputError, match="overwrite"):
        generate_synthetic_dataset(tmp_path / "d", identities=2, images_per_identity=2, seed=1)
    assert _tree_digest(tmp_path / "d") == before
    generate_synthetic_dataset(
        tmp_path / "d", identities=2, images_per_identity=2, seed=1, overwrite=True
    )
    assert _tree_digest(tmp_path / "d") != before


def test_truth_inside_output_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="inside"):
        generate_synthetic_dataset(
            tmp_path / "d",
            identities=1,
            images_per_identity=1,
            truth_path=tmp_path / "d" / "truth.csv",
        )


@pytest.mark.parametrize(
    ("point", "name"), [("written", "big"), ("renamed", "big"), ("renamed", "big.truth.csv")]
)
def test_killed_synth_leaves_no_complete_looking_output(
    tmp_path: Path, point: str, name: str
) -> None:
    """synth killed at each point of putting its folder, then its truth file, in place
    (``FMLKIT_FAULT_WRITE``): each output is absent or as it was until its rename, then whole.
    Between the two renames the folder is new and the truth file absent, or the previous one
    (which describes the previous images). A rerun with --overwrite succeeds."""
    out, truth = tmp_path / "big", tmp_path / "big.truth.csv"
    fresh = {}  # what each seed writes, whole
    for seed in (0, 1):
        made = generate_synthetic_dataset(
            tmp_path / "ref" / str(seed), identities=2, images_per_identity=3, seed=seed
        )
        fresh[seed] = (_tree_digest(made.out_dir), made.truth_path.read_bytes())
    folder_done = (point, name) != ("written", "big")
    truth_done = name == "big.truth.csv"
    for seed in (0, 1):  # first no output, then seed 0's
        args = ("-q", "synth", out, "-n", "2", "-m", "3", "--seed", str(seed), "-j", "1")
        killed = fmlkit_process(*args, "--overwrite", env={FAULT_ENV: f"{point}@{name}"})
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        old = fresh.get(seed - 1)
        if folder_done:
            assert _tree_digest(out) == fresh[seed][0]
        elif old is None:
            nothing_complete(out)
        else:
            assert _tree_digest(out) == old[0]
        if truth_done:
            assert truth.read_bytes() == fresh[seed][1]
        elif old is None:
            nothing_complete(truth)
        else:
            unchanged(truth, old[1])
        left = {p.name for p in tmp_path.iterdir()} - {"ref", "big", "big.truth.csv"}
        assert all(n.startswith((".big.tmp-", ".big.truth.csv.tmp-")) for n in left), left
        succeeded(fmlkit(*args, "--overwrite"))
        assert (_tree_digest(out), truth.read_bytes()) == fresh[seed]


def test_image_names_sort_in_number_order_beyond_four_digits(tmp_path: Path) -> None:
    from fmlkit.data.synth.synth import _name_width

    assert _name_width(20, 8) == 4
    assert _name_width(1, 10_000) == 5
    assert _name_width(1, 9_990) == 5  # 9,990 clean + planted files pass 9,999


def test_clean_images_of_different_identities_are_not_near_duplicates(
    synth_tree: SynthTree,
) -> None:
    # seed 0 at 20 × 8 drew one such pair by chance (10 bits) before the cross-identity check
    clean = _by_kind(synth_tree)["clean"]
    hashes = [(r["label"], _phash(synth_tree.root / r["file_name"])) for r in clean]
    close = [
        (a[0], b[0])
        for a, b in itertools.combinations(hashes, 2)
        if a[0] != b[0] and a[1] - b[1] <= 10
    ]
    assert close == []
    assert synth_tree.report.unseparated == 0 and synth_tree.report.identities_checked
