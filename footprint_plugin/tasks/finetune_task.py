"""Fine-tuning in the background: a QgsTask around ``trainer.finetune``; the GUI is touched only in ``finished()``."""

from __future__ import annotations

import traceback
from collections.abc import Callable

from qgis.core import Qgis, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from ..core.errors import FootprintError

LOG_TAG = "Building footprints"


class FinetuneTask(QgsTask):
    """Runs ``trainer.finetune.finetune(request)``; the current held-out F1 shows in the task's description."""

    status = pyqtSignal(str)  # from the worker thread; delivered to the task's (main) thread

    def __init__(self, request, iface=None, on_done: Callable[[object, str | None], None] | None = None,
                 workdir=None, title: str = "Fine-tune the building model") -> None:
        super().__init__(title, QgsTask.Flag.CanCancel)
        self.request = request
        self.iface = iface
        self.on_done = on_done
        self.workdir = workdir  # a TemporaryDirectory with the layers written for the request, removed at the end
        self.title = title
        self.result = None  # trainer.finetune.FinetuneResult
        self.error: str | None = None
        self.warnings: list[str] = []  # e.g. rasters skipped, shown when the task ends
        self.status.connect(self._show_status)

    def _show_status(self, text: str) -> None:
        self.setDescription(f"{self.title}: {text}")

    def run(self) -> bool:
        try:
            from ..setup.trainer_access import trainer_module

            finetune = trainer_module("finetune")
            self.status.emit("preparing chips")

            def progress(fraction: float, message: str) -> None:
                self.status.emit(message)
                self.setProgress(100 * fraction)

            self.result = finetune.finetune(self.request, progress, self.isCanceled, self.warnings.append)
            return not self.result.cancelled
        except FootprintError as exc:
            self.error = str(exc)
        except Exception as exc:  # a bug: keep QGIS alive, log the details
            QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.MessageLevel.Critical)
            self.error = f"Unexpected error ({type(exc).__name__}: {exc}); details in the log panel."
        return False

    def message(self) -> tuple[str, object]:
        """The line for the message bar and its level."""
        levels = Qgis.MessageLevel
        if self.error is not None:
            return f"Fine-tuning failed: {self.error}", levels.Critical
        if self.result is None:
            return "Fine-tuning cancelled; nothing was written.", levels.Info
        text = self.result.message()
        if self.result.output:
            text += " (offered under Model in Extract buildings)"
        return ("Fine-tuning " + text if self.result.cancelled else text), (
            levels.Info if self.result.cancelled else levels.Success)

    def finished(self, ok: bool) -> None:
        if self.workdir is not None:
            self.workdir.cleanup()
            self.workdir = None
        output = self.result.output if self.result is not None else None
        if output:
            from ..qgis_io.weights_history import remember_weights

            remember_weights(output)
        bar = self.iface.messageBar() if self.iface is not None else None
        for warning in self.warnings:
            QgsMessageLog.logMessage(warning, LOG_TAG, Qgis.MessageLevel.Warning)
            if bar is not None:
                bar.pushMessage(LOG_TAG, warning, Qgis.MessageLevel.Warning, 0)
        text, level = self.message()
        QgsMessageLog.logMessage(text, LOG_TAG, level)
        if bar is not None:
            bar.pushMessage(LOG_TAG, text, level, 0 if level == Qgis.MessageLevel.Critical else 15)
        if self.on_done:
            self.on_done(self, output)
