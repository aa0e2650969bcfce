"""Option rules written once: the options classes (SplitOptions, PairsOptions, EvaluateOptions)
refuse a bad combination with an `OptionError`; the command line shows it as a usage error
(exit 2) naming the flags, a pipeline stage names the Python keywords; click's choices are the
library's Literal types."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fmlkit.choices import FoldBy, KeepOrder, PairFormat, Scope, SplitMode, Target
from fmlkit.cli._common import find_option, flag_message
from fmlkit.cli.convert import convert
from fmlkit.cli.data import filter_
from fmlkit.cli.evaluate import evaluate
from fmlkit.cli.split import pairs, split
from fmlkit.columns import SPLIT_VALUES
from fmlkit.data.split import PairsOptions, SplitOptions
from fmlkit.errors import InputError, OptionError, PipelineError
from fmlkit.eval.evaluate import EvaluateOptions
from fmlkit.main import main

FMLKIT = "fmlkit"  # the program name in usage lines

# --- OptionError ------------------------------------------------------------------------------


def test_option_error_reads_the_python_way_and_renders_any_other() -> None:
    error = OptionError("{k} does not apply to {mode}; see {test_fraction}", mode="classes")
    assert isinstance(error, InputError)
    assert str(error) == "k does not apply to mode='classes'; see test_fraction"
    assert error.options == ("k", "mode", "test_fraction")
    assert error.settings == {"mode": "classes"}
    shown = error.render(str.upper, lambda name, value: f"{name}: {value}")
    assert shown == "K does not apply to mode: classes; see TEST_FRACTION"


def test_option_error_settings_must_name_options_of_the_message() -> None:
    with pytest.raises(AssertionError, match="not in the message"):
        OptionError("{k} is wrong", mode="classes")


def test_flag_message_writes_each_option_as_its_flag() -> None:
    error = OptionError("{fmt} needs {positives}; not {split}", fmt="lfw")
    assert flag_message(error, pairs) == "--format lfw needs --positives; not --split"
    error = OptionError("{flip_sum} and {retrieval} with {retrieval_input}", flip_sum=False,
                        retrieval=True)  # fmt: skip
    assert flag_message(error, evaluate) == "--no-flip-sum and --retrieval with --input"


@pytest.mark.parametrize(
    ("command", "options"),
    [(split, SplitOptions), (pairs, PairsOptions), (evaluate, EvaluateOptions)],
    ids=["split", "pairs", "evaluate"],
)
def test_every_option_of_an_options_class_has_its_flag(
    command: click.Command, options: type
) -> None:
    for field in dataclasses.fields(options):
        found = find_option(command, field.name)
        assert found is not None, f"{command.name} has no flag for {field.name}"


# --- the command line: usage errors naming the flags ------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--mode", "classes"],
            "--mode classes needs --min-samples/--max-samples or --test-fraction",
        ),
        (
            ["--mode", "classes", "--k", "5", "--test-fraction", "0.5"],
            "--k does not apply to --mode classes",
        ),
        (
            ["--mode", "classes", "--by", "image", "--min-samples", "2"],
            "--by does not apply to --mode classes",
        ),
        (["--min-samples", "2"], "--min-samples does not apply to --mode folds"),
        (
            ["--max-samples", "2", "--test-fraction", "0.5"],
            "--max-samples and --test-fraction do not apply to --mode folds",
        ),
        (
            ["--mode", "classes", "--test-fraction", "0.5", "--max-samples", "3"],
            "give --test-fraction or --min-samples/--max-samples, not both",
        ),
        (
            ["--mode", "classes", "--min-samples", "5", "--max-samples", "2"],
            "need 1 ≤ --min-samples ≤ --max-samples, got 5 and 2",
        ),
    ],
)
def test_split_refuses_bad_combinations_as_usage_errors(
    tmp_path: Path, args: list[str], message: str
) -> None:
    info, out = tmp_path / "info.csv", tmp_path / "out.csv"
    info.write_text("file_name,label\na/1.jpg,a\nb/1.jpg,b\n")
    result = CliRunner().invoke(main, ["split", str(info), "-o", str(out), *args], prog_name=FMLKIT)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: {message}"]
    assert result.stderr.startswith("Usage: fmlkit split [OPTIONS] DATASET_INFO\n")
    assert "Try 'fmlkit split --help' for help." in result.stderr
    assert not out.exists()


def test_split_classes_mode_takes_the_k_and_by_defaults_as_not_given(tmp_path: Path) -> None:
    info, out = tmp_path / "info.csv", tmp_path / "out.csv"
    info.write_text("file_name,label\na/1.jpg,a\nb/1.jpg,b\n")
    args = ["split", str(info), "-o", str(out), "--mode", "classes", "--test-fraction", "0.5"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "select the rows with exactly one of --fold or --split"),
        (["--fold", "0", "--split", "test"], "exactly one of --fold or --split"),
        (
            ["--fold", "0", "--positives", "0", "--negatives", "0"],
            "ask for some --positives or --negatives, not both 0",
        ),
        (
            ["--fold", "0", "--format", "lfw", "--negatives", "20"],
            "--format lfw needs --positives equal to --negatives and a multiple of 10 (got 10 "
            "and 20)",
        ),
    ],
)
def test_pairs_refuses_bad_combinations_as_usage_errors(
    tmp_path: Path, args: list[str], message: str
) -> None:
    table = tmp_path / "folds.csv"
    table.write_text("file_name,label,fold\na/1.jpg,a,0\na/2.jpg,a,0\n")
    counts = ["--positives", "10", "--negatives", "10"]
    cmd = ["pairs", str(table), "-o", str(tmp_path / "p.csv"), *counts, *args]
    result = CliRunner().invoke(main, cmd, prog_name=FMLKIT)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert result.stderr.startswith("Usage: fmlkit pairs [OPTIONS] SPLIT_INFO\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--pairs", "P"],
            "give exactly one of --checkpoint, --onnx, --weights and --embeddings (the source "
            "of the embeddings); found none",
        ),
        (["--onnx", "M", "--embeddings", "E", "--pairs", "P"], "found --onnx, --embeddings"),
        (
            ["--embeddings", "E"],
            "nothing to evaluate: give --pairs, --retrieval, --ijb or --gallery with --probes",
        ),
        (
            ["--onnx", "M", "--pairs", "P", "--input", "P"],
            "--input is the retrieval dataset: add --retrieval",
        ),
        (
            ["--onnx", "M", "--retrieval"],
            "retrieval with a model embeds a dataset: pass --input (a dataset_info table with "
            "--root, or a Parquet dataset folder)",
        ),
        (
            ["--embeddings", "E", "--retrieval", "--no-flip-sum"],
            "--no-flip-sum has no effect with --embeddings",
        ),
        (["--embeddings", "E", "--pairs", "P", "--root", "R"], "--root is for model mode"),
        (
            ["--embeddings", "E", "--retrieval", "--input", "P", "--root", "R"],
            "--root and --input are for model mode",
        ),
    ],
)
def test_evaluate_refuses_bad_combinations_as_usage_errors(
    tmp_path: Path, args: list[str], message: str
) -> None:
    files = {"P": tmp_path / "p.csv", "M": tmp_path / "m.onnx", "E": tmp_path / "e.parquet"}
    for path in files.values():
        path.write_text("")
    (tmp_path / "root").mkdir()
    paths = {**{k: str(v) for k, v in files.items()}, "R": str(tmp_path / "root")}
    cmd = ["evaluate", *(paths.get(a, a) for a in args), "-o", str(tmp_path / "out")]
    result = CliRunner().invoke(main, cmd, prog_name=FMLKIT)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert result.stderr.startswith("Usage: fmlkit evaluate [OPTIONS]\n")
    assert not (tmp_path / "out").exists()


# --- click's choices are the library's Literal types -------------------------------------------


@pytest.mark.parametrize(
    ("command", "name", "values"),
    [
        (split, "mode", typing.get_args(SplitMode)),
        (split, "by", typing.get_args(FoldBy)),
        (pairs, "fmt", typing.get_args(PairFormat)),
        (pairs, "split_value", SPLIT_VALUES),
        (filter_, "scope", typing.get_args(Scope)),
        (filter_, "keep", typing.get_args(KeepOrder)),
        (convert, "to", typing.get_args(Target)),
    ],
)
def test_click_choices_are_the_library_literals(
    command: click.Command, name: str, values: tuple[str, ...]
) -> None:
    param = next(p for p in command.params if p.name == name)
    assert isinstance(param.type, click.Choice)
    assert tuple(param.type.choices) == values and len(values) >= 2


# --- a pipeline stage names the options as its YAML keys ---------------------------------------


@pytest.mark.parametrize(
    ("run", "dep", "params", "message"),
    [
        (
            "split",
            "dataset_info",
            "{mode: classes, k: 3, test_fraction: 0.5}",
            "stage bad (split): k does not apply to mode: classes",
        ),
        (  # the library's keyword is fmt, the YAML key (and flag) is format
            "pairs",
            "split_info",
            "{split: test, positives: 10, negatives: 20, format: lfw}",
            "stage bad (pairs): format: lfw needs positives equal to negatives",
        ),
    ],
)
def test_pipeline_stage_with_a_bad_combination_fails_naming_the_yaml_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run: str, dep: str, params: str, message: str
) -> None:
    from fmlkit.pipeline.runner import run_pipeline
    from fmlkit.pipeline.spec import load_pipeline

    monkeypatch.chdir(tmp_path)
    Path("info.csv").write_text("file_name,label,split\na/1.jpg,a,test\nb/1.jpg,b,test\n")
    Path("p.yaml").write_text(
        f"stages:\n  bad:\n    run: {run}\n    deps: {{{dep}: info.csv}}\n"
        f"    params: {params}\n    outs: {{output: out.csv}}\n"
    )
    with pytest.raises(PipelineError) as err:
        run_pipeline(load_pipeline("p.yaml"), quiet=True)
    assert str(err.value).startswith(message)
    assert "--" not in str(err.value)
    assert isinstance(err.value.__cause__, OptionError)
    assert not Path("out.csv").exists()
