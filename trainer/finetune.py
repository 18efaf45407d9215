"""Fine-tune a weights file on buildings you corrected, within a time budget.

Give the raster(s), the edited building polygons (any OGR layer, any CRS) and,
optionally, the polygons where those edits are complete (by default the
buildings' extent, buffered by 10 m). Pixels outside that area are ignored in the
loss: they are neither building nor background. A raster inside the area without
any building is building-free ground; a raster outside it is skipped with a
warning. About 15% of the labelled chips (whole 256 px chips, spread over the
area) are kept back to measure the building F1 before and after; the best state
by that F1 is written, with a model card that names the base model, the data and
both F1 values.

Rounds: the card also keeps each round's buildings, area and rasters. Start the
next round from these weights (--weights) and it trains on the earlier rounds'
corrections too; where its area covers an earlier building, this round's count.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.crs import CRS
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from footprint_plugin.core.buildings import VectorizeOptions
from footprint_plugin.core.devices import resolve_device
from footprint_plugin.core.errors import FootprintError
from footprint_plugin.core.readers import RasterioReader
from footprint_plugin.core.vector_files import polygons_4326
from footprint_plugin.core.weights import ModelCard, model_from_tensors, read_weights_file, save_weights

from .prepare import IGNORE, cut_chips, label_image
from .rounds import Round, area_m2, earlier_rounds, new_round, record, supersede
from .train import Augmentation, ChipDataset, segmentation_loss, validate

MIN_BUILDINGS = 20
SCORE_EVERY = (0.2, 60.0)  # held-out F1 every fifth of the budget, but not more often than once a minute
AREA_BUFFER_M = 10.0
CHIP = 256
CLASS_WEIGHTS = (0.2, 0.35, 0.45)
ProgressCallback = Callable[[float, str], None]
# the rule the measurements in docs/finetuning.md support (three places the base never saw)
GUIDANCE = ("On places the model never saw, about 100 corrected buildings and 5-10 minutes on a CPU added "
            "0.08 to 0.20 F1 (docs/finetuning.md).")
WarnCallback = Callable[[str], None]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raster", nargs="+", required=True,
                        help="raster file(s) the buildings were drawn on; a raster inside --area without buildings is "
                             "building-free ground, one outside it is skipped with a warning")
    parser.add_argument("--buildings", required=True,
                        help="vector layer of building polygons (any OGR format and CRS); may be empty with --area")
    parser.add_argument("--area", help="polygons where the buildings are complete (default: their extent + 10 m)")
    parser.add_argument("--weights",
                        help="base weights file (default: the bundled model); weights of an earlier round bring that "
                             "round's corrections along: this round trains on them too")
    parser.add_argument("--minutes", type=float, default=10.0, help="time budget for training (default 10)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (CUDA trains with AMP)")
    parser.add_argument("--output", required=True, help="weights file to write (.safetensors)")
    parser.add_argument("--name", help="model name (default: the base model's name + '-finetuned')")
    parser.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (default 3e-4)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="CPU threads for torch")


@dataclass
class FinetuneRequest:
    """Everything one fine-tuning run needs (built by the CLI, the Processing algorithm or the dialog)."""

    rasters: list[str]
    buildings: str
    output: str
    area: str | None = None
    weights: str | None = None
    minutes: float = 10.0
    device: str = "auto"
    name: str | None = None
    lr: float = 3e-4
    batch_size: int = 8
    seed: int = 0
    val_fraction: float = 0.15
    min_buildings: int = MIN_BUILDINGS
    freeze_norm: bool = True  # keep the base model's BatchNorm statistics (batches of a few crops are noisy)
    strong_augment: bool = False
    area_option: str = "--area"  # how the user gives the area, for the messages


@dataclass
class FinetuneResult:
    output: str | None  # None when nothing was written
    f1_before: float
    f1_after: float
    steps: int
    seconds: float
    buildings: int
    train_chips: int
    val_chips: int
    cancelled: bool = False
    history: list[dict[str, float]] = field(default_factory=list)  # validation F1 against minutes
    round: int = 1
    warnings: list[str] = field(default_factory=list)

    def message(self) -> str:
        where = f"weights saved to {self.output}" if self.output else "nothing was written"
        stop = "cancelled; best so far: " if self.cancelled else ""
        rounds = f" (round {self.round}, with the earlier rounds' buildings)" if self.round > 1 else ""
        return f"{stop}F1 on your held-out area: {self.f1_before:.2f} -> {self.f1_after:.2f}; {where}{rounds}"


# ----------------------------------------------------------------------------- data


def _labelled_area(request: FinetuneRequest, buildings: list[BaseGeometry]) -> list[BaseGeometry]:
    """The area polygons in EPSG:4326: the given layer, or the buildings' extent buffered by 10 m."""
    if request.area:
        return [shape(g) for g in polygons_4326(request.area, "area")[0]]
    extent = unary_union(buildings).envelope
    latitude = extent.centroid.y
    degrees = AREA_BUFFER_M / (111_320.0 * max(0.1, math.cos(math.radians(latitude))))
    return [extent.buffer(degrees, join_style=2)]


def _this_round(request: FinetuneRequest, number: int) -> Round:
    """The request's buildings and area; with an area given, the buildings layer may be empty (ground without
    buildings)."""
    buildings = [shape(g) for g in polygons_4326(request.buildings, "buildings", allow_empty=bool(request.area))[0]]
    return new_round(number, request.rasters, buildings, _labelled_area(request, buildings))


def _raster_footprint_4326(path: str) -> Any:
    with RasterioReader(path) as reader:
        left, bottom, right, top = _bounds(reader.transform, reader.width, reader.height)
        crs = CRS.from_wkt(reader.crs_wkt)
    return shape(transform_geom(crs, CRS.from_epsg(4326), mapping(box(left, bottom, right, top))))


def _bounds(transform, width: int, height: int) -> tuple[float, float, float, float]:
    xs, ys = zip(*(transform * corner for corner in ((0, 0), (width, 0), (0, height), (width, height))))
    return min(xs), min(ys), max(xs), max(ys)


def _check_counts(request: FinetuneRequest, rounds: list[Round]) -> int:
    """Buildings inside the areas of all rounds, after the checks that give one clear line each."""
    inside = sum(r.counted() for r in rounds)
    if inside == 0:
        raise FootprintError("No buildings lie inside the area; draw or select buildings where the area is.")
    if inside < request.min_buildings:
        where = "the area" if len(rounds) == 1 else "the areas of this round and the earlier ones"
        raise FootprintError(f"Only {inside} buildings lie inside {where}; fine-tuning needs at least "
                             f"{request.min_buildings}. Correct or draw more buildings first.")
    return inside


def _usable_rasters(request: FinetuneRequest, rounds: list[Round], warn: WarnCallback) -> dict[str, BaseGeometry]:
    """Every round's rasters that overlap some round's area, once each (by absolute path), with their footprints
    in EPSG:4326. The others are skipped with one warning line; none left is an error."""
    for raster in request.rasters:
        if not Path(raster).is_file():
            raise FootprintError(f"Raster {raster}: file not found.")
    region = unary_union([r.region() for r in rounds])
    usable: dict[str, BaseGeometry] = {}
    outside, gone = [], []
    for raster in dict.fromkeys(str(Path(p).resolve()) for r in rounds for p in r.rasters):
        if not Path(raster).is_file():
            gone.append(raster)
            continue
        footprint = _raster_footprint_4326(raster)
        if footprint.intersects(region):
            usable[raster] = footprint
        else:
            outside.append(raster)
    names = ", ".join(Path(p).name for p in outside)
    if gone:
        warn(f"Skipped the rasters of earlier rounds that are no longer there ({', '.join(gone)}): their corrections "
             "are left out; put the files back to include them.")
    if not usable:
        raise FootprintError(f"No raster lies inside the area where the buildings are complete ({names}); include "
                             f"them in {request.area_option}, or check the rasters and the layers.")
    if outside:
        warn(f"Skipped {names}: outside the area where the buildings are complete; to use it as ground without "
             f"buildings, include it in {request.area_option}.")
    return usable


def _split_chips(chips: list[tuple[str, np.ndarray, np.ndarray]], fraction: float
                 ) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], list[tuple[str, np.ndarray, np.ndarray]]]:
    """Every k-th labelled chip (whole chips, spread over the area) for validation, the rest for training."""
    labelled = [c for c in chips if ((c[2] == 1) | (c[2] == 2)).any()]
    if len(labelled) < 2:
        raise FootprintError(f"The area gives {len(labelled)} chip(s) of {CHIP} px with buildings; fine-tuning needs "
                             "at least 2 (one to learn from, one to measure). Enlarge the area.")
    step = max(2, round(1 / fraction))
    val_names = {c[0] for c in labelled[step // 2 :: step]} or {labelled[-1][0]}
    return [c for c in chips if c[0] not in val_names], [c for c in chips if c[0] in val_names]


@dataclass
class Chips:
    """The fine-tuning chips on disk, and what they hold."""

    train: list[Path]
    val: list[Path]
    buildings: int  # inside the areas of all rounds
    area_m2: float  # labelled ground
    scale: float  # the pixels' divisor to 0..1, as extraction computes it (core.normalization.input_scale)
    rounds: list[Round] = field(default_factory=list)  # the earlier rounds, then this one
    rasters: list[str] = field(default_factory=list)  # those used, of every round


def _gather(request: FinetuneRequest, card: ModelCard, warn: WarnCallback) -> tuple[list[Round], int, dict]:
    """Every round's corrections (the card's earlier rounds, then this one), counted, and the usable rasters."""
    rounds = earlier_rounds(card.training_data, warn)
    rounds.append(_this_round(request, len(rounds) + 1))
    supersede(rounds)
    count = _check_counts(request, rounds)
    usable = _usable_rasters(request, rounds, warn)
    this = rounds[-1]
    this.rasters = [p for p in dict.fromkeys(str(Path(r).resolve()) for r in request.rasters) if p in usable]
    this.area_m2 = area_m2(this.region().intersection(unary_union([usable[p] for p in this.rasters])))
    return rounds, count, usable


def prepare_chips(request: FinetuneRequest, card: ModelCard, folder: Path, warn: WarnCallback | None = None) -> Chips:
    """Chips of the rasters of every round at the model's resolution, split by whole chips into training and
    validation; ``card`` is the base model's, which holds the earlier rounds."""
    rounds, count, usable = _gather(request, card, warn or (lambda _message: None))
    buildings = [mapping(b) for r in rounds for b in r.buildings]
    area = [mapping(a) for r in rounds for a in r.area]
    border = int(card.training_data.get("border_width_px") or 2)
    chips = []
    labelled_px = 0
    scales = {}
    for index, raster in enumerate(usable):
        labelled = label_image(raster, buildings, area, float(card.resolution_m), border, card.input_bands)
        scales[raster] = labelled.scale(card.normalization)
        labelled_px += int((labelled.mask != IGNORE).sum())
        for row, col, chip_image, chip_mask in cut_chips(labelled.image, labelled.mask, CHIP):
            chips.append((f"{index}_{Path(raster).stem}_{row}_{col}", chip_image, chip_mask))
    if len(set(scales.values())) > 1:
        raise FootprintError("The rasters have different value ranges (bit depths): fine-tune on rasters of one kind "
                             f"at a time ({', '.join(f'{Path(r).name}: {s:g}' for r, s in scales.items())}).")
    train_chips, val_chips = _split_chips(chips, request.val_fraction)
    paths: dict[str, list[Path]] = {"train": [], "val": []}
    for split, members in (("train", train_chips), ("val", val_chips)):
        for name, chip_image, chip_mask in members:
            path = folder / f"{split}_{name}.npz"
            np.savez(path, image=chip_image, mask=chip_mask)
            paths[split].append(path)
    return Chips(paths["train"], paths["val"], count, labelled_px * float(card.resolution_m) ** 2,
                 next(iter(scales.values())), rounds, list(usable))


# ----------------------------------------------------------------------------- training


@dataclass
class _Base:
    model: torch.nn.Module
    card: ModelCard
    path: str
    float16: bool  # the file stores float16: so will the fine-tuned one


def _base(request: FinetuneRequest) -> _Base:
    from footprint_plugin.core.resource_files import default_weights_path

    path = request.weights or str(default_weights_path())
    card, tensors = read_weights_file(path)
    half = any(t.dtype == torch.float16 for t in tensors.values())
    return _Base(model_from_tensors(card, tensors, path).float(), card, path, half)


class _Scorer:
    """Validation F1 of the held-out chips with the card's thresholds."""

    def __init__(self, paths: list[Path], card: ModelCard, device: torch.device, scale: float) -> None:
        self.paths, self.card, self.device, self.scale = paths, card, device, scale
        post = card.postprocess
        self.options = VectorizeOptions(regularize="none", mask_threshold=float(post.get("mask_threshold", 0.5)),
                                        seed_threshold=float(post.get("seed_threshold", 0.5)))
        self.weights = torch.tensor(CLASS_WEIGHTS, device=device)

    def __call__(self, model: torch.nn.Module) -> float:
        norm = self.card.normalization
        result = validate(model, self.paths, self.device, self.scale, norm["mean"], norm["std"], self.weights,
                          float(self.card.resolution_m), self.device.type == "cuda", self.options)
        return result.f1


def _training_mode(model: torch.nn.Module, freeze_norm: bool) -> None:
    """Train mode, with every BatchNorm kept in eval mode (its statistics frozen) when ``freeze_norm``."""
    model.train()
    if freeze_norm:
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()


def finetune(request: FinetuneRequest, progress: ProgressCallback | None = None,
             cancelled: Callable[[], bool] | None = None, warn: WarnCallback | None = None) -> FinetuneResult:
    """Prepare chips, train from the base weights within ``request.minutes``, write the best state. ``warn``
    hears each warning line (rasters skipped) as it comes; the result lists them too."""
    started = time.monotonic()
    torch.manual_seed(request.seed)
    base = _base(request)
    model, card = base.model, base.card
    device = resolve_device(request.device)
    warnings: list[str] = []

    def note(message: str) -> None:
        warnings.append(message)
        if warn:
            warn(message)

    with tempfile.TemporaryDirectory(prefix="footprint-finetune-") as tmp:
        chips = prepare_chips(request, card, Path(tmp), note)
        model = model.to(device)
        score = _Scorer(chips.val, card, device, chips.scale)
        before = score(model)
        best = (before, copy.deepcopy(model.state_dict()))
        history = [{"minutes": 0.0, "f1": round(before, 4)}]
        if progress:
            progress(0.0, f"F1 before {before:.2f}")
        steps, stopped = 0, False
        if chips.train:
            steps, stopped, best = _train(model, card, chips.train, chips.scale, request, device, score, best, history,
                                          progress, cancelled)
    result = FinetuneResult(None, before, best[0], steps, time.monotonic() - started, chips.buildings,
                            len(chips.train), len(chips.val), stopped, history, len(chips.rounds), warnings)
    if stopped and best[0] <= before:
        return result  # cancelled before anything better than the base model: nothing to keep
    model.load_state_dict(best[1])
    _write(request, model.eval().cpu(), base, result, chips)
    result.output = request.output
    return result


def _train(model: torch.nn.Module, card: ModelCard, paths: list[Path], scale: float, request: FinetuneRequest,
           device: torch.device, score: _Scorer, best: tuple[float, dict], history: list[dict[str, float]],
           progress: ProgressCallback | None, cancelled: Callable[[], bool] | None) -> tuple[int, bool, tuple]:
    """Steps on random crops with a cosine learning rate over the time budget; scores up to five times."""
    norm = card.normalization
    crop = min(CHIP, int(card.tile_size))
    dataset = ChipDataset(paths, crop, scale, norm["mean"], norm["std"], request.seed,
                          Augmentation(scale_jitter=0.15, strong=request.strong_augment), length=1 << 30)
    optimizer = torch.optim.AdamW(model.parameters(), lr=request.lr, weight_decay=1e-4)
    amp = device.type == "cuda"  # float16 autocast with a loss scaler on CUDA; the CPU trains in float32
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    weights = torch.tensor(CLASS_WEIGHTS, device=device)
    budget = max(1.0, request.minutes * 60.0)
    start = time.monotonic()
    interval = max(budget * SCORE_EVERY[0], min(budget, SCORE_EVERY[1]))
    next_score = interval
    _training_mode(model, request.freeze_norm)
    step, scored_at = 0, 0
    while True:
        elapsed = time.monotonic() - start
        if cancelled and cancelled():
            return step, True, best
        if elapsed >= budget:
            break
        for group in optimizer.param_groups:  # short linear warm-up, then cosine to zero at the budget
            group["lr"] = request.lr * min(1.0, (step + 1) / 10) * 0.5 * (1 + math.cos(math.pi * elapsed / budget))
        batch = [dataset[step * request.batch_size + i] for i in range(request.batch_size)]
        images = torch.stack([b[0] for b in batch]).to(device)
        masks = torch.stack([b[1] for b in batch]).to(device)
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            logits = model(images)
        loss = segmentation_loss(logits, masks, weights, 0.5)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        step += 1
        if time.monotonic() - start >= next_score:
            best = _keep_best(model, score, best, history, time.monotonic() - start, progress, budget)
            _training_mode(model, request.freeze_norm)
            next_score += interval
            scored_at = step
    if scored_at == step:  # the last step was scored already
        return step, False, best
    return step, False, _keep_best(model, score, best, history, time.monotonic() - start, progress, budget)


def _keep_best(model: torch.nn.Module, score: _Scorer, best: tuple[float, dict], history: list[dict[str, float]],
               elapsed: float, progress: ProgressCallback | None, budget: float) -> tuple[float, dict]:
    f1 = score(model)
    history.append({"minutes": round(elapsed / 60, 2), "f1": round(f1, 4)})
    if progress:
        progress(min(1.0, elapsed / budget), f"F1 {f1:.2f} (best {max(f1, best[0]):.2f})")
    return (f1, copy.deepcopy(model.state_dict())) if f1 > best[0] else best


def _write(request: FinetuneRequest, model: torch.nn.Module, source: _Base, result: FinetuneResult,
           chips: Chips) -> None:
    base = source.card
    card = copy.deepcopy(base)
    card.name = request.name or f"{base.name}-finetuned"
    card.description = f"{base.name} fine-tuned on {result.buildings} corrected buildings"
    earlier = base.training_data
    was_finetuned = "finetune" in earlier  # keep the original model's data and metrics, not one nested per round
    this = record(chips.rounds[-1], {
        "base_model": base.name, "base_weights": Path(source.path).name, "minutes": request.minutes,
        "steps": result.steps, "f1_before": round(result.f1_before, 4), "f1_after": round(result.f1_after, 4)})
    card.training_data = {
        "base_model": base.name, "base_weights": Path(source.path).name,
        "base_training_data": earlier.get("base_training_data") if was_finetuned else earlier,
        "finetune": {"round": result.round, "rasters": [Path(r).name for r in chips.rasters],
                     "buildings": result.buildings, "area_m2": round(chips.area_m2, 1),
                     "train_chips": result.train_chips, "val_chips": result.val_chips, "minutes": request.minutes,
                     "steps": result.steps, "lr": request.lr, "seed": request.seed},
        "rounds": [r.record for r in chips.rounds[:-1]] + [this],
    }
    card.metrics = {"finetune": {"val_f1_before": round(result.f1_before, 4), "val_f1_after": round(result.f1_after, 4),
                                 "history": result.history},
                    "base": base.metrics.get("base") if was_finetuned else base.metrics}
    try:
        save_weights(request.output, model.half() if source.float16 else model, card)
    except OSError as exc:
        raise FootprintError(f"Cannot write {request.output} ({exc.strerror or exc}).") from None


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    output_dir = Path(args.output).resolve().parent
    if not output_dir.is_dir() or not os.access(output_dir, os.W_OK):
        raise FootprintError(f"Cannot write {args.output}: {output_dir} is not a writable folder.")
    request = FinetuneRequest(rasters=args.raster, buildings=args.buildings, output=args.output, area=args.area,
                              weights=args.weights, minutes=args.minutes, device=args.device, name=args.name,
                              lr=args.lr, batch_size=args.batch_size, seed=args.seed)
    interrupted: list[bool] = []

    def on_sigint(_signum, _frame) -> None:  # first Ctrl-C: stop after the current step and keep the best
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(True)
        print("stopping: Ctrl-C again to abandon", flush=True)

    def report(fraction: float, message: str) -> None:
        print(f"[{fraction * 100:3.0f}%] {message}", flush=True)

    def warn(message: str) -> None:
        print(f"warning: {message}", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        result = finetune(request, report, lambda: bool(interrupted), warn)
    finally:
        signal.signal(signal.SIGINT, previous)
    print(result.message())
    return 130 if result.cancelled else 0
