"""Writing buildings to vector files, atomically: a failed run leaves no file behind.

GeoPackage (layer ``buildings``), GeoJSON, FlatGeobuf and Shapefile, chosen by the file's
extension, are written under a temporary name in the target folder and renamed into place
when the run succeeded. Write errors (disk full, permission) become one :class:`FootprintError`
line; clean-up after a failure never raises or prints.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

from osgeo import gdal, ogr, osr

from .buildings import Building
from .errors import FootprintError
from .output_paths import LAYER_NAME, OGR_DRIVERS, check_output_path


def _detail(exc: BaseException, folder: Path) -> str:
    """What went wrong, never empty: GDAL's message, else the OS error, else a full disk."""
    detail = " ".join(str(exc).split()) or gdal.GetLastErrorMsg().strip()
    if isinstance(exc, OSError):
        detail = exc.strerror or detail
    try:
        if shutil.disk_usage(folder).free < 1024 * 1024:
            detail = f"{detail}; the disk is full" if detail else "the disk is full"
    except OSError:
        pass
    return detail or type(exc).__name__


class _QuietGdal:
    """GDAL messages neither printed nor left to Python's "Exception ignored" report (closing a
    file runs in a destructor); the failures are kept in ``errors``, in order."""

    def __enter__(self) -> _QuietGdal:
        self.errors: list[str] = []
        self._hook = sys.unraisablehook
        sys.unraisablehook = lambda report: self.errors.append(str(report.exc_value))
        gdal.ErrorReset()
        gdal.PushErrorHandler(self._handle)
        return self

    def _handle(self, level: int, code: int, message: str) -> None:
        if level >= gdal.CE_Failure:
            self.errors.append(message)

    def __exit__(self, *exc: object) -> None:
        gdal.PopErrorHandler()
        sys.unraisablehook = self._hook


class VectorFileWriter:
    """Streams buildings into a new vector file; the file appears only on :meth:`commit`.

    Use as a context manager: leaving it without ``commit()`` (an error, a cancel) removes the
    partial file, so no half-written output is ever left behind.
    """

    def __init__(self, path: str | os.PathLike[str], crs_wkt: str, layer_name: str = LAYER_NAME) -> None:
        self.path = check_output_path(path, tuple(OGR_DRIVERS))
        driver_name = OGR_DRIVERS[self.path.suffix.lower()]
        # A folder of its own for the partial output: a Shapefile is several files, FlatGeobuf keeps a temp file.
        self.tmp_dir = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        self.tmp_path = self.tmp_dir / self.path.name
        self.count = 0
        self._dataset = self._layer = self._definition = None
        self._transaction = False
        ogr.UseExceptions()
        osr.UseExceptions()
        try:
            self.tmp_dir.mkdir()
            self._dataset = ogr.GetDriverByName(driver_name).CreateDataSource(str(self.tmp_path))
            self._create_layer(crs_wkt, self.path.stem if driver_name == "ESRI Shapefile" else layer_name)
        except (RuntimeError, OSError) as exc:
            self._discard()
            raise self._error(exc) from None

    def _create_layer(self, crs_wkt: str, layer_name: str) -> None:
        srs = osr.SpatialReference()
        srs.ImportFromWkt(crs_wkt)
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        options = ["GEOMETRY_NAME=geom", "FID=fid"] if self.path.suffix.lower() == ".gpkg" else []
        self._layer = self._dataset.CreateLayer(layer_name, srs, ogr.wkbPolygon, options=options)
        for name, width, precision in (("area_m2", 14, 2), ("score", 8, 4)):
            definition = ogr.FieldDefn(name, ogr.OFTReal)
            definition.SetWidth(width)  # a Shapefile's columns are this wide
            definition.SetPrecision(precision)
            self._layer.CreateField(definition)
        source = ogr.FieldDefn("source", ogr.OFTString)
        source.SetWidth(254)  # a Shapefile's longest text
        self._layer.CreateField(source)
        self._definition = self._layer.GetLayerDefn()
        if self._layer.TestCapability(ogr.OLCTransactions):
            self._layer.StartTransaction()
            self._transaction = True

    def _error(self, exc: BaseException) -> FootprintError:
        return FootprintError(f"Output {self.path}: cannot write the file ({_detail(exc, self.path.parent)}).")

    def add(self, buildings: Iterable[Building]) -> None:
        """Append buildings (inside the open transaction, where the format has one)."""
        try:
            with _QuietGdal() as quiet:  # GDAL's warnings (e.g. a Shapefile's on a full disk) are not printed
                feature = ogr.Feature(self._definition)  # one feature object, filled anew for each building
                create, set_field, set_geometry = self._layer.CreateFeature, feature.SetField, feature.SetGeometryDirectly
                for building in buildings:
                    feature.SetFID(ogr.NullFID)
                    set_geometry(ogr.CreateGeometryFromWkb(building.wkb))
                    set_field(0, round(float(building.area_m2), 2))
                    set_field(1, round(float(building.score), 4))
                    set_field(2, building.source)
                    if create(feature) != 0 or quiet.errors:
                        raise RuntimeError(quiet.errors[-1] if quiet.errors else "a building was not written")
                    self.count += 1
        except RuntimeError as exc:
            raise self._error(exc) from None

    def commit(self, metadata: dict[str, str] | None = None) -> int:
        """Finish the file and move it into place; returns the feature count."""
        try:
            if self._transaction:
                self._layer.CommitTransaction()
            for key, value in (metadata or {}).items():
                self._layer.SetMetadataItem(key, str(value))
            self._layer = self._definition = None
            self._close_checked()
            self._move_into_place()
        except (RuntimeError, OSError) as exc:
            raise self._error(exc) from None
        finally:
            self._discard()
        return self.count

    def _close_checked(self) -> None:
        """Close the file (the final flush); a failure there is raised here, not printed by GDAL."""
        with _QuietGdal() as quiet:
            self._dataset.FlushCache()
            self._dataset = None
        if quiet.errors:
            raise RuntimeError(quiet.errors[0])
        self._verify()

    def _verify(self) -> None:
        """Read the closed file back: some drivers (GeoJSON) do not report failed writes."""
        with _QuietGdal():
            dataset = ogr.Open(str(self.tmp_path))
            layer = dataset.GetLayer(0) if dataset is not None else None
            count = layer.GetFeatureCount() if layer is not None else -1
            layer = dataset = None
        if count != self.count:
            raise OSError(0, f"the written file holds {max(count, 0)} of {self.count} buildings")

    def _move_into_place(self) -> None:
        for part in sorted(self.tmp_dir.iterdir()):
            if part.name.startswith(self.path.stem + "."):
                os.replace(part, self.path.with_name(part.name))

    def finish(self, metadata: dict[str, str]) -> None:
        """Sink protocol: commit with the run's metadata."""
        self.commit(metadata)

    def abort(self) -> None:
        """Sink protocol: drop the partial file."""
        self._discard()

    def _discard(self) -> None:
        """Close and delete the partial output; never raises, never prints."""
        with _QuietGdal():
            self._layer = self._definition = None
            self._dataset = None
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def __enter__(self) -> VectorFileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._discard()  # after commit() there is nothing left to remove


class GeoPackageWriter(VectorFileWriter):
    """:class:`VectorFileWriter` for a GeoPackage only (``.gpkg``), layer ``buildings``."""

    def __init__(self, path: str | os.PathLike[str], crs_wkt: str, layer_name: str = LAYER_NAME) -> None:
        check_output_path(path, (".gpkg",))
        super().__init__(path, crs_wkt, layer_name)


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
