"""Extract building footprints from a raster into a GeoPackage layer named ``buildings``.

Output polygons are in the raster's CRS with fields area_m2 (ground area) and
score (mean building probability).
"""

from __future__ import annotations

import argparse
import sys

from footprint_plugin.core.extract import ExtractionParameters, extract_to_geopackage
from footprint_plugin.core.inference import TilingOptions
from footprint_plugin.core.readers import RasterioReader
from footprint_plugin.core.vectorize import REGULARIZE_MODES

from .progress import ProgressBar


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="raster file GDAL can read (GeoTIFF, VRT, ...)")
    parser.add_argument("--output", required=True, help="GeoPackage to write (.gpkg); replaced if it exists")
    parser.add_argument("--weights", help="weights file (default: the bundled default model)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu or cuda")
    parser.add_argument("--tile-size", type=int, help="tile side in model pixels (default: the model's)")
    parser.add_argument("--overlap", type=int, help="tile overlap in pixels (default: a quarter tile)")
    parser.add_argument("--batch-size", type=int, help="tiles per forward pass (default 16 on CUDA, 4 on CPU)")
    parser.add_argument("--min-area", type=float, default=5.0, help="drop buildings smaller than this, m2 (default 5)")
    parser.add_argument("--regularize", choices=REGULARIZE_MODES, default="simplify",
                        help="outline clean-up (default simplify)")
    parser.add_argument("--bands", type=lambda s: [int(b) for b in s.split(",")],
                        help="source bands feeding the model's inputs, e.g. 1,2,3 or 5,3,2 (default: by colour)")
    parser.add_argument("--flip-tta", action="store_true", help="average with horizontally flipped tiles (slower)")
    parser.add_argument("--backend", choices=["auto", "torch", "onnxruntime"], default="auto",
                        help="runtime: auto/torch = PyTorch, onnxruntime = ONNX Runtime on CPU (if installed)")
    parser.add_argument("--no-amp", action="store_true", help="no float16 autocast on CUDA")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    parameters = ExtractionParameters(
        weights=args.weights,
        device=args.device,
        tiling=TilingOptions(args.tile_size, args.overlap, args.batch_size, amp=not args.no_amp, flip_tta=args.flip_tta,
                            backend=args.backend),
        min_area_m2=args.min_area,
        regularize=args.regularize,
        bands=args.bands,
    )
    bar = None if args.quiet else ProgressBar("predict")
    with RasterioReader(args.input) as reader:
        try:
            result = extract_to_geopackage(reader, args.output, parameters, progress=bar,
                                           warn=lambda message: print(f"warning: {message}", file=sys.stderr))
        finally:
            if bar:
                bar.close()
    print(f"{result.count} buildings in {result.seconds:.1f} s on {result.device} -> {args.output} "
          f"(weights {result.card.name})")
    return 0
