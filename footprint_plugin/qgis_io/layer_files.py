"""QGIS layers as the files the trainer reads: the layer's own file where it holds exactly what the user
sees, otherwise the features (or only the selected ones) written to a temporary GeoPackage."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransformContext,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProject,
    QgsProviderRegistry,
    QgsRasterLayer,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from ..core.errors import FootprintError

try:  # Qt5 builds
    REAL, TEXT = QVariant.Double, QVariant.String
except AttributeError:  # Qt6 builds
    from qgis.PyQt.QtCore import QMetaType

    REAL, TEXT = QMetaType.Type.Double, QMetaType.Type.QString

SCORE_FIELD = "score"  # the confidence the scorer orders predictions by


def raster_file(layer) -> str:
    """The local file behind a raster layer; FootprintError when it is a web service or has no file."""
    if not isinstance(layer, QgsRasterLayer) or not layer.isValid():
        raise FootprintError("Choose a raster layer (a local GeoTIFF or VRT) as the input raster.")
    path = ""
    if layer.providerType() == "gdal":
        path = QgsProviderRegistry.instance().decodeUri("gdal", layer.source()).get("path") or ""
    if not path or not Path(path).is_file():
        raise FootprintError(f"The raster {layer.name()} is not a local file (provider {layer.providerType()}); "
                             "fine-tuning reads the raster's pixels from disk: save it as a GeoTIFF first "
                             "(Export > Save As...) and use that layer.")
    return path


def _is_polygon_layer(layer) -> bool:
    return (isinstance(layer, QgsVectorLayer) and layer.isValid()
            and layer.geometryType() == QgsWkbTypes.GeometryType.PolygonGeometry)


def own_file(layer: QgsVectorLayer) -> str | None:
    """The layer's file when reading that file gives exactly the layer's features: an OGR file with one layer,
    no filter and no unsaved edits. None otherwise."""
    if layer.providerType() != "ogr" or layer.isModified() or layer.subsetString():
        return None
    parts = QgsProviderRegistry.instance().decodeUri("ogr", layer.source())
    path = parts.get("path") or ""
    if not path or not Path(path).is_file() or parts.get("subset"):
        return None
    if _geometry_layers(path) != 1:
        return None  # e.g. a GeoPackage with several layers: the trainer would read all of them
    return path


def _geometry_layers(path: str) -> int:
    """How many layers with geometry the file holds (the provider lists only the one it opened)."""
    from osgeo import ogr

    try:
        dataset = ogr.Open(path)
    except RuntimeError:  # with ogr.UseExceptions(), which the trainer turns on
        dataset = None
    if dataset is None:
        return 0
    count = sum(1 for i in range(dataset.GetLayerCount()) if dataset.GetLayer(i).GetGeomType() != ogr.wkbNone)
    dataset = None  # closes the file
    return count


def vector_file(layer, folder: str, stem: str, what: str, selected_only: bool = False) -> str:
    """A file with the polygon layer's features (only the selected ones when ``selected_only``)."""
    if not _is_polygon_layer(layer):
        raise FootprintError(f"Choose a polygon layer as the {what}.")
    if selected_only:
        if layer.selectedFeatureCount() == 0:
            raise FootprintError(f"Select one or more features of {layer.name()} (the {what}) first.")
        return write_features(layer.selectedFeatures(), layer, Path(folder) / f"{stem}.gpkg")
    path = own_file(layer)
    if path is not None:
        return path
    return write_features(layer.getFeatures(), layer, Path(folder) / f"{stem}.gpkg")


def write_features(features: Iterable[QgsFeature], source, path: Path) -> str:
    """``features`` of ``source`` (a layer or a Processing feature source) into a new GeoPackage, in the source's
    CRS: geometry and score only (all the trainer reads)."""
    keep_score = source.fields().indexOf(SCORE_FIELD) >= 0
    fields = QgsFields()
    if keep_score:
        fields.append(QgsField(SCORE_FIELD, REAL))
    return _write(path, fields, source.wkbType(), source.sourceCrs(),
                  ((f.geometry(), [f[SCORE_FIELD]] if keep_score else []) for f in features))


def geometry_file(geometry: QgsGeometry, crs: QgsCoordinateReferenceSystem, path: Path) -> str:
    """One polygon (e.g. the map view's extent) as a GeoPackage in ``crs``."""
    return _write(path, QgsFields(), QgsWkbTypes.Type.MultiPolygon, crs, [(geometry, [])])


def _write(path: Path, fields: QgsFields, wkb_type, crs, rows) -> str:
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = path.stem
    writer = QgsVectorFileWriter.create(str(path), fields, QgsWkbTypes.multiType(wkb_type), crs,
                                        QgsCoordinateTransformContext(), options)
    if writer.hasError() != QgsVectorFileWriter.WriterError.NoError:
        message = writer.errorMessage()
        del writer
        raise FootprintError(f"Cannot write the temporary file {path}: {message}")
    for geometry, values in rows:
        if geometry is None or geometry.isEmpty():
            continue
        geometry = QgsGeometry(geometry)
        geometry.convertToMultiType()
        feature = QgsFeature(fields)
        feature.setGeometry(geometry)
        feature.setAttributes([None if _is_null(v) else float(v) for v in values])
        writer.addFeature(feature)
    error = writer.errorMessage() if writer.hasError() != QgsVectorFileWriter.WriterError.NoError else ""
    del writer  # closes the file
    if error:
        raise FootprintError(f"Cannot write the temporary file {path}: {error}")
    return str(path)  # possibly without features: the trainer says what that means for its task


def _is_null(value) -> bool:
    """None, '' or QGIS's NULL (a null QVariant on Qt5 builds)."""
    if value is None or value == "":
        return True
    try:
        float(value)
    except (TypeError, ValueError):
        return True
    return bool(getattr(value, "isNull", lambda: False)())


def processing_source_file(algorithm, parameters, name: str, context, folder: str, keep=None) -> str:
    """A Processing feature-source parameter as a file: the layer's own file when the whole layer is used as it
    is saved, otherwise its features (selected only, limits, ``keep(geometry)``) written into ``folder``."""
    from qgis.core import QgsProcessingException, QgsProcessingFeatureSourceDefinition

    value = parameters.get(name)
    restricted = isinstance(value, QgsProcessingFeatureSourceDefinition) and (
        value.selectedFeaturesOnly or getattr(value, "featureLimit", -1) != -1
        or bool(getattr(value, "filterExpression", "")))
    if keep is None and not restricted:
        layer = algorithm.parameterAsVectorLayer(parameters, name, context)
        path = own_file(layer) if isinstance(layer, QgsVectorLayer) and layer.isValid() else None
        if path is not None:
            return path
    source = algorithm.parameterAsSource(parameters, name, context)
    if source is None:
        raise QgsProcessingException(algorithm.invalidSourceError(parameters, name))
    features = (f for f in source.getFeatures() if keep is None or keep(f.geometry()))
    return write_features(features, source, Path(folder) / f"{name.lower()}.gpkg")


def new_file_beside_project(name: str, suffix: str) -> str:
    """``<name><suffix>`` (``name`` made file-safe) beside the project file when there is one, else in the
    temporary folder; numbered ``_2``, ``_3``... so that it never names an existing file."""
    project_file = QgsProject.instance().fileName()
    folder = Path(project_file).parent if project_file else Path(tempfile.gettempdir())
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    candidate, number = folder / f"{stem}{suffix}", 2
    while candidate.exists():
        candidate, number = folder / f"{stem}_{number}{suffix}", number + 1
    return str(candidate)
