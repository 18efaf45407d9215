"""Regularise the building footprints of any polygon layer into a new file: right angles, right angles and
diagonals, any angle, or circles for round buildings.

Every attribute is kept; reg_method says what shaped each building (right-angles, diagonals, any-angle,
circle, or input where its shape overlapped it by less than --min-iou; ",repaired" where an invalid polygon
was repaired first; invalid, empty or multipart where it passed through unchanged) and reg_iou its overlap
with the input. The output's format comes from its extension (.gpkg, .geojson, .fgb, .shp); it is written
under a temporary name and appears only when complete. Any CRS: the work is done in metres about each
building.
"""

from __future__ import annotations

import argparse
import sys

from footprint_plugin.core.outlines import CIRCLE_MIN_IOU, ORTHOGONAL_MIN_IOU
from footprint_plugin.core.regularize import MODES, RegularizeOptions, regularize_file

from .progress import ProgressBar


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN", help="a polygon layer GDAL can read (GeoPackage, GeoJSON, Shapefile, ...)")
    parser.add_argument("output", metavar="OUT", help="the new file (.gpkg, .geojson, .fgb or .shp); replaced if it exists")
    parser.add_argument("--mode", choices=MODES, default="right-angles",
                        help="right-angles; diagonals (edges at multiples of 45 degrees from the dominant direction); "
                             "any-angle (straight walls, wobble removed); circle (a circle where round enough, else "
                             "right angles) (default: right-angles)")
    parser.add_argument("--tolerance", type=float, default=0.5, metavar="M",
                        help="how far (m) a wall may move to become straight; shorter wall pieces merge (default: 0.5)")
    parser.add_argument("--min-area", type=float, default=0.0, metavar="M2",
                        help="leave out buildings smaller than this, m2 (default: 0, none)")
    parser.add_argument("--min-iou", type=float, default=ORTHOGONAL_MIN_IOU,
                        help=f"keep the input where its new shape overlaps it by less than this IoU (default: "
                             f"{ORTHOGONAL_MIN_IOU:g})")
    parser.add_argument("--no-fallback", dest="fallback", action="store_false",
                        help="take every new shape, however little it overlaps the input")
    parser.add_argument("--circle-roundness", type=float, default=CIRCLE_MIN_IOU, metavar="IOU",
                        help=f"--mode circle: a circle is taken where it overlaps the building by at least this "
                             f"(a square: 0.83) (default: {CIRCLE_MIN_IOU:g})")
    parser.add_argument("--layer", help="the layer of IN to read (default: the first with polygons)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    options = RegularizeOptions(mode=args.mode, tolerance_m=args.tolerance, min_area_m2=args.min_area,
                                fallback=args.fallback, min_iou=args.min_iou, circle_min_iou=args.circle_roundness)
    bar = None if args.quiet else ProgressBar("regularize")
    try:
        summary = regularize_file(args.input, args.output, options, layer_name=args.layer, progress=bar,
                                  warn=lambda message: print(f"warning: {message}", file=sys.stderr))
    finally:
        if bar:
            bar.close()
    print(f"{summary.message()} -> {args.output}")
    return 0
