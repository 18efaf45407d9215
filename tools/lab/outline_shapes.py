"""How building-like the outlines are: ``simplify`` against ``orthogonal`` (and ``none``) on a held-out split.
Produced: docs/model_report.md, "Outlines" (the right-angle table, the L/U test, docs/outlines_simplify_vs_orthogonal.png).
The L/U test of every mode in docs/regularize.md too (--lu --modes orthogonal,diagonals,any-angle,circle,simplify).

python tools/lab/outline_shapes.py [--split test|val] [--weights W] [--modes simplify,orthogonal] [--json FILE]
python tools/lab/outline_shapes.py --overlay RASTER --png FILE [--modes ...]   # the modes side by side over the image
python tools/lab/outline_shapes.py --lu [--modes ...]   # the outline step alone on real L- and U-shaped outlines

For each outline mode: building F1 (SpaceNet, IoU >= 0.5, the project's one scorer) and pixel IoU, and
the shape of the predicted outlines: vertices per building, the share of all vertices whose interior
angle is within 10 degrees of 90 (or 270, the inner corner of an L), and the same share among the
real corners only (vertices that turn by 30 degrees or more), and the share of edges shorter than 1 m
on the ground (pixel staircases: ``none`` is all right angles, but in 0.3 m steps). The OpenStreetMap outlines of the same
rasters (hand-drawn, mostly right-angled) are measured the same way as the reference. Outlines that
touch the raster's edge are left out of the shape figures (the edge cuts them).
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

RIGHT_TOLERANCE_DEG = 10.0
CORNER_TURN_DEG = 30.0
SHORT_EDGE_M = 1.0


def ring_angles(coords) -> list[float]:
    """Interior angles (degrees, 0-360) at each vertex of a closed ring, for any orientation."""
    points = list(coords)
    if len(points) > 1 and tuple(points[0]) == tuple(points[-1]):
        points = points[:-1]
    cleaned = []
    for point in points:  # drop repeated vertices
        if not cleaned or math.dist(point, cleaned[-1]) > 1e-12:
            cleaned.append(point)
    if len(cleaned) > 1 and math.dist(cleaned[0], cleaned[-1]) <= 1e-12:
        cleaned.pop()
    n = len(cleaned)
    if n < 3:
        return []
    area2 = sum(cleaned[i][0] * cleaned[(i + 1) % n][1] - cleaned[(i + 1) % n][0] * cleaned[i][1] for i in range(n))
    sign = 1.0 if area2 > 0 else -1.0  # counter-clockwise: left turns are convex corners
    angles = []
    for i in range(n):
        (ax, ay), (bx, by), (cx, cy) = cleaned[i - 1], cleaned[i], cleaned[(i + 1) % n]
        incoming = math.atan2(by - ay, bx - ax)
        outgoing = math.atan2(cy - by, cx - bx)
        turn = math.degrees((outgoing - incoming + math.pi) % (2 * math.pi) - math.pi) * sign  # left turn > 0
        angles.append(180.0 - turn)
    return angles


def is_right(angle: float, tolerance: float = RIGHT_TOLERANCE_DEG) -> bool:
    return abs(angle - 90.0) <= tolerance or abs(angle - 270.0) <= tolerance


@dataclass
class ShapeStats:
    buildings: int = 0
    vertices: list[int] = field(default_factory=list)
    angles: int = 0
    right: int = 0
    corners: int = 0
    right_corners: int = 0
    edges: int = 0
    short_edges: int = 0

    def add(self, geometry, metres_per_unit: float = 1.0) -> None:
        """One polygon (its exterior ring; holes are rare and left out) or each part of a multipolygon."""
        for polygon in getattr(geometry, "geoms", [geometry]):
            angles = ring_angles(polygon.exterior.coords)
            if not angles:
                continue
            ring = list(polygon.exterior.coords)
            lengths = [math.dist(a, b) * metres_per_unit for a, b in zip(ring, ring[1:]) if math.dist(a, b) > 1e-12]
            self.edges += len(lengths)
            self.short_edges += sum(length < SHORT_EDGE_M for length in lengths)
            self.buildings += 1
            self.vertices.append(len(angles))
            self.angles += len(angles)
            self.right += sum(is_right(a) for a in angles)
            corners = [a for a in angles if abs(180.0 - a) >= CORNER_TURN_DEG]
            self.corners += len(corners)
            self.right_corners += sum(is_right(a) for a in corners)

    def summary(self) -> dict:
        return {
            "buildings": self.buildings,
            "vertices_per_building": round(statistics.mean(self.vertices), 2) if self.vertices else 0.0,
            "median_vertices": statistics.median(self.vertices) if self.vertices else 0,
            "right_angle_share": round(self.right / self.angles, 4) if self.angles else 0.0,
            "corner_right_share": round(self.right_corners / self.corners, 4) if self.corners else 0.0,
            "short_edge_share": round(self.short_edges / self.edges, 4) if self.edges else 0.0,
        }


def inside(geometry, frame) -> bool:
    return frame.contains(geometry)


def measure(split: dict, modes: list[str], weights: str | None, data: Path, min_area_m2: float = 5.0) -> dict:
    from shapely.geometry import box

    from footprint_plugin.core.extract import extract_buildings
    from footprint_plugin.core.geo import ground_resolution_m
    from footprint_plugin.core.parameters import ExtractionParameters
    from footprint_plugin.core.readers import RasterioReader
    from footprint_plugin.core.vector_files import read_polygons
    from trainer.recipe import measured_model
    from trainer.scoring import RasterScore, score_raster_buildings

    model = measured_model(weights)
    scores = {mode: RasterScore() for mode in modes}
    shapes = {mode: ShapeStats() for mode in modes}
    truth_shapes = ShapeStats()
    started = time.monotonic()
    rasters = 0
    for patterns, labels in split.values():
        for pattern in patterns:
            for raster in sorted(glob.glob(str(data / pattern))):
                with RasterioReader(raster) as reader:
                    left, top = reader.transform * (0, 0)
                    right, bottom = reader.transform * (reader.width, reader.height)
                    # One pixel in from the edge: outlines the raster's frame cuts are not shapes.
                    pixel = abs(reader.transform.a)
                    frame = box(min(left, right) + pixel, min(top, bottom) + pixel,
                                max(left, right) - pixel, max(top, bottom) - pixel)
                    crs = reader.crs_wkt
                    metres = ground_resolution_m(crs, reader.transform, reader.width, reader.height)[0] / pixel
                rasters += 1
                for geometry in read_polygons(str(data / labels), crs).geometries:
                    if inside(geometry, frame):
                        truth_shapes.add(geometry, metres)
                for mode in modes:
                    with RasterioReader(raster) as reader:
                        result = extract_buildings(reader, ExtractionParameters(weights=weights, regularize=mode,
                                                                                min_area_m2=min_area_m2), model=model)
                    one = score_raster_buildings(raster, str(data / labels), result.buildings, min_area_m2)
                    scores[mode].add(one)
                    for building in result.buildings:
                        if inside(building.geometry, frame):
                            shapes[mode].add(building.geometry, metres)
                print(f"  {Path(raster).name}: " + ", ".join(f"{m} {scores[m].f1:.3f}" for m in modes)
                      + f" (pooled so far, {time.monotonic() - started:.0f} s)", flush=True)
    out = {"weights": model[1].name, "split_rasters": rasters,
           "min_area_m2": min_area_m2, "right_tolerance_deg": RIGHT_TOLERANCE_DEG, "corner_turn_deg": CORNER_TURN_DEG,
           "truth (OpenStreetMap)": truth_shapes.summary()}
    for mode in modes:
        out[mode] = {"f1": round(scores[mode].f1, 4), "pixel_iou": round(scores[mode].pixel_iou, 4),
                     "tp": scores[mode].tp, "fp": scores[mode].fp, "fn": scores[mode].fn, **shapes[mode].summary()}
    return out


def overlay(raster: str, modes: list[str], weights: str | None, png: Path, labels: str | None = None,
            crop: tuple[int, int, int, int] | None = None) -> None:
    """The raster with each mode's outlines (and the labels, if given), one panel per mode; ``crop`` = x, y, w, h px."""
    import numpy as np
    import rasterio
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from footprint_plugin.core.extract import extract_buildings
    from footprint_plugin.core.parameters import ExtractionParameters
    from footprint_plugin.core.readers import RasterioReader
    from footprint_plugin.core.vector_files import read_polygons
    from trainer.recipe import measured_model

    model = measured_model(weights)
    with rasterio.open(raster) as source:
        image = np.moveaxis(source.read([1, 2, 3]), 0, -1)
        inverse = ~source.transform
        crs = source.crs.to_wkt()
    truth = read_polygons(labels, crs).geometries if labels else []
    x0, y0, w, h = crop or (0, 0, image.shape[1], image.shape[0])
    wide = w > 1.5 * h  # wide views one above the other
    size = (8, (8 * h / w + 0.4) * len(modes)) if wide else (6 * len(modes), 6 * h / w + 0.4)
    figure = Figure(figsize=size, dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    grid = (len(modes), 1) if wide else (1, len(modes))
    for axes, mode in zip(np.atleast_1d(figure.subplots(*grid)), modes):
        with RasterioReader(raster) as reader:
            result = extract_buildings(reader, ExtractionParameters(weights=weights, regularize=mode), model=model)
        axes.imshow(image)
        for geometries, colour, width in ((truth, "#00e5ff", 0.8), ([b.geometry for b in result.buildings], "#ff7f0e", 1.3)):
            for geometry in geometries:
                for polygon in getattr(geometry, "geoms", [geometry]):
                    xy = np.array([inverse * point for point in polygon.exterior.coords])
                    axes.plot(xy[:, 0], xy[:, 1], color=colour, linewidth=width)
        stats = ShapeStats()
        for building in result.buildings:
            stats.add(building.geometry)
        summary = stats.summary()
        axes.set_title(f"{mode}: {summary['vertices_per_building']:.1f} vertices per building, "
                       f"{summary['corner_right_share']:.0%} of corners right-angled", fontsize=9)
        axes.set_xlim(x0, x0 + w)
        axes.set_ylim(y0 + h, y0)
        axes.set_axis_off()
    figure.suptitle(f"{Path(raster).name}: predicted (orange)" + (", OpenStreetMap (cyan)" if labels else ""),
                    fontsize=10)
    figure.savefig(png)


def l_and_u_outlines(split: dict, data: Path, tolerance: float = 12.0):
    """(kind, raster resolution m, polygon in pixels) for each labelled L (6 right corners, one inner) or U
    (8, two inner) building wholly inside a raster of ``split``: real outlines of those shapes."""
    import rasterio
    from shapely import affinity

    from footprint_plugin.core.geo import ground_resolution_m
    from footprint_plugin.core.vector_files import read_polygons

    for patterns, labels in split.values():
        for pattern in patterns:
            for raster in sorted(glob.glob(str(data / pattern))):
                with rasterio.open(raster) as source:
                    inverse, crs = ~source.transform, source.crs.to_wkt()
                    width, height = source.width, source.height
                    resolution = ground_resolution_m(crs, source.transform, width, height)[0]
                for geometry in read_polygons(str(data / labels), crs).geometries:
                    for polygon in getattr(geometry, "geoms", [geometry]):
                        angles = ring_angles(polygon.exterior.coords)
                        inner = sum(abs(a - 270.0) <= tolerance for a in angles)
                        kind = {(6, 1): "L", (8, 2): "U"}.get((len(angles), inner))
                        if not kind or not all(is_right(a, tolerance) for a in angles):
                            continue
                        pixels = affinity.affine_transform(polygon, [inverse.a, inverse.b, inverse.d, inverse.e,
                                                                     inverse.xoff, inverse.yoff])
                        x0, y0, x1, y1 = pixels.bounds
                        if x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height and pixels.area >= 150:
                            yield kind, resolution, pixels


def outline_step(polygon, mode: str, resolution_m: float):
    """The vectoriser's outline for a perfect mask of ``polygon`` (pixel coordinates): what ``mode`` alone does."""
    import numpy as np
    from rasterio.features import rasterize
    from rasterio.transform import Affine
    from scipy import ndimage
    from shapely import affinity

    from footprint_plugin.core.buildings import VectorizeOptions
    from footprint_plugin.core.vectorize import StripVectorizer

    x0, y0, x1, y1 = polygon.bounds
    left, top = math.floor(x0) - 6, math.floor(y0) - 6
    local = affinity.translate(polygon, -left, -top)
    width, height = int(math.ceil(x1 - left)) + 6, int(math.ceil(y1 - top)) + 6
    building = rasterize([(local, 1)], out_shape=(height, width), dtype="uint8").astype(np.float32)
    interior = ndimage.binary_erosion(building, iterations=2).astype(np.float32)
    vectorizer = StripVectorizer(Affine.identity(), resolution_m ** 2, width,
                                 VectorizeOptions(regularize=mode, min_area_m2=0))
    found = vectorizer.add(0, building, interior, True)
    return local, (found[0].geometry if len(found) == 1 else None)


def l_and_u_report(split: dict, data: Path, modes: list[str]) -> dict:
    rows: dict = {}
    for kind, resolution, polygon in l_and_u_outlines(split, data):
        for mode in modes:
            truth, outline = outline_step(polygon, mode, resolution)
            row = rows.setdefault(kind, {}).setdefault(mode, {"outlines": 0, "one_building": 0, "iou": [],
                                                              "vertices": [], "right": [], "exact": 0})
            row["outlines"] += 1
            if outline is None:
                continue
            angles = ring_angles(outline.exterior.coords)
            row["one_building"] += 1
            row["iou"].append(outline.intersection(truth).area / outline.union(truth).area)
            row["vertices"].append(len(angles))
            row["right"].append(sum(is_right(a) for a in angles) / len(angles))
            row["exact"] += len(angles) == (6 if kind == "L" else 8) and all(is_right(a) for a in angles)
    summary = {}
    for kind, by_mode in rows.items():
        for mode, row in by_mode.items():
            summary.setdefault(kind, {})[mode] = {
                "outlines": row["outlines"], "one_building": row["one_building"],
                "mean_iou": round(statistics.mean(row["iou"]), 4) if row["iou"] else 0.0,
                "min_iou": round(min(row["iou"]), 4) if row["iou"] else 0.0,
                "vertices_per_building": round(statistics.mean(row["vertices"]), 1) if row["vertices"] else 0.0,
                "right_angle_share": round(statistics.mean(row["right"]), 4) if row["right"] else 0.0,
                "exact_shape_share": round(row["exact"] / row["outlines"], 4) if row["outlines"] else 0.0}
    return summary


def main(argv: list[str] | None = None) -> int:
    from trainer.recipe import DATA, TEST, VAL

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=["test", "val"], default="test")
    parser.add_argument("--weights", help="weights file (default: the bundled default weights)")
    parser.add_argument("--modes", default="simplify,orthogonal", help="comma-separated outline modes")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--overlay", help="a raster to draw the modes' outlines over, into --png")
    parser.add_argument("--labels", help="with --overlay: reference outlines to draw too")
    parser.add_argument("--png", type=Path, default=Path("outline_shapes.png"))
    parser.add_argument("--crop", help="with --overlay: x,y,width,height in pixels")
    parser.add_argument("--lu", action="store_true",
                        help="the outline step alone on perfect masks of real L- and U-shaped labelled buildings "
                             "(all places' labels; no network involved)")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.lu:
        from trainer.recipe import PLACES

        split = {}  # every labelled raster of every place: only its label outlines are used here
        for rasters in PLACES.values():
            for pattern, labels in rasters:
                for raster in sorted(glob.glob(str(DATA / pattern))):
                    own = Path(raster).with_name(Path(raster).stem + "_buildings.geojson")
                    label_file = own if "*" in labels else DATA / labels
                    split[Path(raster).stem] = ([str(Path(raster).relative_to(DATA))], str(label_file.relative_to(DATA)))
        summary = l_and_u_report(split, DATA, modes)
        print("outline step alone on perfect masks of real labelled outlines:")
        for kind, by_mode in summary.items():
            for mode, row in by_mode.items():
                print(f"  {kind} ({row['outlines']} outlines) {mode:10}: IoU {row['mean_iou']:.3f} (min {row['min_iou']:.3f}), "
                      f"{row['vertices_per_building']:.1f} vertices (truth {6 if kind == 'L' else 8}), "
                      f"{row['right_angle_share']:.0%} right angles, exact {kind} shape {row['exact_shape_share']:.0%}")
        if args.json:
            args.json.write_text(json.dumps(summary, indent=1))
        return 0
    if args.overlay:
        crop = tuple(int(v) for v in args.crop.split(",")) if args.crop else None
        overlay(args.overlay, modes, args.weights, args.png, args.labels, crop)
        print(f"wrote {args.png}")
        return 0
    figures = measure(TEST if args.split == "test" else VAL, modes, args.weights, DATA)
    print(f"\n{args.split} split ({figures['split_rasters']} rasters), weights {figures['weights']}:")
    print(f"{'outline':24} {'F1':>6} {'px IoU':>7} {'buildings':>9} {'vert/bldg':>9} {'right angles':>12} "
          f"{'right corners':>13} {'edges < 1 m':>11}")
    for name in [*modes, "truth (OpenStreetMap)"]:
        row = figures[name]
        print(f"{name:24} {row.get('f1', float('nan')):6.3f} {row.get('pixel_iou', float('nan')):7.3f} "
              f"{row['buildings']:9d} {row['vertices_per_building']:9.1f} {row['right_angle_share']:12.1%} "
              f"{row['corner_right_share']:13.1%} {row['short_edge_share']:11.1%}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
