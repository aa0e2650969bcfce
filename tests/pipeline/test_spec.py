from __future__ import annotations

from pathlib import Path

import pytest

from fmlkit.errors import InputError, PipelineError
from fmlkit.pipeline.spec import load_pipeline, resolve_pipeline_path
from tests.pipeline.conftest import ORDER, TINY

REPO = Path(__file__).resolve().parents[2]


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PipelineError) as info:
        load_pipeline(path)
    message = str(info.value)
    assert "nothing was run" in message.splitlines()[0]
    return [line.strip() for line in message.splitlines()[1:]]


def _stage(stage_id: str, body: str) -> str:
    return f"  {stage_id}:\n" + "".join(f"    {line}\n" for line in body.strip().splitlines())


def test_load_pipeline_orders_and_links_the_tiny_pipeline(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    pipeline = load_pipeline(path)
    assert list(pipeline.stages) == ORDER
    assert pipeline.name == "tiny" and pipeline.lock_path == tmp_path / "tiny.lock"
    assert pipeline.store == Path("artifacts/tiny")
    filter_ = pipeline.stages["filter"]
    assert filter_.deps == {"dataset_info": "tiny/info.csv", "root": "tiny/data"}
    assert filter_.upstream == ("prepare", "synth")
    assert pipeline.upstream_of("pairs") == {"split", "filter", "prepare", "synth"}


def test_load_pipeline_orders_dependencies_before_file_order(tmp_path: Path) -> None:
    text = (
        "stages:\n"
        + _stage(
            "b",
            'run: split\ndeps: {dataset_info: "${stages.a.outs.output}"}\nouts: {output: b.csv}',
        )
        + _stage("a", "run: split\ndeps: {dataset_info: in.csv}\nouts: {output: a.csv}")
    )
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    assert list(load_pipeline(tmp_path / "p.yaml").stages) == ["a", "b"]


def test_load_pipeline_links_stages_by_path_without_a_reference(tmp_path: Path) -> None:
    text = (
        "stages:\n"
        + _stage("a", "run: convert\ndeps: {source: in.csv, root: imgs}\nouts: {output: out/pq}")
        + _stage(
            "b",
            "run: evaluate\ndeps: {embeddings: x.parquet, pairs: [out/pq/_pairs.csv]}\n"
            "params: {retrieval: true}\nouts: {output: eval}",
        )
    )
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    pipeline = load_pipeline(tmp_path / "p.yaml")
    assert pipeline.stages["b"].upstream == ("a",)
    assert pipeline.stages["b"].deps["pairs"] == ("out/pq/_pairs.csv",)


def test_load_pipeline_accepts_dashed_keys(tmp_path: Path) -> None:
    text = "stages:\n" + _stage(
        "s",
        "run: split\ndeps: {dataset-info: in.csv}\n"
        "params: {mode: classes, test-fraction: 0.2}\nouts: {output: s.csv}",
    )
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    assert load_pipeline(tmp_path / "p.yaml").stages["s"].params == {
        "mode": "classes",
        "test_fraction": 0.2,
    }


def test_load_pipeline_reports_every_problem_by_yaml_path(tmp_path: Path) -> None:
    text = "extra: 1\nstages:\n" + "".join(
        [
            _stage("synth", "run: synthh"),
            _stage(
                "prep",
                "run: prepare\n"
                'deps: {dataset_dir: "${stages.nope.outs.out_dir}", datset: x}\n'
                "params: {workers: 0, output: y}\nouts: {output: o/info.csv}",
            ),
            _stage(
                "filt",
                'run: filter\ndeps: {dataset_info: "${stages.prep.outs.table}"}\n'
                "params: {threshold: 100, scope: everywhere}\nouts: {output: o/info.csv}",
            ),
            _stage(
                "conv",
                "run: convert\ndeps: {source: in.csv}\nparams: {overwrite: true}\n"
                "outs: {output: o/pq}",
            ),
            _stage("pairs", "run: pairs\ndeps: {split_info: s.csv}\noutout: {}"),
        ]
    )
    problems = _problems(tmp_path, text)
    expected = [
        "extra: unknown key",
        "stages.synth.run: unknown pipeline stage 'synthh'",
        "stages.prep.deps.datset: unknown dep of prepare (valid: dataset_dir, previous); "
        "did you mean 'dataset_dir'?",
        "stages.prep.params.output: output is one of prepare's outs: move it there",
        "stages.prep.deps.dataset_dir: ${stages.nope.outs.out_dir}: no stage 'nope'",
        "stages.filt.deps.dataset_info: ${stages.prep.outs.table}: stage prep has no output "
        "'table'",
        "stages.filt.outs.output: overlaps stages.prep.outs.output",
        "stages.prep.params.workers: 0 is not in the range x>=1",
        "stages.filt.params.threshold: 100 is not in the range 0<=x<=64",
        "stages.filt.params.scope: 'everywhere' is not one of 'label', 'global'",
        "stages.conv.params.overwrite: set by the pipeline runner for convert",
        "stages.pairs.outout: unknown key",
        "stages.pairs.outs: missing output (required by pairs)",
        "stages.pairs.params: missing positives (required by pairs)",
        "stages.pairs.params: missing negatives (required by pairs)",
    ]
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)
    assert len(problems) == len(expected), problems


def test_load_pipeline_reports_a_cycle(tmp_path: Path) -> None:
    text = "stages:\n" + "".join(
        _stage(
            a,
            f'run: split\ndeps: {{dataset_info: "${{stages.{b}.outs.output}}"}}\n'
            f"outs: {{output: {a}.csv}}",
        )
        for a, b in (("x", "z"), ("y", "x"), ("z", "y"))
    )
    problems = _problems(tmp_path, text)
    cycle = "cycle: x → y → z → x (each reads the one before)"
    assert problems == [f"stages.x.deps.dataset_info: {cycle}"]


def test_load_pipeline_refuses_a_stage_reading_its_own_output(tmp_path: Path) -> None:
    text = "stages:\n" + _stage(
        "s", "run: split\ndeps: {dataset_info: t.csv}\nparams: {k: 3}\nouts: {output: t.csv}"
    )
    assert _problems(tmp_path, text) == ["stages.s.deps.dataset_info: is its own outs.output"]


def test_load_pipeline_checks_train_overrides_against_the_config(tmp_path: Path) -> None:
    text = "stages:\n" + _stage(
        "train",
        f"run: train\ndeps: {{config: {REPO}/configs/demo.yaml, data.parquet: pq}}\n"
        "params: {overrides: {train.max_stepz: 2, output_dir: elsewhere}}\n"
        "outs: {output_dir: run}",
    )
    problems = _problems(tmp_path, text)
    assert problems[0].startswith("stages.train.params.overrides: output_dir is a path")
    assert "unknown key train.max_stepz; did you mean train.max_steps?" in problems[1]
    assert len(problems) == 2


def test_load_pipeline_wants_train_data_paths_declared_as_deps(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("data: {parquet: somewhere}\ntrain: {max_steps: 2}\n", encoding="utf-8")
    text = "stages:\n" + _stage(
        "train", f"run: train\ndeps: {{config: {config}}}\nouts: {{output_dir: run}}"
    )
    problems = _problems(tmp_path, text)
    assert problems == [
        f"stages.train.deps: {config} sets data.parquet: declare it under deps instead, so "
        "that the data a model was trained on is versioned"
    ]


@pytest.mark.parametrize("name", ["demo", "insightface"])
def test_shipped_pipelines_are_valid(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    pipeline = load_pipeline(name)
    assert pipeline.path == Path("pipelines") / f"{name}.yaml"
    if name == "demo":
        # the stage ids, in this order among the others (folds, recordio, export)
        required = ["synth", "prepare", "filter", "split", "pairs", "convert", "train", "evaluate"]
        assert [s for s in pipeline.stages if s in required] == required
        outs = [p for stage in pipeline.stages.values() for p in stage.outs.values()]
        assert all(p.startswith("demo/") for p in outs)


def test_resolve_pipeline_path_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="pipeline nothing not found"):
        resolve_pipeline_path("nothing")


def test_load_pipeline_refuses_outputs_in_the_artifact_store(tmp_path: Path) -> None:
    text = "artifacts: out/store\nstages:\n" + _stage(
        "s", "run: split\ndeps: {dataset_info: in.csv}\nouts: {output: out/store/s.csv}"
    )
    assert _problems(tmp_path, text) == ["stages.s.outs.output: overlaps the artifact store"]
