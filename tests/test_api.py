"""The Python API (docs/api.md): ``import fmlkit`` gives the library's own stage functions,
report types and errors, loaded on first use; and the examples in docs/api.md hold."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import fmlkit
import fmlkit.errors

ROOT = Path(__file__).resolve().parent.parent
API_DOC = ROOT / "docs" / "api.md"

# Public name -> where the object lives, written out here rather than read from fmlkit.
EXPORTS = {
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
    "SplitOptions": ("fmlkit.data.split.folds", "SplitOptions"),
    "PairsOptions": ("fmlkit.data.split.pairs", "PairsOptions"),
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
ERRORS = {
    name: value
    for name, value in vars(fmlkit.errors).items()
    if isinstance(value, type) and issubclass(value, fmlkit.errors.FmlkitError)
}


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_each_name_is_the_library_object(name: str) -> None:
    module, attribute = EXPORTS[name]
    found = getattr(fmlkit, name)
    assert found is getattr(importlib.import_module(module), attribute)
    assert found.__name__ == attribute  # the function itself, not a wrapper
    assert found.__module__.startswith(module)
    assert getattr(fmlkit, name) is found


def test_every_error_class_is_exported() -> None:
    assert {"FmlkitError", "InputError", "ConfigError", "PipelineError"} <= set(ERRORS)
    for name, cls in ERRORS.items():
        assert getattr(fmlkit, name) is cls
    assert issubclass(fmlkit.TrainingError, fmlkit.FmlkitError)


def test_all_lists_the_public_names_and_dir_shows_them() -> None:
    assert sorted(fmlkit.__all__) == sorted({*EXPORTS, *ERRORS, "__version__"})
    assert len(fmlkit.__all__) == len(set(fmlkit.__all__))
    assert set(fmlkit.__all__) <= set(dir(fmlkit))


def test_type_checking_block_names_the_same_objects() -> None:
    """mypy and editors read the ``if TYPE_CHECKING:`` imports: they must be the objects
    ``__getattr__`` returns."""
    tree = ast.parse((ROOT / "fmlkit" / "__init__.py").read_text(encoding="utf-8"))
    block = next(n for n in tree.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.dump(n))
    typed = {
        alias.asname or alias.name: (node.module, alias.name)
        for node in block.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }
    assert set(typed) == set(EXPORTS)
    for name, (module, attribute) in typed.items():
        assert getattr(importlib.import_module(module), attribute) is getattr(fmlkit, name)


def test_no_public_name_is_a_module_of_fmlkit() -> None:
    """A function named like a subpackage (``fmlkit.train``) would be replaced by the module
    once anything imports the subpackage."""
    modules = {m.name for m in pkgutil.iter_modules(fmlkit.__path__)}
    assert {"train", "eval", "data", "pipeline"} <= modules
    assert not modules & set(fmlkit.__all__)


def test_functions_and_subpackages_coexist() -> None:
    train_model = fmlkit.train_model
    loop = importlib.import_module("fmlkit.train.loop")

    assert isinstance(fmlkit.train, types.ModuleType)
    assert fmlkit.train_model is train_model is loop.train
    from fmlkit import eval as eval_package
    from fmlkit import evaluate

    assert isinstance(eval_package, types.ModuleType)
    assert evaluate is importlib.import_module("fmlkit.eval.evaluate").evaluate


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="module 'fmlkit' has no attribute 'no_such_stage'"):
        _ = fmlkit.no_such_stage
    assert not hasattr(fmlkit, "generate_synthetic_dataset")  # the verb is the public name


def test_import_fmlkit_loads_no_heavy_library() -> None:
    code = (
        "import sys, fmlkit\n"
        "dir(fmlkit), fmlkit.__all__, fmlkit.FmlkitError, fmlkit.InputError\n"
        "heavy = ('torch', 'numpy', 'PIL', 'pandas', 'pyarrow', 'click')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
        "print('fmlkit.data' in sys.modules, 'synth' in vars(fmlkit))\n"
        "fmlkit.synth\n"
        "print('fmlkit.data.synth' in sys.modules, 'synth' in vars(fmlkit))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "False False", "True True"]


def test_py_typed_is_shipped() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    assert (ROOT / "fmlkit" / "py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["fmlkit"]


def test_docs_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first Python block of docs/api.md, run as it stands in an empty folder."""
    example = _python_blocks(API_DOC.read_text(encoding="utf-8"))[0]
    assert example.startswith("import pandas as pd\n\nimport fmlkit\n")
    monkeypatch.chdir(tmp_path)
    exec(compile(example, str(API_DOC), "exec"), {"__name__": "__docs__"})
    out = capsys.readouterr().out
    assert "Filtered " in out
    assert "parquet: Parquet image dataset" in out
    assert "faces already exists" in out
    assert {p.name for p in tmp_path.iterdir()} >= {"faces", "split.csv", "pairs.csv", "parquet"}


def _calls(code: str) -> list[tuple[str, ast.Call]]:
    """``(NAME, call)`` for each call of ``fmlkit.NAME(…)`` in ``code``."""
    return [
        (node.func.attr, node)
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "fmlkit"
    ]


def test_docs_other_blocks_call_the_api_as_it_is() -> None:
    """The blocks that are too slow to run (training, pipelines): every ``fmlkit.NAME(…)``
    is public and its arguments fit the function's signature."""
    blocks = _python_blocks(API_DOC.read_text(encoding="utf-8"))[1:]
    calls = [found for block in blocks for found in _calls(block)]
    assert {"train_model", "evaluate", "run_pipeline"} <= {name for name, _ in calls}
    for name, call in calls:
        assert name in fmlkit.__all__, name
        signature = inspect.signature(getattr(fmlkit, name))
        signature.bind(*call.args, **{k.arg: k.value for k in call.keywords if k.arg})
