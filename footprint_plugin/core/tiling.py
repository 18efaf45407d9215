"""The tile grid: tile size, overlap and batch size, tile positions, the blend window and the
reflected margin around the raster."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import FootprintError

if TYPE_CHECKING:
    from .predictor import Predictor

BACKENDS = ("auto", "torch", "onnxruntime")
EDGE_MARGIN = 0  # measured (tools/tile_iou.py): 16-64 px of reflection made tile 256 and 512 differ more


@dataclass
class TilingOptions:
    """How the raster is cut into tiles; ``None`` takes the default."""

    tile_size: int | None = None  # model card's training tile size
    overlap: int | None = None  # a quarter of the tile
    batch_size: int | None = None  # 16 on CUDA, 4 elsewhere
    amp: bool = True  # float16 autocast on CUDA
    flip_tta: bool = False  # average with the horizontally flipped tile
    backend: str = "auto"  # auto/torch: PyTorch; onnxruntime: ONNX Runtime (CPU)
    block_width: int = 6144  # grid px: wider rasters run in column blocks, so memory does not grow with width
    block_halo: int = 192  # grid px each block also infers right of its own columns
    edge_margin: int = EDGE_MARGIN  # grid px of reflected raster around the edge (the same whatever the tile)


@dataclass(frozen=True)
class ResolvedTiling:
    tile: int
    overlap: int
    batch_size: int

    @property
    def stride(self) -> int:
        return self.tile - self.overlap


def resolve_tiling(options: TilingOptions, predictor: Predictor) -> ResolvedTiling:
    """Tile size, overlap and batch size with defaults filled in and checked against the weights."""
    multiple = predictor.card.config.size_multiple
    tile = int(options.tile_size or predictor.card.tile_size)
    if tile < multiple or tile % multiple:
        raise FootprintError(f"Tile size {tile} must be a positive multiple of {multiple} for these weights.")
    overlap = tile // 4 if options.overlap is None else int(options.overlap)
    if not 0 <= overlap <= tile // 2:
        raise FootprintError(f"Overlap {overlap} must be between 0 and half the tile size ({tile // 2}).")
    batch_size = int(options.batch_size or (16 if predictor.device.type == "cuda" else 4))
    if batch_size < 1:
        raise FootprintError("Batch size must be at least 1.")
    return ResolvedTiling(tile, overlap, batch_size)


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles covering ``length`` pixels; the last tile ends at the edge."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def blend_window(rows: int, cols: int | None = None) -> np.ndarray:
    """2-D weights (rows x cols, square by default), highest in the tile's centre, near zero at its edges."""

    def ramp(length: int) -> np.ndarray:
        values = np.sin(np.pi * (np.arange(length) + 0.5) / length) ** 2
        return np.maximum(values, 1e-3).astype(np.float32)

    return np.outer(ramp(rows), ramp(rows if cols is None else cols))


def fit_tile(tile: int, length: int, multiple: int) -> int:
    """The tile's side along an axis of ``length`` px: at most the length, rounded up to ``multiple``."""
    return min(tile, -(-length // multiple) * multiple)


def reflect_indices(start: int, stop: int, length: int) -> np.ndarray:
    """Indexes into ``length`` real pixels for positions ``start .. stop`` that may lie outside it,
    mirrored at the edges without repeating the edge pixel (as ``numpy.pad`` ``reflect``)."""
    positions = np.arange(start, stop)
    if length == 1:
        return np.zeros(len(positions), np.int64)
    period = 2 * (length - 1)
    folded = np.mod(positions, period)
    return np.where(folded < length, folded, period - folded)
