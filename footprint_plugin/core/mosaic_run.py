"""A run over many rasters into one output (the command line's): groups by CRS, one after another, resumable.

:func:`extract_inputs` reads each group of rasters (:mod:`.inputs`) as one mosaic through
:func:`.pipeline.stream`, block by block, into one sink: a GeoPackage commits every block with its journal row
(:mod:`.journal`), so ``resume=True`` continues a killed run where it stopped; other formats are written
atomically at the end. ``engine`` runs the blocks elsewhere (a Dask cluster, :mod:`.cluster`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .blocks import Block
from .errors import FootprintError
from .inference import CancelCheck, ProgressCallback
from .inputs import Inputs, RasterGroup, SourceIndex, file_digest
from .output_paths import CSV_SUFFIX, check_output_path
from .parameters import ExtractionParameters
from .pipeline import Model, Summary, load_model, stream
from .probability_raster import ProbabilityRaster
from .readers import RasterioReader
from .sinks import BackgroundSink, Sink, open_output

if TYPE_CHECKING:
    from .cluster import ClusterEngine

RESUMABLE_SUFFIX = ".gpkg"


def is_resumable(output: str | os.PathLike[str]) -> bool:
    return Path(output).suffix.lower() == RESUMABLE_SUFFIX


class GroupJournal:
    """One group's view of a resumable sink's journal (block keys ``group:index``)."""

    def __init__(self, done: dict[str, int], group: int) -> None:
        self.done_keys, self.group = done, group

    def key(self, block: Block) -> str:
        return f"{self.group}:{block.index}"

    def done(self, block: Block) -> bool:
        return self.key(block) in self.done_keys

    def finished(self, sink: Sink, block: Block) -> None:
        if hasattr(sink, "block_done"):  # a resumable sink commits the block
            sink.block_done(self.key(block))


def fingerprint(inputs: Inputs, parameters: ExtractionParameters, weights_path: str) -> dict:
    """What must not change between a run and its resumption: inputs, weights and every setting that changes
    the buildings (not the device, the vectorising processes or the engine)."""
    settings = dataclasses.asdict(parameters)
    for key in ("weights", "device", "vectorize_workers"):
        settings.pop(key, None)
    settings["tiling"].pop("batch_size", None)
    settings["tiling"].pop("backend", None)
    return {"inputs": inputs.fingerprint(), "weights": file_digest(weights_path), "settings": settings,
            "crs": inputs.crs.to_wkt()}


def open_sink(inputs: Inputs, parameters: ExtractionParameters, output: str | os.PathLike[str], weights_path: str,
              resume: bool) -> tuple[Sink, dict[str, int]]:
    """The run's sink (written in a thread of its own) and the blocks a resumed run finished."""
    if is_resumable(output):
        from .journal import JournalledGeoPackage

        journalled = JournalledGeoPackage(output, inputs.crs.to_wkt(), fingerprint(inputs, parameters, weights_path),
                                          resume)
        return BackgroundSink(journalled), journalled.done
    if Path(output).suffix.lower() == CSV_SUFFIX and (len(inputs.rasters) > 1):
        raise FootprintError("A SpaceNet CSV holds the pixels of one raster; write a .gpkg for several rasters.")
    group = inputs.groups[0]
    with RasterioReader(group.path) as reader:
        sink = open_output(output, inputs.crs.to_wkt(), reader.transform, Path(group.rasters[0].path).stem)
    return BackgroundSink(sink), {}


def extract_inputs(inputs: Inputs, parameters: ExtractionParameters, output: str | os.PathLike[str], *,
                   probabilities: str | os.PathLike[str] | None = None, resume: bool = False,
                   progress: ProgressCallback | None = None, cancel: CancelCheck | None = None,
                   warn: Callable[[str], None] | None = None, model: Model | None = None,
                   engine: ClusterEngine | None = None) -> Summary:
    """Extract the buildings of every raster of ``inputs`` into ``output`` (in ``inputs.crs``), group by group.

    On an error or a cancel a resumable output keeps its finished blocks (``<name>.partial.gpkg``) and others
    leave nothing behind.
    """
    check_output_path(output)
    if resume and not is_resumable(output):
        raise FootprintError(f"Only a GeoPackage output can resume; {Path(output).name} is not one (write a .gpkg).")
    if probabilities and resume:
        raise FootprintError("--probabilities cannot resume; run without --resume, or without --probabilities.")
    model = model or load_model(parameters.weights)
    sink, done = open_sink(inputs, parameters, output, model[2], resume)
    return run_inputs(inputs, parameters, sink, done, probabilities=probabilities, progress=progress, cancel=cancel,
                      warn=warn, model=model, engine=engine)


def run_inputs(inputs: Inputs, parameters: ExtractionParameters, sink: Sink, done: dict[str, int] | None = None, *,
               probabilities: str | os.PathLike[str] | None = None, progress: ProgressCallback | None = None,
               cancel: CancelCheck | None = None, warn: Callable[[str], None] | None = None,
               model: Model | None = None, engine: ClusterEngine | None = None) -> Summary:
    """Every group of ``inputs`` into ``sink`` (skipping the ``done`` blocks of a resumed run), then the sink
    finished; on an error or a cancel it is aborted and the error raised."""
    if probabilities and len(inputs.groups) > 1:
        sink.abort()
        raise FootprintError("The probability raster needs rasters in one CRS (one mosaic).")
    done = {} if done is None else done
    resumed = sum(done.values())  # buildings an earlier run committed (``done`` grows as blocks are committed)
    model = model or load_model(parameters.weights)
    raster = ProbabilityRaster(probabilities) if probabilities else None
    index = SourceIndex(inputs)
    weights = [sum(r.width * r.height for r in group.rasters) for group in inputs.groups]
    summaries: list[Summary] = []
    try:
        for group in inputs.groups:
            report = _group_progress(progress, weights, group, len(inputs.groups))
            journal = GroupJournal(done, group.index)
            summaries.append(_run_group(group, parameters, sink, report, cancel, warn, model, raster, index, journal,
                                        engine))
        summary = _combined(summaries, inputs, resumed)
        sink.finish(summary.metadata())
        if raster is not None:
            raster.finish()
    except BaseException:
        sink.abort()
        if raster is not None:
            raster.abort()
        raise
    return summary


def _run_group(group: RasterGroup, parameters: ExtractionParameters, sink: Sink, progress: ProgressCallback | None,
               cancel: CancelCheck | None, warn: Callable[[str], None] | None, model: Model,
               probabilities: ProbabilityRaster | None, index: SourceIndex, journal: GroupJournal,
               engine: ClusterEngine | None) -> Summary:
    deliver = index.deliver(group)
    with RasterioReader(group.path) as reader:
        if engine is not None:
            return engine.stream(group, reader, parameters, sink, progress, cancel, warn, model, deliver, journal)
        return stream(reader, parameters, sink, progress=progress, cancel=cancel, warn=warn, model=model,
                      probabilities=probabilities, deliver=deliver, blocks=journal)


def _group_progress(progress: ProgressCallback | None, weights: list[int], group: RasterGroup,
                    groups: int) -> ProgressCallback | None:
    if progress is None or groups == 1:
        return progress
    before, total, own = sum(weights[: group.index]), sum(weights), weights[group.index]

    def report(fraction: float, message: str) -> None:
        progress((before + fraction * own) / total, f"CRS group {group.index + 1}/{groups}, {message}")

    return report


def _combined(summaries: list[Summary], inputs: Inputs, resumed: int) -> Summary:
    """One summary of the groups' runs: the first group's grid and model, the totals (with the ``resumed``
    buildings an earlier run wrote), every warning once."""
    first = summaries[0]
    warnings = list(dict.fromkeys(w for summary in summaries for w in summary.warnings))
    source = first.source if len(inputs.rasters) == 1 else f"{len(inputs.rasters)} rasters"
    return dataclasses.replace(first, count=resumed + sum(s.count for s in summaries), seconds=sum(s.seconds for s in summaries),
                               crs_wkt=inputs.crs.to_wkt(), source=source, warnings=warnings,
                               worker_cpu_s=sum(s.worker_cpu_s for s in summaries))
