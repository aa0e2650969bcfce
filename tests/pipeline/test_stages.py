from __future__ import annotations

from pathlib import Path

import click
import pytest

from fmlkit.pipeline.stages import STAGES, TrainAdapter, get_stage, option_key, override_list

NAMES = STAGES.names()


def test_registry_holds_every_stage_command() -> None:
    expected = ["synth", "align", "prepare", "filter", "split", "pairs", "convert", "train"]
    expected.append("export")
    assert sorted([*expected, "embed", "clean", "evaluate"]) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_stage_adapter_matches_its_command(name: str) -> None:
    adapter = get_stage(name)
    options = adapter.options
    for key in (*adapter.deps, *adapter.outs, *adapter.fixed):
        assert key in adapter.all_keys(), f"{name}: {key} is not an option of its command"
    paths = {
        k for k, p in options.items() if isinstance(p.type, click.Path) and k not in adapter.fixed
    }
    declared = {*adapter.deps, *adapter.outs, *adapter.caches}
    assert paths <= declared, f"{name}: path options neither deps nor outs: {paths - declared}"
    assert set(adapter.caches) <= set(adapter.params)  # a cache is a plain param
    assert not set(adapter.deps) & set(adapter.outs)
    assert "overwrite" not in adapter.params and "help" not in adapter.all_keys()


def test_option_key_uses_the_long_option_name() -> None:
    split = get_stage("split").command
    keys = [option_key(p) for p in split.params]
    assert "test_fraction" in keys and "dataset_info" in keys
    assert get_stage("filter").section("report") == "outs"  # --report, stored as report_dir
    assert get_stage("pairs").params == (
        "fold",
        "split",
        "positives",
        "negatives",
        "seed",
        "format",
        "max_per_label",
    )


def test_stage_adapter_cli_values_use_the_parameter_names() -> None:
    values = get_stage("pairs").cli_values(
        {"split_info": "s.csv"}, {"split": "test", "format": "lfw"}, {"output": Path("o.txt")}
    )
    assert values == {
        "split_info": "s.csv",
        "split_value": "test",
        "fmt": "lfw",
        "output": Path("o.txt"),
        "overwrite": False,  # fixed by the runner: a stage writes into fresh staging
    }


def test_stage_adapter_check_uses_the_command_types() -> None:
    problems = dict(get_stage("convert").check({}, {"shard_size": "12XB", "to": "parquet"}))
    assert list(problems) == ["params.shard_size"]
    assert "expected a size" in problems["params.shard_size"]
    problems = dict(get_stage("evaluate").check({}, {"batch_size": [1, 2]}))
    assert problems == {"params.batch_size": "expected one value, found [1, 2]"}


def test_train_adapter_passes_paths_as_overrides() -> None:
    adapter = get_stage("train")
    assert isinstance(adapter, TrainAdapter)
    values = adapter.cli_values(
        {"config": "c.yaml", "data.parquet": "demo/parquet", "val.pairs": "p.csv"},
        {"overrides": {"train.max_steps": 2, "head.args": {"margin": 0.4}}, "device": "cpu"},
        {"output_dir": Path("stage/run")},
    )
    assert values["config_path"] == "c.yaml" and values["device"] == "cpu"
    assert values["resume"] is False
    assert values["overrides"] == [
        "train.max_steps=2",
        'head.args={"margin": 0.4}',
        'data.parquet="demo/parquet"',
        'val.pairs="p.csv"',
        'output_dir="stage/run"',
    ]


def test_override_list_accepts_mapping_or_strings() -> None:
    assert override_list({"a.b": None, "c": "x y"}) == ["a.b=null", 'c="x y"']
    assert override_list(["a=1"]) == ["a=1"]
    with pytest.raises(ValueError, match="expected a mapping"):
        override_list(["a"])
