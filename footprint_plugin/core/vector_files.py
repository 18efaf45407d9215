"""Reading and writing polygon layers with OGR (any format GDAL knows); GDAL's Python bindings are imported only
when a file is read or written."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shapely import wkb
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry
from shapely.validation import make_valid

from .errors import FootprintError


@dataclass
class PolygonLayer:
    geometries: list[BaseGeometry] = field(default_factory=list)
    scores: list[float | None] = field(default_factory=list)
    crs_wkt: str | None = None
    invalid: int = 0  # invalid polygons repaired with make_valid
    layers_without_crs: int = 0  # taken to be in the target CRS already


def _polygonal(geometry: BaseGeometry) -> BaseGeometry | None:
    if geometry.geom_type in ("Polygon", "MultiPolygon"):
        return geometry if not geometry.is_empty and geometry.area > 0 else None
    parts = [g for g in getattr(geometry, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon") and g.area > 0]
    if not parts:
        return None
    from shapely.ops import unary_union

    return unary_union(parts)


def open_vector(source: str):
    """An OGR dataset (GDAL exceptions on), or one line saying why it cannot be opened."""
    from osgeo import ogr

    ogr.UseExceptions()
    try:
        dataset = ogr.Open(source)
    except RuntimeError as exc:
        raise FootprintError(f"{source}: cannot be opened as vector data ({' '.join(str(exc).split())}).") from None
    if dataset is None:
        raise FootprintError(f"{source}: cannot be opened as vector data.")
    return dataset


def read_polygons(path: str, target_crs_wkt: str | None = None, score_field: str = "score") -> PolygonLayer:
    """All polygons of all layers of ``path``, reprojected to ``target_crs_wkt`` when given.

    Invalid polygons are repaired (and counted); points and lines are skipped.
    """
    from osgeo import osr

    dataset = open_vector(path)
    target = None
    if target_crs_wkt:
        target = osr.SpatialReference()
        target.ImportFromWkt(target_crs_wkt)
        target.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    result = PolygonLayer()
    for layer in dataset:
        source = layer.GetSpatialRef()
        transform = None
        result.layers_without_crs += source is None
        if source is not None:
            source.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
            if result.crs_wkt is None:
                result.crs_wkt = source.ExportToWkt()
            if target is not None and not source.IsSame(target):
                transform = osr.CoordinateTransformation(source, target)
        has_score = layer.GetLayerDefn().GetFieldIndex(score_field) >= 0
        for feature in layer:
            geometry = feature.GetGeometryRef()
            if geometry is None or geometry.IsEmpty():
                continue
            geometry = geometry.Clone()
            if transform is not None:
                geometry.Transform(transform)
            polygon = wkb.loads(bytes(geometry.ExportToWkb()))
            if not polygon.is_valid:
                result.invalid += 1
                polygon = make_valid(polygon)
            polygon = _polygonal(polygon)
            if polygon is None:
                continue
            result.geometries.append(polygon)
            result.scores.append(feature.GetField(score_field) if has_score else None)
    if target_crs_wkt:
        result.crs_wkt = target_crs_wkt
    return result


def polygons_4326(path: str, what: str | None = None, allow_empty: bool = False) -> tuple[list[dict[str, Any]], int]:
    """A layer's polygons as GeoJSON dicts in EPSG:4326, and how many were invalid (repaired).

    With ``what`` (e.g. "buildings": a layer the user chose), a layer without a CRS, which cannot be placed, and
    a layer without polygons (unless ``allow_empty``) are refused with a line that says so; otherwise such a
    layer is taken to be in EPSG:4326 already.
    """
    from rasterio.crs import CRS

    layer = read_polygons(path, CRS.from_epsg(4326).to_wkt())
    if what and layer.layers_without_crs:
        raise FootprintError(f"The {what} layer {path} has no CRS, so it cannot be matched to the raster; "
                             "set its CRS (in QGIS: Layer Properties > Source) and save it again.")
    if what and not layer.geometries and not allow_empty:
        raise FootprintError(f"The {what} layer {path} holds no polygons.")
    return [mapping(g) for g in layer.geometries], layer.invalid


def write_polygons(path: str, layers: dict[str, list[tuple[BaseGeometry, dict[str, object]]]],
                   crs_wkt: str | None) -> None:
    """Write several named polygon layers (geometry, attributes) into one new GeoPackage."""
    from osgeo import ogr, osr

    ogr.UseExceptions()
    driver = ogr.GetDriverByName("GPKG")
    dataset = driver.CreateDataSource(path)
    srs = None
    if crs_wkt:
        srs = osr.SpatialReference()
        srs.ImportFromWkt(crs_wkt)
    for name, features in layers.items():
        layer = dataset.CreateLayer(name, srs, ogr.wkbUnknown)
        keys = sorted({k for _, attrs in features for k in attrs})
        for key in keys:
            sample = next(attrs[key] for _, attrs in features if key in attrs)
            kind = ogr.OFTReal if isinstance(sample, float) else ogr.OFTInteger if isinstance(sample, int) else ogr.OFTString
            layer.CreateField(ogr.FieldDefn(key, kind))
        layer.StartTransaction()
        for geometry, attrs in features:
            feature = ogr.Feature(layer.GetLayerDefn())
            feature.SetGeometry(ogr.CreateGeometryFromWkb(geometry.wkb))
            for key, value in attrs.items():
                feature.SetField(key, value)
            layer.CreateFeature(feature)
        layer.CommitTransaction()
    dataset = None
