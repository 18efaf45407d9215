"""The one way to assemble a run: a reader, parameters and where the buildings go, into :func:`.pipeline.run`.

The command line, the demo, the QGIS task and the Processing algorithm all call :func:`extract`; they
differ only in the reader they pass (rasterio or QGIS's data provider) and in where the buildings go
(a file by its extension, a sink of their own such as a QgsFeatureSink adapter, or both).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .area import Area
from .buildings import Building
from .inference import CancelCheck, ClassMapSource, ProgressCallback
from .output_paths import check_output_path
from .parameters import ExtractionParameters
from .pipeline import Model, Summary, run
from .probability_raster import ProbabilityRaster
from .readers import WindowReader
from .sinks import BackgroundSink, ListSink, Sink, TeeSink, open_output
from .workers import VectorizeWorkers


def extract(reader: WindowReader, parameters: ExtractionParameters, *, output: str | os.PathLike[str] | None = None,
            sinks: Sequence[Sink] = (), probabilities: str | os.PathLike[str] | None = None, area: Area | None = None,
            progress: ProgressCallback | None = None, cancel: CancelCheck | None = None,
            warn: Callable[[str], None] | None = None, model: Model | None = None,
            class_maps: ClassMapSource | None = None, workers: VectorizeWorkers | None = None) -> Summary:
    """Extract the buildings of ``reader`` into ``output`` (its format by extension, written atomically) and
    into each of ``sinks``; with ``probabilities`` (a .tif) also the building-probability raster.

    Every output path is checked before any work. On an error or a cancel nothing is left behind.
    """
    if output is None and not sinks:
        raise ValueError("extract() needs an output file or a sink")
    targets = list(sinks)
    if output is not None:
        check_output_path(output)
    raster = ProbabilityRaster(probabilities) if probabilities else None
    if output is not None:
        # Written in a thread of its own: a strip's buildings are written while the next one is vectorised.
        targets.insert(0, BackgroundSink(open_output(output, reader.crs_wkt, reader.transform, Path(reader.name).stem)))
    sink = targets[0] if len(targets) == 1 else TeeSink(*targets)
    return run(reader, parameters, sink, area, progress, cancel, warn=warn, model=model, probabilities=raster,
               class_maps=class_maps, workers=workers)


@dataclass
class ExtractionResult(Summary):
    """:func:`extract_buildings`' result: what the run did, and the buildings."""

    buildings: list[Building] = field(default_factory=list)


def extract_buildings(reader: WindowReader, parameters: ExtractionParameters, progress: ProgressCallback | None = None,
                      cancel: CancelCheck | None = None, warn: Callable[[str], None] | None = None,
                      model: Model | None = None, area: Area | None = None) -> ExtractionResult:
    """:func:`extract` into a list (tests, scoring, small rasters)."""
    found = ListSink()
    summary = extract(reader, parameters, sinks=[found], area=area, progress=progress, cancel=cancel, warn=warn,
                      model=model)
    return ExtractionResult(**vars(summary), buildings=found.buildings)
