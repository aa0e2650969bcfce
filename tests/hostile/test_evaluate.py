"""Hostile input to ``fmlkit evaluate``: embeddings with NaN, pair lists that lead outside
``--root``, are empty, repeat pairs or name unknown files, malicious ``.bin`` pickles, absurd
numbers in an LFW header, file names holding HTML or mathtext, and report folders that
cannot be one."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.hostile.check import fmlkit, nothing_complete, refused, succeeded
from tests.train.test_loop import CLASSES, PER_CLASS, _overrides, write_images

MARKER = "fmlkit-was-fooled"
NAMES = [f"id{c}/{i}.png" for c in range(CLASSES) for i in range(PER_CLASS)]


def _pairs() -> list[str]:
    """20 genuine and 20 imposter pairs over NAMES, no pair twice, no image with itself."""
    lines = []
    for k in range(20):
        c, i = k % CLASSES, k // CLASSES
        lines.append(f"1,id{c}/{i}.png,id{c}/{i + 1}.png")
        lines.append(f"0,id{c}/{i}.png,id{(c + 1) % CLASSES}/{i + 2}.png")
    return lines


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """images/ (the training images), emb.parquet (random 8-d embeddings of NAMES), pairs.csv."""
    folder = tmp_path_factory.mktemp("eval")
    (folder / "images").mkdir()
    write_images(folder / "images")
    vectors = np.random.default_rng(0).normal(size=(len(NAMES), 8)).astype(np.float32)
    _write_embeddings(folder / "emb.parquet", vectors)
    (folder / "pairs.csv").write_text("\n".join(_pairs()) + "\n")
    return folder


def _write_embeddings(path: Path, vectors: np.ndarray) -> None:
    labels = [n.split("/")[0] for n in NAMES]
    embedding = pa.array([list(map(float, v)) for v in vectors], pa.list_(pa.float32()))
    pq.write_table(pa.table({"file_name": NAMES, "label": labels, "embedding": embedding}), path)


@pytest.fixture(scope="module")
def checkpoint(data: Path) -> Path:
    (data / "empty.yaml").write_text("{}\n")
    out = data / "run"
    args = _overrides(data / "images", out, "train.max_steps=2")
    succeeded(fmlkit("train", "--config", data / "empty.yaml", *args))
    return out / "checkpoints" / "last.pt"


REPORT = ("metrics.json", "metrics.md", "roc.png", "scores.png")


def _nothing_in(out: Path) -> None:
    nothing_complete(*(out / name for name in REPORT))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_embeddings_holding_nan_or_inf_are_refused(
    data: Path, tmp_path: Path, value: float
) -> None:
    vectors = np.random.default_rng(0).normal(size=(len(NAMES), 8)).astype(np.float32)
    vectors[5, 3] = value
    _write_embeddings(tmp_path / "bad.parquet", vectors)
    result = fmlkit("evaluate", "--embeddings", tmp_path / "bad.parquet", "--pairs",
                    data / "pairs.csv", "-o", tmp_path / "out")  # fmt: skip
    refused(result, says=["1 embeddings have NaN or infinite values", NAMES[5]])
    _nothing_in(tmp_path / "out")


OUTSIDE = {
    "../../etc/passwd": "outside --root",
    "/etc/passwd": "outside --root",
    "id0/../../../etc/hostname": "outside --root",
    "link.png": "outside --root",  # a symlink in the root to a file outside it
    "nope/none.png": "not found under",
}


@pytest.mark.parametrize("name", list(OUTSIDE), ids=list(OUTSIDE))
def test_pair_lists_never_lead_outside_root(
    data: Path, checkpoint: Path, tmp_path: Path, name: str
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for c in range(CLASSES):
        shutil.copytree(data / "images" / f"id{c}", root / f"id{c}")
    secret = tmp_path / "secret.png"
    secret.write_bytes((data / "images" / "id0" / "0.png").read_bytes())
    (root / "link.png").symlink_to(secret)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("\n".join([*_pairs(), f"1,{name},id0/1.png"]) + "\n")
    args = ["evaluate", "--checkpoint", checkpoint, "--pairs", pairs, "--root", root]
    refused(fmlkit(*args, "-o", tmp_path / "out"), says=[name, OUTSIDE[name], "--skip-missing"])
    _nothing_in(tmp_path / "out")
    result = fmlkit(*args, "--skip-missing", "-o", tmp_path / "out")
    succeeded(result)  # taken with the reason recorded: the pair dropped and counted
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())["pairs"]
    assert metrics["skipped_missing"] == 1 and metrics["pairs"] == 40


EMPTY = {
    "zero bytes": (b"", "is empty"),
    "blank lines": (b"\n\n  \n", "is empty"),
    "a header only": (b"is_same,first,second\n", "not a pair list"),
    "not UTF-8": (b"1,\xff\xfe.png,a.png\n", "not UTF-8"),
    "an LFW header promising 10^15 pairs": (b"10 99999999999999\nid0 1 2\n", "header promises"),
    "an LFW header promising 10^12 folds": (b"999999999999 1\nid0 1 2\n", "header promises"),
}


@pytest.mark.parametrize("content", list(EMPTY.values()), ids=list(EMPTY))
def test_a_pair_list_that_holds_no_pairs_is_refused(
    data: Path, tmp_path: Path, content: tuple[bytes, str]
) -> None:
    text, says = content
    pairs = tmp_path / "pairs.csv"
    pairs.write_bytes(text)
    result = fmlkit("evaluate", "--embeddings", data / "emb.parquet", "--pairs", pairs,
                    "-o", tmp_path / "out")  # fmt: skip
    refused(result, says=[str(pairs), says])
    _nothing_in(tmp_path / "out")


def test_repeated_and_self_pairs_are_recorded(data: Path, tmp_path: Path) -> None:
    lines = _pairs()
    pairs = tmp_path / "twice.csv"  # every pair again (one reversed), and two self-pairs
    first, _, second = lines[0][2:].partition(",")
    extra = [f"1,{second},{first}", *lines[1:], "1,id0/0.png,id0/0.png", "1,id1/0.png,id1/0.png"]
    pairs.write_text("\n".join([*lines, *extra]) + "\n")
    out = tmp_path / "out"
    result = fmlkit("evaluate", "--embeddings", data / "emb.parquet", "--pairs", pairs, "-o", out)
    succeeded(result)
    metrics = json.loads((out / "metrics.json").read_text())["twice"]
    assert metrics["repeated_pairs"] == 40 and metrics["self_pairs"] == 2
    assert metrics["pairs"] == 82
    assert "twice: 40 repeated pairs and 2 self pairs (scored as listed)" in result.stdout
    assert "- twice: repeated_pairs = 40" in (out / "metrics.md").read_text()
    assert "40 repeated pairs" in result.stderr  # the warning


def test_a_pair_list_naming_unknown_files_is_refused(data: Path, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("\n".join([*_pairs(), "1,ghost.png,id0/0.png"]) + "\n")
    result = fmlkit("evaluate", "--embeddings", data / "emb.parquet", "--pairs", pairs,
                    "-o", tmp_path / "out")  # fmt: skip
    refused(result, says=["1 image(s) that cannot be used", "ghost.png", "not in"])
    _nothing_in(tmp_path / "out")


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_a_malicious_bin_is_refused_and_runs_nothing(
    checkpoint: Path, tmp_path: Path, protocol: int
) -> None:
    marker = tmp_path / MARKER

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "lfw.bin"
    evil.write_bytes(pickle.dumps(([Evil()], [True]), protocol=protocol))
    result = fmlkit("evaluate", "--checkpoint", checkpoint, "--pairs", evil,
                    "-o", tmp_path / "out")  # fmt: skip
    refused(result, says=[str(evil), "nothing in the file was executed"])
    nothing_complete(marker)
    _nothing_in(tmp_path / "out")


@pytest.mark.parametrize(
    "stem",
    ["<img src=x onerror=alert(1)>", "a&b [link](javascript:x) `code`", "cost $\\frac{a$ 5$"],
)
def test_a_hostile_file_name_is_text_in_the_report(data: Path, tmp_path: Path, stem: str) -> None:
    pairs = tmp_path / f"{stem}.csv"
    pairs.write_text((data / "pairs.csv").read_text())
    out = tmp_path / "out"
    succeeded(fmlkit("evaluate", "--embeddings", data / "emb.parquet", "--pairs", pairs,
                     "-o", out))  # fmt: skip
    markdown = (out / "metrics.md").read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("| ") and "%" not in line)
    assert "<" not in row and "](" not in row and "`" not in row.replace("\\`", ""), row
    assert stem in json.loads((out / "metrics.json").read_text())  # the data keeps the name
    assert (out / "roc.png").stat().st_size > 0 and (out / "scores.png").stat().st_size > 0


def test_labels_holding_html_never_reach_the_report_as_markup(data: Path, tmp_path: Path) -> None:
    table = pq.read_table(data / "emb.parquet")
    labels = pa.array([f"<script>alert({n[2]})</script>" for n in NAMES])
    pq.write_table(table.set_column(1, "label", labels), tmp_path / "emb.parquet")
    out = tmp_path / "out"
    succeeded(fmlkit("evaluate", "--embeddings", tmp_path / "emb.parquet", "--retrieval",
                     "-o", out))  # fmt: skip
    assert "<script>" not in (out / "metrics.md").read_text()


@pytest.mark.parametrize("where", ["/", "a file"])
def test_a_report_folder_that_cannot_be_one_is_refused(
    data: Path, tmp_path: Path, where: str
) -> None:
    out = Path("/") if where == "/" else tmp_path / "file.txt"
    if where == "a file":
        out.write_text("mine\n")
    says = "file system's root" if where == "/" else "is a file"
    result = fmlkit("evaluate", "--embeddings", data / "emb.parquet", "--pairs",
                    data / "pairs.csv", "-o", out)  # fmt: skip
    refused(result, says=says, code=2 if where == "a file" else 1)
    if where == "/":
        nothing_complete(*(Path("/") / name for name in REPORT))
    else:
        assert out.read_text() == "mine\n"


@pytest.mark.parametrize("size", ["0", "-3", "1e9"])
def test_an_absurd_batch_size_is_a_usage_error(data: Path, tmp_path: Path, size: str) -> None:
    result = fmlkit("evaluate", "--embeddings", data / "emb.parquet", "--pairs",
                    data / "pairs.csv", "--batch-size", size, "-o", tmp_path / "out")  # fmt: skip
    refused(result, says="--batch-size", code=2)
