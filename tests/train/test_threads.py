"""``train.threads`` and the image sizes each backbone takes, through real training runs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import torch

from fmlkit.parallel import default_workers
from fmlkit.train.config import load_config
from fmlkit.train.loop import train
from tests.hostile.check import fmlkit, refused, succeeded
from tests.train.test_loop import write_images


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_images(tmp_path_factory.mktemp("images"))


def _overrides(images: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"data.dataset_info={images / 'info.csv'}",
        f"data.root={images}",
        "data.image_size=32",
        "model.backbone=mobilefacenet",
        "model.embedding_size=16",
        "head.name=cosface",
        "train.batch_size=8",
        "train.max_steps=2",
        "train.num_workers=0",
        "train.log_every=1",
        "log.tensorboard=false",
        f"output_dir={out}",
        *extra,
    ]


class _Threads:
    """Records torch's intra-op threads at every metrics row."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.seen.append(torch.get_num_threads())

    def close(self) -> None:
        pass


def test_train_threads_sets_torch_threads_during_training_and_restores_them(
    images: Path, tmp_path: Path
) -> None:
    torch.set_num_threads(2)
    try:
        probe = _Threads()
        config = load_config(None, _overrides(images, tmp_path / "run", "train.threads=1"))
        train(config, callbacks=[probe])
        assert probe.seen and set(probe.seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(default_workers())


@pytest.mark.parametrize(("value", "says"), [("0", "≥ 1"), ("two", "an integer or null")])
def test_train_threads_refuses_what_is_not_a_count(
    images: Path, tmp_path: Path, value: str, says: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    result = fmlkit(
        "train", "--config", config, *_overrides(images, tmp_path / "r", f"train.threads={value}")
    )
    refused(result, says=["train.threads", says])
    assert not (tmp_path / "r").exists()


def test_a_timm_backbone_trains_and_embeds_at_28_px(images: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    run = tmp_path / "run"
    size = ["data.image_size=28", "model.backbone=timm:resnet18"]
    succeeded(fmlkit("train", "--config", config, *_overrides(images, run, *size)))
    checkpoint = run / "checkpoints" / "last.pt"
    out = tmp_path / "emb.parquet"
    result = fmlkit(
        "embed", "--checkpoint", checkpoint, "--input", images / "info.csv",
        "--root", images, "-o", out,
    )  # fmt: skip
    succeeded(result)
    from fmlkit.data.formats.embeddings import read_embeddings

    assert read_embeddings(out).vectors.shape == (32, 16)


def test_an_in_house_backbone_at_28_px_is_one_error_naming_the_rule(
    images: Path, tmp_path: Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    result = fmlkit("train", "--config", config, *_overrides(images, tmp_path / "r",
                                                             "data.image_size=28"))  # fmt: skip
    line = refused(result, says=["mobilefacenet", "multiple of 16", "got 28", "16 or 32"])
    assert "timm:<model>" in line and "iresnet50" in line
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_a_timm_backbone_that_cannot_run_the_size_is_one_error(
    images: Path, tmp_path: Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    extra = ["data.image_size=28", "model.backbone=timm:levit_128s"]
    result = fmlkit("train", "--config", config, *_overrides(images, tmp_path / "r", *extra))
    refused(result, says=["levit_128s", "cannot run on 28×28 px", "another image_size"])
    assert not (tmp_path / "r" / "checkpoints").exists()


@pytest.mark.parametrize(
    ("backbone", "size", "says"),
    [
        ("timm:xcit_nano_12_p16_224", 20, "cannot be built for image_size 20"),  # asserts
        ("timm:mvitv2_tiny", 100, "cannot run on 100×100 px"),  # an IndexError in its forward
    ],
)
def test_a_timm_backbone_failing_otherwise_at_the_size_is_one_error(
    images: Path, tmp_path: Path, backbone: str, size: int, says: str
) -> None:
    """timm models that fail a size with another exception than RuntimeError (an assert at
    build, an IndexError in the forward pass) are one Error: line too, not a traceback."""
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    extra = [f"data.image_size={size}", f"model.backbone={backbone}"]
    result = fmlkit("train", "--config", config, *_overrides(images, tmp_path / "r", *extra))
    refused(result, says=[backbone.removeprefix("timm:"), says, "another image_size"])
