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
from pathlib import Path

from rasterio.transform import Affine
from torch import nn

from .area import Area
from .blocks import block_vectorizers, plan_column_blocks
from .buildings import Building
from .errors import CancelledError
from .geo import ModelGrid, model_grid
from .inference import CancelCheck, InferencePlan, ProgressCallback, iter_class_strips, plan_inference
from .parameters import ExtractionParameters, vectorize_options
from .predictor import Predictor
from .probability_raster import ProbabilityRaster
from .readers import WindowReader, clip_to_extent, resolve_band_mapping
from .resource_files import default_weights_path
from .sinks import Sink
from .threads import run_in_background
from .tiling import tile_starts
from .weights import ModelCard, load_weights
from .workers import VectorizeWorkers

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
        probabilities: ProbabilityRaster | None = None) -> Summary:
    """Extract the buildings of ``reader`` (inside ``area``) into ``sink``; geometry in the raster's CRS.

    ``probabilities`` also receives the building probability of every pixel. On success the sinks
    are finished (committed); on any error or cancel they are aborted and the error raised
    (:class:`FootprintError`, :class:`CancelledError`, or a bug's own exception).
    """
    try:
        summary = _extract(reader, parameters, sink, area or Area(), progress, cancel, warn, model, probabilities)
        sink.finish(summary.metadata())
        if probabilities is not None:
            probabilities.finish()
    except BaseException:
        sink.abort()
        if probabilities is not None:
            probabilities.abort()
        raise
    return summary


def _extract(reader: WindowReader, parameters: ExtractionParameters, sink: Sink, area: Area,
             progress: ProgressCallback | None, cancel: CancelCheck | None,
             warn: Callable[[str], None] | None, model: Model | None,
             probabilities: ProbabilityRaster | None) -> Summary:
    started = time.perf_counter()
    warnings: list[str] = []

    def note(message: str) -> None:
        warnings.append(message)
        if warn:
            warn(message)

    network, card, weights_path = model or load_model(parameters.weights)
    bands = resolve_band_mapping(reader, card.input_bands, parameters.bands)
    bounds = area.bounds()
    source = reader.name
    if bounds is not None:
        reader = clip_to_extent(reader, bounds)
    resolution = parameters.working_resolution_m or float(card.resolution_m)
    grid = model_grid(reader.crs_wkt, reader.transform, reader.width, reader.height, resolution,
                      warn=note, resolution_range_m=tuple(card.resolution_range_m))
    predictor = Predictor(network, card, parameters.device, amp=parameters.tiling.amp,
                          backend=parameters.tiling.backend)
    plan = plan_inference(reader, grid, bands, parameters.tiling, predictor)
    if probabilities is not None:
        probabilities.start(grid, reader.crs_wkt)
    keep = area.keeper()
    count = 0
    # closing(): an error in the sink stops the inference thread now, not when the traceback is freed.
    with closing(_buildings(plan, predictor, parameters, progress, cancel, note, probabilities)) as found:
        for buildings in found:
            buildings = keep(buildings)
            if buildings:
                sink.add(buildings)
                count += len(buildings)
    device = str(predictor.device) + (" (onnxruntime)" if predictor.backend == "onnxruntime" else "")
    return Summary(count, time.perf_counter() - started, device, grid, card, weights_path, reader.crs_wkt, source,
                   warnings)


def _buildings(plan: InferencePlan, predictor: Predictor, parameters: ExtractionParameters,
               progress: ProgressCallback | None, cancel: CancelCheck | None, warn: Callable[[str], None],
               probabilities: ProbabilityRaster | None) -> Iterator[list[Building]]:
    """The buildings of each strip of each column block, as they are found."""
    tiling_options, grid, padded = parameters.tiling, plan.grid, plan.padded
    width, height, margin = padded.width, padded.height, padded.margin
    blocks = plan_column_blocks(width, padded.tile_width, padded.stride_x, tiling_options.block_width,
                                tiling_options.block_halo)
    block_tiles = [len(tile_starts(block.width, padded.tile_width, padded.stride_x)) for block in blocks]
    transform = grid.transform * Affine.translation(-margin, -margin)
    options = vectorize_options(parameters, card=predictor.card)
    stop = threading.Event()

    def stopped() -> bool:
        return stop.is_set() or bool(cancel and cancel())

    # Processes that polygonise parts of each strip (command line); stopped however the run ends.
    pool = VectorizeWorkers(parameters.vectorize_workers) if parameters.vectorize_workers > 1 else None
    try:
        for index, (block, vectorizer) in enumerate(block_vectorizers(blocks, height, transform, grid.pixel_area_m2,
                                                                      options, warn, pool)):
            block_progress = _block_progress(progress, sum(block_tiles[:index]), block_tiles[index], sum(block_tiles),
                                             index, len(blocks))
            stop.clear()
            strips = run_in_background(
                lambda block=block, report=block_progress: iter_class_strips(
                    plan, predictor, options, report, stopped, columns=(block.start, block.end)),
                stop)
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
    finally:
        if pool is not None:
            pool.close(cancel=True)


def _block_progress(progress: ProgressCallback | None, before: int, columns_of_tiles: int, total_columns: int,
                    index: int, blocks: int) -> ProgressCallback | None:
    """Progress of one column block as progress of the whole run."""
    if progress is None or blocks == 1:
        return progress

    def report(fraction: float, message: str) -> None:
        progress((before + fraction * columns_of_tiles) / total_columns, f"block {index + 1}/{blocks}, {message}")

    return report
