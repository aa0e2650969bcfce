"""The training loop on a CPU: the loss falls, bad images and non-finite losses are handled, a
folder holding a run is not overwritten, and torchrun runs it on 2 processes (gloo). A run
killed with SIGKILL and resumed: test_kill_resume.py."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmlkit.errors import InputError
from fmlkit.train.checkpoint import checkpoint_dir
from fmlkit.train.config import load_config
from fmlkit.train.loop import TrainingError, TrainReport, train
from tests.processes import run_fmlkit

CLASSES, PER_CLASS = 4, 8


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_images(tmp_path_factory.mktemp("images"))


def write_images(root: Path) -> Path:
    """4 classes of 8 coloured, noisy 40×40 PNGs in ``root``, a dataset_info listing them
    (info.csv), and one file that is not an image, listed in info_broken.csv without an error
    (as if it broke after the scan). Returns ``root``."""
    rng = np.random.default_rng(0)
    rows = ["file_name,label"]
    for c in range(CLASSES):
        colour = np.array([(c * 70) % 256, (c * 130 + 40) % 256, (c * 200 + 90) % 256])
        (root / f"id{c}").mkdir()
        for i in range(PER_CLASS):
            pixels = np.clip(colour + rng.normal(0, 40, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"id{c}" / f"{i}.png")
            rows.append(f"id{c}/{i}.png,id{c}")
    (root / "id0" / "broken.png").write_bytes(b"not a png at all")
    (root / "info.csv").write_text("\n".join(rows) + "\n")
    (root / "info_broken.csv").write_text("\n".join([*rows, "id0/broken.png,id0"]) + "\n")
    return root


def _overrides(images: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"data.dataset_info={images / 'info.csv'}",
        f"data.root={images}",
        "data.image_size=32",
        "model.backbone=mobilefacenet",
        "model.embedding_size=32",
        "head.name=cosface",
        "head.args={margin: 0.2, scale: 16.0}",
        "optim.lr=0.8",
        "schedule.name=cosine",
        "train.batch_size=8",
        "train.max_steps=40",
        "train.num_workers=0",
        "train.log_every=1",
        "checkpoint.every_steps=20",
        f"output_dir={out}",
        "seed=3",
        *extra,
    ]


def _losses(out: Path) -> dict[int, str]:
    with (out / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    steps = [int(r["step"]) for r in rows]
    assert len(steps) == len(set(steps)), "duplicated rows"
    return {int(r["step"]): r["loss"] for r in rows}


def test_training_loss_falls_and_the_run_is_recorded(images: Path, tmp_path: Path) -> None:
    config = load_config(None, _overrides(images, tmp_path / "run"))
    report = train(config)
    assert report.steps == 40 and report.skipped_images == 0 and report.is_main
    losses = [float(v) for v in _losses(tmp_path / "run").values()]
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert load_config(tmp_path / "run" / "config.yaml") == config
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def test_the_report_summary_is_what_fmlkit_train_prints(tmp_path: Path) -> None:
    report = TrainReport(
        tmp_path, 40, 3, 0.123456, 2, 1, 61.7, tmp_path / "checkpoints" / "last.pt", True
    )
    assert report.summary() == (
        "trained 40 steps in 62 s; last loss 0.1235; 2 images skipped, 1 non-finite steps "
        f"skipped\n      checkpoint {tmp_path / 'checkpoints' / 'last.pt'}, metrics "
        f"{tmp_path / 'metrics.csv'}"
    )


def _config_file(tmp_path: Path) -> str:
    path = tmp_path / "empty.yaml"
    path.write_text("{}\n")
    return str(path)


def test_undecodable_images_are_skipped_and_counted(images: Path, tmp_path: Path) -> None:
    extra = (f"data.dataset_info={images / 'info_broken.csv'}", "train.max_steps=8")
    report = train(load_config(None, _overrides(images, tmp_path / "run", *extra)))
    assert report.steps == 8 and report.skipped_images >= 1


def test_a_loss_that_stays_nan_stops_the_run_with_a_clear_error(
    images: Path, tmp_path: Path
) -> None:
    extra = ("optim.lr=1e30", "train.grad_clip=null", "train.max_nonfinite=3")
    with pytest.raises(TrainingError, match="not finite for 3 steps in a row"):
        train(load_config(None, _overrides(images, tmp_path / "run", *extra)))


def test_train_refuses_to_overwrite_a_run_or_to_resume_nothing(
    images: Path, tmp_path: Path
) -> None:
    config = load_config(None, _overrides(images, tmp_path / "run", "train.max_steps=2"))
    with pytest.raises(InputError, match="nothing to resume"):
        train(config, resume=True)
    train(config)
    with pytest.raises(InputError, match="pass --resume"):
        train(config)


def test_a_new_run_needs_an_absent_or_empty_output_dir(images: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"  # the user's own files, no checkpoints/: not a run
    mine.mkdir()
    files = {"config.yaml": "my: settings\n", "metrics.csv": "a,b\n1,2\n"}
    for name, text in files.items():
        (mine / name).write_text(text)
    with pytest.raises(InputError, match=r"is not empty \(it holds config\.yaml, metrics\.csv\)"):
        train(load_config(None, _overrides(images, mine, "train.max_steps=2")))
    assert {p.name: p.read_text() for p in mine.iterdir()} == files
    with pytest.raises(InputError, match="is not empty"):
        train(load_config(None, _overrides(images, Path("/"), "train.max_steps=2")))
    with pytest.raises(InputError, match="is a file, not a folder"):
        train(load_config(None, _overrides(images, mine / "metrics.csv", "train.max_steps=2")))
    (tmp_path / "empty").mkdir()
    report = train(load_config(None, _overrides(images, tmp_path / "empty", "train.max_steps=2")))
    assert report.steps == 2 and (tmp_path / "empty" / "checkpoints" / "last.pt").is_file()


def test_fmlkit_train_into_a_folder_of_other_files_is_one_error_line(
    images: Path, tmp_path: Path
) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("keep me\n")
    args = _overrides(images, tmp_path / "run", "train.max_steps=2")
    done = run_fmlkit("train", "--config", _config_file(tmp_path), *args)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "is not empty (it holds notes.txt)" in errors[0], done.stderr
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["notes.txt"]


def _all_broken(root: Path) -> Path:
    """2 classes of 8 files that are not images, and their dataset_info; returns it."""
    rows = ["file_name,label"]
    for c in range(2):
        (root / f"id{c}").mkdir(parents=True)
        for i in range(8):
            (root / f"id{c}" / f"{i}.png").write_bytes(b"not a png at all")
            rows.append(f"id{c}/{i}.png,id{c}")
    (root / "info.csv").write_text("\n".join(rows) + "\n")
    return root / "info.csv"


@pytest.mark.parametrize(("steps", "stopped_at"), [(5, 2), (1, 1)])  # at the epoch's end; last
def test_a_run_that_decodes_no_image_at_all_fails(
    images: Path, tmp_path: Path, steps: int, stopped_at: int
) -> None:
    info = _all_broken(tmp_path / "broken")  # 16 images, batches of 8: 2 steps an epoch
    extra = (f"data.dataset_info={info}", f"data.root={info.parent}", f"train.max_steps={steps}")
    config = load_config(None, _overrides(images, tmp_path / "run", *extra))
    expected = rf"not one image could be decoded up to step {stopped_at} \({stopped_at * 8} skipped"
    with pytest.raises(TrainingError, match=expected):
        train(config)


def test_a_run_killed_before_its_first_last_pt_is_not_overwritten(
    images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    config = load_config(None, _overrides(images, out, "train.max_steps=2"))
    step = checkpoint_dir(out) / "step_00000020.pt"  # renamed in place, last.pt not linked yet
    step.parent.mkdir(parents=True)
    step.write_bytes(b"")  # its content does not matter: it is a run
    with pytest.raises(InputError, match=r"holds a run \(checkpoints/step_00000020\.pt\); pass"):
        train(config)
    with pytest.raises(InputError, match="nothing to resume: no usable checkpoint"):
        train(config, resume=True)


def test_torchrun_trains_on_two_processes_and_resumes_on_one(images: Path, tmp_path: Path) -> None:
    out, parquet, cache = tmp_path / "ddp", tmp_path / "parquet", tmp_path / "cache"
    info = images / "info_broken.csv"  # one undecodable file: skipped and counted on any rank
    converted = run_fmlkit("convert", str(info), str(parquet), "--root", str(images))
    assert converted.returncode == 0, converted.stderr
    args = _overrides(images, out, "train.max_steps=10", "checkpoint.every_steps=10")
    args = [a for a in args if not a.startswith(("data.dataset_info=", "data.root="))]
    args.append(f"data.parquet={parquet}")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*command, "-m", "fmlkit", "-v", "train", "--config", _config_file(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "XDG_CACHE_HOME": str(cache)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(_losses(out)) == list(range(1, 11))  # rank 0 alone wrote the table
    # one rank built the Arrow cache while the other waited, not both at once
    assert (done.stdout + done.stderr).count("caching the image bytes") == 1
    assert len(list((cache / "fmlkit" / "arrow").iterdir())) == 1
    # each rank names the images it skipped; the report counts them over both ranks
    logged = re.findall(r"rank (\d): skipped id0/broken\.png", done.stderr)
    assert {"0", "1"} <= set(logged), done.stderr[-3000:]
    assert f"{len(logged)} images skipped" in done.stdout
    assert done.stdout.count("trained 10 steps") == 1  # rank 0 alone reports
    more = [*args, "train.max_steps=14"]
    resumed = run_fmlkit("train", "--config", _config_file(tmp_path), *more, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(_losses(out)) == list(range(1, 15))


def test_export_to_onnx_and_embed_agree_with_the_checkpoint(images: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from fmlkit.eval.embed import embed
    from fmlkit.train.export import export_onnx

    train(load_config(None, _overrides(images, tmp_path / "run", "train.max_steps=6")))
    checkpoint = tmp_path / "run" / "checkpoints" / "last.pt"
    report = export_onnx(checkpoint, tmp_path / "model.onnx")
    assert report.min_cosine > 0.9999 and report.image_size == 32
    info = images / "info_broken.csv"
    from_ckpt = embed(info, tmp_path / "ckpt.parquet", checkpoint=checkpoint, root=images)
    done = run_fmlkit(
        "embed", "--onnx", str(tmp_path / "model.onnx"), "--input", str(info),
        "--root", str(images), "-o", str(tmp_path / "onnx.parquet"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert from_ckpt.images == CLASSES * PER_CLASS and from_ckpt.skipped == ("id0/broken.png",)
    a, b = (pq.read_table(tmp_path / f"{n}.parquet").to_pydict() for n in ("ckpt", "onnx"))
    assert a["file_name"] == b["file_name"] and a["label"][:2] == ["id0", "id0"]
    x, y = np.array(a["embedding"]), np.array(b["embedding"])
    assert x.shape == (CLASSES * PER_CLASS, 32)
    cosine = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
    assert cosine.min() > 0.9999
    unflipped = embed(info, tmp_path / "plain.parquet", checkpoint=checkpoint, root=images,
                      flip_sum=False)  # fmt: skip
    z = np.array(pq.read_table(unflipped.output).to_pydict()["embedding"])
    assert not np.allclose(z, x)


def test_validation_on_a_pair_list_joins_the_metrics_rows(images: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    lines = []
    for k in range(40):
        a, b = rng.choice(CLASSES, 2, replace=False)
        i, j = rng.choice(PER_CLASS, 2, replace=False)
        lines.append(
            f"1,id{a}/{i}.png,id{a}/{j}.png" if k % 2 else f"0,id{a}/{i}.png,id{b}/{j}.png"
        )
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("\n".join(lines) + "\n")
    extra = (f"val.pairs={pairs}", f"val.root={images}", "val.every_steps=10", "train.max_steps=20")
    train(load_config(None, _overrides(images, tmp_path / "run", *extra)))
    with (tmp_path / "run" / "metrics.csv").open(newline="") as f:
        rows = {int(r["step"]): r for r in csv.DictReader(f)}
    assert sorted(rows) == list(range(1, 21))
    assert [s for s, r in rows.items() if r["val_pairs_accuracy"]] == [10, 20]
    # the same numbers as embedding the final checkpoint and scoring the pairs apart
    import pyarrow.parquet as pq

    from fmlkit.eval.embed import embed
    from fmlkit.eval.verification import pair_distances, verify

    checkpoint = tmp_path / "run" / "checkpoints" / "last.pt"
    embed(images / "info.csv", tmp_path / "emb.parquet", checkpoint=checkpoint, root=images)
    table = pq.read_table(tmp_path / "emb.parquet").to_pydict()
    vectors = dict(zip(table["file_name"], np.array(table["embedding"]), strict=True))
    first = np.array([vectors[line.split(",")[1]] for line in lines])
    second = np.array([vectors[line.split(",")[2]] for line in lines])
    same = np.array([line.startswith("1") for line in lines])
    expected = verify(pair_distances(first, second), same)
    assert float(rows[20]["val_pairs_accuracy"]) == pytest.approx(expected.accuracy, abs=1e-6)
    assert float(rows[20]["val_pairs_threshold"]) == pytest.approx(expected.threshold, abs=1e-6)
    bad = tmp_path / "bad.csv"
    bad.write_text("1,../../etc/passwd,id0/0.png\n")
    with pytest.raises(InputError, match="outside"):
        train(load_config(None, _overrides(images, tmp_path / "r2", f"val.pairs={bad}",
                                           f"val.root={images}")))  # fmt: skip
