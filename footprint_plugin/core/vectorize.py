"""From 3-class probabilities to building polygons.

Buildings are seeded from the interior class and grown into interior + border,
so touching buildings separated by predicted border come out as separate
polygons. The thresholded class maps (:class:`ClassMaps`) arrive strip by strip;
a building is emitted once the whole connected building region it belongs to has
arrived, so a building that crosses a tile or strip boundary is one polygon.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from rasterio.features import shapes
from rasterio.transform import Affine
from scipy import ndimage
from shapely import affinity
from shapely.geometry import Polygon, shape
from shapely.validation import make_valid

from .errors import FootprintError

if TYPE_CHECKING:
    from .blocks import ClaimMask
    from .workers import VectorizeWorkers

REGULARIZE_MODES = ("none", "simplify", "orthogonal")
_CROSS = ndimage.generate_binary_structure(2, 1)


@dataclass
class VectorizeOptions:
    """Post-processing settings; thresholds default to the model card's."""

    mask_threshold: float = 0.5  # P(interior) + P(border) above this is building
    seed_threshold: float = 0.5  # P(interior) above this seeds a building
    min_seed_px: int = 4
    min_area_m2: float = 5.0
    fill_holes_m2: float = 20.0  # holes smaller than this are filled
    regularize: str = "orthogonal"
    simplify_px: float = 0.75
    max_buffer_rows: int = 8192  # a building region taller than this is cut ...
    max_buffer_pixels: int = 16_000_000  # ... or than this many pixels of raster width (bounds memory)
    instances: str = "three_class"  # or "binary": ignore the border class, one building per region

    def validate(self) -> None:
        if self.regularize not in REGULARIZE_MODES:
            raise FootprintError(f"Regularisation {self.regularize!r} unknown; choose one of {', '.join(REGULARIZE_MODES)}.")
        if self.min_area_m2 < 0:
            raise FootprintError("Minimum area must not be negative.")
        if not 0 < self.mask_threshold < 1 or not 0 < self.seed_threshold < 1:
            raise FootprintError("Thresholds must lie between 0 and 1.")


@dataclass
class Building:
    """One footprint: polygon in the raster's CRS, ground area and mean building probability."""

    geometry: Polygon
    area_m2: float
    score: float


@dataclass
class ClassMaps:
    """Rows of the model's output, thresholded: all the vectoriser needs, 3 bytes a pixel."""

    building: np.ndarray  # bool: P(interior) + P(border) above the mask threshold
    seeds: np.ndarray  # bool: building, and P(interior) above the seed threshold (binary instances: = building)
    probability: np.ndarray  # uint8: P(interior) + P(border), x 255 and rounded (scores, probability raster)

    def __len__(self) -> int:
        return len(self.building)

    @classmethod
    def zeros(cls, rows: int, width: int) -> ClassMaps:
        """Nothing found, in ``rows`` x ``width`` px."""
        return cls(np.zeros((rows, width), bool), np.zeros((rows, width), bool), np.zeros((rows, width), np.uint8))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The three maps, in the constructor's order."""
        return self.building, self.seeds, self.probability


def class_maps(building_prob: np.ndarray, interior_prob: np.ndarray, options: VectorizeOptions) -> ClassMaps:
    """Threshold one strip of probabilities (float32 is fastest) into :class:`ClassMaps`."""
    building = building_prob > options.mask_threshold
    seeds = building if options.instances == "binary" else (interior_prob > options.seed_threshold) & building
    probability = np.empty(building_prob.shape, np.float32)
    np.multiply(building_prob, 255.0, out=probability)
    np.clip(probability, 0.0, 255.0, out=probability)
    np.rint(probability, out=probability)
    return ClassMaps(building, seeds, probability.astype(np.uint8))


def _join(first: ClassMaps, second: ClassMaps) -> ClassMaps:
    return ClassMaps(*(np.concatenate(pair) for pair in zip(first.arrays(), second.arrays())))


def _rows(maps: ClassMaps, start: int) -> ClassMaps:
    return ClassMaps(*(array[start:] for array in maps.arrays()))


def label_instances(maps: ClassMaps, options: VectorizeOptions) -> tuple[np.ndarray, np.ndarray, list]:
    """Instance labels, connected building-region labels (both int32, 0 = background) and the
    regions' bounding boxes (``ndimage.find_objects``)."""
    building = maps.building
    regions, _ = ndimage.label(building, structure=_CROSS)
    seeds, n_seeds = ndimage.label(maps.seeds, structure=_CROSS)
    where = np.flatnonzero(maps.seeds)
    values = seeds.reshape(-1)[where]
    if n_seeds and options.min_seed_px > 1:  # drop tiny seeds, looking at seed pixels only
        small = np.bincount(values, minlength=n_seeds + 1) < options.min_seed_px
        small[0] = False
        drop = small[values]
        if drop.any():
            seeds.reshape(-1)[where[drop]] = 0
            where, values = where[~drop], values[~drop]
    instances = np.asarray(seeds, dtype=np.int32)  # ndimage.label gives int32 already: no copy
    unassigned = building & (instances == 0)
    # Grow seeds into the building mask one pixel ring at a time: a few rings over the whole
    # array (most borders are thin), then region by region for what is left.
    for _ in range(3):
        if not _grow_once(instances, unassigned):
            break
    boxes = ndimage.find_objects(regions)
    if unassigned.any():
        seeds_in = _seeds_per_region(values, regions.reshape(-1)[where], n_seeds, len(boxes) + 1)
        _fill_from_only_seed(instances, regions, unassigned, seeds_in)
        for region in np.flatnonzero(seeds_in.count > 1):
            _fill_from_nearest_seed(instances, regions, unassigned, boxes[region - 1], region)
        # Building regions without any seed become one building each, numbered after the seeds
        # in the order of the regions (raster order, as ndimage.label would number them).
        seedless = seeds_in.count == 0
        seedless[0] = False
        renumber = np.zeros(len(seedless), np.int32)
        renumber[seedless] = int(instances.max()) + np.arange(1, int(seedless.sum()) + 1, dtype=np.int32)
        where = np.flatnonzero(unassigned)
        instances.reshape(-1)[where] = renumber[regions.reshape(-1)[where]]
    return instances, np.asarray(regions, dtype=np.int32), boxes


@dataclass
class _RegionSeeds:
    """Per building region (index = region label): how many seed instances it holds, and one of them."""

    count: np.ndarray
    label: np.ndarray


def _seeds_per_region(seed_labels: np.ndarray, seed_regions: np.ndarray, n_seeds: int, count: int) -> _RegionSeeds:
    """Which seed instances each of ``count`` regions holds, from the seed pixels' instance and
    region labels (an instance lies in one region)."""
    region_of = np.zeros(n_seeds + 1, np.int64)
    region_of[seed_labels] = seed_regions
    present = np.flatnonzero(region_of)
    label = np.zeros(count, np.int32)
    label[region_of[present]] = present
    return _RegionSeeds(np.bincount(region_of[present], minlength=count), label)


def _fill_from_only_seed(instances: np.ndarray, regions: np.ndarray, unassigned: np.ndarray,
                         seeds_in: _RegionSeeds) -> None:
    """Unassigned pixels of a region with one seed instance: that instance (its nearest seed)."""
    where = np.flatnonzero(unassigned)
    region = regions.reshape(-1)[where]
    take = seeds_in.count[region] == 1
    instances.reshape(-1)[where[take]] = seeds_in.label[region[take]]
    unassigned.reshape(-1)[where[take]] = False


def _fill_from_nearest_seed(instances: np.ndarray, regions: np.ndarray, unassigned: np.ndarray,
                            box: tuple[slice, slice], region: int) -> None:
    """Unassigned pixels of one region with several seed instances: the nearest seed pixel's."""
    inside = regions[box] == region
    fill = inside & unassigned[box]
    if not fill.any():
        return
    own_seeds = np.where(inside, instances[box], 0)
    nearest = ndimage.distance_transform_edt(own_seeds == 0, return_distances=False, return_indices=True)
    instances[box][fill] = own_seeds[nearest[0][fill], nearest[1][fill]]
    unassigned[box][fill] = False


def _grow_once(instances: np.ndarray, unassigned: np.ndarray) -> bool:
    """Give each unassigned pixel next to a labelled one (4-neighbourhood) that label; True if any changed.

    A 4-neighbour of a building pixel that is building belongs to the same region, so growth never
    crosses from one building region into another. Works on the bounding box of the unassigned
    pixels only (plus one pixel), with four shifted maxima instead of a generic filter.
    """
    rows, cols = np.flatnonzero(unassigned.any(axis=1)), np.flatnonzero(unassigned.any(axis=0))
    if not len(rows):
        return False
    box = (slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2))
    part, todo = instances[box], unassigned[box]
    grown = _dilate_cross(part)
    take = todo & (grown > 0)
    if not take.any():
        return False
    part[take] = grown[take]
    todo &= ~take
    return True


def _dilate_cross(values: np.ndarray) -> np.ndarray:
    """Maximum over each pixel and its 4 neighbours (``grey_dilation`` with a cross, exactly)."""
    out = values.copy()
    np.maximum(out[1:], values[:-1], out=out[1:])
    np.maximum(out[:-1], values[1:], out=out[:-1])
    np.maximum(out[:, 1:], values[:, :-1], out=out[:, 1:])
    np.maximum(out[:, :-1], values[:, 1:], out=out[:, :-1])
    return out


# Chosen with tools/outline_shapes.py on the test split (docs/model_report.md, "Outlines").
ORTHOGONAL_MIN_RUN_PX = 1.0  # wall pieces shorter than this merge into their neighbours (pixel steps)
ORTHOGONAL_MIN_IOU = 0.8  # a right-angled outline further than this from the mask's is not used
ORTHOGONAL_SIMPLIFY_PX = 1.0  # walls are found on the outline simplified this much


def dominant_direction(ring: np.ndarray) -> float:
    """The angle (degrees) of the axis pair a closed ring's edges follow (``ring``: (n, 2) coordinates).

    A length-weighted circular mean of the edge directions taken four times (so 0, 90, 180 and
    270 degrees agree): it moves little when the outline changes a little, unlike the minimum
    rotated rectangle, which jumps between orientations on roundish shapes.
    """
    steps = np.diff(np.asarray(ring, dtype=np.float64), axis=0)
    lengths = np.hypot(steps[:, 0], steps[:, 1])
    total = lengths.sum()
    if total <= 0:
        return 0.0
    four = 4 * np.arctan2(steps[:, 1], steps[:, 0])
    return math.degrees(math.atan2(float(lengths @ np.sin(four)), float(lengths @ np.cos(four))) / 4)


def _axis_runs(coords: list[tuple[float, float]]) -> list[list[float]]:
    """Edges snapped to the nearer axis, consecutive edges on one axis merged:
    [axis (0 = horizontal), length-weighted coordinate sum, length], alternating axes around the ring."""
    runs: list[list[float]] = []
    n = len(coords)
    for i in range(n):
        (ax, ay), (bx, by) = coords[i], coords[(i + 1) % n]
        length = math.hypot(bx - ax, by - ay)
        if length == 0:
            continue
        axis = 0 if abs(bx - ax) >= abs(by - ay) else 1
        value = (ay + by) / 2 if axis == 0 else (ax + bx) / 2
        if runs and runs[-1][0] == axis:
            runs[-1][1] += value * length
            runs[-1][2] += length
        else:
            runs.append([axis, value * length, length])
    if len(runs) > 1 and runs[0][0] == runs[-1][0]:
        last = runs.pop()
        runs[0][1] += last[1]
        runs[0][2] += last[2]
    return runs


def _merge_short_runs(runs: list[list[float]], min_length: float) -> list[list[float]]:
    """Drop the shortest run while it is shorter than ``min_length`` (and more than a rectangle is
    left), joining its two neighbours, which lie on the other axis, into one."""
    runs = [list(run) for run in runs]
    while len(runs) > 4:
        index = min(range(len(runs)), key=lambda i: runs[i][2])
        if runs[index][2] >= min_length:
            break
        before, after = (index - 1) % len(runs), (index + 1) % len(runs)
        runs[before][1] += runs[after][1]
        runs[before][2] += runs[after][2]
        for drop in sorted({index, after}, reverse=True):
            runs.pop(drop)
    return runs


def orthogonalize(polygon: Polygon, min_run: float = ORTHOGONAL_MIN_RUN_PX) -> Polygon:
    """Right-angled version of a simplified outline (grid pixel units), along its dominant direction.

    The walls are the outline simplified by ``ORTHOGONAL_SIMPLIFY_PX``. Their edges snap to the
    nearer of the two axes of :func:`dominant_direction`; runs on one axis merge, and pieces shorter
    than ``min_run`` merge into their neighbours. A result that would be degenerate, or overlap
    the input by less than IoU 0.8 (a roundish blob, not a building), keeps the input.
    """
    walls = polygon.simplify(ORTHOGONAL_SIMPLIFY_PX, preserve_topology=True)
    if not isinstance(walls, Polygon) or walls.is_empty:
        return polygon
    ring = np.asarray(walls.exterior.coords, dtype=np.float64)
    angle = dominant_direction(ring)
    origin = ring[:-1].mean(axis=0)
    runs = _merge_short_runs(_axis_runs(_rotate(ring[:-1], -angle, origin).tolist()), min_run)
    if len(runs) < 4 or len(runs) % 2:
        return polygon
    levels = [(axis, total / length) for axis, total, length in runs]
    vertices = []
    for i, (axis, level) in enumerate(levels):
        _, next_level = levels[(i + 1) % len(levels)]
        vertices.append((next_level, level) if axis == 0 else (level, next_level))
    candidate = Polygon(_rotate(np.asarray(vertices), angle, origin))
    if not candidate.is_valid or candidate.area <= 0:
        return polygon
    reference = polygon if polygon.is_valid else polygon.buffer(0)  # simplify may leave a bow-tie
    overlap = candidate.intersection(reference).area
    if overlap / (candidate.area + reference.area - overlap) < ORTHOGONAL_MIN_IOU:
        return polygon
    return candidate


def _rotate(points: np.ndarray, degrees: float, origin: np.ndarray) -> np.ndarray:
    """``points`` (n, 2) rotated anticlockwise by ``degrees`` about ``origin``."""
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    shifted = points - origin
    return np.column_stack([cos * shifted[:, 0] - sin * shifted[:, 1], sin * shifted[:, 0] + cos * shifted[:, 1]]) + origin


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
        self._maps = _join(self._maps, maps) if len(self._maps) else maps
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
        self._maps = _rows(self._maps, cut)
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


def split_columns(labels: np.ndarray, count: int, pieces: int) -> list[int]:
    """Column cuts [0, ..., width] into at most ``pieces`` parts of about equal width that no
    labelled instance crosses (``count`` = largest label + 1)."""
    width = labels.shape[1]
    if pieces <= 1 or width < 2 * pieces:
        return [0, width]
    crossing = np.zeros(width + 1, np.int64)  # crossing[c] > 0: some instance has pixels in c - 1 and c
    for box in ndimage.find_objects(labels, max_label=count - 1):
        if box is not None and box[1].stop - box[1].start > 1:
            crossing[box[1].start + 1] += 1
            crossing[box[1].stop] -= 1
    free = np.flatnonzero(np.cumsum(crossing)[1:width] == 0) + 1
    cuts = [0]
    for target in (width * i // pieces for i in range(1, pieces)):
        if len(free):
            cut = int(free[np.argmin(np.abs(free - target))])
            if cuts[-1] < cut < width:
                cuts.append(cut)
    return cuts + [width]


@dataclass
class PolygonJob:
    """One part of a strip to turn into buildings: the instance labels of the pixels to emit (0
    elsewhere), per-label flags and scores, and the part's pixel -> CRS affine (a, b, d, e, x, y)."""

    labels: np.ndarray
    partial: np.ndarray  # bool per label: keep every piece, not only the largest
    scores: np.ndarray  # mean building probability per label
    matrix: tuple[float, ...]
    pixel_area_m2: float
    options: VectorizeOptions


def polygonise(job: PolygonJob) -> list[Building]:
    """The buildings of a :class:`PolygonJob` (runs in this process or in a vectorising worker)."""
    parts: dict[int, list[Polygon]] = {}
    for geom, value in shapes(job.labels, mask=job.labels > 0, connectivity=4):
        polygon = shape(geom)
        value = int(value)
        if value not in parts:
            parts[value] = [polygon]
        elif job.partial[value]:
            parts[value].append(polygon)
        elif polygon.area > parts[value][0].area:
            parts[value] = [polygon]
    buildings = []
    for value, pieces in parts.items():
        for polygon in pieces:
            polygon = clean_outline(polygon, job.pixel_area_m2, job.options)
            if polygon is not None:
                buildings.append(Building(affinity.affine_transform(polygon, list(job.matrix)),
                                          polygon.area * job.pixel_area_m2, float(job.scores[value])))
    return buildings


def clean_outline(polygon: Polygon, pixel_area_m2: float, options: VectorizeOptions) -> Polygon | None:
    """Hole filling, minimum area and regularisation, in grid pixel units."""
    if polygon.area * pixel_area_m2 < options.min_area_m2:
        return None
    holes_px = options.fill_holes_m2 / pixel_area_m2
    interiors = [ring for ring in polygon.interiors if Polygon(ring).area >= holes_px]
    if len(interiors) < len(polygon.interiors):
        polygon = Polygon(polygon.exterior, interiors)
    if options.regularize in ("simplify", "orthogonal"):
        polygon = polygon.simplify(options.simplify_px, preserve_topology=False)  # 3x faster; make_valid below
    if options.regularize == "orthogonal" and isinstance(polygon, Polygon) and not polygon.is_empty:
        if interiors:
            polygon = Polygon(orthogonalize(Polygon(polygon.exterior)).exterior, list(polygon.interiors))
        else:
            polygon = orthogonalize(polygon)
    if not polygon.is_valid:
        polygon = make_valid(polygon)
    if not isinstance(polygon, Polygon):
        pieces = [g for g in getattr(polygon, "geoms", []) if isinstance(g, Polygon) and not g.is_empty]
        if not pieces:
            return None
        polygon = max(pieces, key=lambda part: part.area)
    if polygon.is_empty:
        return None
    if polygon.area * pixel_area_m2 < options.min_area_m2:
        return None
    return polygon
