"""Backbones: shapes, pinned sizes (arcface_torch's nets), size and name errors, channels_last,
torch.compile without graph breaks, and ONNX parity through onnxruntime."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlkit.errors import ConfigError
from fmlkit.models.backbones import TimmBackbone, create_backbone, list_backbones
from fmlkit.models.iresnet import IRESNET_LAYERS

# Parameters at embedding 512, 112 px: the figures arcface_torch's own modules give (r50:
# 43.59M, r100: 65.16M, mbf: 2.06M), and those trained (iresnet's embedding BN scale is frozen).
PARAMETERS = {
    "iresnet18": (24_025_600, 24_025_088),
    "iresnet34": (34_139_328, 34_138_816),
    "iresnet50": (43_590_848, 43_590_336),
    "iresnet100": (65_156_160, 65_155_648),
    "mobilefacenet": (2_059_520, 2_059_520),
}
# state_dict entries (parameters and BN buffers), as in arcface_torch, whose checkpoints load.
STATE_KEYS = {
    "iresnet18": 187,
    "iresnet34": 331,
    "iresnet50": 475,
    "iresnet100": 925,
    "mobilefacenet": 333,
}


def _images(batch: int, size: int = 112, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _calibrated(model: nn.Module, size: int = 112) -> nn.Module:
    """``model`` in eval mode with BN running statistics of one batch, so that eval outputs of
    an untrained net are of order 1 (IResNet's init makes them explode otherwise)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # cumulative average: one batch sets the statistics
    with torch.no_grad():
        model.train()(_images(4, size, seed=1))
    return model.eval()


def _iresnet_parameters(layers: tuple[int, ...], embedding: int, size: int) -> int:
    """IResNet's parameter count from its description: stem conv+BN+PReLU, blocks
    BN-conv-BN-PReLU-conv-BN (+ conv1×1+BN shortcut on each stage's strided first block),
    BN2d, fc, BN1d."""
    count = 3 * 64 * 9 + 2 * 64 + 64
    in_channels = 64
    for channels, blocks in zip((64, 128, 256, 512), layers, strict=True):
        for index in range(blocks):
            c_in = in_channels if index == 0 else channels
            count += 2 * c_in + 9 * c_in * channels + 3 * channels + 9 * channels**2 + 2 * channels
            count += c_in * channels + 2 * channels if index == 0 else 0
        in_channels = channels
    return count + 2 * 512 + (512 * (size // 16) ** 2 + 1) * embedding + 2 * embedding


def _bn(state: dict[str, Tensor], prefix: str, x: Tensor) -> Tensor:
    mean, var = state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"]
    weight, bias = state[f"{prefix}.weight"], state[f"{prefix}.bias"]
    return F.batch_norm(x, mean, var, weight, bias, training=False, eps=1e-5)


def _iresnet_oracle(state: dict[str, Tensor], x: Tensor, layers: tuple[int, ...]) -> Tensor:
    """arcface_torch's IResNet forward in eval mode, op by op from its description."""

    def conv(prefix: str, x: Tensor, stride: int = 1, padding: int = 1) -> Tensor:
        return F.conv2d(x, state[f"{prefix}.weight"], stride=stride, padding=padding)

    x = F.prelu(_bn(state, "bn1", conv("conv1", x)), state["prelu.weight"])
    for stage, blocks in enumerate(layers, start=1):
        for index in range(blocks):
            p, stride = f"layer{stage}.{index}", 2 if index == 0 else 1
            out = conv(f"{p}.conv1", _bn(state, f"{p}.bn1", x))
            out = F.prelu(_bn(state, f"{p}.bn2", out), state[f"{p}.prelu.weight"])
            out = _bn(state, f"{p}.bn3", conv(f"{p}.conv2", out, stride))
            if index == 0:
                x = _bn(state, f"{p}.downsample.1", conv(f"{p}.downsample.0", x, stride, 0))
            x = out + x
    x = _bn(state, "bn2", x).flatten(1)  # dropout: identity in eval mode
    return _bn(state, "features", F.linear(x, state["fc.weight"], state["fc.bias"]))


def _mobilefacenet_oracle(state: dict[str, Tensor], x: Tensor) -> Tensor:
    """arcface_torch's MobileFaceNet (mbf) forward in eval mode, op by op."""

    def conv_bn(
        prefix: str, x: Tensor, stride: int = 1, groups: int = 1, act: bool = True
    ) -> Tensor:
        weight = state[f"{prefix}.layers.0.weight"]
        padding = 1 if weight.shape[-1] == 3 else 0
        x = F.conv2d(x, weight, stride=stride, padding=padding, groups=groups)
        x = _bn(state, f"{prefix}.layers.1", x)
        return F.prelu(x, state[f"{prefix}.layers.2.weight"]) if act else x

    def bottleneck(prefix: str, x: Tensor, stride: int, residual: bool) -> Tensor:
        expanded = state[f"{prefix}.layers.0.layers.0.weight"].shape[0]
        out = conv_bn(f"{prefix}.layers.0", x)
        out = conv_bn(f"{prefix}.layers.1", out, stride, groups=expanded)
        out = conv_bn(f"{prefix}.layers.2", out, act=False)
        return x + out if residual else out

    x = conv_bn("layers.1", conv_bn("layers.0", x, stride=2), groups=64)
    for index, blocks in ((2, 4), (4, 6), (6, 2)):
        x = bottleneck(f"layers.{index}", x, 2, residual=False)
        for block in range(blocks):
            x = bottleneck(f"layers.{index + 1}.layers.{block}", x, 1, residual=True)
    x = conv_bn("features.layers.0", conv_bn("conv_sep", x), groups=512, act=False)
    x = F.linear(x.flatten(1), state["features.layers.2.weight"])
    return _bn(state, "features.layers.3", x)


@pytest.mark.parametrize("name", ["iresnet18", "mobilefacenet"])
def test_create_backbone_computes_arcface_torch_forward(name: str) -> None:
    torch.manual_seed(0)
    model = create_backbone(name, embedding_size=16, image_size=32)
    with torch.no_grad():  # affine terms away from their init, so every op shows
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
            elif isinstance(module, nn.PReLU):
                module.weight.uniform_(0.0, 0.5)
    model = _calibrated(model, size=32)
    x = _images(3, size=32, seed=4)
    state = model.state_dict()
    with torch.no_grad():
        if name == "mobilefacenet":
            expected = _mobilefacenet_oracle(state, x)
        else:
            expected = _iresnet_oracle(state, x, IRESNET_LAYERS[name])
        found = model(x)
    assert expected.abs().mean() > 0.1
    torch.testing.assert_close(found, expected, rtol=1e-5, atol=1e-5)


def test_list_backbones_names_the_in_house_nets() -> None:
    assert list_backbones() == sorted(PARAMETERS)


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_create_backbone_maps_images_to_embeddings(name: str) -> None:
    model = create_backbone(name, embedding_size=96)
    for module in model.modules():  # the train step sets the BN statistics eval mode uses
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = None
    with torch.no_grad():
        out = model.train()(_images(2))
    assert out.shape == (2, 96) and out.dtype == torch.float32 and out.isfinite().all()
    if name != "iresnet100":  # keep the suite fast: one iresnet100 forward on CPU
        with torch.no_grad():
            out = model.eval()(_images(2, seed=3))
        assert out.shape == (2, 96) and out.isfinite().all()


@pytest.mark.parametrize("name", ["iresnet18", "mobilefacenet"])
def test_create_backbone_trains_every_parameter(name: str) -> None:
    model = create_backbone(name, embedding_size=8, image_size=32)
    model.train()(_images(2, size=32)).square().sum().backward()
    # Reached by the backward pass (some gradients are exactly 0 in train mode: a bias just
    # before a BatchNorm1d, like the GDC's BN shift, only moves the batch mean it subtracts).
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_create_backbone_parameter_counts_match_arcface_torch(name: str) -> None:
    model = create_backbone(name)
    total = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert (total, trained) == PARAMETERS[name]
    assert len(model.state_dict()) == STATE_KEYS[name]
    if name in IRESNET_LAYERS:
        assert total == _iresnet_parameters(IRESNET_LAYERS[name], 512, 112)


@pytest.mark.parametrize(("embedding", "size"), [(128, 112), (256, 128), (512, 64)])
def test_create_backbone_iresnet_size_follows_embedding_and_image(
    embedding: int, size: int
) -> None:
    model = create_backbone("iresnet34", embedding_size=embedding, image_size=size)
    assert sum(p.numel() for p in model.parameters()) == _iresnet_parameters(
        IRESNET_LAYERS["iresnet34"], embedding, size
    )


def test_create_backbone_state_dict_keys_follow_arcface_torch() -> None:
    iresnet = create_backbone("iresnet50").state_dict()
    for key in ["conv1.weight", "prelu.weight", "layer1.0.downsample.0.weight", "bn2.weight"]:
        assert key in iresnet
    assert iresnet["layer3.13.conv2.weight"].shape == (256, 256, 3, 3)
    assert iresnet["fc.weight"].shape == (512, 512 * 7 * 7)
    assert "layer1.1.downsample.0.weight" not in iresnet
    mbf = create_backbone("mobilefacenet").state_dict()
    assert mbf["layers.1.layers.0.weight"].shape == (128, 2, 3, 3)  # 64 groups
    assert mbf["layers.5.layers.5.layers.1.layers.0.weight"].shape == (256, 1, 3, 3)
    assert mbf["conv_sep.layers.0.weight"].shape == (512, 256, 1, 1)
    assert mbf["features.layers.0.layers.0.weight"].shape == (512, 1, 7, 7)
    assert mbf["features.layers.2.weight"].shape == (512, 512)
    assert mbf["features.layers.3.running_var"].shape == (512,)


def test_create_backbone_initialises_like_arcface_torch() -> None:
    iresnet = create_backbone("iresnet18").state_dict()
    for key in ["conv1.weight", "layer2.0.downsample.0.weight", "layer4.1.conv2.weight"]:
        assert iresnet[key].mean().abs() < 0.01 and 0.09 < iresnet[key].std() < 0.11  # N(0, 0.1)
    assert torch.equal(iresnet["layer3.0.bn2.weight"], torch.ones(256))
    mbf = create_backbone("mobilefacenet").state_dict()
    # Kaiming normal, fan_out, for convs and the Linear: std √(2 / fan_out), fan_out = 512 here.
    for key in ["conv_sep.layers.0.weight", "features.layers.2.weight"]:
        assert 0.95 < mbf[key].std() / (2 / 512) ** 0.5 < 1.05


def test_create_backbone_iresnet_embedding_scale_is_frozen_at_one() -> None:
    model = create_backbone("iresnet18", embedding_size=8)
    bn = model.features
    assert isinstance(bn, nn.BatchNorm1d)
    assert not bn.weight.requires_grad and torch.equal(bn.weight, torch.ones(8))
    assert bn.bias.requires_grad
    assert all(p.requires_grad for n, p in model.named_parameters() if n != "features.weight")


def test_create_backbone_default_embedding_is_512() -> None:
    model = create_backbone("mobilefacenet", image_size=32)
    assert model.train()(_images(2, size=32)).shape == (2, 512)


@pytest.mark.parametrize("name", ["iresnet18", "mobilefacenet"])
def test_create_backbone_other_image_size(name: str) -> None:
    model = create_backbone(name, embedding_size=16, image_size=128)
    out = model.train()(_images(2, size=128))
    assert out.shape == (2, 16) and out.isfinite().all()
    with pytest.raises(RuntimeError):  # sized for 128 px: 112 px images do not fit
        model(_images(2, size=112))


@pytest.mark.parametrize("name", ["iresnet18", "iresnet100", "mobilefacenet"])
@pytest.mark.parametrize(("size", "fix"), [(100, "96 or 112"), (8, "16"), (130, "128 or 144")])
def test_create_backbone_rejects_image_size_not_multiple_of_16(
    name: str, size: int, fix: str
) -> None:
    with pytest.raises(ConfigError, match=rf"multiple of 16.*got {size}; use {fix}"):
        create_backbone(name, image_size=size)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("iresnet51", "Did you mean 'iresnet50'"),
        ("mobilefacenets", "Did you mean 'mobilefacenet'"),
        ("resnet18", "write 'timm:resnet18'"),
        ("r50", "'timm:<model>' for any timm model"),
        ("timm:resnet1800", "Close names: resnet18"),
        ("timm:mobilenet_v3_small", "mobilenetv3_small_"),
        ("timm:zzzqqq", "timm.list_models"),
        ("timm:swin", "Close names: swin_"),
        ("timm:vit_b16", "vit_base_patch"),
        ("timm:iresnet50", "write 'iresnet50' without 'timm:'"),
    ],
)
def test_create_backbone_unknown_name_suggests_close_ones(name: str, expected: str) -> None:
    with pytest.raises(ConfigError, match="unknown") as caught:
        create_backbone(name)
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("mobilefacenet", {"dropout": 0.1}, "takes no 'dropout'; valid options: none"),
        ("iresnet18", {"drop_rate": 0.1}, "takes no 'drop_rate'; valid options: dropout"),
        ("iresnet18", {"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ("iresnet18", {"embedding_size": 0}, "embedding_size must be an integer ≥ 1, got 0"),
        ("iresnet18", {"embedding_size": 1.5}, "embedding_size must be an integer ≥ 1"),
        ("timm:resnet18", {"embedding_size": True}, "embedding_size must be an integer ≥ 1"),
        ("mobilefacenet", {"image_size": "112"}, "image_size must be an integer ≥ 1"),
        ("timm:resnet18", {"image_size": -16}, "image_size must be an integer ≥ 1"),
        ("timm:resnet18", {"pretrained": True}, "does not take 'pretrained'"),
        ("timm:resnet18", {"num_classes": 10}, "does not take 'num_classes'"),
        ("timm:resnet18", {"no_such_option": 1}, "rejected the options"),
    ],
)
def test_create_backbone_rejects_bad_options(name: str, kwargs: dict, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        create_backbone(name, **kwargs)


def test_create_backbone_iresnet_takes_dropout() -> None:
    model = create_backbone("iresnet18", embedding_size=8, dropout=0.5)
    assert model.dropout.p == 0.5 and create_backbone("iresnet18").dropout.p == 0.0


def test_create_backbone_timm_model_gives_embeddings() -> None:
    model = create_backbone("timm:mobilenetv3_small_050", embedding_size=32, drop_rate=0.1)
    assert isinstance(model, TimmBackbone)
    # mobilenetv3's pooled features go through its 1024-wide conv_head before the neck.
    assert model.neck[0].in_features == 1024 and model.neck[1].num_features == 32
    assert model.train()(_images(2)).shape == (2, 32)
    with torch.no_grad():
        assert _calibrated(model)(_images(3)).shape == (3, 32)


def test_create_backbone_timm_fixed_size_model_gets_image_size() -> None:
    model = create_backbone("timm:vit_tiny_patch16_224", embedding_size=16, image_size=64)
    assert model.neck[0].in_features == 192
    assert model.train()(_images(2, size=64)).shape == (2, 16)


def test_create_backbone_timm_model_is_untrained(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    seen: dict[str, object] = {}
    create = timm.create_model

    def spy(name: str, **kwargs: object) -> nn.Module:
        seen.update(kwargs, name=name)
        return create(name, **kwargs)

    monkeypatch.setattr(timm, "create_model", spy)
    create_backbone("timm:resnet18", embedding_size=8)
    assert seen == {"name": "resnet18", "pretrained": False, "num_classes": 0}


def test_backbones_module_defers_timm_import() -> None:
    code = "import sys, fmlkit.models.backbones; assert 'timm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", ["iresnet18", "mobilefacenet", "timm:mobilenetv3_small_050"])
def test_create_backbone_channels_last_gives_same_output(name: str) -> None:
    model = _calibrated(create_backbone(name, embedding_size=32))
    x = _images(3, seed=2)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        found = model(x.contiguous(memory_format=torch.channels_last))
    assert model.state_dict()[next(iter(model.state_dict()))].is_contiguous(
        memory_format=torch.channels_last
    )
    torch.testing.assert_close(found, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["iresnet18", "mobilefacenet"])
def test_create_backbone_runs_under_callers_autocast(name: str) -> None:
    model = _calibrated(create_backbone(name, embedding_size=32, image_size=32), size=32)
    x = _images(3, size=32, seed=6)
    with torch.no_grad():
        expected = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            found = model(x)
    assert found.dtype == torch.bfloat16  # no autocast of its own: the caller's applies
    assert F.cosine_similarity(found.float(), expected).min() > 0.99


@pytest.mark.parametrize("name", ["iresnet18", "mobilefacenet"])
def test_create_backbone_compiles_without_graph_breaks(name: str) -> None:
    model = _calibrated(create_backbone(name, embedding_size=32, image_size=32), size=32)
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # a break raises
    with torch.no_grad():
        torch.testing.assert_close(compiled(_images(2, 32)), model(_images(2, 32)))


def _onnx_parity(model: nn.Module, path: Path, **export: object) -> None:
    """Export with batch 2, run batch 3 through onnxruntime: equal to torch within 1e-4."""
    ort = pytest.importorskip("onnxruntime")
    torch.onnx.export(
        model,
        (_images(2),),
        str(path),
        input_names=["images"],
        output_names=["embeddings"],
        opset_version=17,
        **export,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = _images(3, seed=5)
    (found,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(torch.from_numpy(found), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript-based exporter
@pytest.mark.parametrize("name", ["iresnet18", "mobilefacenet"])
def test_create_backbone_exports_to_onnx_with_dynamic_batch(name: str, tmp_path: Path) -> None:
    model = _calibrated(create_backbone(name, embedding_size=64))
    axes = {"images": {0: "batch"}, "embeddings": {0: "batch"}}
    _onnx_parity(model, tmp_path / "model.onnx", dynamo=False, dynamic_axes=axes)


@pytest.mark.slow
def test_create_backbone_exports_to_onnx_with_dynamo_exporter(tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    model = _calibrated(create_backbone("mobilefacenet", embedding_size=64))
    shapes = ({0: torch.export.Dim("batch")},)
    _onnx_parity(model, tmp_path / "model.onnx", dynamo=True, dynamic_shapes=shapes, verbose=False)


@pytest.mark.parametrize("size", [16, 48, 64, 80])
def test_create_backbone_mobilefacenet_pools_the_whole_final_map_at_any_size(size: int) -> None:
    """The global depthwise conv spans the final map (size/16): no padding, even for 3×3."""
    model = create_backbone("mobilefacenet", embedding_size=8, image_size=size)
    assert model.train()(_images(2, size=size)).shape == (2, 8)
