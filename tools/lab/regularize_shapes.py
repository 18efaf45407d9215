"""The regulariser's modes measured on real outlines.
Produced: docs/regularize.md, the tables of "Measured on real outlines" (all but the L/U test on perfect masks).

python tools/lab/regularize_shapes.py osm [--tolerance 0.5] [--json FILE]     # each mode on every OSM outline
python tools/lab/regularize_shapes.py round [--json FILE]                     # circle mode: hits and false circles
python tools/lab/regularize_shapes.py model [--split test] [--modes ...] [--json FILE]   # the extraction's modes
python tools/lab/regularize_shapes.py speed LAYER [--mode right-angles] [--tolerance 0.5]  # buildings/s, one core

``osm`` runs the layer tool (core.regularize, as ``footprints regularize``) on the 3,284 OpenStreetMap outlines of
../shared/data: IoU kept (median, 5th percentile), vertices before and after, right-angled corners, what each
building got, and how many became circles. ``round`` gives the circle mode's hit rate on round huts (none of the
OSM outlines here is round, so synthetic ones: perfect pixel masks of discs, and hand-drawn polygons of 8 to 24
corners) and its false circles on perfect masks of every OSM outline. ``model`` extracts the split once per
outline mode: F1 (all buildings), and for the outlines inside the raster (one pixel in, as outline_shapes.py):
shapes, the real L- and U-shaped buildings as the model outlines them, and circles.
``speed`` times the core alone (CPU time of this single-threaded process) and the whole command.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tools.lab.outline_shapes import ShapeStats, is_right, ring_angles  # noqa: E402

MODES = ("right-angles", "diagonals", "any-angle", "circle")
EXTRACTION_MODES = ("orthogonal", "diagonals", "any-angle", "circle", "simplify")


def label_files() -> list[Path]:
    from trainer.recipe import ALL_LABELS, DATA

    return sorted({Path(f) for pattern in ALL_LABELS for f in glob.glob(str(DATA / pattern))})


def read_wkbs(path: Path) -> tuple[list[bytes], str]:
    from osgeo import ogr

    dataset = ogr.Open(str(path))
    layer = dataset.GetLayer(0)
    blobs = [bytes(f.GetGeometryRef().ExportToWkb()) for f in layer if f.GetGeometryRef() is not None]
    crs = layer.GetSpatialRef().ExportToWkt()
    del layer, dataset
    return blobs, crs


class Mercator:
    """Geometries of one CRS in EPSG:3857 (conformal: angles as on the ground, lengths scaled by 1/cos(latitude))."""

    def __init__(self, crs_wkt: str) -> None:
        from osgeo import osr

        source, target = osr.SpatialReference(), osr.SpatialReference()
        source.ImportFromWkt(crs_wkt)
        target.ImportFromEPSG(3857)
        for srs in (source, target):
            srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        self.transform = osr.CoordinateTransformation(source, target)

    def __call__(self, geometry):
        from osgeo import ogr
        from shapely import wkb

        ogr_geometry = ogr.CreateGeometryFromWkb(geometry.wkb)
        ogr_geometry.Transform(self.transform)
        return wkb.loads(bytes(ogr_geometry.ExportToWkb()))


def parts(geometry) -> list:
    return list(getattr(geometry, "geoms", [geometry]))


def vertices(geometry) -> int:
    return sum(len(p.exterior.coords) - 1 for p in parts(geometry))


def circularity(polygon) -> float:
    return 4 * math.pi * polygon.area / polygon.length**2 if polygon.length else 0.0


def is_circle(polygon) -> bool:
    """A regular polygon of 16 or more corners: what the circle mode makes."""
    ring = np.asarray(polygon.exterior.coords)[:-1]
    if len(ring) < 16:
        return False
    radii = np.hypot(*(ring - ring.mean(axis=0)).T)
    return bool(radii.std() < 1e-6 * radii.mean())


def osm(tolerance: float) -> dict:
    """Each mode of the layer tool on every OpenStreetMap outline."""
    from shapely import wkb

    from footprint_plugin.core.regularize import RegularizeOptions, Regularizer

    layers = [(path, *read_wkbs(path)) for path in label_files()]
    inputs = [wkb.loads(blob) for _, blobs, _ in layers for blob in blobs]
    mercator = {path: Mercator(crs) for path, _, crs in layers}
    circular = [circularity(mercator[path](p)) for path, blobs, _ in layers for blob in blobs for p in parts(wkb.loads(blob))]
    out = {"outlines": len(inputs), "files": len(layers), "tolerance_m": tolerance,
           "circularity": {"max": round(max(circular), 3), "over_0.85": int(sum(c > 0.85 for c in circular)),
                           "median": round(statistics.median(circular), 3)},
           "input": _shapes([mercator[path](wkb.loads(b)) for path, blobs, _ in layers for b in blobs])}
    for mode in MODES:
        results, outputs = [], []
        for path, blobs, crs in layers:
            found = Regularizer(RegularizeOptions(mode=mode, tolerance_m=tolerance), crs).batch(blobs)
            results += found
            outputs += [mercator[path](wkb.loads(r.wkb)) for r in found]
        ious = sorted(r.iou for r in results if r.iou is not None)
        out[mode] = {"iou_median": round(statistics.median(ious), 4), "iou_p5": round(float(np.percentile(ious, 5)), 4),
                     "iou_min": round(ious[0], 4), "methods": dict(Counter(r.method for r in results).most_common()),
                     "circles": int(sum(is_circle(p) for g in outputs for p in parts(g))), **_shapes(outputs)}
        print(f"{mode:12} IoU median {out[mode]['iou_median']:.3f}, 5th pct {out[mode]['iou_p5']:.3f}, "
              f"vertices {out['input']['vertices_per_building']:.1f} -> {out[mode]['vertices_per_building']:.1f}, "
              f"right corners {out[mode]['corner_right_share']:.1%}, {out[mode]['methods']}", flush=True)
    return out


def _shapes(geometries: list) -> dict:
    stats = ShapeStats()
    for geometry in geometries:
        stats.add(geometry)
    summary = stats.summary()
    return {key: summary[key] for key in ("vertices_per_building", "median_vertices", "right_angle_share",
                                          "corner_right_share")}


def round_buildings(seed: int = 0) -> dict:
    """The circle mode on round huts (synthetic: none of the OSM outlines is round) and on the real others."""
    from shapely import affinity, wkb
    from shapely.geometry import Point, Polygon

    from footprint_plugin.core.regularize import RegularizeOptions, Regularizer
    from tools.lab.outline_shapes import outline_step

    rng = np.random.default_rng(seed)
    resolution = 0.3
    tool = Regularizer(RegularizeOptions(mode="circle", tolerance_m=resolution), None)  # units: metres
    masks = {"extraction": 0, "tool": 0, "huts": 0}
    for radius in (1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0):
        for _ in range(20):
            centre = rng.uniform(0, 1, 2) + radius / resolution + 8
            disc = Point(*centre).buffer(radius / resolution, 64)  # pixels
            masks["huts"] += 1
            _, outline = outline_step(disc, "circle", resolution)
            masks["extraction"] += int(outline is not None and is_circle(outline))
            _, pixel = outline_step(disc, "none", resolution)
            found = tool.batch([affinity.scale(pixel, resolution, resolution, origin=(0, 0)).wkb])[0]
            masks["tool"] += int(found.method == "circle")
    drawn = {"huts": 0, "circles": 0}
    for corners in (8, 10, 12, 16, 24):
        for radius in (2.0, 3.0, 5.0, 8.0):
            for _ in range(10):
                turn = np.sort(2 * np.pi * (np.arange(corners) + rng.uniform(-0.15, 0.15, corners)) / corners)
                length = radius * (1 + rng.uniform(-0.05, 0.05, corners))
                hut = Polygon(np.column_stack([length * np.cos(turn), length * np.sin(turn)]))
                drawn["huts"] += 1
                drawn["circles"] += int(tool.batch([hut.wkb])[0].method == "circle")
    false_masks, others = 0, 0
    for path in label_files():
        blobs, crs = read_wkbs(path)
        mercator = Mercator(crs)
        for blob in blobs:
            for polygon in parts(mercator(wkb.loads(blob))):
                pixels = affinity.scale(polygon, 1 / resolution, -1 / resolution, origin=(0, 0))
                pixels = affinity.translate(pixels, -pixels.bounds[0] + 8, -pixels.bounds[1] + 8)
                others += 1
                _, outline = outline_step(pixels, "circle", resolution)
                false_masks += int(outline is not None and is_circle(outline))
    out = {"disc_masks": masks, "drawn_huts": drawn, "osm_outlines_as_perfect_masks": others,
           "false_circles_perfect_masks": false_masks}
    print(json.dumps(out, indent=1))
    return out


def model(split_name: str, modes: list[str]) -> dict:
    """The extraction in each outline mode on a split: F1, shapes, L/U on the model's output, circles."""
    from shapely import wkb

    from footprint_plugin.core.extract import extract_buildings
    from footprint_plugin.core.parameters import ExtractionParameters
    from footprint_plugin.core.readers import RasterioReader
    from footprint_plugin.core.vector_files import read_polygons
    from trainer.recipe import DATA, TEST, VAL, measured_model
    from trainer.scoring import RasterScore, score_raster_buildings

    split = TEST if split_name == "test" else VAL
    weights = measured_model(None)
    rows = {mode: {"score": RasterScore(), "shapes": ShapeStats(), "L": [0, 0, 0], "U": [0, 0, 0], "circles": 0}
            for mode in modes}
    for patterns, labels in split.values():
        for pattern in patterns:
            for raster in sorted(glob.glob(str(DATA / pattern))):
                with RasterioReader(raster) as reader:
                    crs, frame = reader.crs_wkt, _frame(reader)
                mercator = Mercator(crs)
                truth = [g for g in read_polygons(str(DATA / labels), crs).geometries if frame.contains(g)]
                shaped_truth = _l_and_u(mercator, truth)
                for mode in modes:
                    with RasterioReader(raster) as reader:
                        found = extract_buildings(reader, ExtractionParameters(regularize=mode), model=weights)
                    row = rows[mode]
                    row["score"].add(score_raster_buildings(raster, str(DATA / labels), found.buildings, 5.0))
                    inside = [g for g in (wkb.loads(b.wkb) for b in found.buildings) if frame.contains(g)]
                    predicted = [mercator(g) for g in inside]
                    for polygon in predicted:
                        row["shapes"].add(polygon)
                        row["circles"] += int(is_circle(polygon))
                    _match_l_and_u(shaped_truth, predicted, row)
                print(f"  {Path(raster).name}: " + ", ".join(f"{m} {rows[m]['score'].f1:.3f}" for m in modes), flush=True)
    out = {}
    for mode, row in rows.items():
        out[mode] = {"f1": round(row["score"].f1, 4), "tp": row["score"].tp, "fp": row["score"].fp,
                     "fn": row["score"].fn, "circles": row["circles"], **{k: v for k, v in row["shapes"].summary().items()
                                                                          if k != "short_edge_share"}}
        for kind in ("L", "U"):
            truths, matched, exact = row[kind]
            out[mode][kind] = {"truth": truths, "found": matched, "exact_of_found": round(exact / max(matched, 1), 4)}
        print(f"{mode:12} F1 {out[mode]['f1']:.3f}  {out[mode]['vertices_per_building']:.1f} vertices, "
              f"{out[mode]['corner_right_share']:.1%} right corners, L exact {out[mode]['L']}, U exact {out[mode]['U']}, "
              f"{row['circles']} circles", flush=True)
    return out


def _frame(reader):
    """The raster's footprint one pixel in: outlines the raster's edge cuts are not shapes (as outline_shapes.py)."""
    from shapely.geometry import box

    left, top = reader.transform * (0, 0)
    right, bottom = reader.transform * (reader.width, reader.height)
    pixel = abs(reader.transform.a)
    return box(min(left, right) + pixel, min(top, bottom) + pixel, max(left, right) - pixel, max(top, bottom) - pixel)


def _l_and_u(mercator: Mercator, geometries: list, tolerance: float = 12.0) -> list[tuple[str, object]]:
    """The L-shaped (6 right corners, one inner) and U-shaped (8, two inner) outlines, in EPSG:3857."""
    shaped = []
    for geometry in geometries:
        for polygon in parts(mercator(geometry)):
            angles = ring_angles(polygon.exterior.coords)
            inner = sum(abs(a - 270.0) <= tolerance for a in angles)
            kind = {(6, 1): "L", (8, 2): "U"}.get((len(angles), inner))
            if kind and all(is_right(a, tolerance) for a in angles):
                shaped.append((kind, polygon))
    return shaped


def _match_l_and_u(shaped_truth: list, predicted: list, row: dict) -> None:
    """Per L or U: found (a prediction of IoU >= 0.5) and found as the exact shape (6 or 8 right corners)."""
    for kind, truth in shaped_truth:
        row[kind][0] += 1
        best, best_iou = None, 0.5
        for polygon in predicted:
            if polygon.intersects(truth):
                iou = polygon.intersection(truth).area / polygon.union(truth).area
                if iou >= best_iou:
                    best, best_iou = polygon, iou
        if best is None:
            continue
        row[kind][1] += 1
        angles = ring_angles(best.exterior.coords)
        row[kind][2] += int(len(angles) == (6 if kind == "L" else 8) and all(is_right(a) for a in angles))


def speed(layer: Path, mode: str, tolerance: float) -> dict:
    """Buildings per second of the core alone (CPU time, one thread) and of the whole command (wall time)."""
    from footprint_plugin.core.regularize import RegularizeOptions, Regularizer, regularize_file

    blobs, crs = read_wkbs(layer)
    options = RegularizeOptions(mode=mode, tolerance_m=tolerance)
    regularizer = Regularizer(options, crs, multi=False)
    regularizer.batch(blobs[:64])  # imports and first calls outside the clock
    started = time.process_time()
    for first in range(0, len(blobs), 2048):
        regularizer.batch(blobs[first : first + 2048])
    core = time.process_time() - started
    with tempfile.TemporaryDirectory() as folder:
        started, cpu = time.perf_counter(), time.process_time()
        summary = regularize_file(str(layer), str(Path(folder) / "out.gpkg"), options)
        wall, whole_cpu = time.perf_counter() - started, time.process_time() - cpu
    out = {"layer": layer.name, "mode": mode, "buildings": len(blobs), "core_per_s": round(len(blobs) / core),
           "vertices_before": round(statistics.mean(_vertices_of(blobs)), 1),
           "command_per_s_wall": round(summary.read / wall), "command_per_s_cpu": round(summary.read / whole_cpu),
           "methods": dict(summary.methods)}
    print(json.dumps(out))
    return out


def _vertices_of(blobs: list[bytes]) -> list[int]:
    from shapely import wkb

    return [vertices(wkb.loads(blob)) for blob in blobs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["osm", "round", "model", "speed"])
    parser.add_argument("layer", nargs="?", type=Path, help="speed: the polygon layer to time")
    parser.add_argument("--tolerance", type=float, default=0.5)
    parser.add_argument("--mode", default="right-angles", choices=MODES)
    parser.add_argument("--split", choices=["test", "val"], default="test")
    parser.add_argument("--modes", default=",".join(EXTRACTION_MODES))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.what == "osm":
        figures = osm(args.tolerance)
    elif args.what == "round":
        figures = round_buildings()
    elif args.what == "model":
        figures = model(args.split, args.modes.split(","))
    else:
        figures = speed(args.layer, args.mode, args.tolerance)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
