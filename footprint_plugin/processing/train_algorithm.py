"""``footprint:train_model``: fine-tune a weights file on corrected buildings with ``trainer.finetune``."""

from __future__ import annotations

import tempfile

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputBoolean,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from .one_line_errors import run_with_one_line_errors

DEVICES = (("CPU", "cpu"), ("Auto (CUDA with AMP, then MPS, then CPU)", "auto"))


class TrainModelAlgorithm(QgsProcessingAlgorithm):
    INPUT, BUILDINGS, AREA, WEIGHTS, MINUTES, OUTPUT = "INPUT", "BUILDINGS", "AREA", "WEIGHTS", "MINUTES", "OUTPUT"
    DEVICE = "DEVICE"
    F1_BEFORE, F1_AFTER, CANCELLED = "F1_BEFORE", "F1_AFTER", "CANCELLED"

    def name(self) -> str:
        return "train_model"

    def displayName(self) -> str:  # noqa: N802
        return "Fine-tune the model on corrected buildings"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Fine-tunes a weights file (default: the bundled model) on building polygons you corrected on a raster, "
                "within a time budget in minutes. AREA outlines where the buildings are complete (default: their "
                "extent + 10 m); pixels outside it are ignored, and a raster inside it without buildings (BUILDINGS "
                "may then be empty) is learnt as ground without buildings. About 15% of the area (whole chips) is "
                "held out to measure the building F1 before and after; the best state by that F1 is written to "
                "OUTPUT. Cancel keeps the best weights so far, or writes nothing when nothing beat the base model, "
                "and says which. Needs at least 20 buildings inside the area. Rounds: WEIGHTS from an earlier round "
                "bring that round's corrections along (kept in the weights file), and this round trains on them "
                "too. DEVICE: the CPU by default.")

    def createInstance(self):  # noqa: N802
        return TrainModelAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        polygons = [QgsProcessing.SourceType.TypeVectorPolygon]
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Raster the buildings were drawn on"))
        self.addParameter(QgsProcessingParameterFeatureSource(self.BUILDINGS, "Corrected buildings", polygons))
        self.addParameter(QgsProcessingParameterFeatureSource(self.AREA, "Area where the buildings are complete "
                                                              "(empty: their extent + 10 m)", polygons, optional=True))
        self.addParameter(QgsProcessingParameterFile(self.WEIGHTS, "Base weights (empty: bundled default)",
                                                     extension="safetensors", optional=True))
        self.addParameter(QgsProcessingParameterNumber(self.MINUTES, "Training time (minutes)",
                                                       QgsProcessingParameterNumber.Type.Double, 10.0, minValue=0.01,
                                                       maxValue=24 * 60))
        self.addParameter(QgsProcessingParameterEnum(self.DEVICE, "Device", [label for label, _ in DEVICES],
                                                     defaultValue=0))
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT, "Fine-tuned weights",
                                                                "Weights (*.safetensors)"))
        self.addOutput(QgsProcessingOutputNumber(self.F1_BEFORE, "Held-out F1 before"))
        self.addOutput(QgsProcessingOutputNumber(self.F1_AFTER, "Held-out F1 after (of the weights written)"))
        self.addOutput(QgsProcessingOutputBoolean(self.CANCELLED, "Cancelled"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        return run_with_one_line_errors(lambda: self._train(parameters, context, feedback))

    def _train(self, parameters, context, feedback) -> dict:
        from ..qgis_io.layer_files import processing_source_file, raster_file
        from ..setup.trainer_access import trainer_module

        finetune = trainer_module("finetune")
        raster = raster_file(self.parameterAsRasterLayer(parameters, self.INPUT, context))
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        if not output.lower().endswith(".safetensors"):
            raise QgsProcessingException(f"OUTPUT {output}: the weights file must end in .safetensors.")
        weights = self.parameterAsFile(parameters, self.WEIGHTS, context) or None
        minutes = self.parameterAsDouble(parameters, self.MINUTES, context)
        device = DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)][1]

        def progress(fraction: float, message: str) -> None:
            feedback.setProgress(100 * fraction)
            feedback.pushInfo(message)

        with tempfile.TemporaryDirectory(prefix="footprint-train-") as folder:
            buildings = processing_source_file(self, parameters, self.BUILDINGS, context, folder)
            area = None
            if parameters.get(self.AREA) not in (None, ""):
                area = processing_source_file(self, parameters, self.AREA, context, folder)
            request = finetune.FinetuneRequest(rasters=[raster], buildings=buildings, output=output, area=area,
                                               weights=weights, minutes=minutes, device=device, area_option="AREA")
            feedback.pushInfo(f"Preparing chips from {raster}; training for {minutes:g} min...")
            result = finetune.finetune(request, progress, feedback.isCanceled, feedback.pushWarning)
        if result.cancelled:
            feedback.pushWarning(result.message())
        else:
            feedback.pushInfo(result.message())
        self._written = result.output
        return {self.OUTPUT: result.output, self.F1_BEFORE: result.f1_before, self.F1_AFTER: result.f1_after,
                self.CANCELLED: result.cancelled}

    def postProcessAlgorithm(self, context, feedback):  # noqa: N802 - QGIS API, main thread
        """The Extract dialog then offers the new weights under Model."""
        if getattr(self, "_written", None):
            from ..qgis_io.weights_history import remember_weights

            remember_weights(self._written)
        return {}
