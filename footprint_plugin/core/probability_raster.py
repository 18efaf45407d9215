"""The building-probability raster: a uint8 GeoTIFF (0-255 = P(building)), streamed in strips.

It lies on the model grid, which is the raster's own grid unless the raster was resampled to the
model's ground resolution (same extent and CRS either way). Written under a temporary name and
renamed when the run succeeded, like the vector outputs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.windows import Window

from .errors import FootprintError
from .geo import ModelGrid
from .output_paths import check_output_path

SUFFIXES = (".tif", ".tiff")


class ProbabilityRaster:
    """``start`` once the grid is known, ``write`` strips in any order, then ``finish`` or ``abort``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = check_output_path(path, SUFFIXES)
        self.tmp_path = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial.tif")
        self._dataset = None
        self.grid: ModelGrid | None = None

    def _error(self, exc: BaseException) -> FootprintError:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        return FootprintError(f"Output {self.path}: cannot write the probability raster ({detail}).")

    def start(self, grid: ModelGrid, crs_wkt: str) -> None:
        self.grid = grid
        profile = {"driver": "GTiff", "width": grid.width, "height": grid.height, "count": 1, "dtype": "uint8",
                   "crs": CRS.from_wkt(crs_wkt), "transform": grid.transform, "BIGTIFF": "IF_SAFER"}
        try:
            self._dataset = rasterio.open(self.tmp_path, "w", **profile)
            self._dataset.update_tags(1, meaning="P(building) x 255")
        except (RasterioError, OSError) as exc:
            self.abort()
            raise self._error(exc) from None

    def write(self, row: int, col: int, building: np.ndarray) -> None:
        """Building probabilities (rows, cols), uint8 0-255 (``ClassMaps.probability``), for grid pixels
        from (``row``, ``col``); parts outside the grid are dropped."""
        grid = self.grid
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + building.shape[0], grid.height), min(col + building.shape[1], grid.width)
        if r1 <= r0 or c1 <= c0:
            return
        values = np.ascontiguousarray(building[r0 - row : r1 - row, c0 - col : c1 - col], dtype=np.uint8)
        try:
            self._dataset.write(values, 1, window=Window(c0, r0, c1 - c0, r1 - r0))
        except (RasterioError, OSError) as exc:
            raise self._error(exc) from None

    def finish(self) -> None:
        try:
            self._dataset.close()
            os.replace(self.tmp_path, self.path)
        except (RasterioError, OSError) as exc:
            self.abort()
            raise self._error(exc) from None

    def abort(self) -> None:
        try:
            if self._dataset is not None:
                self._dataset.close()
        except (RasterioError, OSError):
            pass
        self._dataset = None
        for leftover in (self.tmp_path, Path(f"{self.tmp_path}.aux.xml")):
            leftover.unlink(missing_ok=True)
