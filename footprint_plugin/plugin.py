"""The QGIS plugin: toolbar button, Raster menu entry and Processing provider."""

from __future__ import annotations

from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .core.resource_files import icon_path
from .setup.dependencies import missing_packages

MENU = "&Building footprints"
TITLE = "Building footprints"


class FootprintPlugin:
    """Created by ``classFactory``; everything it adds, ``unload`` removes."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.action: QAction | None = None
        self.provider = None
        self.tasks: list = []  # keep running tasks referenced
        self.installer = None  # the dependency installer dialog, while open
        self.corrections = None  # Fine-tune on my corrections / Evaluate against reference

    def initProcessing(self) -> None:  # noqa: N802 - QGIS API
        """Register the Processing provider (also called by qgis_process, without a GUI)."""
        if self.provider is not None:
            return
        from .processing.provider import FootprintProvider

        self.provider = FootprintProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 - QGIS API
        self.action = QAction(QIcon(icon_path()), "Extract buildings", self.iface.mainWindow())
        self.action.setObjectName("footprint_extract_buildings")
        self.action.setToolTip("Extract building footprints from a raster with a U-Net")
        self.action.triggered.connect(self.run)
        self.iface.addToolBarIcon(self.action)
        self.iface.addPluginToRasterMenu(MENU, self.action)
        from .ui.correction_actions import CorrectionActions

        self.corrections = CorrectionActions(self, MENU)
        self.corrections.init_gui()
        self.initProcessing()

    def unload(self) -> None:
        if self.action is not None:
            self.iface.removePluginRasterMenu(MENU, self.action)
            self.iface.removeToolBarIcon(self.action)
            self.action.deleteLater()
            self.action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        if self.installer is not None:
            self.installer.close()
            self.installer = None
        if self.corrections is not None:
            self.corrections.unload()
            self.corrections = None

    def run(self) -> None:
        """Open the dialog and start the background task."""
        missing = missing_packages()
        if missing:
            self.show_installer(missing)
            return
        from .core.errors import FootprintError
        from .ui.extract_dialog import ExtractDialog

        dialog = ExtractDialog(self.iface, self.iface.mainWindow())
        if not dialog.exec():
            return
        try:
            request = dialog.request()
        except FootprintError as exc:
            self.iface.messageBar().pushMessage(TITLE, str(exc), Qgis.MessageLevel.Warning, 8)
            return
        self.start(request)

    def show_installer(self, missing: list[str]):
        """The dependency installer (not modal: QGIS stays usable while pip runs); returns the dialog."""
        from .setup.dependencies import dependency_folder, profile_dependency_folder
        from .ui.install_dialog import InstallDialog

        if self.installer is None or (self.installer.task is None and not self.installer.isVisible()):
            target = profile_dependency_folder() or dependency_folder(QgsApplication.qgisSettingsDirPath())
            self.installer = InstallDialog(missing, target, self.iface.mainWindow())
        self.installer.show()
        self.installer.raise_()
        self.installer.activateWindow()
        return self.installer

    def start(self, request, on_done=None):
        """Queue an extraction in the task manager; returns the task."""
        from .tasks.extraction_task import ExtractionTask

        def finished(outcome, layer) -> None:
            if task in self.tasks:
                self.tasks.remove(task)
            if self.corrections is not None:
                self.corrections.extraction_finished(request.layer, layer)  # preselected for fine-tuning
            if on_done:
                on_done(outcome, layer)

        task = ExtractionTask(request, self.iface, finished)
        self.tasks.append(task)
        QgsApplication.taskManager().addTask(task)
        return task
