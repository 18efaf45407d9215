"""QGIS features' geometry as the engine takes it: WKB, curves as straight segments."""

from __future__ import annotations

from qgis.core import QgsFeature, QgsGeometry, QgsWkbTypes


def feature_wkb(feature: QgsFeature) -> bytes | None:
    """A feature's geometry as WKB, curves as straight segments; None without one."""
    if not feature.hasGeometry():
        return None
    geometry = feature.geometry()
    if QgsWkbTypes.isCurvedType(geometry.wkbType()):
        geometry = QgsGeometry(geometry)
        geometry.convertToStraightSegment()
    return bytes(geometry.asWkb())
