"""Writing buildings to a GeoPackage, atomically: a failed run leaves no file behind."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from osgeo import ogr, osr

from .errors import FootprintError
from .vectorize import Building

LAYER_NAME = "buildings"


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Fail early, before any work, when ``path`` cannot be written."""
    path = Path(path)
    if path.suffix.lower() != ".gpkg":
        raise FootprintError(f"Output {path}: the output must be a GeoPackage ending in .gpkg.")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FootprintError(f"Output {path}: folder {folder} does not exist.")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise FootprintError(f"Output {path}: no permission to write there; choose another folder.")
    if path.is_dir():
        raise FootprintError(f"Output {path} is a folder; give a file name ending in .gpkg.")
    return path


def write_geopackage(
    path: str | os.PathLike[str],
    buildings: Iterable[Building],
    crs_wkt: str,
    layer_name: str = LAYER_NAME,
    metadata: dict[str, str] | None = None,
) -> int:
    """Write polygons with ``area_m2`` and ``score`` to a new GeoPackage; returns the feature count.

    The file is written under a temporary name in the same folder and renamed
    into place at the end, so readers never see a half-written file.
    """
    path = check_output_path(path)
    ogr.UseExceptions()
    osr.UseExceptions()
    tmp_path = path.with_name(f".{path.stem}.{os.getpid()}.partial.gpkg")
    count = 0
    try:
        driver = ogr.GetDriverByName("GPKG")
        dataset = driver.CreateDataSource(str(tmp_path))
        srs = osr.SpatialReference()
        srs.ImportFromWkt(crs_wkt)
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        layer = dataset.CreateLayer(layer_name, srs, ogr.wkbPolygon, options=["GEOMETRY_NAME=geom", "FID=fid"])
        for name in ("area_m2", "score"):
            field = ogr.FieldDefn(name, ogr.OFTReal)
            layer.CreateField(field)
        definition = layer.GetLayerDefn()
        layer.StartTransaction()
        for building in buildings:
            feature = ogr.Feature(definition)
            feature.SetGeometry(ogr.CreateGeometryFromWkb(building.geometry.wkb))
            feature.SetField("area_m2", round(float(building.area_m2), 2))
            feature.SetField("score", round(float(building.score), 4))
            layer.CreateFeature(feature)
            count += 1
        layer.CommitTransaction()
        for key, value in (metadata or {}).items():
            layer.SetMetadataItem(key, str(value))
        layer = None
        dataset = None
        os.replace(tmp_path, path)
    except RuntimeError as exc:
        raise FootprintError(f"Output {path}: cannot write the GeoPackage ({exc}).") from None
    finally:
        for leftover in (tmp_path, Path(f"{tmp_path}-journal"), Path(f"{tmp_path}-wal"), Path(f"{tmp_path}-shm")):
            leftover.unlink(missing_ok=True)
    return count
