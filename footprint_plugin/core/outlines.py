"""Outline clean-up in grid pixel units: hole filling, minimum area, simplification and right angles."""

from __future__ import annotations

import math

import numpy as np
from shapely.geometry import Polygon
from shapely.validation import make_valid

from .buildings import VectorizeOptions

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
