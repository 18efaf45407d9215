"""Extract building footprints from a raster into a vector file or a SpaceNet proposals CSV.

Output polygons are in the raster's CRS with fields area_m2 (ground area) and
score (mean building probability); a .gpkg holds them in layer ``buildings``.
"""

from __future__ import annotations

import argparse
import sys

from footprint_plugin.core.errors import FootprintError
from footprint_plugin.core.extract import extract_to_file
from footprint_plugin.core.parameters import OPTIONS, Option, build_parameters
from footprint_plugin.core.readers import RasterioReader
from footprint_plugin.core.sinks import OUTPUT_SUFFIXES

from .progress import ProgressBar

_TYPES = {"int": int, "float": float, "str": str, "bands": str}


def add_option(parser: argparse.ArgumentParser, option: Option) -> None:
    """One entry of the shared option table as a command-line flag."""
    help_text = f"{option.help} (default: {option.describe_default()})"
    if option.kind == "bool":
        parser.add_argument(option.flag, action="store_true", default=None, help=help_text)
        return
    parser.add_argument(option.flag, type=_TYPES[option.kind], choices=option.choices or None, default=None,
                        help=help_text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="raster file GDAL can read (GeoTIFF, VRT, ...)")
    parser.add_argument("--output", required=True,
                        help=f"file to write, its format by extension ({', '.join(OUTPUT_SUFFIXES)}): .gpkg = layer "
                             "buildings, .csv = SpaceNet proposals in the raster's pixels; replaced if it exists")
    parser.add_argument("--probabilities", metavar="FILE.tif",
                        help="also write the building probability (uint8 GeoTIFF, 0-255) on the model grid")
    parser.add_argument("--weights", help="weights file (default: the bundled default model)")
    for option in OPTIONS:
        add_option(parser, option)
    parser.add_argument("--no-amp", action="store_true", help="no float16 autocast on CUDA")
    parser.add_argument("--vectorize-workers", type=int, default=1, metavar="N",
                        help="processes that polygonise while the model runs (default 1: in this process; "
                             "2 or more pay off when a GPU runs the model)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    parameters = build_parameters({option.name: getattr(args, option.name) for option in OPTIONS},
                                  weights=args.weights, amp=not args.no_amp)
    if not 1 <= args.vectorize_workers <= 64:
        raise FootprintError("--vectorize-workers must lie between 1 and 64.")
    parameters.vectorize_workers = args.vectorize_workers
    bar = None if args.quiet else ProgressBar("predict")
    with RasterioReader(args.input) as reader:
        try:
            result = extract_to_file(reader, args.output, parameters, progress=bar,
                                     warn=lambda message: print(f"warning: {message}", file=sys.stderr),
                                     probabilities=args.probabilities)
        finally:
            if bar:
                bar.close()
    print(f"{result.count} buildings in {result.seconds:.1f} s on {result.device} -> {args.output} "
          f"(weights {result.card.name})")
    return 0
