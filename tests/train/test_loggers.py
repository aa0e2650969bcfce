"""Experiment tracking (docs/train.md "Logging"), read back from what each tracker wrote: a
tiny run logs to TensorBoard, W&B (offline: its .wandb file read record by record with W&B's
own protobuf types) and MLflow (a file store in the run's folder), and each holds the losses of
metrics.csv at the same steps; a caller's callback gets metrics.csv's rows; a resumed run
continues the same W&B and MLflow runs; a tracker enabled but not installed is one Error:
line before anything is written. Offline only: nothing here touches the network."""

from __future__ import annotations

import csv
import json
import struct
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fmlkit.errors import ConfigError
from fmlkit.train.config import load_config
from fmlkit.train.loggers.tags import VAL_METRICS, hyperparameters, metric_tag
from fmlkit.train.loop import train
from tests.hostile.check import fmlkit, nothing_complete, refused
from tests.train.test_loop import CLASSES, PER_CLASS, _config_file, _overrides, write_images

STEPS = 6


# ---- names ------------------------------------------------------------------------------------


def test_metric_tag_groups_training_and_validation_columns() -> None:
    assert [metric_tag(n) for n in ("loss", "lr", "img_per_s", "epoch")] == [
        "train/loss",
        "train/lr",
        "train/img_per_s",
        "train/epoch",
    ]
    assert metric_tag("val_lfw_accuracy") == "val/lfw/accuracy"
    assert metric_tag("val_lfw_accuracy_std") == "val/lfw/accuracy_std"
    assert metric_tag("val_cfp_fp_val_at_far_1e-3") == "val/cfp_fp/val_at_far_1e-3"
    assert metric_tag("val_accuracy") == "val_accuracy"  # no pair list's name: kept
    assert metric_tag("something_else") == "something_else"


def test_the_validation_metrics_are_those_validation_computes() -> None:
    from fmlkit.eval.verification import score_pairs

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 8)), rng.normal(size=(40, 8))
    result = score_pairs(a, b, np.arange(40) % 2 == 0).result
    assert set(VAL_METRICS) == {k for k, v in result.items() if isinstance(v, float)}


def test_hyperparameters_are_the_config_flattened_to_dotted_keys() -> None:
    config = load_config(None, ["optim.lr=0.2", "head.args={margin: 0.4}", "data.folds=[0, 1]"])
    flat = hyperparameters(config)
    assert flat["optim.lr"] == 0.2 and flat["head.args.margin"] == 0.4
    assert flat["data.folds"] == [0, 1] and flat["log.wandb.enabled"] is False
    assert flat["model.init"] is None and "head.args" not in flat
    assert all(not isinstance(v, dict) for v in flat.values())


def test_the_log_section_is_checked_key_by_key() -> None:
    config = load_config(None, ["log.wandb=true", "log.wandb.project=faces", "log.mlflow=false"])
    assert config.log.wandb.enabled and config.log.wandb.project == "faces"
    assert config.log.tensorboard and not config.log.mlflow.enabled
    # true/false on a section sets its `enabled` and keeps its other keys, in either order
    on = load_config(None, ["log.wandb.project=faces", "log.wandb=true", "log.mlflow=true"])
    assert on.log.wandb.enabled and on.log.wandb.project == "faces" and on.log.mlflow.enabled
    off = load_config(None, ["log.mlflow={enabled: true, experiment: e}", "log.mlflow=false"])
    assert not off.log.mlflow.enabled and off.log.mlflow.experiment == "e"
    blur = load_config(None, ["data.augment.blur=true"]).data.augment.blur  # any such section
    assert blur.enabled and blur == type(blur)(enabled=True)
    with pytest.raises(ConfigError, match=r"unknown key log\.wandb\.projct; did you mean "):
        load_config(None, ["log.wandb.projct=x"])
    with pytest.raises(ConfigError, match=r"log\.wandb\.mode: expected one of online, offline"):
        load_config(None, ["log.wandb.mode=onlin"])
    with pytest.raises(ConfigError, match=r"unknown key log\.mlflow\.uri; valid keys in log\.ml"):
        load_config(None, ["log.mlflow.uri=x"])
    with pytest.raises(ConfigError, match=r"log\.tensorboard: expected a true or false"):
        load_config(None, ["log.tensorboard=maybe"])


# ---- one tracked run, read back -----------------------------------------------------------------


@dataclass
class Rows:
    """A caller's own callback: keeps what it is given."""

    rows: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    closed: int = 0

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.rows.append((step, dict(metrics)))

    def close(self) -> None:
        self.closed += 1


@dataclass
class Tracked:
    out: Path
    mine: Rows


def _offline(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """W&B offline, its own files under ``home``; MLflow's default store (no server)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(home / name.lower()))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(home / "no.netrc"))  # no W&B login of the user's
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _pairs(images: Path) -> Path:
    rng = np.random.default_rng(1)
    lines = []
    for k in range(20):
        a, b = rng.choice(CLASSES, 2, replace=False)
        i, j = rng.choice(PER_CLASS, 2, replace=False)
        lines.append(
            f"1,id{a}/{i}.png,id{a}/{j}.png" if k % 2 else f"0,id{a}/{i}.png,id{b}/{j}.png"
        )
    path = images / "lfw_pairs.csv"  # its name holds a "_": val/lfw_pairs/accuracy
    path.write_text("\n".join(lines) + "\n")
    return path


TRACKING = ("log.wandb=true", "log.mlflow=true", "train.threads=1")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def tracked(images: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tracked]:
    home = tmp_path_factory.mktemp("home")
    out = home / "run"
    extra = (
        f"train.max_steps={STEPS}",
        f"val.pairs={_pairs(images)}",
        f"val.root={images}",
        "val.every_steps=3",
        "log.wandb.tags=[tiny, cpu]",
        *TRACKING,
    )
    mine = Rows()
    with pytest.MonkeyPatch.context() as monkeypatch:
        _offline(monkeypatch, home)
        train(load_config(None, _overrides(images, out, *extra)), callbacks=[mine])
        yield Tracked(out, mine)


def _csv(out: Path) -> dict[int, dict[str, str]]:
    with (out / "metrics.csv").open(newline="") as f:
        return {int(r["step"]): r for r in csv.DictReader(f)}


def test_a_callers_callback_gets_the_rows_of_metrics_csv(tracked: Tracked) -> None:
    table = _csv(tracked.out)
    assert [step for step, _ in tracked.mine.rows] == sorted(table) == list(range(1, STEPS + 1))
    for step, metrics in tracked.mine.rows:
        written = {k: v for k, v in table[step].items() if v != "" and k != "step"}
        assert set(metrics) == set(written), step
        assert all(f"{float(v):.6g}" == written[k] for k, v in metrics.items() if k != "epoch")
    assert "val_lfw_pairs_accuracy" in dict(tracked.mine.rows)[3]
    assert tracked.mine.closed == 1


def test_tensorboard_records_grouped_tags_and_the_config_once(tracked: Tracked) -> None:
    events = EventAccumulator(str(tracked.out / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in ("train/loss", "train/lr", "train/img_per_s", "train/epoch"):
        assert tag in scalars
    for metric in VAL_METRICS:
        assert f"val/lfw_pairs/{metric}" in scalars
    assert not {"loss", "lr", "val_lfw_pairs_accuracy"} & scalars  # no flat tags left
    table = _csv(tracked.out)
    loss = {e.step: e.value for e in events.Scalars("train/loss")}
    assert loss == pytest.approx({s: float(r["loss"]) for s, r in table.items()}, rel=1e-5)
    accuracy = [(e.step, e.value) for e in events.Scalars("val/lfw_pairs/accuracy")]
    assert [s for s, _ in accuracy] == [3, 6]
    assert accuracy[1][1] == pytest.approx(float(table[6]["val_lfw_pairs_accuracy"]), rel=1e-5)
    hparams = events.PluginTagToContent("hparams")
    assert set(hparams) >= {"_hparams_/experiment", "_hparams_/session_start_info"}
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = plugin_data_pb2.HParamsPluginData.FromString(
        hparams["_hparams_/session_start_info"]
    ).session_start_info
    assert start.hparams["optim.lr"].number_value == pytest.approx(0.8)
    assert start.hparams["model.backbone"].string_value == "mobilefacenet"
    assert start.hparams["log.wandb.tags"].string_value == "['tiny', 'cpu']"
    (text,) = events.Tensors("config/text_summary")  # the YAML, in the Text tab
    assert "backbone: mobilefacenet" in text.tensor_proto.string_val[0].decode()


# -- W&B's offline file: LevelDB-style log blocks of wandb_internal_pb2.Record messages ----------

_BLOCK, _HEADER = 32768, 7  # bytes per block; bytes of a record's header (crc, length, type)


def _wandb_records(path: Path) -> Iterator[object]:
    """Every record of a W&B run file (``run-<id>.wandb``), in order."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, parts = _HEADER, b""  # the file's own header: ":W&B", magic, version
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        parts = chunk if kind in (1, 2) else parts + chunk  # full, first | middle, last
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            yield record


@dataclass
class WandbRun:
    run_id: str
    project: str
    tags: list[str]
    config: dict[str, object]
    history: list[dict[str, object]]  # one row per run.log, with its "_step"


def _wandb_runs(out: Path) -> list[WandbRun]:
    """What W&B recorded offline for the run in ``out``, one entry per attempt (resumed runs
    write a file of their own), oldest first."""
    runs = []
    for path in sorted((out / "wandb").glob("offline-run-*/run-*.wandb")):
        run, history = None, []
        for record in _wandb_records(path):
            kind = record.WhichOneof("record_type")  # type: ignore[attr-defined]
            if kind == "run":
                run = record.run  # type: ignore[attr-defined]
            elif kind == "history":
                items = record.history.item  # type: ignore[attr-defined]
                history.append(
                    {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in items}
                )
        assert run is not None, path
        config = {u.key: json.loads(u.value_json) for u in run.config.update}
        runs.append(WandbRun(run.run_id, run.project, list(run.tags), config, history))
    return runs


def test_wandb_offline_run_records_the_losses_of_metrics_csv(tracked: Tracked) -> None:
    (run,) = _wandb_runs(tracked.out)
    kept = json.loads((tracked.out / "tracking.json").read_text())["wandb"]
    assert run.run_id == kept and run.project == "fmlkit" and run.tags == ["tiny", "cpu"]
    assert run.config["optim.lr"] == 0.8 and run.config["model.backbone"] == "mobilefacenet"
    table = _csv(tracked.out)
    loss = {row["_step"]: row["train/loss"] for row in run.history}
    assert {s: f"{v:.6g}" for s, v in loss.items()} == {s: r["loss"] for s, r in table.items()}
    validated = {
        row["_step"]: row["val/lfw_pairs/auc"] for row in run.history if "val/lfw_pairs/auc" in row
    }
    assert {s: f"{v:.6g}" for s, v in validated.items()} == {
        s: r["val_lfw_pairs_auc"] for s, r in table.items() if r["val_lfw_pairs_auc"]
    }


def _mlflow(out: Path) -> tuple[object, str]:
    from mlflow.tracking import MlflowClient

    return MlflowClient((out / "mlruns").resolve().as_uri()), json.loads(
        (out / "tracking.json").read_text()
    )["mlflow"]


def test_mlflow_file_store_records_the_losses_of_metrics_csv(
    tracked: Tracked, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client, run_id = _mlflow(tracked.out)
    run = client.get_run(run_id)  # type: ignore[attr-defined]
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert client.get_experiment(run.info.experiment_id).name == "fmlkit"  # type: ignore[attr-defined]
    params = run.data.params
    assert params["optim.lr"] == "0.8" and params["model.init"] == "null"
    assert params["log.mlflow.enabled"] == "true" and params["data.image_size"] == "32"
    table = _csv(tracked.out)
    history = client.get_metric_history(run_id, "train/loss")  # type: ignore[attr-defined]
    assert {m.step: f"{m.value:.6g}" for m in history} == {s: r["loss"] for s, r in table.items()}
    assert len(history) == STEPS
    auc = client.get_metric_history(run_id, "val/lfw_pairs/auc")  # type: ignore[attr-defined]
    assert {m.step: f"{m.value:.6g}" for m in auc} == {
        s: r["val_lfw_pairs_auc"] for s, r in table.items() if r["val_lfw_pairs_auc"]
    }


# ---- resume ---------------------------------------------------------------------------------


def test_a_resumed_run_continues_its_wandb_and_mlflow_runs(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _offline(monkeypatch, tmp_path)
    out = tmp_path / "run"
    config = load_config(None, _overrides(images, out, "train.max_steps=5", *TRACKING,
                                          "checkpoint.every_steps=2"))  # fmt: skip
    train(config)
    first = _csv(out)
    # as if killed after logging step 5, before its checkpoint: the resume starts at step 4
    for name in ("last.pt", "step_00000005.pt"):
        (out / "checkpoints" / name).unlink()
    ids = json.loads((out / "tracking.json").read_text())
    longer = load_config(None, _overrides(images, out, "train.max_steps=6", *TRACKING,
                                          "checkpoint.every_steps=2"))  # fmt: skip
    train(longer, resume=True)  # one step more than the first attempt
    assert json.loads((out / "tracking.json").read_text()) == ids
    table = _csv(out)
    assert sorted(table) == [1, 2, 3, 4, 5, 6] and table[4] == first[4]

    client, run_id = _mlflow(out)
    assert run_id == ids["mlflow"]
    history = client.get_metric_history(run_id, "train/loss")  # type: ignore[attr-defined]
    steps = [m.step for m in history]
    assert sorted(steps) == [1, 2, 3, 4, 5, 5, 6]  # step 5 twice: MLflow cannot drop one
    newest = max((m for m in history if m.step == 5), key=lambda m: m.timestamp)
    assert f"{newest.value:.6g}" == table[5]["loss"]
    run = client.get_run(run_id)  # type: ignore[attr-defined]
    assert run.info.status == "FINISHED"
    assert run.data.params["train.max_steps"] == "5"  # params cannot change: kept, and named
    assert "changed since: train.max_steps 5 → 6" in caplog.text

    runs = _wandb_runs(out)
    assert [r.run_id for r in runs] == [ids["wandb"]] * 2  # the same W&B run, resumed
    assert [row["_step"] for row in runs[0].history] == [1, 2, 3, 4, 5]
    assert [row["_step"] for row in runs[1].history] == [5, 6]
    resumed = {row["_step"]: f"{row['train/loss']:.6g}" for row in runs[1].history}
    assert resumed == {5: table[5]["loss"], 6: table[6]["loss"]}


class Stop(Exception):
    pass


@dataclass
class Failing(Rows):
    """A caller's callback that fails at step 2."""

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        super().on_log(step, metrics)
        if step == 2:
            raise Stop("my callback failed")


def test_a_failing_callback_stops_the_run_and_every_callback_is_closed(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _offline(monkeypatch, tmp_path)
    out = tmp_path / "run"
    mine = Failing()
    config = load_config(None, _overrides(images, out, "log.mlflow=true", "train.threads=1"))
    with pytest.raises(Stop, match="my callback failed"):
        train(config, callbacks=[mine])
    assert [step for step, _ in mine.rows] == [1, 2] and mine.closed == 1
    client, run_id = _mlflow(out)
    assert client.get_run(run_id).info.status == "FAILED"  # type: ignore[attr-defined]


NOT_IMPORTED = """
import sys
from pathlib import Path
from fmlkit.train.callbacks import close_callbacks, create_callbacks, require_trackers
from fmlkit.train.config import load_config
config = load_config(None)
require_trackers(config.log)
made = create_callbacks(config, Path(sys.argv[1]), resume_step=None, total_steps=1, step=0)
made[0].on_log(1, {"epoch": 0, "loss": 1.0, "lr": 0.1, "img_per_s": 1.0})
close_callbacks(made, failed=False)
print(sorted(m for m in ("wandb", "mlflow") if m in sys.modules))
"""


def test_wandb_and_mlflow_are_not_imported_unless_enabled(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", NOT_IMPORTED, str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["metrics.csv", "tensorboard"]


# ---- a tracker that is not installed ------------------------------------------------------------


@pytest.mark.parametrize(("tracker", "package"), [("wandb", "wandb"), ("mlflow", "mlflow")])
def test_a_tracker_enabled_but_not_installed_is_one_error_line_before_any_work(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tracker: str, package: str
) -> None:
    monkeypatch.setitem(sys.modules, tracker, None)  # as if not installed: import fails
    out = tmp_path / "run"
    args = _overrides(images, out, f"log.{tracker}=true")
    result = fmlkit("train", "--config", _config_file(tmp_path), *args)
    line = refused(result, code=1)
    assert f"log.{tracker}.enabled is true but {tracker} cannot be imported" in line
    assert f"pip install {package}" in line and f"log.{tracker}.enabled=false" in line
    nothing_complete(out)  # refused before the output folder was made


def test_a_tracker_that_cannot_start_is_one_error_line_and_leaves_the_folder_empty(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _offline(monkeypatch, tmp_path)  # W&B starts (offline), then MLflow cannot
    out = tmp_path / "run"
    args = _overrides(images, out, *TRACKING, "log.mlflow.tracking_uri=htp://typo")
    line = refused(fmlkit("train", "--config", _config_file(tmp_path), *args), code=1)
    assert "log.mlflow: MLflow could not start a run at htp://typo" in line
    assert "check log.mlflow.tracking_uri" in line
    assert list(out.iterdir()) == []  # no wandb/, tracking.json, config.yaml, metrics.csv
    monkeypatch.delenv("WANDB_MODE")  # online, with no API key: W&B refuses to start
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # never reached
    args = _overrides(images, out, "log.wandb=true", "log.wandb.mode=online", "train.threads=1")
    line = refused(fmlkit("train", "--config", _config_file(tmp_path), *args), code=1)
    assert "log.wandb: W&B could not start run" in line and "wandb login" in line
    assert list(out.iterdir()) == []
