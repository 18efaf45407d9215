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

import torch
from rasterio.transform import Affine
from torch import nn

from .area import Area
from .blocks import block_vectorizers, plan_column_blocks
from .buildings import Building
from .devices import resolve_device
from .errors import CancelledError
from .geo import ModelGrid, model_grid
from .inference import CancelCheck, ClassMapSource, InferencePlan, ProgressCallback, iter_class_strips, plan_inference
from .parameters import ExtractionParameters, vectorize_options
from .predictor import Predictor
from .probability_raster import ProbabilityRaster
from .readers import WindowReader, clip_to_extent, resolve_band_mapping
from .resource_files import default_weights_path
from .sinks import Sink
from .threads import run_in_background
from .tiling import tile_starts
from .weights import ModelCard, load_weights
from .workers import VectorizeWorkers, start_workers

Model = tuple[nn.Module, ModelCard, str]  # network, its card, the weights file it came from


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
        summary = _extract(reader, parameters, sink, area or Area(), progress, cancel, warn, model, probabilities,
                           class_maps, workers)
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


def _extract(reader: WindowReader, parameters: ExtractionParameters, sink: Sink, area: Area,
             progress: ProgressCallback | None, cancel: CancelCheck | None,
             warn: Callable[[str], None] | None, model: Model | None,
             probabilities: ProbabilityRaster | None, class_maps: ClassMapSource | None,
             workers: VectorizeWorkers | None) -> Summary:
    started = time.perf_counter()
    warnings: list[str] = []

    def note(message: str) -> None:
        warnings.append(message)
        if warn:
            warn(message)

    setup = set_up(reader, parameters, area, model, note)
    grid, crs_wkt = setup.plan.grid, setup.plan.reader.crs_wkt
    if probabilities is not None:
        probabilities.start(grid, crs_wkt)
    keep = area.keeper()
    count = 0
    strips = class_maps or setup.model_class_maps()
    pool = workers or start_workers(parameters.vectorize_workers, setup.device.type, note)
    cpu_before = pool.cpu_seconds if pool is not None else 0.0
    try:
        # closing(): an error in the sink stops the inference thread now, not when the traceback is freed.
        with closing(_buildings(setup.plan, strips, parameters, setup.card, progress, cancel, note, probabilities,
                                pool)) as found:
            for buildings in found:
                buildings = keep(buildings)
                if buildings:
                    sink.add(buildings)
                    count += len(buildings)
    finally:
        if pool is not None and pool is not workers:
            pool.close(cancel=True)
    return Summary(count, time.perf_counter() - started, setup.device_name(), grid, setup.card, setup.weights_path, crs_wkt,
                   setup.raster_name, warnings, pool.cpu_seconds - cpu_before if pool is not None else 0.0)


def _buildings(plan: InferencePlan, source: ClassMapSource, parameters: ExtractionParameters, card: ModelCard,
               progress: ProgressCallback | None, cancel: CancelCheck | None, warn: Callable[[str], None],
               probabilities: ProbabilityRaster | None, pool: VectorizeWorkers | None) -> Iterator[list[Building]]:
    """The buildings of each strip of each column block, as they are found."""
    tiling_options, grid, padded = parameters.tiling, plan.grid, plan.padded
    width, height, margin = padded.width, padded.height, padded.margin
    blocks = plan_column_blocks(width, padded.tile_width, padded.stride_x, tiling_options.block_width,
                                tiling_options.block_halo)
    block_tiles = [len(tile_starts(block.width, padded.tile_width, padded.stride_x)) for block in blocks]
    transform = grid.transform * Affine.translation(-margin, -margin)
    options = vectorize_options(parameters, card=card)
    stop = threading.Event()

    def stopped() -> bool:
        return stop.is_set() or bool(cancel and cancel())

    for index, (block, vectorizer) in enumerate(block_vectorizers(blocks, height, transform, grid.pixel_area_m2,
                                                                  options, warn, pool)):
        block_progress = _block_progress(progress, sum(block_tiles[:index]), block_tiles[index], sum(block_tiles),
                                         index, len(blocks))
        stop.clear()
        strips = run_in_background(
            lambda block=block, report=block_progress: source(report, stopped, (block.start, block.end)), stop,
            check=pool.check if pool is not None else None)
        try:
            for strip in strips:
                if cancel and cancel():
                    raise CancelledError()
                if probabilities is not None:  # each block writes its own columns
                    own = slice(block.own_start - block.start, block.own_end - block.start)
                    probabilities.write(strip.row_start - margin, block.own_start - margin,
                                        strip.maps.probability[:, own])
                yield vectorizer.add_maps(strip.row_start, strip.maps, strip.last)
        finally:
            strips.close()  # stops and joins the worker whatever happened here


def _block_progress(progress: ProgressCallback | None, before: int, columns_of_tiles: int, total_columns: int,
                    index: int, blocks: int) -> ProgressCallback | None:
    """Progress of one column block as progress of the whole run."""
    if progress is None or blocks == 1:
        return progress

    def report(fraction: float, message: str) -> None:
        progress((before + fraction * columns_of_tiles) / total_columns, f"block {index + 1}/{blocks}, {message}")

    return report
