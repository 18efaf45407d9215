"""The whole extraction: raster in, building polygons (and optionally a GeoPackage) out."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rasterio.transform import Affine

from .errors import FootprintError
from .geo import ModelGrid, model_grid
from .inference import (
    CancelCheck,
    Predictor,
    ProgressCallback,
    TilingOptions,
    iter_probability_strips,
    plan_column_blocks,
    resolve_tiling,
    run_in_background,
    tile_starts,
)
from .model import UNet
from .readers import WindowReader, clip_to_extent, resolve_band_mapping
from .vectorize import Building, ClaimMask, StripVectorizer, VectorizeOptions
from .weights import ModelCard, load_weights

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
class ExtractionParameters:
    """Everything a run needs besides the raster; ``None`` takes defaults."""

    weights: str | None = None
    device: str = "auto"
    tiling: TilingOptions = field(default_factory=TilingOptions)
    min_area_m2: float = 5.0
    regularize: str = "simplify"
    bands: list[int] | None = None
    extent: tuple[float, float, float, float] | None = None  # in the raster's CRS
    mask_threshold: float | None = None  # model card's when None
    seed_threshold: float | None = None
    instances: str = "three_class"  # "binary" ignores the border class (for comparison)


@dataclass
class ExtractionResult:
    buildings: list[Building]  # empty when they were streamed to a sink
    count: int
    crs_wkt: str
    seconds: float
    device: str
    grid: ModelGrid
    card: ModelCard
    weights_path: str
    warnings: list[str]


def vectorize_options(parameters: ExtractionParameters, card: ModelCard) -> VectorizeOptions:
    """The post-processing of a run: the parameters' settings, thresholds from the model card unless given."""
    post = card.postprocess
    return VectorizeOptions(
        mask_threshold=float(post.get("mask_threshold", 0.5)) if parameters.mask_threshold is None
        else parameters.mask_threshold,
        seed_threshold=float(post.get("seed_threshold", 0.5)) if parameters.seed_threshold is None
        else parameters.seed_threshold,
        min_area_m2=parameters.min_area_m2,
        regularize=parameters.regularize,
        instances=parameters.instances,
    )


def load_model(weights: str | None) -> tuple[UNet, ModelCard, str]:
    """The model of a weights file, or of the bundled default weights."""
    path = str(weights) if weights else str(default_weights_path())
    model, card = load_weights(path)
    return model, card, path


def extract_buildings(
    reader: WindowReader,
    parameters: ExtractionParameters,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
    warn: Callable[[str], None] | None = None,
    model: tuple[UNet, ModelCard, str] | None = None,
    sink: Callable[[list[Building]], None] | None = None,
) -> ExtractionResult:
    """Run tiled inference and vectorisation over ``reader``; geometry is in the raster's CRS.

    With ``sink`` the buildings of each strip are handed to it instead of being collected, so
    memory does not grow with the number of buildings.
    """
    started = time.perf_counter()
    warnings: list[str] = []

    def note(message: str) -> None:
        warnings.append(message)
        if warn:
            warn(message)

    unet, card, weights_path = model or load_model(parameters.weights)
    bands = resolve_band_mapping(reader, card.input_bands, parameters.bands)
    if parameters.extent is not None:
        reader = clip_to_extent(reader, parameters.extent)
    grid = model_grid(reader.crs_wkt, reader.transform, reader.width, reader.height, float(card.resolution_m),
                      warn=note, resolution_range_m=tuple(card.resolution_range_m))
    predictor = Predictor(unet, card, parameters.device, amp=parameters.tiling.amp, backend=parameters.tiling.backend)
    options = vectorize_options(parameters, card)
    tiling = resolve_tiling(parameters.tiling, predictor)
    blocks = plan_column_blocks(grid.width, tiling.tile, tiling.stride, parameters.tiling.block_width,
                                parameters.tiling.block_halo)
    block_tiles = [len(tile_starts(block.width, tiling.tile, tiling.stride)) for block in blocks]
    buildings: list[Building] = []
    count = 0
    claimed: ClaimMask | None = None
    for index, block in enumerate(blocks):
        claims = ClaimMask(grid.height, block.own_end, block.emit_end) if block.emit_end > block.own_end else None
        vectorizer = StripVectorizer(
            grid.transform * Affine.translation(block.start, 0), grid.pixel_area_m2, block.width, options, warn=note,
            owned_columns=(block.own_start - block.start, block.own_end - block.start),
            emit_end=block.emit_end - block.start, column_offset=block.start, claimed=claimed, claims=claims)
        block_progress = _block_progress(progress, sum(block_tiles[:index]), block_tiles[index], sum(block_tiles),
                                         index, len(blocks))
        strips = iter_probability_strips(reader, grid, bands, predictor, parameters.tiling, block_progress, cancelled,
                                         columns=(block.start, block.end))
        # Vectorising runs here while the next strips are inferred in a worker thread.
        for strip in run_in_background(strips):
            found = vectorizer.add(strip.row_start, strip.building, strip.interior, strip.last)
            count += len(found)
            if sink is not None:
                sink(found)
            else:
                buildings.extend(found)
        claimed = claims
    device = str(predictor.device) + (" (onnxruntime)" if predictor.backend == "onnxruntime" else "")
    return ExtractionResult(buildings, count, reader.crs_wkt, time.perf_counter() - started, device,
                            grid, card, weights_path, warnings)


def _block_progress(progress: ProgressCallback | None, before: int, columns_of_tiles: int, total_columns: int,
                    index: int, blocks: int) -> ProgressCallback | None:
    """Progress of one column block as progress of the whole run."""
    if progress is None or blocks == 1:
        return progress

    def report(fraction: float, message: str) -> None:
        progress((before + fraction * columns_of_tiles) / total_columns, f"block {index + 1}/{blocks}, {message}")

    return report


def extract_to_geopackage(
    reader: WindowReader,
    output: str | os.PathLike[str],
    parameters: ExtractionParameters,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
    warn: Callable[[str], None] | None = None,
) -> ExtractionResult:
    """:func:`extract_buildings` streaming into layer ``buildings`` of ``output``, written atomically."""
    try:
        from .output import GeoPackageWriter  # GDAL's Python bindings: only needed to write a GeoPackage
    except ImportError as exc:
        raise FootprintError(
            f"Writing a GeoPackage needs GDAL's Python bindings (osgeo), which this Python lacks ({exc}); "
            "install them (Debian: apt-get install python3-gdal) or use extract_buildings() without a file."
        ) from None

    started = time.perf_counter()
    with GeoPackageWriter(output, reader.crs_wkt) as writer:
        result = extract_buildings(reader, parameters, progress, cancelled, warn, sink=writer.add)
        writer.commit({
            "source_raster": reader.name,
            "weights": Path(result.weights_path).name,
            "weights_name": result.card.name,
            "device": result.device,
        })
    result.seconds = time.perf_counter() - started
    return result
