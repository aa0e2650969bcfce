"""fmlkit run / status / artifacts through click, as the CLI runs them (the commands mounted on
a group like fmlkit's own, which turns library errors into one `Error:` line)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from fmlkit.cli._common import FmlkitGroup
from fmlkit.pipeline.commands import artifacts, run, status
from tests.pipeline.conftest import ORDER, edit


@click.group(cls=FmlkitGroup)
@click.option("-q", "--quiet", is_flag=True)
def fmlkit(quiet: bool) -> None:
    """The pipeline commands, mounted as in fmlkit.main."""


for _command in (run, status, artifacts):
    fmlkit.add_command(_command)


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(fmlkit, list(args))


@pytest.mark.parametrize("command", ["run", "status", "artifacts"])
def test_pipeline_commands_have_help(command: str) -> None:
    result = _invoke(command, "--help")
    assert result.exit_code == 0 and "PIPELINE" in result.output


def test_run_prints_each_stage_and_reason(project: Path) -> None:
    edit(project / "tiny.yaml", "k: 3", "k: 4")
    result = _invoke("run", "tiny.yaml")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for stage in ORDER[:-1]:
        assert f"{stage}: skipped — unchanged since " in result.output
    assert "folds: running — params.k: 3 → 4" in lines
    assert any(line.startswith("folds: ran in ") for line in lines)
    assert lines[-1].startswith("tiny: 1 ran, 6 skipped in ")
    assert lines[-1].endswith("lock tiny.lock updated")


def test_run_quiet_prints_nothing(project: Path) -> None:
    edit(project / "tiny.yaml", "k: 3", "k: 4")
    result = _invoke("-q", "run", "tiny.yaml")
    assert result.exit_code == 0 and result.output == ""


def test_run_force_with_and_without_a_stage(project: Path) -> None:
    result = _invoke("run", "tiny.yaml", "--force", "folds", "--dry-run")
    assert "folds: would run — forced" in result.output
    assert result.output.count("would run —") == 1
    for args in (["tiny.yaml", "--force"], ["--force", "tiny.yaml"]):
        result = _invoke("run", *args, "--dry-run")
        assert result.exit_code == 0, result.output
        assert result.output.count("would run — forced") == len(ORDER)


def test_run_invalid_pipeline_exits_1_naming_the_yaml_path(project: Path) -> None:
    edit(project / "tiny.yaml", "params: {k: 3}", "params: {k: 3, folds: 2}")
    edit(project / "tiny.yaml", "${stages.split.outs.output}", "${stages.split.outs.table}")
    result = _invoke("run", "tiny.yaml")
    assert result.exit_code == 1
    assert result.output.startswith("Error: tiny.yaml: 3 problems, nothing was run:")
    assert "  stages.folds.params.folds: unknown param of split" in result.output
    assert (
        "  stages.pairs.deps.split_info: ${stages.split.outs.table}: stage split" in result.output
    )
    assert "  stages.convert.deps.source: ${stages.split.outs.table}" in result.output
    assert "Traceback" not in result.output


def test_run_usage_errors_exit_2(project: Path) -> None:
    assert _invoke("run").exit_code == 2
    assert _invoke("run", "--force", "folds").exit_code == 2


def test_run_failing_stage_exits_1(project: Path) -> None:
    edit(project / "tiny.yaml", "positives: 4, negatives: 4", "positives: 400, negatives: 4")
    result = _invoke("run", "tiny.yaml")
    assert result.exit_code == 1
    assert "Error: stage pairs (pairs) failed:" in result.output


def test_status_json(project: Path) -> None:
    (project / "tiny" / "folds.csv").unlink()
    edit(project / "tiny.yaml", "test_fraction: 0.34", "test_fraction: 0.5")
    result = _invoke("status", "tiny.yaml", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert list(found) == ORDER
    assert found["synth"] == {"state": "up-to-date", "reason": "unchanged"}
    assert found["split"] == {"state": "changed", "reason": "params.test_fraction: 0.34 → 0.5"}
    assert found["pairs"] == {"state": "changed", "reason": "upstream split is changed"}
    assert found["folds"]["state"] == "missing"
    assert found["folds"]["reason"] == "outs.output (tiny/folds.csv) is missing"
    text = _invoke("status", "tiny.yaml").output.splitlines()
    assert text[0].split() == ["synth", "up-to-date", "unchanged"]


def test_artifacts_lists_and_restores(project: Path) -> None:
    edit(project / "tiny.yaml", "k: 3", "k: 4")
    assert _invoke("run", "tiny.yaml").exit_code == 0
    listing = _invoke("artifacts", "tiny.yaml")
    assert listing.exit_code == 0, listing.output
    assert "folds (output → tiny/folds.csv): 2 version(s)" in listing.output
    assert "params: k=3" in listing.output and "params: k=4" in listing.output
    found = json.loads(_invoke("artifacts", "tiny.yaml", "--json").output)
    old, new = found["folds"]
    assert (old["current"], new["current"]) == (False, True)
    assert old["records"][0]["params"] == {"k": 3}
    result = _invoke("artifacts", "tiny.yaml", "--restore", "folds", old["version"][:8])
    assert result.exit_code == 0, result.output
    assert (project / "tiny" / "folds.csv").resolve() == (
        Path(old["path"]) / "output" / "folds.csv"
    ).resolve()
    assert "params.k: 3 → 4" in _invoke("status", "tiny.yaml").output
