"""The tracker runs of a training run: ``output_dir/tracking.json`` maps a tracker (``wandb``,
``mlflow``) to the id of its run, so that ``--resume`` logs into the same W&B or MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

from fmlkit.io import atomic_write_text

RUN_IDS = "tracking.json"


def read_run_id(out: Path, tracker: str) -> str | None:
    """The id ``tracker``'s run had in the run at ``out``; None if none was kept (or the file
    cannot be read: the resumed run then starts a new tracker run)."""
    try:
        found = json.loads((out / RUN_IDS).read_text(encoding="utf-8")).get(tracker)
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, str) and found else None


def write_run_id(out: Path, tracker: str, run_id: str) -> None:
    """Keep ``run_id`` as ``tracker``'s run in ``out/tracking.json`` (atomically)."""
    path = out / RUN_IDS
    try:
        ids = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        ids = {}
    if not isinstance(ids, dict):
        ids = {}
    ids[tracker] = run_id
    atomic_write_text(path, json.dumps(ids, indent=2, sort_keys=True) + "\n")
