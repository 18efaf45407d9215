"""Many rasters as one input: found from folders, globs, lists or paths, grouped by CRS, mosaicked per group.

Rasters that share a CRS are read as one mosaic (a VRT written here, with a mask band that is valid only where a
raster has valid pixels), so buildings that cross tile edges come out whole and once. Groups of other CRSs run
one after another into the same output, reprojected to the output CRS. Every building's ``source`` is the raster
holding its centre (the last one listed, where rasters overlap: the one whose pixels the mosaic shows).
"""

from __future__ import annotations

import glob
import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.warp import transform as transform_points

from .buildings import Building
from .errors import FootprintError
from .readers import RasterioReader

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img", ".png", ".jpg", ".jpeg", ".ecw", ".sid")
LIST_SUFFIXES = (".txt", ".lst", ".csv")


@dataclass(frozen=True)
class RasterInfo:
    """One input raster: where it is, its CRS, pixel grid and bands."""

    path: str
    crs: CRS
    transform: tuple[float, ...]  # affine a, b, c, d, e, f
    width: int
    height: int
    count: int
    dtype: str

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in its CRS (of its pixel corners)."""
        a, b, c, d, e, f = self.transform
        xs = [c, c + a * self.width, c + b * self.height, c + a * self.width + b * self.height]
        ys = [f, f + d * self.width, f + e * self.height, f + d * self.width + e * self.height]
        return min(xs), min(ys), max(xs), max(ys)


@dataclass
class RasterGroup:
    """Rasters in one CRS, read as one: ``path`` is the raster itself when alone, else their mosaic VRT."""

    index: int
    rasters: list[RasterInfo]
    path: str

    @property
    def crs(self) -> CRS:
        return self.rasters[0].crs


def find_rasters(specs: Sequence[str]) -> list[Path]:
    """The rasters of ``specs``: files, folders (their rasters, sorted, not recursing), globs (sorted) and text
    files listing one raster per line (relative to the list's folder; ``#`` starts a comment)."""
    found: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if any(char in spec for char in "*?[") and not path.exists():
            matches = sorted(Path(match) for match in glob.glob(spec, recursive=True))
            if not matches:
                raise FootprintError(f"Input {spec}: no file matches this pattern.")
            found += [match for match in matches if match.is_file()]
        elif path.is_dir():
            rasters = sorted(child for child in path.iterdir() if child.suffix.lower() in RASTER_SUFFIXES)
            if not rasters:
                raise FootprintError(f"Input folder {spec} holds no raster ({', '.join(RASTER_SUFFIXES)}).")
            found += rasters
        elif path.suffix.lower() in LIST_SUFFIXES and path.is_file():
            found += _listed(path)
        elif path.is_file():
            found.append(path)
        else:
            raise FootprintError(f"Input raster {spec}: file not found.")
    unique = list(dict.fromkeys(path.resolve() for path in found))
    if not unique:
        raise FootprintError("No input rasters.")
    return unique


def _listed(path: Path) -> list[Path]:
    lines = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    listed = [Path(line) if Path(line).is_absolute() else path.parent / line for line in lines if line]
    missing = [str(item) for item in listed if not item.is_file()]
    if missing:
        raise FootprintError(f"Input list {path}: {len(missing)} listed file(s) not found, e.g. {missing[0]}.")
    if not listed:
        raise FootprintError(f"Input list {path} lists no raster.")
    return listed


def describe(path: Path) -> RasterInfo:
    """A raster's CRS, grid and bands, checked as every input is (:class:`.readers.RasterioReader`)."""
    with RasterioReader(path) as reader:
        return RasterInfo(str(path), CRS.from_wkt(reader.crs_wkt), tuple(reader.transform)[:6], reader.width,
                          reader.height, reader.band_count, reader.dtype)


def group_rasters(rasters: list[RasterInfo], folder: Path) -> list[RasterGroup]:
    """Rasters grouped by CRS (in order of first appearance), each group a mosaic VRT in ``folder`` (when it has
    more than one raster)."""
    groups: list[list[RasterInfo]] = []
    for raster in rasters:
        for group in groups:
            if group[0].crs == raster.crs:
                group.append(raster)
                break
        else:
            groups.append([raster])
    result = []
    for index, group in enumerate(groups):
        path = group[0].path if len(group) == 1 else str(write_mosaic_vrt(group, folder / f"mosaic-{index}.vrt"))
        result.append(RasterGroup(index, group, path))
    return result


def write_mosaic_vrt(rasters: list[RasterInfo], path: Path) -> Path:
    """One VRT over rasters of one CRS at the finest of their resolutions; where they overlap the last one listed
    shows. Its mask band is valid only where a raster has valid pixels (gaps between rasters are not)."""
    first = rasters[0]
    mixed = {(raster.count, raster.dtype) for raster in rasters}
    if len(mixed) > 1:
        other = next(raster for raster in rasters if (raster.count, raster.dtype) != (first.count, first.dtype))
        raise FootprintError(f"Rasters in one CRS must share bands and data type to be read as one: {first.name} has "
                             f"{first.count} band(s) of {first.dtype}, {other.name} {other.count} of {other.dtype}.")
    if any(raster.transform[1] or raster.transform[3] for raster in rasters):
        raise FootprintError("Rotated rasters cannot be mosaicked; warp them to a north-up grid first (gdalwarp).")
    resolution = min(min(abs(raster.transform[0]), abs(raster.transform[4])) for raster in rasters)
    boxes = [raster.bounds for raster in rasters]
    left, top = min(box[0] for box in boxes), max(box[3] for box in boxes)
    width = math.ceil(round((max(box[2] for box in boxes) - left) / resolution, 6))
    height = math.ceil(round((top - min(box[1] for box in boxes)) / resolution, 6))
    with rasterio.open(first.path) as dataset:
        interps = [interp.name.capitalize() for interp in dataset.colorinterp]
        data_type = _GDAL_TYPES.get(first.dtype, "Byte")
    bands = []
    for band in range(1, first.count + 1):
        sources = "".join(_source(raster, str(band), box, left, top, resolution) for raster, box in zip(rasters, boxes))
        bands.append(f'<VRTRasterBand dataType="{data_type}" band="{band}"><ColorInterp>{interps[band - 1]}'
                     f"</ColorInterp>{sources}</VRTRasterBand>")
    masks = "".join(_source(raster, "mask,1", box, left, top, resolution) for raster, box in zip(rasters, boxes))
    geo = ", ".join(repr(value) for value in (left, resolution, 0.0, top, 0.0, -resolution))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><SRS>{escape(first.crs.to_wkt())}</SRS>'
                    f"<GeoTransform>{geo}</GeoTransform>{''.join(bands)}"
                    f'<MaskBand><VRTRasterBand dataType="Byte">{masks}</VRTRasterBand></MaskBand></VRTDataset>',
                    encoding="utf-8")
    return path


_GDAL_TYPES = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32", "int32": "Int32",
               "float32": "Float32", "float64": "Float64"}


def _source(raster: RasterInfo, band: str, box: tuple[float, float, float, float], left: float, top: float,
            resolution: float) -> str:
    x, y = (box[0] - left) / resolution, (top - box[3]) / resolution
    width, height = (box[2] - box[0]) / resolution, (box[3] - box[1]) / resolution
    return (f'<SimpleSource resampling="bilinear"><SourceFilename relativeToVRT="0">{escape(raster.path)}'
            f"</SourceFilename><SourceBand>{band}</SourceBand>"
            f'<SrcRect xOff="0" yOff="0" xSize="{raster.width}" ySize="{raster.height}"/>'
            f'<DstRect xOff="{x!r}" yOff="{y!r}" xSize="{width!r}" ySize="{height!r}"/></SimpleSource>')


@dataclass
class Inputs:
    """The rasters of a run, their groups by CRS, and the CRS the buildings are written in."""

    rasters: list[RasterInfo]
    groups: list[RasterGroup]
    crs: CRS

    def fingerprint(self) -> list[list]:
        """What identifies the inputs (paths, sizes, modification times), for a resumable run."""
        listed = []
        for raster in self.rasters:
            stat = os.stat(raster.path)
            listed.append([raster.path, stat.st_size, stat.st_mtime_ns])
        return listed


def open_inputs(specs: Sequence[str], folder: Path, crs: str | None = None) -> Inputs:
    """Find, describe and group the rasters of ``specs``; mosaics are written to ``folder``. The output CRS is
    ``crs`` (anything rasterio reads: ``EPSG:32637``, WKT) or the first raster's."""
    rasters = [describe(path) for path in find_rasters(specs)]
    groups = group_rasters(rasters, folder)
    if crs:
        try:
            output_crs = CRS.from_user_input(crs)
        except (RasterioError, ValueError) as exc:
            raise FootprintError(f"--crs {crs}: not a CRS ({exc}); give e.g. EPSG:32637.") from None
    else:
        output_crs = groups[0].crs
    return Inputs(rasters, groups, output_crs)


def mosaic_folder(output: str | os.PathLike[str]) -> Path:
    """Where a run over many rasters keeps its mosaic VRTs: a hidden folder beside the output."""
    path = Path(output)
    return path.with_name(f".{path.stem}.mosaics")


class SourceIndex:
    """Which raster holds a point: each group's rasters bucketed on a coarse grid of their own CRS."""

    def __init__(self, inputs: Inputs) -> None:
        self.inputs = inputs
        self.order = {raster.path: index for index, raster in enumerate(inputs.rasters)}
        self._buckets = [_Buckets(group.rasters) for group in inputs.groups]

    def deliver(self, group: RasterGroup):
        """The run's handling of a group's buildings: their source, the group's own buildings only (where
        rasters of several CRSs overlap, a building belongs to the group of the raster holding its centre), and
        reprojected to the output CRS."""
        reproject = group.crs != self.inputs.crs
        mine = {raster.path for raster in group.rasters}
        if len(self.inputs.rasters) == 1 and not reproject:
            name = group.rasters[0].name

            def only_raster(buildings: list[Building]) -> list[Building]:
                for building in buildings:
                    building.source = name
                return buildings

            return only_raster

        def deliver(buildings: list[Building]) -> list[Building]:
            if not buildings:
                return buildings
            centres = np.array([building.centre for building in buildings], np.float64)
            owners = self.owners(group, centres)
            kept = []
            for building, owner in zip(buildings, owners):
                if owner is None:  # in no raster (a gap, an edge): its own group's nearest raster
                    owner = self._buckets[group.index].nearest(*building.centre)
                elif owner.path not in mine:
                    continue
                building.source = owner.name
                kept.append(building)
            return reproject_buildings(kept, group.crs, self.inputs.crs) if reproject and kept else kept

        return deliver

    def owners(self, group: RasterGroup, centres: np.ndarray) -> list[RasterInfo | None]:
        """For points in ``group``'s CRS: the last listed raster of any group holding each, or None."""
        best: list[RasterInfo | None] = [None] * len(centres)
        for other, buckets in zip(self.inputs.groups, self._buckets):
            points = centres
            if other.crs != group.crs:
                xs, ys = transform_points(group.crs, other.crs, centres[:, 0].tolist(), centres[:, 1].tolist())
                points = np.column_stack([xs, ys])
            for index, (x, y) in enumerate(points):
                found = buckets.holder(x, y)
                if found is not None and (best[index] is None or self.order[found.path] > self.order[best[index].path]):
                    best[index] = found
        return best


class _Buckets:
    """Rasters of one CRS on a grid of cells about one raster wide, for point lookups."""

    def __init__(self, rasters: list[RasterInfo]) -> None:
        self.rasters = rasters
        self.boxes = np.array([raster.bounds for raster in rasters], np.float64)
        sizes = np.maximum(self.boxes[:, 2] - self.boxes[:, 0], self.boxes[:, 3] - self.boxes[:, 1])
        self.cell = float(np.median(sizes)) or 1.0
        self.cells: dict[tuple[int, int], list[int]] = {}
        for index, (left, bottom, right, top) in enumerate(self.boxes):
            for i in range(math.floor(left / self.cell), math.floor(right / self.cell) + 1):
                for j in range(math.floor(bottom / self.cell), math.floor(top / self.cell) + 1):
                    self.cells.setdefault((i, j), []).append(index)

    def holder(self, x: float, y: float) -> RasterInfo | None:
        """The last listed raster whose extent holds (x, y)."""
        if not (math.isfinite(x) and math.isfinite(y)):
            return None
        for index in reversed(self.cells.get((math.floor(x / self.cell), math.floor(y / self.cell)), [])):
            left, bottom, right, top = self.boxes[index]
            if left <= x < right and bottom < y <= top:
                return self.rasters[index]
        return None

    def nearest(self, x: float, y: float) -> RasterInfo:
        dx = np.maximum(np.maximum(self.boxes[:, 0] - x, x - self.boxes[:, 2]), 0)
        dy = np.maximum(np.maximum(self.boxes[:, 1] - y, y - self.boxes[:, 3]), 0)
        return self.rasters[int(np.argmin(dx * dx + dy * dy))]


def reproject_buildings(buildings: list[Building], source: CRS, target: CRS) -> list[Building]:
    """The buildings' polygons in another CRS (all vertices in one transformation); area and score unchanged."""
    from shapely.geometry import Polygon

    rings = [[building.geometry.exterior, *building.geometry.interiors] for building in buildings]
    coords = [np.asarray(ring.coords) for polygon in rings for ring in polygon]
    flat = np.concatenate(coords)
    xs, ys = transform_points(source, target, flat[:, 0].tolist(), flat[:, 1].tolist())
    moved = np.column_stack([xs, ys])
    result, at, ring = [], 0, 0
    for building, polygon in zip(buildings, rings):
        parts = []
        for _ in polygon:
            count = len(coords[ring])
            parts.append(moved[at : at + count])
            at, ring = at + count, ring + 1
        geometry = Polygon(parts[0], parts[1:])
        result.append(Building(geometry, building.area_m2, building.score, source=building.source))
    return result


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file (the weights, for a resumable run's fingerprint)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
