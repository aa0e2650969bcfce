"""Every command's outputs under one rule (docs/reliability.md): an existing output is replaced
only with ``--overwrite`` (then atomically: a new file under the name), and never when it is a
link a pipeline manages (or lies in its artifact store), ``--overwrite`` or not; the link and
the store stay as they were. Also the rows a command reads: ``--fold``/``--split`` of
``convert``, ``embed`` and ``evaluate --retrieval``."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from fmlkit.data.formats.recordio import unpack
from fmlkit.data.formats.recordio_reader import RecordReader
from tests.hostile.check import fmlkit, refused, succeeded
from tests.train.test_loop import CLASSES, PER_CLASS, _overrides, write_images


@dataclass(frozen=True)
class Tree:
    """What the commands read: images (4 labels × 8), their dataset_info with a split column
    (labels id0, id1 train; id2, id3 test), a Parquet dataset of every row, test pairs, a
    2-step checkpoint, and a real pipeline's store with one version of a split stage."""

    images: Path
    split: Path
    parquet: Path
    pairs: Path
    checkpoint: Path
    store_file: Path  # a file in a version folder of the store
    store_folder: Path  # that version's output folder


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    base = tmp_path_factory.mktemp("outputs")
    images = base / "images"
    images.mkdir()
    write_images(images)
    info = pd.read_csv(images / "info.csv")
    info["split"] = ["train" if label in ("id0", "id1") else "test" for label in info["label"]]
    split = base / "split.csv"
    info.to_csv(split, index=False)
    succeeded(fmlkit("convert", split, base / "pq", "--root", images))
    pairs = base / "pairs.csv"
    args = ("--split", "test", "--positives", "10", "--negatives", "10", "-o", pairs)
    succeeded(fmlkit("pairs", split, *args))
    (base / "empty.yaml").write_text("{}\n")
    run = base / "run"
    succeeded(
        fmlkit(
            "train", "--config", base / "empty.yaml", *_overrides(images, run, "train.max_steps=2")
        )
    )
    pipeline = base / "pipe.yaml"
    pipeline.write_text(
        "artifacts: art\nstages:\n  s:\n    run: split\n"
        f"    deps: {{dataset_info: {split}}}\n    outs: {{output: managed.csv}}\n"
    )
    succeeded(fmlkit("run", pipeline, cwd=base))
    managed = base / "managed.csv"
    assert managed.is_symlink()
    target = Path(os.path.realpath(managed))
    return Tree(images, split, base / "pq", pairs, run / "checkpoints" / "last.pt", target,
                target.parent)  # fmt: skip


# command → (its arguments with OUT as the output to test, what OUT is, OUT's name)
Args = Callable[[Tree, Path], list[object]]
COMMANDS: dict[str, tuple[Args, str, str]] = {
    "synth": (lambda t, o: ["synth", o, "-n", "1", "-m", "1", "--no-defects"], "folder", "out"),
    "prepare": (lambda t, o: ["prepare", t.images, "-o", o, "-j", "1"], "file", "out.csv"),
    "filter": (lambda t, o: ["filter", t.split, "-o", o, "--min-size", "0"], "file", "out.csv"),
    "filter --removed": (
        lambda t, o: ["filter", t.split, "-o", o.parent / "kept.csv", "--removed", o,
                      "--min-size", "0"],
        "file",
        "out.csv",
    ),
    "split": (lambda t, o: ["split", t.split, "-o", o, "--k", "2"], "file", "out.csv"),
    "pairs": (
        lambda t, o: ["pairs", t.split, "-o", o, "--split", "test", "--positives", "2",
                      "--negatives", "2"],
        "file",
        "out.csv",
    ),
    "convert": (lambda t, o: ["convert", t.split, o, "--root", t.images], "folder", "out"),
    "convert .rec": (lambda t, o: ["convert", t.parquet, o], "file", "out.rec"),
    "export --onnx": (
        lambda t, o: ["export", "--checkpoint", t.checkpoint, "--onnx", o],
        "file",
        "out.onnx",
    ),
    "embed": (
        lambda t, o: ["embed", "--checkpoint", t.checkpoint, "--input", t.parquet, "-o", o],
        "file",
        "out.parquet",
    ),
    "evaluate": (
        lambda t, o: ["evaluate", "--checkpoint", t.checkpoint, "--pairs", t.pairs, "--root",
                      t.images, "--no-flip-sum", "-o", o],
        "folder",
        "out",
    ),
}  # fmt: skip


# commands whose second run costs seconds: their existing output is written by hand
SLOW = {"export --onnx", "embed"}


def _witness(out: Path, kind: str) -> Path:
    """A file whose bytes and inode say whether ``out`` was replaced."""
    if kind == "file":
        return out
    children = sorted(p for p in out.rglob("*") if p.is_file())
    assert children, f"{out} holds no file"
    return children[-1]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_existing_output_is_replaced_only_with_overwrite(
    tree: Tree, tmp_path: Path, command: str
) -> None:
    make, kind, name = COMMANDS[command]
    out = tmp_path / name
    args = make(tree, out)
    if command in SLOW:  # an output of its own kind is no different to the rule: a file
        out.write_bytes(b"an earlier output")
    else:
        succeeded(fmlkit(*args, cwd=tmp_path))
        (tmp_path / "kept.csv").unlink(missing_ok=True)  # filter --removed: only OUT exists
    witness = _witness(out, kind)
    before, inode = witness.read_bytes(), witness.stat().st_ino

    refused(fmlkit(*args, cwd=tmp_path), says=[str(out), "already exists", "--overwrite"])
    assert witness.read_bytes() == before and witness.stat().st_ino == inode  # not touched
    if command in SLOW:
        return  # (the replacement itself is atomic_path's, as for every other command)
    succeeded(fmlkit(*args, "--overwrite", cwd=tmp_path))
    replaced = _witness(out, kind)
    assert replaced.stat().st_ino != inode  # a new file under the name: written, then renamed


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_link_a_pipeline_manages_is_never_written(
    tree: Tree, tmp_path: Path, command: str, overwrite: bool
) -> None:
    make, kind, name = COMMANDS[command]
    out = tmp_path / name
    target = tree.store_file if kind == "file" else tree.store_folder
    out.symlink_to(target)
    stored = {p: p.read_bytes() for p in tree.store_folder.parent.rglob("*") if p.is_file()}
    extra = ["--overwrite"] if overwrite else []
    refused(fmlkit(*make(tree, out), *extra, cwd=tmp_path), says=[str(out), "pipeline"])
    assert out.is_symlink() and out.readlink() == target  # the link is not replaced
    after = {p: p.read_bytes() for p in tree.store_folder.parent.rglob("*") if p.is_file()}
    assert after == stored  # nor written through


def test_a_folder_linked_into_the_store_takes_no_output(tree: Tree, tmp_path: Path) -> None:
    """A path through a link to a store folder lies in the store: refused too."""
    (tmp_path / "linked").symlink_to(tree.store_folder)
    out = tmp_path / "linked" / "new.csv"
    args = ("filter", tree.split, "-o", out, "--min-size", "0", "--overwrite")
    refused(fmlkit(*args), says=["artifact store", "pipeline"])
    assert not (tree.store_folder / "new.csv").exists()


@pytest.mark.parametrize("link", [False, True], ids=["exists", "pipeline link"])
def test_an_arcface_torch_output_is_checked_before_the_export(
    tree: Tree, tmp_path: Path, link: bool
) -> None:
    """(The checkpoint here cannot be written in arcface_torch's format, 32 px: the output is
    refused before that is found.)"""
    out = tmp_path / "backbone.pth"
    if link:
        out.symlink_to(tree.store_file)
    else:
        out.write_bytes(b"mine")
    args = ("export", "--checkpoint", tree.checkpoint, "--arcface-torch", out, "--overwrite")
    refused(fmlkit(*args[:-1]), says=[str(out), "pipeline" if link else "--overwrite"])
    if link:
        refused(fmlkit(*args), says=[str(out), "pipeline"])
        assert out.is_symlink() and out.readlink() == tree.store_file
    else:
        assert out.read_bytes() == b"mine"


def test_train_never_writes_a_run_a_pipeline_manages(tree: Tree, tmp_path: Path) -> None:
    """`train` has no --overwrite (a run is continued with --resume): an output_dir linked
    into a pipeline's store is refused, resuming or not."""
    run = tmp_path / "run"
    run.symlink_to(tree.store_folder)
    config = tmp_path / "empty.yaml"
    config.write_text("{}\n")
    for resume in ([], ["--resume"]):
        args = _overrides(tree.images, run, "train.max_steps=2")
        refused(
            fmlkit("train", "--config", config, *args, *resume), says=["output_dir", "pipeline"]
        )
    assert sorted(p.name for p in tree.store_folder.iterdir()) == [tree.store_file.name]


def test_a_file_beside_a_rec_output_counts_as_an_output(tree: Tree, tmp_path: Path) -> None:
    """convert → .rec also writes .idx and property: an existing one is not replaced
    without --overwrite either."""
    (tmp_path / "out.idx").write_text("mine\n")
    refused(fmlkit("convert", tree.parquet, tmp_path / "out.rec"), says=["out.idx", "--overwrite"])
    assert (tmp_path / "out.idx").read_text() == "mine\n"
    assert not (tmp_path / "out.rec").exists()


def test_the_report_folder_of_evaluate_may_exist_but_not_its_report(
    tree: Tree, tmp_path: Path
) -> None:
    """evaluate -o DIR keeps other files of DIR; its report files are outputs."""
    out = tmp_path / "eval"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ("evaluate", "--checkpoint", tree.checkpoint, "--pairs", tree.pairs, "--root",
            tree.images, "--no-flip-sum", "-o", out)  # fmt: skip
    succeeded(fmlkit(*args))
    assert (out / "metrics.json").is_file() and (out / "notes.txt").read_text() == "mine"
    refused(fmlkit(*args), says=["metrics", "already exists", "--overwrite"])


# --fold / --split: the rows a command reads


def _rec_labels(rec: Path) -> list[float]:
    """The label of every image record of a .rec (flavour A: records 1..N)."""
    labels = []
    with RecordReader(rec) as reader:
        header, _ = unpack(reader.read(0))
        for key in range(1, int(header.labels[0])):
            labels.append(unpack(reader.read(key))[0].labels[0])
    return labels


def test_convert_split_writes_only_its_rows(tree: Tree, tmp_path: Path) -> None:
    """The .rec of the train split holds no held-out identity; a split's classes are
    numbered 0..C−1 (the test split's id2, id3 as 0, 1), and property counts them."""
    for split in ("train", "test"):
        rec = tmp_path / split / "x.rec"  # a folder each: property is the folder's
        succeeded(fmlkit("convert", tree.parquet, rec, "--split", split))
        labels = _rec_labels(rec)
        assert len(labels) == 2 * PER_CLASS  # 2 of the CLASSES labels
        assert labels == [0.0] * PER_CLASS + [1.0] * PER_CLASS and CLASSES == 4
        assert (tmp_path / split / "property").read_text().split(",")[0] == "2"
    table = tmp_path / "pq"
    succeeded(fmlkit("convert", tree.split, table, "--root", tree.images, "--split", "test"))
    names = set(pd.read_parquet(table)["label_name"])
    assert names == {"id2", "id3"}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--fold", "1"], ["no fold column", "fmlkit split"]),
        (["--fold", "1", "--split", "train"], ["--fold", "--split"]),
    ],
)
def test_convert_selection_that_cannot_be_made_is_one_error(
    tree: Tree, tmp_path: Path, args: list[str], says: list[str]
) -> None:
    code = 2 if len(args) > 2 else 1
    refused(fmlkit("convert", tree.parquet, tmp_path / "x.rec", *args), says=says, code=code)
    assert not (tmp_path / "x.rec").exists()


def test_a_split_no_row_has_names_the_values_present(tree: Tree, tmp_path: Path) -> None:
    only_train = tmp_path / "train.csv"
    df = pd.read_csv(tree.split)
    df[df["split"] == "train"].to_csv(only_train, index=False)
    args = ("convert", only_train, tmp_path / "pq", "--root", tree.images, "--split", "test")
    refused(fmlkit(*args), says=["split test", "train"])
    embed = ("embed", "--checkpoint", tree.checkpoint, "--input", only_train, "--root",
             tree.images, "--split", "test", "-o", tmp_path / "e.parquet")  # fmt: skip
    refused(fmlkit(*embed), says=["split", "train"])
    assert not (tmp_path / "pq").exists() and not (tmp_path / "e.parquet").exists()


@pytest.mark.parametrize("source", ["table", "parquet"])
def test_embed_split_embeds_only_that_split(tree: Tree, tmp_path: Path, source: str) -> None:
    given = ["--input", tree.split, "--root", tree.images] if source == "table" else [
        "--input", tree.parquet]  # fmt: skip
    out = tmp_path / "e.parquet"
    succeeded(
        fmlkit("embed", "--checkpoint", tree.checkpoint, *given, "--split", "test", "-o", out)
    )
    assert set(pd.read_parquet(out)["label"]) == {"id2", "id3"}
    assert len(pd.read_parquet(out)) == 2 * PER_CLASS


def test_evaluate_retrieval_over_a_split(tree: Tree, tmp_path: Path) -> None:
    import json

    base = ("evaluate", "--checkpoint", tree.checkpoint, "--retrieval", "--input", tree.parquet,
            "--no-flip-sum")  # fmt: skip
    succeeded(fmlkit(*base, "--split", "test", "-o", tmp_path / "test"))
    succeeded(fmlkit(*base, "-o", tmp_path / "all"))
    test = json.loads((tmp_path / "test" / "metrics.json").read_text())["retrieval"]
    every = json.loads((tmp_path / "all" / "metrics.json").read_text())["retrieval"]
    assert test != every  # 16 queries among 2 labels, not 32 among 4
    refused(
        fmlkit(*base, "--split", "test", "--fold", "0", "-o", tmp_path / "x"),
        says=["--fold", "--split"],
        code=2,
    )
    no_input = ("evaluate", "--checkpoint", tree.checkpoint, "--pairs", tree.pairs, "--root",
                tree.images, "--split", "test", "-o", tmp_path / "y")  # fmt: skip
    refused(fmlkit(*no_input), says=["--split", "--input"], code=2)
