"""Does the result depend on the tile size?  Union IoU of the buildings at tile 256 and tile 512.
Produced: docs/benchmarks.md, "Tile-size independence" (union IoU of tile 256 against 512 on 81 rasters).

For every real raster under ../shared/data and resources/sample, runs the default model at both
tile sizes (the default overlap) and prints one row per raster, smallest first:

    .venv/bin/python tools/lab/tile_iou.py [--outline simplify|orthogonal|none] [--margin PX] [--limit N] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"


def rasters() -> list[Path]:
    """Every real raster, smallest first."""
    import rasterio

    found = sorted(DATA.rglob("*.tif")) + sorted((REPO / "resources" / "sample").glob("*.tif"))
    sizes = {}
    for path in found:
        with rasterio.open(path) as src:
            sizes[path] = src.width * src.height
    return sorted(found, key=lambda p: (sizes[p], str(p)))


def union_iou(path: Path, model, margin: int | None, outline: str | None = None) -> dict:
    """Buildings at tile 256 and 512, and the IoU of their unions."""
    from shapely.ops import unary_union

    from footprint_plugin.core.extract import extract_buildings
    from footprint_plugin.core.parameters import ExtractionParameters
    from footprint_plugin.core.readers import RasterioReader
    from footprint_plugin.core.tiling import TilingOptions

    unions, counts = [], []
    for tile in (256, 512):
        tiling = TilingOptions(tile_size=tile, edge_margin=margin)  # None: the model card's context_px
        with RasterioReader(path) as reader:
            parameters = ExtractionParameters(tiling=tiling)
            if outline:
                parameters.regularize = outline
            result = extract_buildings(reader, parameters, model=model)
            size = (reader.width, reader.height)
        unions.append(unary_union([b.geometry for b in result.buildings]))
        counts.append(result.count)
    a, b = unions
    union = a.union(b).area
    return {"raster": str(path.relative_to(path.parents[1])), "size": f"{size[0]}x{size[1]}",
            "buildings_256": counts[0], "buildings_512": counts[1],
            "iou": a.intersection(b).area / union if union else 1.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--margin", type=int, help="reflected edge margin in px (default: the engine's)")
    parser.add_argument("--limit", type=int, help="only the N smallest rasters")
    parser.add_argument("--outline", choices=["simplify", "orthogonal", "none"], help="default: the engine's")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from footprint_plugin.core.pipeline import load_model

    model = load_model(None)
    rows = []
    started = time.perf_counter()
    for path in rasters()[: args.limit]:
        rows.append(union_iou(path, model, args.margin, args.outline))
        if not args.json:
            row = rows[-1]
            print(f"{row['raster']:<52} {row['size']:>10} {row['buildings_256']:>5} {row['buildings_512']:>5} "
                  f"IoU {row['iou']:.4f}", flush=True)
    worst = min(row["iou"] for row in rows)
    if args.json:
        print(json.dumps(rows, indent=1))
    print(f"tile_iou: rasters={len(rows)} min_iou={worst:.4f} below_0.98={sum(r['iou'] < 0.98 for r in rows)} "
          f"seconds={time.perf_counter() - started:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
