"""The background extraction: a QgsTask that runs the engine and adds the result in ``finished()``."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from qgis.core import (
    Qgis,
    QgsGeometry,
    QgsMessageLog,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsTask,
    QgsVectorLayer,
)

from ..core.errors import CancelledError, FootprintError
from ..core.extract import extract
from ..core.output_paths import LAYER_NAME
from ..core.parameters import ExtractionParameters, vectorize_options
from ..core.review import LAYER as REVIEW_LAYER
from ..core.review import review_probabilities, write_review
from ..qgis_io.area import area_from_qgis
from ..qgis_io.provider_reader import QgisProviderReader
from ..qgis_io.style import style_buildings_layer, style_probability_layer, style_review_layer

LOG_TAG = "Building footprints"


@dataclass
class ExtractionRequest:
    """What the dialog (or a test) asks for; built on the main thread."""

    layer: QgsRasterLayer
    output: str
    parameters: ExtractionParameters = field(default_factory=ExtractionParameters)
    extent: QgsRectangle | None = None  # in the layer's CRS
    area_geometry: QgsGeometry | None = None  # keep buildings whose centre lies inside (layer CRS)
    layer_name: str | None = None
    probabilities: str | None = None  # also write the building-probability GeoTIFF here
    review: str | None = None  # also write the review layer (core.review: where to correct first) here


@dataclass
class Success:
    layer_name: str
    output: str
    buildings: int
    seconds: float
    device: str
    warnings: list[str]
    places: int | None = None  # listed in the review layer, when one was asked for

    def message(self) -> str:
        review = "" if self.places is None else f"; {self.places} places to review first"
        return f"{self.buildings} buildings found in {self.seconds:.1f} s on {self.device}: {self.layer_name}{review}"


@dataclass
class Failed:
    error: str

    def message(self) -> str:
        return self.error


@dataclass
class Cancelled:
    def message(self) -> str:
        return "Building extraction cancelled; nothing was added."


class ExtractionTask(QgsTask):
    """Runs in a worker thread; touches the project and the GUI only in :meth:`finished`."""

    def __init__(self, request: ExtractionRequest, iface=None,
                 on_done: Callable[[object, QgsVectorLayer | None], None] | None = None) -> None:
        super().__init__(f"Extract buildings from {request.layer.name()}", QgsTask.Flag.CanCancel)
        self.request = request
        self.iface = iface
        self.on_done = on_done
        self.outcome: Success | Failed | Cancelled | None = None
        self.result_layer: QgsVectorLayer | None = None
        self.probability_layer: QgsRasterLayer | None = None
        self.review_layer: QgsVectorLayer | None = None
        self._reader_error: str | None = None
        self._logged_block = ""  # the block the log panel last heard of
        self.area = area_from_qgis(request.extent, request.area_geometry)  # to shapely here, on the main thread
        try:  # the provider clone must be made on the main thread
            self.reader = QgisProviderReader(request.layer, request.extent)
        except FootprintError as exc:
            self.reader = None
            self._reader_error = str(exc)

    def run(self) -> bool:
        if self.reader is None:
            self.outcome = Failed(self._reader_error or "The raster cannot be read.")
            return False
        request = self.request
        try:
            with review_probabilities(request.review, request.probabilities, request.output) as probabilities:
                summary = extract(self.reader, request.parameters, output=request.output,
                                  probabilities=probabilities, area=self.area, progress=self._progress,
                                  cancel=self.isCanceled)
                places = write_review(request.output, probabilities, request.review, vectorize_options(
                    request.parameters, summary.card).mask_threshold) if request.review else None
            name = request.layer_name or f"{request.layer.name()} buildings"
            self.outcome = Success(name, request.output, summary.count, summary.seconds, summary.device,
                                   summary.warnings, places)
            return True
        except CancelledError:
            self.outcome = Cancelled()
        except FootprintError as exc:
            self.outcome = Failed(str(exc))
        except Exception as exc:  # a bug: keep QGIS alive, log the details
            QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.MessageLevel.Critical)
            self.outcome = Failed(f"Unexpected error ({type(exc).__name__}: {exc}); details in the log panel.")
        return False

    def _progress(self, fraction: float, message: str) -> None:
        """The task's bar; on a raster of several blocks also one log line per block begun (blocks done of all,
        Mpx/s, time left), in the log panel's tab of this plugin."""
        self.setProgress(100 * fraction)
        if not message.startswith("block "):
            return
        block = message.split(" ", 2)[1]  # "3/12"
        if block != self._logged_block:
            self._logged_block = block
            QgsMessageLog.logMessage(f"{self.request.layer_name or 'extraction'}: {message.split(',')[0]}", LOG_TAG,
                                     Qgis.MessageLevel.Info)

    def finished(self, ok: bool) -> None:
        if self.reader is not None:
            self.reader.close()
        outcome = self.outcome or Cancelled()
        if ok and isinstance(outcome, Success):
            source = f"{outcome.output}|layername={LAYER_NAME}" if outcome.output.lower().endswith(".gpkg") else outcome.output
            layer = QgsVectorLayer(source, outcome.layer_name, "ogr")
            if layer.isValid():
                self._add_probabilities()
                style_buildings_layer(layer, self.request, outcome)
                QgsProject.instance().addMapLayer(layer)
                self.result_layer = layer
                self._add_review()
            else:
                outcome = Failed(f"The result {outcome.output} was written but QGIS cannot open it.")
        elif self.isCanceled() and not isinstance(outcome, Failed):
            outcome = Cancelled()
        self.outcome = outcome
        self._notify(outcome)
        if self.on_done:
            self.on_done(outcome, self.result_layer)

    def _add_probabilities(self) -> None:
        """The probability raster, styled, below the buildings."""
        path = self.request.probabilities
        if not path:
            return
        raster = QgsRasterLayer(path, f"{self.request.layer.name()} building probability")
        if raster.isValid():
            style_probability_layer(raster)
            QgsProject.instance().addMapLayer(raster)
            self.probability_layer = raster

    def _add_review(self) -> None:
        """The review layer, styled by rank, above the buildings."""
        if not self.request.review:
            return
        layer = QgsVectorLayer(f"{self.request.review}|layername={REVIEW_LAYER}",
                               f"{self.request.layer.name()} review: correct here first", "ogr")
        if layer.isValid():
            style_review_layer(layer)
            QgsProject.instance().addMapLayer(layer)
            self.review_layer = layer

    def _notify(self, outcome) -> None:
        levels = Qgis.MessageLevel
        level = {Success: levels.Success, Failed: levels.Critical, Cancelled: levels.Info}[type(outcome)]
        QgsMessageLog.logMessage(outcome.message(), LOG_TAG, level)
        if isinstance(outcome, Success):
            for warning in outcome.warnings:
                QgsMessageLog.logMessage(warning, LOG_TAG, Qgis.MessageLevel.Warning)
        if self.iface is not None and self.iface.messageBar() is not None:
            seconds = 0 if level == levels.Critical else 8  # errors stay until closed
            self.iface.messageBar().pushMessage(LOG_TAG, outcome.message(), level, seconds)

