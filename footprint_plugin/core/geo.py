"""Ground resolution and the model grid a raster is resampled onto."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.transform import Affine
from rasterio.warp import transform as warp_transform

from .errors import FootprintError

WGS84_A = 6_378_137.0
WGS84_E2 = 0.006_694_379_990_14
RESAMPLE_TOLERANCE = 0.15


def _local_distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Distance between two nearby points on the WGS84 ellipsoid (exact enough within a pixel)."""
    phi = math.radians((lat1 + lat2) / 2)
    w = 1 - WGS84_E2 * math.sin(phi) ** 2
    meridional = WGS84_A * (1 - WGS84_E2) / w**1.5
    prime_vertical = WGS84_A / math.sqrt(w)
    dx = prime_vertical * math.cos(phi) * math.radians(lon2 - lon1)
    dy = meridional * math.radians(lat2 - lat1)
    return math.hypot(dx, dy)


def parse_crs(crs_wkt: str) -> CRS:
    """A rasterio CRS from WKT or an authority string, with a clear error."""
    if not crs_wkt:
        raise FootprintError("The raster has no coordinate reference system; assign one (e.g. in QGIS: Layer > Set CRS).")
    try:
        return CRS.from_user_input(crs_wkt)
    except CRSError as exc:
        raise FootprintError(f"The raster's coordinate reference system is not understood: {exc}") from None


def ground_resolution_m(crs_wkt: str, transform: Affine, width: int, height: int) -> tuple[float, float]:
    """Metres on the ground covered by one pixel (x, y), measured at the raster's centre.

    Works for any CRS: the pixel's edges are projected to longitude/latitude and
    measured on the WGS84 ellipsoid, so degrees (EPSG:4326) and Web-Mercator units
    (EPSG:3857, which overstate ground distance by 1/cos(latitude)) both give metres.
    """
    crs = parse_crs(crs_wkt)
    col, row = width / 2.0, height / 2.0
    points = [transform * (col, row), transform * (col + 1, row), transform * (col, row + 1)]
    xs, ys = zip(*points)
    if crs.is_geographic and crs.to_epsg() == 4326:
        lons, lats = list(xs), list(ys)
    else:
        try:
            lons, lats = warp_transform(crs, CRS.from_epsg(4326), list(xs), list(ys))
        except Exception as exc:  # PROJ raises several types
            raise FootprintError(f"Cannot measure the raster's ground resolution in its CRS: {exc}") from None
    if not all(np.isfinite(lons)) or not all(np.isfinite(lats)):
        raise FootprintError("The raster's georeferencing gives no valid position on the Earth; check its CRS.")
    res_x = _local_distance_m(lons[0], lats[0], lons[1], lats[1])
    res_y = _local_distance_m(lons[0], lats[0], lons[2], lats[2])
    if res_x <= 0 or res_y <= 0:
        raise FootprintError("The raster's pixel size is zero; check its georeferencing.")
    return res_x, res_y


@dataclass(frozen=True)
class ModelGrid:
    """The raster resampled to the model's ground resolution (same CRS and extent)."""

    width: int
    height: int
    transform: Affine
    source_width: int
    source_height: int
    ground_res_m: tuple[float, float]  # of one grid pixel
    source_ground_res_m: tuple[float, float]

    @property
    def resampled(self) -> bool:
        return (self.width, self.height) != (self.source_width, self.source_height)

    @property
    def pixel_area_m2(self) -> float:
        return self.ground_res_m[0] * self.ground_res_m[1]


def model_grid(
    crs_wkt: str,
    transform: Affine,
    width: int,
    height: int,
    model_res_m: float,
    warn=None,
    resolution_range_m: tuple[float, float] | None = None,
) -> ModelGrid:
    """The grid inference runs on: the raster itself, or resampled when its
    ground resolution differs from the model's by more than 15%."""
    res_x, res_y = ground_resolution_m(crs_wkt, transform, width, height)
    mean_res = math.sqrt(res_x * res_y)
    if resolution_range_m and warn and not resolution_range_m[0] <= mean_res <= resolution_range_m[1]:
        warn(
            f"The raster's ground resolution ({mean_res:.2f} m) is outside the range this model was "
            f"made for ({resolution_range_m[0]:g}-{resolution_range_m[1]:g} m); expect poor results."
        )
    if abs(mean_res / model_res_m - 1.0) <= RESAMPLE_TOLERANCE:
        return ModelGrid(width, height, transform, width, height, (res_x, res_y), (res_x, res_y))
    grid_w = max(1, round(width * res_x / model_res_m))
    grid_h = max(1, round(height * res_y / model_res_m))
    sx, sy = width / grid_w, height / grid_h
    grid_transform = transform * Affine.scale(sx, sy)
    return ModelGrid(grid_w, grid_h, grid_transform, width, height, (res_x * sx, res_y * sy), (res_x, res_y))
