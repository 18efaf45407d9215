"""Processing provider "Building footprints" with the algorithm ``footprint:extract_buildings``."""

from __future__ import annotations

from qgis.core import (
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingProvider,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

try:  # Qt5 builds
    REAL = QVariant.Double
except AttributeError:  # Qt6 builds
    from qgis.PyQt.QtCore import QMetaType

    REAL = QMetaType.Type.Double
from qgis.PyQt.QtGui import QIcon

from .dependencies import install_hint, missing_packages

DEVICES = ["auto", "cpu", "cuda"]
REGULARIZE = ["none", "simplify", "orthogonal"]


class ExtractBuildingsAlgorithm(QgsProcessingAlgorithm):
    INPUT, WEIGHTS, EXTENT, DEVICE = "INPUT", "WEIGHTS", "EXTENT", "DEVICE"
    TILE_SIZE, OVERLAP, BATCH_SIZE, MIN_AREA, REGULARIZE, OUTPUT = (
        "TILE_SIZE", "OVERLAP", "BATCH_SIZE", "MIN_AREA", "REGULARIZE", "OUTPUT")

    def name(self) -> str:
        return "extract_buildings"

    def displayName(self) -> str:  # noqa: N802
        return "Extract buildings"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Extracts building footprints from an RGB raster (GeoTIFF, VRT, XYZ/WMS with an extent) with a "
                "U-Net, as polygons with fields area_m2 and score. Leave numbers at 0 for the model's defaults.")

    def createInstance(self):  # noqa: N802
        return ExtractBuildingsAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster"))
        self.addParameter(QgsProcessingParameterFile(self.WEIGHTS, "Weights file (empty: bundled default)",
                                                     extension="safetensors", optional=True))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Area (empty: whole raster)", optional=True))
        self.addParameter(QgsProcessingParameterEnum(self.DEVICE, "Device", DEVICES, defaultValue=0))
        integer = QgsProcessingParameterNumber.Type.Integer
        self.addParameter(QgsProcessingParameterNumber(self.TILE_SIZE, "Tile size, px (0: model default)", integer,
                                                       0, minValue=0))
        self.addParameter(QgsProcessingParameterNumber(self.OVERLAP, "Overlap, px (-1: a quarter tile)", integer,
                                                       -1, minValue=-1))
        self.addParameter(QgsProcessingParameterNumber(self.BATCH_SIZE, "Batch size (0: device default)", integer,
                                                       0, minValue=0))
        self.addParameter(QgsProcessingParameterNumber(self.MIN_AREA, "Minimum area, m²",
                                                       QgsProcessingParameterNumber.Type.Double, 5.0, minValue=0))
        self.addParameter(QgsProcessingParameterEnum(self.REGULARIZE, "Outline", REGULARIZE, defaultValue=1))
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, "Buildings", QgsProcessing.SourceType.TypeVectorPolygon))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        missing = missing_packages()
        if missing:
            raise QgsProcessingException(install_hint(missing))
        from .core.errors import FootprintError
        from .core.extract import ExtractionParameters, extract_buildings
        from .core.inference import TilingOptions
        from .qgis_reader import QgisProviderReader

        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException("Choose a raster layer as INPUT.")
        extent = None
        if parameters.get(self.EXTENT):
            extent = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
        overlap = self.parameterAsInt(parameters, self.OVERLAP, context)
        options = ExtractionParameters(
            weights=self.parameterAsFile(parameters, self.WEIGHTS, context) or None,
            device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            tiling=TilingOptions(tile_size=self.parameterAsInt(parameters, self.TILE_SIZE, context) or None,
                                 overlap=None if overlap < 0 else overlap,
                                 batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context) or None),
            min_area_m2=self.parameterAsDouble(parameters, self.MIN_AREA, context),
            regularize=REGULARIZE[self.parameterAsEnum(parameters, self.REGULARIZE, context)],
        )
        fields = QgsFields()
        fields.append(QgsField("area_m2", REAL))
        fields.append(QgsField("score", REAL))
        error = None
        try:
            with QgisProviderReader(layer, extent) as reader:
                result = extract_buildings(reader, options, progress=lambda f, _m: feedback.setProgress(100 * f),
                                           cancelled=feedback.isCanceled, warn=feedback.pushWarning)
        except FootprintError as exc:
            error = str(exc)
        if error is not None:  # raised outside the handler: no traceback keeps QGIS objects alive
            raise QgsProcessingException(error)
        sink, dest_id = self.parameterAsSink(parameters, self.OUTPUT, context, fields, QgsWkbTypes.Type.Polygon, layer.crs())
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        for building in result.buildings:
            feature = QgsFeature(fields)
            feature.setGeometry(QgsGeometry.fromWkt(building.geometry.wkt))
            feature.setAttributes([round(building.area_m2, 2), round(building.score, 4)])
            sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert)
        feedback.pushInfo(f"{len(result.buildings)} buildings in {result.seconds:.1f} s on {result.device} "
                          f"(weights {result.card.name})")
        return {self.OUTPUT: dest_id}


class FootprintProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "footprint"

    def name(self) -> str:
        return "Building footprints"

    def icon(self):
        from .plugin import icon_path

        return QIcon(icon_path())

    def loadAlgorithms(self) -> None:  # noqa: N802
        self.addAlgorithm(ExtractBuildingsAlgorithm())
