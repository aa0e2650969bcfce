from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fmlkit.errors import ConfigError, InputError
from fmlkit.train.config import (
    TrainConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
    validate_for_training,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PARQUET = "data.parquet=/data/ds"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def _error(*overrides: str, text: str | None = None, tmp_path: Path | None = None) -> str:
    path = None if text is None or tmp_path is None else _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return str(info.value)


def test_load_config_defaults_follow_the_reference_recipe() -> None:
    cfg = load_config(None)
    assert cfg == TrainConfig()
    assert cfg.data.image_size == 112
    assert cfg.data.normalisation.mean == (0.5, 0.5, 0.5)
    assert cfg.data.augment.flip.enabled and not cfg.data.augment.blur.enabled
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum) == ("sgd", 0.1, 0.9)
    assert cfg.optim.weight_decay == 5e-4
    assert cfg.train.grad_clip == 5.0 and cfg.head.partial_fc.sample_rate is None


@pytest.mark.parametrize("name", ["demo.yaml", "arcface_r50.yaml"])
def test_load_config_shipped_configs_load_and_validate(name: str) -> None:
    cfg = load_config(CONFIGS / name)
    assert cfg.data.parquet is None and cfg.data.dataset_info is None  # no paths in configs
    with pytest.raises(ConfigError, match="no data source"):
        validate_for_training(cfg)
    validate_for_training(load_config(CONFIGS / name, [PARQUET]))


def test_load_config_arcface_r50_is_the_insightface_recipe() -> None:
    cfg = load_config(CONFIGS / "arcface_r50.yaml")
    assert cfg.model.backbone == "iresnet50" and cfg.head.name == "arcface"
    assert cfg.head.args == {"margin": 0.5, "scale": 64.0}
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (0.1, 0.9, 5e-4)
    assert cfg.schedule.name == "poly" and cfg.train.epochs == 20
    assert cfg.train.precision == "bf16"


def test_save_config_round_trips(tmp_path: Path) -> None:
    cfg = load_config(
        CONFIGS / "arcface_r50.yaml",
        [
            "data.folds=[0, 2]",
            "data.augment.blur={enabled: true, sigma: [0.5, 1.5]}",
            "head.args.easy_margin=true",
            "head.partial_fc.sample_rate=0.2",
            "optim.weight_decay=1e-5",
            "schedule.name=step",
            "schedule.milestones=[100, 200]",
            "val.pairs=/p.csv",
        ],
    )
    path = tmp_path / "run" / "config.yaml"
    save_config(cfg, path)
    assert load_config(path) == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temporary left


def test_config_to_dict_is_plain_yaml_data() -> None:
    cfg = load_config(None, ["data.folds=[1]"])
    data = config_to_dict(cfg)
    assert data["data"]["folds"] == [1]
    assert data["data"]["normalisation"]["std"] == [0.5, 0.5, 0.5]
    assert data["train"]["batch_size"] == 128


def test_load_config_overrides_of_each_kind(tmp_path: Path) -> None:
    path = _write(tmp_path, "head:\n  args: {scale: 32.0}\ntrain:\n  batch_size: 32\n")
    cfg = load_config(
        path,
        [
            "train.batch_size=64",
            "train.compile=true",
            "train.grad_clip=null",
            "optim.lr=1e-3",
            "optim.lr=2e-3",  # later overrides win
            "optim.momentum=0",  # an int where a float goes
            "data.folds=[0,1,2]",
            "data.split=train",
            "head.args.margin=0.4",
            "head.args.names=[a, b]",
            "model.backbone=timm:resnet18",
        ],
    )
    assert cfg.train.batch_size == 64 and cfg.train.compile is True
    assert cfg.train.grad_clip is None
    assert cfg.optim.lr == 2e-3 and isinstance(cfg.optim.momentum, float)
    assert cfg.data.folds == (0, 1, 2) and cfg.data.split == "train"
    assert cfg.head.args == {"scale": 32.0, "margin": 0.4, "names": ["a", "b"]}
    assert cfg.model.backbone == "timm:resnet18"


def test_load_config_override_replaces_a_whole_mapping() -> None:
    cfg = load_config(None, ["head.args.scale=30", "head.args={margin: 0.2}"])
    assert cfg.head.args == {"margin": 0.2}


def test_load_config_reads_exponents_without_dot_as_floats(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "optim:\n  weight_decay: 5e-4\n  lr: 1E+1\n"))
    assert cfg.optim.weight_decay == 5e-4 and cfg.optim.lr == 10.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.bach_size=64", "unknown key train.bach_size; did you mean train.batch_size?"),
        ("trian.batch_size=64", "unknown key trian; did you mean train?"),
        ("data.augment.blurr.p=0.5", "did you mean data.augment.blur?"),
        ("data.augment.blur.sigmaa=[1, 2]", "did you mean data.augment.blur.sigma?"),
        ("train.zzz=1", "unknown key train.zzz; valid keys in train: batch_size, epochs"),
        ("zzz=1", "unknown key zzz; valid keys are: data, model"),
    ],
)
def test_load_config_unknown_key_names_path_and_closest(override: str, message: str) -> None:
    assert message in _error(override)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batch_size='64'", "train.batch_size: expected an integer, found the string '64'"),
        ("train.batch_size=64.0", "expected an integer, found float 64.0"),
        ("train.batch_size=true", "expected an integer, found the boolean true"),
        ("optim.lr=true", "optim.lr: expected a number"),
        ("optim.lr='0.1'", "(write it without quotes)"),
        ("train.compile=1", "train.compile: expected a true or false, found int 1"),
        ("data.split=no", "(quote it: YAML reads yes/no"),
        ("data.folds=3", "data.folds: expected a list of any number of integers or null"),
        ("data.folds=[0, x]", "data.folds[1]: expected an integer"),
        ("data.normalisation.mean=[0.5, 0.5]", "expected a list of 3 numbers"),
        ("head.args=[1]", "head.args: expected a mapping"),
        ("head.args={1: 2}", "(its keys must be text)"),
        ("data.augment=5", "data.augment: expected a mapping"),
    ],
)
def test_load_config_wrong_type(override: str, message: str) -> None:
    assert message in _error(override)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batch_size=0", "train.batch_size: expected a value ≥ 1, found int 0"),
        ("optim.lr=0", "optim.lr: expected a value > 0"),
        ("optim.momentum=1.0", "optim.momentum: expected a value ≥ 0 and < 1"),
        ("data.image_size=8", "data.image_size: expected a value ≥ 16"),
        ("data.normalisation.std=[0.5, 0, 0.5]", "expected every element > 0"),
        ("head.partial_fc.sample_rate=1.5", "expected a value > 0 and ≤ 1"),
        ("train.grad_clip=-1", "train.grad_clip: expected a value > 0"),
        ("data.augment.random_resized_crop.scale=[0.9, 0.5]", "low ≤ high"),
        ("schedule.milestones=[200, 100]", "expected increasing steps"),
        ("schedule.name=step", "expected at least one step"),
        ("train.epochs=null", "expected train.epochs or train.max_steps, found neither"),
        ("model.backbone='timm:'", "model.backbone: expected timm:<model>"),
    ],
)
def test_load_config_out_of_range(override: str, message: str) -> None:
    assert message in _error(override)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=.inf", "optim.lr: expected a finite number, found float inf"),
        ("optim.lr=.nan", "optim.lr: expected a finite number, found float nan"),
        ("optim.lr=1e400", "optim.lr: expected a finite number, found float inf"),
        ("optim.lr=-.inf", "optim.lr: expected a finite number, found float -inf"),
        ("optim.weight_decay=.inf", "optim.weight_decay: expected a finite number"),
        ("optim.momentum=.nan", "optim.momentum: expected a finite number"),
        ("train.grad_clip=.inf", "train.grad_clip: expected a finite number"),
        ("schedule.power=.inf", "schedule.power: expected a finite number"),
        ("data.normalisation.std=[0.5, .inf, 0.5]", "data.normalisation.std[1]: expected a fin"),
        ("head.args={margin: .nan, scale: 64}", "head.args.margin: expected a finite number"),
        ("head.args.scale=.inf", "head.args.scale: expected a finite number, found float inf"),
    ],
)
def test_load_config_refuses_numbers_that_are_not_finite(override: str, message: str) -> None:
    assert message in _error(PARQUET, override)


def test_load_config_keeps_finite_numbers_of_every_sign_in_head_args() -> None:
    config = load_config(None, ["head.args={init_w: 10, init_b: -5.0, margin: 0.2}"])
    assert config.head.args == {"init_w": 10, "init_b": -5.0, "margin": 0.2}


def test_load_config_cross_section_checks() -> None:
    assert "expected < train.max_steps (10), found 10" in _error(
        "train.max_steps=10", "schedule.warmup_steps=10"
    )
    assert "multiple of train.m_per_class (4)" in _error(
        "train.sampler=m_per_class", "train.batch_size=6"
    )
    assert "data.augment.low_resolution.min_size: expected < data.image_size (32)" in _error(
        "data.image_size=32", "data.augment.low_resolution={enabled: true, min_size: 32}"
    )
    load_config(None, ["train.sampler=m_per_class", "train.batch_size=8"])


def test_load_config_decode_device_allows_only_the_flip() -> None:
    assert load_config(None).data.decode == "pil"
    cfg = load_config(None, ["data.decode=device"])
    assert cfg.data.decode == "device" and cfg.data.augment.flip.enabled
    load_config(None, ["data.decode=device", "data.augment.flip.enabled=false"])
    message = _error(
        "data.decode=device",
        "data.augment.colour_jitter.enabled=true",
        "data.augment.low_resolution.enabled=true",
    )
    assert message.count("data.decode:") == 1  # one problem naming every augmentation
    assert (
        "data.decode: expected pil with data.augment.colour_jitter, "
        "data.augment.low_resolution enabled (only the flip has a device version), found "
        "device; set data.decode=pil or disable" in message
    )
    load_config(None, ["data.augment.colour_jitter.enabled=true"])  # fine with pil


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.name=adam", "optim.name: expected one of sgd, adamw, found the string 'adam'"),
        ("train.precision=bf17", "did you mean bf16?"),
        ("train.sampler=true", "expected one of random, m_per_class, found the boolean true"),
        ("schedule.name=cos", "did you mean cosine?"),
        ("data.decode=gpu", "data.decode: expected one of pil, device, found the string 'gpu'"),
    ],
)
def test_load_config_bad_choice(override: str, message: str) -> None:
    assert message in _error(override)


@pytest.mark.parametrize("override", ["train.batch_size", "train..batch_size=1", "=3", ".a=1"])
def test_load_config_malformed_override(override: str) -> None:
    assert "expected KEY=VALUE" in _error(override)


def test_load_config_override_through_a_value_or_bad_yaml() -> None:
    assert "train.batch_size holds int 128, not a section" in _error(
        "train.batch_size=128", "train.batch_size.x=1"
    )
    assert "not valid YAML" in _error("data.folds=[0, 1")


def test_load_config_reports_every_problem_at_once() -> None:
    message = _error("train.bach_size=1", "optim.lr=-1", "train.precision=x")
    assert "3 problems" in message
    for key in ("train.bach_size", "optim.lr", "train.precision"):
        assert key in message


def test_load_config_file_errors(tmp_path: Path) -> None:
    assert "c.yaml: unknown key model.embeding_size; did you mean" in _error(
        text="model:\n  embeding_size: 3\n", tmp_path=tmp_path
    )
    assert "not valid YAML" in _error(text="train: [\n", tmp_path=tmp_path)
    assert "expected a mapping of sections" in _error(text="- 1\n", tmp_path=tmp_path)
    assert "data: expected a mapping" in _error(text="data: 3\n", tmp_path=tmp_path)
    assert load_config(_write(tmp_path, "")) == TrainConfig()
    assert load_config(_write(tmp_path, "val:\n")) == TrainConfig()  # an empty section
    assert load_config(_write(tmp_path, "val:\n"), ["val.pairs=p.csv"]).val.pairs == "p.csv"
    with pytest.raises(InputError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_validate_for_training_data_sources() -> None:
    validate_for_training(load_config(None, ["data.dataset_info=i.csv", "data.root=imgs"]))
    cases = {
        ("data.dataset_info=i.csv",): "data.root: needed",
        ("data.root=imgs",): "data.dataset_info: needed",
        (PARQUET, "data.root=imgs"): "found both data.parquet and",
        (PARQUET, "val.root=imgs"): "val.root: set without val.pairs",
    }
    for overrides, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            validate_for_training(load_config(None, overrides))


def test_loop_total_steps_max_steps_takes_precedence() -> None:
    assert load_config(None).train.total_steps(50) == 20 * 50
    assert load_config(None, ["train.max_steps=7"]).train.total_steps(50) == 7


def test_train_config_is_frozen() -> None:
    cfg = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1  # type: ignore[misc]
