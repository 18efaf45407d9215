"""The pixel outlines of labelled regions, traced on numpy arrays (what GDAL's polygonize gives, without GDAL).

Every side of a pixel that borders another label is a boundary edge, directed with its pixel on the left
(in raster coordinates: x to the right, y down). At each corner an edge continues with the next edge of the
same label, turning towards its own pixel first, so that pixels that only touch diagonally stay apart
(4-connectivity). The cycles of this successor map are the rings; they are found, started and ordered with
pointer jumping (a few whole-array steps each, not one Python step per edge). The rings come out as GDAL's
polygonize gives them (the simplification downstream depends on where a ring starts and which way it runs):
exteriors start at the top left corner of their region and run along its top first, holes start at their
own top left corner and run the other way; each hole goes with the exterior of its label that holds it.
"""

from __future__ import annotations

import numpy as np

from .rings import Outlines, Rings, starts_of

# Directions as (dx, dy) with y down: south, east, north, west.
_STEPS = np.array([(0, 1), (1, 0), (0, -1), (-1, 0)], np.int64)
_LEFT_TURN = np.array([1, 2, 3, 0])  # south -> east, east -> north, north -> west, west -> south
# Where each side of a pixel starts (x, y), by direction: the left side (south) at its top left, the bottom
# (east) at its bottom left, the right side (north) at its bottom right, the top (west) at its top right.
_CORNERS = np.array([(0, 0), (0, 1), (1, 1), (1, 0)], np.int64)


def trace(labels: np.ndarray) -> Outlines:
    """The outlines of every 4-connected piece of every label > 0: exterior rings (closed, float64 (x, y)
    corner coordinates), their labels, and the holes of the few that have some. As GDAL gives them: exteriors
    run along their region's top edge first (clockwise on the screen), holes the other way round."""
    height, width = labels.shape
    padded = np.zeros((height + 2, width + 2), labels.dtype)
    padded[1:-1, 1:-1] = labels
    inside = labels > 0
    starts, directions = [], []
    # The neighbour across each side (rows, columns) and the side's direction; the side starts at the
    # pixel's corner _CORNERS[direction].
    for (dr, dc), direction in (((0, -1), 0), ((1, 0), 1), ((0, 1), 2), ((-1, 0), 3)):
        neighbour = padded[1 + dr : 1 + dr + height, 1 + dc : 1 + dc + width]
        flat = np.flatnonzero(inside & (neighbour != labels))
        starts.append(flat)
        directions.append(np.full(len(flat), direction, np.int64))
    direction = np.concatenate(directions)
    if not len(direction):
        return Outlines(Rings(np.zeros((0, 2)), np.zeros(1, np.int64)), np.zeros(0, np.int64), {})
    pixel = np.concatenate(starts)
    value = labels.reshape(-1)[pixel].astype(np.int64)
    rows, columns = np.divmod(pixel, width)
    start = np.column_stack([columns, rows]) + _CORNERS[direction]
    following = _successors(start, direction, value, width)
    first, rank = _cycles(start, following, width)
    order = np.lexsort((rank, first))
    return _outlines(start[order], direction[order], value[order], first[order], width)


def _successors(start: np.ndarray, direction: np.ndarray, value: np.ndarray, width: int) -> np.ndarray:
    """For each edge, the next edge of its ring: the edge of the same label leaving its end corner, the left
    turn first where there are two (a corner where the label's pixels touch diagonally)."""
    corners = width + 1
    span = int(value.max()) + 1
    key = (start[:, 1] * corners + start[:, 0]) * span + value
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    end = start + _STEPS[direction]
    wanted = (end[:, 1] * corners + end[:, 0]) * span + value
    at = np.searchsorted(sorted_key, wanted)
    candidate = order[np.minimum(at, len(order) - 1)]
    second = order[np.minimum(at + 1, len(order) - 1)]
    two = (at + 1 < len(order)) & (sorted_key[np.minimum(at + 1, len(order) - 1)] == wanted)
    turn_left = _LEFT_TURN[direction]
    take_second = two & (direction[second] == turn_left)
    return np.where(take_second, second, candidate)


def _cycles(start: np.ndarray, following: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Per edge: its ring's first edge (the one leaving the ring's top left corner) and its place in the ring."""
    count = len(start)
    corner = start[:, 1] * (width + 1) + start[:, 0]
    best = corner * count + np.arange(count)  # the smallest corner, then the smallest index, holds the ring
    jump = following.copy()
    reach = 1
    while reach < count:
        moved = np.minimum(best, best[jump])
        jump = jump[jump]
        reach *= 2
        if np.array_equal(moved, best):
            break
        best = moved
    first = best % count
    previous = np.empty(count, np.int64)
    previous[following] = np.arange(count)
    is_first = first == np.arange(count)
    steps = np.where(is_first, 0, 1).astype(np.int64)
    back = np.where(is_first, np.arange(count), previous)
    reach = 1
    while reach < count and not np.all(back == back[back]):
        steps = steps + steps[back]
        back = back[back]
        reach *= 2
    return first, steps


def _outlines(start: np.ndarray, direction: np.ndarray, value: np.ndarray, first: np.ndarray, width: int
              ) -> Outlines:
    """Rings from the edges in ring order (their corners: where the direction changes), split where a ring
    passes a corner twice; exteriors with their holes."""
    new_ring = np.ones(len(first), bool)
    new_ring[1:] = first[1:] != first[:-1]
    ring_of = np.cumsum(new_ring) - 1
    ring_starts = np.flatnonzero(new_ring)
    before = np.empty_like(direction)
    before[1:] = direction[:-1]
    before[ring_starts] = direction[np.append(ring_starts[1:], len(first)) - 1]  # a ring's first edge follows its last
    corner = direction != before
    points, owner = start[corner].astype(np.float64), ring_of[corner]
    label = value[ring_starts]
    rings = _closed(points, owner, len(ring_starts))
    pinched = _pinched(points, owner, width)
    if len(pinched):
        rings, label = _split_pinched(rings, label, pinched)
    areas = rings.areas()
    exterior = areas < 0  # the winding of a region's outer boundary, with its pixels on the left
    holes: dict[int, list[np.ndarray]] = {}
    if not exterior.all():
        holes = _holes(rings, label, exterior)
    index = np.flatnonzero(exterior)
    return Outlines(rings.subset(index).reversed(), label[index], holes)


def _closed(points: np.ndarray, owner: np.ndarray, count: int) -> Rings:
    """Rings of the corner ``points`` (grouped by ``owner``, in order), each closed with its first corner."""
    lengths = np.bincount(owner, minlength=count)
    starts = starts_of(lengths + 1)
    closed = np.empty((starts[-1], 2))
    closed[np.arange(len(points)) + owner] = points
    closed[starts[1:] - 1] = points[starts_of(lengths)[:-1]]
    return Rings(closed, starts)


def _pinched(points: np.ndarray, owner: np.ndarray, width: int) -> np.ndarray:
    """The rings that pass one corner twice."""
    key = owner * ((width + 2) * (int(points[:, 1].max()) + 2)) + points[:, 1].astype(np.int64) * (width + 2) \
        + points[:, 0].astype(np.int64)
    ordered = np.sort(key)
    repeats = ordered[1:][ordered[1:] == ordered[:-1]]
    return np.unique(repeats // ((width + 2) * (int(points[:, 1].max()) + 2)))


def _split_pinched(rings: Rings, label: np.ndarray, pinched: np.ndarray) -> tuple[Rings, np.ndarray]:
    pieces, labels = [], []
    pinched_set = set(pinched.tolist())
    for index in range(len(rings)):
        ring = rings.ring(index)
        if index not in pinched_set:
            pieces.append(ring)
            labels.append(label[index])
            continue
        for loop in _loops(ring[:-1]):
            pieces.append(np.vstack([loop, loop[:1]]))
            labels.append(label[index])
    return Rings.from_list(pieces), np.asarray(labels, np.int64)


def _holes(rings: Rings, label: np.ndarray, exterior: np.ndarray) -> dict[int, list[np.ndarray]]:
    """The holes of each exterior (by its index among the exteriors): GDAL's winding, in the exterior of their
    label that holds them."""
    exterior_index = np.cumsum(exterior) - 1
    of_label: dict[int, list[int]] = {}
    for index in np.flatnonzero(exterior).tolist():
        of_label.setdefault(int(label[index]), []).append(index)
    holes: dict[int, list[np.ndarray]] = {}
    for index in np.flatnonzero(~exterior).tolist():
        owners = of_label.get(int(label[index]), [])
        if not owners:
            continue
        hole = _as_gdal_hole(rings.ring(index))
        owner = owners[0] if len(owners) == 1 else next(
            (i for i in owners if _contains(rings.ring(i), hole[0] + (0.5, 0.5))), owners[0])
        holes.setdefault(int(exterior_index[owner]), []).append(hole)
    return holes


def _loops(corners: np.ndarray) -> list[np.ndarray]:
    """The corners of a ring split where it passes a corner twice, into loops that pass each corner once."""
    keys = corners[:, 1] * 1e7 + corners[:, 0]  # exact: corners are whole numbers well below 1e7
    if len(np.unique(keys)) == len(keys):
        return [corners]
    loops: list[np.ndarray] = []
    points: list[tuple[float, float]] = []
    point_keys: list[float] = []
    position: dict[float, int] = {}
    for (x, y), key in zip(corners.tolist(), keys.tolist()):
        if key in position:  # back at a corner: what was walked since is a loop of its own
            start = position[key]
            loops.append(np.array(points[start:]))
            for dropped in point_keys[start + 1 :]:
                del position[dropped]
            del points[start + 1 :], point_keys[start + 1 :]
        else:
            position[key] = len(points)
            points.append((x, y))
            point_keys.append(key)
    return [np.array(points), *loops]


def _as_gdal_hole(ring: np.ndarray) -> np.ndarray:
    """A hole with the exterior's winding, starting at its top left corner."""
    reverse = ring[::-1]
    corners = reverse[:-1]
    start = int(np.lexsort((corners[:, 0], corners[:, 1]))[0])
    rolled = np.roll(corners, -start, axis=0)
    return np.vstack([rolled, rolled[:1]])


def _contains(ring: np.ndarray, point: np.ndarray) -> bool:
    """Whether ``point`` (not on an edge) lies inside the closed ``ring`` (crossing number)."""
    x0, y0, x1, y1 = ring[:-1, 0], ring[:-1, 1], ring[1:, 0], ring[1:, 1]
    spans = (y0 > point[1]) != (y1 > point[1])
    crossing_x = x0 + (point[1] - y0) * (x1 - x0) / np.where(y1 != y0, y1 - y0, 1.0)
    return bool(np.count_nonzero(spans & (crossing_x > point[0])) % 2)
