"""Extract building footprints from a raster into a vector file or a SpaceNet proposals CSV.

Output polygons are in the raster's CRS with fields area_m2 (ground area) and
score (mean building probability); a .gpkg holds them in layer ``buildings``.
"""

from __future__ import annotations

import argparse
import sys

from footprint_plugin.core.extract import extract
from footprint_plugin.core.output_paths import OUTPUT_SUFFIXES
from footprint_plugin.core.parameters import OPTIONS, Option, build_parameters
from footprint_plugin.core.readers import RasterioReader

from .progress import ProgressBar

_TYPES = {"int": int, "float": float, "str": str, "bands": str}


def add_option(parser: argparse.ArgumentParser, option: Option) -> None:
    """One entry of the shared option table as a command-line flag."""
    help_text = f"{option.help} (default: {option.describe_default()})"
    if option.kind == "bool":  # a flag that turns the default around: --flip-tta, --no-amp
        action = "store_false" if option.default else "store_true"
        parser.add_argument(option.flag, dest=option.name, action=action, default=None, help=help_text)
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
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    parameters = build_parameters({option.name: getattr(args, option.name) for option in OPTIONS},
                                  weights=args.weights)
    bar = None if args.quiet else ProgressBar("predict")
    with RasterioReader(args.input) as reader:
        try:
            result = extract(reader, parameters, output=args.output, probabilities=args.probabilities, progress=bar,
                             warn=lambda message: print(f"warning: {message}", file=sys.stderr))
        finally:
            if bar:
                bar.close()
    print(f"{result.count} buildings in {result.seconds:.1f} s on {result.device} -> {args.output} "
          f"(weights {result.card.name})")
    return 0
