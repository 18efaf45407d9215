"""Where to extract: a rectangle and/or a polygon, in the raster's CRS."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shapely import prepared
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from .buildings import Building
from .errors import FootprintError


@dataclass
class Area:
    """Where to extract, in the raster's CRS: a rectangle, and/or a polygon that keeps the
    buildings whose centre lies inside it."""

    extent: tuple[float, float, float, float] | None = None  # xmin, ymin, xmax, ymax
    polygon: BaseGeometry | None = None

    def bounds(self) -> tuple[float, float, float, float] | None:
        boxes = [b for b in (self.extent, self.polygon.bounds if self.polygon is not None else None) if b]
        if not boxes:
            return None
        if len(boxes) == 1:
            return tuple(boxes[0])
        both = box(*boxes[0]).intersection(box(*boxes[1]))
        if both.is_empty:
            raise FootprintError("The chosen extent and polygon do not overlap; pick an area inside both.")
        return both.bounds

    def keeper(self) -> Callable[[list[Building]], list[Building]]:
        """Filter of buildings by the polygon (all pass without one)."""
        if self.polygon is None:
            return lambda buildings: buildings
        inside = prepared.prep(self.polygon)
        return lambda buildings: [b for b in buildings if inside.contains(b.geometry.centroid)]
