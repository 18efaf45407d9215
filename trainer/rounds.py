"""Rounds of corrections: each fine-tuning round's data, kept in its weights' card and trained on again.

A round is the rasters, the corrected buildings and the area where they are complete. The card of a
round's weights records every round so far (``training_data["rounds"]``: the rasters by path, the buildings
and the area as EPSG:4326 WKT, the counts, the area in m2 and the F1 before and after), so the next round,
started from those weights, trains on the earlier rounds' corrections too. Where a later round's area covers
an earlier round's building, the later round's buildings count there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rasterio.crs import CRS
from rasterio.warp import transform_geom
from shapely import wkt
from shapely.errors import ShapelyError
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from footprint_plugin.core.errors import FootprintError

WKT_DIGITS = 7  # decimals of a degree kept in the card: about 1 cm
OLD_VERSION = "fine-tuned by an earlier version, which kept no corrections"


@dataclass
class Round:
    """One round's corrections in EPSG:4326."""

    number: int
    rasters: list[str]
    buildings: list[BaseGeometry]  # those that touch the area
    area: list[BaseGeometry]
    record: dict[str, Any] = field(default_factory=dict)  # an earlier round: its entry in the card
    area_m2: float = 0.0  # the area on the round's rasters

    def region(self) -> BaseGeometry:
        return unary_union(self.area)

    def counted(self) -> int:
        """Buildings whose representative point lies inside the area."""
        region = self.region()
        return sum(region.contains(b.representative_point()) for b in self.buildings)


def new_round(number: int, rasters: list[str], buildings: list[BaseGeometry], area: list[BaseGeometry]) -> Round:
    """A round of ``rasters``, keeping the buildings that touch ``area``."""
    region = unary_union(area)
    return Round(number, list(rasters), [b for b in buildings if b.intersects(region)], list(area))


def earlier_rounds(training_data: dict[str, Any], warn: Callable[[str], None]) -> list[Round]:
    """The rounds a card records: none for a model that was not fine-tuned; one without corrections for weights
    fine-tuned before rounds were kept (with a warning)."""
    records = training_data.get("rounds")
    if records is None:
        if "finetune" not in training_data:
            return []
        warn(f"The base weights were {OLD_VERSION}; this round trains on its own buildings only.")
        records = [{"round": 1, "note": OLD_VERSION}]
    try:
        return [Round(int(r["round"]), [str(p) for p in r.get("raster_paths", [])], _geometries(r, "buildings_wkt"),
                      _geometries(r, "area_wkt"), dict(r)) for r in records]
    except (KeyError, TypeError, ValueError, AttributeError, ShapelyError) as exc:
        raise FootprintError(f"The base weights' card records earlier rounds that cannot be read ({exc}); "
                             "start from other weights.") from None


def _geometries(record: dict[str, Any], key: str) -> list[BaseGeometry]:
    return [wkt.loads(text) for text in record.get(key, [])]


def supersede(rounds: list[Round]) -> None:
    """Drop an earlier round's buildings whose representative point lies in a later round's area."""
    later: list[BaseGeometry] = []
    for round_ in reversed(rounds):
        if later:
            region = unary_union(later)
            round_.buildings = [b for b in round_.buildings if not region.contains(b.representative_point())]
        later.extend(round_.area)


def area_m2(geometry: BaseGeometry) -> float:
    """Ground area of an EPSG:4326 geometry, in an equal-area projection centred on it."""
    if geometry.is_empty:
        return 0.0
    centre = geometry.centroid
    laea = CRS.from_proj4(f"+proj=laea +lat_0={centre.y} +lon_0={centre.x} +datum=WGS84 +units=m")
    return shape(transform_geom(CRS.from_epsg(4326), laea, mapping(geometry))).area


def record(round_: Round, details: dict[str, Any]) -> dict[str, Any]:
    """A round's entry in the card: ``details`` (base, minutes, F1...) with its data."""
    text = lambda geometries: [wkt.dumps(g, rounding_precision=WKT_DIGITS, trim=True) for g in geometries]  # noqa: E731
    return {"round": round_.number, **details, "rasters": [Path(p).name for p in round_.rasters],
            "raster_paths": round_.rasters, "buildings": round_.counted(), "area_m2": round(round_.area_m2, 1),
            "buildings_wkt": text(round_.buildings), "area_wkt": text(round_.area)}
