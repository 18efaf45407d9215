"""F1 on an unseen raster before and after fine-tuning on corrected buildings of another raster of the same place.
Produced: docs/finetuning.md, "F1 against minutes".

python tools/lab/finetune_curve.py --base runs/lopo_v3/base.safetensors \
    --raster zanzibar/zanzibar_c0.tif --buildings zanzibar/zanzibar_c0_buildings.geojson \
    --score zanzibar/zanzibar_c1.tif zanzibar/zanzibar_c1_buildings.geojson --minutes 2 5 10 20 --out out/finetune

Paths are relative to ../shared/data. Each budget is a separate run from the same base (seed 0); the score
is the default-model report's (trainer/recipe.py score_raster: IoU >= 0.5, truth clipped to the raster,
buildings under 5 m2 ignored).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from trainer.recipe import DATA, score_raster  # noqa: E402


def _score(weights: str, raster: str, labels: str) -> dict:
    from footprint_plugin.core.parameters import ExtractionParameters
    from footprint_plugin.core.pipeline import load_model

    model = load_model(weights)
    score = score_raster(str(DATA / raster), str(DATA / labels), ExtractionParameters(weights=weights), 5.0, model)
    return {"f1": round(score.f1, 4), "tp": score.tp, "fp": score.fp, "fn": score.fn,
            "pixel_iou": round(score.pixel_iou, 4), "merged": score.merged}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="weights file that never saw the place")
    parser.add_argument("--raster", required=True, help="raster with the corrected buildings (under ../shared/data)")
    parser.add_argument("--buildings", required=True, help="its buildings")
    parser.add_argument("--score", nargs=2, required=True, metavar=("RASTER", "LABELS"), help="the other raster")
    parser.add_argument("--minutes", nargs="+", type=float, default=[2, 5, 10, 20])
    parser.add_argument("--out", type=Path, default=Path("out/finetune"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-norm", action="store_true", help="update BatchNorm statistics (default: frozen)")
    parser.add_argument("--strong-augment", action="store_true", help="the v3 photometric augmentation")
    args = parser.parse_args()

    import torch

    from trainer.finetune import FinetuneRequest, finetune

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [{"minutes": 0, "held_out_chips_f1": None, **_score(args.base, *args.score)}]
    print(f"base: F1 on {args.score[0]} {rows[0]['f1']:.3f}", flush=True)
    for minutes in args.minutes:
        output = args.out / f"finetuned_{minutes:g}min.safetensors"
        started = time.monotonic()
        result = finetune(FinetuneRequest(rasters=[str(DATA / args.raster)], buildings=str(DATA / args.buildings),
                                          output=str(output), weights=args.base, minutes=minutes,
                                          freeze_norm=not args.train_norm, strong_augment=args.strong_augment))
        row = {"minutes": minutes, "seconds": round(time.monotonic() - started, 1), "steps": result.steps,
               "buildings": result.buildings, "held_out_chips_f1": [round(result.f1_before, 4),
                                                                    round(result.f1_after, 4)],
               **_score(str(output), *args.score)}
        rows.append(row)
        print(f"{minutes:g} min ({result.steps} steps): held-out chips {result.f1_before:.3f} -> {result.f1_after:.3f}; "
              f"F1 on {args.score[0]} {row['f1']:.3f}", flush=True)
        (args.out / "curve.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
