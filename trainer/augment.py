"""Photometric augmentation for imagery from other sensors, seasons and processing chains.

Applied to one chip in 0..1 units before normalisation; every random draw comes
from the caller's generator, so a sample's augmentation depends only on its seed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

HUE_TURN = 0.06  # up to +-0.06 of a full hue turn (about 22 degrees)
SATURATION = (0.6, 1.4)
CHANNEL_GAIN = (0.9, 1.1)  # white balance differences between sensors
GAMMA = (0.7, 1.4)  # log-uniform
BLUR_SIGMA = (0.4, 1.4)  # px: softer optics, or coarser imagery resampled up to the model's resolution
SHARPEN = (0.3, 1.0)
NOISE_STD = (0.005, 0.03)
P_BLUR, P_SHARPEN, P_NOISE = 0.3, 0.2, 0.3


def hue_rotation(angle: float) -> torch.Tensor:
    """3x3 matrix rotating RGB colours about the grey axis by ``angle`` radians (keeps grey grey)."""
    cos, sin = math.cos(angle), math.sin(angle)
    third, root = 1.0 / 3.0, math.sqrt(1.0 / 3.0)
    diagonal = cos + (1.0 - cos) * third
    plus = third * (1.0 - cos) + root * sin
    minus = third * (1.0 - cos) - root * sin
    return torch.tensor([[diagonal, minus, plus], [plus, diagonal, minus], [minus, plus, diagonal]])


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a (C, H, W) image, edges reflected."""
    radius = max(1, math.ceil(2.5 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = image.shape[0]
    x = F.pad(image[None], (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)
    return x[0]


def photometric(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Hue, saturation, channel gains, gamma, then blur or sharpening, then noise; returns 0..1."""
    x = image
    if x.shape[0] == 3:
        matrix = hue_rotation(float(rng.uniform(-HUE_TURN, HUE_TURN)) * 2 * math.pi)
        x = torch.einsum("ij,jhw->ihw", matrix, x)
        grey = x.mean(dim=0, keepdim=True)
        x = grey + float(rng.uniform(*SATURATION)) * (x - grey)
    gains = torch.from_numpy(rng.uniform(*CHANNEL_GAIN, size=(x.shape[0], 1, 1)).astype(np.float32))
    x = (x * gains).clamp(0, 1)
    x = x ** float(math.exp(rng.uniform(math.log(GAMMA[0]), math.log(GAMMA[1]))))
    choice = rng.random()
    if choice < P_BLUR:
        x = gaussian_blur(x, float(rng.uniform(*BLUR_SIGMA)))
    elif choice < P_BLUR + P_SHARPEN:
        x = x + float(rng.uniform(*SHARPEN)) * (x - gaussian_blur(x, 1.0))
    if rng.random() < P_NOISE:
        noise = rng.normal(0.0, rng.uniform(*NOISE_STD), size=tuple(x.shape)).astype(np.float32)
        x = x + torch.from_numpy(noise)
    return x.clamp(0, 1).contiguous()
