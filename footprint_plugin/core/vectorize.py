"""Strips of class maps in, buildings out: the streaming vectoriser.

The thresholded class maps (:class:`.instances.ClassMaps`) arrive strip by strip into a buffer; a building
is emitted once the whole connected building region it belongs to has arrived, so a building that crosses
a tile or strip boundary is one polygon. Each strip runs the two stages of :mod:`.pieces`: the regions are
labelled in column pieces and joined across the cuts, the complete ones are chosen here, and their
buildings are made in jobs of about equal size. With a pool of vectorising workers both stages run on every
core, the workers reading the buffer from shared memory; this process only routes pieces and jobs. In a block
of a large raster (:mod:`.blocks`) it runs over the block's window and emits only the regions anchored in the
block's own square.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from rasterio.transform import Affine

from .buildings import Building, VectorizeOptions
from .instances import ClassMaps, class_maps
from .pieces import (
    BlockEdges,
    BuildingsJob,
    BuildingsResult,
    LabelTable,
    RegionJob,
    Regions,
    group_regions,
    join_regions,
    label_regions,
    piece_base,
    vectorize_regions,
)
from .strip_buffer import LocalStripBuffer, SharedStripBuffer

if TYPE_CHECKING:
    from .blocks import BlockRule
    from .workers import VectorizeWorkers

JOBS_PER_WORKER = 4  # more jobs than workers, so that one slow job does not hold the others up


class StripVectorizer:
    """Turns strips of class maps (top to bottom) into :class:`Building` objects.

    Keeps the rows of building regions that may still continue below; a region is emitted when it no longer
    touches the newest row (and no unfinished region starts above it). ``transform`` maps grid pixels to the
    CRS; the strips hold ``width`` grid columns from ``column`` on, and start at grid row ``row``. ``rule``
    (in a block of a large raster) emits only the regions anchored in the block's own square; ``pool`` runs
    the pieces and jobs in worker processes. The buildings of each strip come out in the raster order of their
    first pixel, whatever the number of workers.
    """

    def __init__(self, transform: Affine, pixel_area_m2: float, width: int, options: VectorizeOptions,
                 warn: Callable[[str], None] | None = None, rule: BlockRule | None = None,
                 pool: VectorizeWorkers | None = None, column: int = 0, row: int = 0) -> None:
        options.validate()
        self.transform, self.pixel_area_m2, self.width, self.options = transform, pixel_area_m2, width, options
        self.warn = warn
        self.rule = rule
        self.pool = pool
        self.column, self.first_row = column, row
        # With workers, two buffers take turns: a strip's regions are labelled in one while the buildings of the
        # strip before are still being made from the other.
        self._buffers = [SharedStripBuffer(width), SharedStripBuffer(width)] if pool is not None else [LocalStripBuffer(width)]
        self._buffer = self._buffers[0]
        self._keep = 0  # rows at the top of the buffer that the next strip's round no longer needs
        self._pending: _Round | None = None  # a round whose buildings are still being made
        self._top = row  # grid row of the buffer's first kept row
        self._owned_from = row  # regions starting above this row were emitted already
        self._warned_cut = False
        self._warned_wide = False

    @property
    def buffered_rows(self) -> int:
        """Rows held for regions that may continue below."""
        return self._buffer.rows - self._keep

    def add(self, row_start: int, building: np.ndarray, interior: np.ndarray, last: bool) -> list[Building]:
        """The buildings completed by a strip of probabilities: P(interior) + P(border), and P(interior)."""
        return self.add_maps(row_start, class_maps(building, interior, self.options), last)

    def add_maps(self, row_start: int, maps: ClassMaps, last: bool) -> list[Building]:
        """The buildings completed by a strip of thresholded maps (:func:`.instances.class_maps`). With workers
        they come out one strip later (all of them with the ``last`` strip)."""
        if row_start != self._top + self.buffered_rows:
            raise ValueError("strips must arrive in order without gaps")
        self._next_buffer(maps)
        rows = self._buffer.rows
        end = self._top + rows
        max_rows = max(1024, min(self.options.max_buffer_rows, self.options.max_buffer_pixels // max(1, self.width)))
        forced = rows > max_rows and not last
        if forced:
            last = True  # bound memory: cut regions taller than the buffer
            self._warn_once("_warned_cut", f"A building region is taller than {max_rows} px; it is cut there.")
        pieces = self._submit_regions()
        done = self._finish(self._pending) if self._pending is not None else []
        labelled, joined, owner, cuts = self._regions(pieces)
        emit, owned_until = self._choose(joined, rows, last)
        self._pending = self._submit_buildings(labelled, joined, owner, np.flatnonzero(emit), cuts, last)
        if last or self.pool is None:
            done += self._finish(self._pending)
            self._pending = None
        self._owned_from = owned_until
        # Keep one row above the unfinished part: pieces of emitted regions start there and are skipped.
        # After a forced cut nothing is kept, so what continues below starts as a new region.
        keep_from = end if forced else max(self._top, owned_until - 1)
        self._keep = keep_from - self._top
        self._top = keep_from
        return done

    def _next_buffer(self, maps: ClassMaps) -> None:
        """This strip's buffer: the rows the last round kept, then the strip (in the other buffer, with workers)."""
        if len(self._buffers) == 1:
            self._buffer.drop(self._keep)
        else:
            current = self._buffer
            self._buffer = self._buffers[1] if current is self._buffers[0] else self._buffers[0]
            self._buffer.drop(self._buffer.rows)
            self._buffer.append(ClassMaps(*(array[self._keep :] for array in current.maps().arrays())))
        self._keep = 0
        self._buffer.append(maps)

    def _submit_regions(self) -> tuple[list[int], list]:
        """Stage 1 handed out: the buffer's building regions, labelled in column pieces."""
        pieces = self.pool.count if self.pool is not None else 1
        cuts = [self.width * i // pieces for i in range(pieces + 1)]
        view = self._buffer.view()
        jobs = [RegionJob(view, (first, end)) for first, end in zip(cuts[:-1], cuts[1:]) if end > first]
        return cuts, self._submit(label_regions, jobs)

    def _regions(self, submitted: tuple[list[int], list]) -> tuple[Regions, Regions, np.ndarray, list[int]]:
        """Stage 1 collected: the regions as labelled in the pieces, the regions joined across the cuts, for each
        labelled region the joined one it belongs to, and the cuts."""
        cuts, handles = submitted
        labelled = Regions.join(self._collect(handles))
        joined, owner = join_regions(labelled, self._buffer.labels(), cuts)
        return labelled, joined, owner, cuts

    def _choose(self, regions: Regions, rows: int, last: bool) -> tuple[np.ndarray, int]:
        """Which regions are emitted now: those that start at or below the rows already done, are complete,
        and start above the first unfinished one (and, in a block, are anchored in its own square)."""
        top = regions.top + self._top
        fresh = top >= self._owned_from
        unfinished = fresh & (regions.bottom == rows) if not last else np.zeros(len(top), bool)
        owned_until = int(top[unfinished].min()) if unfinished.any() else self._top + rows
        emit = fresh & (top < owned_until)
        if self.rule is not None:
            emit &= self._meets_own(regions)
        return emit, owned_until

    def _meets_own(self, regions: Regions) -> np.ndarray:
        """Regions that reach into the block's own square: they may hold instances anchored there."""
        top, bottom, left, right = self._own()
        return (regions.bottom > top) & (regions.top < bottom) & (regions.right > left) & (regions.left < right)

    def _own(self) -> tuple[int, int, int, int]:
        """The block's own square in buffer rows and columns."""
        top, bottom, left, right = self.rule.own
        shift = self._top - self.first_row
        return top - shift, bottom - shift, left, right

    def _submit_buildings(self, labelled: Regions, joined: Regions, owner: np.ndarray, emitted: np.ndarray,
                          cuts: list[int], last: bool) -> _Round:
        """Stage 2 handed out: the buildings of the ``emitted`` joined regions, in jobs of about equal size."""
        jobs_wanted = JOBS_PER_WORKER * (self.pool.count if self.pool is not None else 1)
        groups = [emitted[group] for group in group_regions(joined.take(emitted), jobs_wanted)]
        job_of = np.full(len(joined.labels), -1)
        number = np.zeros(len(joined.labels), np.int64)
        for index, group in enumerate(groups):
            job_of[group] = index
            number[group] = np.arange(1, len(group) + 1)
        labelled_job = job_of[owner]
        view = self._buffer.view()
        block = None
        if self.rule is not None:
            rule = self.rule
            block = BlockEdges(self._own(), rule.cut_top and self._top == self.first_row, rule.cut_left, rule.cut_right,
                               rule.cut_bottom and last, rule.row_bounds, rule.column_bounds, rule.halo)
        jobs = []
        for index, group in enumerate(groups):
            box = (int(joined.top[group].min()), int(joined.bottom[group].max()), int(joined.left[group].min()),
                   int(joined.right[group].max()))
            tables = _tables(labelled, labelled_job == index, number[owner], box, cuts, self._buffer.rows)
            jobs.append(BuildingsJob(view, box, tables, self.transform, (self.column, self._top), self.pixel_area_m2,
                                     self.options, block))
        return _Round(self._top, jobs, self._submit(vectorize_regions, jobs))

    def _finish(self, round_: _Round) -> list[Building]:
        """Stage 2 collected: a round's buildings in the raster order of their first pixel."""
        results: list[BuildingsResult] = self._collect(round_.handles)
        buildings, order = [], []
        for result in results:
            buildings += result.buildings
            order.append(result.order)
            if result.cut:
                self._warn_once("_warned_wide", "A building is larger than the blocks' halo; it comes out in pieces "
                                                "cut at the blocks' edges (raise --block-halo).")
        if not buildings:
            return []
        return [buildings[i] for i in np.argsort(np.concatenate(order), kind="stable")]

    def _submit(self, function, jobs: list) -> list:
        """Hand the jobs to the workers (futures), or run them here (results)."""
        if self.pool is None:
            return [function(job) for job in jobs]
        return [self.pool.submit(function, job) for job in jobs]

    def _collect(self, handles: list) -> list:
        return handles if self.pool is None else [self.pool.result(handle) for handle in handles]

    def _warn_once(self, flag: str, message: str) -> None:
        if self.warn and not getattr(self, flag):
            self.warn(message)
            setattr(self, flag, True)

    def close(self) -> None:
        """Release the buffers (their shared memory); a round still in the workers is waited for first."""
        if self._pending is not None and self.pool is not None:
            for handle in self._pending.handles:
                handle.cancel()
            self._pending = None
        for buffer in self._buffers:
            buffer.close()


@dataclass
class _Round:
    """A strip's buildings jobs, handed out: the buffer's first grid row then, the jobs and their futures."""

    top: int
    jobs: list[BuildingsJob]
    handles: list


def _tables(labelled: Regions, mine: np.ndarray, number: np.ndarray, box: tuple[int, int, int, int], cuts: list[int],
            rows: int) -> list[LabelTable]:
    """For each column piece the box overlaps: which of its labels make up which of the job's regions."""
    tables = []
    for first, end in zip(cuts[:-1], cuts[1:]):
        if end <= box[2] or first >= box[3]:
            continue
        base = piece_base(first, rows)
        inside = (labelled.labels > base) & (labelled.labels <= base + (end - first) * rows)
        count = int(labelled.labels[inside].max() - base) if inside.any() else 0
        table = np.zeros(count + 1, np.int32)
        chosen = inside & mine
        table[labelled.labels[chosen] - base] = number[chosen]
        tables.append(LabelTable((first, end), base, table))
    return tables
