"""Column blocks of wide rasters: the plan and the block loop (the pixel claims between blocks are the
vectoriser's, :class:`.vectorize.ClaimMask`).

Rasters wider than a block run block by block, each block made of whole tiles of the one
global tile grid, so a block's own columns get the same probabilities as in one whole-width
run. A block emits the buildings that start in its own columns, whole, even where they reach
``halo`` columns into the next block; the next block skips the pixels already emitted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rasterio.transform import Affine

from .buildings import VectorizeOptions
from .tiling import tile_starts
from .vectorize import BlockEmission, ClaimMask, StripVectorizer

if TYPE_CHECKING:
    from .workers import VectorizeWorkers


@dataclass(frozen=True)
class ColumnBlock:
    """Grid columns [start, end) inferred together.

    The block emits building pixels in [own_start, emit_end): its own columns plus ``halo``
    columns of the next block's, where a building that starts in its own columns may continue.
    """

    start: int
    end: int
    own_start: int
    own_end: int
    emit_end: int

    @property
    def width(self) -> int:
        return self.end - self.start


def plan_column_blocks(width: int, tile: int, stride: int, block_width: int, halo: int) -> list[ColumnBlock]:
    """Cut a wide grid into column blocks made of whole tiles of the global tile grid.

    A block infers every tile that covers a column in [own_start - 1, emit_end), so those columns
    get exactly the blended probabilities of one run over the whole width. Rasters up to 1.25 x
    ``block_width`` wide are one block.
    """
    xs = tile_starts(width, tile, stride)
    block_width = max(block_width, 2 * stride)
    if width <= 1.25 * block_width or len(xs) < 3:
        return [ColumnBlock(0, width, 0, width, width)]
    count = math.ceil(width / block_width)
    bounds = sorted({round(i * width / count / stride) * stride for i in range(count)} - {width}) + [width]
    blocks: list[ColumnBlock] = []
    for own_start, own_end in zip(bounds[:-1], bounds[1:]):
        emit_end = min(width, own_end + halo)
        used = [x for x in xs if x + tile > own_start - 1 and x < emit_end]
        blocks.append(ColumnBlock(used[0], min(width, used[-1] + tile), own_start, own_end, emit_end))
    return blocks


def block_vectorizers(blocks: list[ColumnBlock], height: int, transform: Affine, pixel_area_m2: float,
                      options: VectorizeOptions, warn: Callable[[str], None] | None = None,
                      pool: VectorizeWorkers | None = None) -> Iterator[tuple[ColumnBlock, StripVectorizer]]:
    """The block loop: one :class:`StripVectorizer` per block, left to right, each skipping the
    pixels the block on its left emitted and recording what it emits beyond its own columns.

    Feed each vectoriser all of its block's strips before taking the next one.
    """
    claimed: ClaimMask | None = None
    for block in blocks:
        claims = ClaimMask(height, block.own_end, block.emit_end) if block.emit_end > block.own_end else None
        emission = None
        if len(blocks) > 1:
            emission = BlockEmission((block.own_start - block.start, block.own_end - block.start),
                                     block.emit_end - block.start, block.start, claimed, claims)
        vectorizer = StripVectorizer(transform * Affine.translation(block.start, 0), pixel_area_m2, block.width,
                                     options, warn=warn, block=emission, pool=pool)
        try:
            yield block, vectorizer
        finally:
            vectorizer.close()
        claimed = claims
