"""``footprint:extract_buildings``: the extraction as a Processing algorithm, its options from the engine's one table."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingUtils,
    QgsVectorLayer,
    QgsWkbTypes,
)

from ..core.errors import FootprintError  # plain Python: importable without torch
from ..setup.dependencies import install_hint, missing_packages
from .one_line_errors import run_with_one_line_errors


def _option_parameter(option):
    """A Processing parameter for one entry of the engine's shared option table."""
    key, label = option.key, f"{option.label} (default: {option.describe_default()})"
    if option.choices:
        return QgsProcessingParameterEnum(key, label, list(option.choices), defaultValue=option.choices.index(option.default))
    if option.kind == "bool":
        return QgsProcessingParameterBoolean(key, label, defaultValue=bool(option.default))
    if option.kind == "bands":
        return QgsProcessingParameterString(key, label + ", e.g. 1,2,3", optional=True)
    number = QgsProcessingParameterNumber
    kind = number.Type.Integer if option.kind == "int" else number.Type.Double
    return number(key, label, kind, option.default, optional=option.default is None, minValue=option.minimum,
                  maxValue=option.maximum)


class ExtractBuildingsAlgorithm(QgsProcessingAlgorithm):
    INPUT, WEIGHTS, EXTENT, OUTPUT, PROBABILITIES = "INPUT", "WEIGHTS", "EXTENT", "OUTPUT", "PROBABILITIES"
    REVIEW = "REVIEW"

    def name(self) -> str:
        return "extract_buildings"

    def displayName(self) -> str:  # noqa: N802
        return "Extract buildings"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Extracts building footprints from an RGB raster (GeoTIFF, VRT, XYZ/WMS with an extent) with a "
                "U-Net, as polygons with fields area_m2 and score. Options left empty take the model's defaults. "
                "REVIEW (a .gpkg) also ranks where to correct first: the buildings with the lowest scores and the "
                "areas where the model is unsure (field rank, 1 first; field reason).")

    def createInstance(self):  # noqa: N802
        return ExtractBuildingsAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        from ..core.parameters import OPTIONS

        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster"))
        self.addParameter(QgsProcessingParameterFile(self.WEIGHTS, "Weights file (empty: bundled default)",
                                                     extension="safetensors", optional=True))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Area (empty: whole raster)", optional=True))
        for option in OPTIONS:
            self.addParameter(_option_parameter(option))
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, "Buildings", QgsProcessing.SourceType.TypeVectorPolygon))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.PROBABILITIES, "Building probability (0-255)", optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.REVIEW, "Review layer: where to correct first", "GeoPackage (*.gpkg)", optional=True,
            createByDefault=False))

    def _values(self, parameters, context) -> dict:
        """Option name -> value as chosen (None where left empty)."""
        from ..core.parameters import OPTIONS

        values = {}
        for option in OPTIONS:
            key = option.key
            if option.choices:
                values[option.name] = option.choices[self.parameterAsEnum(parameters, key, context)]
            elif option.kind == "bool":
                values[option.name] = self.parameterAsBoolean(parameters, key, context)
            elif parameters.get(key) in (None, ""):
                values[option.name] = None
            elif option.kind == "bands":
                values[option.name] = self.parameterAsString(parameters, key, context)
            elif option.kind == "int":
                values[option.name] = self.parameterAsInt(parameters, key, context)
            else:
                values[option.name] = self.parameterAsDouble(parameters, key, context)
        return values

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        missing = missing_packages()
        if missing:
            raise QgsProcessingException(install_hint(missing))
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException("Choose a raster layer as INPUT.")
        return run_with_one_line_errors(lambda: self._extract(layer, parameters, context, feedback))

    def _extract(self, layer, parameters, context, feedback) -> dict:
        from ..core.parameters import build_parameters, vectorize_options
        from ..core.review import review_probabilities

        extent = None
        if parameters.get(self.EXTENT):
            extent = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
        options = build_parameters(self._values(parameters, context),
                                   weights=self.parameterAsFile(parameters, self.WEIGHTS, context) or None)
        review = self.parameterAsFileOutput(parameters, self.REVIEW, context) if parameters.get(self.REVIEW) else None
        with review_probabilities(review, self._probabilities(parameters, context), "") as probabilities:
            outputs, summary = self._run(layer, extent, options, probabilities, parameters, context, feedback)
            if review:
                outputs[self.REVIEW] = review
                threshold = vectorize_options(options, summary.card).mask_threshold
                places = _write_review(outputs[self.OUTPUT], probabilities, review, threshold, context)
                feedback.pushInfo(f"{places} places to review first -> {review}")
                _load_review(review, context)
        return outputs

    def _run(self, layer, extent, options, probabilities, parameters, context, feedback):
        """The extraction into the OUTPUT sink (and PROBABILITIES when given): the outputs and the summary."""
        from ..core.extract import extract
        from ..qgis_io.area import area_from_qgis
        from ..qgis_io.feature_sink import FeatureSinkAdapter, building_fields
        from ..qgis_io.provider_reader import QgisProviderReader

        with QgisProviderReader(layer, extent) as reader:
            fields = building_fields()
            sink, dest_id = self.parameterAsSink(parameters, self.OUTPUT, context, fields, QgsWkbTypes.Type.Polygon,
                                                 layer.crs())
            if sink is None:
                raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
            adapter = FeatureSinkAdapter(sink, fields, dest_id)
            del sink  # the adapter holds the only reference: releasing it closes the file
            summary = extract(reader, options, sinks=[adapter], probabilities=probabilities, area=area_from_qgis(extent),
                              progress=lambda f, _m: feedback.setProgress(100 * f), cancel=feedback.isCanceled,
                              warn=feedback.pushWarning)
        adapter.release()
        check_written(dest_id, adapter.count)
        feedback.pushInfo(summary.message())
        outputs = {self.OUTPUT: dest_id}
        if probabilities is not None and parameters.get(self.PROBABILITIES):
            outputs[self.PROBABILITIES] = probabilities
            details = QgsProcessingContext.LayerDetails("Building probability", context.project(), self.PROBABILITIES)
            _POST_PROCESSORS.append(StyleProbabilities())
            details.setPostProcessor(_POST_PROCESSORS[-1])
            context.addLayerToLoadOnCompletion(probabilities, details)
        return outputs, summary

    def _probabilities(self, parameters, context) -> str | None:
        """The probability raster's path when PROBABILITIES is set (a .tif)."""
        if not parameters.get(self.PROBABILITIES):
            return None
        return self.parameterAsOutputLayer(parameters, self.PROBABILITIES, context) or None


def _write_review(dest_id: str, probabilities: str, review: str, threshold: float, context) -> int:
    """The review layer of the buildings just written to ``dest_id`` (a file or a memory layer)."""
    from shapely import wkb

    from ..core.review import read_probabilities, write_review_of
    from ..qgis_io.geometry import feature_wkb

    buildings = QgsProcessingUtils.mapLayerFromString(dest_id, context)
    if buildings is None:
        raise FootprintError(f"Output {dest_id}: cannot be read back for the review layer.")
    grid = read_probabilities(probabilities)
    features = [(feature_wkb(f), f["score"]) for f in buildings.getFeatures() if f.hasGeometry()]
    return write_review_of([wkb.loads(blob) for blob, _ in features], [score for _, score in features], grid, review,
                           threshold)


def _load_review(review: str, context) -> None:
    """Loads the review layer, styled by rank, when the run ends."""
    from ..core.review import LAYER

    details = QgsProcessingContext.LayerDetails("Review: correct here first", context.project(), "REVIEW")
    _POST_PROCESSORS.append(StyleReview())
    details.setPostProcessor(_POST_PROCESSORS[-1])
    context.addLayerToLoadOnCompletion(f"{review}|layername={LAYER}", details)


class StyleReview(QgsProcessingLayerPostProcessorInterface):
    """Styles the review layer by rank once QGIS has loaded it."""

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802
        from ..qgis_io.style import style_review_layer

        style_review_layer(layer)


class StyleProbabilities(QgsProcessingLayerPostProcessorInterface):
    """Styles the probability raster once QGIS has loaded it (after the run)."""

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802
        from ..qgis_io.style import style_probability_layer

        style_probability_layer(layer)


# QGIS does not own post-processors: keep every run's alive (a few bytes each), since runs of other contexts
# (batch mode, a model) may load their layers later than the next run starts
_POST_PROCESSORS: list[QgsProcessingLayerPostProcessorInterface] = []


def check_written(dest_id: str, count: int) -> None:
    """A file destination, once closed, must open and hold every building: the final flush is checked."""
    path = dest_id.split("|")[0]
    if not Path(path).is_file():
        if "://" in dest_id or dest_id.startswith("memory") or not Path(path).suffix:
            return  # a memory layer or a database: nothing on disk to check
        raise FootprintError(f"Output {dest_id}: the file was not written.")
    layer = QgsVectorLayer(dest_id, "check", "ogr")
    written = layer.featureCount() if layer.isValid() else -1
    del layer
    if written != count:
        raise FootprintError(f"Output {dest_id}: the file cannot be read back or holds {max(written, 0)} of {count} "
                              "buildings (is the disk full?).")
