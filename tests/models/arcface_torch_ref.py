"""A stand-in for insightface arcface_torch's own backbones (``backbones/iresnet.py`` and
``backbones/mobilefacenet.py``), written for the tests from their documented layout rather
than imported from fmlkit, so that a test comparing the two compares two separate builds.

Only what decides the ``state_dict`` and the forward pass is kept: attribute names, layer
shapes and order, BatchNorm eps, the frozen ``features`` scale. arcface_torch's extra
switches (fp16 autocast, dilation, zero-init) are left out; its nets are fixed at 112 px.

IResNet: ``conv1, bn1, prelu``, then ``layer1..4`` (Sequentials of IBasicBlock, the first of
each stride 2 with a ``downsample`` conv1×1 + BN), then ``bn2, dropout, fc, features``.
IBasicBlock: ``bn1, conv1, bn2, prelu, conv2 (stride), bn3`` plus the shortcut.
MobileFaceNet (``mbf``): ``layers`` (a ModuleList of ConvBlock / DepthWise / Residual, each
keeping its modules in a ``layers`` Sequential), ``conv_sep``, ``features`` (GDC).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

DEPTHS = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}
EPS = 1e-05


class RefBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=EPS)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=EPS)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=EPS)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn1(x)
        y = self.conv1(y)
        y = self.bn2(y)
        y = self.prelu(y)
        y = self.conv2(y)
        y = self.bn3(y)
        skip = x if self.downsample is None else self.downsample(x)
        return y + skip


class RefIResNet(nn.Module):
    """arcface_torch's IResNet at 112 px: fc takes 512 × 7 × 7 features."""

    def __init__(self, depths: tuple[int, int, int, int], num_features: int = 512) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=EPS)
        self.prelu = nn.PReLU(64)
        widths, inplanes = (64, 128, 256, 512), 64
        for number, (planes, blocks) in enumerate(zip(widths, depths, strict=True), start=1):
            down = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, 2, bias=False), nn.BatchNorm2d(planes, eps=EPS)
            )
            stage = [RefBlock(inplanes, planes, 2, down)]
            stage += [RefBlock(planes, planes, 1, None) for _ in range(blocks - 1)]
            setattr(self, f"layer{number}", nn.Sequential(*stage))
            inplanes = planes
        self.bn2 = nn.BatchNorm2d(512, eps=EPS)
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=EPS)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def forward(self, x: Tensor) -> Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        for number in range(1, 5):
            x = getattr(self, f"layer{number}")(x)
        x = torch.flatten(self.bn2(x), 1)
        return self.features(self.fc(self.dropout(x)))


class _Seq(nn.Module):
    """A module whose parts sit in a ``layers`` Sequential (as in arcface_torch's mbf)."""

    def __init__(self, *parts: nn.Module) -> None:
        super().__init__()
        self.layers = nn.Sequential(*parts)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.layers(x)
        return out


def _conv_block(cin: int, cout: int, k: int, s: int, p: int, g: int = 1) -> _Seq:
    return _Seq(nn.Conv2d(cin, cout, k, s, p, groups=g, bias=False), nn.BatchNorm2d(cout),
                nn.PReLU(cout))  # fmt: skip


def _linear_block(cin: int, cout: int, k: int = 1, s: int = 1, p: int = 0, g: int = 1) -> _Seq:
    return _Seq(nn.Conv2d(cin, cout, k, s, p, groups=g, bias=False), nn.BatchNorm2d(cout))


class _DepthWise(_Seq):
    def __init__(self, cin: int, cout: int, groups: int, stride: int, residual: bool) -> None:
        super().__init__(
            _conv_block(cin, groups, 1, 1, 0),
            _conv_block(groups, groups, 3, stride, 1, groups),
            _linear_block(groups, cout),
        )
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.layers(x)
        return x + out if self.residual else out


def _residual(c: int, blocks: int, groups: int) -> _Seq:
    return _Seq(*(_DepthWise(c, c, groups, 1, True) for _ in range(blocks)))


class RefMobileFaceNet(nn.Module):
    """arcface_torch's ``mbf`` (blocks (1, 4, 6, 2), scale 2) at 112 px."""

    def __init__(self, num_features: int = 512) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [
                _conv_block(3, 128, 3, 2, 1),
                _conv_block(128, 128, 3, 1, 1, 64),
                _DepthWise(128, 128, 128, 2, False),
                _residual(128, 4, 128),
                _DepthWise(128, 256, 256, 2, False),
                _residual(256, 6, 256),
                _DepthWise(256, 256, 512, 2, False),
                _residual(256, 2, 256),
            ]
        )
        self.conv_sep = _conv_block(256, 512, 1, 1, 0)
        self.features = _Seq(
            _linear_block(512, 512, 7, 1, 0, 512),
            nn.Flatten(),
            nn.Linear(512, num_features, bias=False),
            nn.BatchNorm1d(num_features),
        )

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        out: Tensor = self.features(self.conv_sep(x))
        return out


def reference(name: str, num_features: int = 512) -> nn.Module:
    """arcface_torch's net for an fmlkit backbone name, with random (not default) batch-norm
    statistics and scales, so that a test comparing embeddings compares every tensor."""
    model = RefMobileFaceNet(num_features) if name == "mobilefacenet" else RefIResNet(
        DEPTHS[name], num_features
    )  # fmt: skip
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if not tensor.is_floating_point() or key == "features.weight":
                continue  # the counters, and iresnet's frozen features scale (1)
            values = torch.rand(tensor.shape, generator=generator)
            if key.endswith(("running_var", ".weight")) and tensor.dim() == 1:
                tensor.copy_(0.5 + values)  # variances and BN/PReLU scales near 1
            elif tensor.dim() == 1:
                tensor.copy_(values - 0.5)
            else:
                fan_in = tensor[0].numel()
                tensor.copy_((values - 0.5) * (2.0 / fan_in) ** 0.5 * 1.7)
    return model.eval()
