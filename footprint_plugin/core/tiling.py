"""The tile grid: tile size, overlap and batch size, tile positions and the reflected margin
around the raster.

Each tile gives only the pixels at least half the overlap from its edges
(:func:`.inference.owned_spans`), and the raster gets
the network's reach (the model card's ``context_px``) of reflected raster around it: with the
default overlap of twice that, every kept pixel saw at least that much context on each side.
Measured on the default model (v2) on nairobi_c1 against one whole-raster pass
(``tools/lab/context_reach.py``): with 0-8 px of context the building probability differs by 0.18 on
average, with 64-72 px by 0.013, with 96 px (``weights.CONTEXT_PX``, its card's value) or more not at all.
Tiles start on one lattice
(:func:`padded_grid`), so the network's pooling sees the pixels in the same phase too: the
result does not depend on the tile size, which only sets how many pixels a forward pass holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import FootprintError

if TYPE_CHECKING:
    from .weights import ModelCard

BACKENDS = ("auto", "torch", "onnxruntime")
DEFAULT_TILE = 768  # px (the model's own training tile when larger): measured as fast as 1024 with 300 MB less
CPU_BATCH_PIXELS = 4 * 256 * 256  # measured: 4 x 512 px tiles per pass run 25% slower per pixel than 1
CUDA_BATCH_PIXELS = 16 * 256 * 256


@dataclass
class TilingOptions:
    """How the raster is cut into tiles; ``None`` takes the default."""

    tile_size: int | None = None  # DEFAULT_TILE, or the model card's training tile if larger
    overlap: int | None = None  # twice the card's context_px, at most three quarters of the tile
    batch_size: int | None = None  # tiles of about 1 Mpx on CUDA, 0.26 Mpx elsewhere
    amp: bool = True  # float16 autocast on CUDA
    flip_tta: bool = False  # average with the horizontally flipped tile
    backend: str = "auto"  # auto/torch: PyTorch; onnxruntime: ONNX Runtime (CPU)
    block_size: int = 8192  # grid px: larger rasters run in square blocks (:mod:`.blocks`)
    block_halo: int = 384  # grid px each block also reads around its square (left, right, below)
    edge_margin: int | None = None  # grid px of reflected raster around the edge (None: the card's context_px)


@dataclass(frozen=True)
class PaddedGrid:
    """The grid the tiles lie on: the model grid with ``margin`` px of reflected raster before it and
    at least that much after it, so that whole tiles of one lattice cover it exactly."""

    width: int
    height: int
    tile_width: int
    tile_height: int
    margin: int
    overlap: int

    @property
    def stride_x(self) -> int:
        return self.tile_width - self.overlap

    @property
    def stride_y(self) -> int:
        return self.tile_height - self.overlap


@dataclass(frozen=True)
class ResolvedTiling:
    tile: int
    overlap: int
    batch_size: int
    margin: int  # reflected raster around the edge, px


def resolve_tiling(options: TilingOptions, card: ModelCard, device_type: str) -> ResolvedTiling:
    """Tile size, overlap and batch size with defaults filled in and checked against the weights
    (``card``) and the device the model runs on (``device_type``: cuda, cpu, mps)."""
    multiple = card.config.size_multiple
    tile = int(options.tile_size or max(DEFAULT_TILE, card.tile_size))
    if tile < multiple or tile % multiple:
        raise FootprintError(f"Tile size {tile} must be a positive multiple of {multiple} for these weights.")
    context = int(card.context_px)
    overlap = min(2 * context, 3 * tile // 4) if options.overlap is None else int(options.overlap)
    if not 0 <= overlap <= 3 * tile // 4:
        raise FootprintError(f"Overlap {overlap} must be between 0 and three quarters of the tile size "
                             f"({3 * tile // 4}).")
    pixels = CUDA_BATCH_PIXELS if device_type == "cuda" else CPU_BATCH_PIXELS
    batch_size = int(options.batch_size or max(1, pixels // (tile * tile)))
    if batch_size < 1:
        raise FootprintError("Batch size must be at least 1.")
    margin = context if options.edge_margin is None else int(options.edge_margin)
    if margin < 0:
        raise FootprintError("The edge margin must not be negative.")
    return ResolvedTiling(tile, overlap, batch_size, margin)


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles covering ``length`` pixels; the last tile ends at the edge."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def fit_tile(tile: int, length: int, multiple: int) -> int:
    """The tile's side along an axis of ``length`` px: at most the length, rounded up to ``multiple``."""
    return min(tile, _ceil_div(length, multiple) * multiple)


def lattice_span(length: int, tile: int, overlap: int, multiple: int) -> tuple[int, int]:
    """(padded length, tile side) along one axis for ``length`` px that must be covered: the fewest
    tiles of at most ``tile`` px that overlap by ``overlap``, each as small as that allows (a
    multiple of ``multiple``), so a raster a little over one tile does not pay for two full ones."""
    if length <= tile:
        side = fit_tile(tile, length, multiple)
        return side, side
    count = _ceil_div(length - overlap, tile - overlap)
    side = min(tile, _ceil_div(_ceil_div(length - overlap, count) + overlap, multiple) * multiple)
    return side + (count - 1) * (side - overlap), side


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def padded_grid(width: int, height: int, tiling: ResolvedTiling, multiple: int) -> PaddedGrid:
    """The :class:`PaddedGrid` of a ``width`` x ``height`` px model grid.

    Every tile starts the margin before a multiple of the stride (itself a multiple of the
    network's ``multiple``), so each pixel sees the same neighbourhood (real or reflected raster) in
    the same pooling phase whatever the tile size: with an overlap of at least twice the model's
    reach the probabilities are the same.
    """
    margin = tiling.margin
    padded_width, tile_width = lattice_span(width + 2 * margin, tiling.tile, tiling.overlap, multiple)
    padded_height, tile_height = lattice_span(height + 2 * margin, tiling.tile, tiling.overlap, multiple)
    return PaddedGrid(padded_width, padded_height, tile_width, tile_height, margin, tiling.overlap)


def reflect_indices(start: int, stop: int, length: int) -> np.ndarray:
    """Indexes into ``length`` real pixels for positions ``start .. stop`` that may lie outside it,
    mirrored at the edges without repeating the edge pixel (as ``numpy.pad`` ``reflect``)."""
    positions = np.arange(start, stop)
    if length == 1:
        return np.zeros(len(positions), np.int64)
    period = 2 * (length - 1)
    folded = np.mod(positions, period)
    return np.where(folded < length, folded, period - folded)
