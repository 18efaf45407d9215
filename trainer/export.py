"""Turn a training checkpoint into a plugin weights file with its model card."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from footprint_plugin.core.errors import FootprintError
from footprint_plugin.core.model import build_model, config_from_card
from footprint_plugin.core.weights import ModelCard, default_normalization, model_from_tensors, read_weights_file, save_weights

from .train import load_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="best.pt or last.pt written by `train`, or a weights file to re-export with a new card")
    parser.add_argument("--output", required=True, help="weights file to write (.safetensors)")
    parser.add_argument("--name", help="model name shown in the plugin (default: custom, or the weights file's)")
    parser.add_argument("--description", help="free text for the model card")
    parser.add_argument("--tile-size", type=int, help="inference tile size (default: the training crop size)")
    parser.add_argument("--metrics", help="JSON file with extra metrics to record (e.g. from `evaluate --json`)")
    parser.add_argument("--mask-threshold", type=float, help="building probability threshold (default 0.5)")
    parser.add_argument("--seed-threshold", type=float, help="interior seed threshold (default 0.5)")
    parser.add_argument("--context-px", type=int,
                        help="how far the network looks, px: tiles overlap by twice this (measure it with "
                             "tools/lab/context_reach.py; default 96, measured for the width-16 U-Net)")
    parser.add_argument("--float16", action="store_true",
                        help="store the tensors as float16 (half the size; they are computed in float32 again on "
                             "load); a float16 weights file stays float16 when re-exported")


def card_from_checkpoint(state: dict, args: argparse.Namespace) -> ModelCard:
    manifest = state.get("manifest", {})
    train_args = state.get("train_args", {})
    normalization = default_normalization()
    bands = list(manifest.get("input_bands", ["red", "green", "blue"]))
    stats = state.get("normalization") or manifest.get("band_stats")  # what training fed the network
    if stats:
        normalization["mean"], normalization["std"] = stats["mean"], stats["std"]
    else:
        normalization["mean"], normalization["std"] = [0.5] * len(bands), [0.25] * len(bands)
    resolution = float(manifest.get("resolution_m", 0.3))
    metrics = {"validation": state.get("val", {}), "epoch": int(state.get("epoch", 0)) + 1}
    if args.metrics:
        metrics["evaluation"] = json.loads(Path(args.metrics).read_text())
    return ModelCard(
        name=args.name or "custom",
        description=args.description or "",
        input_bands=bands,
        normalization=normalization,
        resolution_m=resolution,
        resolution_range_m=[round(resolution / 3, 3), round(resolution * 3, 3)],
        tile_size=int(args.tile_size or train_args.get("crop_size", 256)),
        postprocess={key: 0.5 if getattr(args, key) is None else getattr(args, key)
                     for key in ("mask_threshold", "seed_threshold")},
        training_data={"splits": manifest.get("splits", {}), "border_width_px": manifest.get("border_width_px"),
                       "train_args": {k: v for k, v in train_args.items() if isinstance(v, (int, float, str, bool))},
                       **_pretrained_source(train_args)},
        metrics=metrics,
    )


def run(args: argparse.Namespace) -> int:
    if not Path(args.checkpoint).is_file():
        raise FootprintError(f"Checkpoint {args.checkpoint}: file not found.")
    if args.checkpoint.lower().endswith(".safetensors"):
        model, card = _reexport(args)
    else:
        state = load_checkpoint(args.checkpoint)
        if "model" not in state or "model_args" not in state:
            raise FootprintError(f"Checkpoint {args.checkpoint} was not written by `python -m trainer train`.")
        try:
            model = build_model(config_from_card(state.get("architecture", "unet"), state["model_args"]))
        except ValueError as exc:
            raise FootprintError(f"Checkpoint {args.checkpoint}: {exc}.") from None
        model.load_state_dict(state["model"])
        card = card_from_checkpoint(state, args)
    if args.context_px is not None:
        card.context_px = args.context_px
    if args.float16:
        model = model.half()
    try:
        save_weights(args.output, model, card)  # validates the card before writing anything
    except ValueError as exc:
        raise FootprintError(f"Cannot export {args.checkpoint}: {exc}.") from None
    size_mb = Path(args.output).stat().st_size / 1e6
    print(f"wrote {args.output} ({size_mb:.1f} MB, {card.name}, {card.resolution_m} m, bands {','.join(card.input_bands)})")
    return 0


def _pretrained_source(train_args: dict) -> dict:
    """Where a pretrained encoder's starting weights came from, for the card's training data."""
    if not train_args.get("pretrained"):
        return {}
    from .pretrained import PACKAGE_LICENCE, package_name

    encoder = train_args["encoder"]
    return {"pretrained_encoder": {"encoder": encoder, "weights": "ImageNet", "package": package_name(encoder),
                                   "licence": PACKAGE_LICENCE}}


def _reexport(args: argparse.Namespace) -> tuple[torch.nn.Module, ModelCard]:
    """A weights file with the card fields given on the command line replaced (name, thresholds, tile, metrics)."""
    card, tensors = read_weights_file(args.checkpoint)
    if any(tensor.dtype == torch.float16 for tensor in tensors.values()):
        args.float16 = True  # keep the file's storage type
    model = model_from_tensors(card, tensors, args.checkpoint)
    if args.name is not None:
        card.name = args.name
    if args.description is not None:
        card.description = args.description
    if args.tile_size:
        card.tile_size = args.tile_size
    for key in ("mask_threshold", "seed_threshold"):
        if getattr(args, key) is not None:
            card.postprocess[key] = getattr(args, key)
    if args.metrics:
        card.metrics["evaluation"] = json.loads(Path(args.metrics).read_text())
    return model, card
