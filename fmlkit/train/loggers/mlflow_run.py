"""MLflow: one MLflow run per training run, continued by ``--resume``.

The tracking URI is ``log.mlflow.tracking_uri``, else ``MLFLOW_TRACKING_URI``, else a file
store in ``output_dir/mlruns`` (MLflow 3 keeps its file store in maintenance mode behind
``MLFLOW_ALLOW_FILE_STORE``, which is set for a local folder unless already set). The run's id
is kept in ``output_dir/tracking.json``; a resumed run logs into the same run. Every metrics
row is logged at its step under its grouped tag, the flattened config as params (values cut to
`MAX_PARAM_LENGTH` characters). MLflow cannot delete points: steps logged past the checkpoint
by a killed run keep their values, and the resumed run adds its own at the same steps (MLflow
shows both; the later one is the resumed run's). Params cannot change: a resumed run whose
config changed keeps the first values and warns, naming the keys. ``mlflow`` is imported here
only, when ``log.mlflow`` is enabled.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

from fmlkit.errors import ConfigError
from fmlkit.train.config import TrainConfig
from fmlkit.train.loggers.run_ids import read_run_id, write_run_id
from fmlkit.train.loggers.tags import as_text, hyperparameters, metric_tag

log = logging.getLogger(__name__)

TRACKER = "mlflow"
MLRUNS_DIR = "mlruns"
#: the longest param value any MLflow server takes (older ones: 500; MLflow 2+: 6000)
MAX_PARAM_LENGTH = 500
_BATCH = 100  # params per log_batch call (MLflow's limit)


def tracking_uri(configured: str | None, out: Path) -> str:
    """Where the run is tracked: ``configured``, else ``MLFLOW_TRACKING_URI``, else the file
    store ``out/mlruns`` (as a ``file:`` URI)."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or None
    return uri if uri is not None else (out.resolve() / MLRUNS_DIR).as_uri()


class MlflowRun:
    """Log the metrics rows of the run in ``out`` to an MLflow run (``config.log.mlflow``).

    Raises:
        ConfigError: the tracking store cannot be reached or the run cannot be made.
    """

    def __init__(self, config: TrainConfig, out: Path, *, resume_step: int | None) -> None:
        settings = config.log.mlflow
        self.uri = tracking_uri(settings.tracking_uri, out)
        if urlparse(self.uri).scheme in ("", "file"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Metric, Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self._metric, self._error = Metric, MlflowException
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            kept = read_run_id(out, TRACKER) if resume_step is not None else None
            self.run_id = self._continued(kept) or self._new_run(config, out)
            write_run_id(out, TRACKER, self.run_id)
            params = [Param(k, v[:MAX_PARAM_LENGTH]) for k, v in self._new_params(config)]
            for i in range(0, len(params), _BATCH):
                self.client.log_batch(self.run_id, params=params[i : i + _BATCH])
        except MlflowException as exc:
            raise ConfigError(
                f"log.mlflow: MLflow could not start a run at {self.uri} "
                f"({' '.join(str(exc).split())[:300]}); check log.mlflow.tracking_uri (or "
                "MLFLOW_TRACKING_URI), or set log.mlflow.enabled=false"
            ) from exc

    def _continued(self, run_id: str | None) -> str | None:
        """``run_id`` when its run is in the store (set running again), else None."""
        if run_id is None:
            return None
        try:
            self.client.get_run(run_id)
        except self._error:
            log.warning("MLflow run %s is not in %s: starting a new one", run_id, self.uri)
            return None
        self.client.update_run(run_id, status="RUNNING")
        return run_id

    def _new_run(self, config: TrainConfig, out: Path) -> str:
        settings = config.log.mlflow
        found = self.client.get_experiment_by_name(settings.experiment)
        if found is not None:
            experiment = str(found.experiment_id)
        else:
            try:
                experiment = self.client.create_experiment(settings.experiment)
            except self._error:  # made by another run in the meantime
                made = self.client.get_experiment_by_name(settings.experiment)
                if made is None:
                    raise
                experiment = str(made.experiment_id)
        name = settings.run_name or out.resolve().name
        run = self.client.create_run(
            experiment, run_name=name, tags={"fmlkit.output_dir": str(out)}
        )
        return str(run.info.run_id)

    def _new_params(self, config: TrainConfig) -> list[tuple[str, str]]:
        """The config's params not yet in the run; a changed one is kept and named in a
        warning (MLflow params cannot change)."""
        logged: dict[str, str] = self.client.get_run(self.run_id).data.params
        flat = {k: as_text(v)[:MAX_PARAM_LENGTH] for k, v in hyperparameters(config).items()}
        changed = [k for k, v in flat.items() if k in logged and logged[k] != v]
        if changed:
            shown = ", ".join(f"{k} {logged[k]} → {flat[k]}" for k in changed[:5])
            log.warning(
                "MLflow run %s keeps its first params; changed since: %s", self.run_id, shown
            )
        return [(k, v) for k, v in flat.items() if k not in logged]

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        points = [self._metric(metric_tag(k), float(v), now, step) for k, v in metrics.items()]
        try:
            self.client.log_batch(self.run_id, metrics=points)
        except self._error as exc:  # a tracking server's hiccup does not stop the training
            log.warning("MLflow could not record step %d (%s); metrics.csv has it", step, exc)

    def close(self) -> None:
        self._end("FINISHED")

    def abort(self) -> None:
        """End the run as failed (the training raised)."""
        self._end("FAILED")

    def _end(self, status: str) -> None:
        try:
            self.client.set_terminated(self.run_id, status=status)
        except self._error as exc:
            log.warning("MLflow could not end run %s (%s)", self.run_id, exc)
