"""fmlkit: from a raw identity-labelled image collection to a trained, evaluated embedding model.

``import fmlkit`` gives each stage function by its verb (``fmlkit.synth``, ``fmlkit.prepare``,
``fmlkit.filter_dataset`` … ``fmlkit.run_pipeline``), with its options and report types and
the error classes (docs/api.md). Each is the library function itself, imported on first use
(PEP 562), so ``import fmlkit`` loads neither numpy, pandas, pyarrow nor torch. No name here
is the name of a subpackage: training is ``fmlkit.train_model`` (``fmlkit.train`` is the
package).
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from fmlkit.errors import (
    BatchError,
    ClusterError,
    ConfigError,
    FmlkitError,
    FormatError,
    InputError,
    OptionError,
    OutputError,
    PipelineError,
    SchemaError,
)

if TYPE_CHECKING:  # what `__getattr__` returns, for mypy and editors
    from fmlkit.data.align import AlignReport
    from fmlkit.data.align import align_dataset as align
    from fmlkit.data.clean import CleanOptions, CleanReport, clean
    from fmlkit.data.convert import ConvertReport, InspectReport, convert
    from fmlkit.data.convert import inspect_path as inspect
    from fmlkit.data.filter import FilterReport, FilterRules, filter_dataset
    from fmlkit.data.prepare import ScanReport
    from fmlkit.data.prepare import scan_dataset as prepare
    from fmlkit.data.split import PairsOptions, PairsReport, SplitOptions, SplitReport, make_pairs
    from fmlkit.data.split import split_dataset as split
    from fmlkit.data.synth import SynthReport
    from fmlkit.data.synth import generate_synthetic_dataset as synth
    from fmlkit.eval.embed import EmbedReport, embed
    from fmlkit.eval.evaluate import EvaluateOptions, EvaluateReport, evaluate
    from fmlkit.pipeline.runner import (
        RunReport,
        StageResult,
        StageStatus,
        pipeline_status,
        run_pipeline,
    )
    from fmlkit.pipeline.spec import Pipeline, load_pipeline
    from fmlkit.train.callbacks import Callback as TrainCallback
    from fmlkit.train.config import TrainConfig, load_config
    from fmlkit.train.export import ExportReport, export_onnx
    from fmlkit.train.loop import TrainingError, TrainReport
    from fmlkit.train.loop import train as train_model

# name -> (module, attribute): the same names as the block above.
_LAZY: dict[str, tuple[str, str]] = {
    "synth": ("fmlkit.data.synth", "generate_synthetic_dataset"),
    "SynthReport": ("fmlkit.data.synth", "SynthReport"),
    "align": ("fmlkit.data.align", "align_dataset"),
    "AlignReport": ("fmlkit.data.align", "AlignReport"),
    "prepare": ("fmlkit.data.prepare", "scan_dataset"),
    "ScanReport": ("fmlkit.data.prepare", "ScanReport"),
    "filter_dataset": ("fmlkit.data.filter", "filter_dataset"),
    "FilterRules": ("fmlkit.data.filter", "FilterRules"),
    "FilterReport": ("fmlkit.data.filter", "FilterReport"),
    "clean": ("fmlkit.data.clean", "clean"),
    "CleanOptions": ("fmlkit.data.clean", "CleanOptions"),
    "CleanReport": ("fmlkit.data.clean", "CleanReport"),
    "split": ("fmlkit.data.split", "split_dataset"),
    "SplitReport": ("fmlkit.data.split", "SplitReport"),
    "SplitOptions": ("fmlkit.data.split", "SplitOptions"),
    "PairsOptions": ("fmlkit.data.split", "PairsOptions"),
    "make_pairs": ("fmlkit.data.split", "make_pairs"),
    "PairsReport": ("fmlkit.data.split", "PairsReport"),
    "convert": ("fmlkit.data.convert", "convert"),
    "ConvertReport": ("fmlkit.data.convert", "ConvertReport"),
    "inspect": ("fmlkit.data.convert", "inspect_path"),
    "InspectReport": ("fmlkit.data.convert", "InspectReport"),
    "load_config": ("fmlkit.train.config", "load_config"),
    "TrainConfig": ("fmlkit.train.config", "TrainConfig"),
    "train_model": ("fmlkit.train.loop", "train"),
    "TrainCallback": ("fmlkit.train.callbacks", "Callback"),
    "TrainReport": ("fmlkit.train.loop", "TrainReport"),
    "TrainingError": ("fmlkit.train.loop", "TrainingError"),
    "export_onnx": ("fmlkit.train.export", "export_onnx"),
    "ExportReport": ("fmlkit.train.export", "ExportReport"),
    "embed": ("fmlkit.eval.embed", "embed"),
    "EmbedReport": ("fmlkit.eval.embed", "EmbedReport"),
    "evaluate": ("fmlkit.eval.evaluate", "evaluate"),
    "EvaluateReport": ("fmlkit.eval.evaluate", "EvaluateReport"),
    "EvaluateOptions": ("fmlkit.eval.evaluate", "EvaluateOptions"),
    "load_pipeline": ("fmlkit.pipeline.spec", "load_pipeline"),
    "Pipeline": ("fmlkit.pipeline.spec", "Pipeline"),
    "run_pipeline": ("fmlkit.pipeline.runner", "run_pipeline"),
    "pipeline_status": ("fmlkit.pipeline.runner", "pipeline_status"),
    "RunReport": ("fmlkit.pipeline.runner", "RunReport"),
    "StageResult": ("fmlkit.pipeline.runner", "StageResult"),
    "StageStatus": ("fmlkit.pipeline.runner", "StageStatus"),
}

__all__ = [
    "AlignReport",
    "BatchError",
    "CleanOptions",
    "CleanReport",
    "ClusterError",
    "ConfigError",
    "ConvertReport",
    "EmbedReport",
    "EvaluateOptions",
    "EvaluateReport",
    "ExportReport",
    "FilterReport",
    "FilterRules",
    "FmlkitError",
    "FormatError",
    "InputError",
    "InspectReport",
    "OptionError",
    "OutputError",
    "PairsOptions",
    "PairsReport",
    "Pipeline",
    "PipelineError",
    "RunReport",
    "ScanReport",
    "SchemaError",
    "SplitOptions",
    "SplitReport",
    "StageResult",
    "StageStatus",
    "SynthReport",
    "TrainCallback",
    "TrainConfig",
    "TrainReport",
    "TrainingError",
    "__version__",
    "align",
    "clean",
    "convert",
    "embed",
    "evaluate",
    "export_onnx",
    "filter_dataset",
    "inspect",
    "load_config",
    "load_pipeline",
    "make_pairs",
    "pipeline_status",
    "prepare",
    "run_pipeline",
    "split",
    "synth",
    "train_model",
]


def __getattr__(name: str) -> Any:
    """Import the module behind a public name on first use, then keep the object here."""
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'fmlkit' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
