"""Are two building layers the same buildings? Counts, the IoU of their unions, and their outline shapes.

    .venv/bin/python tools/compare_outputs.py A.gpkg B.gpkg

Prints one line: the building counts (and their difference in %), the IoU of the union of A's polygons with
the union of B's, and for each the share of right-angled corners and vertices per building
(``tools/lab/outline_shapes.py``'s measures).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def union_iou(first: list, second: list) -> float:
    """IoU of the union of ``first``'s polygons with the union of ``second``'s."""
    from shapely.ops import unary_union

    a, b = unary_union(first), unary_union(second)
    union = a.union(b).area
    return a.intersection(b).area / union if union else 1.0


def compare(first: Path, second: Path) -> dict:
    from footprint_plugin.core.vector_files import read_polygons
    from tools.lab.outline_shapes import ShapeStats

    layers = [read_polygons(str(path)).geometries for path in (first, second)]
    shapes = []
    for geometries in layers:
        stats = ShapeStats()
        for geometry in geometries:
            stats.add(geometry)
        shapes.append(stats.summary())
    count_a, count_b = len(layers[0]), len(layers[1])
    return {"count_a": count_a, "count_b": count_b, "count_change_pct": 100 * (count_b - count_a) / max(1, count_a),
            "union_iou": union_iou(*layers), "shapes_a": shapes[0], "shapes_b": shapes[1]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    args = parser.parse_args(argv)
    result = compare(args.first, args.second)
    print(f"buildings {result['count_a']} -> {result['count_b']} ({result['count_change_pct']:+.2f}%), "
          f"union IoU {result['union_iou']:.4f}; shapes {result['shapes_a']} -> {result['shapes_b']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
