"""`fmlkit train`, `export` and `embed` refuse bad input with an Error line, no traceback."""

from __future__ import annotations

from pathlib import Path

from tests.processes import run_fmlkit


def test_train_names_an_unknown_key_and_its_closest_match(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  batch_size: 8\n")
    done = run_fmlkit("train", "--config", str(config), "train.bach_size=3", "optim.lr=-1")
    assert done.returncode == 1
    assert done.stderr.startswith("Error:") and "Traceback" not in done.stderr
    assert "unknown key train.bach_size; did you mean train.batch_size?" in done.stderr
    assert "optim.lr: expected a value > 0" in done.stderr


def test_train_asks_for_a_data_source(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    done = run_fmlkit("train", "--config", str(config), f"output_dir={tmp_path / 'run'}")
    assert done.returncode == 1 and "data.parquet" in done.stderr
    assert "Traceback" not in done.stderr


def test_embed_needs_exactly_one_model(tmp_path: Path) -> None:
    info = tmp_path / "info.csv"
    info.write_text("file_name,label\n")
    done = run_fmlkit("embed", "--input", str(info), "-o", str(tmp_path / "e.parquet"))
    assert done.returncode == 2
    assert "exactly one of --checkpoint, --onnx and --weights" in done.stderr


def test_export_refuses_a_file_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    bogus = tmp_path / "x.pt"
    bogus.write_bytes(b"nope")
    done = run_fmlkit("export", "--checkpoint", str(bogus), "--onnx", str(tmp_path / "m.onnx"))
    assert done.returncode == 1 and "not a readable fmlkit checkpoint" in done.stderr
    assert not (tmp_path / "m.onnx").exists()
