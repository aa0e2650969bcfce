"""The stages a pipeline can run: each is the click command the CLI runs (``fmlkit split`` …),
with its path arguments and options split into deps (read) and outs (written).

A stage's YAML keys are its command's options as ``fmlkit COMMAND --help`` shows them, without
the dashes and with ``_`` for ``-`` (``--test-fraction`` → ``test_fraction``), and its positional
arguments by name (``dataset_info``). They are read from the command itself, so the pipeline
and the CLI cannot drift apart; values are checked by the command's own click types before
anything runs, and the stage runs through the command's callback, i.e. the same checks and
the same library function as on the command line.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import click

from fmlkit.cli._common import find_option
from fmlkit.errors import FmlkitError, OptionError
from fmlkit.pipeline.launch import LAUNCH_KEYS, Launch, launch_of, launch_problems
from fmlkit.pipeline.lock import shown
from fmlkit.registry import Registry

Problem = tuple[str, str]  # (YAML path relative to the stage, message)
DepValue = str | tuple[str, ...]  # one path, or several for a repeatable option


def option_key(param: click.Parameter) -> str:
    """The YAML key of a command parameter: its first long option without ``--`` and with
    ``_`` for ``-``, or an argument's name."""
    if isinstance(param, click.Option):
        for opt in param.opts:
            if opt.startswith("--"):
                return opt[2:].replace("-", "_")
    assert param.name is not None
    return param.name


def normalize_key(key: object) -> str:
    """A YAML key as the stage reads it: ``test-fraction`` and ``test_fraction`` are one key."""
    return str(key).replace("-", "_")


def takes_list(param: click.Parameter) -> bool:
    """Whether the parameter takes a list (a repeatable option or a ``nargs=-1`` argument)."""
    return bool(param.multiple) or param.nargs == -1


@dataclass(frozen=True)
class StageAdapter:
    """One stage name: its command, and which of its keys are deps, outs, or set by the runner.

    Attributes:
        name: the stage name used in ``run:``.
        command_path: ``module:attribute`` of the click command (imported when first needed).
        deps: keys naming inputs (files or folders the stage reads).
        outs: keys naming outputs (written under a staging folder, then versioned).
        fixed: keys the runner sets itself (e.g. ``overwrite``), refused in the YAML.
        caches: path keys that are neither deps nor outs: a cache the command fills and
            reuses (evaluate's ``cache_dir``), which never changes what it computes; a
            ``params`` value, not versioned.
    """

    name: str
    command_path: str
    deps: tuple[str, ...]
    outs: tuple[str, ...]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    caches: tuple[str, ...] = ()

    @cached_property
    def command(self) -> click.Command:
        module, _, attribute = self.command_path.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        return command

    @cached_property
    def options(self) -> dict[str, click.Parameter]:
        """Every key of the command, YAML key → click parameter."""
        return {option_key(p): p for p in self.command.params if p.name != "help"}

    def all_keys(self) -> list[str]:
        """Every key a stage of this kind takes, under deps, outs or params."""
        return list(self.options)

    @property
    def params(self) -> tuple[str, ...]:
        """The keys that go under ``params:``."""
        taken = {*self.deps, *self.outs, *self.fixed}
        return tuple(k for k in self.options if k not in taken)

    def required(self) -> Iterator[tuple[str, str]]:
        """(section, key) of each dep, out or param the command requires."""
        for key, param in self.options.items():
            if param.required and key not in self.fixed:
                yield self.section(key), key

    def section(self, key: str) -> str:
        """Where ``key`` belongs in the YAML: deps, outs or params."""
        return "deps" if key in self.deps else "outs" if key in self.outs else "params"

    def belongs(self, key: str, section: str) -> bool:
        """Whether ``key`` is a valid key of ``section`` (deps, outs or params)."""
        return key in self.all_keys() and key not in self.fixed and self.section(key) == section

    def is_multiple(self, key: str) -> bool:
        """Whether ``key`` takes a list of values."""
        param = self.options.get(key)
        return param is not None and takes_list(param)

    def check(self, deps: Mapping[str, DepValue], params: Mapping[str, Any]) -> Iterator[Problem]:
        """Problems with the ``params`` values, by the command's own types and callbacks."""
        ctx = click.Context(self.command)
        for key, value in params.items():
            param = self.options[key]
            try:
                param.process_value(ctx, to_cli_value(param, value))
            except click.BadParameter as e:
                yield f"params.{key}", e.message
            except (click.ClickException, FmlkitError, TypeError, ValueError) as e:
                yield f"params.{key}", str(e)

    def cli_values(
        self, deps: Mapping[str, DepValue], params: Mapping[str, Any], outs: Mapping[str, Path]
    ) -> dict[str, Any]:
        """The command's parameter values (by parameter name) for one run."""
        given: dict[str, Any] = {**self.fixed, **params, **deps, **outs}
        return {self.options[k].name: to_cli_value(self.options[k], v) for k, v in given.items()}

    def invoke(
        self,
        deps: Mapping[str, DepValue],
        params: Mapping[str, Any],
        outs: Mapping[str, Path],
        *,
        parent: click.Context | None = None,
    ) -> None:
        """Run the command's callback with these values, as the CLI would.

        Raises:
            click.ClickException: a value or a combination of values the command refuses.
            FmlkitError: whatever the stage's library function raises.
        """
        values = self.cli_values(deps, params, outs)
        command = self.command
        with command.make_context(self.name, [], parent=parent, default_map=values) as ctx:
            command.invoke(ctx)

    def launch(self, params: Mapping[str, Any]) -> Launch | None:
        """The torchrun launch ``params`` ask for (`fmlkit.pipeline.launch`), or None: the
        stage runs in this process, through `invoke`."""
        return None

    def command_line(
        self, deps: Mapping[str, DepValue], params: Mapping[str, Any], outs: Mapping[str, Path]
    ) -> list[str]:
        """``fmlkit``'s arguments that run this stage (for a stage with a `launch`)."""
        raise NotImplementedError(f"{self.name} stages run in the runner's process")

    def option_message(self, error: OptionError) -> str:
        """An `OptionError` of this stage with its options written as the YAML keys
        (``format`` for pairs' ``fmt``, ``input`` for evaluate's ``retrieval_input``)."""

        def key(name: str) -> str:
            option = find_option(self.command, name)
            return name if option is None else option_key(option)

        return error.render(key, lambda name, value: f"{key(name)}: {value}")


def to_cli_value(param: click.Parameter, value: Any) -> Any:
    """A YAML value as the click parameter takes it: lists stay lists for repeatable
    parameters; a single value is refused where one is expected and a list is given."""
    if takes_list(param):
        items = value if isinstance(value, (list, tuple)) else [value]
        return [str(v) if isinstance(v, Path) else v for v in items]
    if isinstance(value, (list, tuple, dict)):
        raise click.BadParameter(f"expected one value, found {shown(value, 80)}")
    return value


class TrainAdapter(StageAdapter):
    """``fmlkit train``: the config file is a dep, and the config keys that hold paths
    (``data.parquet``, ``val.pairs``, ``output_dir`` …) are deps and outs of their own; the
    runner passes them to the command as overrides. ``params.overrides`` holds the other
    overrides, as a mapping ``{train.max_steps: 50}`` or a list of ``key=value`` strings.
    ``params.nproc_per_node`` (and ``nnodes``, ``rdzv_endpoint``) run it under torchrun
    (`fmlkit.pipeline.launch`)."""

    CONFIG_DEPS = (
        "data.parquet",
        "data.dataset_info",
        "data.root",
        "val.pairs",
        "val.root",
        "model.init",
    )
    CONFIG_OUTS = ("output_dir",)

    def all_keys(self) -> list[str]:
        return [*super().all_keys(), *self.CONFIG_DEPS, *self.CONFIG_OUTS, *LAUNCH_KEYS]

    def required(self) -> Iterator[tuple[str, str]]:
        yield from super().required()
        yield "outs", "output_dir"

    def check(self, deps: Mapping[str, DepValue], params: Mapping[str, Any]) -> Iterator[Problem]:
        yield from super().check(deps, _command_params(params))
        yield from launch_problems(params)
        try:
            overrides = override_list(params.get("overrides", {}))
        except ValueError as e:
            yield "params.overrides", str(e)
            return
        for item in overrides:
            key = item.partition("=")[0].strip()
            if key in (*self.CONFIG_DEPS, *self.CONFIG_OUTS):
                where = "outs" if key in self.CONFIG_OUTS else "deps"
                yield (
                    "params.overrides",
                    f"{key} is a path: declare it under {where} ({where}: {{{key}: PATH}}) "
                    "so that its content is versioned",
                )
        config = deps.get("config")
        if isinstance(config, str) and Path(config).is_file():
            yield from self._check_config(config, overrides, deps)

    def _check_config(
        self, config: str, overrides: Sequence[str], deps: Mapping[str, DepValue]
    ) -> Iterator[Problem]:
        """The whole config as the run will see it: keys, values, and a data source."""
        from fmlkit.train.config import load_config, validate_for_training

        paths = [f"{k}={json.dumps(deps[k])}" for k in self.CONFIG_DEPS if k in deps]
        try:
            loaded = load_config(config, [*overrides, *paths])
            validate_for_training(loaded)
        except FmlkitError as e:
            yield "params.overrides", str(e)
            return
        for key in self.CONFIG_DEPS:
            section, _, name = key.partition(".")
            if getattr(getattr(loaded, section), name) is not None and key not in deps:
                yield (
                    "deps",
                    f"{config} sets {key}: declare it under deps instead, so that the data "
                    "a model was trained on is versioned",
                )

    def cli_values(
        self, deps: Mapping[str, DepValue], params: Mapping[str, Any], outs: Mapping[str, Path]
    ) -> dict[str, Any]:
        paths = {**deps, **outs}
        config_paths = [f"{k}={json.dumps(str(v))}" for k, v in paths.items() if k != "config"]
        values = super().cli_values({"config": deps["config"]}, _command_params(params), {})
        values["overrides"] = [*override_list(params.get("overrides", {})), *config_paths]
        return values

    def launch(self, params: Mapping[str, Any]) -> Launch | None:
        return launch_of(params)

    def command_line(
        self, deps: Mapping[str, DepValue], params: Mapping[str, Any], outs: Mapping[str, Path]
    ) -> list[str]:
        """``train --config CONFIG KEY=VALUE … [--device D]``, the overrides as `invoke`
        passes them (the paths included)."""
        values = self.cli_values(deps, params, outs)
        args = ["train", "--config", str(values["config_path"]), *values["overrides"]]
        if values.get("device") is not None:
            args += ["--device", str(values["device"])]
        return args


def _command_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A train stage's params that are options of ``fmlkit train`` (not the overrides, not
    how it is launched)."""
    return {k: v for k, v in params.items() if k not in ("overrides", *LAUNCH_KEYS)}


def override_list(value: Any) -> list[str]:
    """``params.overrides`` of a train stage as ``key=value`` strings (values as JSON, which
    YAML reads back unchanged).

    Raises:
        ValueError: neither a mapping nor a list of ``key=value`` strings.
    """
    if isinstance(value, Mapping):
        return [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in value.items()]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) and "=" in v for v in value):
        return list(value)
    raise ValueError(
        "expected a mapping {key: value} or a list of key=value strings, "
        f"found {shown(value, 80)}"
    )


STAGES: Registry[Any] = Registry("pipeline stage")


def _add(adapter: StageAdapter) -> None:
    STAGES.register(adapter.name)(adapter)


def get_stage(name: str) -> StageAdapter:
    """The adapter of stage ``name``.

    Raises:
        ConfigError: an unknown name (the message lists the valid ones and the closest).
    """
    adapter = STAGES.get(name)
    assert isinstance(adapter, StageAdapter)
    return adapter


# A stage writes into a fresh staging folder (its outputs never exist there beforehand), and
# the runner alone replaces the declared outputs' links: ``overwrite`` is not a stage's key.
_NO_OVERWRITE = {"overwrite": False}
for _adapter in (
    StageAdapter(
        "synth", "fmlkit.cli.data:synth", (), ("out_dir", "truth", "landmarks"), _NO_OVERWRITE
    ),
    StageAdapter(
        "align",
        "fmlkit.cli.align:align",
        ("input", "root", "landmarks"),
        ("out", "table"),
        _NO_OVERWRITE,
    ),
    StageAdapter(
        "prepare",
        "fmlkit.cli.data:prepare",
        ("dataset_dir", "previous"),
        ("output",),
        _NO_OVERWRITE,
    ),
    StageAdapter(
        "filter",
        "fmlkit.cli.data:filter_",
        ("dataset_info", "root", "against", "against_root", "embeddings"),
        ("output", "removed", "report"),
        _NO_OVERWRITE,
    ),
    StageAdapter("split", "fmlkit.cli.split:split", ("dataset_info",), ("output",), _NO_OVERWRITE),
    StageAdapter("pairs", "fmlkit.cli.split:pairs", ("split_info",), ("output",), _NO_OVERWRITE),
    StageAdapter(
        "convert", "fmlkit.cli.convert:convert", ("source", "root"), ("output",), _NO_OVERWRITE
    ),
    TrainAdapter(
        "train",
        "fmlkit.cli.train:train",
        ("config", *TrainAdapter.CONFIG_DEPS),
        TrainAdapter.CONFIG_OUTS,
        {"resume": False},
    ),
    StageAdapter(
        "export",
        "fmlkit.cli.train:export",
        ("checkpoint",),
        ("onnx", "arcface_torch"),
        _NO_OVERWRITE,
    ),
    StageAdapter(
        "embed",
        "fmlkit.cli.train:embed",
        ("checkpoint", "onnx", "weights", "input", "root"),
        ("output",),
        _NO_OVERWRITE,
    ),
    StageAdapter(
        "clean",
        "fmlkit.cli.clean:clean",
        ("embeddings", "root", "apply", "truth"),
        ("output", "report"),
        _NO_OVERWRITE,
    ),
    StageAdapter(
        "evaluate",
        "fmlkit.cli.evaluate:evaluate",
        (
            "checkpoint",
            "onnx",
            "weights",
            "embeddings",
            "pairs",
            "root",
            "input",
            "ijb",
            "gallery",
            "probes",
        ),
        ("output",),
        _NO_OVERWRITE,
        caches=("cache_dir",),
    ),
):
    _add(_adapter)
