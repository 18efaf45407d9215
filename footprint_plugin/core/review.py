"""The review layer: where to correct first.

From a run's buildings and its building-probability raster, one ranked list of places to look at: the
buildings with the lowest scores (often false buildings) and the areas where the probability hovers near
the threshold (the model could not decide: a missed building, a false one, or a wrong outline). Places are
ranked by how close to the threshold their probability lies (a building's score; an area's pixels on
average), the larger first where equal; ``rank`` 1 is the place to look at first, ``reason`` says why it
is listed.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.features import rasterize, shapes
from rasterio.transform import Affine
from scipy import ndimage
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from .errors import FootprintError
from .geo import ground_resolution_m
from .output_paths import CSV_SUFFIX, check_output_path
from .vector_files import read_polygons, write_polygons

LAYER = "review"
BAND = 0.15  # a pixel is unsure when its probability lies within this of the threshold
EDGE_PX = 1  # unsure bands up to 2 * EDGE_PX px wide (the edge of every building) are not areas
MIN_AREA_M2 = 4.0  # smaller unsure patches are not listed
SURE = 0.75  # places this far or further from the threshold towards 0 or 1 (0..1) are not listed
LIMIT = 200  # places listed at most
MAX_PIXELS = 50_000_000  # a larger probability raster is read coarser


@dataclass
class Place:
    """One entry of the review layer."""

    geometry: BaseGeometry
    kind: str  # "building" or "area"
    probability: float  # the building's score, or the area's mean building probability
    certainty: float  # 0 at the threshold, 1 at probability 0 or 1
    area_m2: float
    covered: float = 0.0  # an area's share under the extracted buildings
    reason: str = ""


@dataclass
class ProbabilityMap:
    """A run's building probability (0..1) on its grid."""

    values: np.ndarray
    transform: Affine
    crs_wkt: str
    pixel_area_m2: float


def certainty(probability: float | np.ndarray, threshold: float) -> np.ndarray:
    """How far ``probability`` lies from ``threshold`` towards 0 or 1: 0 at the threshold, 1 at 0 or 1."""
    span = np.where(np.asarray(probability) >= threshold, 1.0 - threshold, threshold)
    return np.abs(np.asarray(probability) - threshold) / span


def read_probabilities(path: str | os.PathLike[str]) -> ProbabilityMap:
    """The probability raster (uint8, P x 255) as 0..1; averaged over blocks of pixels beyond MAX_PIXELS."""
    try:
        with rasterio.open(path) as dataset:
            factor = max(1, math.ceil(math.sqrt(dataset.width * dataset.height / MAX_PIXELS)))
            rows, cols = max(1, dataset.height // factor), max(1, dataset.width // factor)
            values = dataset.read(1, out_shape=(rows, cols), resampling=Resampling.average)
            transform = dataset.transform * Affine.scale(dataset.width / cols, dataset.height / rows)
            crs_wkt = dataset.crs.to_wkt()
    except (RasterioError, AttributeError) as exc:  # AttributeError: a raster without a CRS
        raise FootprintError(f"Probability raster {path}: cannot be read ({exc}).") from None
    res_x, res_y = ground_resolution_m(crs_wkt, transform, cols, rows)
    return ProbabilityMap(values.astype(np.float32) / 255.0, transform, crs_wkt, res_x * res_y)


def unsure_areas(probabilities: ProbabilityMap, threshold: float, buildings: Sequence[BaseGeometry] = ()
                 ) -> list[Place]:
    """Patches of at least MIN_AREA_M2 whose probability lies within BAND of ``threshold``; thin bands
    (where the probability passes the threshold at a building's edge) are opened away."""
    values = probabilities.values
    near = ndimage.binary_opening(np.abs(values - threshold) <= BAND, np.ones((2 * EDGE_PX + 1,) * 2, bool))
    labels, count = ndimage.label(near)
    if not count:
        return []
    index = np.arange(1, count + 1)
    sizes = ndimage.sum(near, labels, index) * probabilities.pixel_area_m2
    sure = ndimage.mean(certainty(values, threshold), labels, index)
    mean = ndimage.mean(values, labels, index)
    under = np.zeros(values.shape, np.uint8)
    if buildings:
        under = rasterize([(b, 1) for b in buildings], out_shape=values.shape, transform=probabilities.transform)
    covered = ndimage.mean(under, labels, index)
    listed = np.concatenate([[False], sizes >= MIN_AREA_M2])
    parts: dict[int, list[BaseGeometry]] = {}
    for geometry, value in shapes(labels.astype(np.int32), mask=listed[labels], transform=probabilities.transform):
        parts.setdefault(int(value), []).append(shape(geometry))
    return [Place(unary_union(pieces), "area", float(mean[value - 1]), float(sure[value - 1]),
                  float(sizes[value - 1]), float(covered[value - 1])) for value, pieces in parts.items()]


def building_places(geometries: Sequence[BaseGeometry], scores: Sequence[float | None], threshold: float,
                    m2_per_unit: float) -> list[Place]:
    """The buildings that have a score, as places (``m2_per_unit``: ground m2 of one CRS unit squared)."""
    return [Place(geometry, "building", float(score), float(certainty(float(score), threshold)),
                  geometry.area * m2_per_unit) for geometry, score in zip(geometries, scores) if score is not None]


def rank(places: list[Place], threshold: float, limit: int = LIMIT) -> list[Place]:
    """The places nearer the threshold than SURE, closest first (larger first where equal), with reasons."""
    listed = sorted((p for p in places if p.certainty < SURE), key=lambda p: (round(p.certainty, 6), -p.area_m2))
    for place in listed[:limit]:
        place.reason = _reason(place, threshold)
    return listed[:limit]


def _reason(place: Place, threshold: float) -> str:
    numbers = f"probability {place.probability:.2f}, threshold {threshold:.2f}"
    if place.kind == "building":
        return f"building with a low score ({numbers}): a false building, or a wrong outline?"
    if place.covered < 0.5:
        return f"unsure area outside the buildings ({numbers}): a missed building?"
    return f"unsure part of a building ({numbers}): check its outline, or whether it is one"


def review_places(geometries: Sequence[BaseGeometry], scores: Sequence[float | None], probabilities: ProbabilityMap,
                  threshold: float, limit: int = LIMIT) -> list[Place]:
    """The ranked places of a run: its buildings (in the probability raster's CRS) and its unsure areas."""
    unit_area = abs(probabilities.transform.determinant)
    places = building_places(geometries, scores, threshold, probabilities.pixel_area_m2 / unit_area)
    return rank(places + unsure_areas(probabilities, threshold, geometries), threshold, limit)


def write_review(buildings: str | os.PathLike[str], probabilities: str | os.PathLike[str],
                 output: str | os.PathLike[str], threshold: float, limit: int = LIMIT) -> int:
    """Write the review layer (GeoPackage layer ``review``: rank, reason, kind, probability, area_m2) of the
    buildings file and probability raster of one run; returns how many places it lists."""
    grid = read_probabilities(probabilities)
    layer = read_polygons(str(buildings), grid.crs_wkt)
    return write_review_of(layer.geometries, layer.scores, grid, output, threshold, limit)


def write_review_of(geometries: Sequence[BaseGeometry], scores: Sequence[float | None], grid: ProbabilityMap,
                    output: str | os.PathLike[str], threshold: float, limit: int = LIMIT) -> int:
    """Write the review layer of buildings already in ``grid``'s CRS (e.g. a QGIS layer's); returns how many
    places it lists. The file appears whole or not at all."""
    path = check_output_path(output, (".gpkg",))
    places = review_places(geometries, scores, grid, threshold, limit)
    features = [(place.geometry, {"rank": number, "reason": place.reason, "kind": place.kind,
                                  "probability": round(place.probability, 3), "area_m2": round(place.area_m2, 1)})
                for number, place in enumerate(places, 1)]
    partial = path.with_name(f".{path.stem}.{os.getpid()}.partial.gpkg")
    try:
        write_polygons(str(partial), {LAYER: features}, grid.crs_wkt)
        os.replace(partial, path)
    except (OSError, RuntimeError) as exc:  # RuntimeError: GDAL's
        raise FootprintError(f"Output {path}: cannot write the review layer ({exc}).") from None
    finally:
        partial.unlink(missing_ok=True)
    return len(places)


@contextmanager
def review_probabilities(review: str | None, probabilities: str | None, output: str | os.PathLike[str],
                         conflict: str | None = None) -> Iterator[str | None]:
    """The probability raster a run writes: ``probabilities`` as given, or, when only the review layer
    ``review`` needs one, a temporary one that lasts while the block runs. Checks ``review`` first;
    ``conflict`` names an option of the run that rules the review out (--resume, --cluster)."""
    if review:
        check_output_path(review, (".gpkg",))
        if Path(output).suffix.lower() == CSV_SUFFIX:
            raise FootprintError("The review layer needs buildings in a vector file; write .gpkg, not .csv.")
        if Path(review).resolve() == Path(output).resolve():
            raise FootprintError("Write the review layer to another file than the buildings.")
        if conflict:
            raise FootprintError(f"The review layer cannot be written with {conflict}; run without it, or without "
                                 "--review.")
    if probabilities or not review:
        yield probabilities
        return
    with tempfile.TemporaryDirectory(prefix="footprint-review-") as folder:
        yield str(Path(folder) / "probability.tif")
