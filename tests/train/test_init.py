"""``model.init``: a run starts from an arcface_torch ``backbone.pth`` or a fmlkit checkpoint's
backbone, every tensor (``model.init_strict``, the default) or those that fit; a mismatch
names every key; a resumed run takes its weights from its checkpoint, not from the file."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from fmlkit.errors import InputError
from fmlkit.models.backbones import create_backbone
from fmlkit.train.build import create_model
from fmlkit.train.config import TrainConfig, config_from_dict
from tests.hostile.check import fmlkit, refused, succeeded
from tests.train.test_loop import _overrides, write_images


def _weights(tmp_path: Path, embedding_size: int = 32) -> Path:
    """A bare state dict of a 32 px mobilefacenet, as arcface_torch saves one."""
    torch.manual_seed(5)
    model = create_backbone("mobilefacenet", embedding_size=embedding_size, image_size=32)
    path = tmp_path / f"backbone{embedding_size}.pth"
    torch.save(model.state_dict(), path)
    return path


def _config(init: Path, **model: object) -> TrainConfig:
    return config_from_dict(
        {
            "model": {
                "backbone": "mobilefacenet",
                "embedding_size": 32,
                "init": str(init),
                **model,
            },
            "data": {"image_size": 32},
        }
    )


def test_the_model_starts_from_every_tensor_of_the_file(tmp_path: Path) -> None:
    path = _weights(tmp_path)
    model = create_model(_config(path), init_weights=True)
    saved = torch.load(path, weights_only=True)
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    fresh = create_model(_config(path), init_weights=False)
    assert not torch.equal(fresh.state_dict()["conv_sep.layers.0.weight"],
                           saved["conv_sep.layers.0.weight"])  # fmt: skip


def test_a_mismatch_names_every_key_that_does_not_fit(tmp_path: Path) -> None:
    path = _weights(tmp_path, embedding_size=64)
    with pytest.raises(InputError) as error:
        create_model(_config(path), init_weights=True)
    text = str(error.value)
    for key in ("features.layers.2.weight 32×512 expected, 64×512 found",
                "features.layers.3.weight 32 expected, 64 found",
                "features.layers.3.running_var", "model.init_strict=false", str(path)):  # fmt: skip
        assert key in text, text


def test_not_strict_loads_what_fits_and_logs_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _weights(tmp_path, embedding_size=64)
    with caplog.at_level(logging.WARNING):
        config = _config(path, init_strict=False)
        model = create_model(config, init_weights=True)
    saved = torch.load(path, weights_only=True)
    state = model.state_dict()
    assert torch.equal(state["conv_sep.layers.0.weight"], saved["conv_sep.layers.0.weight"])
    assert state["features.layers.2.weight"].shape == (32, 512)  # fresh, 32-d
    assert "left as initialised" in caplog.text and "features.layers.2.weight" in caplog.text


def test_not_strict_still_refuses_a_file_of_which_nothing_fits(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(InputError, match="none of its tensors fit"):
        create_model(_config(path, init_strict=False), init_weights=True)


def test_training_starts_from_init_and_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    images = write_images(tmp_path / "images")
    path = _weights(tmp_path)
    (tmp_path / "empty.yaml").write_text("{}\n")
    out = tmp_path / "run"
    args = _overrides(images, out, f"model.init={path}")
    succeeded(fmlkit("train", "--config", tmp_path / "empty.yaml", *args, "train.max_steps=2"))
    path.unlink()  # a resumed run does not read it again
    succeeded(fmlkit("train", "--config", tmp_path / "empty.yaml", *args, "train.max_steps=3",
                     "--resume"))  # fmt: skip


def test_training_from_a_file_that_does_not_fit_is_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    images = write_images(tmp_path / "images")
    path = _weights(tmp_path, embedding_size=64)
    (tmp_path / "empty.yaml").write_text("{}\n")
    args = _overrides(images, tmp_path / "run", f"model.init={path}")
    result = fmlkit("train", "--config", tmp_path / "empty.yaml", *args)
    refused(result, says=[str(path), "features.layers.2.weight", "init_strict"])
    assert not (tmp_path / "run" / "checkpoints").exists()
