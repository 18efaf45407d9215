"""Many polygon rings at once, as numpy arrays: areas, Douglas-Peucker simplification, simplicity and overlaps.

The outline clean-up handles thousands of small buildings per strip. One shapely object (or even one numpy
call) per building and step costs more than the geometry itself, so the rings of a whole strip are held in
one coordinate array (:class:`Rings`) and each step is a few numpy calls over all of them. Nothing here
needs shapely or GEOS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Rings:
    """Closed rings in one array: ring ``i`` is ``points[starts[i]:starts[i + 1]]``, its last point equal to its
    first."""

    points: np.ndarray  # (n, 2) float64
    starts: np.ndarray  # (rings + 1,) int64, the last entry = n

    @classmethod
    def from_list(cls, rings: list[np.ndarray]) -> Rings:
        lengths = np.fromiter((len(r) for r in rings), np.int64, len(rings))
        points = np.concatenate(rings).astype(np.float64, copy=False) if rings else np.zeros((0, 2))
        return cls(points, starts_of(lengths))

    def __len__(self) -> int:
        return len(self.starts) - 1

    def ring(self, index: int) -> np.ndarray:
        return self.points[self.starts[index] : self.starts[index + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.starts)

    def owners(self) -> np.ndarray:
        """The ring index of every point."""
        return np.repeat(np.arange(len(self)), self.lengths())

    def select(self, keep: np.ndarray) -> Rings:
        """The points where ``keep`` (a mask over the points) holds, ring by ring."""
        counts = np.add.reduceat(keep.astype(np.int64), self.starts[:-1]) if len(self) else np.zeros(0, np.int64)
        return Rings(self.points[keep], starts_of(counts))

    def subset(self, rings: np.ndarray) -> Rings:
        """The rings at the indexes ``rings``, in that order."""
        lengths = self.lengths()[rings]
        starts = starts_of(lengths)
        index = np.arange(starts[-1]) - np.repeat(starts[:-1], lengths) + np.repeat(self.starts[rings], lengths)
        return Rings(self.points[index], starts)

    def reversed(self) -> Rings:
        """Every ring run the other way, from the same first point."""
        owner = self.owners()
        here = np.arange(len(self.points))
        return Rings(self.points[self.starts[owner] + self.starts[owner + 1] - 1 - here], self.starts)

    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every edge (from point index, to point index) and the ring it belongs to."""
        first = np.arange(len(self.points) - 1)
        inside = np.ones(len(first), bool)
        inside[self.starts[1:-1] - 1] = False  # the step from one ring's last point to the next ring's first
        first = first[inside]
        return first, first + 1, self.owners()[first]

    def areas(self) -> np.ndarray:
        """Signed shoelace areas (positive: anticlockwise in x-right, y-up axes)."""
        if not len(self):
            return np.zeros(0)
        a, b, owner = self.edges()
        p, q = self.points[a], self.points[b]
        return 0.5 * np.bincount(owner, p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1], minlength=len(self))

    def rotated(self, degrees: np.ndarray, origins: np.ndarray) -> Rings:
        """Each ring turned anticlockwise by its angle (degrees) about its origin ((rings, 2))."""
        owner = self.owners()
        radians = np.radians(degrees)[owner]
        cos, sin = np.cos(radians), np.sin(radians)
        shifted = self.points - origins[owner]
        turned = np.column_stack([cos * shifted[:, 0] - sin * shifted[:, 1], sin * shifted[:, 0] + cos * shifted[:, 1]])
        return Rings(turned + origins[owner], self.starts)


@dataclass
class Outlines:
    """Polygons in pixel units: their exterior rings, a label each, and the holes of the few that have some
    (by exterior index)."""

    exteriors: Rings
    labels: np.ndarray
    holes: dict[int, list[np.ndarray]]

    def __len__(self) -> int:
        return len(self.exteriors)

    def areas(self) -> np.ndarray:
        """Polygon areas: exterior less holes."""
        areas = np.abs(self.exteriors.areas())
        for index, holes in self.holes.items():
            areas[index] -= sum(abs(ring_area(hole)) for hole in holes)
        return areas

    def shifted(self, offset: tuple[float, float]) -> Outlines:
        """The same polygons moved by ``offset`` (x, y)."""
        shift = np.asarray(offset, np.float64)
        holes = {index: [ring + shift for ring in rings] for index, rings in self.holes.items()}
        return Outlines(Rings(self.exteriors.points + shift, self.exteriors.starts), self.labels, holes)

    def take(self, index: np.ndarray) -> Outlines:
        """The polygons at ``index``, in that order."""
        position = {int(old): new for new, old in enumerate(index.tolist())}
        holes = {position[old]: rings for old, rings in self.holes.items() if old in position}
        return Outlines(self.exteriors.subset(index), self.labels[index], holes)


def ring_area(ring: np.ndarray) -> float:
    """Signed shoelace area of one closed ring."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(x[:-1] @ y[1:] - x[1:] @ y[:-1])


def starts_of(lengths: np.ndarray) -> np.ndarray:
    """Where each of consecutive runs of ``lengths`` items starts, and the total at the end."""
    starts = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=starts[1:])
    return starts


def _segment_distances(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of each point to the segment from ``a`` to ``b`` (rows paired), as GEOS computes it."""
    dx, dy = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
    length2 = dx * dx + dy * dy
    px, py = points[:, 0] - a[:, 0], points[:, 1] - a[:, 1]
    degenerate = length2 == 0
    safe = np.where(degenerate, 1.0, length2)
    r = (px * dx + py * dy) / safe
    cross = np.abs(px * dy - py * dx) / np.sqrt(safe)
    to_a = np.hypot(px, py)
    to_b = np.hypot(points[:, 0] - b[:, 0], points[:, 1] - b[:, 1])
    return np.where(degenerate | (r <= 0), to_a, np.where(r >= 1, to_b, cross))


def simplify(rings: Rings, tolerance: float) -> Rings:
    """Douglas-Peucker on every ring, as GEOS's simplifier does on a ring's coordinates: the first (= last) point
    stays, and a section keeps its farthest point (the first of equals) while that lies beyond ``tolerance``."""
    if not len(rings):
        return rings
    return rings.select(simplified_points(rings, tolerance))


def simplified_points(rings: Rings, tolerance: float) -> np.ndarray:
    """Which points :func:`simplify` keeps (a mask over ``rings.points``)."""
    points = rings.points
    keep = np.zeros(len(points), bool)
    if not len(rings):
        return keep
    keep[rings.starts[:-1]] = True
    keep[rings.starts[1:] - 1] = True
    first, last = rings.starts[:-1].copy(), rings.starts[1:] - 1
    while True:
        inner = last - first - 1
        active = inner > 0
        first, last, inner = first[active], last[active], inner[active]
        if not len(first):
            break
        section = np.repeat(np.arange(len(first)), inner)
        offsets = starts_of(inner)[:-1]
        index = np.arange(len(section)) - offsets[section] + first[section] + 1
        distance = _segment_distances(points[index], points[first[section]], points[last[section]])
        farthest = np.maximum.reduceat(distance, offsets)
        split = farthest > tolerance
        hits = np.flatnonzero((distance == farthest[section]) & split[section])
        if not len(hits):
            break
        hit_sections = section[hits]
        first_hit = np.ones(len(hits), bool)
        first_hit[1:] = hit_sections[1:] != hit_sections[:-1]
        middle = index[hits[first_hit]]
        keep[middle] = True
        chosen = hit_sections[first_hit]
        first, last = np.concatenate([first[chosen], middle]), np.concatenate([middle, last[chosen]])
    return keep


_PAIRS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _edge_pairs(edges: int) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (i, j) of edges of a closed ring of ``edges`` edges that are not neighbours."""
    if edges not in _PAIRS:
        i, j = np.triu_indices(edges, 2)
        keep = ~((i == 0) & (j == edges - 1))
        _PAIRS[edges] = (i[keep], j[keep])
    return _PAIRS[edges]


PAIRWISE_EDGES = 32  # rings with more edges are checked by GEOS (O(n log n)) instead of every pair of edges


def simple(rings: Rings) -> np.ndarray:
    """Per ring: at least 3 edges, none of zero length, and no two that cross or touch, apart from neighbours
    sharing their corner."""
    lengths = rings.lengths()
    edge_counts = lengths - 1
    result = edge_counts >= 3
    large = np.flatnonzero(result & (edge_counts > PAIRWISE_EDGES))
    if len(large):
        from shapely.geometry import Polygon

        for index in large:
            result[index] = Polygon(rings.ring(index)).is_valid
    first_i, first_j, owner = [], [], []
    for count in np.unique(edge_counts[result & (edge_counts <= PAIRWISE_EDGES)]):
        which = np.flatnonzero(result & (edge_counts == count))
        i, j = _edge_pairs(int(count))
        base = rings.starts[which]
        first_i.append((base[:, None] + i[None, :]).ravel())
        first_j.append((base[:, None] + j[None, :]).ravel())
        owner.append(np.repeat(which, len(i)))
    a = rings.points[:-1]
    d = rings.points[1:] - a
    start_of_edge = np.arange(len(a))
    zero = (d[:, 0] == 0) & (d[:, 1] == 0)
    zero[rings.starts[1:-1] - 1] = False  # cross-ring steps are not edges
    if zero.any():
        result[np.unique(np.searchsorted(rings.starts, start_of_edge[zero], side="right") - 1)] = False
    if not first_i:
        return result
    i, j, owner = np.concatenate(first_i), np.concatenate(first_j), np.concatenate(owner)
    touching = _segments_touch(a[i], d[i], a[j], d[j])
    bad = np.zeros(len(result), bool)
    bad[owner[touching]] = True
    return result & ~bad


def _segments_touch(p: np.ndarray, r: np.ndarray, q: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Whether segment p + t r (t in [0, 1]) and segment q + u s share a point, pair by pair."""
    denominator = r[:, 0] * s[:, 1] - r[:, 1] * s[:, 0]
    qp = q - p
    t_num = qp[:, 0] * s[:, 1] - qp[:, 1] * s[:, 0]
    u_num = qp[:, 0] * r[:, 1] - qp[:, 1] * r[:, 0]
    parallel = denominator == 0
    safe = np.where(parallel, 1.0, denominator)
    t, u = t_num / safe, u_num / safe
    crossing = ~parallel & (t >= 0) & (t <= 1) & (u >= 0) & (u <= 1)
    collinear = parallel & (t_num == 0)
    r2 = np.where(collinear, (r * r).sum(axis=1), 1.0)
    t0 = (qp * r).sum(axis=1) / r2
    t1 = t0 + (s * r).sum(axis=1) / r2
    overlapping = collinear & (np.maximum(t0, t1) >= 0) & (np.minimum(t0, t1) <= 1)
    return crossing | overlapping


def quadrant_signs(corners: Rings) -> np.ndarray:
    """Per corner of anticlockwise rectilinear rings (edges alternating along x and y): the signs s with
    indicator(ring) = sum over its corners k of s_k * [x >= x_k and y >= y_k]. ``corners`` is closed; the
    sign of each ring's repeated last point is 0."""
    points, starts = corners.points, corners.starts
    previous = np.empty_like(points)
    previous[1:] = points[:-1]
    previous[starts[:-1]] = points[starts[1:] - 2]  # before the first corner: the ring's last distinct corner
    following = np.empty_like(points)
    following[:-1] = points[1:]
    incoming, outgoing = points - previous, following - points
    turn = incoming[:, 0] * outgoing[:, 1] - incoming[:, 1] * outgoing[:, 0]
    rays = np.sign(-incoming) + np.sign(outgoing)  # the quadrant between the two edges at the corner
    signs = np.sign(rays[:, 0]) * np.sign(rays[:, 1]) * np.where(turn > 0, 1.0, -1.0)
    signs[starts[1:] - 1] = 0.0
    return signs


def quadrant_overlap(x0, y0, x1, y1, a, b) -> np.ndarray:
    """The integral of max(x - a, 0) * [y >= b] dy along the segments (x0, y0) -> (x1, y1), pair by pair: summed
    over an anticlockwise ring, the ring's area inside the quadrant [x >= a] x [y >= b] (Green's theorem; exact,
    as the integrand is piecewise linear along a straight edge)."""
    low_y, high_y = np.minimum(y0, y1), np.maximum(y0, y1)
    lo = np.maximum(low_y, b)
    span = high_y - lo
    flat = high_y == low_y
    slope = (x1 - x0) / np.where(flat, 1.0, y1 - y0)
    g_lo = x0 + (lo - y0) * slope - a
    g_hi = x0 + (high_y - y0) * slope - a
    both = (g_lo >= 0) & (g_hi >= 0)
    mixed = (g_lo > 0) != (g_hi > 0)
    spread = np.where(mixed, np.abs(g_hi - g_lo), 1.0)
    part = np.where(both, span * (g_lo + g_hi) / 2,
                    np.where(mixed, span * (np.maximum(g_lo, 0) ** 2 + np.maximum(g_hi, 0) ** 2) / (2 * spread), 0.0))
    part = np.where((span > 0) & ~flat, part, 0.0)
    return np.where(y1 > y0, part, -part)


def rectilinear_ious(candidates: Rings, references: Rings) -> np.ndarray:
    """Per pair of rings: the IoU of a rectilinear candidate (edges along x and y) and a simple reference ring,
    exactly (up to rounding) and without a polygon overlay: the overlap is the signed sum, over the candidate's
    corners, of the reference's area in each corner's quadrant (:func:`quadrant_signs`)."""
    count = len(candidates)
    area_c, area_r = candidates.areas(), references.areas()
    candidates = _anticlockwise(candidates, area_c)
    references = _anticlockwise(references, area_r)
    signs = quadrant_signs(candidates)
    corner_owner = candidates.owners()
    used = signs != 0
    corner_index, corner_owner = np.flatnonzero(used), corner_owner[used]
    edge_from, edge_to, edge_owner = references.edges()
    edges_per_ring = np.bincount(edge_owner, minlength=count)
    corners_per_ring = np.bincount(corner_owner, minlength=count)
    # Every (corner, reference edge) pair of the same ring.
    pairs_per_corner = edges_per_ring[corner_owner]
    corner_of_pair = np.repeat(corner_index, pairs_per_corner)
    owner_of_pair = np.repeat(corner_owner, pairs_per_corner)
    edge_start = starts_of(edges_per_ring)[:-1]
    pair_start = starts_of(pairs_per_corner)[:-1]
    edge_of_pair = np.arange(len(corner_of_pair)) - np.repeat(pair_start, pairs_per_corner) + edge_start[owner_of_pair]
    p, q = references.points[edge_from[edge_of_pair]], references.points[edge_to[edge_of_pair]]
    c = candidates.points[corner_of_pair]
    parts = quadrant_overlap(p[:, 0], p[:, 1], q[:, 0], q[:, 1], c[:, 0], c[:, 1]) * signs[corner_of_pair]
    overlap = np.bincount(owner_of_pair, parts, minlength=count)
    union = np.abs(area_c) + np.abs(area_r) - overlap
    ious = np.where(union > 0, overlap / np.where(union > 0, union, 1.0), 0.0)
    return np.where(corners_per_ring > 0, ious, 0.0)


def _anticlockwise(rings: Rings, areas: np.ndarray) -> Rings:
    """The rings with the clockwise ones reversed."""
    if not (areas < 0).any():
        return rings
    owner = rings.owners()
    flipped = rings.reversed().points
    return Rings(np.where((areas[owner] < 0)[:, None], flipped, rings.points), rings.starts)


def centroids(rings: Rings) -> np.ndarray:
    """The area centroid (rings, 2) of every ring; its first point where the ring has no area."""
    count = len(rings)
    if not count:
        return np.zeros((0, 2))
    a, b, owner = rings.edges()
    origin = rings.points[rings.starts[:-1]]  # moved there first: fewer digits lost far from (0, 0)
    p, q = rings.points[a] - origin[owner], rings.points[b] - origin[owner]
    cross = p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1]
    area6 = 3 * np.bincount(owner, cross, count)
    safe = np.where(area6 != 0, area6, 1.0)
    cx = np.bincount(owner, (p[:, 0] + q[:, 0]) * cross, count) / safe
    cy = np.bincount(owner, (p[:, 1] + q[:, 1]) * cross, count) / safe
    return origin + np.where((area6 != 0)[:, None], np.column_stack([cx, cy]), 0.0)


@dataclass
class _Sloped:
    """The edges of many rings that are not vertical: ends, the sign they carry in the ring's indicator
    (:func:`polygon_ious`) and the ring they belong to."""

    x0: np.ndarray
    y0: np.ndarray
    x1: np.ndarray
    y1: np.ndarray
    sign: np.ndarray
    owner: np.ndarray


def _sloped_edges(rings: Rings, origin: np.ndarray) -> _Sloped:
    """Every non-vertical edge, moved by -``origin`` (per ring); sign -sign(dx) for anticlockwise rings, +sign(dx)
    for clockwise ones: the ring's indicator is the signed sum of the regions under its edges."""
    a, b, owner = rings.edges()
    p, q = rings.points[a] - origin[owner], rings.points[b] - origin[owner]
    sloped = p[:, 0] != q[:, 0]
    p, q, owner = p[sloped], q[sloped], owner[sloped]
    orientation = np.sign(rings.areas())[owner]
    return _Sloped(p[:, 0], p[:, 1], q[:, 0], q[:, 1], -np.sign(q[:, 0] - p[:, 0]) * orientation, owner)


def _under_both(e: _Sloped, f: _Sloped, a: np.ndarray, b: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Pair by pair: the area under both edges (above ``base``) from x = ``a`` to ``b`` (where both are defined),
    exactly: the integral of the lower of the two lines, split where they cross."""
    width = b - a
    slope_e, slope_f = (e.y1 - e.y0) / (e.x1 - e.x0), (f.y1 - f.y0) / (f.x1 - f.x0)
    ea, eb = e.y0 + (a - e.x0) * slope_e - base, e.y0 + (b - e.x0) * slope_e - base
    fa, fb = f.y0 + (a - f.x0) * slope_f - base, f.y0 + (b - f.x0) * slope_f - base
    da, db = ea - fa, eb - fb
    crossing = (da * db) < 0
    t = np.where(crossing, da / np.where(crossing, da - db, 1.0), 0.0)
    at_cross = ea + t * (eb - ea)
    low_a, low_b = np.minimum(ea, fa), np.minimum(eb, fb)
    split = width * (t * (low_a + at_cross) + (1 - t) * (at_cross + low_b)) / 2
    return np.where(crossing, split, width * (low_a + low_b) / 2)


def polygon_ious(candidates: Rings, references: Rings, max_pairs: int = 2_000_000) -> np.ndarray:
    """Per pair of simple rings of any shape and orientation: their IoU, exactly (up to rounding) and without a
    polygon overlay. A ring's indicator is the signed sum of the regions under its non-vertical edges (down to a
    common base), so the overlap is the signed sum, over every pair of a candidate's and a reference's edges, of
    the area under both (:func:`_under_both`). Costs edges x edges per pair of rings, in chunks of ``max_pairs``."""
    count = len(candidates)
    if not count:
        return np.zeros(0)
    origin = references.points[references.starts[:-1]]
    edges_c, edges_r = _sloped_edges(candidates, origin), _sloped_edges(references, origin)
    base = np.minimum(np.minimum.reduceat(candidates.points[:, 1], candidates.starts[:-1]),
                      np.minimum.reduceat(references.points[:, 1], references.starts[:-1])) - origin[:, 1]
    per_c, per_r = np.bincount(edges_c.owner, minlength=count), np.bincount(edges_r.owner, minlength=count)
    chunk = np.cumsum(per_c * per_r) // max_pairs
    overlap = np.zeros(count)
    for group in np.unique(chunk):
        which = np.flatnonzero(chunk == group)
        overlap += _overlaps(edges_c, edges_r, which[0], which[-1], base, count)
    union = np.abs(candidates.areas()) + np.abs(references.areas()) - overlap
    return np.where(union > 0, overlap / np.where(union > 0, union, 1.0), 0.0)


def _take(edges: _Sloped, index: np.ndarray) -> _Sloped:
    return _Sloped(edges.x0[index], edges.y0[index], edges.x1[index], edges.y1[index], edges.sign[index],
                   edges.owner[index])


def _overlaps(edges_c: _Sloped, edges_r: _Sloped, first: int, last: int, base: np.ndarray, count: int) -> np.ndarray:
    """The overlap of rings ``first`` to ``last`` with their references (0 for the other rings)."""
    e = _take(edges_c, np.flatnonzero((edges_c.owner >= first) & (edges_c.owner <= last)))
    f = _take(edges_r, np.flatnonzero((edges_r.owner >= first) & (edges_r.owner <= last)))
    per_r = np.bincount(f.owner, minlength=count)
    pairs_per_e = per_r[e.owner]
    e_of_pair = np.repeat(np.arange(len(e.owner)), pairs_per_e)
    f_of_pair = (np.arange(len(e_of_pair)) - np.repeat(starts_of(pairs_per_e)[:-1], pairs_per_e)
                 + np.repeat(starts_of(per_r)[:-1][e.owner], pairs_per_e))
    a = np.maximum(np.minimum(e.x0, e.x1)[e_of_pair], np.minimum(f.x0, f.x1)[f_of_pair])
    b = np.minimum(np.maximum(e.x0, e.x1)[e_of_pair], np.maximum(f.x0, f.x1)[f_of_pair])
    side_by_side = np.flatnonzero(b > a)  # only pairs whose x ranges overlap add anything
    e_of_pair, f_of_pair = e_of_pair[side_by_side], f_of_pair[side_by_side]
    pair_e, pair_f, owner = _take(e, e_of_pair), _take(f, f_of_pair), e.owner[e_of_pair]
    parts = _under_both(pair_e, pair_f, a[side_by_side], b[side_by_side], base[owner]) * pair_e.sign * pair_f.sign
    return np.bincount(owner, parts, minlength=count)


def choose(mask: np.ndarray, if_true: Rings, if_false: Rings) -> Rings:
    """Ring by ring: the ring of ``if_true`` where ``mask`` holds, else that of ``if_false`` (same counts)."""
    lengths = np.where(mask, if_true.lengths(), if_false.lengths())
    starts = starts_of(lengths)
    source = np.where(mask, if_true.starts[:-1] + len(if_false.points), if_false.starts[:-1])
    index = np.arange(starts[-1]) - np.repeat(starts[:-1], lengths) + np.repeat(source, lengths)
    return Rings(np.concatenate([if_false.points, if_true.points])[index], starts)
