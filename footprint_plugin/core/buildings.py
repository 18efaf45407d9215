"""What the vectoriser makes (:class:`Building`) and how (:class:`VectorizeOptions`).

Light on purpose: the option table (:mod:`.parameters`) imports it at plugin start-up, before torch or
rasterio may be installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import FootprintError

if TYPE_CHECKING:
    from shapely.geometry import Polygon

# Outline modes of the extraction (docs/regularize.md): "orthogonal" is right angles; the last three are appended
# so that an index into this tuple (Processing's enum) keeps its meaning.
REGULARIZE_MODES = ("none", "simplify", "orthogonal", "diagonals", "any-angle", "circle")


@dataclass
class VectorizeOptions:
    """Post-processing settings; thresholds default to the model card's."""

    mask_threshold: float = 0.5  # P(interior) + P(border) above this is building
    seed_threshold: float = 0.5  # P(interior) above this seeds a building
    min_seed_px: int = 4
    min_area_m2: float = 5.0
    fill_holes_m2: float = 20.0  # holes smaller than this are filled
    regularize: str = "orthogonal"
    simplify_px: float = 0.75
    max_buffer_rows: int = 8192  # a building region taller than this is cut ...
    max_buffer_pixels: int = 16_000_000  # ... or than this many pixels of raster width (bounds memory)
    instances: str = "three_class"  # or "binary": ignore the border class, one building per region

    def validate(self) -> None:
        if self.regularize not in REGULARIZE_MODES:
            raise FootprintError(f"Regularisation {self.regularize!r} unknown; choose one of {', '.join(REGULARIZE_MODES)}.")
        if self.min_area_m2 < 0:
            raise FootprintError("Minimum area must not be negative.")
        if not 0 < self.mask_threshold < 1 or not 0 < self.seed_threshold < 1:
            raise FootprintError("Thresholds must lie between 0 and 1.")


class Building:
    """One footprint: polygon in the raster's CRS, ground area and mean building probability.

    Made from a shapely polygon or from its WKB (``Building.from_wkb``): the vectoriser hands WKB over from its
    worker processes, and writers pass it on as it is, so the shapely object is only made when asked for.
    """

    __slots__ = ("_centre", "_geometry", "_wkb", "area_m2", "score", "source")

    def __init__(self, geometry: Polygon | None, area_m2: float, score: float, wkb: bytes | None = None,
                 centre: tuple[float, float] | None = None, source: str = "") -> None:
        if geometry is None and wkb is None:
            raise ValueError("a building needs a geometry or its WKB")
        self._geometry, self._wkb, self._centre = geometry, wkb, centre
        self.area_m2, self.score = area_m2, score
        self.source = source  # the raster it was found in (the one holding its centre)

    @classmethod
    def from_wkb(cls, wkb: bytes, area_m2: float, score: float, centre: tuple[float, float] | None = None,
                 source: str = "") -> Building:
        return cls(None, area_m2, score, wkb, centre, source)

    @property
    def centre(self) -> tuple[float, float]:
        """The centre of the polygon's bounding box, in its CRS."""
        if self._centre is None:
            x0, y0, x1, y1 = self.geometry.bounds
            self._centre = ((x0 + x1) / 2, (y0 + y1) / 2)
        return self._centre

    @property
    def geometry(self) -> Polygon:
        if self._geometry is None:
            from shapely import wkb

            self._geometry = wkb.loads(self._wkb)
        return self._geometry

    @property
    def wkb(self) -> bytes:
        """The polygon as WKB (little-endian)."""
        if self._wkb is None:
            self._wkb = self._geometry.wkb
        return self._wkb

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Building):
            return NotImplemented
        return (self.wkb, self.area_m2, self.score) == (other.wkb, other.area_m2, other.score)

    def __repr__(self) -> str:
        return f"Building(area_m2={self.area_m2:.2f}, score={self.score:.3f})"

    def __reduce__(self):
        return Building.from_wkb, (self.wkb, self.area_m2, self.score, self._centre, self.source)

