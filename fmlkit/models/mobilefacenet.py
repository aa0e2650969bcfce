"""MobileFaceNet (Chen et al., 2018) as insightface's arcface_torch builds it
(``backbones/mobilefacenet.py``, network ``mbf``: blocks (1, 4, 6, 2), width scale 2).

Same layers, attribute names and initialisation as arcface_torch, so its ``state_dict`` keys and
shapes are ours. What differs: no ``fp16`` switch with an autocast inside ``forward`` (run the
model under the caller's ``torch.autocast``), no ``norm_output``, and input sizes other than
112 px (any multiple of 16: the global depthwise conv spans the last map).
"""

from __future__ import annotations

from torch import Tensor, nn


class _Layers(nn.Module):
    """A ``layers`` Sequential called in order (arcface_torch's wrappers, kept for its keys)."""

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__()
        self.layers = nn.Sequential(*modules)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.layers(x)
        return out


class ConvBN(_Layers):
    """Conv (no bias) → BN, then PReLU unless ``linear`` (arcface_torch's ConvBlock and
    LinearBlock); padding keeps the size for 3×3 kernels and is 0 otherwise, unless given."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 1,
        *,
        stride: int = 1,
        groups: int = 1,
        linear: bool = False,
        padding: int | None = None,
    ) -> None:
        padding = (1 if kernel == 3 else 0) if padding is None else padding
        conv = nn.Conv2d(
            in_channels, out_channels, kernel, stride, padding, groups=groups, bias=False
        )
        tail = [] if linear else [nn.PReLU(out_channels)]
        super().__init__(conv, nn.BatchNorm2d(out_channels), *tail)


class DepthWise(_Layers):
    """Inverted bottleneck: 1×1 expansion to ``expanded`` channels → 3×3 depthwise
    (``stride``) → linear 1×1 projection; with an identity shortcut when ``residual``."""

    def __init__(
        self, in_channels: int, out_channels: int, expanded: int, *, stride: int, residual: bool
    ) -> None:
        super().__init__(
            ConvBN(in_channels, expanded),
            ConvBN(expanded, expanded, 3, stride=stride, groups=expanded),
            ConvBN(expanded, out_channels, linear=True),
        )
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.layers(x)
        return x + out if self.residual else out


def _residual(channels: int, blocks: int, expanded: int) -> _Layers:
    return _Layers(
        *(DepthWise(channels, channels, expanded, stride=1, residual=True) for _ in range(blocks))
    )


class MobileFaceNet(nn.Module):
    """Images (B, 3, S, S) → embeddings (B, ``embedding_size``), not normalised.

    Stem conv3×3/2 (128) and a grouped conv3×3 (128, 64 groups); 3 stride-2 bottlenecks each
    followed by 4, 6 and 2 residual ones (128 → 128 → 256 → 256 channels); 1×1 conv to 512;
    then the global depthwise conv (GDC) over the whole S/16 × S/16 map → flatten →
    Linear(512 → E, no bias) → BatchNorm1d(E).

    Args:
        embedding_size: length E of the embedding.
        image_size: input height and width in pixels, a multiple of 16 (checked by the caller,
            `fmlkit.models.backbones.create_backbone`).
    """

    def __init__(self, *, embedding_size: int = 512, image_size: int = 112) -> None:
        super().__init__()
        assert image_size % 16 == 0, image_size
        self.layers = nn.ModuleList(
            [
                ConvBN(3, 128, 3, stride=2),
                ConvBN(128, 128, 3, groups=64),
                DepthWise(128, 128, 128, stride=2, residual=False),
                _residual(128, 4, 128),
                DepthWise(128, 256, 256, stride=2, residual=False),
                _residual(256, 6, 256),
                DepthWise(256, 256, 512, stride=2, residual=False),
                _residual(256, 2, 256),
            ]
        )
        self.conv_sep = ConvBN(256, 512)
        # global depthwise conv over the whole final map (3×3 at 48 px: no padding there)
        gdc = ConvBN(512, 512, image_size // 16, groups=512, linear=True, padding=0)
        self.features = _Layers(
            gdc, nn.Flatten(), nn.Linear(512, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )  # fmt: skip
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        out: Tensor = self.features(self.conv_sep(x))
        return out
