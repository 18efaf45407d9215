"""Outline clean-up in grid pixel units: hole filling, minimum area, simplification and the outline modes.

:func:`clean_outlines` cleans the outlines of a whole strip at once on numpy arrays (:mod:`.rings`): the
Douglas-Peucker simplification, the walls, the dominant directions, the right-angled candidates and their
exact overlap with the outline. An outline the fast path cannot vouch for (one with holes, or a simplified
ring that crosses itself) goes through :func:`clean_outline`, the same steps with shapely (GEOS), which also
repairs invalid rings.

Besides right angles (``orthogonal``), the modes of :mod:`.regularize` shape the outline too: ``diagonals`` (walls
at multiples of 45 degrees from the dominant direction), ``any-angle`` (straight walls in any direction, the
wobble of the simplified outline removed) and ``circle`` (a circle where the outline is round enough, else right
angles). They work on rings in units of the tolerance (a pixel here), so the layer tool shares them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from shapely.geometry import Polygon
from shapely.validation import make_valid

from .buildings import VectorizeOptions
from .rings import (
    Outlines,
    Rings,
    centroids,
    choose,
    polygon_ious,
    rectilinear_ious,
    ring_area,
    simple,
    simplified_points,
    simplify,
    starts_of,
)

# Chosen with tools/outline_shapes.py on the test split (docs/model_report.md, "Outlines").
ORTHOGONAL_MIN_RUN_PX = 1.0  # wall pieces shorter than this merge into their neighbours (pixel steps)
ORTHOGONAL_MIN_IOU = 0.8  # a right-angled outline further than this from the mask's is not used
ORTHOGONAL_SIMPLIFY_PX = 1.0  # walls are found on the outline simplified this much

# The other modes (docs/regularize.md). Units: pixels here, tolerances in the layer tool.
SHAPES = ("right-angles", "diagonals", "any-angle", "circle")  # method codes 1 to 4 (0: nothing shaped the ring)
SHAPED_MODES = SHAPES[1:]  # outline modes besides "orthogonal" (= right-angles) that reshape the outline
SIMPLIFYING_MODES = ("simplify", "orthogonal", *SHAPED_MODES)
CIRCLE_MIN_IOU = 0.9  # a circle is taken where it overlaps the outline by at least this (a square: 0.83)
CIRCLE_PREFILTER = 0.75  # only walls at least this circular (4 pi area / perimeter^2; a square's: 0.785) are tried
CIRCLE_SAGITTA = 0.1  # a circle's polygon lies at most this far inside the true circle
ANY_ANGLE_TURN_DEG = 20.0  # "any-angle": walls that turn by less than this at a corner are one wall
ANY_ANGLE_MIN_RUN = 3.0  # "any-angle": shorter walls give way to their neighbours (cut corners of pixel steps)
ANY_ANGLE_SIMPLIFY = 1.5  # "any-angle": the outline is cut into walls where its simplification by this keeps a corner
ANY_ANGLE_CORNER = 6.0  # "any-angle": a shorter wall that cuts the corner of its neighbours gives way to them
CORNER_REACH = 3.0  # diagonals, any-angle: two walls' corner lies at most this far from where the outline turns
DIAGONAL_DIRECTIONS = 4  # "diagonals": 0, 45, 90 and 135 degrees from the dominant direction
DIAGONAL_MIN_RUN = 6.0  # "diagonals": a shorter diagonal wall is a cut corner, taken as the nearer axis


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


def clean_outline(polygon: Polygon, pixel_area_m2: float, options: VectorizeOptions) -> Polygon | None:
    """Hole filling, minimum area and regularisation, in grid pixel units."""
    if polygon.area * pixel_area_m2 < options.min_area_m2:
        return None
    holes_px = options.fill_holes_m2 / pixel_area_m2
    interiors = [ring for ring in polygon.interiors if Polygon(ring).area >= holes_px]
    if len(interiors) < len(polygon.interiors):
        polygon = Polygon(polygon.exterior, interiors)
    if options.regularize in SIMPLIFYING_MODES:
        polygon = polygon.simplify(options.simplify_px, preserve_topology=False)  # 3x faster; make_valid below
    if options.regularize in SHAPED_MODES and isinstance(polygon, Polygon) and not polygon.is_empty:
        polygon = _shaped_polygon(polygon, options.regularize)
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


Outline = list  # closed rings (n, 2) in grid pixel units, the exterior first


def clean_outlines(outlines: Outlines, pixel_area_m2: float, options: VectorizeOptions) -> list[Outline | None]:
    """:func:`clean_outline` for many traced pixel outlines at once: per outline its rings (exterior first,
    then holes), or None where it is dropped (too small, or collapsed)."""
    min_px = options.min_area_m2 / pixel_area_m2
    holes_px = options.fill_holes_m2 / pixel_area_m2
    count = len(outlines)
    results: list[Outline | None] = [None] * count
    big_enough = outlines.areas() >= min_px
    fast = np.zeros(count, bool)
    fast[big_enough] = True
    simplifying = options.regularize in SIMPLIFYING_MODES
    for index in np.flatnonzero(big_enough).tolist():
        kept = [hole for hole in outlines.holes.get(index, []) if abs(ring_area(hole)) >= holes_px]
        if kept or not simplifying:  # holes, or no simplification: GEOS
            fast[index] = False
            results[index] = _with_geos(Polygon(outlines.exteriors.ring(index), kept), pixel_area_m2, options)
    chosen = np.flatnonzero(fast)
    if not len(chosen):
        return results
    simplified = simplify(outlines.exteriors.subset(chosen), options.simplify_px)
    collapsed = simplified.lengths() < 4  # GEOS's simplifier drops such a ring
    taken = np.zeros(len(chosen), bool)
    shapes = simplified
    if options.regularize == "orthogonal":
        shapes, taken = orthogonal_rings(simplified, ~collapsed)
    elif options.regularize in SHAPED_MODES:
        shapes, taken = regularized_rings(simplified, ~collapsed, options.regularize)
    valid = np.ones(len(chosen), bool)
    kept_simplified = np.flatnonzero(~collapsed & ~taken)  # only where the simplified ring is the outline
    valid[kept_simplified] = simple(simplified.subset(kept_simplified))
    areas = np.abs(shapes.areas())
    for position, index in enumerate(chosen.tolist()):
        if collapsed[position]:
            continue
        if not valid[position]:  # a simplified ring that crosses itself: GEOS repairs it
            results[index] = _with_geos(Polygon(outlines.exteriors.ring(index)), pixel_area_m2, options)
        elif areas[position] >= min_px:
            results[index] = [shapes.ring(position)]
    return results


def orthogonal_rings(simplified: Rings, usable: np.ndarray, min_run: float = ORTHOGONAL_MIN_RUN_PX
                     ) -> tuple[Rings, np.ndarray]:
    """:func:`orthogonalize` for many rings at once: each simple ``simplified`` ring (where ``usable``), or its
    right-angled version (:func:`right_angle_candidates`) where that overlaps the ring by at least
    ``ORTHOGONAL_MIN_IOU``. Returns the rings and where the right-angled version was taken."""
    turned_back, ious = right_angle_candidates(simplified, usable, min_run)
    taken = ious >= ORTHOGONAL_MIN_IOU
    if not taken.any():
        return simplified, taken
    pieces = [turned_back.ring(i) if taken[i] else simplified.ring(i) for i in range(len(simplified))]
    return Rings.from_list(pieces), taken


def right_angle_candidates(simplified: Rings, usable: np.ndarray, min_run: float = ORTHOGONAL_MIN_RUN_PX
                           ) -> tuple[Rings, np.ndarray]:
    """The right-angled version of each ring along the dominant direction of its walls (the ring simplified by
    ``ORTHOGONAL_SIMPLIFY_PX``), and its IoU with the ring: -1 where none was made (not ``usable``, degenerate,
    or crossing itself; the candidate ring may then be empty)."""
    walls = simplify(simplified, ORTHOGONAL_SIMPLIFY_PX)
    count = len(walls)
    angles, origins = _directions(walls)
    runs = _merged_runs(walls.rotated(-angles, origins), min_run)
    per_ring = np.bincount(runs.owner, minlength=count)
    usable = usable & (walls.lengths() >= 4) & (per_ring >= 4) & (per_ring % 2 == 0)
    candidates = _corners(runs, per_ring)
    closed = simple(candidates) & (candidates.areas() != 0)
    usable &= closed
    ious = np.full(count, -1.0)
    if usable.any():
        which = np.flatnonzero(usable)
        ious[which] = rectilinear_ious(candidates.subset(which), simplified.subset(which).rotated(-angles[which], origins[which]))
    return candidates.rotated(angles, origins), ious


def _directions(walls: Rings) -> tuple[np.ndarray, np.ndarray]:
    """:func:`dominant_direction` (degrees) and the mean corner of every ring."""
    count = len(walls)
    first, second, owner = walls.edges()
    steps = walls.points[second] - walls.points[first]
    lengths = np.hypot(steps[:, 0], steps[:, 1])
    four = 4 * np.arctan2(steps[:, 1], steps[:, 0])
    sin, cos = np.bincount(owner, lengths * np.sin(four), count), np.bincount(owner, lengths * np.cos(four), count)
    total = np.bincount(owner, lengths, count)
    angles = np.where(total > 0, np.degrees(np.arctan2(sin, cos)) / 4, 0.0)
    distinct = np.ones(len(walls.points), bool)
    distinct[walls.starts[1:] - 1] = False  # the repeated closing point
    point_owner = walls.owners()[distinct]
    corners = np.maximum(np.bincount(point_owner, minlength=count), 1)
    origins = np.column_stack([np.bincount(point_owner, walls.points[distinct, 0], count) / corners,
                               np.bincount(point_owner, walls.points[distinct, 1], count) / corners])
    return angles, origins


@dataclass
class _Runs:
    """Wall runs of many rings, ring by ring in order: the axis (0: along x), the length-weighted sum of the
    wall's level and the length."""

    owner: np.ndarray
    axis: np.ndarray
    weighted: np.ndarray
    length: np.ndarray


def _merged_runs(turned: Rings, min_run: float) -> _Runs:
    """:func:`_axis_runs` then :func:`_merge_short_runs` of every ring (already turned to its axes)."""
    first, second, owner = turned.edges()
    step = turned.points[second] - turned.points[first]
    length = np.hypot(step[:, 0], step[:, 1])
    moving = length > 0
    first, second, owner, step, length = first[moving], second[moving], owner[moving], step[moving], length[moving]
    axis = (np.abs(step[:, 0]) < np.abs(step[:, 1])).astype(np.int64)
    middle = (turned.points[first] + turned.points[second]) / 2
    value = np.where(axis == 0, middle[:, 1], middle[:, 0])
    new_run = np.ones(len(axis), bool)
    new_run[1:] = (axis[1:] != axis[:-1]) | (owner[1:] != owner[:-1])
    run_of = np.cumsum(new_run) - 1
    runs = _Runs(owner[new_run], axis[new_run], np.bincount(run_of, value * length), np.bincount(run_of, length))
    runs = _wrap(runs)
    per_ring = np.bincount(runs.owner, minlength=len(turned))
    short = np.bincount(runs.owner, runs.length < min_run, len(turned)) > 0
    to_merge = np.flatnonzero(short & (per_ring > 4))
    if len(to_merge):
        runs = _merge_some(runs, to_merge, min_run)
    return runs


def _wrap(runs: _Runs) -> _Runs:
    """A ring's last run joins its first when both lie on the same axis (the ring starts inside a wall)."""
    count = int(runs.owner.max()) + 1 if len(runs.owner) else 0
    per_ring = np.bincount(runs.owner, minlength=count)
    starts = starts_of(per_ring)
    first, last = starts[:-1], starts[1:] - 1
    join = (per_ring > 1) & (runs.axis[first] == runs.axis[np.maximum(last, 0)])
    if not join.any():
        return runs
    weighted, length = runs.weighted.copy(), runs.length.copy()
    weighted[first[join]] += runs.weighted[last[join]]
    length[first[join]] += runs.length[last[join]]
    keep = np.ones(len(runs.owner), bool)
    keep[last[join]] = False
    return _Runs(runs.owner[keep], runs.axis[keep], weighted[keep], length[keep])


def _merge_some(runs: _Runs, rings: np.ndarray, min_run: float) -> _Runs:
    """:func:`_merge_short_runs` on the runs of ``rings``; the others unchanged."""
    replaced = np.isin(runs.owner, rings)
    merged = []
    for ring in rings:
        mine = np.flatnonzero(runs.owner == ring)
        as_lists = [[int(runs.axis[i]), float(runs.weighted[i]), float(runs.length[i])] for i in mine]
        merged += [(ring, *run) for run in _merge_short_runs(as_lists, min_run)]
    owner = np.concatenate([runs.owner[~replaced], np.array([m[0] for m in merged], np.int64)])
    order = np.argsort(owner, kind="stable")
    return _Runs(owner[order],
                 np.concatenate([runs.axis[~replaced], np.array([m[1] for m in merged], np.int64)])[order],
                 np.concatenate([runs.weighted[~replaced], np.array([m[2] for m in merged])])[order],
                 np.concatenate([runs.length[~replaced], np.array([m[3] for m in merged])])[order])


def _corners(runs: _Runs, per_ring: np.ndarray) -> Rings:
    """The corners where each run meets the next, as closed rings (empty for rings without runs)."""
    level = runs.weighted / np.where(runs.length > 0, runs.length, 1.0)
    nxt = level[_following(per_ring)]
    corners = np.where((runs.axis == 0)[:, None], np.column_stack([nxt, level]), np.column_stack([level, nxt]))
    return _closed(corners, per_ring)


def _following(per_ring: np.ndarray) -> np.ndarray:
    """For items stored ring by ring (``per_ring`` each): the index of the next item around the same ring."""
    starts = starts_of(per_ring)
    following = np.arange(starts[-1]) + 1
    has_items = per_ring > 0
    following[starts[1:][has_items] - 1] = starts[:-1][has_items]  # a ring's last item is followed by its first
    return following


def _closed(corners: np.ndarray, per_ring: np.ndarray) -> Rings:
    """Corners stored ring by ring (``per_ring`` each) as closed rings (empty for rings without corners)."""
    starts = starts_of(per_ring)
    closed_lengths = per_ring + (per_ring > 0)
    closed_starts = starts_of(closed_lengths)
    position = np.arange(closed_starts[-1]) - np.repeat(closed_starts[:-1], closed_lengths)
    source = np.repeat(starts[:-1], closed_lengths) + np.where(position == np.repeat(per_ring, closed_lengths), 0, position)
    return Rings(corners[source], closed_starts)


def regularized_rings(simplified: Rings, usable: np.ndarray, mode: str) -> tuple[Rings, np.ndarray]:
    """:func:`orthogonal_rings` for the modes ``diagonals``, ``any-angle`` and ``circle``: each ring, or its shape in
    ``mode`` where that overlaps it by at least ``ORTHOGONAL_MIN_IOU`` (a circle: ``CIRCLE_MIN_IOU``, else right
    angles). Returns the rings and where the shape was taken."""
    if mode == "circle":
        circles, ious = circle_candidates(simplified, usable)
        round_enough = ious >= CIRCLE_MIN_IOU
        shapes, taken = orthogonal_rings(simplified, usable & ~round_enough)
        return choose(round_enough, circles, shapes), taken | round_enough
    candidates, ious = line_candidates(simplified, usable, DIAGONAL_DIRECTIONS if mode == "diagonals" else 0)
    taken = ious >= ORTHOGONAL_MIN_IOU
    return choose(taken, candidates, simplified), taken


def shaped_candidates(rings: Rings, usable: np.ndarray, shape: str, circle_min_iou: float = CIRCLE_MIN_IOU
                      ) -> tuple[Rings, np.ndarray, np.ndarray]:
    """Each ring in ``shape`` (one of ``SHAPES``; a circle only where its IoU reaches ``circle_min_iou``, else right
    angles): the candidate (the ring itself where none was made), its IoU with the ring (-1: none) and what shaped
    it (1 + its index in ``SHAPES``; 0: nothing)."""
    if shape == "circle":
        circles, circle_ious = circle_candidates(rings, usable)
        round_enough = circle_ious >= circle_min_iou
        squared, ious = right_angle_candidates(rings, usable & ~round_enough)
        candidates, ious = choose(round_enough, circles, squared), np.where(round_enough, circle_ious, ious)
        method = np.where(round_enough, SHAPES.index("circle") + 1, np.where(ious >= 0, 1, 0))
    else:
        if shape == "right-angles":
            candidates, ious = right_angle_candidates(rings, usable)
        else:
            candidates, ious = line_candidates(rings, usable, DIAGONAL_DIRECTIONS if shape == "diagonals" else 0)
        method = np.where(ious >= 0, SHAPES.index(shape) + 1, 0)
    return choose(ious >= 0, candidates, rings), ious, method


@dataclass
class _Lines:
    """Straight walls of many rings, ring by ring: the direction class (-1: any direction), and the length, the
    length-weighted sums of position and the second moments of the outline they follow (its edges taken as uniform
    segments): a wall is the total-least-squares line of its piece of outline, which runs from ``start`` to
    ``end``."""

    owner: np.ndarray
    key: np.ndarray
    length: np.ndarray
    sx: np.ndarray
    sy: np.ndarray
    sxx: np.ndarray
    syy: np.ndarray
    sxy: np.ndarray
    start: np.ndarray  # (walls, 2)
    end: np.ndarray

    SUMS = ("length", "sx", "sy", "sxx", "syy", "sxy")

    def take(self, index: np.ndarray) -> _Lines:
        return _Lines(self.owner[index], self.key[index], *(getattr(self, name)[index] for name in self.SUMS),
                      self.start[index], self.end[index])

    def fitted(self) -> np.ndarray:
        """The direction (radians) of each wall's best line: the principal axis of its moments."""
        length = np.where(self.length > 0, self.length, 1.0)
        cx, cy = self.sx / length, self.sy / length
        cxx, cyy, cxy = self.sxx / length - cx * cx, self.syy / length - cy * cy, self.sxy / length - cx * cy
        return np.arctan2(2 * cxy, cxx - cyy) / 2

    def angles(self, classes: int) -> np.ndarray:
        """Each wall's direction (radians): its class's, or its best line's."""
        return self.key * (np.pi / classes) if classes else self.fitted()


def line_candidates(simplified: Rings, usable: np.ndarray, classes: int, min_run: float = ORTHOGONAL_MIN_RUN_PX
                    ) -> tuple[Rings, np.ndarray]:
    """Each ring as straight walls that meet at corners, and its IoU with the ring (-1 where none was made).

    The ring is cut into pieces where its simplification by ``ORTHOGONAL_SIMPLIFY_PX`` keeps a corner; each piece is
    a wall along the best line through it. With ``classes`` (4: diagonals) the wall takes the nearest of ``classes``
    directions from the ring's dominant one (a diagonal shorter than ``DIAGONAL_MIN_RUN``: the nearer axis); with
    0 (any angle) its own, and neighbours turning by less than ``ANY_ANGLE_TURN_DEG`` are one wall. Neighbouring
    walls of one direction join, and walls shorter than ``min_run`` (any angle: ``ANY_ANGLE_MIN_RUN``) give way to
    their neighbours."""
    count = len(simplified)
    corners = simplified_points(simplified, ORTHOGONAL_SIMPLIFY_PX if classes else ANY_ANGLE_SIMPLIFY)
    angles, origins = _directions(simplified.select(corners)) if classes else (np.zeros(count), np.zeros((count, 2)))
    turned = simplified.rotated(-angles, origins) if classes else simplified
    lines = _joined(_piece_lines(turned, corners, classes), classes, count)
    if classes:
        lines = _joined(_short_diagonals_to_axes(lines), classes, count)
    lines = _drop_short_lines(lines, classes, count, min_run if classes else max(min_run, ANY_ANGLE_MIN_RUN))
    per_ring = np.bincount(lines.owner, minlength=count)
    candidates = _line_corners(lines, classes, per_ring)
    usable = usable & (np.bincount(simplified.owners()[corners], minlength=count) >= 4) & (per_ring >= 3)
    usable &= simple(candidates) & (candidates.areas() != 0)
    if classes:
        candidates = candidates.rotated(angles, origins)
    ious = np.full(count, -1.0)
    which = np.flatnonzero(usable)
    if len(which):
        ious[which] = polygon_ious(candidates.subset(which), simplified.subset(which))
    return candidates, ious


def _piece_lines(turned: Rings, corners: np.ndarray, classes: int) -> _Lines:
    """The pieces of each ring between the points ``corners`` keeps, as walls: their sums, and their class (the
    nearest of ``classes`` directions to the best line; -1 without classes)."""
    first, second, owner = turned.edges()
    p, q = turned.points[first], turned.points[second]
    step, middle = q - p, (p + q) / 2
    length = np.hypot(step[:, 0], step[:, 1])
    piece = np.cumsum(corners)[first] - 1  # the piece an edge starts in (a ring's closing point starts none)
    pieces = int(piece.max()) + 1 if len(piece) else 0
    (mx, my), (dx, dy) = middle.T, step.T
    moments = (length, length * mx, length * my, length * (mx * mx + dx * dx / 12), length * (my * my + dy * dy / 12),
               length * (mx * my + dx * dy / 12))  # a uniform segment's: its middle's, plus its own spread
    sums = [np.bincount(piece, weights, pieces) for weights in moments]
    piece_owner = np.zeros(pieces, np.int64)
    piece_owner[piece] = owner
    start, end = np.zeros((pieces, 2)), np.zeros((pieces, 2))
    start[piece[::-1]], end[piece] = p[::-1], q  # the first edge's start, the last edge's end
    lines = _Lines(piece_owner, np.full(pieces, -1), *sums, start, end)
    lines = lines.take(np.flatnonzero(lines.length > 0))
    if classes:
        lines.key = np.round(lines.fitted() / (np.pi / classes)).astype(np.int64) % classes
    return lines


def _short_diagonals_to_axes(lines: _Lines) -> _Lines:
    """Diagonal walls shorter than ``DIAGONAL_MIN_RUN`` in the class of the nearer axis (0 or 2, of 4)."""
    short = (lines.key % 2 == 1) & (lines.length < DIAGONAL_MIN_RUN)
    if not short.any():
        return lines
    axis = np.where(np.abs(np.cos(lines.fitted())) >= np.sqrt(0.5), 0, 2)
    return _Lines(lines.owner, np.where(short, axis, lines.key), *(getattr(lines, name) for name in _Lines.SUMS),
                  lines.start, lines.end)


def _same_wall(lines: _Lines, a: np.ndarray, b: np.ndarray, classes: int) -> np.ndarray:
    """Whether walls ``a`` and ``b`` (index arrays) have one direction: the same class, or turn by less than
    ``ANY_ANGLE_TURN_DEG``."""
    if classes:
        return lines.key[a] == lines.key[b]
    angles = lines.angles(0)
    turn = np.abs((angles[a] - angles[b] + np.pi / 2) % np.pi - np.pi / 2)
    return turn < math.radians(ANY_ANGLE_TURN_DEG)


def _joined(lines: _Lines, classes: int, count: int) -> _Lines:
    """Neighbouring walls of one direction joined into one, also across the ring's start."""
    index = np.arange(1, len(lines.owner))
    joins = np.zeros(len(lines.owner), bool)
    joins[1:] = (lines.owner[1:] == lines.owner[:-1]) & _same_wall(lines, index, index - 1, classes)
    new = ~joins
    group = np.cumsum(new) - 1
    last_member = np.append(np.flatnonzero(new)[1:] - 1, len(new) - 1)
    lines = _Lines(lines.owner[new], lines.key[new], *(np.bincount(group, getattr(lines, name)) for name in _Lines.SUMS),
                   lines.start[new], lines.end[last_member])
    per_ring = np.bincount(lines.owner, minlength=count)
    starts = starts_of(per_ring)
    rings = np.flatnonzero(per_ring > 1)
    first, last = starts[rings], starts[rings + 1] - 1
    wrap = _same_wall(lines, first, last, classes)
    if not wrap.any():
        return lines
    first, last = first[wrap], last[wrap]
    for name in _Lines.SUMS:
        getattr(lines, name)[first] += getattr(lines, name)[last]
    lines.start[first] = lines.start[last]  # the ring's last wall runs on into its first
    keep = np.ones(len(lines.owner), bool)
    keep[last] = False
    return lines.take(np.flatnonzero(keep))


def _drop_short_lines(lines: _Lines, classes: int, count: int, min_run: float, min_walls: int = 3) -> _Lines:
    """While a ring has more than ``min_walls`` walls and one shorter than ``min_run`` (any angle: or a cut corner,
    :func:`_cut_corners`): the shortest such gives way (its neighbours meet), and neighbours of one direction
    join."""
    while len(lines.owner):
        per_ring = np.bincount(lines.owner, minlength=count)
        droppable = (lines.length < min_run) & (per_ring > min_walls)[lines.owner]
        if not classes:
            droppable |= _cut_corners(lines, per_ring) & (per_ring > min_walls)[lines.owner]
        if not droppable.any():
            break
        length = np.where(droppable, lines.length, np.inf)
        filled = np.flatnonzero(per_ring)
        shortest = np.full(count, np.inf)
        shortest[filled] = np.minimum.reduceat(length, starts_of(per_ring)[filled])
        candidates = np.flatnonzero(droppable & (length == shortest[lines.owner]))
        _, first = np.unique(lines.owner[candidates], return_index=True)
        keep = np.ones(len(lines.owner), bool)
        keep[candidates[first]] = False
        lines = _joined(lines.take(np.flatnonzero(keep)), classes, count)
    return lines


def _cut_corners(lines: _Lines, per_ring: np.ndarray) -> np.ndarray:
    """Walls shorter than ``ANY_ANGLE_CORNER`` and than half of either neighbour that cut the corner where their
    neighbours' lines meet (it lies within a wall's length of the wall's middle): what simplifying a pixel staircase
    leaves at a corner."""
    following = _following(per_ring)
    before = np.empty_like(following)
    before[following] = np.arange(len(following))
    angles = lines.angles(0)
    nx, ny = -np.sin(angles), np.cos(angles)
    length = np.where(lines.length > 0, lines.length, 1.0)
    offset = (nx * lines.sx + ny * lines.sy) / length
    a, b = before, following
    det = nx[a] * ny[b] - ny[a] * nx[b]
    turn = np.abs(np.arcsin(np.clip(det, -1.0, 1.0)))
    safe = np.where(det == 0, 1.0, det)
    corner = np.column_stack([(offset[a] * ny[b] - ny[a] * offset[b]) / safe, (nx[a] * offset[b] - offset[a] * nx[b]) / safe])
    middle = np.column_stack([lines.sx, lines.sy]) / length[:, None]
    near = np.hypot(*(corner - middle).T) <= lines.length
    short = (lines.length < ANY_ANGLE_CORNER) & (lines.length < 0.5 * np.minimum(lines.length[a], lines.length[b]))
    return short & (turn >= math.radians(ANY_ANGLE_TURN_DEG)) & near & (per_ring >= 4)[lines.owner]


def _line_corners(lines: _Lines, classes: int, per_ring: np.ndarray) -> Rings:
    """Where each wall meets the next, as closed rings. Where two walls meet at a shallow angle the lines may cross
    far away: farther than ``CORNER_REACH`` from where the outline turns from one to the other (or parallel), that
    turning point is the corner."""
    angles = lines.angles(classes)
    nx, ny = -np.sin(angles), np.cos(angles)
    offset = (nx * lines.sx + ny * lines.sy) / np.where(lines.length > 0, lines.length, 1.0)
    nxt = _following(per_ring)
    det = nx * ny[nxt] - ny * nx[nxt]
    parallel = np.abs(det) < 1e-6
    safe = np.where(parallel, 1.0, det)
    corners = np.column_stack([(offset * ny[nxt] - ny * offset[nxt]) / safe, (nx * offset[nxt] - offset * nx[nxt]) / safe])
    turning = (lines.end + lines.start[nxt]) / 2
    far = parallel | (np.hypot(*(corners - turning).T) > CORNER_REACH)
    return _closed(np.where(far[:, None], turning, corners), per_ring)


def circle_candidates(rings: Rings, usable: np.ndarray) -> tuple[Rings, np.ndarray]:
    """Each ring's circle (its area and centroid; a polygon within ``CIRCLE_SAGITTA`` of the true circle) and its IoU
    with the ring: -1 where not tried (walls less circular than ``CIRCLE_PREFILTER``, or not ``usable``)."""
    walls = simplify(rings, ORTHOGONAL_SIMPLIFY_PX)
    first, second, owner = walls.edges()
    step = walls.points[second] - walls.points[first]
    perimeter = np.bincount(owner, np.hypot(step[:, 0], step[:, 1]), len(walls))
    circular = 4 * np.pi * np.abs(walls.areas()) / np.where(perimeter > 0, perimeter, np.inf) ** 2
    tried = usable & (walls.lengths() >= 4) & (circular >= CIRCLE_PREFILTER)
    areas = np.abs(rings.areas())
    radius = np.sqrt(areas / np.pi)
    ratio = np.clip(1 - CIRCLE_SAGITTA / np.where(radius > 0, radius, 1.0), -1.0, 1.0)
    sides = np.clip(np.ceil(np.pi / np.maximum(np.arccos(ratio), 1e-9)), 16, 96).astype(np.int64)
    outer = np.sqrt(2 * areas / (sides * np.sin(2 * np.pi / sides)))  # the polygon's area is the ring's
    circles = _circles(centroids(rings), outer, sides)
    ious = np.full(len(rings), -1.0)
    which = np.flatnonzero(tried)
    if len(which):
        ious[which] = polygon_ious(circles.subset(which), rings.subset(which))
    return circles, ious


def _circles(centres: np.ndarray, radii: np.ndarray, sides: np.ndarray) -> Rings:
    """Regular polygons, anticlockwise and closed, ``sides`` corners on a circle of each radius about each centre."""
    owner = np.repeat(np.arange(len(sides)), sides)
    step = np.arange(len(owner)) - np.repeat(starts_of(sides)[:-1], sides)
    turn = 2 * np.pi * step / sides[owner]
    corners = centres[owner] + radii[owner, None] * np.column_stack([np.cos(turn), np.sin(turn)])
    return _closed(corners, sides)


def _shaped_polygon(polygon: Polygon, mode: str) -> Polygon:
    """:func:`regularized_rings` on the exterior of one (simplified) polygon; its holes stay."""
    exterior = Polygon(polygon.exterior)
    if not exterior.is_valid:
        return polygon
    shapes, taken = regularized_rings(Rings.from_list([np.asarray(exterior.exterior.coords)[:, :2]]), np.ones(1, bool),
                                      mode)
    return Polygon(shapes.ring(0), list(polygon.interiors)) if taken[0] else polygon


def _with_geos(polygon: Polygon, pixel_area_m2: float, options: VectorizeOptions) -> Outline | None:
    """:func:`clean_outline` (shapely) as rings."""
    cleaned = clean_outline(polygon, pixel_area_m2, options)
    if cleaned is None:
        return None
    return [np.asarray(cleaned.exterior.coords)] + [np.asarray(ring.coords) for ring in cleaned.interiors]
