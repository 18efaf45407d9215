"""A QGIS extent and polygon as the engine's :class:`.core.area.Area`."""

from __future__ import annotations

from qgis.core import QgsGeometry, QgsRectangle
from shapely import wkb

from ..core.area import Area


def area_from_qgis(extent: QgsRectangle | None = None, polygon: QgsGeometry | None = None) -> Area:
    """The rectangle and the polygon (both in the raster layer's CRS; either may be missing) as an Area."""
    return Area(
        extent=(extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()) if extent else None,
        polygon=wkb.loads(bytes(polygon.asWkb())) if polygon is not None and not polygon.isEmpty() else None,
    )
