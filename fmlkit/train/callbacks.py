"""What the training loop reports, as callbacks: the metrics table, the trackers (TensorBoard,
W&B, MLflow: `fmlkit.train.loggers`), a progress bar, and the user's own.

The loop calls ``on_log(step, metrics)`` every ``log_every`` steps (and after a validation)
on rank 0 only, and ``close()`` once at the end, also when the run fails. Resuming from a
checkpoint taken at step S, the metrics table and TensorBoard first drop whatever they had
recorded past S, so the resumed run rewrites those rows instead of duplicating them (W&B and
MLflow cannot: their modules say what they keep).
"""

from __future__ import annotations

import csv
import importlib
import io
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from fmlkit.errors import ConfigError
from fmlkit.io import atomic_write_text, writing
from fmlkit.train.config import LogConfig, TrainConfig
from fmlkit.train.loggers.mlflow_run import MLRUNS_DIR
from fmlkit.train.loggers.run_ids import RUN_IDS
from fmlkit.train.loggers.tensorboard import TENSORBOARD_DIR, TensorBoard
from fmlkit.train.loggers.wandb_run import WANDB_DIR

METRICS_CSV = "metrics.csv"
#: columns every metrics row has, in this order; validation metrics follow when computed
BASE_COLUMNS = ("step", "epoch", "loss", "lr", "img_per_s")

__all__ = [
    "BASE_COLUMNS",
    "METRICS_CSV",
    "TENSORBOARD_DIR",
    "Callback",
    "MetricsCSV",
    "ProgressBar",
    "TensorBoard",
    "create_callbacks",
    "require_trackers",
]


class Callback(Protocol):
    """What the training loop calls on rank 0 (``fmlkit.TrainCallback``).

    ``on_log(step, metrics)`` receives every metrics row as ``metrics.csv`` records it:
    ``epoch``, ``loss`` (the mean since the previous row), ``lr``, ``img_per_s``, and on the
    rows where validation ran ``val_<pairs>_accuracy``, ``…_auc`` and the other validation
    metrics. ``close()`` is called once when the run ends, however it ends. An exception
    raised by ``on_log`` stops the run.
    """

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None: ...

    def close(self) -> None: ...


#: tracker -> (module imported when enabled, what to install)
TRACKER_PACKAGES = {"wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow")}


def require_trackers(log: LogConfig) -> None:
    """Import the tracker packages the config enables (and only those), before any work.

    Raises:
        ConfigError: an enabled tracker whose package cannot be imported, with what to
            install.
    """
    for tracker, (module, package) in TRACKER_PACKAGES.items():
        if not getattr(log, tracker).enabled:
            continue
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(
                f"log.{tracker}.enabled is true but {module} cannot be imported ({exc}); "
                f"pip install {package} (or pip install 'fmlkit[track]'), or set "
                f"log.{tracker}.enabled=false"
            ) from None


def create_callbacks(
    config: TrainConfig,
    out: Path,
    *,
    resume_step: int | None,
    total_steps: int,
    step: int,
    user: Sequence[Callback] = (),
) -> list[Callback]:
    """Rank 0's callbacks in the order they are called: metrics.csv, the trackers
    ``config.log`` enables, the progress bar (from ``step`` of ``total_steps``), then
    ``user``'s.

    W&B and MLflow start first, before anything is written: when one cannot start, those
    already started are ended as failed and, in a new run, the files they made in ``out``
    are removed, so that ``out`` is left as it was found (absent or empty).

    Raises:
        ConfigError: W&B or MLflow could not start a run.
    """
    out.mkdir(parents=True, exist_ok=True)
    trackers = _start_trackers(config, out, resume_step=resume_step)
    callbacks: list[Callback] = []
    try:
        callbacks.append(MetricsCSV(out, resume_step=resume_step))
        if config.log.tensorboard:
            callbacks.append(TensorBoard(out, resume_step=resume_step, config=config))
    except BaseException:
        close_callbacks([*callbacks, *trackers], failed=True)
        raise
    return [*callbacks, *trackers, ProgressBar(total_steps, initial=step), *user]


#: what W&B and MLflow may write in a run's folder (`fmlkit.train.loggers`)
TRACKER_FILES = (WANDB_DIR, MLRUNS_DIR, RUN_IDS)


def _start_trackers(config: TrainConfig, out: Path, *, resume_step: int | None) -> list[Callback]:
    started: list[Callback] = []
    try:
        if config.log.wandb.enabled:
            from fmlkit.train.loggers.wandb_run import WandbRun

            started.append(WandbRun(config, out, resume_step=resume_step))
        if config.log.mlflow.enabled:
            from fmlkit.train.loggers.mlflow_run import MlflowRun

            started.append(MlflowRun(config, out, resume_step=resume_step))
    except BaseException:
        close_callbacks(started, failed=True)
        if resume_step is None:  # a new run: `out` was absent or empty, these are ours
            for name in TRACKER_FILES:
                path = out / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                elif path.is_file():
                    path.unlink()
        raise
    return started


def close_callbacks(callbacks: Sequence[Callback], *, failed: bool) -> None:
    """``close()`` every callback, even when one of them raises (the first error is raised
    at the end); after a failure, ``abort()`` where a tracker has one (its run is marked
    failed), and the callbacks' own errors are dropped so as not to hide the run's."""
    first: Exception | None = None
    for callback in callbacks:
        end: Any = getattr(callback, "abort", None) if failed else None
        try:
            (end or callback.close)()
        except Exception as exc:
            first = first or exc
    if first is not None and not failed:
        raise first


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


class ProgressBar:
    """A bar over the training steps with img/s, loss and lr (off when not a TTY)."""

    def __init__(self, total_steps: int, *, initial: int = 0) -> None:
        from fmlkit.progress import bar_width, progress_enabled

        self.bar = None
        if progress_enabled():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total_steps, initial=initial, desc="train", unit="step", **bar_width()
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
