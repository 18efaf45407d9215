"""The U-Net of the SpaceNet walkthrough, with configurable width and depth.

One definition serves the trainer and the plugin. The network maps a
``(N, in_channels, H, W)`` float tensor to ``(N, num_classes, H, W)`` logits
for the classes background, building interior and building border. ``H`` and
``W`` must be multiples of ``2 ** (depth - 1)``.
"""

from __future__ import annotations

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
        multiple = self.config.size_multiple
        if x.shape[-1] % multiple or x.shape[-2] % multiple:
            raise ValueError(
                f"input of {x.shape[-2]}x{x.shape[-1]} px: tile sides must be multiples of "
                f"{multiple} for a U-Net of depth {self.config.depth}; choose e.g. "
                f"{max(multiple, x.shape[-1] // multiple * multiple)}"
            )
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


def fuse_for_inference(model: UNet) -> UNet:
    """A copy of ``model`` for inference with each BatchNorm folded into the convolution before it.

    Same outputs (to float rounding), fewer memory passes: faster on CPU.
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(model).eval()
    for block in fused.modules():
        if isinstance(block, ConvBlock):
            for index in range(len(block) - 1):
                conv, norm = block[index], block[index + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                    block[index] = fuse_conv_bn_eval(conv, norm)
                    block[index + 1] = nn.Identity()
    return fused
