"""A disk that fills up while a stage writes.

Each case runs a command once to the end, then again in a child process whose file-size limit
(``RLIMIT_FSIZE``, what ``ulimit -f`` sets; a full disk without root) lets the interpreter
start but is too small for the output, measured from the first run so that the command fails
*while writing the output*. The second run must say so in one ``Error:`` line naming the
output and the reason (EFBIG: CPython ignores SIGXFSZ, so the process is not killed by it),
exit 1, leave no temporary entry behind, and leave the first run's output as it was: the same
bytes under the same inodes, so not even replaced by an equal copy. A full disk (ENOSPC) and a
quota (EDQUOT) take the same path (tests/test_io.py)."""

from __future__ import annotations

import hashlib
import io
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmlkit.columns import FILE_NAME, LABEL
from tests.conftest import SynthTree
from tests.hostile.check import fmlkit, refused, succeeded

TOO_LARGE = "File too large"


def _limited(
    limit: int, *args: str | os.PathLike[str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """``python -m fmlkit ARGS`` in a child process that may write no file past ``limit``
    bytes."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "fmlkit", *(os.fspath(a) for a in args)],
        cwd=cwd,
        preexec_fn=cap,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _state(*paths: Path) -> dict[str, tuple[int, str | None]]:
    """Every entry under ``paths`` (links not followed): path → (inode, the sha256 of a file,
    the target of a link, None for a folder)."""
    found: dict[str, tuple[int, str | None]] = {}

    def add(path: Path) -> None:
        st = path.lstat()
        if path.is_symlink():
            found[str(path)] = (st.st_ino, str(path.readlink()))
        elif path.is_dir():
            found[str(path)] = (st.st_ino, None)
        else:
            found[str(path)] = (st.st_ino, hashlib.sha256(path.read_bytes()).hexdigest())

    for top in paths:
        add(top)
        if top.is_dir() and not top.is_symlink():
            for root, dirs, files in os.walk(top):
                for name in sorted(dirs + files):
                    add(Path(root, name))
    return found


def _leftovers(folder: Path) -> list[str]:
    """Temporary entries and staging folders under ``folder``."""
    return sorted(str(p) for p in folder.rglob("*") if ".tmp-" in p.name or p.name == ".staging")


def _largest(*paths: Path) -> int:
    """The size of the largest file under ``paths`` (each followed if it is a link)."""
    tops = [p.resolve() for p in paths]
    files = [p for top in tops for p in ([top] if top.is_file() else top.rglob("*"))]
    return max(p.stat().st_size for p in files if p.is_file() and not p.is_symlink())


@dataclass(frozen=True)
class Written:
    """A command that ran once to the end in ``cwd``, and what it wrote.

    Attributes:
        argv: the command, to run again under the limit.
        outputs: what it wrote (relative to ``cwd``): unchanged after the failed rerun.
        names: the words the ``Error:`` line must contain (the output, or the file of it).
        limit: bytes; the largest file the rerun may write.
    """

    argv: tuple[str, ...]
    outputs: tuple[str, ...]
    names: str
    limit: int


# --- the cases: each makes its input in ``cwd`` and runs its command once, to the end ----------


def _prepare(cwd: Path, request: pytest.FixtureRequest) -> Written:
    tree: SynthTree = request.getfixturevalue("synth_tree")
    argv = ("prepare", str(tree.root), "-o", "info.csv", "-j", "2", "--overwrite")  # a pool
    succeeded(fmlkit(*argv, cwd=cwd))
    return Written(argv, ("info.csv",), "info.csv", _largest(cwd / "info.csv") // 2)


def _filter(cwd: Path, request: pytest.FixtureRequest) -> Written:
    """The report is written last and is larger than the tables: they are written whole,
    then the report fails, and the tables must not be replaced either."""
    tree: SynthTree = request.getfixturevalue("synth_tree")
    scan: Path = request.getfixturevalue("synth_scan")
    tables = ("filtered.csv", "removed.csv")
    argv = ("filter", str(scan), "-o", tables[0], "--removed", tables[1], "--dedup",
            "--report", "report", "--root", str(tree.root), "--overwrite")  # fmt: skip
    succeeded(fmlkit(*argv, cwd=cwd))
    tables_largest, report_largest = _largest(*(cwd / t for t in tables)), _largest(cwd / "report")
    limit = (tables_largest + report_largest) // 2
    assert tables_largest < limit < report_largest, "the tables must fit, the report not"
    return Written(argv, (*tables, "report"), "report", limit)


def _split(cwd: Path, request: pytest.FixtureRequest) -> Written:
    filtered: Path = request.getfixturevalue("synth_filtered")
    argv = ("split", str(filtered), "-o", "split.csv", "--mode", "classes",
            "--test-fraction", "0.25", "--seed", "0", "--overwrite")  # fmt: skip
    succeeded(fmlkit(*argv, cwd=cwd))
    return Written(argv, ("split.csv",), "split.csv", _largest(cwd / "split.csv") // 2)


def _pairs(cwd: Path, request: pytest.FixtureRequest) -> Written:
    filtered: Path = request.getfixturevalue("synth_filtered")
    succeeded(fmlkit("split", filtered, "-o", "split.csv", "--mode", "classes",
                     "--test-fraction", "0.5", "--seed", "0", cwd=cwd))  # fmt: skip
    argv = ("pairs", "split.csv", "-o", "pairs.csv", "--split", "test", "--positives", "40",
            "--negatives", "40", "--overwrite")  # fmt: skip
    succeeded(fmlkit(*argv, cwd=cwd))
    return Written(argv, ("pairs.csv",), "pairs.csv", _largest(cwd / "pairs.csv") // 2)


def _to_parquet(cwd: Path, request: pytest.FixtureRequest) -> Written:
    tree: SynthTree = request.getfixturevalue("synth_tree")
    filtered: Path = request.getfixturevalue("synth_filtered")
    argv = ("convert", str(filtered), "parquet", "--root", str(tree.root), "--overwrite")
    succeeded(fmlkit(*argv, cwd=cwd))
    return Written(argv, ("parquet",), "parquet", _largest(cwd / "parquet") // 2)


def _parquet_dataset(cwd: Path, request: pytest.FixtureRequest) -> None:
    tree: SynthTree = request.getfixturevalue("synth_tree")
    filtered: Path = request.getfixturevalue("synth_filtered")
    succeeded(fmlkit("convert", filtered, cwd / "source", "--root", tree.root))


def _to_rec(cwd: Path, request: pytest.FixtureRequest) -> Written:
    """.rec, .idx and property are renamed into place together, or none of them."""
    _parquet_dataset(cwd, request)
    argv = ("convert", "source", "rec/train.rec", "--overwrite")
    succeeded(fmlkit(*argv, cwd=cwd))
    return Written(argv, ("rec",), "train.rec", _largest(cwd / "rec/train.rec") // 2)


def _rec_to_parquet(cwd: Path, request: pytest.FixtureRequest) -> Written:
    """Worker processes write the shards (one a row group of 1000 rows): their error reaches
    the command."""
    from fmlkit.data.formats.recordio import IRHeader, RecordWriter, pack

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "gray").save(buffer, "JPEG")
    with RecordWriter(cwd / "train.rec", cwd / "train.idx") as writer:
        for key in range(2100):
            writer.write(key, pack(IRHeader(0, float(key % 7), id=key), buffer.getvalue()))
    argv = ("convert", "train.rec", "parquet", "-j", "2", "--shard-size", "1", "--overwrite")
    succeeded(fmlkit(*argv, cwd=cwd))
    assert len(list((cwd / "parquet").glob("part-*.parquet"))) == 3, "3 shards for 2 workers"
    return Written(argv, ("parquet",), "parquet", _largest(cwd / "parquet") // 2)


def _synth(cwd: Path, request: pytest.FixtureRequest) -> Written:
    """Worker processes write the images: their error reaches the command."""
    argv = ("synth", "data", "-n", "6", "-m", "4", "--size", "64", "-j", "2", "--overwrite")
    succeeded(fmlkit(*argv, cwd=cwd))
    return Written(argv, ("data", "data.truth.csv"), "data", _largest(cwd / "data") // 2)


def _synth_scenes(cwd: Path, request: pytest.FixtureRequest) -> Written:
    """`synth --scenes`: worker processes write the photos; three outputs, none replaced."""
    argv = ("synth", "data", "-n", "4", "-m", "3", "--scenes", "-j", "2", "--overwrite")
    succeeded(fmlkit(*argv, cwd=cwd))
    outputs = ("data", "data.truth.csv", "data.landmarks.csv")
    return Written(argv, outputs, "data", _largest(cwd / "data") // 2)


def _align(cwd: Path, request: pytest.FixtureRequest) -> Written:
    """Worker processes write the crops: their error reaches the command."""
    from fmlkit.columns import LANDMARK_COLUMNS
    from fmlkit.data.align.types import ARCFACE_112

    points = ",".join(f"{v:.2f}" for v in (ARCFACE_112 + 20).ravel())
    rows = [f"file_name,{','.join(LANDMARK_COLUMNS)}"]
    for i in range(6):
        (cwd / f"photos/p{i % 2}").mkdir(parents=True, exist_ok=True)
        noise = np.random.default_rng(i).integers(0, 256, (160, 160, 3), dtype=np.uint8)
        Image.fromarray(noise).save(cwd / f"photos/p{i % 2}/{i}.png")
        rows.append(f"p{i % 2}/{i}.png,{points}")
    (cwd / "marks.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    argv = ("align", "photos", "-o", "aligned", "--landmarks", "marks.csv", "-j", "2",
            "--overwrite")  # fmt: skip
    succeeded(fmlkit(*argv, cwd=cwd))
    assert _largest(cwd / "aligned.csv") < _largest(cwd / "aligned") // 2
    return Written(argv, ("aligned", "aligned.csv"), "aligned", _largest(cwd / "aligned") // 2)


def _train(cwd: Path, request: pytest.FixtureRequest) -> Written:
    """A run of 2 steps resumed to 4: the checkpoint of step 4 does not fit; the run's
    last.pt stays the one of step 2."""
    trained: Path = request.getfixturevalue("trained")
    shutil.copytree(trained / "run", cwd / "run")
    (cwd / "config.yaml").write_text(_train_config(request, cwd / "run"), encoding="utf-8")
    argv = ("train", "--config", "config.yaml", "--resume", "train.max_steps=4")
    return Written(argv, ("run/checkpoints",), "step_00000004.pt",
                   _largest(cwd / "run/checkpoints") // 2)  # fmt: skip


def _export(cwd: Path, request: pytest.FixtureRequest) -> Written:
    trained: Path = request.getfixturevalue("trained")
    argv = ("export", "--checkpoint", str(trained / "run/checkpoints/last.pt"),
            "--onnx", "model.onnx", "--overwrite")  # fmt: skip
    succeeded(fmlkit(*argv, cwd=cwd))
    return Written(argv, ("model.onnx",), "model.onnx", _largest(cwd / "model.onnx") // 2)


def _embed(cwd: Path, request: pytest.FixtureRequest) -> Written:
    trained: Path = request.getfixturevalue("trained")
    tree: SynthTree = request.getfixturevalue("synth_tree")
    argv = ("embed", "--checkpoint", str(trained / "run/checkpoints/last.pt"),
            "--input", str(trained / "few.csv"), "--root", str(tree.root),
            "-o", "emb.parquet", "--overwrite")  # fmt: skip
    succeeded(fmlkit(*argv, cwd=cwd))
    return Written(argv, ("emb.parquet",), "emb.parquet", _largest(cwd / "emb.parquet") // 2)


def _evaluate(cwd: Path, request: pytest.FixtureRequest) -> Written:
    """The report's files are renamed into place together: its small metrics files are
    written whole, then a plot fails, and they must not be replaced either."""
    trained: Path = request.getfixturevalue("trained")
    argv = ("evaluate", "--embeddings", str(trained / "emb.parquet"),
            "--pairs", str(trained / "pairs.csv"), "-o", "eval", "--overwrite")  # fmt: skip
    succeeded(fmlkit(*argv, cwd=cwd))
    assert (cwd / "eval/metrics.json").stat().st_size < _largest(cwd / "eval") // 2
    return Written(argv, ("eval",), "eval", _largest(cwd / "eval") // 2)


PIPELINE = """\
stages:
  synth:
    run: synth
    params: {identities: 6, images_per_identity: 4, size: 64, seed: 0}
    outs: {out_dir: disk/data}
  prepare:
    run: prepare
    deps: {dataset_dir: "${stages.synth.outs.out_dir}"}
    params: {workers: 1}
    outs: {output: disk/info.csv}
  split:
    run: split
    deps: {dataset_info: "${stages.prepare.outs.output}"}
    params: {mode: classes, test_fraction: 0.34, seed: 0}
    outs: {output: disk/split.csv}
  pairs:
    run: pairs
    deps: {split_info: "${stages.split.outs.output}"}
    params: {split: test, positives: 2, negatives: 2}
    outs: {output: disk/pairs.csv}
"""


def _pipeline(cwd: Path) -> None:
    """Run `PIPELINE` once, then age its files by an hour, so that the next run stores their
    hashes in the store's hash cache (a file is cached once it is older than
    `RACY_SECONDS`): under the limit that cache cannot be written either."""
    (cwd / "disk.yaml").write_text(PIPELINE, encoding="utf-8")
    succeeded(fmlkit("run", "disk.yaml", cwd=cwd))
    hour_ago = time.time() - 3600
    for root, _, files in os.walk(cwd / "artifacts"):
        for name in files:
            os.utime(Path(root, name), (hour_ago, hour_ago))


def _pipeline_stage(cwd: Path, request: pytest.FixtureRequest) -> Written:
    """A stage's output does not fit: the stage fails, its staging folder is removed, the
    lock and every declared output stay as they were."""
    _pipeline(cwd)
    yaml = cwd / "disk.yaml"
    yaml.write_text(yaml.read_text().replace("{workers: 1}", "{workers: 1, hashes: false}"))
    limit = _largest(cwd / "disk/info.csv") // 3  # the new table is smaller, by the phash column
    return Written(("run", "disk.yaml"), ("disk.lock", "disk"), "info.csv", limit)


def _pipeline_lock(cwd: Path, request: pytest.FixtureRequest) -> Written:
    """The stage and its provenance fit, the lock does not: the lock stays as it was (the
    new version, complete, is linked already: see the test after this one)."""
    _pipeline(cwd)
    yaml = cwd / "disk.yaml"
    yaml.write_text(yaml.read_text().replace("positives: 2", "positives: 3"))
    store = cwd / "artifacts/disk/pairs"
    fits = _largest(store, cwd / "disk/pairs.csv")
    lock = (cwd / "disk.lock").stat().st_size
    assert fits < lock - 200, (fits, lock)
    return Written(("run", "disk.yaml"), ("disk.lock",), "disk.lock", (fits + lock) // 2)


def _clean(cwd: Path, request: pytest.FixtureRequest) -> Written:
    """The decisions folder (and the applied table in it) is renamed into place whole."""
    from fmlkit.data.formats.embeddings import write_embeddings

    rng = np.random.default_rng(0)
    labels = [f"id{k % 40}" for k in range(2000)]
    names = [f"{label}/{k}.jpg" for k, label in enumerate(labels)]
    write_embeddings(cwd / "emb.parquet", names, labels, rng.normal(size=(2000, 16)))
    argv = ("clean", "emb.parquet", "-o", "decisions", "--overwrite")
    succeeded(fmlkit(*argv, cwd=cwd))
    return Written(argv, ("decisions",), "decisions", _largest(cwd / "decisions") // 2)


CASES: dict[str, Callable[[Path, pytest.FixtureRequest], Written]] = {
    "prepare": _prepare,
    "filter": _filter,
    "split": _split,
    "pairs": _pairs,
    "convert-parquet": _to_parquet,
    "convert-rec": _to_rec,
    "convert-rec-to-parquet-workers": _rec_to_parquet,
    "synth-workers": _synth,
    "synth-scenes": _synth_scenes,
    "align-workers": _align,
    "train-checkpoint": _train,
    "export-onnx": _export,
    "embed": _embed,
    "evaluate": _evaluate,
    "clean": _clean,
    "pipeline-stage-output": _pipeline_stage,
    "pipeline-lock": _pipeline_lock,
}


def _train_config(request: pytest.FixtureRequest, output_dir: Path) -> str:
    """A tiny model's config, 2 steps on ``synth_filtered``, a checkpoint at step 2."""
    tree: SynthTree = request.getfixturevalue("synth_tree")
    filtered: Path = request.getfixturevalue("synth_filtered")
    return (
        f"data: {{dataset_info: {filtered}, root: {tree.root}, image_size: 32}}\n"
        "model: {backbone: mobilefacenet, embedding_size: 32}\n"
        "head: {name: cosface}\n"
        "train: {batch_size: 8, max_steps: 2, num_workers: 0}\n"
        "checkpoint: {every_steps: 2}\n"
        f"output_dir: {output_dir}\n"
        "seed: 3\n"
    )


@pytest.fixture(scope="module")
def trained(
    synth_tree: SynthTree,
    synth_filtered: Path,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Path:
    """A folder with run/, a tiny model trained 2 steps (`_train_config`); few.csv, 2 images
    of each of 8 labels of ``synth_filtered``; their embeddings by the run's checkpoint
    (emb.parquet), and 15 pairs of them (pairs.csv). Read-only."""
    import pandas as pd

    from fmlkit.eval.embed import embed
    from fmlkit.train.config import load_config
    from fmlkit.train.loop import train

    folder = tmp_path_factory.mktemp("disk_full_trained")
    (folder / "config.yaml").write_text(_train_config(request, folder / "run"), encoding="utf-8")
    train(load_config(folder / "config.yaml"))
    rows = pd.read_csv(synth_filtered, dtype=str, keep_default_na=False)
    few = rows.groupby(LABEL, sort=True).head(2).sort_values([LABEL, FILE_NAME]).head(16)
    few.to_csv(folder / "few.csv", index=False)
    checkpoint = folder / "run/checkpoints/last.pt"
    embed(folder / "few.csv", folder / "emb.parquet", checkpoint=checkpoint, root=synth_tree.root)
    names = list(few[FILE_NAME])
    pairs = [f"1,{names[i]},{names[i + 1]}\n" for i in range(0, 16, 2)]
    pairs += [f"0,{names[i]},{names[i + 2]}\n" for i in range(0, 14, 2)]
    (folder / "pairs.csv").write_text("".join(pairs), encoding="utf-8")
    return folder


@pytest.mark.parametrize("case", CASES)
def test_a_full_disk_while_writing_fails_cleanly_and_keeps_the_previous_output(
    case: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    written = CASES[case](cwd, request)
    before = _state(*(cwd / o for o in written.outputs))
    result = _limited(written.limit, *written.argv, cwd=cwd)
    refused(result, says=[written.names, TOO_LARGE])  # exit 1, not killed by SIGXFSZ
    assert _state(*(cwd / o for o in written.outputs)) == before, "the previous output changed"
    assert _leftovers(cwd) == [], "temporary entries left behind"


def test_a_run_whose_lock_found_no_room_is_described_and_repaired(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    written = _pipeline_lock(tmp_path, request)
    refused(_limited(written.limit, *written.argv, cwd=tmp_path), says=["disk.lock", TOO_LARGE])
    status = fmlkit("status", "disk.yaml", cwd=tmp_path)
    pairs = next(line for line in status.stdout.splitlines() if line.startswith("pairs "))
    assert pairs.split()[1] == "changed" and "not to the locked" in pairs, status.stdout
    succeeded(fmlkit("run", "disk.yaml", cwd=tmp_path))
    assert "positives: 3" in (tmp_path / "disk.lock").read_text()
    status = fmlkit("status", "disk.yaml", cwd=tmp_path)
    states = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines() if line}
    assert set(states.values()) == {"up-to-date"}, status.stdout


TENSORBOARD = """
import resource, sys, threading
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
from fmlkit.errors import OutputError
from fmlkit.train.callbacks import TensorBoard
board = TensorBoard(sys.argv[1])
try:
    for step in range(1000):
        board.on_log(step, {{"loss": 1.0, "lr": 0.1}})
except OutputError as e:
    print(e)
for thread in threading.enumerate():  # the writer's thread has ended, its hook run
    if thread is not threading.main_thread():
        thread.join(10)
"""


def test_tensorboard_on_a_full_disk_fails_once_in_the_training_thread(tmp_path: Path) -> None:
    """TensorBoard writes its events in a thread of its own: the failed write is reported by
    the training thread, naming the folder, and that thread prints no traceback."""
    code = TENSORBOARD.format(limit=2000)
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"cannot write {tmp_path / 'tensorboard'}: {TOO_LARGE}")
    assert "Traceback" not in done.stderr and "Exception in thread" not in done.stderr
