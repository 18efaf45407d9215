"""Runs inside the real QGIS desktop (``qgis --code``) on a profile whose Python has no torch: click Extract
buildings, see the installer, click Install, wait for pip, then click Extract buildings again and extract
(no restart). Screenshots at each step, a JSON report, quit.

Paths come from the environment: FOOTPRINT_E2E_RASTER, FOOTPRINT_E2E_OUT (folder).
"""

import json
import os
import subprocess
import time
import traceback
from pathlib import Path

from qgis.core import QgsApplication, QgsProject, QgsVectorLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication, QDialogButtonBox, QLabel, QTextBrowser
from qgis.utils import iface, plugins

OUT = Path(os.environ["FOOTPRINT_E2E_OUT"])
RASTER = os.environ["FOOTPRINT_E2E_RASTER"]
report = {"plugin_loaded": "footprint_plugin" in plugins, "started": time.time(), "screenshots": [], "messages": []}
QgsApplication.messageLog().messageReceived.connect(
    lambda message, tag, level: report["messages"].append(message[:300]) if tag == "Building footprints" else None)


def screenshot(name):
    path = OUT / name
    try:
        subprocess.run(["import", "-window", "root", str(path)], check=True, timeout=60)
        report["screenshots"].append(str(path))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        report.setdefault("screenshot_errors", []).append(repr(exc))


def finish(error=None):
    if error:
        report["error"] = error
    report["seconds"] = time.time() - report["started"]
    (OUT / "report.json").write_text(json.dumps(report, indent=1))
    QTimer.singleShot(500, QgsApplication.exit)


def guarded(step):
    def run(*args):
        try:
            step(*args)
        except Exception:  # noqa: BLE001 - reported to the test
            finish(traceback.format_exc())
    return run


@guarded
def wait_for_layer(deadline):
    layers = [layer for layer in QgsProject.instance().mapLayers().values()
              if isinstance(layer, QgsVectorLayer) and layer.name().endswith("buildings")]
    if layers:
        report.update(features=layers[0].featureCount(), layer_name=layers[0].name())
        iface.setActiveLayer(layers[0])
        iface.mapCanvas().refreshAllLayers()
        QTimer.singleShot(3000, guarded(lambda: (screenshot("qgis_after_install.png"), finish())))
        return
    if time.time() > deadline:
        finish("no buildings layer appeared in time")
        return
    QTimer.singleShot(250, lambda: wait_for_layer(deadline))


@guarded
def accept_extract_dialog():
    dialog = QApplication.activeModalWidget()
    if dialog is None:
        QTimer.singleShot(200, accept_extract_dialog)
        return
    report["extract_dialog_title"] = dialog.windowTitle()
    if not hasattr(dialog, "output_file"):  # e.g. QGIS's "An error has occurred while executing Python code"
        texts = [w.toPlainText() for w in dialog.findChildren(QTextBrowser)] + [w.text() for w in dialog.findChildren(QLabel)]
        finish(f"{dialog.windowTitle()}: " + "\n".join(t for t in texts if t)[-4000:])
        return
    dialog.output_file.setFilePath(str(OUT / "desktop_buildings.gpkg"))
    dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok).click()


@guarded
def extract_again():
    from footprint_plugin.setup.dependencies import missing_packages

    report["missing_after"] = missing_packages()
    plugin = plugins["footprint_plugin"]
    QTimer.singleShot(200, accept_extract_dialog)
    plugin.action.trigger()  # the Extract dialog this time (modal); accept_extract_dialog clicks "Extract"
    wait_for_layer(time.time() + 300)


@guarded
def wait_for_install(dialog, deadline, shot_midway):
    if shot_midway and dialog.progress.value() >= 15:
        screenshot("qgis_installer_running.png")
        shot_midway = False
    if dialog.outcome is None:
        if time.time() > deadline:
            finish("the installation did not finish in time")
            return
        QTimer.singleShot(500, lambda: wait_for_install(dialog, deadline, shot_midway))
        return
    report.update(install_ok=dialog.outcome.ok, install_message=dialog.outcome.message[-3000:],
                  install_seconds=time.time() - report["install_started"], restart_needed=dialog.outcome.restart_needed,
                  status=dialog.status.text())
    screenshot("qgis_installer_done.png")
    if not dialog.outcome.ok:
        finish()
        return
    dialog.close()
    QTimer.singleShot(1000, extract_again)


@guarded
def click_install():
    dialog = plugins["footprint_plugin"].installer
    screenshot("qgis_installer.png")
    report["install_started"] = time.time()
    dialog.install_button.click()
    wait_for_install(dialog, time.time() + 900, True)


@guarded
def start():
    from footprint_plugin.setup.dependencies import missing_packages

    report["missing_before"] = missing_packages()
    layer = iface.addRasterLayer(RASTER, "sample")
    iface.setActiveLayer(layer)
    iface.mapCanvas().setExtent(layer.extent())
    plugin = plugins["footprint_plugin"]
    plugin.action.trigger()  # no torch: the installer dialog (not modal)
    dialog = plugin.installer
    report["installer_visible"] = bool(dialog and dialog.isVisible())
    report["installer_title"] = dialog.windowTitle() if dialog else None
    report["installer_target"] = str(dialog.target) if dialog else None
    report["cuda_enabled"] = bool(dialog and dialog.cuda.isEnabled())
    if not report["installer_visible"]:
        finish("clicking Extract buildings did not open the installer")
        return
    QTimer.singleShot(1500, click_install)


QTimer.singleShot(2000, start)
