"""Tiled, batched U-Net inference that yields thresholded class maps strip by strip.

Tiles lie on one fixed grid over the whole raster and overlap; every pixel takes
the output of the tile whose centre is nearest (:func:`owned_spans`): with the default
overlap that is at least half the overlap from the tile's edges, so every pixel is seen
with context on all sides. The predictor thresholds each tile where the model runs
(:meth:`.Predictor.class_maps`), and only the current row of tiles is held: peak memory
depends on neither the raster's height nor, with blocks for rasters larger than
10240 px of the model grid (:mod:`.blocks`), its width. The raster's edge is treated the
same whatever the tile size: a margin of reflected raster (the model card's ``context_px``)
surrounds it, and the tiles lie on one lattice over it (:func:`.tiling.padded_grid`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .buildings import VectorizeOptions
from .errors import CancelledError
from .geo import ModelGrid
from .instances import ClassMaps
from .predictor import Predictor
from .readers import WindowReader
from .tiling import PaddedGrid, TilingOptions, padded_grid, reflect_indices, resolve_tiling, tile_starts
from .weights import ModelCard

ProgressCallback = Callable[[float, str], None]
CancelCheck = Callable[[], bool]


@dataclass
class ClassStrip:
    """Final class maps for grid rows ``row_start .. row_start + len(maps)``."""

    row_start: int
    maps: ClassMaps
    last: bool


# Where the thresholded maps of a run come from: called with (progress, cancelled, window) for each block,
# window = (top, bottom, left, right) in padded-grid rows and columns, it yields the window's strips top to
# bottom, each holding the window's columns (the model's: iter_class_strips).
ClassMapSource = Callable[[Optional[ProgressCallback], Optional[CancelCheck], tuple[int, int, int, int]], Iterator[ClassStrip]]  # noqa: UP007, E501 - runs on Python 3.9


def owned_spans(starts: list[int], tile: int, length: int) -> list[tuple[int, int]]:
    """The part of [0, ``length``) each tile at ``starts`` (ascending) gives the output, [from, to):
    the pixels nearer its centre than any other tile's. With an even overlap that is the tile less
    half the overlap on each side; the first and the last tile reach to the ends."""
    bounds = [0, *((a + b + tile) // 2 for a, b in zip(starts[:-1], starts[1:])), length]
    return list(zip(bounds[:-1], bounds[1:]))


READ_PART_COLUMNS = 1024  # a row of tiles is read in parts this wide, in parallel where the reader allows


def read_threads(reader: WindowReader, grid: ModelGrid) -> int:
    """Threads that read a row of tiles: several for a reader safe to share between threads on a raster read
    at its own resolution (parts of a resampled window are left to one read), else one."""
    if not getattr(reader, "concurrent_reads", False) or grid.resampled:
        return 1
    return max(1, min(4, (os.cpu_count() or 1)))


def read_reflected(reader: WindowReader, grid: ModelGrid, bands: list[int], margin: int,
                   window: tuple[int, int, int, int], pool: ThreadPoolExecutor | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of the padded grid (the model grid with ``margin`` reflected pixels on each side).

    ``window`` = (col, row, cols, rows) in padded-grid pixels, and may reach past the padded grid
    (small rasters): every position is mirrored into the raster. Only the raster's own pixels
    are valid, so nothing is ever found in the margin. With ``pool`` (several threads, a reader
    that allows them, no resampling) a wide window is read in parts at once.
    """
    col, row, cols, rows = window
    real_rows = reflect_indices(row - margin, row - margin + rows, grid.height)
    real_cols = reflect_indices(col - margin, col - margin + cols, grid.width)
    r0, r1 = int(real_rows.min()), int(real_rows.max()) + 1
    c0, c1 = int(real_cols.min()), int(real_cols.max()) + 1
    sx, sy = grid.source_width / grid.width, grid.source_height / grid.height
    if pool is not None and c1 - c0 > READ_PART_COLUMNS:
        data, valid = _read_in_parts(reader, bands, (c0, r0, c1, r1), pool)
    else:
        data, valid = reader.read((c0 * sx, r0 * sy, (c1 - c0) * sx, (r1 - r0) * sy), (r1 - r0, c1 - c0), bands)
    if (r1 - r0, c1 - c0) != (rows, cols) or real_rows[0] != r0 or real_cols[0] != c0:  # mirrored somewhere
        data = data[:, real_rows - r0][:, :, real_cols - c0]
        valid = valid[np.ix_(real_rows - r0, real_cols - c0)]
    inside_rows = (real_rows == np.arange(row - margin, row - margin + rows))
    inside_cols = (real_cols == np.arange(col - margin, col - margin + cols))
    if not (inside_rows.all() and inside_cols.all()):
        valid = valid & inside_rows[:, None] & inside_cols[None, :]
    return data, valid


def _read_in_parts(reader: WindowReader, bands: list[int], box: tuple[int, int, int, int],
                   pool: ThreadPoolExecutor) -> tuple[np.ndarray, np.ndarray]:
    """Columns [c0, c1) of rows [r0, r1) of a raster read at its own resolution, in parallel parts."""
    c0, r0, c1, r1 = box
    cuts = list(range(c0, c1, READ_PART_COLUMNS)) + [c1]
    parts = list(pool.map(lambda span: reader.read((span[0], r0, span[1] - span[0], r1 - r0),
                                                    (r1 - r0, span[1] - span[0]), bands), zip(cuts[:-1], cuts[1:])))
    return np.concatenate([data for data, _ in parts], axis=2), np.concatenate([valid for _, valid in parts], axis=1)


@dataclass(frozen=True)
class InferencePlan:
    """What the model runs over: the raster on its model grid, the bands that feed it, and the tiles."""

    reader: WindowReader
    grid: ModelGrid
    bands: list[int]
    padded: PaddedGrid  # the tile lattice (:func:`.tiling.padded_grid`)
    batch_size: int
    flip_tta: bool = False


def plan_inference(reader: WindowReader, grid: ModelGrid, bands: list[int], options: TilingOptions, card: ModelCard,
                   device_type: str) -> InferencePlan:
    """The tiling options resolved once for this model (``card``) and device, and the padded grid the tiles lie on."""
    tiling = resolve_tiling(options, card, device_type)
    padded = padded_grid(grid.width, grid.height, tiling, card.config.size_multiple)
    return InferencePlan(reader, grid, bands, padded, tiling.batch_size, options.flip_tta)


def iter_class_strips(
    plan: InferencePlan,
    predictor: Predictor,
    thresholds: VectorizeOptions,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
    window: tuple[int, int, int, int] | None = None,
) -> Iterator[ClassStrip]:
    """Run the model over a window of the plan's padded grid; yield final class maps top to bottom.

    Every pixel takes the thresholded maps of the tile whose centre is nearest (:func:`owned_spans`),
    computed where the model runs (:meth:`.Predictor.class_maps`), so only 3 bytes a pixel leave it.
    ``window`` = (top, bottom, left, right) in padded-grid rows and columns (default: all of it); the tiles
    are those of the one lattice over the whole grid that give the window a pixel, so a window's maps are
    exactly those of a run over the whole grid. Rows are the padded grid's, strips hold the window's columns;
    nothing is found in the margin. Reading the next row of tiles runs in a background thread while the
    model works on the current one.
    """
    reader, grid, bands, padded = plan.reader, plan.grid, plan.bands, plan.padded
    tile_w, tile_h = padded.tile_width, padded.tile_height  # smaller than the tile on small rasters
    top, bottom, left, right = window or (0, padded.height, 0, padded.width)
    width = right - left
    columns = _tiles_over(tile_starts(padded.width, tile_w, padded.stride_x), tile_w, padded.width, left, right)
    rows = _tiles_over(tile_starts(padded.height, tile_h, padded.stride_y), tile_h, padded.height, top, bottom)
    read_left = columns[0][0]
    read_width = columns[-1][0] + tile_w - read_left
    scale = predictor.scale_for(reader.dtype, reader.bit_depth)
    done_tiles, total_tiles = 0, len(columns) * len(rows)

    def read_row(y0: int) -> tuple[np.ndarray, np.ndarray]:  # raw pixels: the model's side normalises them
        return read_reflected(reader, grid, bands, padded.margin, (read_left, y0, read_width, tile_h),
                              readers if threads > 1 else None)

    threads = read_threads(reader, grid)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="footprint-read") as pool, \
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix="footprint-read-part") as readers:
        pending = pool.submit(read_row, rows[0][0])
        for index, (y0, row0, row1) in enumerate(rows):
            data, valid = pending.result()
            if index + 1 < len(rows):
                pending = pool.submit(read_row, rows[index + 1][0])
            kept = slice(row0 - y0, row1 - y0)
            strip = ClassMaps.zeros(row1 - row0, width)
            for first in range(0, len(columns), plan.batch_size):
                if cancelled and cancelled():
                    raise CancelledError()
                spans = columns[first : first + plan.batch_size]
                batch = predictor.staging((len(spans), data.shape[0], tile_h, tile_w), data.dtype)
                np.stack([data[:, :, x - read_left : x - read_left + tile_w] for x, _, _ in spans], out=batch)
                maps = predictor.class_maps(batch, thresholds, plan.flip_tta, scale=scale)
                for tile, (x, start, stop) in enumerate(spans):
                    for target, source in zip(strip.arrays(), maps):
                        target[:, start - left : stop - left] = source[tile, kept, start - x : stop - x]
                done_tiles += len(spans)
                if progress:
                    progress(done_tiles / total_tiles, f"tile {done_tiles}/{total_tiles}")
            missing = ~valid[kept, left - read_left : right - read_left]
            for target in strip.arrays():
                target[missing] = 0
            yield ClassStrip(row0, strip, index + 1 == len(rows))


def _tiles_over(starts: list[int], tile: int, length: int, first: int, end: int) -> list[tuple[int, int, int]]:
    """The tiles of the lattice ``starts`` that give [first, end) a pixel: (start, from, to), where [from, to) is
    the part of [first, end) the tile gives."""
    return [(start, max(low, first), min(high, end)) for start, (low, high) in zip(starts, owned_spans(starts, tile, length))
            if high > first and low < end]
