"""tools/lab/outline_shapes.py: the shape measures (vertex angles) on known outlines."""

from __future__ import annotations

import math

from shapely.geometry import MultiPolygon, Polygon

from tools.lab.outline_shapes import ShapeStats, is_right, ring_angles

L_SHAPE = [(0, 0), (10, 0), (10, 4), (4, 4), (4, 8), (0, 8)]
U_SHAPE = [(0, 0), (9, 0), (9, 7), (6, 7), (6, 3), (3, 3), (3, 7), (0, 7)]


def test_rectangle_l_and_u_shapes_are_all_right_angles_in_either_orientation():
    for ring in ([(0, 0), (4, 0), (4, 2), (0, 2)], L_SHAPE, U_SHAPE):
        for points in (ring, ring[::-1]):
            angles = ring_angles(points + [points[0]])
            assert len(angles) == len(ring)
            assert all(is_right(a, 1e-6) for a in angles)
            assert math.isclose(sum(angles), (len(ring) - 2) * 180)  # interior angles of a simple polygon
    angles = ring_angles(L_SHAPE)
    assert sorted(round(a) for a in angles) == [90, 90, 90, 90, 90, 270]  # one inner corner


def test_wobbly_outline_scores_low_and_rotation_does_not_matter():
    wobbly = [(10 * math.cos(t) + 0.4 * math.sin(7 * t), 6 * math.sin(t)) for t in
              (2 * math.pi * i / 24 for i in range(24))]
    stats = ShapeStats()
    stats.add(Polygon(wobbly))
    summary = stats.summary()
    assert summary["vertices_per_building"] == 24 and summary["right_angle_share"] < 0.2
    rotated = ShapeStats()
    angle = math.radians(33)
    rotated.add(Polygon([(x * math.cos(angle) - y * math.sin(angle), x * math.sin(angle) + y * math.cos(angle))
                         for x, y in L_SHAPE]))
    assert rotated.summary()["right_angle_share"] == 1.0 and rotated.summary()["corner_right_share"] == 1.0


def test_corners_exclude_nearly_straight_vertices_and_parts_count_as_buildings():
    # A rectangle with one extra vertex 3 degrees off the straight line on its long side.
    ring = [(0, 0), (5, -0.13), (10, 0), (10, 4), (0, 4)]
    stats = ShapeStats()
    stats.add(MultiPolygon([Polygon(ring), Polygon(L_SHAPE)]))
    summary = stats.summary()
    assert summary["buildings"] == 2 and summary["vertices_per_building"] == 5.5
    assert summary["corner_right_share"] == 1.0 > summary["right_angle_share"]
    assert ring_angles([(0, 0), (1, 1)]) == [] and ring_angles([(0, 0), (1, 0), (1, 0), (0, 1), (0, 0)]) != []


def test_short_edges_show_pixel_staircases():
    points, x, y = [(0, 0), (3, 0)], 3.0, 0.0
    for _ in range(10):  # a diagonal side drawn in 0.3 m pixel steps
        y += 0.3
        points.append((x, y))
        x -= 0.3
        points.append((x, y))
    stats = ShapeStats()
    stats.add(Polygon(points), metres_per_unit=1.0)
    summary = stats.summary()
    assert summary["right_angle_share"] > 0.9 and summary["short_edge_share"] > 0.5  # right angles, but steps
    square = ShapeStats()
    square.add(Polygon([(0, 0), (3, 0), (3, 3), (0, 3)]), metres_per_unit=0.2)  # 0.6 m edges on the ground
    assert square.summary()["short_edge_share"] == 1.0


def test_outline_step_on_a_perfect_l_mask():
    from tools.lab.outline_shapes import outline_step

    truth, outline = outline_step(Polygon([(10, 10), (60, 10), (60, 30), (30, 30), (30, 55), (10, 55)]),
                                  "orthogonal", 0.3)
    angles = ring_angles(outline.exterior.coords)
    assert len(angles) == 6 and all(is_right(a) for a in angles)  # an axis-aligned L comes back as an L
    assert outline.intersection(truth).area / outline.union(truth).area > 0.97


def test_outline_step_in_the_other_modes():
    """A perfect mask of an L turned by 20 degrees: an L in every mode that shapes outlines (circle: right angles)."""
    from shapely import affinity

    from tools.lab.outline_shapes import outline_step

    ell = affinity.rotate(Polygon([(10, 10), (60, 10), (60, 30), (30, 30), (30, 55), (10, 55)]), 20, origin=(35, 35))
    for mode, tolerance in (("diagonals", 1e-6), ("circle", 1e-6), ("any-angle", 10.0)):
        truth, outline = outline_step(affinity.translate(ell, 15, 15), mode, 0.3)
        angles = ring_angles(outline.exterior.coords)
        assert len(angles) == 6 and all(is_right(a, tolerance) for a in angles), (mode, angles)
        assert outline.intersection(truth).area / outline.union(truth).area > 0.95
