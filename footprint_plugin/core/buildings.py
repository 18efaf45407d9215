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

REGULARIZE_MODES = ("none", "simplify", "orthogonal")


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


@dataclass
class Building:
    """One footprint: polygon in the raster's CRS, ground area and mean building probability."""

    geometry: Polygon
    area_m2: float
    score: float

