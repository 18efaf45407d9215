"""Tiled, batched U-Net inference that yields blended class probabilities strip by strip.

Tiles lie on one fixed grid over the whole raster and overlap; each tile keeps
the softmax output of its centre, at least half the overlap from its edges
(:func:`.tiling.blend_window`), so every pixel is seen with context on all sides.
Only the rows that are still receiving tiles are kept in memory, and rasters wider than a block
(6144 px of the model grid by default) run block by block
(:mod:`.blocks`): peak memory depends on neither the raster's height nor its
width. The raster's edge is treated the same whatever the tile size: a margin of
reflected raster (``TilingOptions.edge_margin``) surrounds it, and the tiles lie on
one lattice over it (:func:`.tiling.padded_grid`).

The device choice, the tile grid, the predictor and the ONNX cache live in
their own modules; their names are imported here too, for existing callers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .blocks import ColumnBlock, plan_column_blocks
from .devices import available_devices, resolve_device
from .errors import CancelledError
from .geo import ModelGrid
from .onnx_cache import onnx_session as _onnx_session
from .onnx_cache import onnxruntime_available as _onnxruntime_available
from .predictor import Predictor
from .readers import WindowReader
from .threads import run_in_background
from .tiling import (
    BACKENDS,
    PaddedGrid,
    ResolvedTiling,
    TilingOptions,
    blend_window,
    padded_grid,
    reflect_indices,
    resolve_tiling,
    tile_starts,
)

__all__ = ["BACKENDS", "ColumnBlock", "Predictor", "ProbabilityStrip", "ResolvedTiling", "TilingOptions",
           "_onnx_session", "_onnxruntime_available", "available_devices", "blend_window", "iter_probability_strips",
           "plan_column_blocks", "read_reflected", "resolve_device", "resolve_tiling", "run_in_background",
           "tile_starts"]

ProgressCallback = Callable[[float, str], None]
CancelCheck = Callable[[], bool]


@dataclass
class ProbabilityStrip:
    """Final blended probabilities for grid rows ``row_start .. row_start + rows``."""

    row_start: int
    building: np.ndarray  # P(interior) + P(border), float32 (rows, width)
    interior: np.ndarray  # P(interior), float32 (rows, width)
    last: bool


def read_reflected(reader: WindowReader, grid: ModelGrid, bands: list[int], margin: int,
                   window: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of the padded grid (the model grid with ``margin`` reflected pixels on each side).

    ``window`` = (col, row, cols, rows) in padded-grid pixels, and may reach past the padded grid
    (small rasters): every position is mirrored into the raster. Only the raster's own pixels
    are valid, so nothing is ever found in the margin.
    """
    col, row, cols, rows = window
    real_rows = reflect_indices(row - margin, row - margin + rows, grid.height)
    real_cols = reflect_indices(col - margin, col - margin + cols, grid.width)
    r0, r1 = int(real_rows.min()), int(real_rows.max()) + 1
    c0, c1 = int(real_cols.min()), int(real_cols.max()) + 1
    sx, sy = grid.source_width / grid.width, grid.source_height / grid.height
    data, valid = reader.read((c0 * sx, r0 * sy, (c1 - c0) * sx, (r1 - r0) * sy), (r1 - r0, c1 - c0), bands)
    if (r1 - r0, c1 - c0) != (rows, cols) or real_rows[0] != r0 or real_cols[0] != c0:  # mirrored somewhere
        data = data[:, real_rows - r0][:, :, real_cols - c0]
        valid = valid[np.ix_(real_rows - r0, real_cols - c0)]
    inside_rows = (real_rows == np.arange(row - margin, row - margin + rows))
    inside_cols = (real_cols == np.arange(col - margin, col - margin + cols))
    if not (inside_rows.all() and inside_cols.all()):
        valid = valid & inside_rows[:, None] & inside_cols[None, :]
    return data, valid


def padded_size(grid: ModelGrid, options: TilingOptions, predictor: Predictor) -> PaddedGrid:
    """The padded grid the tiles lie on (:func:`.tiling.padded_grid`)."""
    return padded_grid(grid.width, grid.height, resolve_tiling(options, predictor), options.edge_margin,
                       predictor.card.config.size_multiple)


def iter_probability_strips(
    reader: WindowReader,
    grid: ModelGrid,
    bands: list[int],
    predictor: Predictor,
    options: TilingOptions,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
    columns: tuple[int, int] | None = None,
) -> Iterator[ProbabilityStrip]:
    """Run the model over the padded grid (:func:`padded_size`); yield final probabilities top to bottom.

    Rows and columns are those of the padded grid; the margin's probabilities are 0.
    ``columns`` = (start, end) limits the run to a :class:`ColumnBlock`'s columns (whole tiles of
    the global tile grid); strips then hold those columns only. Reading the next row of tiles runs
    in a background thread while the model works on the current one.
    """
    tiling = resolve_tiling(options, predictor)
    batch_size = tiling.batch_size
    padded = padded_size(grid, options, predictor)
    full_width, height = padded.width, padded.height
    tile_w, tile_h = padded.tile_width, padded.tile_height  # smaller than the tile on small rasters
    column0, column1 = columns or (0, full_width)
    width = column1 - column0
    xs = [x - column0 for x in tile_starts(full_width, tile_w, padded.stride_x)
          if x >= column0 and x + tile_w <= max(column1, tile_w)]
    ys = tile_starts(height, tile_h, padded.stride_y)
    window = blend_window(tile_h, tile_w, tiling.overlap // 2)
    scale = predictor.scale_for(reader.dtype, reader.bit_depth)
    padded_width = max(width, tile_w)
    total_tiles = len(xs) * len(ys)
    done_tiles = 0

    def read_row(y0: int) -> tuple[np.ndarray, np.ndarray]:
        data, valid = read_reflected(reader, grid, bands, options.edge_margin, (column0, y0, padded_width, tile_h))
        # Normalised here, in the reading thread, so the model's thread only runs the model.
        return predictor.normalize(data, scale), valid

    # Accumulators for grid rows [buffer_top, buffer_top + tile_h): each row of tiles starts where the
    # previous one's final rows end, so one tile height is all that is ever pending.
    buffer_rows = tile_h
    acc = np.zeros((2, buffer_rows, padded_width), np.float32)  # P(background), P(interior), weighted
    weight = np.zeros((buffer_rows, padded_width), np.float32)
    valid_buf = np.zeros((buffer_rows, padded_width), bool)
    buffer_top = 0
    emitted_until = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="footprint-read") as pool:
        pending = pool.submit(read_row, ys[0])
        for index, y0 in enumerate(ys):
            data, valid = pending.result()
            if index + 1 < len(ys):
                pending = pool.submit(read_row, ys[index + 1])
            offset = y0 - buffer_top
            valid_buf[offset : offset + tile_h] |= valid
            for first in range(0, len(xs), batch_size):
                if cancelled and cancelled():
                    raise CancelledError()
                starts = xs[first : first + batch_size]
                batch = np.stack([data[:, :, x : x + tile_w] for x in starts])
                probs = predictor.blend_inputs(batch, options.flip_tta)
                probs *= window  # in place: no temporary per tile
                for x, tile_probs in zip(starts, probs):
                    acc[:, offset : offset + tile_h, x : x + tile_w] += tile_probs
                    weight[offset : offset + tile_h, x : x + tile_w] += window
                done_tiles += len(starts)
                if progress:
                    progress(done_tiles / total_tiles, f"tile {done_tiles}/{total_tiles}")
            final_end = ys[index + 1] if index + 1 < len(ys) else height
            count = final_end - emitted_until
            if count > 0:
                rows = slice(emitted_until - buffer_top, final_end - buffer_top)
                total = weight[rows, :width]
                missing = ~valid_buf[rows, :width]
                building = acc[0, rows, :width] / total
                np.subtract(1.0, building, out=building)
                building[missing] = 0.0
                interior = acc[1, rows, :width] / total
                interior[missing] = 0.0
                yield ProbabilityStrip(emitted_until, building, interior, index + 1 == len(ys))
                emitted_until = final_end
            # Drop the emitted rows from the accumulators.
            shift = emitted_until - buffer_top
            if shift > 0:
                for array in (acc, weight, valid_buf):
                    array[..., : buffer_rows - shift, :] = array[..., shift:, :].copy()
                    array[..., buffer_rows - shift :, :] = 0
                buffer_top = emitted_until
    if emitted_until < height:  # cannot happen; guards the memory design
        raise RuntimeError("rows left unprocessed")
