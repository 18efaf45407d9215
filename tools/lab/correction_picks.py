"""F1 on an unseen raster after fine-tuning on N corrected places, picked by the review layer or at random.
Produced: docs/finetuning.md, "Review ranking against random picking".

python tools/lab/correction_picks.py --base runs/lopo_v3/base.safetensors \
    --raster zanzibar/zanzibar_c0.tif --buildings zanzibar/zanzibar_c0_buildings.geojson \
    --score zanzibar/zanzibar_c1.tif zanzibar/zanzibar_c1_buildings.geojson --places 25 50 100 --minutes 5

Paths are relative to ../shared/data. A *place* is what a user looks at and corrects:
- `review`: the review layer's places in rank order (from `predict --review` with the base on RASTER);
- `random`: OpenStreetMap buildings of RASTER drawn at random (--seed);
- `spots`: discs at random valid pixels of RASTER (--seed), each as large as the median review place.
Each place, with BUFFER_M around it, becomes part of the area where the corrections are complete, and the
true buildings touching that area are the corrected buildings. Each run starts from the base
(fine-tuning seed --train-seed); the score is the report's (trainer/recipe.py score_raster). Rows already
in OUT/picks.json are kept, so the command continues where it stopped. The figure:

python tools/lab/correction_picks.py --plot out/correction_picks/picks.json docs/correction_picks.png
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.lab.finetune_curve import _score  # noqa: E402
from trainer.recipe import DATA  # noqa: E402

BUFFER_M = 5.0  # in the raster's CRS units: metres, or Web Mercator units (about 0.99 m in Zanzibar)


def _review_places(base: str, raster: Path, folder: Path) -> list:
    """The review layer's places of the base's run on ``raster``, in rank order (in the raster's CRS, which the
    review layer shares)."""
    from osgeo import ogr
    from shapely import wkb

    from footprint_plugin.core.review import LAYER
    from trainer.cli import main

    review = folder / "review.gpkg"
    if not review.exists():
        assert main(["predict", "--input", str(raster), "--output", str(folder / "base_buildings.gpkg"),
                     "--weights", base, "--review", str(review), "--quiet"]) == 0
    dataset = ogr.Open(str(review))  # kept: its layer dies with it
    layer = dataset.GetLayerByName(LAYER)
    ranked = sorted(((f.GetField("rank"), wkb.loads(bytes(f.GetGeometryRef().ExportToWkb()))) for f in layer),
                    key=lambda pair: pair[0])
    return [geometry for _, geometry in ranked]


def _random_spots(raster: Path, count: int, area: float, seed: int) -> list:
    """``count`` discs of ``area`` (CRS units squared) centred on random valid pixels of ``raster``."""
    import numpy as np
    import rasterio
    from shapely.geometry import Point

    with rasterio.open(raster) as dataset:
        valid = np.argwhere(dataset.dataset_mask() > 0)
        transform = dataset.transform
    rows = np.random.default_rng(seed).choice(len(valid), count, replace=False)
    centres = [transform * (col + 0.5, row + 0.5) for row, col in valid[rows]]
    return [Point(x, y).buffer(math.sqrt(area / math.pi)) for x, y in centres]


def _write_layers(places: list, truth: list, crs: str, folder: Path) -> tuple[Path, Path, int]:
    """The area (places buffered) and the truth buildings touching it, as GeoPackages; how many buildings."""
    from shapely.ops import unary_union

    from footprint_plugin.core.vector_files import write_polygons

    area = unary_union([p.buffer(BUFFER_M) for p in places])
    buildings = [b for b in truth if b.intersects(area)]
    folder.mkdir(parents=True, exist_ok=True)
    area_path, buildings_path = folder / "area.gpkg", folder / "buildings.gpkg"
    area_path.unlink(missing_ok=True)
    buildings_path.unlink(missing_ok=True)
    write_polygons(str(area_path), {"area": [(area, {})]}, crs)
    write_polygons(str(buildings_path), {"buildings": [(b, {}) for b in buildings]}, crs)
    return area_path, buildings_path, len(buildings)


def plot(results: Path, png: Path) -> None:
    """F1 on the unseen raster against the number of places, one line per pick (the mean over training seeds,
    each run a dot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = json.loads(results.read_text())
    base = next(r["f1"] for r in rows if r["pick"] == "base")
    figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
    for pick, colour in (("review", "tab:red"), ("random", "tab:blue"), ("spots", "tab:grey")):
        runs = [r for r in rows if r["pick"] == pick]
        counts = sorted({r["places"] for r in runs})
        means = [statistics.mean(r["f1"] for r in runs if r["places"] == n) for n in counts]
        axes.plot(counts, means, "-o", color=colour, label={"review": "review layer's first places",
                                                            "random": "random buildings",
                                                            "spots": "random spots"}[pick])
        axes.scatter([r["places"] for r in runs], [r["f1"] for r in runs], color=colour, s=12, alpha=0.5)
    axes.axhline(base, color="black", linestyle=":", label=f"base, never saw the place ({base:.2f})")
    axes.set_xlabel("places corrected")
    axes.set_ylabel("F1 on the unseen raster")
    axes.set_title("Fine-tuning 5 min on the CPU: which places to correct")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(png)


def main() -> int:
    if sys.argv[1:2] == ["--plot"]:
        plot(Path(sys.argv[2]), Path(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="weights file that never saw the place")
    parser.add_argument("--raster", required=True, help="raster the user corrects (under ../shared/data)")
    parser.add_argument("--buildings", required=True, help="its true buildings")
    parser.add_argument("--score", nargs=2, required=True, metavar=("RASTER", "LABELS"), help="the unseen raster")
    parser.add_argument("--places", nargs="+", type=int, default=[25, 50, 100])
    parser.add_argument("--picks", nargs="+", default=["review", "random", "spots"],
                        choices=["review", "random", "spots"])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0, help="of the random picks")
    parser.add_argument("--train-seed", type=int, default=0, help="of the fine-tuning (the crops drawn)")
    parser.add_argument("--out", type=Path, default=Path("out/correction_picks"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import rasterio
    import torch

    from footprint_plugin.core.vector_files import read_polygons
    from trainer.finetune import FinetuneRequest, finetune

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    raster = DATA / args.raster
    with rasterio.open(raster) as dataset:
        crs = dataset.crs.to_wkt()
    truth = read_polygons(str(DATA / args.buildings), crs).geometries
    ranked = _review_places(args.base, raster, args.out)
    shuffled = random.Random(args.seed).sample(truth, len(truth))
    spots = _random_spots(raster, max(args.places), statistics.median(p.area for p in ranked), args.seed)
    results = args.out / "picks.json"
    rows = json.loads(results.read_text()) if results.exists() else []
    if not any(r["pick"] == "base" for r in rows):
        rows.append({"pick": "base", **_score(args.base, *args.score)})
    print(f"base: F1 on {args.score[0]} {rows[0]['f1']:.3f}; {len(ranked)} review places, {len(truth)} buildings",
          flush=True)
    for count in args.places:
        for pick in args.picks:
            if any(r["pick"] == pick and r["places"] == count and r.get("train_seed", 0) == args.train_seed
                   for r in rows):
                continue  # measured by an earlier run of this command
            places = {"review": ranked, "random": shuffled, "spots": spots}[pick][:count]
            folder = args.out / (f"{pick}_{count}" + (f"_seed{args.train_seed}" if args.train_seed else ""))
            area, buildings, corrected = _write_layers(places, truth, crs, folder)
            started = time.monotonic()
            result = finetune(FinetuneRequest(rasters=[str(raster)], buildings=str(buildings), area=str(area),
                                              output=str(folder / "weights.safetensors"), weights=args.base,
                                              minutes=args.minutes, min_buildings=1, seed=args.train_seed))
            row = {"pick": pick, "places": len(places), "train_seed": args.train_seed, "buildings": corrected,
                   "minutes": args.minutes,
                   "seconds": round(time.monotonic() - started, 1), "steps": result.steps,
                   "held_out_chips_f1": [round(result.f1_before, 4), round(result.f1_after, 4)],
                   **_score(str(folder / "weights.safetensors"), *args.score)}
            rows.append(row)
            results.write_text(json.dumps(rows, indent=1))
            print(f"{pick} {len(places)} places ({corrected} buildings): F1 on {args.score[0]} {row['f1']:.3f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
