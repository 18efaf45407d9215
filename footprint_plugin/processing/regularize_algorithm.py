"""``footprint:regularize_buildings``: the footprints of any polygon layer regularised by the engine's one
implementation (:mod:`footprint_plugin.core.regularize`): features go to it in batches as WKB, with the layer's
CRS; the results come back with every attribute, ``reg_method`` and ``reg_iou``."""

from __future__ import annotations

from qgis.core import (
    QgsFeature,
    QgsFeatureRequest,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingFeatureSource,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterNumber,
    QgsVectorLayer,
    QgsWkbTypes,
)

from ..core.errors import CancelledError, FootprintError
from ..qgis_io.geometry import feature_wkb
from ..qgis_io.layer_files import REAL, TEXT
from .one_line_errors import run_with_one_line_errors

MODE_LABELS = ("Right angles", "Right angles and diagonals", "Any angle", "Circle (round buildings; others right angles)")

HELP = """<p>Regularises building footprints of any polygon layer (this plugin's output, OpenStreetMap, hand-digitised
or another tool's), in any CRS: the work is done in metres about each building.</p>
<ul>
<li><b>Right angles</b>: walls snapped to the building's dominant direction and its perpendicular.</li>
<li><b>Right angles and diagonals</b>: walls at multiples of 45&deg; from the dominant direction (bay windows, cut
corners).</li>
<li><b>Any angle</b>: straight walls in any direction, the wobble of the outline removed.</li>
<li><b>Circle</b>: a circle where the building is round enough (round huts, tanks, silos: the circle overlaps it by
at least <i>Circle roundness</i>); other buildings get right angles.</li>
</ul>
<p><i>Tolerance</i> (m): how far a wall may move to become straight; shorter wall pieces merge. A new shape
overlapping its input by less than the <i>IoU threshold</i> is not used (the input is kept) unless the fallback is
off. Buildings smaller than the <i>Minimum area</i> are left out.</p>
<p>Every attribute is kept, with <b>reg_method</b> (right-angles, diagonals, any-angle, circle; input where the
building was kept; ",repaired" where an invalid polygon was repaired first; invalid, empty or multipart where it
passed through unchanged) and <b>reg_iou</b> (overlap with the input).</p>"""


def output_fields(source: QgsFields) -> QgsFields:
    """The source's fields, plus reg_method and reg_iou where it has none."""
    fields = QgsFields(source)
    for name, kind in (("reg_method", TEXT), ("reg_iou", REAL)):
        if fields.indexOf(name) < 0:
            fields.append(QgsField(name, kind))
    return fields


class RegularizeBuildingsAlgorithm(QgsProcessingAlgorithm):
    INPUT, MODE, TOLERANCE, MIN_AREA, FALLBACK, MIN_IOU, ROUNDNESS, OUTPUT = (
        "INPUT", "MODE", "TOLERANCE", "MIN_AREA", "FALLBACK", "MIN_IOU", "CIRCLE_ROUNDNESS", "OUTPUT")

    def name(self) -> str:
        return "regularize_buildings"

    def displayName(self) -> str:  # noqa: N802
        return "Regularize building footprints"

    def shortHelpString(self) -> str:  # noqa: N802
        return HELP

    def createInstance(self):  # noqa: N802
        return RegularizeBuildingsAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        from ..core.regularize import RegularizeOptions

        defaults = RegularizeOptions()
        double = QgsProcessingParameterNumber.Type.Double
        self.addParameter(QgsProcessingParameterFeatureSource(self.INPUT, "Building footprints",
                                                              [QgsProcessing.SourceType.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterEnum(self.MODE, "Mode", list(MODE_LABELS), defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(self.TOLERANCE, "Tolerance (m)", double, defaults.tolerance_m,
                                                       minValue=0.001))
        self.addParameter(QgsProcessingParameterNumber(self.MIN_AREA, "Minimum area (m²): smaller buildings are left out",
                                                       double, defaults.min_area_m2, minValue=0.0))
        self.addParameter(QgsProcessingParameterBoolean(self.FALLBACK, "Keep the input where the new shape overlaps it "
                                                        "by less than the IoU threshold", defaults.fallback))
        self.addParameter(QgsProcessingParameterNumber(self.MIN_IOU, "IoU threshold", double, defaults.min_iou,
                                                       minValue=0.0, maxValue=1.0))
        self.addParameter(QgsProcessingParameterNumber(self.ROUNDNESS, "Circle roundness (IoU of the circle; a "
                                                       "square: 0.83)", double, defaults.circle_min_iou, minValue=0.0,
                                                       maxValue=1.0))
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, "Regularized footprints",
                                                            QgsProcessing.SourceType.TypeVectorPolygon))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        return run_with_one_line_errors(lambda: self._regularize(parameters, context, feedback))

    def _options(self, parameters, context):
        from ..core.regularize import MODES, RegularizeOptions

        options = RegularizeOptions(
            mode=MODES[self.parameterAsEnum(parameters, self.MODE, context)],
            tolerance_m=self.parameterAsDouble(parameters, self.TOLERANCE, context),
            min_area_m2=self.parameterAsDouble(parameters, self.MIN_AREA, context),
            fallback=self.parameterAsBoolean(parameters, self.FALLBACK, context),
            min_iou=self.parameterAsDouble(parameters, self.MIN_IOU, context),
            circle_min_iou=self.parameterAsDouble(parameters, self.ROUNDNESS, context))
        options.validate()
        return options

    def _regularize(self, parameters, context, feedback) -> dict:
        from ..core.regularize import BATCH, Regularizer, RegularizeSummary
        from ..qgis_io.feature_sink import FeatureSinkAdapter
        from .extract_algorithm import check_written

        source = self.parameterAsSource(parameters, self.INPUT, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.INPUT))
        options = self._options(parameters, context)
        crs = source.sourceCrs()
        if not crs.isValid():
            feedback.pushWarning("The layer has no CRS; its coordinates are taken as metres.")
        multi = QgsWkbTypes.isMultiType(source.wkbType()) or QgsWkbTypes.flatType(source.wkbType()) in (
            QgsWkbTypes.Type.Unknown, QgsWkbTypes.Type.GeometryCollection)
        fields = output_fields(source.fields())
        geometry_type = QgsWkbTypes.Type.MultiPolygon if multi else QgsWkbTypes.Type.Polygon
        sink, dest_id = self.parameterAsSink(parameters, self.OUTPUT, context, fields, geometry_type, crs)
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        adapter = FeatureSinkAdapter(sink, fields, dest_id)
        del sink  # the adapter holds the only reference: releasing it closes the file
        regularizer = Regularizer(options, crs.toWkt() if crs.isValid() else None, multi)
        summary = RegularizeSummary()
        try:
            self._stream(source, regularizer, adapter, summary, feedback, BATCH)
            adapter.finish({})
        except BaseException:
            adapter.abort()  # no half-written file
            raise
        adapter.release()
        check_written(dest_id, adapter.count)
        feedback.pushInfo(summary.message())
        self._dest_id = dest_id
        return {self.OUTPUT: dest_id}

    def _stream(self, source, regularizer, adapter, summary, feedback, size: int) -> None:
        """Every feature of ``source`` through ``regularizer`` into the sink, a batch at a time."""
        total = max(source.featureCount(), 1)
        batch = []
        skip_check = getattr(QgsProcessingFeatureSource, "FlagSkipGeometryValidityChecks", None)  # repaired here
        if skip_check is None:  # the scoped enum of newer builds
            skip_check = QgsProcessingFeatureSource.Flag.FlagSkipGeometryValidityChecks
        for feature in source.getFeatures(QgsFeatureRequest(), skip_check):
            batch.append(feature)
            if len(batch) == size:
                self._write(batch, regularizer, adapter, summary, feedback)
                feedback.setProgress(100 * summary.read / total)
                batch = []
        if batch:
            self._write(batch, regularizer, adapter, summary, feedback)
        feedback.setProgress(100)

    def _write(self, batch, regularizer, adapter, summary, feedback) -> None:
        if feedback.isCanceled():
            raise CancelledError()
        results = regularizer.batch([feature_wkb(feature) for feature in batch])
        summary.add(results)
        fields = adapter.fields
        method_index, iou_index = fields.indexOf("reg_method"), fields.indexOf("reg_iou")
        features = []
        for feature, result in zip(batch, results):
            if result.dropped:
                continue
            out = QgsFeature(fields)
            attributes = list(feature.attributes()) + [None] * (fields.count() - len(feature.attributes()))
            attributes[method_index], attributes[iou_index] = result.method, result.iou
            out.setAttributes(attributes)
            if result.wkb is not None:
                geometry = QgsGeometry()
                geometry.fromWkb(result.wkb)
                out.setGeometry(geometry)
            features.append(out)
        if not adapter.sink.addFeatures(features, QgsFeatureSink.Flag.FastInsert):
            detail = adapter.sink.lastError() if hasattr(adapter.sink, "lastError") else ""
            raise FootprintError(f"Output {adapter.name}: cannot write the features" + (f" ({detail})." if detail else "."))
        adapter.count += len(features)

    def postProcessAlgorithm(self, context, feedback):  # noqa: N802 - QGIS API, main thread
        dest_id = getattr(self, "_dest_id", None)
        if dest_id and context.willLoadLayerOnCompletion(dest_id):
            style = RegularizedStyle()
            _KEEP_ALIVE.append(style)
            del _KEEP_ALIVE[:-30]
            context.layerToLoadOnCompletionDetails(dest_id).setPostProcessor(style)
        return {}


class RegularizedStyle(QgsProcessingLayerPostProcessorInterface):
    """Styles the regularised layer once Processing has loaded it."""

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802 - QGIS API
        from ..qgis_io.style import style_regularized_layer

        if isinstance(layer, QgsVectorLayer):
            style_regularized_layer(layer)


_KEEP_ALIVE: list[RegularizedStyle] = []  # Processing holds only a pointer to a post-processor
