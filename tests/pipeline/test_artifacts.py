from __future__ import annotations

from pathlib import Path

import pytest

from fmlkit.errors import PipelineError
from fmlkit.pipeline.artifacts import list_artifacts, restore
from fmlkit.pipeline.lock import read_lock
from fmlkit.pipeline.runner import pipeline_status, run_pipeline
from fmlkit.pipeline.spec import load_pipeline
from tests.pipeline.conftest import edit


def test_list_artifacts_keeps_every_version_with_its_provenance(project: Path) -> None:
    first = (project / "tiny" / "split.csv").resolve()
    edit(project / "tiny.yaml", "test_fraction: 0.34", "test_fraction: 0.5")
    run_pipeline(load_pipeline("tiny.yaml"), quiet=True)
    versions = list_artifacts(load_pipeline("tiny.yaml"))["split"]
    assert len(versions) == 2
    old, new = versions
    assert [v.current for v in versions] == [False, True]
    assert old.records[0].params["test_fraction"] == 0.34
    assert new.records[0].params["test_fraction"] == 0.5
    assert old.records[0].deps == new.records[0].deps  # same input, other params
    assert first.is_file()  # the old version is still there
    assert len(list_artifacts(load_pipeline("tiny.yaml"))["folds"]) == 1


def test_restore_points_outputs_at_an_older_version(project: Path) -> None:
    before = read_lock("tiny.lock")["split"]
    old_target = (project / "tiny" / "split.csv").resolve()
    edit(project / "tiny.yaml", "test_fraction: 0.34", "test_fraction: 0.5")
    run_pipeline(load_pipeline("tiny.yaml"), quiet=True)
    pipeline = load_pipeline("tiny.yaml")
    old = list_artifacts(pipeline)["split"][0]
    chosen = restore(pipeline, "split", old.version[:6])
    assert chosen.version == old.version and chosen.current
    assert (project / "tiny" / "split.csv").resolve() == old_target
    after = read_lock("tiny.lock")["split"]
    assert after.params == before.params and after.outs == before.outs
    status = pipeline_status(pipeline)
    assert status["split"].reason == "params.test_fraction: 0.34 → 0.5"
    edit(project / "tiny.yaml", "test_fraction: 0.5", "test_fraction: 0.34")
    assert pipeline_status(load_pipeline("tiny.yaml"))["split"].state == "up-to-date"


def test_restore_refuses_an_unknown_version(project: Path) -> None:
    with pytest.raises(PipelineError, match="no version of this stage starts with 'zz'"):
        restore(load_pipeline("tiny.yaml"), "split", "zz")
    with pytest.raises(PipelineError, match="no such stage"):
        restore(load_pipeline("tiny.yaml"), "splat", "0")


def test_run_pipeline_reuses_a_version_it_makes_again(project: Path) -> None:
    edit(project / "tiny.yaml", "test_fraction: 0.34", "test_fraction: 0.5")
    run_pipeline(load_pipeline("tiny.yaml"), quiet=True)
    edit(project / "tiny.yaml", "test_fraction: 0.5", "test_fraction: 0.34")
    report = run_pipeline(load_pipeline("tiny.yaml"), quiet=True)
    assert [r.stage for r in report.results if r.action == "ran"] == ["split", "pairs", "convert"]
    versions = list_artifacts(load_pipeline("tiny.yaml"))["split"]
    assert len(versions) == 2 and versions[0].current
    assert len(versions[0].records) == 1  # the same run again is not recorded twice
