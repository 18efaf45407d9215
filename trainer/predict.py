"""Extract building footprints from rasters into a vector file or a SpaceNet proposals CSV.

Output polygons are in the (first) raster's CRS with fields area_m2 (ground area), score (mean building
probability) and source (the raster holding the building's centre); a .gpkg holds them in layer ``buildings``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from footprint_plugin.core.errors import FootprintError
from footprint_plugin.core.inputs import mosaic_folder, open_inputs
from footprint_plugin.core.mosaic_run import extract_inputs, is_resumable
from footprint_plugin.core.output_paths import OUTPUT_SUFFIXES, partial_path
from footprint_plugin.core.parameters import OPTIONS, Option, build_parameters, vectorize_options
from footprint_plugin.core.review import review_probabilities, write_review

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
    parser.add_argument("--input", required=True, nargs="+", metavar="RASTER",
                        help="raster(s) GDAL can read (GeoTIFF, VRT, ...), folders of rasters, globs ('tiles/*.tif') or "
                             ".txt files listing one raster per line; rasters in one CRS are read as one mosaic")
    parser.add_argument("--output", required=True,
                        help=f"file to write, its format by extension ({', '.join(OUTPUT_SUFFIXES)}): .gpkg = layer "
                             "buildings, committed block by block (resumable), .csv = SpaceNet proposals in the "
                             "raster's pixels; replaced if it exists")
    parser.add_argument("--resume", action="store_true",
                        help="continue a killed run into the same .gpkg (same inputs and settings) where it stopped")
    parser.add_argument("--crs", help="CRS of the output, e.g. EPSG:32637 (default: the first raster's)")
    parser.add_argument("--cluster", metavar="ENGINE",
                        help="run the blocks on a Dask cluster: local:N (N worker processes here) or tcp://HOST:8786 "
                             "(a running scheduler whose workers see the same rasters); needs dask[distributed]")
    parser.add_argument("--probabilities", metavar="FILE.tif",
                        help="also write the building probability (uint8 GeoTIFF, 0-255) on the model grid")
    parser.add_argument("--review", metavar="REVIEW.gpkg",
                        help="also write a review layer: the buildings with the lowest scores and the areas where "
                             "the building probability hovers near the threshold, ranked (field rank, 1 = correct "
                             "first; field reason)")
    parser.add_argument("--weights", help="weights file (default: the bundled default model)")
    for option in OPTIONS:
        add_option(parser, option)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    parameters = build_parameters({option.name: getattr(args, option.name) for option in OPTIONS},
                                  weights=args.weights)
    warn = lambda message: print(f"warning: {message}", file=sys.stderr)  # noqa: E731
    folder = mosaic_folder(args.output)
    engine = None
    try:
        inputs = open_inputs(args.input, folder, args.crs)
        if not is_resumable(args.output) and not args.resume and _several_blocks(inputs, parameters):
            print(f"note: {Path(args.output).name} is written at the end and cannot resume after a crash "
                  "(a .gpkg output can)", file=sys.stderr)
        if args.cluster:
            from footprint_plugin.core.cluster import ClusterEngine

            engine = ClusterEngine.connect(args.cluster, warn=warn)
        with review_probabilities(args.review, args.probabilities, args.output, _conflict(args)) as probabilities:
            bar = None if args.quiet else ProgressBar("predict")
            try:
                result = extract_inputs(inputs, parameters, args.output, probabilities=probabilities,
                                        resume=args.resume, progress=bar, warn=warn, engine=engine)
            finally:
                if bar:
                    bar.close()
            if args.review:
                places = write_review(args.output, probabilities, args.review,
                                      vectorize_options(parameters, result.card).mask_threshold)
                print(f"{places} places to review first -> {args.review}")
    except (FootprintError, KeyboardInterrupt):
        _resume_hint(args.output)
        raise
    finally:
        if engine is not None:
            engine.close()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{result.count} buildings in {result.seconds:.1f} s on {result.device} -> {args.output} "
          f"(weights {result.card.name})")
    return 0


def _conflict(args: argparse.Namespace) -> str | None:
    """The option that rules out a review layer (it needs the probability raster), if any."""
    return "--resume" if args.resume else "--cluster" if args.cluster else None


def _several_blocks(inputs, parameters) -> bool:
    """Whether the run has more than one block (roughly: on the rasters' own pixels)."""
    largest = max(max(raster.width, raster.height) for raster in inputs.rasters)
    return len(inputs.rasters) > 1 or largest > 1.25 * parameters.tiling.block_size


def _resume_hint(output: str) -> None:
    """After a failed or interrupted resumable run: where its finished blocks are, and how to go on."""
    partial = partial_path(output)
    if is_resumable(output) and partial.is_file():
        print(f"note: the finished blocks are kept in {partial}; run the same command with --resume to continue",
              file=sys.stderr)
