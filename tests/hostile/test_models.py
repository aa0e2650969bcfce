"""Hostile input to ``fmlkit export`` and ``fmlkit embed``: checkpoints that are malicious
pickles, cut, empty, another program's or another model's, configs inside them that are not
valid, images that do not decode, empty inputs and output paths that cannot be files."""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.hostile.check import fmlkit, nothing_complete, refused, succeeded
from tests.train.test_loop import _overrides, write_images

MARKER = "fmlkit-was-fooled"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def checkpoint(images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """last.pt of a 2-step run (mobilefacenet, 32-d, 32 px). Read-only."""
    folder = tmp_path_factory.mktemp("run")
    (folder / "empty.yaml").write_text("{}\n")
    out = folder / "run"
    args = _overrides(images, out, "train.max_steps=2")
    succeeded(fmlkit("train", "--config", folder / "empty.yaml", *args))
    return out / "checkpoints" / "last.pt"


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _state(checkpoint: Path) -> dict[str, object]:
    state = torch.load(checkpoint, weights_only=True)
    assert isinstance(state, dict)
    return state


def _edited(edit: Callable[[dict[str, object]], None]) -> Callable[[Path, Path], bytes]:
    """A bad checkpoint made from the good one by ``edit`` on its state."""

    def make(good: Path, tmp: Path) -> bytes:
        state = _state(good)
        edit(state)
        torch.save(state, tmp / "edited.pt")
        return (tmp / "edited.pt").read_bytes()

    return make


def _config(section: str, key: str, value: object) -> Callable[[dict[str, object]], None]:
    def edit(state: dict[str, object]) -> None:
        config = state["config"]
        assert isinstance(config, dict)
        config[section][key] = value

    return edit


def _torch_file(obj: object) -> Callable[[Path, Path], bytes]:
    def make(good: Path, tmp: Path) -> bytes:
        torch.save(obj, tmp / "other.pt")
        return (tmp / "other.pt").read_bytes()

    return make


# name → (the bad checkpoint's bytes from (good checkpoint, tmp folder), words of the Error:)
CHECKPOINTS: dict[str, tuple[Callable[[Path, Path], bytes], list[str]]] = {
    "malicious pickle": (
        lambda good, tmp: pickle.dumps({"model": _Evil(tmp / MARKER)}, protocol=2),
        ["not a readable fmlkit checkpoint", "posix.system", "nothing in it was run"],
    ),
    "malicious pickle, protocol 4": (
        lambda good, tmp: pickle.dumps({"model": _Evil(tmp / MARKER)}),
        ["not a readable fmlkit checkpoint", "nothing in it was run"],
    ),
    "malicious torch.save": (
        _torch_file({"model": _Evil(Path(MARKER))}),
        ["posix.system", "nothing in it was run"],
    ),
    "truncated": (
        lambda good, tmp: good.read_bytes()[: good.stat().st_size // 2],
        ["not a readable fmlkit checkpoint", "truncated or damaged"],
    ),
    "empty": (lambda good, tmp: b"", ["the file is empty"]),
    "text": (lambda good, tmp: b"not a checkpoint\n", ["not a readable fmlkit checkpoint"]),
    "a tensor, not a dict": (_torch_file(torch.zeros(3)), ["not an fmlkit checkpoint"]),
    "another program's weights": (
        _torch_file({"state_dict": {"fc.weight": torch.zeros(2, 2)}}),
        ["not an fmlkit training checkpoint (no model/config)"],
    ),
    "another model's weights": (
        _edited(_config("model", "backbone", "iresnet18")),
        ["its weights do not fit the model its config names", "iresnet18", "Missing key"],
    ),
    "another embedding size": (
        _edited(_config("model", "embedding_size", 64)),
        ["do not fit", "mobilefacenet (64-d)", "size mismatch"],
    ),
    "weights that are not a state dict": (
        _edited(lambda state: state.update(model=[1, 2, 3])),
        ["its weights do not fit"],
    ),
    "a config with a wrong type": (
        _edited(_config("model", "embedding_size", "big")),
        ["model.embedding_size: expected an integer, found the string 'big'"],
    ),
    "a config asking for 80 GB": (
        _edited(_config("data", "image_size", 100000)),
        ["data.image_size", "≤ 1024"],
    ),
    "a config that is not a mapping": (
        _edited(lambda state: state.update(config=[1, 2])),
        ["expected a mapping of keys"],
    ),
}


def _commands(bad: Path, images: Path, tmp: Path) -> dict[str, list[str | Path]]:
    return {
        "export": ["export", "--checkpoint", bad, "--onnx", tmp / "model.onnx"],
        "embed": [
            "embed",
            "--checkpoint",
            bad,
            "--input",
            images / "info.csv",
            "--root",
            images,
            "-o",
            tmp / "emb.parquet",
        ],
    }


@pytest.mark.parametrize("command", ["export", "embed"])
@pytest.mark.parametrize("kind", list(CHECKPOINTS), ids=list(CHECKPOINTS))
def test_a_bad_checkpoint_is_one_error_line_and_runs_nothing(
    images: Path, checkpoint: Path, tmp_path: Path, kind: str, command: str
) -> None:
    make, says = CHECKPOINTS[kind]
    bad = tmp_path / "bad.pt"
    bad.write_bytes(make(checkpoint, tmp_path))
    result = fmlkit(*_commands(bad, images, tmp_path)[command], cwd=tmp_path)
    refused(result, says=[str(bad), *says])
    nothing_complete(tmp_path / MARKER, tmp_path / "model.onnx", tmp_path / "emb.parquet")


@pytest.mark.parametrize("command", ["export", "embed"])
def test_an_output_that_cannot_be_a_file_is_a_usage_error(
    images: Path, checkpoint: Path, tmp_path: Path, command: str
) -> None:
    for out in ("/", str(tmp_path)):
        args = [str(a) for a in _commands(checkpoint, images, tmp_path)[command]]
        args[-1] = out
        refused(fmlkit(*args), says=["is a directory"], code=2)


def test_embed_records_the_images_that_do_not_decode(
    images: Path, checkpoint: Path, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "emb.parquet"
    result = fmlkit("embed", "--checkpoint", checkpoint, "--input", images / "info_broken.csv",
                    "--root", images, "-o", out)  # fmt: skip
    succeeded(result)
    assert "wrote 32 embeddings of 32" in result.stdout
    assert "1 images could not be decoded" in result.stdout
    assert "id0/broken.png" not in pq.read_table(out).column("file_name").to_pylist()


def test_embed_of_images_none_of_which_decode_writes_nothing(
    checkpoint: Path, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    for i in range(3):
        (tmp_path / "a" / f"{i}.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    info = tmp_path / "info.csv"
    info.write_text("file_name,label\n" + "".join(f"a/{i}.jpg,a\n" for i in range(3)))
    out = tmp_path / "emb.parquet"
    result = fmlkit("embed", "--checkpoint", checkpoint, "--input", info, "--root", tmp_path,
                    "-o", out)  # fmt: skip
    refused(result, says=["no image of", "could be decoded"])
    nothing_complete(out)


@pytest.mark.parametrize("kind", ["an empty folder", "a zero-row table"])
def test_embed_of_nothing_is_refused(checkpoint: Path, tmp_path: Path, kind: str) -> None:
    if kind == "an empty folder":
        (tmp_path / "empty").mkdir()
        args: list[str | Path] = ["--input", tmp_path / "empty"]
        says = ["empty", "no _manifest.parquet"]
    else:
        (tmp_path / "info.csv").write_text("file_name,label\n")
        args = ["--input", tmp_path / "info.csv", "--root", tmp_path]
        says = ["info.csv"]
    out = tmp_path / "emb.parquet"
    refused(fmlkit("embed", "--checkpoint", checkpoint, *args, "-o", out), says=says)
    nothing_complete(out)


def test_embed_of_a_table_naming_files_outside_root_opens_none(
    checkpoint: Path, tmp_path: Path
) -> None:
    (tmp_path / "root").mkdir()
    info = tmp_path / "info.csv"
    info.write_text("file_name,label\n../../../etc/passwd,a\n/etc/hostname,b\n")
    out = tmp_path / "emb.parquet"
    result = fmlkit("embed", "--checkpoint", checkpoint, "--input", info, "--root",
                    tmp_path / "root", "-o", out)  # fmt: skip
    refused(result, says=["2 file names lead outside the image root", "../../../etc/passwd"])
    nothing_complete(out)


def test_embed_does_not_follow_a_symlink_out_of_root(
    images: Path, checkpoint: Path, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    root = tmp_path / "root"
    shutil.copytree(images / "id0", root / "id0")
    outside = tmp_path / "outside.png"
    shutil.copy(images / "id1" / "0.png", outside)  # a real image: it would embed if followed
    (root / "id0" / "link.png").symlink_to(outside)
    info = tmp_path / "info.csv"
    info.write_text("file_name,label\nid0/0.png,a\nid0/link.png,a\n")
    out = tmp_path / "emb.parquet"
    result = fmlkit("embed", "--checkpoint", checkpoint, "--input", info, "--root", root,
                    "-o", out)  # fmt: skip
    succeeded(result)
    assert "1 images could not be decoded" in result.stdout
    assert pq.read_table(out).column("file_name").to_pylist() == ["id0/0.png"]


# Bare weights files (``--weights FILE --backbone mobilefacenet``, arcface_torch's format):
# name → (the bad file's bytes from (a good checkpoint, tmp folder), words of the Error:)
WEIGHTS: dict[str, tuple[Callable[[Path, Path], bytes], list[str]]] = {
    "code pickle": (
        lambda good, tmp: pickle.dumps({"conv1.weight": _Evil(tmp / MARKER)}, protocol=2),
        ["not a readable weights file", "posix.system", "nothing in it was run"],
    ),
    "code in torch.save": (
        _torch_file({"conv1.weight": _Evil(Path(MARKER))}),
        ["posix.system", "nothing in it was run"],
    ),
    "a tensor": (_torch_file(torch.zeros(3)), ["is not a state dict", "a Tensor"]),
    "a dict of other things": (
        _torch_file({"state_dict": {"a": torch.zeros(1)}, "epoch": 3}),
        ["is not a state dict", "keys state_dict, epoch"],
    ),
    "empty": (lambda good, tmp: b"", ["it is empty"]),
    "truncated": (
        lambda good, tmp: good.read_bytes()[: good.stat().st_size // 2],
        ["not a readable weights file", "truncated or damaged"],
    ),
    "another architecture": (
        _torch_file({"conv1.weight": torch.zeros(64, 3, 3, 3), "fc.weight": torch.zeros(2, 2)}),
        [
            "does not fit backbone mobilefacenet",
            "keys missing (expected layers.0.layers.0",
            "keys unexpected (found conv1.weight, fc.weight)",
        ],
    ),
    "another size": (
        _edited(lambda state: None),  # the 32 px checkpoint, read as 112 px weights
        [
            "shapes differ",
            "features.layers.0.layers.0.weight 512×1×7×7 expected, 512×1×2×2 found",
            "sized for 32 px images",
        ],
    ),
}


@pytest.mark.parametrize("command", ["embed", "evaluate"])
@pytest.mark.parametrize("kind", list(WEIGHTS), ids=list(WEIGHTS))
def test_a_bad_weights_file_is_one_error_line_and_runs_nothing(
    images: Path, checkpoint: Path, tmp_path: Path, kind: str, command: str
) -> None:
    make, says = WEIGHTS[kind]
    bad = tmp_path / "backbone.pth"
    bad.write_bytes(make(checkpoint, tmp_path))
    model = ["--weights", bad, "--backbone", "mobilefacenet"]
    if command == "embed":
        out = tmp_path / "emb.parquet"
        args = [*model, "--input", images / "info.csv", "--root", images, "-o", out]
    else:
        out = tmp_path / "eval"
        (tmp_path / "pairs.csv").write_text("1,id0/0.png,id0/1.png\n")
        args = [*model, "--pairs", tmp_path / "pairs.csv", "--root", images, "-o", out]
    result = fmlkit(command, *args, cwd=tmp_path)
    refused(result, says=[str(bad), *says])
    nothing_complete(tmp_path / MARKER, out / "metrics.json" if command == "evaluate" else out)
