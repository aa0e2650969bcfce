"""TensorBoard event files in ``output_dir/tensorboard``: the metrics under grouped tags, and the
config once, as hyperparameters (the HParams tab) and as YAML text (the Text tab)."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path

from fmlkit.io import no_room, writing
from fmlkit.schema import dump_yaml
from fmlkit.train.config import TrainConfig, config_to_dict
from fmlkit.train.loggers.tags import as_text, hyperparameters, metric_tag

TENSORBOARD_DIR = "tensorboard"


class TensorBoard:
    """Every metric as a scalar at its step, under its `metric_tag` (``train/loss``,
    ``val/lfw/accuracy``). A new run first records ``config``: the flattened keys as hparams
    (with ``train/loss`` as their metric) and the YAML as text. On resume the events past
    ``resume_step`` are purged (``purge_step``) and the config is not recorded again.

    A full disk is an `OutputError` naming the folder, raised in the training thread: the
    writer's own thread, whose write failed first, keeps its error for the next write instead
    of printing a traceback (`_quiet_event_writer_threads`)."""

    def __init__(
        self,
        output_dir: str | os.PathLike[str],
        *,
        resume_step: int | None = None,
        config: TrainConfig | None = None,
    ):
        from torch.utils.tensorboard import SummaryWriter

        purge = None if resume_step is None else resume_step + 1
        self.path = Path(output_dir) / TENSORBOARD_DIR
        _quiet_event_writer_threads()
        with writing(self.path, appending=True):
            self.writer = SummaryWriter(str(self.path), purge_step=purge)
            if config is not None and resume_step is None:
                self._record_config(config)

    def _record_config(self, config: TrainConfig) -> None:
        from torch.utils.tensorboard.summary import hparams

        flat = hyperparameters(config)
        shown = {k: v if isinstance(v, (bool, int, float)) else as_text(v) for k, v in flat.items()}
        events = self.writer.file_writer
        assert events is not None  # made by SummaryWriter's __init__
        for summary in hparams(shown, {"train/loss": 0.0}):
            events.add_summary(summary)
        text = "```yaml\n" + dump_yaml(config_to_dict(config)) + "```"
        self.writer.add_text("config", text, 0)
        self.writer.flush()

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        with writing(self.path, appending=True):
            for name, value in metrics.items():
                self.writer.add_scalar(metric_tag(name), float(value), step)
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
