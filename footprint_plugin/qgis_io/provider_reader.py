"""A WindowReader over a QGIS raster data provider: anything QGIS shows can be read.

GeoTIFF and VRT arrive band by band; XYZ and WMS tile layers arrive as one
ARGB32 band that is unpacked to red, green, blue with alpha as the validity
mask. Providers without a pixel grid of their own (web tiles) are read on a
grid whose pixels measure ``pixel_size_m`` on the ground.
"""

from __future__ import annotations

import math

import numpy as np
from qgis.core import Qgis, QgsRaster, QgsRasterDataProvider, QgsRasterInterface, QgsRasterLayer, QgsRectangle
from rasterio.transform import Affine

from ..core.errors import FootprintError
from ..core.geo import ground_resolution_m
from ..core.readers import WindowReader, check_dtype

_TYPES = Qgis.DataType
_DTYPES = {_TYPES.Byte: "uint8", _TYPES.UInt16: "uint16", _TYPES.Int16: "int16", _TYPES.UInt32: "uint32",
           _TYPES.Int32: "int32", _TYPES.Float32: "float32", _TYPES.Float64: "float64"}
_NUMPY = {"uint8": np.uint8, "uint16": np.uint16, "int16": np.int16, "uint32": np.uint32, "int32": np.int32,
          "float32": np.float32, "float64": np.float64}
_CI = QgsRaster.ColorInterpretation
_INTERPS = {_CI.RedBand: "red", _CI.GreenBand: "green", _CI.BlueBand: "blue", _CI.GrayIndex: "gray", _CI.AlphaBand: "alpha"}
_ARGB = (_TYPES.ARGB32, _TYPES.ARGB32_Premultiplied)


class QgisProviderReader(WindowReader):
    """Reads a raster layer through a clone of its data provider (safe to use in a QgsTask).

    Create it on the main thread; afterwards use it from one thread at a time.
    """

    def __init__(self, layer: QgsRasterLayer, extent: QgsRectangle | None = None, pixel_size_m: float = 0.3) -> None:
        if layer is None or not layer.isValid():
            raise FootprintError("Choose a valid raster layer.")
        provider = layer.dataProvider()
        if provider is None:
            raise FootprintError(f"{layer.name()}: the layer has no data provider.")
        self.provider: QgsRasterDataProvider = provider.clone()
        try:
            self._describe(layer, extent, pixel_size_m)
        except BaseException:
            self.close()  # no provider clone may outlive a failed start (it would crash QGIS at exit)
            raise

    def close(self) -> None:
        """Release the provider clone."""
        self.provider = None

    def _describe(self, layer: QgsRasterLayer, extent: QgsRectangle | None, pixel_size_m: float) -> None:
        try:  # let GDAL resample smoothly when the grid differs from the model's
            bilinear = QgsRasterDataProvider.ResamplingMethod.Bilinear
            self.provider.enableProviderResampling(True)
            self.provider.setZoomedInResamplingMethod(bilinear)
            self.provider.setZoomedOutResamplingMethod(bilinear)
        except AttributeError:  # providers or versions without provider resampling
            pass
        self.name = layer.name()
        crs = layer.crs()
        if not crs.isValid():
            raise FootprintError(f"{self.name} has no coordinate reference system; set one (Layer > Set CRS).")
        self.crs_wkt = crs.toWkt()
        full = self.provider.extent()
        qgis_type = self.provider.dataType(1)
        self._argb = qgis_type in _ARGB
        has_grid = bool(self.provider.capabilities() & QgsRasterInterface.Capability.Size) and self.provider.xSize() > 0
        if has_grid:
            px, py = full.width() / self.provider.xSize(), full.height() / self.provider.ySize()
        else:  # web tiles: pick pixels of pixel_size_m on the ground
            if extent is None:
                raise FootprintError(f"{self.name} is a web tile layer covering the world; choose an area "
                                     "(current map view or selected features) to extract.")
            probe = Affine(1.0, 0, extent.center().x(), 0, -1.0, extent.center().y())
            units_x, units_y = (1.0 / r for r in ground_resolution_m(self.crs_wkt, probe, 1, 1))
            px, py = pixel_size_m * units_x, pixel_size_m * units_y
        area = full if extent is None else full.intersect(extent) if has_grid else QgsRectangle(extent)
        if area.isEmpty() or area.width() <= 0 or area.height() <= 0:
            raise FootprintError(f"The chosen area does not overlap {self.name}; pick an area inside the raster.")
        if has_grid:  # snap the area to the provider's pixel grid
            col0 = math.floor((area.xMinimum() - full.xMinimum()) / px + 1e-6)
            col1 = math.ceil((area.xMaximum() - full.xMinimum()) / px - 1e-6)
            row0 = math.floor((full.yMaximum() - area.yMaximum()) / py + 1e-6)
            row1 = math.ceil((full.yMaximum() - area.yMinimum()) / py - 1e-6)
            x0, y0 = full.xMinimum() + col0 * px, full.yMaximum() - row0 * py
            self.width, self.height = max(1, col1 - col0), max(1, row1 - row0)
        else:
            x0, y0 = area.xMinimum(), area.yMaximum()
            self.width, self.height = max(1, round(area.width() / px)), max(1, round(area.height() / py))
        self.transform = Affine(px, 0, x0, 0, -py, y0)
        if self._argb:
            self.band_count, self.dtype = 4, "uint8"
            self.color_interpretations = ["red", "green", "blue", "alpha"]
        else:
            self.band_count = self.provider.bandCount()
            self.dtype = _DTYPES.get(qgis_type, f"QGIS type {int(qgis_type)}")
            self.color_interpretations = [_INTERPS.get(self.provider.colorInterpretation(b), "undefined")
                                          for b in range(1, self.band_count + 1)]
        self.bit_depth = None
        check_dtype(self)

    def _block(self, band: int, rect: QgsRectangle, cols: int, rows: int) -> np.ndarray:
        block = self.provider.block(band, rect, cols, rows)
        if block is None or not block.isValid():
            raise FootprintError(f"{self.name}: QGIS could not read the pixels of band {band} in "
                                 f"{rect.toString(2)} ({cols} x {rows} px).")
        dtype = np.uint32 if self._argb else _NUMPY[self.dtype]
        return np.frombuffer(bytes(block.data()), dtype=dtype).reshape(rows, cols)

    def read(self, window, out_shape, bands):
        col, row, width, height = window
        rows, cols = out_shape
        t = self.transform
        rect = QgsRectangle(t.c + col * t.a, t.f + (row + height) * t.e, t.c + (col + width) * t.a, t.f + row * t.e)
        if self._argb:
            argb = self._block(1, rect, cols, rows)
            channels = {1: (argb >> 16) & 0xFF, 2: (argb >> 8) & 0xFF, 3: argb & 0xFF, 4: (argb >> 24) & 0xFF}
            data = np.stack([channels[b] for b in bands]).astype(np.uint8)
            return data, channels[4] > 0
        data = np.stack([self._block(b, rect, cols, rows) for b in bands])
        valid = np.zeros((rows, cols), bool)
        for index, band in enumerate(bands):
            band_valid = np.ones((rows, cols), bool)
            if self.provider.sourceHasNoDataValue(band) and self.provider.useSourceNoDataValue(band):
                band_valid &= data[index] != self.provider.sourceNoDataValue(band)
            valid |= band_valid
        if "alpha" in self.color_interpretations:
            alpha = self._block(self.color_interpretations.index("alpha") + 1, rect, cols, rows)
            valid &= alpha > 0
        return data, valid
