"""arcface_torch's weights in and out: a state dict with exactly its parameter names (from
tests/models/arcface_torch_ref.py, a separate build of its nets) loads into fmlkit's backbones
strictly and embeds the same; `fmlkit export --arcface-torch` writes what that net loads
strictly and embeds the same with."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from fmlkit.errors import InputError
from fmlkit.train.config import TrainConfig, config_from_dict, config_to_dict
from fmlkit.train.weights import load_backbone_weights, read_weights
from tests.hostile.check import fmlkit, nothing_complete, refused, succeeded
from tests.models.arcface_torch_ref import reference

SIZE = 112


def _batch(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _same_embeddings(a: nn.Module, b: nn.Module) -> None:
    x = _batch()
    with torch.no_grad():
        cosine = nn.functional.cosine_similarity(a.eval()(x), b.eval()(x))
    assert cosine.min() > 0.9999, cosine


@pytest.mark.parametrize("name", ["iresnet18", "mobilefacenet"])  # r50: same code, 5 s
def test_arcface_torch_weights_load_strictly_and_embed_the_same(name: str, tmp_path: Path) -> None:
    ref = reference(name)
    path = tmp_path / "backbone.pth"
    torch.save(ref.state_dict(), path)
    model = load_backbone_weights(path, name)
    assert not model.training
    assert list(model.state_dict()) == list(ref.state_dict())  # same keys, same order
    _same_embeddings(ref, model)


def test_weights_saved_inside_ddp_load(tmp_path: Path) -> None:
    ref = reference("mobilefacenet", num_features=128)
    path = tmp_path / "backbone.pth"
    torch.save({f"module.{k}": v for k, v in ref.state_dict().items()}, path)
    model = load_backbone_weights(path, "mobilefacenet")  # 128-d read from the file
    _same_embeddings(ref, model)


def test_another_architecture_names_the_keys_and_what_it_is(tmp_path: Path) -> None:
    path = tmp_path / "backbone.pth"
    torch.save(reference("mobilefacenet").state_dict(), path)
    with pytest.raises(InputError) as error:
        load_backbone_weights(path, "iresnet18")
    text = str(error.value)
    for words in (str(path), "does not fit backbone iresnet18", "keys missing (expected conv1",
                  "keys unexpected (found layers.0.layers.0.weight",
                  "keys are those of backbone mobilefacenet"):  # fmt: skip
        assert words in text, text


def test_another_image_size_names_every_mismatched_shape(tmp_path: Path) -> None:
    path = tmp_path / "backbone.pth"
    torch.save(reference("iresnet18").state_dict(), path)
    with pytest.raises(InputError) as error:
        load_backbone_weights(path, "iresnet18", image_size=128)
    text = str(error.value)
    assert "1 shapes differ: fc.weight 512×32768 expected, 512×25088 found" in text, text
    assert "sized for 112 px images" in text, text


def _checkpoint(tmp_path: Path, backbone: str, image_size: int = SIZE, **data: object) -> Path:
    """A checkpoint as training writes it (model + config), with random weights."""
    from fmlkit.models.backbones import create_backbone

    config = config_from_dict(
        {
            "model": {"backbone": backbone, "embedding_size": 64},
            "data": {"image_size": image_size, **data},
        }
    )
    model = create_backbone(backbone, embedding_size=64, image_size=image_size)
    with torch.no_grad():  # batch-norm statistics that are not the defaults
        for key, tensor in model.state_dict().items():
            if "running" in key:
                tensor.uniform_(0.5, 1.5)
    path = tmp_path / "last.pt"
    torch.save({"model": model.state_dict(), "config": config_to_dict(config), "step": 1}, path)
    return path


@pytest.mark.parametrize("backbone", ["mobilefacenet", "iresnet18"])
def test_export_writes_what_arcface_torch_loads_strictly(backbone: str, tmp_path: Path) -> None:
    from fmlkit.train.export import load_backbone

    checkpoint = _checkpoint(tmp_path, backbone)
    out = tmp_path / "backbone.pth"
    result = fmlkit("export", "--checkpoint", checkpoint, "--arcface-torch", out)
    succeeded(result)
    name = {"mobilefacenet": "mbf", "iresnet18": "r18"}[backbone]
    assert f"get_model('{name}', num_features=64)" in result.stdout
    ref = reference(backbone, num_features=64)
    ref.load_state_dict(torch.load(out, weights_only=True), strict=True)
    trained, _ = load_backbone(checkpoint)
    _same_embeddings(trained, ref)


def test_export_notes_a_normalisation_arcface_torch_does_not_use(tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path, "mobilefacenet", normalisation={"mean": [0.4, 0.4, 0.4]})
    result = fmlkit("export", "--checkpoint", checkpoint, "--arcface-torch", tmp_path / "b.pth")
    succeeded(result)
    assert "trained with mean [0.4, 0.4, 0.4]" in result.stdout


@pytest.mark.parametrize(
    ("backbone", "size", "says"),
    [("mobilefacenet", 32, "trained at 32 px"), ("timm:resnet18", SIZE, "no arcface_torch")],
)
def test_export_refuses_what_arcface_torch_cannot_load(
    tmp_path: Path, backbone: str, size: int, says: str
) -> None:
    checkpoint = _checkpoint(tmp_path, backbone, size)
    out = tmp_path / "backbone.pth"
    result = fmlkit("export", "--checkpoint", checkpoint, "--arcface-torch", out)
    refused(result, says=[str(checkpoint), says, "--onnx"])
    nothing_complete(out)


def test_export_without_an_output_is_a_usage_error(tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path, "mobilefacenet", 32)
    refused(fmlkit("export", "--checkpoint", checkpoint), says=["--onnx", "--arcface-torch"],
            code=2)  # fmt: skip


def test_a_checkpoint_is_read_as_its_backbone(tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path, "mobilefacenet", 32)
    state = read_weights(checkpoint)
    assert "conv_sep.layers.0.weight" in state and "config" not in state


def test_a_config_takes_init_and_init_strict() -> None:
    config = config_from_dict({"model": {"init": "b.pth", "init_strict": False}})
    assert isinstance(config, TrainConfig)
    assert (config.model.init, config.model.init_strict) == ("b.pth", False)
    assert config_from_dict({}).model.init_strict is True
