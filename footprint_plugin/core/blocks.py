"""Blocks of a large raster: squares of the model grid that run independently of each other.

Each block vectorises its own square plus a halo of ``halo`` px around it (its *window*) and keeps the
buildings (instances) whose anchor, their first pixel in raster order (top row, then leftmost), lies in its own
square. The model's tiles lie on one lattice over the whole grid and every pixel takes the tile whose centre is
nearest, so a window's pixels get exactly the maps of one run over the whole grid
(:func:`.inference.iter_class_strips`). An instance is grown from its seed into its building region by its
neighbourhood only, so one anchored in the own square, and reaching less than the halo beyond it, comes out
exactly as in one run, even where its building region reaches out of the window. So blocks need no
coordination: they run in any order, on any machine, and a run resumes after the blocks it finished.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BlockRule:
    """Which instances a block emits (:class:`.pieces.BlockEdges`), in its window's rows and columns: those
    anchored in ``own``. A window side inside the grid (``cut_*``) may cut a building region."""

    own: tuple[int, int, int, int]
    cut_top: bool
    cut_left: bool
    cut_right: bool
    cut_bottom: bool
    row_bounds: np.ndarray  # the plan's own squares, in grid rows and columns
    column_bounds: np.ndarray
    halo: int


@dataclass(frozen=True)
class Block:
    """One block: its own rows and columns of the grid, (top, bottom, left, right) as [top, bottom) x
    [left, right), and its window: the own square and the halo, within the grid."""

    index: int
    own: tuple[int, int, int, int]
    window: tuple[int, int, int, int]

    @property
    def window_pixels(self) -> int:
        top, bottom, left, right = self.window
        return (bottom - top) * (right - left)


@dataclass(frozen=True)
class BlockPlan:
    """The blocks of a ``height`` x ``width`` grid, row by row."""

    height: int
    width: int
    row_bounds: np.ndarray
    column_bounds: np.ndarray
    halo: int
    blocks: tuple[Block, ...]

    def __len__(self) -> int:
        return len(self.blocks)

    def rule(self, block: Block) -> BlockRule | None:
        """The block's emission rule in its window's rows and columns (None for a plan of one block)."""
        if len(self.blocks) == 1:
            return None
        top, bottom, left, right = block.window
        own = (block.own[0] - top, block.own[1] - top, block.own[2] - left, block.own[3] - left)
        return BlockRule(own, top > 0, left > 0, right < self.width, bottom < self.height, self.row_bounds,
                         self.column_bounds, self.halo)


def plan_blocks(height: int, width: int, size: int, halo: int) -> BlockPlan:
    """Cut a ``height`` x ``width`` grid into blocks of about ``size`` px, row by row; a side up to 1.25 x
    ``size`` is not cut, so most rasters are one block (the window: the whole grid)."""
    rows, columns = _bounds(height, size), _bounds(width, size)
    blocks = []
    for top, bottom in zip(rows[:-1], rows[1:]):
        for left, right in zip(columns[:-1], columns[1:]):
            window = (max(0, top - halo), min(height, bottom + halo), max(0, left - halo), min(width, right + halo))
            blocks.append(Block(len(blocks), (int(top), int(bottom), int(left), int(right)), window))
    return BlockPlan(height, width, rows, columns, halo, tuple(blocks))


def _bounds(length: int, size: int) -> np.ndarray:
    count = 1 if length <= 1.25 * size else math.ceil(length / size)
    return np.array([round(i * length / count) for i in range(count + 1)], np.int64)
