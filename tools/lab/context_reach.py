"""How far the model looks: the building probability of a tile against one whole-raster pass,
Produced: docs/benchmarks.md, "Tile-size independence" (how far the network looks), and the reach in docs/model_report.md.
by the pixel's distance from the tile's inner edges.

    .venv/bin/python tools/lab/context_reach.py [RASTER] [--weights W] [--tile 256]

Runs the network once over the whole raster (its size cut to a multiple of 32), then over tiles at
positions 96 px apart (multiples of the pooling), and prints the mean and 99th percentile of the
absolute difference per 8 px band of distance from the nearest tile edge that is not the raster's.
Where the difference reaches zero is the context every kept pixel needs: the model card's
``context_px`` (``trainer export --context-px``; 96 for the width-16 U-Net, ``weights.CONTEXT_PX``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
DEFAULT_RASTER = REPO.parent / "shared" / "data" / "nairobi" / "nairobi_c1.tif"


def building_probability(predictor, pixels: np.ndarray) -> np.ndarray:
    return 1.0 - predictor.probabilities(pixels[None])[0][0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raster", nargs="?", default=str(DEFAULT_RASTER))
    parser.add_argument("--weights")
    parser.add_argument("--tile", type=int, default=256)
    args = parser.parse_args(argv)
    from footprint_plugin.core.pipeline import load_model
    from footprint_plugin.core.predictor import Predictor
    from footprint_plugin.core.readers import RasterioReader

    network, card, _ = load_model(args.weights)
    predictor = Predictor(network, card, "cpu")
    with RasterioReader(args.raster) as reader:
        data, _ = reader.read((0, 0, reader.width, reader.height), (reader.height, reader.width), [1, 2, 3])
        pixels = predictor.normalize(data, predictor.scale_for(reader.dtype, reader.bit_depth))
    height, width = (side - side % 32 for side in pixels.shape[1:])
    pixels = pixels[:, :height, :width]
    whole = building_probability(predictor, pixels)
    tile, bands = args.tile, {}
    rows, cols = np.mgrid[0:tile, 0:tile]
    for y0 in range(0, height - tile + 1, 96):
        for x0 in range(0, width - tile + 1, 96):
            difference = np.abs(building_probability(predictor, pixels[:, y0 : y0 + tile, x0 : x0 + tile])
                                - whole[y0 : y0 + tile, x0 : x0 + tile])
            distance = np.full((tile, tile), 10**6)
            for inner, values in ((y0 > 0, rows), (x0 > 0, cols), (y0 + tile < height, tile - 1 - rows),
                                  (x0 + tile < width, tile - 1 - cols)):
                if inner:
                    distance = np.minimum(distance, values)
            for start in range(0, tile // 2, 8):
                bands.setdefault(start, []).append(difference[(distance >= start) & (distance < start + 8)])
    print(f"{Path(args.raster).name}, tiles of {tile} px against the whole raster ({width} x {height}):")
    for start, parts in sorted(bands.items()):
        values = np.concatenate(parts)
        print(f"  {start:3d}-{start + 7:3d} px from a tile edge: mean {values.mean():.4f}  "
              f"p99 {np.percentile(values, 99):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
