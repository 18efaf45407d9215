"""Outline clean-up in grid pixel units: hole filling, minimum area, simplification and right angles.

:func:`clean_outlines` cleans the outlines of a whole strip at once on numpy arrays (:mod:`.rings`): the
Douglas-Peucker simplification, the walls, the dominant directions, the right-angled candidates and their
exact overlap with the outline. An outline the fast path cannot vouch for (one with holes, or a simplified
ring that crosses itself) goes through :func:`clean_outline`, the same steps with shapely (GEOS), which also
repairs invalid rings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from shapely.geometry import Polygon
from shapely.validation import make_valid

from .buildings import VectorizeOptions
from .rings import Outlines, Rings, rectilinear_ious, ring_area, simple, simplify, starts_of

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
    simplifying = options.regularize in ("simplify", "orthogonal")
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
    right-angled version along the dominant direction of its walls (the ring simplified by
    ``ORTHOGONAL_SIMPLIFY_PX``) where that is not degenerate and overlaps the ring by at least
    ``ORTHOGONAL_MIN_IOU``. Returns the rings and where the right-angled version was taken."""
    walls = simplify(simplified, ORTHOGONAL_SIMPLIFY_PX)
    count = len(walls)
    angles, origins = _directions(walls)
    runs = _merged_runs(walls.rotated(-angles, origins), min_run)
    per_ring = np.bincount(runs.owner, minlength=count)
    usable = usable & (walls.lengths() >= 4) & (per_ring >= 4) & (per_ring % 2 == 0)
    candidates = _corners(runs, per_ring)
    closed = simple(candidates) & (candidates.areas() != 0)
    usable &= closed
    taken = np.zeros(count, bool)
    if usable.any():
        which = np.flatnonzero(usable)
        ious = rectilinear_ious(candidates.subset(which), simplified.subset(which).rotated(-angles[which], origins[which]))
        taken[which[ious >= ORTHOGONAL_MIN_IOU]] = True
    if not taken.any():
        return simplified, taken
    turned_back = candidates.rotated(angles, origins)
    pieces = [turned_back.ring(i) if taken[i] else simplified.ring(i) for i in range(count)]
    return Rings.from_list(pieces), taken


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
    starts = starts_of(per_ring)
    following = np.arange(len(level)) + 1
    has_runs = per_ring > 0
    following[starts[1:][has_runs] - 1] = starts[:-1][has_runs]  # a ring's last run meets its first
    nxt = level[following]
    corners = np.where((runs.axis == 0)[:, None], np.column_stack([nxt, level]), np.column_stack([level, nxt]))
    closed_lengths = per_ring + has_runs
    closed_starts = starts_of(closed_lengths)
    position = np.arange(closed_starts[-1]) - np.repeat(closed_starts[:-1], closed_lengths)
    source = np.repeat(starts[:-1], closed_lengths) + np.where(position == np.repeat(per_ring, closed_lengths), 0, position)
    return Rings(corners[source], closed_starts)


def _with_geos(polygon: Polygon, pixel_area_m2: float, options: VectorizeOptions) -> Outline | None:
    """:func:`clean_outline` (shapely) as rings."""
    cleaned = clean_outline(polygon, pixel_area_m2, options)
    if cleaned is None:
        return None
    return [np.asarray(cleaned.exterior.coords)] + [np.asarray(ring.coords) for ring in cleaned.interiors]
