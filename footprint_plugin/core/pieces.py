"""The two stages of vectorising the strip buffer, each in pieces that run here or in vectorising workers.

1. **Regions** (:func:`label_regions`): each column piece of the buffer labels its connected building
   regions into the buffer's label plane (labels of one piece never collide with another's), and reports
   their boxes, first pixels and sizes. The vectoriser joins the regions that cross a cut between pieces
   (:func:`join_regions`), decides which regions are complete, and groups those into jobs of about equal
   size.
2. **Buildings** (:func:`vectorize_regions`): a job's regions, and nothing else in its box, get their seeds,
   their instances (seeds grown into the region), polygons and outlines.

No stage looks at a whole strip in one process, and the buildings do not depend on how the buffer was cut:
each region is labelled, grown and outlined alike whatever piece or job it falls into. In shared memory
(:class:`.strip_buffer.SharedStripBuffer`) a job finds the planes by name (:class:`.strip_buffer.BufferView`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from rasterio.transform import Affine
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .buildings import Building, VectorizeOptions
from .instances import grow_instances
from .polygons import polygonise
from .strip_buffer import BufferView

_CROSS = ndimage.generate_binary_structure(2, 1)


# ----------------------------------------------------------------------------- stage 1: regions


@dataclass
class RegionJob:
    buffer: BufferView
    columns: tuple[int, int]


@dataclass
class Regions:
    """Building regions by label: their boxes in buffer rows and columns ([top, bottom), [left, right)), the
    raster-order index (row * width + column) of their first pixel, and their pixel counts."""

    labels: np.ndarray
    top: np.ndarray
    bottom: np.ndarray
    left: np.ndarray
    right: np.ndarray
    first: np.ndarray
    pixels: np.ndarray
    cpu_seconds: float = 0.0

    @classmethod
    def join(cls, parts: list[Regions]) -> Regions:
        return cls(*(np.concatenate([getattr(part, name) for part in parts])
                     for name in ("labels", "top", "bottom", "left", "right", "first", "pixels")))

    def take(self, index: np.ndarray) -> Regions:
        return Regions(*(getattr(self, name)[index] for name in ("labels", "top", "bottom", "left", "right", "first",
                                                                 "pixels")))


def label_regions(job: RegionJob) -> Regions:
    """Label the building regions of one column piece into the label plane; their boxes, first pixels, sizes."""
    started = time.process_time()
    building, _, _, labels = job.buffer.planes()
    first, end = job.columns
    local, count = ndimage.label(building[:, first:end], structure=_CROSS)
    base = piece_base(first, job.buffer.rows)
    labels[:, first:end] = np.where(local > 0, local + base, 0)
    boxes = ndimage.find_objects(local)
    top = np.fromiter((box[0].start for box in boxes), np.int64, count)
    bottom = np.fromiter((box[0].stop for box in boxes), np.int64, count)
    left = np.fromiter((box[1].start for box in boxes), np.int64, count) + first
    right = np.fromiter((box[1].stop for box in boxes), np.int64, count) + first
    flat = local.reshape(-1)
    where = np.flatnonzero(flat)
    firsts = np.zeros(count + 1, np.int64)
    firsts[flat[where][::-1]] = where[::-1]  # the last write wins: each region's first pixel
    rows, columns = np.divmod(firsts[1:], end - first)
    pixels = np.bincount(flat[where], minlength=count + 1)[1:]
    return Regions(np.arange(1, count + 1, dtype=np.int64) + base, top, bottom, left, right,
                   rows * job.buffer.width + columns + first, pixels, time.process_time() - started)


def piece_base(first: int, rows: int) -> int:
    """What a piece starting at column ``first`` adds to its labels: more than any label left of it reaches."""
    return first * rows


def join_regions(regions: Regions, labels: np.ndarray, cuts: list[int]) -> tuple[Regions, np.ndarray]:
    """Regions that cross the cuts between pieces joined into one (labelled by their smallest label): the
    joined regions, and for each input region the index of the joined region it belongs to."""
    pairs = []
    for cut in cuts[1:-1]:
        left, right = labels[:, cut - 1], labels[:, cut]
        touching = (left > 0) & (right > 0)
        if touching.any():
            pairs.append(np.column_stack([left[touching], right[touching]]))
    index = np.arange(len(regions.labels))
    if not pairs:
        return regions, index
    edges = np.unique(np.concatenate(pairs), axis=0)
    a, b = np.searchsorted(regions.labels, edges[:, 0]), np.searchsorted(regions.labels, edges[:, 1])  # sorted labels
    count = len(regions.labels)
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(count, count))
    _, component = connected_components(graph, directed=False)
    groups, owner = np.unique(component, return_inverse=True)
    joined = Regions(np.full(len(groups), np.iinfo(np.int64).max), np.full(len(groups), np.iinfo(np.int64).max),
                     np.zeros(len(groups), np.int64), np.full(len(groups), np.iinfo(np.int64).max),
                     np.zeros(len(groups), np.int64), np.full(len(groups), np.iinfo(np.int64).max),
                     np.zeros(len(groups), np.int64))
    np.minimum.at(joined.labels, owner, regions.labels)
    np.minimum.at(joined.top, owner, regions.top)
    np.maximum.at(joined.bottom, owner, regions.bottom)
    np.minimum.at(joined.left, owner, regions.left)
    np.maximum.at(joined.right, owner, regions.right)
    np.minimum.at(joined.first, owner, regions.first)
    np.add.at(joined.pixels, owner, regions.pixels)
    return joined, owner


# ----------------------------------------------------------------------------- stage 2: buildings


@dataclass
class LabelTable:
    """Which of one column piece's region labels belong to a job's regions: ``table[label - base]`` is the
    job's region number (1..n), 0 for the others."""

    columns: tuple[int, int]
    base: int
    table: np.ndarray


@dataclass
class BuildingsJob:
    """Regions to turn into buildings: a box of the buffer, and the labels of each region in its pieces."""

    buffer: BufferView
    box: tuple[int, int, int, int]  # top, bottom, left, right in buffer rows and columns
    tables: list[LabelTable]  # one per column piece the box overlaps
    to_crs: Affine  # grid pixel -> CRS
    origin: tuple[int, int]  # the grid column and row of the buffer's (0, 0)
    pixel_area_m2: float
    options: VectorizeOptions
    block: BlockEdges | None = None  # in a block of a large raster: which instances it emits


@dataclass
class BlockEdges:
    """A block's rules in buffer rows and columns (see :mod:`.blocks`).

    An instance is *whole* when no block whose own square it reaches sees it cut, that is when it fits in the
    windows of all of them (``row_bounds``/``column_bounds``: the own squares' bounds in grid rows and columns,
    ``halo``) and touches no ``cut_*`` side here. The block emits the whole instances anchored in ``own`` (their
    first pixel), and of the others, larger than the halo, the part in ``own``: each pixel once, from any block.
    """

    own: tuple[int, int, int, int]
    cut_top: bool  # the buffer's first row is the window's first, inside the raster
    cut_left: bool
    cut_right: bool
    cut_bottom: bool  # the buffer's last row is the window's last, inside the raster
    row_bounds: np.ndarray
    column_bounds: np.ndarray
    halo: int


@dataclass
class BuildingsResult:
    buildings: list[Building]
    order: np.ndarray  # per building: the buffer raster-order index of its instance's first pixel
    cut: bool = False  # an emitted instance touches a cut side of a block's window
    cpu_seconds: float = 0.0  # of this job, in the process that ran it


def vectorize_regions(job: BuildingsJob) -> BuildingsResult:
    """Seeds, instances, polygons and outlines of the job's regions."""
    started = time.process_time()
    _, seed_plane, probability_plane, label_plane = job.buffer.planes()
    top, bottom, left, right = job.box
    box = (slice(top, bottom), slice(left, right))
    regions = np.zeros((bottom - top, right - left), np.int32)
    for table in job.tables:
        first, end = max(table.columns[0], left), min(table.columns[1], right)
        found = label_plane[top:bottom, first:end]
        regions[:, first - left : end - left] = table.table[np.where(found > 0, found - table.base, 0)]
    barrier = _barrier(regions, job) if job.block is not None else None
    instances = grow_instances(regions, ndimage.find_objects(regions), seed_plane[box] & (regions > 0), job.options,
                               barrier)
    cut, partial = False, None
    if job.block is not None:
        instances, partial = _block_instances(instances, job)
        cut = bool(partial.any())
    if not instances.any():
        return BuildingsResult([], np.zeros(0, np.int64), cut, time.process_time() - started)
    emit_mask = instances > 0
    emitted = instances[emit_mask]
    sums = np.bincount(emitted, weights=probability_plane[box][emit_mask]) / 255.0
    pixels = np.bincount(emitted)
    partial = np.zeros(len(pixels), bool) if partial is None else partial[: len(pixels)]
    labels = np.where(emit_mask, instances, 0)
    to_crs = job.to_crs
    matrix = (to_crs.a, to_crs.b, to_crs.d, to_crs.e, to_crs.xoff, to_crs.yoff)
    buildings, values = polygonise(labels, partial, sums / np.maximum(pixels, 1), matrix, job.pixel_area_m2, job.options,
                                   origin=(left + job.origin[0], top + job.origin[1]))
    firsts = _first_pixels(labels, len(pixels))
    rows, columns = np.divmod(firsts[values], right - left)
    order = (rows + top) * job.buffer.width + columns + left
    return BuildingsResult(buildings, order, cut, time.process_time() - started)


def _barrier(regions: np.ndarray, job: BuildingsJob) -> np.ndarray | None:
    """The job box's pixels on the cut sides of the block's window (see :func:`.instances.grow_instances`)."""
    top, bottom, left, right = job.box
    edges = job.block
    barrier = np.zeros(regions.shape, bool)
    if edges.cut_top and top == 0:
        barrier[0] = True
    if edges.cut_left and left == 0:
        barrier[:, 0] = True
    if edges.cut_right and right == job.buffer.width:
        barrier[:, -1] = True
    if edges.cut_bottom and bottom == job.buffer.rows:
        barrier[-1] = True
    barrier &= regions > 0
    return barrier if barrier.any() else None


def _block_instances(instances: np.ndarray, job: BuildingsJob) -> tuple[np.ndarray, np.ndarray]:
    """What the block emits of its instances (the others 0): the whole ones anchored in its own square, and the
    own square's part of those larger than the halo; and per label whether it is such a part."""
    edges, (top, bottom, left, right) = job.block, job.box
    count = int(instances.max()) + 1
    labels = np.arange(count)
    boxes = ndimage.find_objects(instances, count - 1)
    present = np.array([True] + [found is not None for found in boxes])
    extent = np.array([(0, 0, 0, 0)] + [(b[0].start, b[0].stop, b[1].start, b[1].stop) if b else (0, 0, 0, 0)
                                         for b in boxes], np.int64).reshape(-1, 4)
    extent += (top, top, left, left)  # buffer rows and columns
    column, row = job.origin
    whole = present & _fits_the_windows(extent[:, 0] + row, extent[:, 1] + row, edges.row_bounds, edges.halo)
    whole &= _fits_the_windows(extent[:, 2] + column, extent[:, 3] + column, edges.column_bounds, edges.halo)
    cut_labels = []
    if edges.cut_top and top == 0:
        cut_labels.append(instances[0])
    if edges.cut_left and left == 0:
        cut_labels.append(instances[:, 0])
    if edges.cut_right and right == job.buffer.width:
        cut_labels.append(instances[:, -1])
    if edges.cut_bottom and bottom == job.buffer.rows:
        cut_labels.append(instances[-1])
    for seen in cut_labels:
        whole[seen] = False
    own_top, own_bottom, own_left, own_right = edges.own
    first_row, first_column = np.divmod(_first_pixels(instances, count), right - left)
    first_row, first_column = first_row + top, first_column + left
    anchored = (first_row >= own_top) & (first_row < own_bottom) & (first_column >= own_left) & (first_column < own_right)
    emit_whole = whole & anchored & (labels > 0)
    partial = present & ~whole & (labels > 0)
    in_own = np.zeros(instances.shape, bool)
    in_own[max(own_top - top, 0) : max(own_bottom - top, 0), max(own_left - left, 0) : max(own_right - left, 0)] = True
    keep = emit_whole[instances] | (partial[instances] & in_own)
    instances = np.where(keep, instances, 0)
    return instances, partial & (np.bincount(instances.reshape(-1), minlength=count) > 0)


def _fits_the_windows(first: np.ndarray, end: np.ndarray, bounds: np.ndarray, halo: int) -> np.ndarray:
    """Whether spans [first, end) of grid rows (or columns) fit in the windows of every block whose own span they
    reach: own spans between ``bounds``, windows ``halo`` wider on each side."""
    lowest = np.searchsorted(bounds, first, "right") - 1
    highest = np.searchsorted(bounds, np.maximum(end - 1, first), "right") - 1
    lowest, highest = np.clip(lowest, 0, len(bounds) - 2), np.clip(highest, 0, len(bounds) - 2)
    return (first >= bounds[highest] - halo) & (end <= bounds[lowest + 1] + halo)


def _first_pixels(labels: np.ndarray, count: int) -> np.ndarray:
    """Per label: the raster-order index of its first pixel in ``labels``."""
    flat = labels.reshape(-1)
    where = np.flatnonzero(flat)
    firsts = np.zeros(count, np.int64)
    firsts[flat[where][::-1]] = where[::-1]
    return firsts


def group_regions(regions: Regions, jobs: int) -> list[np.ndarray]:
    """The regions split into at most ``jobs`` groups of neighbouring regions (by their left column) with
    about equal pixel counts; indexes into ``regions``."""
    if not len(regions.labels):
        return []
    order = np.argsort(regions.left, kind="stable")
    if jobs <= 1:
        return [order]
    weight = np.cumsum(regions.pixels[order])
    cuts = np.searchsorted(weight, weight[-1] * np.arange(1, jobs) / jobs)
    return [group for group in np.split(order, np.unique(cuts)) if len(group)]
