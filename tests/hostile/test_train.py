"""Hostile input to ``fmlkit train``: configs and overrides (YAML bombs, python tags, numbers
that are not finite or absurd), output folders that are not a run's, checkpoints to resume
from that are another model's, malicious or cut, and data that cannot be trained on.

Each case fails during config validation or setup, before any step, unless it says otherwise;
the few runs that start use the tiny dataset of tests/train/test_loop.py (2 steps, ~2 s).
"""

from __future__ import annotations

import os
import pickle
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.hostile.check import fmlkit, nothing_complete, refused, succeeded
from tests.train.test_loop import _all_broken, _overrides, write_images

MARKER = "fmlkit-was-fooled"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def run(images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-step run (mobilefacenet, 32-d, 32 px, cosface, sgd). Read-only: copy it."""
    out = tmp_path_factory.mktemp("run") / "run"
    succeeded(
        fmlkit(
            "train", "--config", _empty(out.parent), *_overrides(images, out, "train.max_steps=2")
        )
    )
    return out


def _empty(folder: Path) -> Path:
    path = folder / "empty.yaml"
    path.write_text("{}\n")
    return path


def _train(config: Path, images: Path, out: Path, *extra: str) -> object:
    return fmlkit(
        "train", "--config", config, *_overrides(images, out, "train.max_steps=2", *extra)
    )


def _laughs(indent: str) -> str:
    """A billion-laughs YAML sequence: 9^10 strings once expanded, from a few hundred bytes."""
    lines = [f"- &l0 [{', '.join(['lol'] * 9)}]"]
    lines += [f"- &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "".join(f"{indent}{line}\n" for line in lines)


# (config file text, words the Error: line must hold)
CONFIGS = {
    "billion laughs under a valid key": (
        "head:\n  args:\n    x:\n" + _laughs("      ") + "seed: *l9\n",
        ["anchors and aliases", "more than 1,000,000 values"],
    ),
    "billion laughs in a list": ("data:\n  folds:\n" + _laughs("    "), ["anchors and aliases"]),
    "a value holding itself": ("data:\n  folds: &a [1, *a]\n", ["holding itself"]),
    "python/object/apply": (
        f"seed: !!python/object/apply:os.system ['touch {MARKER}']\n",
        ["not valid YAML at line 1", "python/object/apply:os.system", "no !!python tags"],
    ),
    "python/object/new": (
        f"seed: !!python/object/new:subprocess.Popen [['touch', '{MARKER}']]\n",
        ["not valid YAML", "no !!python tags"],
    ),
    "python/name": ("seed: !!python/name:os.system\n", ["not valid YAML", "python/name"]),
    "a list, not a mapping": ("- data\n- model\n", ["expected a mapping of sections"]),
    "a scalar, not a mapping": ("42\n", ["expected a mapping of sections"]),
    "nested too deeply": ("seed: " + "[" * 5000 + "]" * 5000 + "\n", ["nested too deeply"]),
    "an infinite learning rate": ("optim:\n  lr: .inf\n", ["optim.lr", "finite"]),
    "a NaN momentum": ("optim:\n  momentum: .nan\n", ["optim.momentum", "finite"]),
    "a float beyond float64": ("optim:\n  lr: 1e400\n", ["optim.lr", "finite"]),
    "an infinite head argument": ("head:\n  args: {margin: -.inf}\n", ["head.args.margin"]),
    "an integer beyond 64 bits": ("seed: " + "9" * 400 + "\n", ["seed", "64 bits", "400 digits"]),
    "image_size 100000 (80 GB)": ("data:\n  image_size: 100000\n", ["data.image_size", "≤ 1024"]),
    "embedding_size 10^8": ("model:\n  embedding_size: 100000000\n", ["model.embedding_size"]),
    "100000 loader workers": ("train:\n  num_workers: 100000\n", ["train.num_workers", "≤ 256"]),
    "a zero batch": ("train:\n  batch_size: 0\n", ["train.batch_size", "≥ 1"]),
    "a negative batch": ("train:\n  batch_size: -4\n", ["train.batch_size", "found int -4"]),
    "an unknown key": ("train:\n  batchsize: 4\n", ["train.batchsize", "train.batch_size"]),
    "a long list where a number goes": (
        "seed: [" + ", ".join(["1"] * 20_000) + "]\n",
        ["seed: expected an integer", "..."],
    ),
}


@pytest.mark.parametrize("text", list(CONFIGS.values()), ids=list(CONFIGS))
def test_a_hostile_config_file_is_refused_before_anything_runs(
    images: Path, tmp_path: Path, text: tuple[str, list[str]]
) -> None:
    content, says = text
    config = tmp_path / "config.yaml"
    config.write_text(content)
    started = time.monotonic()
    data = (f"data.dataset_info={images / 'info.csv'}", f"data.root={images}")
    result = fmlkit("train", "--config", config, *data, f"output_dir={tmp_path / 'out'}",
                    cwd=tmp_path)  # fmt: skip
    line = refused(result, says=says)
    assert time.monotonic() - started < 60, "refused, but not at once"
    assert len(line) < 600, f"an error line that is not short: {len(line)} characters"
    nothing_complete(tmp_path / "out", tmp_path / MARKER)


OVERRIDES = {
    "optim.lr=.inf": ["optim.lr", "finite"],
    "optim.lr=.nan": ["optim.lr", "finite"],
    "optim.lr=1e400": ["optim.lr", "finite"],
    "head.args={margin: .nan}": ["head.args.margin", "finite"],
    "seed=" + "9" * 30: ["seed", "64 bits"],
    "train.max_steps=-1": ["train.max_steps", "≥ 1"],
    "data.image_size=100000": ["data.image_size", "≤ 1024", "100000"],
    "model.embedding_size=100000000": ["model.embedding_size", "≤ 8192"],
    "train.num_workers=100000": ["train.num_workers"],
    "train.batch_size=0": ["train.batch_size", "≥ 1"],
    "train.batch_size=-4": ["train.batch_size", "≥ 1"],
    "train.batchsize=4": ["unknown key train.batchsize", "did you mean train.batch_size"],
    f"seed=!!python/object/apply:os.system ['touch {MARKER}']": ["not valid YAML", "python"],
    f"data.root=!!python/object/apply:os.system ['touch {MARKER}']": ["not valid YAML"],
    "seed=*alias": ["not valid YAML", "undefined alias"],
    "data.folds=&a [0, *a]": ["holding itself"],
    "data.folds=[0, 1": ["not valid YAML at line 1"],
    "train": ["expected KEY=VALUE"],
    "seed.x=1": ["seed holds int 3, not a section"],
}


@pytest.mark.parametrize("override", list(OVERRIDES), ids=list(OVERRIDES))
def test_a_hostile_override_is_refused_before_anything_runs(
    images: Path, tmp_path: Path, override: str
) -> None:
    result = _train(_empty(tmp_path), images, tmp_path / "out", override)
    refused(result, says=[override.split("=")[0] if "=" in override else "", *OVERRIDES[override]])
    nothing_complete(tmp_path / "out", tmp_path / MARKER, Path.cwd() / MARKER)


def test_a_yaml_bomb_is_refused_in_bounded_memory(images: Path, tmp_path: Path) -> None:
    """9^10 strings if expanded: refused under a 1 GiB address-space limit, in a process."""
    config = tmp_path / "bomb.yaml"
    config.write_text("data:\n  folds:\n" + _laughs("    "))
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
        "from fmlkit.train.config import load_config\n"
        "try:\n    load_config(sys.argv[1])\nexcept Exception as e:\n    print(type(e).__name__, e)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ConfigError") and "anchors and aliases" in done.stdout


@pytest.mark.parametrize("where", ["/", "..", "a file", "a folder of the user's"])
def test_an_output_dir_that_is_no_run_of_its_own_is_refused(
    images: Path, tmp_path: Path, where: str
) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "mine.txt").write_text("keep me\n")
    out = {"/": "/", "..": "..", "a file": str(tmp_path / "mine.txt"),
           "a folder of the user's": str(tmp_path)}[where]  # fmt: skip
    says = "is a file, not a folder" if where == "a file" else "is not empty"
    result = fmlkit("train", "--config", _empty(tmp_path), *_overrides(images, Path(out)),
                    cwd=tmp_path / "work")  # fmt: skip
    refused(result, says=[says, "output_dir"])
    assert (tmp_path / "mine.txt").read_text() == "keep me\n"
    nothing_complete(tmp_path / "checkpoints", tmp_path / "config.yaml", tmp_path / "work" / "x")


RESUMED = {
    "model.embedding_size=64": "model.embedding_size 32, the config says 64",
    "model.backbone=iresnet18": "model.backbone mobilefacenet, the config says iresnet18",
    "data.image_size=48": "data.image_size 32, the config says 48",
    "head.name=arcface": "head.name cosface, the config says arcface",
    "optim.name=adamw": "optim.name sgd, the config says adamw",
}


@pytest.mark.parametrize("change", list(RESUMED), ids=list(RESUMED))
def test_resume_with_another_model_names_what_differs(
    images: Path, run: Path, tmp_path: Path, change: str
) -> None:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    before = sorted(p.name for p in out.rglob("*"))
    result = _train(_empty(tmp_path), images, out, change, "train.max_steps=4", "--resume")
    refused(result, says=["cannot resume from", "it was trained with", RESUMED[change]])
    assert sorted(p.name for p in out.rglob("*")) == before


def test_resume_on_data_with_other_classes_is_one_error_line(
    images: Path, run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    rows = (images / "info.csv").read_text().splitlines()
    fewer = tmp_path / "three_classes.csv"  # 3 identities: the head's rows no longer fit
    fewer.write_text("\n".join(r for r in rows if not r.endswith("id3")) + "\n")
    result = _train(_empty(tmp_path), images, out, f"data.dataset_info={fewer}",
                    "train.max_steps=4", "--resume")  # fmt: skip
    refused(result, says=["cannot resume from", "does not fit this run", "size mismatch"])
    nothing_complete(out / "checkpoints" / "step_00000004.pt")


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["malicious pickle", "truncated", "empty"])
def test_resume_from_a_checkpoint_that_cannot_be_read_runs_nothing(
    images: Path, run: Path, tmp_path: Path, kind: str
) -> None:
    out, marker = tmp_path / "run", tmp_path / MARKER
    shutil.copytree(run, out)
    for path in (out / "checkpoints").iterdir():  # last.pt and its step file: one bad file
        path.unlink()
    good = (run / "checkpoints" / "last.pt").read_bytes()
    bad = {
        "malicious pickle": pickle.dumps({"step": 2, "model": _Evil(marker)}),
        "truncated": good[: len(good) // 2],
        "empty": b"",
    }[kind]
    (out / "checkpoints" / "last.pt").write_bytes(bad)
    says = {"malicious pickle": "nothing in it was run", "truncated": "truncated or damaged",
            "empty": "the file is empty"}[kind]  # fmt: skip
    result = _train(_empty(tmp_path), images, out, "--resume")
    refused(result, says=["nothing to resume: no usable checkpoint", "last.pt", says])
    nothing_complete(marker, out / "checkpoints" / "step_00000002.pt")


def test_a_dataset_of_undecodable_images_fails_via_the_cli(images: Path, tmp_path: Path) -> None:
    info = _all_broken(tmp_path / "broken")
    result = _train(_empty(tmp_path), images, tmp_path / "out", f"data.dataset_info={info}",
                    f"data.root={info.parent}", "train.max_steps=5")  # fmt: skip
    refused(result, says=["not one image could be decoded up to step 2", "16 skipped"])
    nothing_complete(tmp_path / "out" / "checkpoints" / "last.pt")


def test_a_zero_row_dataset_is_refused(images: Path, tmp_path: Path) -> None:
    info = tmp_path / "info.csv"
    info.write_text("file_name,label\n")
    result = _train(_empty(tmp_path), images, tmp_path / "out", f"data.dataset_info={info}")
    refused(result, says=[str(info), "no usable rows"])
    nothing_complete(tmp_path / "out")


def test_absurd_labels_are_text_each_its_own_class(images: Path, tmp_path: Path) -> None:
    """007 and 7 are two identities; a 26-digit or negative label is a name, not a size."""
    from fmlkit.train.checkpoint import load_checkpoint

    names = {"id0": "007", "id1": "7", "id2": "9" * 26, "id3": "-3"}
    rows = (images / "info.csv").read_text().splitlines()
    info = tmp_path / "info.csv"
    info.write_text("\n".join([rows[0], *(r.rsplit(",", 1)[0] + "," + names[r.rsplit(",", 1)[1]]
                                          for r in rows[1:])]) + "\n")  # fmt: skip
    out = tmp_path / "out"
    succeeded(_train(_empty(tmp_path), images, out, f"data.dataset_info={info}"))
    head = load_checkpoint(out / "checkpoints" / "last.pt")["head"]
    assert [tuple(t.shape) for t in head.values()] == [(4, 32)], "4 classes of 32-d weights"


def test_a_model_too_big_for_memory_is_one_error_line(images: Path, tmp_path: Path) -> None:
    """iresnet18 at 1024 px with 8192-d embeddings wants a 64 GiB layer: under a 6 GiB
    address-space limit the allocation fails, and the run says so in one line."""
    args = _overrides(images, tmp_path / "out", "model.backbone=iresnet18",
                      "data.image_size=1024", "model.embedding_size=8192")  # fmt: skip

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))

    done = subprocess.run(
        [sys.executable, "-m", "fmlkit", "train", "--config", str(_empty(tmp_path)), *args],
        capture_output=True, text=True, timeout=120, check=False, preexec_fn=limit,
    )  # fmt: skip
    refused(done, says=["out of memory", "lower train.batch_size, data.image_size"])
    nothing_complete(tmp_path / "out" / "checkpoints")
