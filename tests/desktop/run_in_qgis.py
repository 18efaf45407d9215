"""Runs inside the real QGIS desktop (``qgis --code``): load a raster, click Extract buildings,
accept the dialog, wait for the task, screenshot the screen, write a JSON report, quit.

Paths come from the environment: FOOTPRINT_E2E_RASTER, FOOTPRINT_E2E_OUT (folder). The extraction runs with
two vectorising processes, which inside QGIS start with QGIS's Python, not with sys.executable (QGIS itself).
"""

import json
import os
import subprocess
import time
import traceback
from pathlib import Path

from qgis.core import QgsApplication, QgsProject, QgsVectorLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication, QDialogButtonBox
from qgis.utils import iface, plugins

OUT = Path(os.environ["FOOTPRINT_E2E_OUT"])
RASTER = os.environ["FOOTPRINT_E2E_RASTER"]
report = {"plugin_loaded": "footprint_plugin" in plugins, "started": time.time(), "messages": []}
QgsApplication.messageLog().messageReceived.connect(
    lambda message, tag, level: report["messages"].append(message) if tag == "Building footprints" else None)


def finish(error=None):
    if error:
        report["error"] = error
    report["seconds"] = time.time() - report["started"]
    (OUT / "report.json").write_text(json.dumps(report, indent=1))
    QTimer.singleShot(500, QgsApplication.exit)


def screenshot_then_finish():
    try:
        subprocess.run(["import", "-window", "root", str(OUT / "qgis_desktop.png")], check=True, timeout=60)
        report["screenshot"] = str(OUT / "qgis_desktop.png")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        report["screenshot_error"] = repr(exc)
    finish()


def wait_for_result(deadline):
    layers = [layer for layer in QgsProject.instance().mapLayers().values()
              if isinstance(layer, QgsVectorLayer) and layer.name().endswith("buildings")]
    if layers:
        layer = layers[0]
        report.update(layer_name=layer.name(), features=layer.featureCount(), crs=layer.crs().authid(),
                      fields=[f.name() for f in layer.fields()], source=layer.source(),
                      editable=bool(layer.dataProvider().capabilities() & layer.dataProvider().ChangeGeometries))
        iface.setActiveLayer(layer)
        iface.mapCanvas().refreshAllLayers()
        QTimer.singleShot(3000, screenshot_then_finish)
        return
    if time.time() > deadline:
        finish("no buildings layer appeared in time")
        return
    QTimer.singleShot(250, lambda: wait_for_result(deadline))


def accept_dialog():
    dialog = QApplication.activeModalWidget()
    if dialog is None:
        QTimer.singleShot(200, accept_dialog)
        return
    report["dialog_title"] = dialog.windowTitle()
    report["dialog_raster"] = dialog.raster_combo.currentLayer().name()
    dialog.widgets["vectorize_workers"].setValue(2)  # worker processes, started with QGIS's own Python
    dialog.output_file.setFilePath(str(OUT / "desktop_buildings.gpkg"))
    dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.Ok).click()


def start():
    try:
        import sys

        from footprint_plugin.core.workers import python_interpreter

        report.update(executable=sys.executable, interpreter=python_interpreter())
        layer = iface.addRasterLayer(RASTER, "sample")
        iface.setActiveLayer(layer)
        iface.mapCanvas().setExtent(layer.extent())
        plugin = plugins["footprint_plugin"]
        report["action_in_raster_menu"] = any(
            a.text() == "Extract buildings" for m in iface.rasterMenu().actions() if m.menu()
            for a in m.menu().actions())
        QTimer.singleShot(200, accept_dialog)
        plugin.action.trigger()  # opens the modal dialog; accept_dialog clicks "Extract"
        wait_for_result(time.time() + 300)
    except Exception:  # noqa: BLE001 - reported to the test
        finish(traceback.format_exc())


QTimer.singleShot(2000, start)
