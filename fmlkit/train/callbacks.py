"""What the training loop reports, as callbacks: the metrics table, TensorBoard, a progress bar.

The loop calls ``on_log(step, metrics)`` every ``log_every`` steps (and after a validation)
on rank 0 only, and ``close()`` at the end. Resuming from a checkpoint taken at step S, each
logger first drops whatever it had recorded past S, so the resumed run rewrites those rows
instead of duplicating them.
"""

from __future__ import annotations

import csv
import io
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from fmlkit.io import atomic_write_text, no_room, writing

METRICS_CSV = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
#: columns every metrics row has, in this order; validation metrics follow when computed
BASE_COLUMNS = ("step", "epoch", "loss", "lr", "img_per_s")


class Callback(Protocol):
    def on_log(self, step: int, metrics: Mapping[str, float]) -> None: ...

    def close(self) -> None: ...


class MetricsCSV:
    """``output_dir/metrics.csv``: one row per logged step, ``BASE_COLUMNS`` then any other
    metric in order of first appearance (empty where a row lacks it).

    Rows are appended; a metric not yet in the header rewrites the file (atomically) with the
    wider header. ``resume_step`` drops the rows past that step first (a resumed run).
    """

    def __init__(self, output_dir: str | os.PathLike[str], *, resume_step: int | None = None):
        self.path = Path(output_dir) / METRICS_CSV
        self.columns: list[str] = list(BASE_COLUMNS)
        self.rows: list[dict[str, str]] = []
        if resume_step is not None and self.path.is_file():
            with self.path.open(newline="") as f:
                reader = csv.DictReader(f)
                self.columns = list(reader.fieldnames or BASE_COLUMNS)
                self.rows = [r for r in reader if _complete(r) and int(r["step"]) <= resume_step]
        self._rewrite()

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        row = {"step": str(step), **{k: _format(v) for k, v in metrics.items()}}
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new:
            self.columns += new
            self._rewrite()
            return
        with writing(self.path, appending=True), self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.columns, restval="").writerow(row)

    def _rewrite(self) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, self.columns, restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, text.getvalue(), fsync=False)

    def close(self) -> None:
        pass


def _complete(row: Mapping[str, Any]) -> bool:
    """A row written whole (a kill mid-append can leave a truncated last line)."""
    try:
        int(row["step"])
    except (TypeError, ValueError):
        return False
    return all(row.get(k) not in (None, "") for k in BASE_COLUMNS)


def _format(value: float | int | str) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class TensorBoard:
    """TensorBoard event files in ``output_dir/tensorboard``: every metric as a scalar at its
    step. On resume the events past ``resume_step`` are purged (``purge_step``).

    A full disk is an `OutputError` naming the folder, raised in the training thread: the
    writer's own thread, whose write failed first, keeps its error for the next write instead
    of printing a traceback (`_quiet_event_writer_threads`)."""

    def __init__(self, output_dir: str | os.PathLike[str], *, resume_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        purge = None if resume_step is None else resume_step + 1
        self.path = Path(output_dir) / TENSORBOARD_DIR
        _quiet_event_writer_threads()
        with writing(self.path, appending=True):
            self.writer = SummaryWriter(str(self.path), purge_step=purge)

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        with writing(self.path, appending=True):
            for name, value in metrics.items():
                if name != "epoch":
                    self.writer.add_scalar(name, float(value), step)
            self.writer.flush()

    def close(self) -> None:
        with writing(self.path, appending=True):
            self.writer.close()


def _quiet_event_writer_threads() -> None:
    """Let TensorBoard's writer threads fail on a full disk without a traceback: the thread
    keeps its error and the training thread raises it at its next write (TensorBoard's own
    design); any other error of any thread is printed as before."""
    previous = threading.excepthook
    if getattr(previous, "__name__", "") == "_fmlkit_excepthook":
        return

    def _fmlkit_excepthook(args: threading.ExceptHookArgs) -> None:
        thread = type(args.thread).__module__ if args.thread is not None else ""
        exc = args.exc_value
        if thread.startswith("tensorboard.") and exc is not None and no_room(exc) is not None:
            return
        previous(args)

    threading.excepthook = _fmlkit_excepthook


class ProgressBar:
    """A bar over the training steps with img/s, loss and lr (off when not a TTY)."""

    def __init__(self, total_steps: int, *, initial: int = 0) -> None:
        from fmlkit.progress import progress_enabled

        self.bar = None
        if progress_enabled():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total_steps, initial=initial, desc="train", unit="step", dynamic_ncols=True
            )
        self.last = initial

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        if self.bar is None:
            return
        self.bar.update(step - self.last)
        self.last = step
        shown = {k: metrics[k] for k in ("loss", "lr", "img_per_s") if k in metrics}
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()})

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
