"""`fmlkit evaluate` as a user runs it: the report from embeddings or a model (an InsightFace
.bin), and every bad input of issue #9 refused with one Error line and exit 1 (usage: 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fmlkit.data.formats.insightface_bin import write_bin
from tests.eval.test_evaluate import (
    CLASSES,
    PER_CLASS,
    PNG_MAGIC,
    file_name,
    make_checkpoint,
    pair_rows,
    write_csv,
    write_embeddings,
    write_faces,
    write_lfw,
)
from tests.processes import run_fmlkit


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """One torch thread in the commands: tiny models, a shared 2-core machine."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def embeddings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("embeddings")
    rng = np.random.default_rng(3)
    names = [file_name(f"id{c}", i) for c in range(CLASSES) for i in range(1, PER_CLASS + 1)]
    labels = [n.split("/")[0] for n in names]
    centres = {label: rng.normal(size=8) for label in set(labels)}
    vectors = np.array([centres[label] + rng.normal(0, 0.9, 8) for label in labels])
    return write_embeddings(out / "emb.parquet", names, vectors, labels)


def _fails(done: object, code: int, *messages: str) -> None:
    assert getattr(done, "returncode") == code, getattr(done, "stderr")  # noqa: B009
    stderr = str(getattr(done, "stderr"))  # noqa: B009
    assert "Traceback" not in stderr and stderr.count("Error:") == 1
    for message in messages:
        assert message in stderr, stderr


def test_evaluate_help_names_the_outputs_and_the_protocol() -> None:
    done = run_fmlkit("evaluate", "--help")
    assert done.returncode == 0
    for text in ("metrics.json", "metrics.md", "roc.png", "scores.png", "population std"):
        assert text in done.stdout


def test_evaluate_embeddings_writes_one_report_for_several_lists(
    embeddings: Path, tmp_path: Path
) -> None:
    rows = pair_rows()
    csv, lfw = write_csv(tmp_path / "mine.csv", rows), write_lfw(tmp_path / "lfw.txt", rows)
    out = tmp_path / "report"
    done = run_fmlkit("evaluate", "--embeddings", str(embeddings), "--pairs", str(csv),
                      "--pairs", str(lfw), "--retrieval", "-o", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["mine", "lfw", "retrieval"] and metrics["mine"] == metrics["lfw"]
    assert metrics["mine"]["pairs"] == 40 and "precision_at_1" in metrics["retrieval"]
    assert "mine" in done.stdout and "P@1" in done.stdout and "wrote" in done.stdout
    for name in ("roc.png", "scores.png"):
        assert (out / name).read_bytes().startswith(PNG_MAGIC)
    assert "| mine |" in (out / "metrics.md").read_text()


def test_evaluate_a_bin_with_a_checkpoint(tmp_path: Path) -> None:
    faces = write_faces(tmp_path / "faces")
    checkpoint = make_checkpoint(faces, tmp_path / "run")
    rows = pair_rows(1)
    images = []
    for _, a, i, b, j in rows:
        images += [(faces / file_name(a, i)).read_bytes(), (faces / file_name(b, j)).read_bytes()]
    write_bin(tmp_path / "faces.bin", images, [r[0] for r in rows])
    out = tmp_path / "report"
    done = run_fmlkit("evaluate", "--checkpoint", str(checkpoint), "--pairs",
                      str(tmp_path / "faces.bin"), "-o", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "metrics.json").read_text())["faces"]["pairs"] == 40


def test_evaluate_lists_absent_files_and_skip_missing_counts_them(
    embeddings: Path, tmp_path: Path
) -> None:
    rows = pair_rows()
    rows[1], rows[2] = (True, "ghost", 1, "ghost", 2), (False, "id0", 1, "nobody", 7)
    pairs = write_csv(tmp_path / "holes.csv", rows)
    args = ["evaluate", "--embeddings", str(embeddings), "--pairs", str(pairs)]
    done = run_fmlkit(*args, "-o", str(tmp_path / "a"))
    _fails(done, 1, "names 3 image(s) that cannot be used", "ghost/ghost_0001.jpg (not in",
           "nobody/nobody_0007.jpg", "--skip-missing to drop the 2 of 40 pairs")  # fmt: skip
    done = run_fmlkit(*args, "--skip-missing", "-o", str(tmp_path / "b"))
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())["holes"]
    assert metrics["skipped_missing"] == 2 and metrics["pairs"] == 38
    assert "2 pairs naming unusable images skipped" in done.stdout


def test_evaluate_refuses_names_outside_the_root(tmp_path: Path) -> None:
    (tmp_path / "root" / "a").mkdir(parents=True)
    (tmp_path / "root" / "a" / "1.jpg").write_bytes(b"x")
    (tmp_path / "pairs.csv").write_text("1,../../etc/passwd,a/1.jpg\n" + "0,a/1.jpg,a/1.jpg\n" * 9)
    model = tmp_path / "model.pt"
    model.write_bytes(b"never read: the pairs are checked first")
    pairs = str(tmp_path / "pairs.csv")
    done = run_fmlkit("evaluate", "--checkpoint", str(model), "--pairs", pairs,
                      "--root", str(tmp_path / "root"), "-o", str(tmp_path / "out"))  # fmt: skip
    _fails(done, 1, "../../etc/passwd (outside --root")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("vectors", "pairs", "message"),
    [
        ([[1, 2], [1, 2, 3]], "1,a,b\n" * 10, "mixed dimension: 2 (e.g. a), 3 (e.g. b)"),
        ([[1, 2], [np.nan, 1]], "1,a,b\n" * 10, "1 embeddings have NaN or infinite values (b)"),
        ([[1, 2], [2, 1]], "", "is empty: it holds no pairs"),
    ],
)
def test_evaluate_refuses_bad_embeddings_and_empty_lists(
    tmp_path: Path, vectors: list[list[float]], pairs: str, message: str
) -> None:
    emb = write_embeddings(tmp_path / "e.parquet", ["a", "b"], vectors, None)
    (tmp_path / "p.csv").write_text(pairs)
    done = run_fmlkit("evaluate", "--embeddings", str(emb), "--pairs", str(tmp_path / "p.csv"),
                      "-o", str(tmp_path / "out"))  # fmt: skip
    _fails(done, 1, message)


def test_evaluate_usage_errors_exit_2(embeddings: Path, tmp_path: Path) -> None:
    done = run_fmlkit("evaluate", "--pairs", str(embeddings), "-o", str(tmp_path / "o"))
    _fails(done, 2, "exactly one of --checkpoint, --onnx, --weights and --embeddings")
    done = run_fmlkit("evaluate", "--embeddings", str(embeddings), "--retrieval",
                      "--no-flip-sum", "-o", str(tmp_path / "o"))  # fmt: skip
    _fails(done, 2, "--no-flip-sum has no effect with --embeddings")
