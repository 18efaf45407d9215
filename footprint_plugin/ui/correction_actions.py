"""The correction loop's actions: "Fine-tune on my corrections" and "Evaluate against reference"
(toolbar and Raster menu), added and removed by the plugin."""

from __future__ import annotations

import tempfile

from qgis.core import Qgis, QgsApplication, QgsProject, QgsRasterLayer, QgsVectorLayer, QgsWkbTypes
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from ..core.resource_files import icon_path

TITLE = "Building footprints"


class CorrectionActions:
    """Owned by FootprintPlugin; remembers the last extraction so that its layers are preselected."""

    def __init__(self, plugin, menu: str) -> None:
        self.plugin = plugin
        self.iface = plugin.iface
        self.menu = menu
        self.actions: list[QAction] = []
        self.last_raster_id: str | None = None
        self.last_buildings_id: str | None = None  # the layer the last Extract added
        self.tasks: list = []

    # ------------------------------------------------------------------ life cycle

    def init_gui(self) -> None:
        for text, name, icon, tip, slot in (
            ("Fine-tune on my corrections", "footprint_finetune", "/mActionRefresh.svg",
             "Train the model on the buildings you corrected, then extract the rest with the new weights", self.finetune),
            ("Evaluate against reference", "footprint_evaluate", "/algorithms/mAlgorithmCheckGeometry.svg",
             "Score predicted buildings against reference buildings and show true/false positives and misses",
             self.evaluate),
        ):
            theme_icon = QgsApplication.getThemeIcon(icon)  # QGIS's own icons tell the three buttons apart
            action = QAction(QIcon(icon_path()) if theme_icon.isNull() else theme_icon, text, self.iface.mainWindow())
            action.setObjectName(name)
            action.setToolTip(tip)
            action.triggered.connect(slot)
            self.iface.addToolBarIcon(action)
            self.iface.addPluginToRasterMenu(self.menu, action)
            self.actions.append(action)

    def unload(self) -> None:
        for action in self.actions:
            self.iface.removePluginRasterMenu(self.menu, action)
            self.iface.removeToolBarIcon(action)
            action.deleteLater()
        self.actions = []
        for task in list(self.tasks):
            task.cancel()

    def extraction_finished(self, raster_layer, buildings_layer) -> None:
        """Called when an Extract task added its layer."""
        if buildings_layer is None:
            return
        self.last_buildings_id = buildings_layer.id()
        try:
            self.last_raster_id = raster_layer.id() if raster_layer is not None else None
        except RuntimeError:  # the raster was removed from the project meanwhile
            self.last_raster_id = None

    def _last(self):
        """The raster and buildings layer of the last extraction; after a project reload, a layer that Extract
        added in an earlier session (its metadata carries the "footprint" keywords)."""
        project = QgsProject.instance()
        raster = project.mapLayer(self.last_raster_id) if self.last_raster_id else None
        buildings = project.mapLayer(self.last_buildings_id) if self.last_buildings_id else None
        if not isinstance(buildings, QgsVectorLayer):
            buildings = next((layer for layer in project.mapLayers().values() if isinstance(layer, QgsVectorLayer)
                              and "footprint" in layer.metadata().keywords()), None)
        return (raster if isinstance(raster, QgsRasterLayer) else None, buildings)

    def _message(self, text: str, level=Qgis.MessageLevel.Warning, seconds: int = 10) -> None:
        self.iface.messageBar().pushMessage(TITLE, text, level, seconds)

    def _missing(self) -> bool:
        from ..setup.dependencies import missing_packages

        missing = missing_packages()
        if missing and hasattr(self.plugin, "show_installer"):
            self.plugin.show_installer(missing)
        elif missing:
            from ..setup.dependencies import install_hint

            self._message(install_hint(missing), Qgis.MessageLevel.Critical, 0)
        return bool(missing)

    # ------------------------------------------------------------------ fine-tune

    def finetune_dialog(self):
        from .finetune_dialog import FinetuneDialog

        raster, buildings = self._last()
        return FinetuneDialog(self.iface, self.iface.mainWindow(), raster=raster, buildings=buildings)

    def finetune(self) -> None:
        """Open the dialog, then fine-tune in the background."""
        if self._missing():
            return
        from ..core.errors import FootprintError

        dialog = self.finetune_dialog()
        if not dialog.exec():
            return
        workdir = tempfile.TemporaryDirectory(prefix="footprint-finetune-input-")
        try:
            request = dialog.request(workdir.name)
        except FootprintError as exc:
            workdir.cleanup()
            self._message(str(exc))
            return
        title = f"Fine-tune on {dialog.buildings_combo.currentLayer().name()}"
        self.start_finetune(request, workdir, title)

    def start_finetune(self, request, workdir=None, title: str = "Fine-tune the building model", on_done=None):
        """Queue a FinetuneTask; returns it."""
        from ..tasks.finetune_task import FinetuneTask

        def done(task, output) -> None:
            if task in self.tasks:
                self.tasks.remove(task)
            if on_done:
                on_done(task, output)

        task = FinetuneTask(request, self.iface, done, workdir, title)
        self.tasks.append(task)
        QgsApplication.taskManager().addTask(task)
        return task

    # ------------------------------------------------------------------ evaluate

    def evaluate_parameters(self) -> dict:
        """Preselected: the last extracted layer as PREDICTED, another polygon layer as REFERENCE."""
        _, buildings = self._last()
        from ..processing.evaluate_algorithm import REVIEW_LAYERS

        review_names = {title for _, title, _, _ in REVIEW_LAYERS.values()}
        polygons = [layer for layer in QgsProject.instance().mapLayers().values()
                    if isinstance(layer, QgsVectorLayer) and layer.geometryType() == QgsWkbTypes.GeometryType.PolygonGeometry
                    and layer is not buildings and layer.name() not in review_names]
        parameters = {}
        if buildings is not None:
            parameters["PREDICTED"] = buildings.id()
        if polygons:
            parameters["REFERENCE"] = polygons[0].id()
        return parameters

    def evaluate(self) -> None:
        """The Processing dialog of footprint:evaluate_buildings; it adds the three styled layers."""
        if self._missing():
            return
        import processing

        results = processing.execAlgorithmDialog("footprint:evaluate_buildings", self.evaluate_parameters())
        if results and "F1" in results:
            self._message(f"F1 {results['F1']:.3f}, precision {results['PRECISION']:.3f}, recall {results['RECALL']:.3f}: "
                          "true positives green, false positives red, false negatives blue.", Qgis.MessageLevel.Success)
