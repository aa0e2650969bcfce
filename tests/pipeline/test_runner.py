from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fmlkit.errors import PipelineError
from fmlkit.pipeline.artifacts import exclusive
from fmlkit.pipeline.lock import read_lock
from fmlkit.pipeline.runner import FAULT_ENV, RunReport, pipeline_status, run_pipeline
from fmlkit.pipeline.spec import load_pipeline
from tests.pipeline.conftest import ORDER, TINY, edit


def _run(**options: object) -> RunReport:
    return run_pipeline(load_pipeline("tiny.yaml"), quiet=True, **options)  # type: ignore[arg-type]


def _ran(report: RunReport) -> list[str]:
    return [r.stage for r in report.results if r.action == "ran"]


def _links(project: Path) -> dict[str, str]:
    return {p.name: str(p.readlink()) for p in sorted((project / "tiny").iterdir())}


def test_run_pipeline_first_run_links_outputs_into_the_store(built: Path) -> None:
    lock = read_lock(built / "tiny.lock")
    assert list(lock) == ORDER
    info = built / "tiny" / "info.csv"
    assert info.is_symlink() and not info.readlink().is_absolute()
    version = lock["prepare"].outs["output"]["version"]
    target = info.resolve()
    assert target.parent.parent.parent == (built / "artifacts" / "tiny" / "prepare").resolve()
    assert not target.stat().st_mode & 0o222  # artifacts are read-only
    assert version.startswith("file:") and lock["filter"].deps["dataset_info"]["version"] == version
    assert lock["prepare"].deps["dataset_dir"]["path"] == "tiny/data"
    assert not list((built / "artifacts" / "tiny").glob("*/.staging"))
    truth = built / "tiny" / "data.truth.csv"  # written beside out_dir: linked beside it
    assert truth.is_symlink()
    assert truth.resolve().parent == (built / "tiny" / "data").resolve().parent


def test_run_pipeline_second_run_skips_everything_and_keeps_the_lock(project: Path) -> None:
    before = (project / "tiny.lock").read_bytes()
    report = _run()
    assert [r.action for r in report.results] == ["skipped"] * len(ORDER)
    assert all(r.reason.startswith("unchanged since ") for r in report.results)
    assert (project / "tiny.lock").read_bytes() == before


def test_run_pipeline_param_change_reruns_the_stage_and_its_downstream_only(
    project: Path,
) -> None:
    lock_before = read_lock("tiny.lock")
    edit(project / "tiny.yaml", "test_fraction: 0.34", "test_fraction: 0.5")
    report = _run()
    assert _ran(report) == ["split", "pairs", "convert"]  # not folds: another branch
    reasons = {r.stage: r.reason for r in report.results}
    assert reasons["folds"].startswith("unchanged")
    lock = read_lock("tiny.lock")
    assert lock["split"].params["test_fraction"] == 0.5
    assert lock["folds"] == lock_before["folds"] and lock["filter"] == lock_before["filter"]
    assert lock["pairs"].deps["split_info"]["version"] == lock["split"].outs["output"]["version"]
    assert lock["split"].outs != lock_before["split"].outs


def _without_parquet(links: dict[str, str]) -> dict[str, str]:
    return {name: target for name, target in links.items() if name != "parquet"}


def _downstream(report: RunReport, stage: str) -> list[str]:
    """``stage`` and every stage that reads what it makes, directly or not, in run order."""
    pipeline = report.pipeline
    return [s for s in ORDER if s == stage or stage in pipeline.upstream_of(s)]


def test_run_pipeline_a_rerun_stage_reruns_its_downstream_even_with_the_same_output(
    project: Path,
) -> None:
    links = _links(project)
    edit(
        project / "tiny.yaml",
        "params: {workers: 1}\n    outs: {output: tiny/info.csv}",
        "params: {workers: 2}\n    outs: {output: tiny/info.csv}",
    )
    report = _run()
    assert _ran(report) == _downstream(report, "prepare") == ORDER[1:]
    assert all(r.reason.startswith("upstream prepare") for r in report.results[2:3])
    # the same outputs: the same versions, reused (a Parquet manifest records when it was made)
    assert _without_parquet(_links(project)) == _without_parquet(links)


def test_run_pipeline_force_runs_every_stage(project: Path) -> None:
    report = _run(force=True)
    assert _ran(report) == ORDER
    assert all(r.reason.startswith("forced") for r in report.results)


def test_run_pipeline_force_stage_runs_that_stage(project: Path) -> None:
    links = _links(project)
    report = _run(force="split")
    assert _ran(report) == _downstream(report, "split")
    assert "synth" not in _ran(report) and len(_ran(report)) < len(ORDER)
    assert _without_parquet(_links(project)) == _without_parquet(links)


def test_run_pipeline_until_runs_the_stage_and_its_upstream(project: Path) -> None:
    edit(project / "tiny.yaml", "seed: 0}\n    outs: {out_dir", "seed: 1}\n    outs: {out_dir")
    report = _run(until="filter")
    assert _ran(report) == ["synth", "prepare", "filter"]
    assert {r.stage for r in report.results if r.action == "not needed"} == {
        "split",
        "pairs",
        "convert",
        "folds",
    }
    status = pipeline_status(load_pipeline("tiny.yaml"))
    assert status["split"].state == "changed" and "deps.dataset_info" in status["split"].reason


def test_run_pipeline_dry_run_changes_nothing(project: Path) -> None:
    edit(project / "tiny.yaml", "test_fraction: 0.34", "test_fraction: 0.5")
    lock = (project / "tiny.lock").read_bytes()
    links = _links(project)
    store = sorted(p.relative_to(project) for p in (project / "artifacts").rglob("*"))
    report = _run(dry_run=True)
    actions = {r.stage: r.action for r in report.results}
    assert [s for s, a in actions.items() if a == "would run"] == ["split", "pairs", "convert"]
    assert "upstream split would run" in {r.stage: r.reason for r in report.results}["pairs"]
    assert (project / "tiny.lock").read_bytes() == lock
    assert _links(project) == links
    assert sorted(p.relative_to(project) for p in (project / "artifacts").rglob("*")) == store


def test_run_pipeline_failing_stage_keeps_its_lock_entry_and_outputs(project: Path) -> None:
    edit(project / "tiny.yaml", "positives: 4, negatives: 4", "positives: 400, negatives: 4")
    edit(project / "tiny.yaml", "test_fraction: 0.34", "test_fraction: 0.5")
    before = read_lock("tiny.lock")
    links = _links(project)
    with pytest.raises(PipelineError, match=r"stage pairs \(pairs\) failed"):
        _run()
    after = read_lock("tiny.lock")
    assert after["pairs"] == before["pairs"]  # untouched …
    assert after["split"] != before["split"]  # … while the stage before it was kept
    assert {k: v for k, v in _links(project).items() if k != "split.csv"} == {
        k: v for k, v in links.items() if k != "split.csv"
    }
    assert not (project / "artifacts" / "tiny" / "pairs" / ".staging").exists()


def test_run_pipeline_failed_first_run_leaves_no_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("p.yaml").write_text(
        "stages:\n  prepare:\n    run: prepare\n    deps: {dataset_dir: empty}\n"
        "    outs: {output: out/info.csv}\n",
        encoding="utf-8",
    )
    Path("empty").write_text("not a folder", encoding="utf-8")
    with pytest.raises(PipelineError, match="stage prepare"):
        run_pipeline(load_pipeline("p.yaml"), quiet=True)
    assert not Path("p.lock").exists()
    assert not os.path.lexists("out/info.csv")
    assert not Path("artifacts/p/prepare/.staging").exists()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_run_pipeline_interrupted_stage_leaves_lock_and_outputs(
    project: Path, sig: signal.Signals
) -> None:
    """The signal comes inside synth, once it has written its outputs into staging (the
    runner's test hook sends it: no timing)."""
    lock = (project / "tiny.lock").read_bytes()
    links = _links(project)
    edit(project / "tiny.yaml", "identities: 6,", "identities: 7,")
    proc = subprocess.run(
        [sys.executable, "-m", "fmlkit", "run", "tiny.yaml"],
        cwd=project,
        env={**os.environ, FAULT_ENV: f"stage-done@synth:{sig.name}"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr
    staging = project / "artifacts" / "tiny" / "synth" / ".staging"
    assert (project / "tiny.lock").read_bytes() == lock
    assert _links(project) == links
    assert staging.exists() == (sig == signal.SIGKILL)  # SIGTERM cleans up at once
    edit(project / "tiny.yaml", "identities: 7,", "identities: 6,")
    report = _run()  # the next run starts from the interrupted stage, with a clean slate
    assert _ran(report) == []
    assert not staging.exists()


def test_pipeline_status_reports_each_state(project: Path) -> None:
    assert {s.state for s in pipeline_status(load_pipeline("tiny.yaml")).values()} == {"up-to-date"}
    edit(project / "tiny.yaml", "k: 3", "k: 4")
    (project / "tiny" / "pairs.csv").unlink()
    status = pipeline_status(load_pipeline("tiny.yaml"))
    assert status["folds"].state == "changed" and status["folds"].reason == "params.k: 3 → 4"
    assert status["pairs"].state == "missing" and "outs.output" in status["pairs"].reason
    assert status["split"].state == "up-to-date"
    report = _run()
    assert _ran(report) == ["pairs", "folds"]
    assert (project / "tiny" / "pairs.csv").is_file()


def test_run_pipeline_reruns_a_stage_whose_output_was_modified(project: Path) -> None:
    target = (project / "tiny" / "folds.csv").resolve()
    target.chmod(0o644)
    target.write_text("edited by hand\n", encoding="utf-8")
    status = pipeline_status(load_pipeline("tiny.yaml"))
    assert status["folds"].state == "changed" and "was modified" in status["folds"].reason
    assert _ran(_run()) == ["folds"]
    assert "edited" not in (project / "tiny" / "folds.csv").read_text(encoding="utf-8")


def test_run_pipeline_refuses_an_output_written_outside_it(project: Path) -> None:
    (project / "tiny" / "folds.csv").unlink()
    (project / "tiny" / "folds.csv").write_text("mine\n", encoding="utf-8")
    with pytest.raises(PipelineError, match=r"stages\.folds\.outs\.output: tiny/folds.csv exists"):
        _run()


def test_run_pipeline_refuses_missing_deps_before_running(project: Path) -> None:
    edit(
        project / "tiny.yaml",
        'deps: {dataset_dir: "${stages.synth.outs.out_dir}"}',
        "deps: {dataset_dir: nowhere}",
    )
    lock = (project / "tiny.lock").read_bytes()
    with pytest.raises(PipelineError, match=r"stages\.prepare\.deps\.dataset_dir: nowhere"):
        _run(force=True)
    assert (project / "tiny.lock").read_bytes() == lock


def test_run_pipeline_unknown_stage_option(project: Path) -> None:
    with pytest.raises(PipelineError, match="did you mean 'split'"):
        _run(until="splt")
    with pytest.raises(PipelineError, match="--force nothing"):
        _run(force="nothing")


def test_run_pipeline_one_run_at_a_time(project: Path) -> None:
    with exclusive(project / "artifacts" / "tiny"), pytest.raises(PipelineError, match="another"):
        _run(force="folds")


def test_dry_run_and_status_write_nothing_in_a_fresh_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("tiny.yaml").write_text(TINY, encoding="utf-8")
    report = _run(dry_run=True)
    assert [r.action for r in report.results] == ["would run"] * len(ORDER)
    assert report.results[1].reason == "first run (no lock entry)"
    status = pipeline_status(load_pipeline("tiny.yaml"))
    assert {s.state for s in status.values()} == {"missing"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]
