"""The bundled default model: its data split, how it is trained, and its accuracy report.

python -m trainer.recipe prepare            # chips from ../shared/data into data/default
python -m trainer.recipe train [...]        # passes extra arguments to `trainer train`
python -m trainer.recipe export CHECKPOINT  # -> resources/default_weights.safetensors
python -m trainer.recipe tune [--weights W]             # seed/mask thresholds on the validation split
python -m trainer.recipe report [--split test] [--weights W] [--ablations]
  (tune and report also take --flip-tta, --working-resolution M and --ensemble W ... to measure those)

The split keeps whole rasters apart: the test rasters below are never used for
training or model selection; the validation rasters choose the best epoch and
the post-processing thresholds.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

if TYPE_CHECKING:
    from trainer.scoring import RasterScore

PLACES = {  # place -> [(raster pattern, label files)]; "*_buildings" files belong to the raster of that name
    "banepa": [("banepa/images/*.tif", "banepa/buildings.geojson"),
               ("banepa_north/*.tif", "banepa_north/buildings.geojson")],
    "dhaka": [("dhaka/images/*.tif", "dhaka/buildings.geojson")],
    "zanzibar": [("zanzibar/*.tif", "zanzibar/*_buildings.geojson")],
    "philippines": [("philippines/*.tif", "philippines/*_buildings.geojson")],
    "nairobi": [("nairobi/*.tif", "nairobi/*_buildings.geojson")],
}
PARTLY_LABELLED = {"banepa_north/*.tif"}  # labels only inside labelled_area.geojson: not scored whole
ALL_IMAGES = [pattern for rasters in PLACES.values() for pattern, _ in rasters]
ALL_LABELS = [labels for rasters in PLACES.values() for _, labels in rasters]
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
PREPARE_SETTINGS = ["--chip-size", "256", "--split", "1,0,0", "--seed", "0"]


def held_out_split(place: str) -> dict:
    """Every fully labelled raster of one place with its labels: the leave-one-place-out test split."""
    split = {}
    for pattern, labels in PLACES[place]:
        if pattern in PARTLY_LABELLED:
            continue
        for raster in sorted(glob.glob(str(DATA / pattern))):
            own = Path(raster).with_name(Path(raster).stem + "_buildings.geojson")
            label_file = own if "*" in labels else DATA / labels
            split[Path(raster).stem] = ([str(Path(raster).relative_to(DATA))], str(label_file.relative_to(DATA)))
    return split


def _assign_rules(hold_out: str | None = None) -> list[str]:
    """--assign rules: the test and validation rasters, plus every raster of a held-out place as test."""
    rules = [f"*{pattern}=test" for pattern, _ in PLACES[hold_out]] if hold_out else []
    for split, places in (("test", TEST), ("val", VAL)):
        for place, (patterns, _) in places.items():
            if place != hold_out:
                rules.append(f"*{patterns[0].split('/')[-1]}={split}")
    return [item for rule in rules for item in ("--assign", rule)]


def prepare_argv(out: Path, hold_out: str | None = None, resolution: float = 0.3, border_width: int = 2) -> list[str]:
    images = [str(DATA / p) for p in ALL_IMAGES]
    labels = sorted({f for p in ALL_LABELS for f in glob.glob(str(DATA / p))})
    return ["prepare", "--images", *images, "--labels", *labels, "--label-area",
            str(DATA / "banepa_north" / "labelled_area.geojson"), "--resolution", str(resolution),
            "--border-width", str(border_width), *PREPARE_SETTINGS, *_assign_rules(hold_out),
            "--out", str(out)]


def score_raster(raster: str, labels: str, parameters, min_area_m2: float, model) -> RasterScore:
    """Buildings of one raster against its labels, with the project's one scorer (pixel space, truth clipped)."""
    from footprint_plugin.core.extract import extract_buildings
    from footprint_plugin.core.readers import RasterioReader
    from trainer.scoring import score_raster_buildings

    with RasterioReader(raster) as reader:
        result = extract_buildings(reader, parameters, model=model)
    return score_raster_buildings(raster, labels, result.buildings, min_area_m2)


def report(model, split: dict, parameters, min_area_m2: float = 5.0) -> dict[str, RasterScore]:
    """Scores per place of ``split`` (and pooled) for ``model`` = ``load_model(weights)``."""
    from trainer.scoring import RasterScore

    scores: dict[str, RasterScore] = {}
    for place, (patterns, labels) in split.items():
        total = RasterScore()
        for pattern in patterns:
            for raster in sorted(glob.glob(str(DATA / pattern))):
                total.add(score_raster(raster, str(DATA / labels), parameters, min_area_m2, model))
        scores[place] = total
    pooled = RasterScore()
    for one in scores.values():
        pooled.add(one)
    scores["pooled"] = pooled
    return scores


def measured_model(weights: str | None, ensemble: list[str] | None = None, working_resolution: float | None = None):
    """``load_model(weights)``, optionally averaged with further weights files and run at another resolution.

    The averaged network is for measuring what an ensemble would buy; the plugin runs one network.
    """
    import copy

    import torch

    from footprint_plugin.core.model import fuse_for_inference
    from footprint_plugin.core.pipeline import load_model

    network, card, path = load_model(weights)
    card = copy.deepcopy(card)
    if working_resolution:
        card.resolution_m = working_resolution
    if ensemble:
        members = [fuse_for_inference(net.eval()) for net in (network, *(load_model(w)[0] for w in ensemble))]

        class MeanProbability(torch.nn.Module):
            """Log of the members' mean softmax: the Predictor's softmax gives back the mean."""

            def __init__(self) -> None:
                super().__init__()
                self.members = torch.nn.ModuleList(members)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                mean = sum(torch.softmax(m(x), 1) for m in self.members) / len(self.members)
                return torch.log(mean.clamp_min(1e-6))

        network = MeanProbability().eval()
    return network, card, path


def remembering(network):
    """``network`` (BatchNorm folded) that computes its output for each distinct input once and then
    returns it again: a threshold sweep re-runs only the post-processing."""
    import hashlib

    import torch

    from footprint_plugin.core.model import NETWORKS, fuse_for_inference

    class RememberedOutputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = fuse_for_inference(network) if isinstance(network, NETWORKS) else network
            self.seen: dict = {}

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            key = (tuple(x.shape), hashlib.blake2b(x.detach().cpu().contiguous().numpy().tobytes()).digest())
            if key not in self.seen:
                self.seen[key] = self.network(x)
            return self.seen[key]

    return RememberedOutputs().eval()


VARIANT_RASTERS = {"philippines": TEST["philippines"], "nairobi": TEST["nairobi"], "zanzibar": TEST["zanzibar"]}


def make_variants(raster: Path, folder: Path) -> dict[str, Path]:
    """The same real raster as 16-bit (11-bit values), in EPSG:4326, in UTM, and at 0.1 / 0.6 m."""
    import subprocess

    import numpy as np
    import rasterio
    from rasterio.warp import transform as warp

    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(raster) as src:
        lon, lat = warp(src.crs, "EPSG:4326", [src.bounds.left], [src.bounds.top])
        profile = src.profile
        data = src.read()
    utm = f"EPSG:{(32600 if lat[0] >= 0 else 32700) + int((lon[0] + 180) // 6) + 1}"
    variants = {"native 8-bit": raster}
    sixteen = folder / f"{raster.stem}_uint16.tif"
    profile.update(dtype="uint16", nodata=None)
    with rasterio.open(sixteen, "w", **profile) as dst:
        dst.write((data.astype(np.uint32) * 2047 // 255).astype(np.uint16))
        dst.update_tags(1, ns="IMAGE_STRUCTURE", NBITS="11")
    variants["16-bit (11-bit values)"] = sixteen
    for name, args in {"EPSG:4326": ["-t_srs", "EPSG:4326"], f"UTM {utm}": ["-t_srs", utm],
                       "UTM 0.1 m": ["-t_srs", utm, "-tr", "0.1", "0.1"],
                       "UTM 0.6 m": ["-t_srs", utm, "-tr", "0.6", "0.6"]}.items():
        out = folder / f"{raster.stem}_{name.replace(' ', '_').replace(':', '').replace('.', '')}.tif"
        subprocess.run(["gdalwarp", "-q", "-overwrite", "-r", "bilinear", *args, str(raster), str(out)], check=True)
        variants[name] = out
    return variants


def print_table(title: str, scores: dict[str, RasterScore]) -> None:
    print(f"\n{title}")
    print(f"  {'place':<12} {'F1':>6} {'TP':>5} {'FP':>5} {'FN':>5} {'pixel IoU':>9}   FN: {'missed':>6} {'merged':>6} "
          f"{'split':>5}")
    for place, s in scores.items():
        print(f"  {place:<12} {s.f1:6.3f} {s.tp:5d} {s.fp:5d} {s.fn:5d} {s.pixel_iou:9.3f}       {s.missed:6d} "
              f"{s.merged:6d} {s.split:5d}")


def float_list(text: str) -> list[float]:
    """``0.4,0.5`` -> [0.4, 0.5] (argparse reports a ValueError as a usage error)."""
    return [float(value) for value in text.split(",")]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer.recipe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare")
    prep.add_argument("--out", type=Path, default=REPO / "data" / "default")
    prep.add_argument("--hold-out", choices=sorted(PLACES), help="put every raster of this place in test")
    prep.add_argument("--resolution", type=float, default=0.3, help="ground resolution of the chips, m (default 0.3)")
    prep.add_argument("--border-width", type=int, default=2, help="border class width, px (default 2)")
    train = sub.add_parser("train", help="any further options go to `trainer train`")
    train.add_argument("--data", type=Path, default=REPO / "data" / "default")
    export = sub.add_parser("export")
    export.add_argument("checkpoint")
    export.add_argument("--output", default=str(REPO / "resources" / "default_weights.safetensors"))
    tune = sub.add_parser("tune", help="grid-search the mask and seed thresholds on the validation split")
    tune.add_argument("--masks", type=float_list, default=[0.4, 0.5, 0.6, 0.7, 0.8],
                      help="mask thresholds to try, comma-separated (v2 was tuned on 0.4,0.5,0.6)")
    rep = sub.add_parser("report")
    for command in (tune, rep):
        command.add_argument("--weights")
        command.add_argument("--ensemble", nargs="+", metavar="WEIGHTS",
                             help="also average the class probabilities of these weights files (a measurement only)")
        command.add_argument("--working-resolution", type=float, metavar="M",
                             help="run the model at this ground resolution instead of its card's")
        command.add_argument("--flip-tta", action="store_true", help="test-time flips")
        command.add_argument("--tile", type=int, help="tile size, px (default: the engine's)")
        command.add_argument("--overlap", type=int, help="tile overlap, px (default: twice the card's context_px)")
        command.add_argument("--edge-margin", type=int, help="reflected edge margin, px (default: the card's context_px)")
    rep.add_argument("--split", choices=["test", "val"], default="test")
    rep.add_argument("--held-out", choices=sorted(PLACES),
                     help="score every fully labelled raster of this place (for a model trained with prepare --hold-out)")
    rep.add_argument("--ablations", action="store_true")
    rep.add_argument("--json", type=Path, help="also write the numbers here")
    rep.add_argument("--variants", action="store_true", help="8/16-bit, EPSG:4326/3857/UTM, 0.1-0.6 m")
    rep.add_argument("--seed-threshold", type=float, help="instead of the model card's")
    rep.add_argument("--mask-threshold", type=float, help="instead of the model card's")
    return parser


def tune(args: argparse.Namespace, model, tiling) -> int:
    """The seed and mask thresholds with the best pooled validation F1."""
    from footprint_plugin.core.parameters import ExtractionParameters

    model = (remembering(model[0]), *model[1:])  # the network runs once per tile, not once per threshold pair
    results = []
    for seed in (0.5, 0.6, 0.7, 0.8, 0.9):
        for mask in args.masks:
            pooled = report(model, VAL, ExtractionParameters(weights=args.weights, seed_threshold=seed,
                                                             mask_threshold=mask, tiling=tiling))["pooled"]
            results.append((round(pooled.f1, 4), seed, mask))
            print(f"  seed {seed} mask {mask}: validation F1 {pooled.f1:.3f} (pixel IoU {pooled.pixel_iou:.3f})",
                  flush=True)
    f1, seed, mask = max(results)
    print(f"best on validation: --seed-threshold {seed} --mask-threshold {mask} (F1 {f1:.3f})")
    return 0


def report_variants(model, base: dict) -> dict:
    """F1 and pixel IoU of each place's test raster as 16-bit, in other CRSs and at other resolutions."""
    import tempfile

    from footprint_plugin.core.parameters import ExtractionParameters

    numbers: dict = {}
    print("\nSame raster, other encodings, CRS and ground resolutions (F1 / pixel IoU):")
    for place, (patterns, labels) in VARIANT_RASTERS.items():
        raster = Path(glob.glob(str(DATA / patterns[0]))[0])
        cells = []
        for name, path in make_variants(raster, Path(tempfile.mkdtemp())).items():
            one = score_raster(str(path), str(DATA / labels), ExtractionParameters(**base), 5.0, model)
            cells.append(f"{name}: {one.f1:.3f}/{one.pixel_iou:.3f}")
            numbers.setdefault(place, {})[name] = {"f1": round(one.f1, 4), "pixel_iou": round(one.pixel_iou, 4)}
        print(f"  {place}: " + ", ".join(cells))
    return numbers


def report_command(args: argparse.Namespace, model, tiling) -> int:
    """The accuracy tables of a split (or a held-out place), with the ablations and variants asked for."""
    from footprint_plugin.core.parameters import ExtractionParameters, vectorize_options

    split = held_out_split(args.held_out) if args.held_out else TEST if args.split == "test" else VAL
    base = {"weights": args.weights, "seed_threshold": args.seed_threshold, "mask_threshold": args.mask_threshold,
            "tiling": tiling}
    card = model[1]
    options = vectorize_options(ExtractionParameters(**base), card)
    used = {"seed_threshold": options.seed_threshold, "mask_threshold": options.mask_threshold}
    print(f"weights {card.name}: seed threshold {used['seed_threshold']}, mask threshold {used['mask_threshold']}, "
          f"{card.resolution_m} m" + (" with flips" if args.flip_tta else "")
          + (f", averaged with {', '.join(args.ensemble)}" if args.ensemble else ""))
    default = ExtractionParameters(**base)
    configs = {f"default (3-class, {default.regularize}, min {default.min_area_m2:g} m2)": default}
    if args.ablations:
        configs.update({
            "binary mask (border class ignored)": ExtractionParameters(**base, instances="binary"),
            "regularise none": ExtractionParameters(**base, regularize="none"),
            "regularise orthogonal": ExtractionParameters(**base, regularize="orthogonal"),
            "regularise simplify": ExtractionParameters(**base, regularize="simplify"),
            "min area 2 m2": ExtractionParameters(**base, min_area_m2=2.0),
            "min area 15 m2": ExtractionParameters(**base, min_area_m2=15.0),
            "test-time flips": ExtractionParameters(**{**base, "tiling": dataclasses.replace(tiling, flip_tta=True)}),
        })
    everything: dict = {"weights": card.name, **used, "resolution_m": card.resolution_m, "flip_tta": args.flip_tta,
                        "ensemble": args.ensemble or []}
    if args.variants:
        everything["variants"] = report_variants(model, base)
    for title, parameters in configs.items():
        scores = report(model, split, parameters)
        print_table(f"{f'held-out place {args.held_out}' if args.held_out else f'{args.split} split'}, {title}", scores)
        everything[title] = {place: {"f1": round(s.f1, 4), "tp": s.tp, "fp": s.fp, "fn": s.fn,
                                     "pixel_iou": round(s.pixel_iou, 4), "missed": s.missed, "merged": s.merged,
                                     "split": s.split} for place, s in scores.items()}
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("train", "export"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from trainer.cli import main as trainer_main

    if args.command == "prepare":
        return trainer_main(prepare_argv(args.out, args.hold_out, args.resolution, args.border_width))
    if args.command == "train":
        return trainer_main(["train", "--data", str(args.data), *extra])
    if args.command == "export":
        return trainer_main(["export", "--checkpoint", args.checkpoint, "--output", args.output, *extra])

    from footprint_plugin.core.tiling import TilingOptions

    model = measured_model(args.weights, args.ensemble, args.working_resolution)
    tiling = TilingOptions(tile_size=args.tile, overlap=args.overlap, edge_margin=args.edge_margin,
                           flip_tta=args.flip_tta)
    return tune(args, model, tiling) if args.command == "tune" else report_command(args, model, tiling)


if __name__ == "__main__":
    sys.exit(main())
