"""metrics.csv and TensorBoard event files, including what a resumed run does to them."""

from __future__ import annotations

import csv
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fmlkit.train.callbacks import MetricsCSV, TensorBoard


def _row(step: int, loss: float) -> dict[str, float]:
    return {"epoch": 0, "loss": loss, "lr": 0.1, "img_per_s": 123.5}


def _read(path: Path) -> list[dict[str, str]]:
    with (path / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_metrics_csv_widens_its_header_for_validation_metrics(tmp_path: Path) -> None:
    log = MetricsCSV(tmp_path)
    log.on_log(10, _row(10, 2.5))
    log.on_log(20, {**_row(20, 2.0), "val_lfw_accuracy": 0.75})
    log.on_log(30, _row(30, 1.5))
    rows = _read(tmp_path)
    assert [r["step"] for r in rows] == ["10", "20", "30"]
    assert [r["val_lfw_accuracy"] for r in rows] == ["", "0.75", ""]
    assert rows[0]["loss"] == "2.5" and rows[2]["img_per_s"] == "123.5"


def test_metrics_csv_on_resume_drops_rows_past_the_checkpoint_and_partial_lines(
    tmp_path: Path,
) -> None:
    log = MetricsCSV(tmp_path)
    for step in (10, 20, 30, 40):
        log.on_log(step, _row(step, 1.0 / step))
    with (tmp_path / "metrics.csv").open("a") as f:
        f.write("50,0,0.0")  # a kill in the middle of an append
    resumed = MetricsCSV(tmp_path, resume_step=20)
    resumed.on_log(30, _row(30, 9.0))
    rows = _read(tmp_path)
    assert [r["step"] for r in rows] == ["10", "20", "30"]
    assert rows[-1]["loss"] == "9"


def test_tensorboard_writes_real_event_files_and_purges_on_resume(tmp_path: Path) -> None:
    board = TensorBoard(tmp_path)
    for step in (1, 2, 3):
        board.on_log(step, {"loss": float(step), "epoch": 0})
    board.close()
    resumed = TensorBoard(tmp_path, resume_step=1)
    resumed.on_log(2, {"loss": 20.0})
    resumed.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"train/loss", "train/epoch"}  # grouped tags
    loss = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert loss == [(1, 1.0), (2, 20.0)]
