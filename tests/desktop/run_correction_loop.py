"""Runs inside the real QGIS desktop (``qgis --code``): the correction loop, clicked as a user would.

Extract buildings from the sample raster; "correct" the new layer (its features replaced by the reference
buildings, saved); click "Fine-tune on my corrections" (the dialog preselects that layer and raster, area =
current map view), train for FOOTPRINT_E2E_MINUTES; click Extract again and choose the fine-tuned weights
the Model list now offers; click "Evaluate against reference" and run its Processing dialog (the new buildings
against the corrected ones). Screenshots, then a JSON report, then quit.

Environment: FOOTPRINT_E2E_RASTER, FOOTPRINT_E2E_LABELS, FOOTPRINT_E2E_OUT (folder), FOOTPRINT_E2E_MINUTES.
"""

import json
import os
import subprocess
import time
import traceback
from pathlib import Path

from qgis.core import QgsApplication, QgsFeature, QgsProject, QgsVectorLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication, QDialogButtonBox
from qgis.utils import iface, plugins

OUT = Path(os.environ["FOOTPRINT_E2E_OUT"])
RASTER = os.environ["FOOTPRINT_E2E_RASTER"]
LABELS = os.environ["FOOTPRINT_E2E_LABELS"]
MINUTES = float(os.environ.get("FOOTPRINT_E2E_MINUTES", "0.5"))
WEIGHTS = OUT / "finetuned.safetensors"
report = {"plugin_loaded": "footprint_plugin" in plugins, "started": time.time(), "messages": [], "descriptions": [],
          "steps": []}
QgsApplication.messageLog().messageReceived.connect(
    lambda message, tag, level: report["messages"].append(message) if tag == "Building footprints" else None)


def step(name):
    report["steps"].append([name, round(time.time() - report["started"], 1)])


def finish(error=None):
    if error:
        report["error"] = error
    report["seconds"] = time.time() - report["started"]
    (OUT / "report.json").write_text(json.dumps(report, indent=1))
    QTimer.singleShot(500, QgsApplication.exit)


def guarded(function):
    def run(*args):
        try:
            function(*args)
        except Exception:  # noqa: BLE001 - reported to the test
            finish(traceback.format_exc())
    return run


def screenshot(name):
    path = OUT / f"{name}.png"
    try:
        subprocess.run(["import", "-window", "root", str(path)], check=True, timeout=60)
        report.setdefault("screenshots", []).append(str(path))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        report["screenshot_error"] = repr(exc)


def when_modal(then):
    """Call ``then(dialog)`` once a modal dialog is open."""
    def poll():
        dialog = QApplication.activeModalWidget()
        if dialog is None:
            QTimer.singleShot(200, poll)
            return
        guarded(then)(dialog)
    QTimer.singleShot(200, poll)


def when_window(title, then, deadline):
    """Call ``then(window)`` once a visible top-level window whose title starts with ``title`` is open (the
    Processing dialog is shown before its exec(), so it is not an application-modal widget)."""
    def poll():
        windows = [w for w in QApplication.topLevelWidgets() if w.isVisible() and w.windowTitle().startswith(title)]
        if windows:
            guarded(then)(windows[0])
        elif time.time() > deadline:
            finish(f"no window {title!r} appeared")
        else:
            QTimer.singleShot(200, poll)
    QTimer.singleShot(200, poll)


def wait_for(condition, then, deadline, what):
    def poll():
        try:
            value = condition()
        except Exception:  # noqa: BLE001
            finish(traceback.format_exc())
            return
        if value:
            guarded(then)(value)
        elif time.time() > deadline:
            finish(f"timed out waiting for {what}")
        else:
            QTimer.singleShot(250, poll)
    poll()


def layer_named(name):
    layers = QgsProject.instance().mapLayersByName(name)
    return layers[0] if layers else None


# ----------------------------------------------------------------------------- 1. Extract with the bundled model


@guarded
def start():
    layer = iface.addRasterLayer(RASTER, "sample")
    iface.setActiveLayer(layer)
    iface.mapCanvas().setExtent(layer.extent())
    report["actions"] = [a.text() for m in iface.rasterMenu().actions() if m.menu() for a in m.menu().actions()]

    def accept(dialog):
        dialog.output_file.setFilePath(str(OUT / "first.gpkg"))
        report["first_model"] = dialog.weights_combo.currentText()
        dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok).click()

    step("extract 1")
    when_modal(accept)
    plugins["footprint_plugin"].action.trigger()
    wait_for(lambda: layer_named("sample buildings"), correct, time.time() + 180, "the first extraction")


# ----------------------------------------------------------------------------- 2. Correct, then fine-tune


def correct(layer):
    report["first_features"] = layer.featureCount()
    reference = QgsVectorLayer(LABELS, "reference", "ogr")
    layer.startEditing()
    layer.deleteFeatures([f.id() for f in layer.getFeatures()])
    for source in reference.getFeatures():
        geometry = source.geometry()
        parts = geometry.asGeometryCollection() if geometry.isMultipart() else [geometry]
        feature = QgsFeature(layer.fields())
        feature.setGeometry(max(parts, key=lambda part: part.area()))  # the layer holds single polygons
        layer.addFeature(feature)
    assert layer.commitChanges(), layer.commitErrors()
    report["corrected_features"] = layer.featureCount()
    iface.setActiveLayer(QgsProject.instance().mapLayersByName("sample")[0])  # the dialog must not rely on it

    def accept(dialog):
        report["finetune_dialog"] = {"title": dialog.windowTitle(), "raster": dialog.raster_combo.currentLayer().name(),
                                     "buildings": dialog.buildings_combo.currentLayer().name(),
                                     "area": dialog.area_combo.currentText()}
        dialog.minutes.setValue(MINUTES)
        dialog.output_file.setFilePath(str(WEIGHTS))
        screenshot("finetune_dialog")
        dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok).click()

    step("fine-tune")
    when_modal(accept)
    action = next(a for a in plugins["footprint_plugin"].corrections.actions if a.text() == "Fine-tune on my corrections")
    action.trigger()
    watch_training(time.time() + 60 * MINUTES + 180)


def watch_training(deadline):
    tasks = QgsApplication.taskManager().activeTasks()
    for task in tasks:
        if task.description() not in report["descriptions"]:
            report["descriptions"].append(task.description())
            if "F1 " in task.description() and "training_screenshot" not in report:
                report["training_screenshot"] = True
                screenshot("training")
    if any("F1 on your held-out area" in m for m in report["messages"]) and not tasks:
        step("fine-tuned")
        extract_again()
    elif any(m.startswith("Fine-tuning failed") for m in report["messages"]):
        finish("fine-tuning failed: " + report["messages"][-1])
    elif time.time() > deadline:
        finish("timed out waiting for fine-tuning")
    else:
        QTimer.singleShot(250, lambda: watch_training(deadline))


# ----------------------------------------------------------------------------- 3. Extract with the new weights


def extract_again():
    def accept(dialog):
        combo = dialog.weights_combo
        offered = [combo.itemText(i) for i in range(combo.count())]
        report["models_offered"] = offered
        index = next(i for i in range(combo.count()) if combo.itemData(i) == str(WEIGHTS.resolve()))
        combo.setCurrentIndex(index)
        dialog.output_file.setFilePath(str(OUT / "second.gpkg"))
        dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok).click()

    step("extract 2")
    when_modal(accept)
    QgsProject.instance().mapLayersByName("sample buildings")[0].setName("corrected buildings")
    plugins["footprint_plugin"].action.trigger()
    wait_for(lambda: layer_named("sample buildings"), done, time.time() + 180, "the second extraction")


def done(layer):
    step("extracted 2")
    report["second_features"] = layer.featureCount()
    report["second_abstract"] = layer.metadata().abstract()
    iface.setActiveLayer(layer)
    iface.mapCanvas().refreshAllLayers()

    QTimer.singleShot(1000, guarded(evaluate))


# ----------------------------------------------------------------------------- 4. Evaluate against the reference

REVIEW = ("True positives", "False positives", "False negatives")


def review_layers(before):
    added = [QgsProject.instance().mapLayer(i) for i in set(QgsProject.instance().mapLayers()) - before]
    found = {layer.name(): layer for layer in added if layer.name() in REVIEW}
    return found if len(found) == len(REVIEW) else None


def evaluate():
    before = set(QgsProject.instance().mapLayers())

    def run(dialog):
        report["evaluate_dialog"] = dialog.windowTitle()
        dialog.runButton().click()
        wait_for(lambda: review_layers(before), lambda layers: close(dialog, layers), time.time() + 120,
                 "the review layers")

    def close(dialog, layers):
        report["review_layers"] = {}
        for name, layer in layers.items():
            colour = layer.renderer().symbol().color()
            report["review_layers"][name] = {"features": layer.featureCount(),
                                             "colour": [colour.red(), colour.green(), colour.blue()]}
        QTimer.singleShot(500, dialog.close)  # execAlgorithmDialog returns; the action pushes the F1 message

    def shoot():
        report["message_bar"] = [item.text() for item in iface.messageBar().items()]
        iface.mapCanvas().refreshAllLayers()
        QTimer.singleShot(2500, guarded(lambda: (screenshot("correction_loop"), finish())))

    step("evaluate")
    when_window("Evaluate buildings against a reference", run, time.time() + 60)
    action = next(a for a in plugins["footprint_plugin"].corrections.actions if a.text() == "Evaluate against reference")
    action.trigger()  # returns when the Processing dialog is closed
    step("evaluated")
    QTimer.singleShot(200, guarded(shoot))


QTimer.singleShot(2000, start)
