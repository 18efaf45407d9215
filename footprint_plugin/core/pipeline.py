"""The one extraction pipeline: raster in, buildings streamed into a sink.

Every front end reaches :func:`run` through :func:`.extract.extract`, which opens the sinks (a vector
file or CSV writer, a QgsFeatureSink adapter, a list) and the probability raster. Inference runs in a
worker thread while this thread vectorises and writes; an error or a cancel in any stage
stops every stage, the sink's ``abort()`` drops what was written, and no thread is left.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol

import torch
from rasterio.transform import Affine
from torch import nn

from .area import Area
from .blocks import Block, BlockPlan, plan_blocks
from .buildings import Building, VectorizeOptions
from .devices import resolve_device
from .errors import CancelledError
from .geo import ModelGrid, model_grid
from .inference import (
    CancelCheck,
    ClassMapSource,
    ClassStrip,
    InferencePlan,
    ProgressCallback,
    iter_class_strips,
    plan_inference,
)
from .parameters import ExtractionParameters, vectorize_options
from .predictor import Predictor
from .probability_raster import ProbabilityRaster
from .readers import WindowReader, clip_to_extent, resolve_band_mapping
from .resource_files import default_weights_path
from .sinks import Sink
from .threads import run_in_background
from .tiling import TilingOptions
from .vectorize import StripVectorizer
from .weights import ModelCard, load_weights
from .workers import VectorizeWorkers, start_workers

Model = tuple[nn.Module, ModelCard, str]  # network, its card, the weights file it came from
Deliver = Callable[[list[Building]], list[Building]]  # a strip's buildings -> what the sink gets


class BlockJournal(Protocol):
    """The blocks a run finished (a resumable output's journal)."""

    def done(self, block: Block) -> bool: ...

    def finished(self, sink: Sink, block: Block) -> None: ...


@dataclass
class Summary:
    """What a run did."""

    count: int
    seconds: float
    device: str
    grid: ModelGrid
    card: ModelCard
    weights_path: str
    crs_wkt: str
    source: str
    warnings: list[str] = field(default_factory=list)
    worker_cpu_s: float = 0.0  # CPU seconds of the vectorising worker processes (0 without them)

    def metadata(self) -> dict[str, str]:
        """Key-value metadata for the output layer."""
        return {"source_raster": self.source, "weights": Path(self.weights_path).name,
                "weights_name": self.card.name, "device": self.device}

    def message(self) -> str:
        return f"{self.count} buildings in {self.seconds:.1f} s on {self.device} (weights {self.card.name})"


def load_model(weights: str | None) -> Model:
    """The model of a weights file, or of the bundled default weights."""
    path = str(weights) if weights else str(default_weights_path())
    model, card = load_weights(path)
    return model, card, path


def run(reader: WindowReader, parameters: ExtractionParameters, sink: Sink, area: Area | None = None,
        progress: ProgressCallback | None = None, cancel: CancelCheck | None = None, *,
        warn: Callable[[str], None] | None = None, model: Model | None = None,
        probabilities: ProbabilityRaster | None = None, class_maps: ClassMapSource | None = None,
        workers: VectorizeWorkers | None = None) -> Summary:
    """Extract the buildings of ``reader`` (inside ``area``) into ``sink``; geometry in the raster's CRS.

    ``probabilities`` also receives the building probability of every pixel. ``class_maps`` replaces the
    model as the source of the thresholded maps (a replay of cached maps, for benchmarks). ``workers`` is a pool
    of vectorising processes the caller keeps for several runs (else the run starts and stops its own, as
    ``parameters.vectorize_workers`` says). On success the sinks
    are finished (committed); on any error or cancel they are aborted and the error raised
    (:class:`FootprintError`, :class:`CancelledError`, or a bug's own exception).
    """
    try:
        summary = stream(reader, parameters, sink, area, progress, cancel, warn=warn, model=model,
                         probabilities=probabilities, class_maps=class_maps, workers=workers)
        sink.finish(summary.metadata())
        if probabilities is not None:
            probabilities.finish()
    except BaseException:
        sink.abort()
        if probabilities is not None:
            probabilities.abort()
        raise
    return summary


@dataclass
class RunSetup:
    """A run ready to start: the model (prepared for its device only when it runs) and the tiles over the raster
    (clipped to the area)."""

    plan: InferencePlan
    network: nn.Module
    card: ModelCard
    weights_path: str
    raster_name: str
    parameters: ExtractionParameters
    device: torch.device
    _predictor: Predictor | None = None

    @property
    def predictor(self) -> Predictor:
        """The network on its device (BatchNorm folded, channels_last), made on first use."""
        if self._predictor is None:
            tiling = self.parameters.tiling
            self._predictor = Predictor(self.network, self.card, self.device, amp=tiling.amp, backend=tiling.backend)
        return self._predictor

    def model_class_maps(self) -> ClassMapSource:
        """The model as the source of the thresholded maps (:func:`.inference.iter_class_strips`)."""
        return partial(iter_class_strips, self.plan, self.predictor, vectorize_options(self.parameters, card=self.card))

    def device_name(self) -> str:
        if self._predictor is None:
            return str(self.device)
        return str(self._predictor.device) + (" (onnxruntime)" if self._predictor.backend == "onnxruntime" else "")


def set_up(reader: WindowReader, parameters: ExtractionParameters, area: Area, model: Model | None = None,
           warn: Callable[[str], None] | None = None) -> RunSetup:
    """Load the model (unless given), map the bands, clip the raster to the area and plan the tiles."""
    network, card, weights_path = model or load_model(parameters.weights)
    bands = resolve_band_mapping(reader, card.input_bands, parameters.bands)
    bounds = area.bounds()
    name = reader.name
    if bounds is not None:
        reader = clip_to_extent(reader, bounds)
    resolution = parameters.working_resolution_m or float(card.resolution_m)
    grid = model_grid(reader.crs_wkt, reader.transform, reader.width, reader.height, resolution,
                      warn=warn, resolution_range_m=tuple(card.resolution_range_m))
    device = resolve_device(parameters.device)
    plan = plan_inference(reader, grid, bands, parameters.tiling, card, device.type)
    return RunSetup(plan, network, card, weights_path, name, parameters, device)


def stream(reader: WindowReader, parameters: ExtractionParameters, sink: Sink, area: Area | None = None,
           progress: ProgressCallback | None = None, cancel: CancelCheck | None = None, *,
           warn: Callable[[str], None] | None = None, model: Model | None = None,
           probabilities: ProbabilityRaster | None = None, class_maps: ClassMapSource | None = None,
           workers: VectorizeWorkers | None = None, deliver: Deliver | None = None,
           blocks: BlockJournal | None = None) -> Summary:
    """Stream the buildings of ``reader`` into ``sink`` block by block, without finishing it (:func:`run` does).

    ``deliver`` turns each strip's buildings into what the sink gets (their source raster, another CRS);
    ``blocks`` skips the blocks a resumed run finished, and is told of each block as it is finished.
    """
    started = time.perf_counter()
    warnings: list[str] = []

    def note(message: str) -> None:
        if message in warnings:  # once a run, not once a block
            return
        warnings.append(message)
        if warn:
            warn(message)

    area = area or Area()
    setup = set_up(reader, parameters, area, model, note)
    grid, crs_wkt = setup.plan.grid, setup.plan.reader.crs_wkt
    if probabilities is not None:
        probabilities.start(grid, crs_wkt)
    keep = area.keeper()
    deliver = deliver or label_source(Path(setup.raster_name).name)
    count = 0
    strips = class_maps or setup.model_class_maps()
    pool = workers or start_workers(parameters.vectorize_workers, setup.device.type, note)
    cpu_before = pool.cpu_seconds if pool is not None else 0.0
    try:
        # closing(): an error in the sink stops the inference thread now, not when the traceback is freed.
        with closing(_buildings(setup.plan, strips, parameters, setup.card, progress, cancel, note, probabilities,
                                pool, blocks)) as found:
            for buildings, finished in found:
                buildings = deliver(keep(buildings))
                if buildings:
                    sink.add(buildings)
                    count += len(buildings)
                if finished is not None and blocks is not None:
                    blocks.finished(sink, finished)  # after the block's buildings, in the sink's order
    finally:
        if pool is not None and pool is not workers:
            pool.close(cancel=True)
    return Summary(count, time.perf_counter() - started, setup.device_name(), grid, setup.card, setup.weights_path,
                   crs_wkt, setup.raster_name, warnings, pool.cpu_seconds - cpu_before if pool is not None else 0.0)


def label_source(name: str) -> Deliver:
    """Every building's source: the one raster ``name``."""

    def deliver(buildings: list[Building]) -> list[Building]:
        for building in buildings:
            building.source = name
        return buildings

    return deliver


def plan_run_blocks(plan: InferencePlan, tiling: TilingOptions) -> BlockPlan:
    """The blocks of a run's padded grid (:func:`.blocks.plan_blocks`)."""
    return plan_blocks(plan.padded.height, plan.padded.width, tiling.block_size, tiling.block_halo)


def _buildings(plan: InferencePlan, source: ClassMapSource, parameters: ExtractionParameters, card: ModelCard,
               progress: ProgressCallback | None, cancel: CancelCheck | None, warn: Callable[[str], None],
               probabilities: ProbabilityRaster | None, pool: VectorizeWorkers | None,
               journal: BlockJournal | None) -> Iterator[tuple[list[Building], Block | None]]:
    """The buildings of each strip of each block as they are found, and after a block's last strip the block."""
    blocks = plan_run_blocks(plan, parameters.tiling)
    todo = [block for block in blocks.blocks if journal is None or not journal.done(block)]
    tracker = BlockProgress(progress, blocks.blocks, todo)
    options = vectorize_options(parameters, card=card)
    for block in todo:
        for found in block_buildings(plan, blocks, block, source, options, tracker.block(block), cancel, warn,
                                     probabilities, pool):
            yield found, None
        tracker.finished(block)
        yield [], block


def block_buildings(plan: InferencePlan, blocks: BlockPlan, block: Block, source: ClassMapSource,
                    options: VectorizeOptions, progress: ProgressCallback | None, cancel: CancelCheck | None,
                    warn: Callable[[str], None] | None, probabilities: ProbabilityRaster | None = None,
                    pool: VectorizeWorkers | None = None) -> Iterator[list[Building]]:
    """The buildings of one block, strip by strip: its window's maps (read and inferred in a thread of their own)
    through its vectoriser. Here, or on a cluster's worker (:mod:`.cluster`)."""
    stop = threading.Event()

    def stopped() -> bool:
        return stop.is_set() or bool(cancel and cancel())

    vectorizer = block_vectorizer(plan, blocks, block, options, warn, pool)
    strips = run_in_background(lambda: source(progress, stopped, block.window), stop,
                               check=pool.check if pool is not None else None)
    try:
        for strip in strips:
            if cancel and cancel():
                raise CancelledError()
            if probabilities is not None:
                _write_probabilities(probabilities, plan, block, strip)
            yield vectorizer.add_maps(strip.row_start, strip.maps, strip.last)
    finally:
        strips.close()  # stops and joins the worker whatever happened here
        vectorizer.close()


def block_vectorizer(plan: InferencePlan, blocks: BlockPlan, block: Block, options: VectorizeOptions,
                     warn: Callable[[str], None] | None, pool: VectorizeWorkers | None) -> StripVectorizer:
    """The vectoriser of one block's window (emitting the buildings anchored in its own square)."""
    padded = plan.padded
    top, _, left, right = block.window
    transform = plan.grid.transform * Affine.translation(-padded.margin, -padded.margin)
    return StripVectorizer(transform, plan.grid.pixel_area_m2, right - left, options, warn=warn,
                           rule=blocks.rule(block), pool=pool, column=left, row=top)


def _write_probabilities(probabilities: ProbabilityRaster, plan: InferencePlan, block: Block, strip: ClassStrip) -> None:
    """A strip's probabilities within the block's own square (each pixel written by one block)."""
    top, bottom, left, right = block.own
    first, end = max(strip.row_start, top), min(strip.row_start + len(strip.maps.probability), bottom)
    if end <= first:
        return
    window_left = block.window[2]
    values = strip.maps.probability[first - strip.row_start : end - strip.row_start,
                                    left - window_left : right - window_left]
    margin = plan.padded.margin
    probabilities.write(first - margin, left - margin, values)


class BlockProgress:
    """Progress over the blocks of a run, by pixels, with the speed and the time left once a block is done."""

    def __init__(self, progress: ProgressCallback | None, blocks: list[Block], todo: list[Block]) -> None:
        self.progress = progress
        self.total = sum(block.window_pixels for block in blocks)
        self.done = self.total - sum(block.window_pixels for block in todo)
        self.count, self.finished_count = len(blocks), len(blocks) - len(todo)
        self.started = time.perf_counter()
        self.processed = 0

    def block(self, block: Block) -> ProgressCallback | None:
        if self.progress is None:
            return None
        if self.count == 1:
            return self.progress

        def report(fraction: float, message: str) -> None:
            pixels = self.done + fraction * block.window_pixels
            self.progress(pixels / self.total, f"block {self.finished_count + 1}/{self.count}{self.speed()}, {message}")

        return report

    def finished(self, block: Block) -> None:
        self.done += block.window_pixels
        self.processed += block.window_pixels
        self.finished_count += 1

    def speed(self) -> str:
        """`` · 1.2 Mpx/s · 3 min left`` once a block is done."""
        seconds = time.perf_counter() - self.started
        if not self.processed or seconds <= 0:
            return ""
        rate = self.processed / seconds
        return f" · {rate / 1e6:.2f} Mpx/s · {format_duration((self.total - self.done) / rate)} left"


def format_duration(seconds: float) -> str:
    """``42 s``, ``12 min``, ``3.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
