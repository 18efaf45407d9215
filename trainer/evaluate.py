"""Score predicted buildings against ground truth with the SpaceNet building metric.

Per image, proposals in descending confidence each take the still-unmatched
truth polygon of highest IoU; a true positive when IoU >= --iou. Truth polygons
smaller than --min-area are ignored (CSV: pixels; vector files: square metres).

T and P are SpaceNet CSVs (ImageId,BuildingId,PolygonWKT_Pix[,PolygonWKT_Geo][,Confidence];
POLYGON EMPTY marks an image without buildings) or vector files (any OGR format;
predictions are reprojected to the truth's CRS; the `score` field is the confidence).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

from shapely import wkt
from shapely.errors import ShapelyError
from shapely.geometry.base import BaseGeometry
from shapely.validation import make_valid

from footprint_plugin.core.errors import FootprintError
from footprint_plugin.core.vector_files import read_polygons, write_polygons

from .scoring import MatchCounts, match_buildings

Image = dict[str, tuple[list[BaseGeometry], list[float | None]]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--truth", required=True, help="SpaceNet CSV or vector file with true buildings")
    parser.add_argument("--pred", required=True, help="SpaceNet CSV or vector file with predicted buildings")
    parser.add_argument("--iou", type=float, default=0.5, help="IoU threshold for a match (default 0.5)")
    parser.add_argument("--min-area", type=float, default=20.0,
                        help="ignore truth polygons smaller than this (CSV: px; vectors: m2; default 20)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--out-dir", help="write tp/fp/fn layers to OUT_DIR/evaluation.gpkg")


def read_spacenet_csv(path: str) -> Image:
    """ImageId -> (polygons in pixel units, confidences)."""
    images: Image = defaultdict(lambda: ([], []))
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            if "ImageId" not in fields or "PolygonWKT_Pix" not in fields:
                raise FootprintError(f"{path}: a SpaceNet CSV needs the columns ImageId and PolygonWKT_Pix (has {fields}).")
            for line, row in enumerate(reader, start=2):
                geometries, scores = images[row["ImageId"]]
                try:
                    geometry = wkt.loads(row["PolygonWKT_Pix"])
                except (ShapelyError, ValueError, TypeError):
                    raise FootprintError(f"{path}, line {line}: PolygonWKT_Pix is not valid WKT.") from None
                if geometry.is_empty:
                    continue
                if not geometry.is_valid:
                    geometry = make_valid(geometry)
                geometries.append(geometry)
                confidence = row.get("Confidence")
                scores.append(float(confidence) if confidence not in (None, "") else None)
    except OSError as exc:
        raise FootprintError(f"{path}: cannot be read ({exc.strerror}).") from None
    return dict(images)


def _utm_for(geometries: list[BaseGeometry]) -> str:
    from rasterio.crs import CRS

    sample = geometries[0].centroid
    zone = int((sample.x + 180) // 6) + 1
    return CRS.from_epsg((32600 if sample.y >= 0 else 32700) + zone).to_wkt()


def read_vector_pair(truth_path: str, pred_path: str) -> tuple[Image, Image, str | None]:
    """Both files as one image each, in a metric CRS (truth's, or UTM for degrees and EPSG:3857)."""
    from rasterio.crs import CRS

    truth = read_polygons(truth_path)
    crs = truth.crs_wkt
    if crs and truth.geometries and (CRS.from_wkt(crs).is_geographic or CRS.from_wkt(crs).to_epsg() == 3857):
        # Degrees and Web-Mercator units are not ground metres: score in the local UTM zone.
        metric = _utm_for(read_polygons(truth_path, CRS.from_epsg(4326).to_wkt()).geometries)
        truth = read_polygons(truth_path, metric)
        crs = metric
    pred = read_polygons(pred_path, crs)
    name = Path(truth_path).stem
    return {name: (truth.geometries, truth.scores)}, {name: (pred.geometries, pred.scores)}, crs


def evaluate(truth: Image, pred: Image, iou: float, min_area: float) -> dict:
    """Counts and scores overall and per image."""
    per_image, matches_by_image = {}, {}
    total = MatchCounts(0, 0, 0, [])
    for image_id in sorted(set(truth) | set(pred)):
        truth_geoms = [g for g in truth.get(image_id, ([], []))[0] if g.area >= min_area]
        pred_geoms, pred_scores = pred.get(image_id, ([], []))
        confidences = [s if s is not None else 0.0 for s in pred_scores]
        counts = match_buildings(truth_geoms, pred_geoms, confidences, iou)
        matches_by_image[image_id] = (truth_geoms, pred_geoms, counts)
        per_image[image_id] = _summary(counts)
        total.tp, total.fp, total.fn = total.tp + counts.tp, total.fp + counts.fp, total.fn + counts.fn
    return {**_summary(total), "iou_threshold": iou, "min_area": min_area, "images": per_image,
            "_matches": matches_by_image}


def _summary(counts: MatchCounts) -> dict:
    return {"tp": counts.tp, "fp": counts.fp, "fn": counts.fn, "precision": round(counts.precision, 4),
            "recall": round(counts.recall, 4), "f1": round(counts.f1, 4)}


def review_features(result: dict) -> dict[str, list[tuple[BaseGeometry, dict]]]:
    """An ``evaluate`` result's buildings as true_positive, false_positive and false_negative (geometry, fields)."""
    layers: dict[str, list[tuple[BaseGeometry, dict]]] = {"true_positive": [], "false_positive": [], "false_negative": []}
    for image_id, (truth_geoms, pred_geoms, counts) in result["_matches"].items():
        matched_pred = {p: (t, v) for p, t, v in counts.matches}
        matched_truth = {t for _, t, _ in counts.matches}
        for index, geometry in enumerate(pred_geoms):
            if index in matched_pred:
                layers["true_positive"].append((geometry, {"image": image_id, "iou": round(matched_pred[index][1], 4)}))
            else:
                layers["false_positive"].append((geometry, {"image": image_id}))
        for index, geometry in enumerate(truth_geoms):
            if index not in matched_truth:
                layers["false_negative"].append((geometry, {"image": image_id}))
    return layers


def write_review_layers(out_dir: str, result: dict, crs_wkt: str | None) -> Path:
    layers = review_features(result)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "evaluation.gpkg"
    path.unlink(missing_ok=True)
    write_polygons(str(path), layers, crs_wkt)
    return path


def run(args: argparse.Namespace) -> int:
    if not 0 < args.iou <= 1:
        raise FootprintError("--iou must be in (0, 1].")
    for path in (args.truth, args.pred):
        if not Path(path).is_file():
            raise FootprintError(f"{path}: file not found.")
    truth_csv, pred_csv = (p.lower().endswith(".csv") for p in (args.truth, args.pred))
    if truth_csv != pred_csv:
        raise FootprintError("--truth and --pred must both be SpaceNet CSVs or both be vector files.")
    crs = None
    if truth_csv:
        truth, pred = read_spacenet_csv(args.truth), read_spacenet_csv(args.pred)
    else:
        truth, pred, crs = read_vector_pair(args.truth, args.pred)
    result = evaluate(truth, pred, args.iou, args.min_area)
    if args.out_dir:
        path = write_review_layers(args.out_dir, result, crs)
        if not args.json:
            print(f"review layers: {path}")
    result.pop("_matches")
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"F1 {result['f1']:.4f}  precision {result['precision']:.4f}  recall {result['recall']:.4f}  "
              f"(TP {result['tp']}, FP {result['fp']}, FN {result['fn']}, IoU >= {args.iou:g}, "
              f"{len(result['images'])} image(s))")
    return 0

