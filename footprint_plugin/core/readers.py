"""Window readers: pixel window in, array and validity mask out.

The engine reads rasters only through :class:`WindowReader`, so the same
inference code runs on a file opened with rasterio (here) or on any layer QGIS
shows, read through its data provider (in the plugin).
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.transform import Affine
from rasterio.windows import Window

from .errors import FootprintError

# Bound GDAL's block cache (default: 5% of RAM) unless the user chose a size; QGIS sets its own.
os.environ.setdefault("GDAL_CACHEMAX", "64")

SUPPORTED_DTYPES = ("uint8", "uint16", "int16")
# WorldView-2/3 8-band order (SpaceNet MUL-PanSharpen): coastal, blue, green, yellow, red, red edge, NIR1, NIR2.
WORLDVIEW_8BAND_RGB = [5, 3, 2]


class WindowReader(ABC):
    """A georeferenced raster that can be read window by window.

    Attributes describe the source raster: ``width``/``height`` in pixels,
    ``transform`` (pixel -> CRS), ``crs_wkt``, ``band_count``, ``dtype`` (one of
    uint8/uint16/int16), ``bit_depth`` (e.g. 11 for SpaceNet, None if unknown),
    ``color_interpretations`` (lower-case names such as red, green, blue, gray,
    alpha, undefined, one per band) and ``name``.
    """

    name: str
    width: int
    height: int
    transform: Affine
    crs_wkt: str
    band_count: int
    dtype: str
    bit_depth: int | None = None
    color_interpretations: list[str]
    concurrent_reads: bool = False  # whether several threads may read at once

    @abstractmethod
    def read(
        self,
        window: tuple[float, float, float, float],
        out_shape: tuple[int, int],
        bands: list[int],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Read ``window`` = (col_off, row_off, width, height) in source pixels
        (may be fractional), resampled to ``out_shape`` = (rows, cols).

        Returns ``(data, valid)``: data of shape ``(len(bands), rows, cols)`` in
        the raster's dtype for the 1-based band indexes ``bands``, and a boolean
        mask that is False where the raster has nodata, zero alpha or no pixels.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the raster."""

    def __enter__(self) -> WindowReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_error(name: str, window: tuple[float, float, float, float], exc: BaseException) -> FootprintError:
    """A read failure (I/O error, corrupt block) as one line naming the file and the pixel window."""
    col, row, width, height = window
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return FootprintError(f"Input raster {name}: cannot read the pixels at column {col:.0f}, row {row:.0f} "
                          f"({width:.0f} x {height:.0f} px): {detail}")


def check_dtype(reader: WindowReader) -> None:
    if reader.dtype not in SUPPORTED_DTYPES:
        raise FootprintError(
            f"{reader.name}: pixel type {reader.dtype} is not supported; the model reads 8-bit or "
            "16-bit imagery (convert with e.g. `gdal_translate -ot Byte -scale IN OUT`)."
        )


def resolve_band_mapping(reader: WindowReader, model_bands: list[str], explicit: list[int] | None = None) -> list[int]:
    """1-based source band indexes feeding the model's inputs, in the model's order.

    Without ``explicit`` the mapping follows the bands' colour interpretation;
    single-band (grey) rasters feed every input; 8-band WorldView rasters give
    red, green, blue from bands 5, 3, 2 (SpaceNet MUL-PanSharpen).
    """
    count = reader.band_count
    if explicit:
        if len(explicit) != len(model_bands):
            raise FootprintError(
                f"Band mapping {explicit} has {len(explicit)} bands; the model needs {len(model_bands)} "
                f"({', '.join(model_bands)})."
            )
        bad = [b for b in explicit if not 1 <= b <= count]
        if bad:
            raise FootprintError(f"Band mapping asks for band(s) {bad}, but {reader.name} has {count} band(s).")
        return list(explicit)
    interps = reader.color_interpretations
    if all(band in interps for band in model_bands):
        return [interps.index(band) + 1 for band in model_bands]
    data_bands = [i + 1 for i, ci in enumerate(interps) if ci != "alpha"]
    rgb_model = model_bands == ["red", "green", "blue"]
    if rgb_model and len(data_bands) == 1:
        return data_bands * 3
    if rgb_model and len(data_bands) == 8:
        return list(WORLDVIEW_8BAND_RGB)
    if rgb_model and len(data_bands) in (3, 4):
        return data_bands[:3]
    if not rgb_model and len(data_bands) == len(model_bands):
        return data_bands
    raise FootprintError(
        f"{reader.name} has {count} band(s) ({', '.join(interps)}), but these weights need "
        f"{len(model_bands)} ({', '.join(model_bands)}); choose a band mapping or weights made for this imagery."
    )


_INTERP_NAMES = {
    ColorInterp.red: "red",
    ColorInterp.green: "green",
    ColorInterp.blue: "blue",
    ColorInterp.gray: "gray",
    ColorInterp.alpha: "alpha",
}


class RasterioReader(WindowReader):
    """Reads any raster GDAL can open (GeoTIFF, VRT, ...) with rasterio.

    Safe to use from several threads: each thread gets its own dataset handle.
    """

    concurrent_reads = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self.name = Path(self.path).name
        if not Path(self.path).exists() and "://" not in self.path and not self.path.startswith("/vsi"):
            raise FootprintError(f"Input raster {self.path}: file not found.")
        self._local = threading.local()
        self._handles: list[rasterio.DatasetReader] = []
        self._lock = threading.Lock()
        dataset = self._dataset()
        if dataset.crs is None:
            raise FootprintError(
                f"Input raster {self.name} has no coordinate reference system; assign one first "
                "(gdal_edit.py -a_srs EPSG:xxxx, or Layer > Set CRS in QGIS)."
            )
        if dataset.transform == Affine.identity():
            raise FootprintError(f"Input raster {self.name} is not georeferenced (no geotransform).")
        self.width, self.height = dataset.width, dataset.height
        self.transform = dataset.transform
        self.crs_wkt = dataset.crs.to_wkt()
        self.band_count = dataset.count
        self.dtype = dataset.dtypes[0]
        nbits = dataset.tags(1, ns="IMAGE_STRUCTURE").get("NBITS")
        self.bit_depth = int(nbits) if nbits and nbits.isdigit() else None
        self.color_interpretations = [_INTERP_NAMES.get(ci, "undefined") for ci in dataset.colorinterp]
        check_dtype(self)

    def _dataset(self) -> rasterio.DatasetReader:
        dataset = getattr(self._local, "dataset", None)
        if dataset is None:
            try:
                dataset = rasterio.open(self.path)
            except RasterioIOError as exc:
                raise FootprintError(f"Input raster {self.path} cannot be opened as a raster ({exc}).") from None
            self._local.dataset = dataset
            with self._lock:
                self._handles.append(dataset)
        return dataset

    def read(self, window, out_shape, bands):
        dataset = self._dataset()
        win = Window(*window)
        try:
            data = dataset.read(bands, window=win, out_shape=(len(bands), *out_shape), resampling=Resampling.bilinear)
            # GDAL's mask band: nodata, alpha band or internal mask, per dataset or per band. With
            # per-band nodata a pixel is missing only when every band is (a dark pixel may have one 0).
            masks = dataset.read_masks(bands, window=win, out_shape=(len(bands), *out_shape),
                                       resampling=Resampling.nearest)
        except (RasterioError, OSError) as exc:
            raise read_error(self.path, window, exc) from None
        return data, np.any(masks > 0, axis=0)

    def close(self) -> None:
        with self._lock:
            for dataset in self._handles:
                dataset.close()
            self._handles.clear()
        self._local = threading.local()


class SubWindowReader(WindowReader):
    """A rectangular part of another reader, addressed as a raster of its own."""

    def __init__(self, reader: WindowReader, col_off: int, row_off: int, width: int, height: int) -> None:
        self.inner = reader
        self.col_off, self.row_off = col_off, row_off
        self.width, self.height = width, height
        self.transform = reader.transform * Affine.translation(col_off, row_off)
        self.name = reader.name
        self.crs_wkt = reader.crs_wkt
        self.band_count = reader.band_count
        self.dtype = reader.dtype
        self.bit_depth = reader.bit_depth
        self.color_interpretations = reader.color_interpretations
        self.concurrent_reads = reader.concurrent_reads

    def read(self, window, out_shape, bands):
        col, row, width, height = window
        return self.inner.read((col + self.col_off, row + self.row_off, width, height), out_shape, bands)


def clip_to_extent(reader: WindowReader, extent: tuple[float, float, float, float]) -> WindowReader:
    """The part of ``reader`` inside ``extent`` = (xmin, ymin, xmax, ymax) in the raster's CRS."""
    xmin, ymin, xmax, ymax = extent
    inverse = ~reader.transform
    cols, rows = zip(*(inverse * (x, y) for x in (xmin, xmax) for y in (ymin, ymax)))
    col0, col1 = max(0, int(np.floor(min(cols)))), min(reader.width, int(np.ceil(max(cols))))
    row0, row1 = max(0, int(np.floor(min(rows)))), min(reader.height, int(np.ceil(max(rows))))
    if col1 - col0 < 1 or row1 - row0 < 1:
        raise FootprintError(f"The chosen area does not overlap {reader.name}; pick an area inside the raster.")
    if (col0, row0, col1, row1) == (0, 0, reader.width, reader.height):
        return reader
    return SubWindowReader(reader, col0, row0, col1 - col0, row1 - row0)
