"""The model's input: raw pixels scaled to 0..1 by their type and bit depth, then standardised.

Extraction (:class:`.predictor.Predictor`), training and fine-tuning all use these two functions, so a
model sees the same values whichever of them reads the pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def input_scale(normalization: Mapping[str, Any], dtype: str, bit_depth: int | None = None) -> float:
    """The divisor that maps raw values of ``dtype`` to 0..1: 2**bit_depth - 1 for 16-bit data of a known
    bit depth, else the card's scale for the type (int16 as uint16; 255 for a type it does not list)."""
    if bit_depth and dtype != "uint8":
        return float(2**bit_depth - 1)
    key = "uint16" if dtype == "int16" else dtype
    return float(normalization["scale"].get(key, 255.0))


def normalize(raw: np.ndarray, scale: float, mean: Sequence[float] | np.ndarray,
              std: Sequence[float] | np.ndarray) -> np.ndarray:
    """Raw pixels (..., C, H, W) to the model's input, in one new float32 array: clip(raw / scale, 0, 1),
    less the per-band ``mean``, over the per-band ``std``."""
    mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
    data = raw.astype(np.float32)
    data *= np.float32(1.0 / scale)
    np.clip(data, 0.0, 1.0, out=data)
    data -= mean
    data /= std
    return data
