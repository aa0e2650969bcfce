"""What every tracker calls a metric and a hyperparameter.

A metrics row holds ``metrics.csv``'s columns: ``epoch``, ``loss``, ``lr``, ``img_per_s`` and
the validation metrics ``val_<pairs>_<metric>`` (`fmlkit.train.validation`). `metric_tag`
groups them for the trackers (``train/loss``, ``val/lfw/accuracy``); `hyperparameters` is the
resolved config flattened to dotted keys (``optim.lr``), logged once per run.
"""

from __future__ import annotations

from typing import Any

from fmlkit.train.config import TrainConfig, config_to_dict

#: metrics.csv's training columns and their tags
TRAIN_TAGS = {
    "loss": "train/loss",
    "lr": "train/lr",
    "img_per_s": "train/img_per_s",
    "epoch": "train/epoch",
}
#: the metrics of one validation pair list, as `fmlkit.eval.verification.score_pairs` names
#: the floats of its result (tests/train/test_loggers.py checks that they match)
VAL_METRICS = ("accuracy", "accuracy_std", "threshold", "val_at_far_1e-3", "auc", "eer")


def metric_tag(name: str) -> str:
    """The grouped tag of a metrics.csv column: ``loss`` → ``train/loss``,
    ``val_lfw_accuracy`` → ``val/lfw/accuracy`` (the pair list's name may hold ``_``); any
    other name is kept as it is."""
    if name in TRAIN_TAGS:
        return TRAIN_TAGS[name]
    if name.startswith("val_"):
        rest = name[len("val_") :]
        for metric in sorted(VAL_METRICS, key=len, reverse=True):
            if rest.endswith("_" + metric) and len(rest) > len(metric) + 1:
                return f"val/{rest[: -len(metric) - 1]}/{metric}"
    return name


def hyperparameters(config: TrainConfig) -> dict[str, Any]:
    """The resolved config as one flat mapping of dotted keys (``optim.lr``,
    ``head.args.margin``), in the config's order; lists stay lists, null stays None, an
    empty mapping (``head.args: {}``) stays one."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            flat[prefix] = value

    walk("", config_to_dict(config))
    return flat


def as_text(value: Any) -> str:
    """A hyperparameter as the trackers that take only text show it (YAML's spelling)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
