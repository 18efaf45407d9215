"""The networks: the SpaceNet walkthrough's U-Net, and a U-Net decoder on an EfficientNet-Lite encoder.

One definition serves the trainer and the plugin. Each network maps a
``(N, in_channels, H, W)`` float tensor to ``(N, num_classes, H, W)`` logits
for the classes background, building interior and building border. ``H`` and
``W`` must be multiples of the configuration's ``size_multiple``. The model card
names the architecture (:data:`ARCHITECTURES`) and its constructor arguments.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

CLASS_NAMES = ("background", "building_interior", "building_border")


@dataclass(frozen=True)
class UNetConfig:
    """Constructor arguments of :class:`UNet`; saved inside every weights file."""

    in_channels: int = 3
    num_classes: int = 3
    base_filters: int = 32
    depth: int = 5

    @property
    def filters(self) -> list[int]:
        """Filters per level, e.g. 32-64-128-256-512 for the walkthrough's network."""
        return [self.base_filters * 2**level for level in range(self.depth)]

    @property
    def size_multiple(self) -> int:
        """Tile sides must be a multiple of this."""
        return 2 ** (self.depth - 1)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> UNetConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown U-Net arguments {sorted(unknown)}")
        config = cls(**{k: int(v) for k, v in values.items()})
        if config.in_channels < 1 or config.num_classes < 2 or config.base_filters < 1:
            raise ValueError(f"invalid U-Net arguments {config.to_dict()}")
        if not 2 <= config.depth <= 7:
            raise ValueError(f"U-Net depth must be between 2 and 7, not {config.depth}")
        return config


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by BatchNorm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """Encoder-decoder with skip connections and transposed-convolution upsampling."""

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or UNetConfig()
        filters = self.config.filters
        self.encoders = nn.ModuleList()
        channels = self.config.in_channels
        for width in filters:
            self.encoders.append(ConvBlock(channels, width))
            channels = width
        self.pool = nn.MaxPool2d(2)
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for width in reversed(filters[:-1]):
            self.upsamplers.append(nn.ConvTranspose2d(channels, width, 2, stride=2))
            self.decoders.append(ConvBlock(2 * width, width))
            channels = width
        self.head = nn.Conv2d(channels, self.config.num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_tile(x, self.config.size_multiple, f"a U-Net of depth {self.config.depth}")
        skips = []
        for level, encoder in enumerate(self.encoders):
            if level:
                x = self.pool(x)
            x = encoder(x)
            skips.append(x)
        skips.pop()
        for upsample, decoder in zip(self.upsamplers, self.decoders):
            x = upsample(x)
            x = decoder(torch.cat([x, skips.pop()], dim=1))
        return self.head(x)


def _check_tile(x: torch.Tensor, multiple: int, network: str) -> None:
    if x.shape[-1] % multiple or x.shape[-2] % multiple:
        raise ValueError(
            f"input of {x.shape[-2]}x{x.shape[-1]} px: tile sides must be multiples of {multiple} for "
            f"{network}; choose e.g. {max(multiple, x.shape[-1] // multiple * multiple)}"
        )


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """A copy of ``model`` for inference with each BatchNorm folded into the convolution before it.

    Same outputs (to float rounding), fewer memory passes: faster on CPU.
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(model).eval()
    for block in fused.modules():
        if isinstance(block, ConvNorm):
            block.fuse()
        elif isinstance(block, ConvBlock):
            for index in range(len(block) - 1):
                conv, norm = block[index], block[index + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                    block[index] = fuse_conv_bn_eval(conv, norm)
                    block[index + 1] = nn.Identity()
    return fused


# ----------------------------------------------------------------------------- EfficientNet-Lite encoder

# EfficientNet-Lite stages: (repeats, kernel, stride, expand ratio, output channels); stem 32, head 1280.
LITE_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
               (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
LITE_SCALING = {  # encoder -> (width coefficient, depth coefficient), as published for the Lite family
    "efficientnet-lite0": (1.0, 1.0),
    "efficientnet-lite1": (1.0, 1.1),
    "efficientnet-lite2": (1.1, 1.2),
}
LITE_STEM, LITE_HEAD = 32, 1280
LITE_SKIP_STAGES = (0, 1, 2, 4, 6)  # the last stage at strides 2, 4, 8, 16 and 32
BN_EPS = 1e-3  # the TensorFlow reference's BatchNorm epsilon, which the pretrained statistics assume


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by the width coefficient, rounded to a multiple of 8 (never down by more than 10%)."""
    if width == 1.0:
        return channels
    scaled = max(divisor, int(channels * width + divisor / 2) // divisor * divisor)
    return scaled + divisor if scaled < 0.9 * channels * width else scaled


def lite_stages(encoder: str) -> list[tuple[int, int, int, int, int]]:
    """The stage table of one Lite encoder; Lite keeps the first and last stage's repeats unscaled."""
    width, depth = LITE_SCALING[encoder]
    stages = []
    for index, (repeats, kernel, stride, expand, out) in enumerate(LITE_STAGES):
        if 0 < index < len(LITE_STAGES) - 1:
            repeats = math.ceil(repeats * depth)
        stages.append((repeats, kernel, stride, expand, _round_filters(out, width)))
    return stages


@dataclass(frozen=True)
class EfficientUNetConfig:
    """Constructor arguments of :class:`EfficientUNet`; saved inside every weights file."""

    in_channels: int = 3
    num_classes: int = 3
    encoder: str = "efficientnet-lite0"
    decoder_filters: tuple[int, ...] = (128, 64, 48, 32, 16)

    size_multiple = 32

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["decoder_filters"] = list(self.decoder_filters)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EfficientUNetConfig:
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown EfficientNet U-Net arguments {sorted(unknown)}")
        config = cls(in_channels=int(values.get("in_channels", 3)), num_classes=int(values.get("num_classes", 3)),
                     encoder=str(values.get("encoder", cls.encoder)),
                     decoder_filters=tuple(int(v) for v in values.get("decoder_filters", cls.decoder_filters)))
        if config.encoder not in LITE_SCALING:
            raise ValueError(f"unknown encoder {config.encoder!r}; choose one of {', '.join(LITE_SCALING)}")
        if len(config.decoder_filters) != 5 or min(config.decoder_filters) < 1:
            raise ValueError("decoder_filters needs 5 positive widths (strides 16, 8, 4, 2 and 1)")
        if config.in_channels < 1 or config.num_classes < 2:
            raise ValueError(f"invalid EfficientNet U-Net arguments {config.to_dict()}")
        return config


class ConvNorm(nn.Module):
    """Convolution, BatchNorm and an optional ReLU6, with TensorFlow "same" padding on strided convolutions.

    The pretrained weights were learnt with that padding: one pixel less before than after for
    kernel 3 at stride 2, 1 before and 2 after for kernel 5 (inputs of even size).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
                 activation: bool = True) -> None:
        super().__init__()
        total = kernel - stride if stride > 1 else kernel - 1
        self.padding = (total // 2, total - total // 2) * 2  # left, right, top, bottom
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, groups=groups, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=0.01)
        self.act: nn.Module = nn.ReLU6(inplace=True) if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.padding):
            x = nn.functional.pad(x, self.padding)
        return self.act(self.bn(self.conv(x)))

    def fuse(self) -> None:
        """Fold the BatchNorm into the convolution (eval mode)."""
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv = fuse_conv_bn_eval(self.conv.eval(), self.bn.eval())
            self.bn = nn.Identity()


class MBConv(nn.Module):
    """Inverted residual block of EfficientNet-Lite: expand 1x1, depthwise, project 1x1 (no squeeze-excitation)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.expand = ConvNorm(in_channels, hidden, 1) if expand != 1 else nn.Identity()
        self.depthwise = ConvNorm(hidden, hidden, kernel, stride, groups=hidden)
        self.project = ConvNorm(hidden, out_channels, 1, activation=False)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return out + x if self.residual else out


class EfficientNetLite(nn.Module):
    """The EfficientNet-Lite feature extractor: features at strides 2, 4, 8, 16 and 32."""

    def __init__(self, encoder: str = "efficientnet-lite0", in_channels: int = 3) -> None:
        super().__init__()
        self.stem = ConvNorm(in_channels, LITE_STEM, 3, 2)
        self.blocks = nn.ModuleList()
        self.skip_after: list[int] = []  # index of the last block of each skip stage
        self.channels: list[int] = []
        channels = LITE_STEM
        for stage, (repeats, kernel, stride, expand, out) in enumerate(lite_stages(encoder)):
            for repeat in range(repeats):
                self.blocks.append(MBConv(channels, out, kernel, stride if repeat == 0 else 1, expand))
                channels = out
            if stage in LITE_SKIP_STAGES:
                self.skip_after.append(len(self.blocks) - 1)
                self.channels.append(out)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.skip_after:
                features.append(x)
        return features


class EfficientUNet(nn.Module):
    """U-Net decoder on an EfficientNet-Lite encoder, with skip connections at strides 2, 4, 8 and 16."""

    def __init__(self, config: EfficientUNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or EfficientUNetConfig()
        self.encoder = EfficientNetLite(self.config.encoder, self.config.in_channels)
        skips = self.encoder.channels[-2::-1] + [0]  # strides 16, 8, 4, 2, then none at full resolution
        self.decoders = nn.ModuleList()
        channels = self.encoder.channels[-1]
        for skip, width in zip(skips, self.config.decoder_filters):
            self.decoders.append(ConvBlock(channels + skip, width))
            channels = width
        self.head = nn.Conv2d(channels, self.config.num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_tile(x, self.config.size_multiple, "an EfficientNet U-Net")
        features = self.encoder(x)
        x = features.pop()
        for decoder in self.decoders:
            x = nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
            if features:
                x = torch.cat([x, features.pop()], dim=1)
            x = decoder(x)
        return self.head(x)


ARCHITECTURES: dict[str, tuple[type, type]] = {  # card architecture -> (network, config)
    "unet": (UNet, UNetConfig),
    "efficientnet-unet": (EfficientUNet, EfficientUNetConfig),
}


NETWORKS = tuple(network for network, _ in ARCHITECTURES.values())  # this project's own networks


def architecture_of(model: nn.Module) -> str:
    """The card name of a network's architecture."""
    for name, (network, _) in ARCHITECTURES.items():
        if type(model) is network:
            return name
    raise ValueError(f"{type(model).__name__} is not a network of this project")


def config_from_card(architecture: str, model_args: dict[str, Any]) -> UNetConfig | EfficientUNetConfig:
    """The validated constructor arguments that a model card names."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; this program knows {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture][1].from_dict(model_args)


def build_model(config: UNetConfig | EfficientUNetConfig) -> nn.Module:
    """The network of a configuration (random weights)."""
    return EfficientUNet(config) if isinstance(config, EfficientUNetConfig) else UNet(config)
