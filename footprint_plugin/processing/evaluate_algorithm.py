"""``footprint:evaluate_buildings``: predicted buildings against reference ones with the scorer of
``python -m trainer evaluate``, as F1/precision/recall and true-positive, false-positive and false-negative layers."""

from __future__ import annotations

import tempfile

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsFillSymbol,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterNumber,
    QgsSingleSymbolRenderer,
    QgsVectorLayer,
    QgsWkbTypes,
)

from ..qgis_io.layer_files import REAL, TEXT
from .one_line_errors import run_with_one_line_errors

# Output parameter -> (the scorer's layer name, layer name when loaded, fill colour, outline colour)
REVIEW_LAYERS = {
    "TRUE_POSITIVES": ("true_positive", "True positives", "0,170,0,70", "0,140,0,255"),
    "FALSE_POSITIVES": ("false_positive", "False positives", "220,0,0,70", "200,0,0,255"),
    "FALSE_NEGATIVES": ("false_negative", "False negatives", "0,90,255,70", "0,70,230,255"),
}


def style_review_layer(layer: QgsVectorLayer, output: str) -> None:
    """Green true positives, red false positives, blue false negatives."""
    _, _, fill, outline = REVIEW_LAYERS[output]
    symbol = QgsFillSymbol.createSimple({"color": fill, "outline_color": outline, "outline_width": "0.6",
                                         "outline_width_unit": "MM"})
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    layer.triggerRepaint()


class ReviewStyle(QgsProcessingLayerPostProcessorInterface):
    """Styles one review layer when Processing loads it into the project."""

    def __init__(self, output: str) -> None:
        super().__init__()
        self.output = output

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802 - QGIS API
        if isinstance(layer, QgsVectorLayer):
            style_review_layer(layer, self.output)


_KEEP_ALIVE: list[ReviewStyle] = []  # Processing holds only a pointer to a post-processor


def _fields(output: str) -> QgsFields:
    fields = QgsFields()
    fields.append(QgsField("image", TEXT))
    if output == "TRUE_POSITIVES":
        fields.append(QgsField("iou", REAL))
    fields.append(QgsField("area_m2", REAL))
    return fields


class EvaluateBuildingsAlgorithm(QgsProcessingAlgorithm):
    PREDICTED, REFERENCE, AREA, IOU, MIN_AREA = "PREDICTED", "REFERENCE", "AREA", "IOU", "MIN_AREA"
    F1, PRECISION, RECALL = "F1", "PRECISION", "RECALL"

    def name(self) -> str:
        return "evaluate_buildings"

    def displayName(self) -> str:  # noqa: N802
        return "Evaluate buildings against a reference"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Scores predicted building polygons against reference (true) ones with the SpaceNet metric of "
                "python -m trainer evaluate: in descending score, each prediction takes the unmatched reference "
                "building of highest IoU, a true positive when IoU >= IOU. Reference buildings smaller than MIN_AREA "
                "(m2) are ignored. With AREA, only buildings whose interior point lies inside it count. Returns F1, "
                "precision and recall, and the true positives (green), false positives (red) and false negatives "
                "(blue) as layers.")

    def createInstance(self):  # noqa: N802
        return EvaluateBuildingsAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        polygons = [QgsProcessing.SourceType.TypeVectorPolygon]
        self.addParameter(QgsProcessingParameterFeatureSource(self.PREDICTED, "Predicted buildings", polygons))
        self.addParameter(QgsProcessingParameterFeatureSource(self.REFERENCE, "Reference (true) buildings", polygons))
        self.addParameter(QgsProcessingParameterFeatureSource(self.AREA, "Area to score (empty: everywhere)", polygons,
                                                              optional=True))
        double = QgsProcessingParameterNumber.Type.Double
        self.addParameter(QgsProcessingParameterNumber(self.IOU, "IoU for a match", double, 0.5, minValue=0.01,
                                                       maxValue=1.0))
        self.addParameter(QgsProcessingParameterNumber(self.MIN_AREA, "Ignore reference buildings smaller than (m2)",
                                                       double, 20.0, minValue=0.0))
        for output, (_, title, _, _) in REVIEW_LAYERS.items():
            self.addParameter(QgsProcessingParameterFeatureSink(output, title, QgsProcessing.SourceType.TypeVectorPolygon))
        for output, title in ((self.F1, "F1"), (self.PRECISION, "Precision"), (self.RECALL, "Recall")):
            self.addOutput(QgsProcessingOutputNumber(output, title))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        return run_with_one_line_errors(lambda: self._evaluate(parameters, context, feedback))

    def _area_filter(self, parameters, context, source_name: str):
        """keep(geometry) for the features of ``source_name``: interior point inside AREA (None: no AREA)."""
        area = self.parameterAsSource(parameters, self.AREA, context)
        if area is None:
            return None
        geometries = [f.geometry() for f in area.getFeatures() if f.hasGeometry()]
        if not geometries:
            raise QgsProcessingException("The AREA layer holds no polygons.")
        target = self.parameterAsSource(parameters, source_name, context).sourceCrs()
        union = QgsGeometry.unaryUnion(geometries)
        union.transform(QgsCoordinateTransform(area.sourceCrs(), target, context.transformContext()))
        engine = QgsGeometry.createGeometryEngine(union.constGet())
        engine.prepareGeometry()

        def keep(geometry: QgsGeometry, _union=union) -> bool:  # _union: the engine's geometry stays alive
            if geometry.isEmpty():
                return False
            point = geometry.pointOnSurface()  # held: constGet() points into it
            return engine.intersects(point.constGet())

        return keep

    def _evaluate(self, parameters, context, feedback) -> dict:
        from ..qgis_io.layer_files import processing_source_file
        from ..setup.trainer_access import trainer_module

        evaluate = trainer_module("evaluate")
        iou = self.parameterAsDouble(parameters, self.IOU, context)
        min_area = self.parameterAsDouble(parameters, self.MIN_AREA, context)
        for name in (self.PREDICTED, self.REFERENCE):
            if self.parameterAsSource(parameters, name, context) is None:
                raise QgsProcessingException(self.invalidSourceError(parameters, name))
        with tempfile.TemporaryDirectory(prefix="footprint-evaluate-") as folder:
            files = {name: processing_source_file(self, parameters, name, context, folder,
                                                  self._area_filter(parameters, context, name))
                     for name in (self.REFERENCE, self.PREDICTED)}
            feedback.setProgress(20)
            truth, pred, crs_wkt = evaluate.read_vector_pair(files[self.REFERENCE], files[self.PREDICTED])
        feedback.setProgress(40)
        result = evaluate.evaluate(truth, pred, iou, min_area)
        if feedback.isCanceled():
            return {}
        crs = QgsCoordinateReferenceSystem.fromWkt(crs_wkt) if crs_wkt else QgsCoordinateReferenceSystem()
        features = evaluate.review_features(result)
        outputs = {self.F1: result["f1"], self.PRECISION: result["precision"], self.RECALL: result["recall"]}
        for output, (layer, _, _, _) in REVIEW_LAYERS.items():
            outputs[output] = self._write(parameters, context, output, crs, features[layer])
        feedback.setProgress(100)
        feedback.pushInfo(f"F1 {result['f1']:.4f}  precision {result['precision']:.4f}  recall {result['recall']:.4f}  "
                          f"(TP {result['tp']}, FP {result['fp']}, FN {result['fn']}, IoU >= {iou:g}, reference "
                          f"buildings under {min_area:g} m2 ignored)")
        return outputs

    def _write(self, parameters, context, output: str, crs, rows) -> str:
        from shapely import wkb

        fields = _fields(output)
        sink, dest_id = self.parameterAsSink(parameters, output, context, fields, QgsWkbTypes.Type.MultiPolygon, crs)
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, output))
        for geometry, attributes in rows:
            shape = QgsGeometry()
            shape.fromWkb(wkb.dumps(geometry))
            shape.convertToMultiType()
            feature = QgsFeature(fields)
            feature.setGeometry(shape)
            values = [str(attributes.get("image", ""))]
            if output == "TRUE_POSITIVES":
                values.append(float(attributes.get("iou", 0.0)))
            values.append(round(float(geometry.area), 2))
            feature.setAttributes(values)
            if not sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert):
                raise QgsProcessingException(f"Cannot write to {dest_id}: {getattr(sink, 'lastError', lambda: '')()}")
        del sink
        self._dest_ids = {**getattr(self, "_dest_ids", {}), output: dest_id}
        return dest_id

    def postProcessAlgorithm(self, context, feedback):  # noqa: N802 - QGIS API, main thread
        for output, dest_id in getattr(self, "_dest_ids", {}).items():
            if context.willLoadLayerOnCompletion(dest_id):
                style = ReviewStyle(output)
                _KEEP_ALIVE.append(style)
                del _KEEP_ALIVE[:-30]
                context.layerToLoadOnCompletionDetails(dest_id).setPostProcessor(style)
        return {}
