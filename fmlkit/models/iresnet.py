"""IResNet: the "improved" pre-activation ResNet of ArcFace (Deng et al., CVPR 2019), as
insightface's arcface_torch builds it (``backbones/iresnet.py``).

Same layers, attribute names and initialisation as arcface_torch, so its ``state_dict`` keys and
shapes are ours: a checkpoint trained there loads here with ``load_state_dict``. What differs:
no ``fp16`` switch with an autocast inside ``forward`` (run the model under the caller's
``torch.autocast``), no gradient checkpointing, no dilation options, dropout not in place, and
input sizes other than 112 px (any multiple of 16: the fc layer is sized for the last map).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

#: Blocks per stage of the arcface_torch depths.
IRESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}

#: Output channels of the stem and of the 4 stages, each stage halving height and width.
STEM_CHANNELS = 64
STAGE_CHANNELS = (64, 128, 256, 512)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """BN → conv3×3 → BN → PReLU → conv3×3 (``stride``) → BN, plus the shortcut (a strided
    conv1×1 + BN where the shape changes)."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, eps=1e-5)
        self.conv1 = _conv3x3(in_channels, channels)
        self.bn2 = nn.BatchNorm2d(channels, eps=1e-5)
        self.prelu = nn.PReLU(channels)
        self.conv2 = _conv3x3(channels, channels, stride)
        self.bn3 = nn.BatchNorm2d(channels, eps=1e-5)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels, eps=1e-5),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


def _stage(in_channels: int, channels: int, blocks: int) -> nn.Sequential:
    """``blocks`` blocks, the first halving height and width."""
    first = IBasicBlock(in_channels, channels, stride=2)
    return nn.Sequential(first, *(IBasicBlock(channels, channels) for _ in range(blocks - 1)))


class IResNet(nn.Module):
    """Images (B, 3, S, S) → embeddings (B, ``embedding_size``), not normalised.

    Stem conv3×3 (64) + BN + PReLU at full resolution; 4 stages of `IBasicBlock`, the first
    block of each with stride 2; then BN2d → flatten → dropout → Linear(512·(S/16)² → E) →
    BatchNorm1d(E) whose scale is fixed at 1 (``features.weight`` does not train; its shift
    does).

    Args:
        layers: blocks in each of the 4 stages, e.g. (3, 4, 14, 3) for iresnet50.
        embedding_size: length E of the embedding.
        image_size: input height and width in pixels, a multiple of 16 (checked by the caller,
            `fmlkit.models.backbones.create_backbone`).
        dropout: probability of dropping a feature before the fc layer (arcface_torch: 0).
    """

    def __init__(
        self,
        layers: Sequence[int],
        *,
        embedding_size: int = 512,
        image_size: int = 112,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        assert len(layers) == 4 and image_size % 16 == 0, (layers, image_size)
        self.conv1 = _conv3x3(3, STEM_CHANNELS)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS, eps=1e-5)
        self.prelu = nn.PReLU(STEM_CHANNELS)
        c0, c1, c2, c3, c4 = STEM_CHANNELS, *STAGE_CHANNELS
        self.layer1 = _stage(c0, c1, layers[0])
        self.layer2 = _stage(c1, c2, layers[1])
        self.layer3 = _stage(c2, c3, layers[2])
        self.layer4 = _stage(c3, c4, layers[3])
        self.bn2 = nn.BatchNorm2d(c4, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(c4 * (image_size // 16) ** 2, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-5)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.ones_(self.features.weight)
        self.features.weight.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))
