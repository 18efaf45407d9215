"""The bundled default model: its data split, how it is trained, and its accuracy report.

python tools/default_model.py prepare            # chips from ../shared/data into data/default
python tools/default_model.py train [...]        # passes extra arguments to `trainer train`
python tools/default_model.py export CHECKPOINT  # -> resources/default_weights.safetensors
python tools/default_model.py report [--split test] [--weights W] [--ablations]

The split keeps whole rasters apart: the test rasters below are never used for
training or model selection; the validation rasters choose the best epoch and
the post-processing thresholds.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"

ALL_IMAGES = ["banepa/images/*.tif", "banepa_north/*.tif", "dhaka/images/*.tif", "zanzibar/*.tif",
              "philippines/*.tif", "nairobi/*.tif"]
ALL_LABELS = ["banepa/buildings.geojson", "banepa_north/buildings.geojson", "dhaka/buildings.geojson",
              "zanzibar/*_buildings.geojson", "philippines/*_buildings.geojson", "nairobi/*_buildings.geojson"]
TEST = {  # place -> (raster patterns, label file)
    "banepa": (["banepa/images/OAM-386695-*.tif"], "banepa/buildings.geojson"),
    "dhaka": (["dhaka/images/OAM-393761-226417-19.tif"], "dhaka/buildings.geojson"),
    "zanzibar": (["zanzibar/zanzibar_c1.tif"], "zanzibar/zanzibar_c1_buildings.geojson"),
    "philippines": (["philippines/philippines_c1.tif"], "philippines/philippines_c1_buildings.geojson"),
    "nairobi": (["nairobi/nairobi_c1.tif"], "nairobi/nairobi_c1_buildings.geojson"),
}
VAL = {
    "banepa": (["banepa/images/OAM-386694-22024[1234]-19.tif"], "banepa/buildings.geojson"),
    "dhaka": (["dhaka/images/OAM-393761-226416-19.tif"], "dhaka/buildings.geojson"),
}
PREPARE_SETTINGS = ["--resolution", "0.3", "--border-width", "2", "--chip-size", "256", "--split", "1,0,0",
                    "--seed", "0"]


def _assign_rules() -> list[str]:
    rules = []
    for split, places in (("test", TEST), ("val", VAL)):
        for patterns, _ in places.values():
            rules += ["--assign", f"*{patterns[0].split('/')[-1]}={split}"]
    return rules


def prepare_argv(out: Path) -> list[str]:
    images = [str(DATA / p) for p in ALL_IMAGES]
    labels = sorted({f for p in ALL_LABELS for f in glob.glob(str(DATA / p))})
    return ["prepare", "--images", *images, "--labels", *labels, "--label-area",
            str(DATA / "banepa_north" / "labelled_area.geojson"), *PREPARE_SETTINGS, *_assign_rules(),
            "--out", str(out)]


@dataclass
class PlaceScore:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    intersection: float = 0.0
    union: float = 0.0

    @property
    def f1(self) -> float:
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp + self.fp + self.fn else 0.0

    @property
    def pixel_iou(self) -> float:
        return self.intersection / self.union if self.union else 0.0


def score_raster(raster: str, labels: str, parameters, min_area_m2: float, model) -> PlaceScore:
    """Buildings of one raster against its labels, in pixel space (truth clipped to the raster)."""
    import numpy as np
    from rasterio.features import rasterize
    from shapely import affinity
    from shapely.geometry import box

    from footprint_plugin.core.extract import extract_buildings
    from footprint_plugin.core.geo import ground_resolution_m
    from footprint_plugin.core.readers import RasterioReader
    from trainer.scoring import match_buildings
    from trainer.vectors import read_polygons

    with RasterioReader(raster) as reader:
        result = extract_buildings(reader, parameters, model=model)
        inverse = ~reader.transform
        width, height, crs = reader.width, reader.height, reader.crs_wkt
        res_x, res_y = ground_resolution_m(crs, reader.transform, width, height)
    matrix = [inverse.a, inverse.b, inverse.d, inverse.e, inverse.xoff, inverse.yoff]
    frame = box(0, 0, width, height)
    min_px = min_area_m2 / (res_x * res_y)
    truth = []
    for geometry in read_polygons(labels, crs).geometries:
        clipped = affinity.affine_transform(geometry, matrix).intersection(frame)
        if not clipped.is_empty and clipped.area >= min_px:
            truth.append(clipped)
    predicted = [affinity.affine_transform(b.geometry, matrix) for b in result.buildings]
    scores = [b.score for b in result.buildings]
    counts = match_buildings(truth, predicted, scores, 0.5)
    shape = (height, width)
    truth_mask = rasterize([(g, 1) for g in truth], out_shape=shape, dtype="uint8") if truth else np.zeros(shape, "uint8")
    pred_mask = rasterize([(g, 1) for g in predicted], out_shape=shape, dtype="uint8") if predicted else np.zeros(shape, "uint8")
    return PlaceScore(counts.tp, counts.fp, counts.fn, float(((truth_mask > 0) & (pred_mask > 0)).sum()),
                      float(((truth_mask > 0) | (pred_mask > 0)).sum()))


def report(weights: str | None, split: dict, parameters, min_area_m2: float = 5.0) -> dict[str, PlaceScore]:
    from footprint_plugin.core.extract import load_model

    model = load_model(weights)
    scores: dict[str, PlaceScore] = {}
    for place, (patterns, labels) in split.items():
        total = PlaceScore()
        for pattern in patterns:
            for raster in sorted(glob.glob(str(DATA / pattern))):
                one = score_raster(raster, str(DATA / labels), parameters, min_area_m2, model)
                for name in ("tp", "fp", "fn", "intersection", "union"):
                    setattr(total, name, getattr(total, name) + getattr(one, name))
        scores[place] = total
    pooled = PlaceScore()
    for one in scores.values():
        for name in ("tp", "fp", "fn", "intersection", "union"):
            setattr(pooled, name, getattr(pooled, name) + getattr(one, name))
    scores["pooled"] = pooled
    return scores


def print_table(title: str, scores: dict[str, PlaceScore]) -> None:
    print(f"\n{title}")
    print(f"  {'place':<12} {'F1':>6} {'TP':>5} {'FP':>5} {'FN':>5} {'pixel IoU':>9}")
    for place, s in scores.items():
        print(f"  {place:<12} {s.f1:6.3f} {s.tp:5d} {s.fp:5d} {s.fn:5d} {s.pixel_iou:9.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare").add_argument("--out", type=Path, default=REPO / "data" / "default")
    train = sub.add_parser("train")
    train.add_argument("extra", nargs=argparse.REMAINDER)
    export = sub.add_parser("export")
    export.add_argument("checkpoint")
    export.add_argument("--output", default=str(REPO / "resources" / "default_weights.safetensors"))
    export.add_argument("extra", nargs=argparse.REMAINDER)
    rep = sub.add_parser("report")
    rep.add_argument("--weights")
    rep.add_argument("--split", choices=["test", "val"], default="test")
    rep.add_argument("--ablations", action="store_true")
    rep.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    from trainer.cli import main as trainer_main

    if args.command == "prepare":
        return trainer_main(prepare_argv(args.out))
    if args.command == "train":
        return trainer_main(["train", "--data", str(REPO / "data" / "default"), *args.extra])
    if args.command == "export":
        return trainer_main(["export", "--checkpoint", args.checkpoint, "--output", args.output, *args.extra])

    from footprint_plugin.core.extract import ExtractionParameters

    split = TEST if args.split == "test" else VAL
    configs = {"default (3-class, simplify, min 5 m2)": ExtractionParameters(weights=args.weights)}
    if args.ablations:
        from footprint_plugin.core.inference import TilingOptions

        configs.update({
            "binary mask (border class ignored)": ExtractionParameters(weights=args.weights, instances="binary"),
            "regularise none": ExtractionParameters(weights=args.weights, regularize="none"),
            "regularise orthogonal": ExtractionParameters(weights=args.weights, regularize="orthogonal"),
            "min area 2 m2": ExtractionParameters(weights=args.weights, min_area_m2=2.0),
            "min area 15 m2": ExtractionParameters(weights=args.weights, min_area_m2=15.0),
            "test-time flips": ExtractionParameters(weights=args.weights, tiling=TilingOptions(flip_tta=True)),
        })
    everything = {}
    for title, parameters in configs.items():
        scores = report(args.weights, split, parameters)
        print_table(f"{args.split} split, {title}", scores)
        everything[title] = {place: {"f1": round(s.f1, 4), "tp": s.tp, "fp": s.fp, "fn": s.fn,
                                     "pixel_iou": round(s.pixel_iou, 4)} for place, s in scores.items()}
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
