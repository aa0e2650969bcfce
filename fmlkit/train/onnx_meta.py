"""Self-describing ONNX: the ``fmlkit.*`` ``metadata_props`` `export_onnx` writes, the model
card written beside the export, and the preprocessing ``embed``/``evaluate --onnx`` read back.

Keys (all strings): ``fmlkit.input_size`` (S of the N×3×S×S input), ``fmlkit.channel_order``
(RGB or BGR), ``fmlkit.mean`` and ``fmlkit.std`` (JSON lists per input channel, in 0..1 units:
a pixel becomes (x/255 − mean)/std), ``fmlkit.layout`` (NCHW), ``fmlkit.embedding_size``,
``fmlkit.normalized`` (true when the outputs are L2-normalised), ``fmlkit.version`` and
``fmlkit.config_sha256`` (of the checkpoint's config as canonical JSON).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fmlkit.errors import InputError

PREFIX = "fmlkit."
PREPROCESS_MODES = ("auto", "insightface", "fmlkit")
Preprocess = Literal["auto", "insightface", "fmlkit"]
INSIGHTFACE_SIZE = 112


@dataclass(frozen=True)
class Preprocessing:
    """How images are made into an ONNX model's input: resized to ``size``, normalised as
    (x/255 − mean)/std per channel (``mean``/``std`` in the input's channel order), and given
    in ``channel_order``."""

    size: int
    channel_order: Literal["RGB", "BGR"]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def rgb_mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``mean`` and ``std`` in RGB order (what the image transform applies)."""
        if self.channel_order == "BGR":
            return self.mean[::-1], self.std[::-1]
        return self.mean, self.std


def config_sha256(config: Mapping[str, Any]) -> str:
    """The sha256 of a config dict as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def metadata(
    *,
    image_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    embedding_size: int,
    normalized: bool,
    config: Mapping[str, Any],
    channel_order: str = "RGB",
) -> dict[str, str]:
    """The ``fmlkit.*`` metadata of an export (see the module docstring)."""
    from fmlkit import __version__

    values = {
        "input_size": str(image_size),
        "channel_order": channel_order,
        "mean": json.dumps([float(m) for m in mean]),
        "std": json.dumps([float(s) for s in std]),
        "layout": "NCHW",
        "embedding_size": str(embedding_size),
        "normalized": "true" if normalized else "false",
        "version": __version__,
        "config_sha256": config_sha256(config),
    }
    return {PREFIX + key: value for key, value in values.items()}


def validation_metrics(run_dir: Path, step: int | None) -> dict[str, str]:
    """The validation accuracy and threshold of each pair list at the last step of the run's
    ``metrics.csv`` (in ``run_dir``) that validated, at or before ``step``: ``fmlkit.val.<list>.
    accuracy``/``.threshold`` and ``fmlkit.val.step``; empty when the run recorded none."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return {}
    found: dict[str, str] = {}
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            try:
                at = int(row.get("step") or "")
            except ValueError:
                continue
            if step is not None and at > step:
                break
            names = [k[4:-9] for k, v in row.items()
                     if k and k.startswith("val_") and k.endswith("_accuracy") and v]  # fmt: skip
            if names:
                found = {PREFIX + "val.step": str(at)}
                for name in names:
                    found[f"{PREFIX}val.{name}.accuracy"] = row[f"val_{name}_accuracy"]
                    if row.get(f"val_{name}_threshold"):
                        found[f"{PREFIX}val.{name}.threshold"] = row[f"val_{name}_threshold"]
    return found


def write_metadata(path: Path, props: Mapping[str, str], doc_string: str) -> None:
    """Set ``props`` as the ``metadata_props`` of the ONNX file ``path`` (in place: the
    caller writes ``path`` as a temporary file) and its ``doc_string``."""
    import onnx

    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    model.doc_string = doc_string
    onnx.save(model, str(path))


def model_card(
    config: Mapping[str, Any], props: Mapping[str, str], *, steps: int | None, onnx_name: str
) -> str:
    """``MODEL_CARD.md``: what the export is, how to feed it, how it was trained."""
    model, head = config.get("model", {}), config.get("head", {})
    data = {k: v for k, v in config.get("data", {}).items() if k != "augment"}
    p = {k.removeprefix(PREFIX): v for k, v in props.items()}
    lines = [
        f"# Model card: {onnx_name}",
        "",
        f"- Backbone: {model.get('backbone')}; head (training only): {head.get('name')}",
        f"- Embedding size: {p['embedding_size']} (L2-normalised: {p['normalized']})",
        f"- Input: {p['layout']}, float32, {p['input_size']}×{p['input_size']} px, "
        f"{p['channel_order']}",
        f"- Preprocessing: resize to {p['input_size']} px, then (x/255 − mean)/std per channel "
        f"with mean {p['mean']} and std {p['std']}",
        f"- Training steps: {steps if steps is not None else 'unknown'}",
        f"- Data (training config): `{json.dumps(data, default=str)}`",
        _metrics_line(p),
        f"- fmlkit {p['version']}; config sha256 {p['config_sha256']}",
        "",
        "## Intended use",
        "",
        "Face verification and identification research. Not for decisions about people "
        "without an evaluation on the population it will be used on.",
        "",
    ]
    return "\n".join(lines)


def _metrics_line(p: Mapping[str, str]) -> str:
    """The model card's line on validation, from the ``val.*`` metadata."""
    shown = []
    for key, value in sorted(p.items()):
        if key.startswith("val.") and key.endswith(".accuracy"):
            name = key.removeprefix("val.").removesuffix(".accuracy")
            threshold = p.get(f"val.{name}.threshold")
            shown.append(
                f"{name} accuracy {value}" + (f" (threshold {threshold})" if threshold else "")
            )
    if not shown:
        return "- Metrics: none recorded by the run; evaluate it with `fmlkit evaluate --onnx`"
    return f"- Validation at step {p['val.step']} (metrics.csv): " + "; ".join(shown)


def read_preprocessing(
    path: str | os.PathLike[str],
    custom: Mapping[str, str],
    input_size: int | None,
    mode: Preprocess = "auto",
) -> Preprocessing:
    """The preprocessing of the ONNX model ``path``: with ``mode`` ``auto``, from its
    ``fmlkit.*`` metadata ``custom`` when present, else fmlkit's default; ``fmlkit``: RGB,
    (x/255 − 0.5)/0.5; ``insightface``: BGR, (x − 127.5)/127.5. The size is the input's
    (``input_size``), else the metadata's; for ``insightface``, else 112.

    Raises:
        InputError: metadata that cannot be read, or no size known.
    """
    half: tuple[float, ...] = (0.5, 0.5, 0.5)
    size = input_size
    if mode == "insightface":
        return Preprocessing(size or INSIGHTFACE_SIZE, "BGR", half, half)
    order: Literal["RGB", "BGR"] = "RGB"
    mean, std = half, half
    if mode == "auto" and any(k.startswith(PREFIX) for k in custom):
        try:
            size = size or int(custom[PREFIX + "input_size"])
            found = custom.get(PREFIX + "channel_order", "RGB")
            if found not in ("RGB", "BGR"):
                raise ValueError(f"channel_order {found!r} is not RGB or BGR")
            order = "BGR" if found == "BGR" else "RGB"
            mean = tuple(
                float(x) for x in json.loads(custom.get(PREFIX + "mean", "[0.5, 0.5, 0.5]"))
            )
            std = tuple(float(x) for x in json.loads(custom.get(PREFIX + "std", "[0.5, 0.5, 0.5]")))
            if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
                raise ValueError(f"mean {list(mean)} / std {list(std)}: expected 3 each, std > 0")
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(
                f"{path}: its fmlkit metadata cannot be read ({exc}); give --preprocess "
                "fmlkit or insightface to choose the preprocessing yourself"
            ) from exc
    if size is None:
        raise InputError(
            f"{path} has no fixed image size in its input nor in its metadata; export it with "
            "fmlkit, or give --preprocess insightface (112 px)"
        )
    return Preprocessing(size, order, mean, std)
