"""The whole extraction as functions: raster in, buildings (a list, or a file) out; all through :mod:`.pipeline`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import FootprintError
from .geo import ModelGrid
from .inference import CancelCheck, ProgressCallback
from .parameters import ExtractionParameters, vectorize_options
from .pipeline import Area, Model, Summary, load_model, run
from .probability_raster import ProbabilityRaster
from .readers import WindowReader
from .sinks import ListSink, check_output_path, open_output
from .vectorize import Building
from .weights import ModelCard

__all__ = ["Area", "ExtractionParameters", "ExtractionResult", "default_weights_path", "extract_buildings",
           "extract_to_file", "extract_to_geopackage", "load_model", "vectorize_options"]

DEFAULT_WEIGHTS_NAME = "default_weights.safetensors"


def default_weights_path() -> Path:
    """The bundled weights: ``resources/`` inside the installed plugin, or at the repository root."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "resources" / DEFAULT_WEIGHTS_NAME, here.parent.parent / "resources" / DEFAULT_WEIGHTS_NAME):
        if candidate.is_file():
            return candidate
    raise FootprintError(
        "No default weights are bundled with this copy; pass a weights file (--weights FILE, or choose one in the dialog)."
    )


@dataclass
class ExtractionResult:
    """:func:`extract_buildings`' result: the :class:`Summary` fields and the buildings."""

    buildings: list[Building]  # empty when they were streamed to a sink
    count: int
    crs_wkt: str
    seconds: float
    device: str
    grid: ModelGrid
    card: ModelCard
    weights_path: str
    warnings: list[str]


class _CallbackSink:
    """A plain ``callable(buildings)`` as a sink."""

    def __init__(self, callback: Callable[[list[Building]], None]) -> None:
        self.add = callback

    def finish(self, summary: Summary) -> None:
        pass

    def abort(self) -> None:
        pass


def extract_buildings(
    reader: WindowReader,
    parameters: ExtractionParameters,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
    warn: Callable[[str], None] | None = None,
    model: Model | None = None,
    sink: Callable[[list[Building]], None] | None = None,
    area: Area | None = None,
) -> ExtractionResult:
    """:func:`pipeline.run` into a list (or into ``sink``, called with each strip's buildings)."""
    target = ListSink() if sink is None else _CallbackSink(sink)
    summary = run(reader, parameters, target, area, progress, cancelled, warn=warn, model=model)
    buildings = target.buildings if isinstance(target, ListSink) else []
    return _result(summary, buildings)


def _result(summary: Summary, buildings: list[Building]) -> ExtractionResult:
    return ExtractionResult(buildings, summary.count, summary.crs_wkt, summary.seconds, summary.device, summary.grid,
                            summary.card, summary.weights_path, summary.warnings)


def extract_to_file(
    reader: WindowReader,
    output: str | os.PathLike[str],
    parameters: ExtractionParameters,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
    warn: Callable[[str], None] | None = None,
    area: Area | None = None,
    probabilities: str | os.PathLike[str] | None = None,
) -> ExtractionResult:
    """:func:`pipeline.run` into ``output``, its format by extension (:func:`sinks.open_output`), atomically;
    with ``probabilities`` (a .tif) also the building-probability raster."""
    started = time.perf_counter()
    raster = ProbabilityRaster(probabilities) if probabilities else None
    sink = open_output(output, reader.crs_wkt, reader.transform, Path(reader.name).stem)
    result = _result(run(reader, parameters, sink, area, progress, cancelled, warn=warn, probabilities=raster), [])
    result.seconds = time.perf_counter() - started
    return result


def extract_to_geopackage(
    reader: WindowReader,
    output: str | os.PathLike[str],
    parameters: ExtractionParameters,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
    warn: Callable[[str], None] | None = None,
) -> ExtractionResult:
    """:func:`extract_to_file` for a GeoPackage (layer ``buildings``)."""
    check_output_path(output, (".gpkg",))
    return extract_to_file(reader, output, parameters, progress, cancelled, warn)
