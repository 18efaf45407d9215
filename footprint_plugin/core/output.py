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


class GeoPackageWriter:
    """Streams buildings into a new GeoPackage layer; the file appears only on :meth:`commit`.

    Use as a context manager: leaving it without ``commit()`` (an error, a cancel) removes the
    partial file, so no half-written output is ever left behind.
    """

    def __init__(self, path: str | os.PathLike[str], crs_wkt: str, layer_name: str = LAYER_NAME) -> None:
        self.path = check_output_path(path)
        self.tmp_path = self.path.with_name(f".{self.path.stem}.{os.getpid()}.partial.gpkg")
        self.count = 0
        ogr.UseExceptions()
        osr.UseExceptions()
        try:
            self._dataset = ogr.GetDriverByName("GPKG").CreateDataSource(str(self.tmp_path))
            srs = osr.SpatialReference()
            srs.ImportFromWkt(crs_wkt)
            srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
            self._layer = self._dataset.CreateLayer(layer_name, srs, ogr.wkbPolygon,
                                                    options=["GEOMETRY_NAME=geom", "FID=fid"])
            for name in ("area_m2", "score"):
                self._layer.CreateField(ogr.FieldDefn(name, ogr.OFTReal))
            self._definition = self._layer.GetLayerDefn()
            self._layer.StartTransaction()
        except RuntimeError as exc:
            self._cleanup()
            raise FootprintError(f"Output {self.path}: cannot write the GeoPackage ({exc}).") from None

    def add(self, buildings: Iterable[Building]) -> None:
        """Append buildings (inside the open transaction)."""
        for building in buildings:
            feature = ogr.Feature(self._definition)
            feature.SetGeometry(ogr.CreateGeometryFromWkb(building.geometry.wkb))
            feature.SetField("area_m2", round(float(building.area_m2), 2))
            feature.SetField("score", round(float(building.score), 4))
            self._layer.CreateFeature(feature)
            self.count += 1

    def commit(self, metadata: dict[str, str] | None = None) -> int:
        """Finish the file and move it into place; returns the feature count."""
        try:
            self._layer.CommitTransaction()
            for key, value in (metadata or {}).items():
                self._layer.SetMetadataItem(key, str(value))
            self._layer = self._definition = None
            self._dataset = None  # closes the file
            os.replace(self.tmp_path, self.path)
        except (RuntimeError, OSError) as exc:
            raise FootprintError(f"Output {self.path}: cannot write the GeoPackage ({exc}).") from None
        finally:
            self._cleanup()
        return self.count

    def _cleanup(self) -> None:
        self._layer = self._definition = None
        self._dataset = None
        for leftover in (self.tmp_path, *(Path(f"{self.tmp_path}-{s}") for s in ("journal", "wal", "shm"))):
            leftover.unlink(missing_ok=True)

    def __enter__(self) -> GeoPackageWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._cleanup()  # after commit() there is nothing left to remove


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
    with GeoPackageWriter(path, crs_wkt, layer_name) as writer:
        writer.add(buildings)
        return writer.commit(metadata)
