"""Augmentation of training chips: geometric (scale, crop, flips and turns), brightness and contrast, and the
``strong`` photometric set for imagery from other sensors, seasons and processing chains.

Every random draw comes from the caller's generator, so a sample's augmentation depends only on its seed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .prepare import IGNORE  # mask value of pixels the loss ignores

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


def rescale(image: torch.Tensor, mask: torch.Tensor, factor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A (C, H, W) image (bilinear) and its (H, W) class mask (nearest) resampled by ``factor``; unchanged
    within 2%."""
    if abs(factor - 1.0) <= 0.02:
        return image, mask
    size = [max(8, round(s * factor)) for s in mask.shape]
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
    return image, mask


def random_crop(image: torch.Tensor, mask: torch.Tensor, crop: int, rng: np.random.Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``crop`` x ``crop`` window at a random place; a smaller chip is padded (the mask with IGNORE)."""
    rows, cols = mask.shape
    pad_r, pad_c = max(0, crop - rows), max(0, crop - cols)
    if pad_r or pad_c:
        image = F.pad(image, (0, pad_c, 0, pad_r))
        mask = F.pad(mask, (0, pad_c, 0, pad_r), value=IGNORE)
        rows, cols = mask.shape
    top = int(rng.integers(rows - crop + 1))
    left = int(rng.integers(cols - crop + 1))
    return image[:, top : top + crop, left : left + crop], mask[top : top + crop, left : left + crop]


def turn_and_flip(image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """A random element of the dihedral group: a quarter turn 0-3 times, then a horizontal flip or not."""
    turns = int(rng.integers(4))
    image, mask = torch.rot90(image, turns, (1, 2)), torch.rot90(mask, turns, (0, 1))
    if rng.random() < 0.5:
        image, mask = torch.flip(image, (2,)), torch.flip(mask, (1,))
    return image, mask


def brightness_contrast(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Contrast 0.8-1.2 and brightness +-0.3, in normalised units."""
    contrast = float(rng.uniform(0.8, 1.2))
    brightness = float(rng.uniform(-0.3, 0.3))
    return image * contrast + brightness
