"""Strips of class maps in, buildings out: the streaming vectoriser.

The thresholded class maps (:class:`.instances.ClassMaps`) arrive strip by strip; a building is emitted
once the whole connected building region it belongs to has arrived, so a building that crosses a tile or
strip boundary is one polygon. In column blocks of a wide raster, :class:`ClaimMask` records which pixels a
block emitted beyond its own columns, so that the next block skips them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from rasterio.transform import Affine

from .buildings import Building, VectorizeOptions
from .instances import ClassMaps, class_maps, join_rows, label_instances, rows_from
from .polygons import PolygonJob, polygonise, split_columns

if TYPE_CHECKING:
    from .workers import VectorizeWorkers


class ClaimMask:
    """Which pixels of some grid columns a column block emitted, packed 8 per byte, for all rows.

    The block on the right skips them, so a building that one block emitted whole is not
    emitted again, and the pixels nobody emitted yet are emitted by the next block.
    """

    def __init__(self, height: int, column_start: int, column_end: int) -> None:
        self.column_start, self.column_end = column_start, column_end
        self._bits = np.zeros((height, (column_end - column_start + 7) // 8), np.uint8)

    def mark(self, row: int, mask: np.ndarray) -> None:
        """OR ``mask`` (rows, column_end - column_start) into the claims from grid row ``row``."""
        self._bits[row : row + len(mask)] |= np.packbits(mask, axis=1)

    def get(self, row: int, rows: int) -> np.ndarray:
        return np.unpackbits(self._bits[row : row + rows], axis=1, count=self.column_end - self.column_start).astype(bool)


class StripVectorizer:
    """Turns strips of class maps (top to bottom) into :class:`Building` objects.

    Keeps the rows of building regions that may still continue below; a region
    is emitted when it no longer touches the newest row.

    For one column block of a wide raster (see ``blocks.plan_column_blocks``;
    columns here are the block's own, ``column_offset`` is its first grid column):
    the block emits pixels in columns [``owned_columns[0]``, ``emit_end``) only.
    Regions that start right of its own columns are left to the next block;
    pixels the block on the left emitted (``claimed``) are skipped; what this block
    emits right of its own columns is recorded in ``claims`` for the next block.
    So every pixel is emitted once, and a building that crosses a block boundary
    is one polygon unless it reaches beyond ``emit_end``.
    """

    def __init__(self, transform: Affine, pixel_area_m2: float, width: int, options: VectorizeOptions,
                 warn: Callable[[str], None] | None = None, owned_columns: tuple[int, int] | None = None,
                 emit_end: int | None = None, column_offset: int = 0, claimed: ClaimMask | None = None,
                 claims: ClaimMask | None = None, pool: VectorizeWorkers | None = None) -> None:
        options.validate()
        self.pool = pool  # vectorising worker processes; None: all in this thread
        self.workers = pool.count if pool is not None else 1
        self._pending: list = []  # futures of the parts the workers polygonise
        self.owned_columns = owned_columns or (0, width)
        self.emit_end = width if emit_end is None else emit_end
        self.column_offset = column_offset
        self.claimed, self.claims = claimed, claims
        self._in_blocks = self.owned_columns != (0, width) or self.emit_end != width or claimed is not None
        self.transform = transform
        self.pixel_area_m2 = pixel_area_m2
        self.width = width
        self.options = options
        self.warn = warn
        self._maps = ClassMaps.zeros(0, width)
        self._top = 0  # grid row of the buffer's first row
        self._owned_from = 0  # regions starting above this row were emitted already
        self._warned_cut = False
        self._warned_wide = False

    def add(self, row_start: int, building: np.ndarray, interior: np.ndarray, last: bool) -> list[Building]:
        """The buildings completed by a strip of probabilities: P(interior) + P(border), and P(interior)."""
        return self.add_maps(row_start, class_maps(building, interior, self.options), last)

    def add_maps(self, row_start: int, maps: ClassMaps, last: bool) -> list[Building]:
        """The buildings completed by a strip of thresholded maps (:func:`class_maps`)."""
        if row_start != self._top + len(self._maps):
            raise ValueError("strips must arrive in order without gaps")
        self._maps = join_rows(self._maps, maps) if len(self._maps) else maps
        rows = len(self._maps)
        end = self._top + rows
        max_rows = max(1024, min(self.options.max_buffer_rows, self.options.max_buffer_pixels // max(1, self.width)))
        forced = rows > max_rows and not last
        if forced:
            last = True  # bound memory: cut regions taller than the buffer
            if self.warn and not self._warned_cut:
                self.warn(f"A building region is taller than {max_rows} px; it is cut there.")
                self._warned_cut = True
        instances, regions, region_slices = label_instances(self._maps, self.options)
        owned_until = end
        region_top = np.zeros(len(region_slices) + 1, np.int64)
        region_left = np.zeros(len(region_slices) + 1, np.int64)
        region_right = np.zeros(len(region_slices) + 1, np.int64)
        for index, box in enumerate(region_slices, start=1):
            top = self._top + box[0].start
            region_top[index] = top
            region_left[index], region_right[index] = box[1].start, box[1].stop
            if not last and box[0].stop == rows and top >= self._owned_from:
                owned_until = min(owned_until, top)
        emit_region = (region_top >= self._owned_from) & (region_top < owned_until)
        emit_region &= region_left < self.owned_columns[1]  # the next block owns regions starting right of ours
        emit_region[0] = False
        if self.warn and not self._warned_wide and (emit_region & (region_right > self.emit_end)).any():
            self.warn("A building region reaches further into the next processing block than the blocks overlap; "
                      "it is cut there.")
            self._warned_wide = True
        buildings = self._polygons(instances, regions, emit_region, last)
        self._owned_from = owned_until
        # Keep one row above the unowned part: pieces of emitted regions start there and are skipped.
        # After a forced cut nothing is kept, so what continues below starts as a new region.
        keep_from = end if forced else max(self._top, owned_until - 1)
        cut = keep_from - self._top
        self._maps = rows_from(self._maps, cut)
        self._top = keep_from
        return buildings

    def _emit_mask(self, candidates: np.ndarray) -> np.ndarray:
        """Of the instance pixels of emitted regions: those in this block's columns not claimed yet."""
        if not self._in_blocks:
            return candidates
        mask = candidates.copy()
        mask[:, : self.owned_columns[0]] = False
        mask[:, self.emit_end :] = False
        if self.claimed is not None:
            start = self.claimed.column_start - self.column_offset
            stop = self.claimed.column_end - self.column_offset
            mask[:, start:stop] &= ~self.claimed.get(self._top, len(mask))
        if self.claims is not None:
            start = self.claims.column_start - self.column_offset
            self.claims.mark(self._top, mask[:, start : self.claims.column_end - self.column_offset])
        return mask

    def _polygons(self, instances: np.ndarray, regions: np.ndarray, emit_region: np.ndarray,
                  last: bool) -> list[Building]:
        """The emitted buildings. With worker processes, a strip's parts are polygonised while this
        thread labels the next strip: the buildings come out one call later (all of them by ``last``)."""
        candidates = emit_region[regions] & (instances > 0)
        emit_mask = self._emit_mask(candidates)
        if not emit_mask.any():
            return self._collect() if last else []
        emitted = instances[emit_mask]
        sums = np.bincount(emitted, weights=self._maps.probability[emit_mask]) / 255.0
        pixels = np.bincount(emitted)
        # Instances cut by a block edge or partly emitted by the block on the left may fall apart
        # into pieces: all of them are kept; otherwise stray specks of an instance are dropped.
        partial = np.zeros(len(pixels), bool)
        if emit_mask is not candidates:
            partial = pixels < np.bincount(instances[candidates], minlength=len(pixels))[: len(pixels)]
        labels = np.where(emit_mask, instances, 0)
        scores = sums / np.maximum(pixels, 1)
        to_crs = self.transform * Affine.translation(0, self._top)
        jobs = []
        cuts = split_columns(labels, len(pixels), self.workers)
        for start, stop in zip(cuts[:-1], cuts[1:]):
            piece = to_crs * Affine.translation(start, 0)
            jobs.append(PolygonJob(np.ascontiguousarray(labels[:, start:stop]), partial, scores,
                                   (piece.a, piece.b, piece.d, piece.e, piece.xoff, piece.yoff),
                                   self.pixel_area_m2, self.options))
        if self.pool is None:
            return [building for job in jobs for building in polygonise(job)]
        done = self._collect()
        self._pending = [self.pool.submit(polygonise, job) for job in jobs]
        return done + self._collect() if last else done

    def _collect(self) -> list[Building]:
        """The buildings of every part handed to the workers and not returned yet (waits for them)."""
        if self.pool is None:
            return []
        pending, self._pending = self._pending, []
        return [building for future in pending for building in self.pool.result(future)]
