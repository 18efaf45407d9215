"""The correction loop in QGIS: footprint:train_model and footprint:evaluate_buildings through processing.run
on the real sample raster and its OpenStreetMap buildings, the fine-tune dialog, task and weights history."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from qgis.core import (
    Qgis,
    QgsApplication,
    QgsFeatureRequest,
    QgsProcessingException,
    QgsProcessingFeatureSourceDefinition,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsSettings,
    QgsVectorLayer,
)

import footprint_plugin
from footprint_plugin.core.weights import read_weights_file

from .helpers import DEFAULT_WEIGHTS, SAMPLE_LABELS, SAMPLE_RASTER

TINY = 0.05  # minutes of training in these tests


@pytest.fixture()
def sample_layer(qgis_new_project):
    layer = QgsRasterLayer(str(SAMPLE_RASTER), "sample")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    return layer


@pytest.fixture()
def labels_layer(qgis_new_project):
    layer = QgsVectorLayer(str(SAMPLE_LABELS), "osm", "ogr")
    assert layer.isValid() and layer.featureCount() == 85
    QgsProject.instance().addMapLayer(layer)
    return layer


@pytest.fixture(scope="module")
def predicted_file(tmp_path_factory):
    """The bundled model's buildings on the sample raster, as Extract writes them."""
    from footprint_plugin.core.extract import extract
    from footprint_plugin.core.parameters import build_parameters
    from footprint_plugin.core.readers import RasterioReader

    path = tmp_path_factory.mktemp("pred") / "sample_buildings.gpkg"
    with RasterioReader(str(SAMPLE_RASTER)) as reader:
        extract(reader, build_parameters({"device": "cpu"}), output=path)
    return path


def cli_scores(truth: str, pred: str, iou: float = 0.5, min_area: float = 20.0) -> dict:
    """What `python -m trainer evaluate` computes for the two files."""
    from trainer.evaluate import evaluate, read_vector_pair

    truth_images, pred_images, _ = read_vector_pair(truth, pred)
    return evaluate(truth_images, pred_images, iou, min_area)


def fill_colour(layer: QgsVectorLayer) -> tuple[int, int, int]:
    colour = layer.renderer().symbol().color()
    return colour.red(), colour.green(), colour.blue()


# ----------------------------------------------------------------------------- evaluate_buildings


def test_evaluate_matches_the_cli_scorer_and_loads_styled_layers(provider, labels_layer, predicted_file, tmp_path):
    import processing

    predicted = QgsVectorLayer(f"{predicted_file}|layername=buildings", "predicted", "ogr")
    assert predicted.isValid() and predicted.featureCount() > 20
    QgsProject.instance().addMapLayer(predicted)
    outputs = {name: str(tmp_path / f"{name.lower()}.gpkg") for name in ("TRUE_POSITIVES", "FALSE_POSITIVES",
                                                                          "FALSE_NEGATIVES")}
    result = processing.run("footprint:evaluate_buildings", {"PREDICTED": predicted, "REFERENCE": labels_layer,
                                                             "IOU": 0.5, "MIN_AREA": 20.0, **outputs})
    expected = cli_scores(str(SAMPLE_LABELS), str(predicted_file))
    assert 0.2 < expected["f1"] < 0.95
    assert (result["F1"], result["PRECISION"], result["RECALL"]) == (expected["f1"], expected["precision"],
                                                                      expected["recall"])
    counts = {}
    for name, key in (("TRUE_POSITIVES", "tp"), ("FALSE_POSITIVES", "fp"), ("FALSE_NEGATIVES", "fn")):
        layer = QgsVectorLayer(result[name], name, "ogr")
        assert layer.isValid(), result[name]
        counts[key] = layer.featureCount()
        assert layer.crs().isValid() and not layer.crs().isGeographic()  # scored in metres, as the CLI does
        del layer
    assert counts == {key: expected[key] for key in ("tp", "fp", "fn")}
    tp = QgsVectorLayer(result["TRUE_POSITIVES"], "tp", "ogr")
    ious = [f["iou"] for f in tp.getFeatures()]
    assert ious and min(ious) >= 0.5 and max(ious) <= 1.0
    del tp

    # A stricter IoU finds fewer matches: the parameter reaches the scorer.
    strict = processing.run("footprint:evaluate_buildings", {"PREDICTED": predicted, "REFERENCE": labels_layer,
                                                             "IOU": 0.75, "MIN_AREA": 20.0, **{
                                                                 k: "TEMPORARY_OUTPUT" for k in outputs}})
    assert strict["F1"] == cli_scores(str(SAMPLE_LABELS), str(predicted_file), 0.75)["f1"] < result["F1"]


def test_evaluate_loads_green_red_blue_layers(provider, labels_layer, predicted_file):
    import processing

    predicted = QgsVectorLayer(f"{predicted_file}|layername=buildings", "predicted", "ogr")
    QgsProject.instance().addMapLayer(predicted)
    before = set(QgsProject.instance().mapLayers())
    result = processing.runAndLoadResults("footprint:evaluate_buildings", {
        "PREDICTED": predicted, "REFERENCE": labels_layer, "TRUE_POSITIVES": "TEMPORARY_OUTPUT",
        "FALSE_POSITIVES": "TEMPORARY_OUTPUT", "FALSE_NEGATIVES": "TEMPORARY_OUTPUT"})
    QgsApplication.processEvents()
    added = {QgsProject.instance().mapLayer(i).name(): QgsProject.instance().mapLayer(i)
             for i in set(QgsProject.instance().mapLayers()) - before}
    assert set(added) == {"True positives", "False positives", "False negatives"}, set(added)
    assert fill_colour(added["True positives"]) == (0, 170, 0)
    assert fill_colour(added["False positives"]) == (220, 0, 0)
    assert fill_colour(added["False negatives"]) == (0, 90, 255)
    expected = cli_scores(str(SAMPLE_LABELS), str(predicted_file))
    assert added["True positives"].featureCount() == expected["tp"] > 0
    assert added["False negatives"].featureCount() == expected["fn"]
    assert result["F1"] == expected["f1"]


def test_evaluate_area_and_selected_reference(provider, labels_layer, predicted_file):
    import processing

    predicted = QgsVectorLayer(f"{predicted_file}|layername=buildings", "predicted", "ogr")
    QgsProject.instance().addMapLayer(predicted)
    extent = labels_layer.extent()
    west = QgsRectangle(extent.xMinimum(), extent.yMinimum(), extent.center().x(), extent.yMaximum())
    area = QgsVectorLayer("Polygon?crs=EPSG:4326", "area", "memory")  # another CRS than the layers (3857)
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsFeature, QgsGeometry

    to_4326 = QgsCoordinateTransform(labels_layer.crs(), QgsCoordinateReferenceSystem("EPSG:4326"),
                                     QgsProject.instance())
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromRect(to_4326.transformBoundingBox(west)))
    area.dataProvider().addFeatures([feature])
    QgsProject.instance().addMapLayer(area)
    sinks = {k: "TEMPORARY_OUTPUT" for k in ("TRUE_POSITIVES", "FALSE_POSITIVES", "FALSE_NEGATIVES")}
    whole = processing.run("footprint:evaluate_buildings", {"PREDICTED": predicted, "REFERENCE": labels_layer,
                                                            "MIN_AREA": 0.0, **sinks})
    half = processing.run("footprint:evaluate_buildings", {"PREDICTED": predicted, "REFERENCE": labels_layer,
                                                           "AREA": area, "MIN_AREA": 0.0, **sinks})
    inside_truth = sum(1 for f in labels_layer.getFeatures()
                       if west.contains(f.geometry().pointOnSurface().asPoint()))
    counted = half["TRUE_POSITIVES"].featureCount() + half["FALSE_NEGATIVES"].featureCount()
    assert 10 < counted == inside_truth < 85
    assert whole["TRUE_POSITIVES"].featureCount() + whole["FALSE_NEGATIVES"].featureCount() == 85
    # Only the selected reference buildings: everything else of the reference is ignored.
    ids = [f.id() for f in labels_layer.getFeatures(QgsFeatureRequest().setLimit(10))]
    labels_layer.selectByIds(ids)
    selected = processing.run("footprint:evaluate_buildings", {
        "PREDICTED": predicted, "REFERENCE": QgsProcessingFeatureSourceDefinition(labels_layer.id(), True),
        "MIN_AREA": 0.0, **sinks})
    assert selected["TRUE_POSITIVES"].featureCount() + selected["FALSE_NEGATIVES"].featureCount() == 10


def test_evaluate_bad_input_is_one_clear_error(provider, labels_layer, tmp_path):
    import processing

    empty = QgsVectorLayer("Polygon?crs=EPSG:3857", "nothing", "memory")
    QgsProject.instance().addMapLayer(empty)
    message = ""
    try:
        processing.run("footprint:evaluate_buildings", {"PREDICTED": labels_layer, "REFERENCE": labels_layer,
                                                        "AREA": empty, "TRUE_POSITIVES": "TEMPORARY_OUTPUT",
                                                        "FALSE_POSITIVES": "TEMPORARY_OUTPUT",
                                                        "FALSE_NEGATIVES": "TEMPORARY_OUTPUT"})
    except QgsProcessingException as exc:
        message = str(exc)
    assert message == "The AREA layer holds no polygons."


# ----------------------------------------------------------------------------- train_model


def _card_finetune(path) -> dict:
    card, _ = read_weights_file(str(path))
    return {**card.training_data["finetune"], **card.metrics["finetune"], "base_model": card.training_data["base_model"]}


def test_train_model_writes_weights_with_before_after_f1(provider, sample_layer, labels_layer, tmp_path, clean_history):
    import processing

    from footprint_plugin.qgis_io.weights_history import recent_weights

    labels_layer.startEditing()  # unsaved edits count: the layer is written to a temporary file
    doomed = [f.id() for f in labels_layer.getFeatures(QgsFeatureRequest().setLimit(5))]
    assert labels_layer.deleteFeatures(doomed)
    output = tmp_path / "tuned.safetensors"
    feedback = QgsProcessingFeedback()
    started = time.monotonic()
    result = processing.run("footprint:train_model", {"INPUT": sample_layer, "BUILDINGS": labels_layer,
                                                      "MINUTES": TINY, "OUTPUT": str(output)}, feedback=feedback)
    seconds = time.monotonic() - started
    labels_layer.rollBack()
    assert result["OUTPUT"] == str(output) and output.is_file() and result["CANCELLED"] is False
    card = _card_finetune(output)
    assert card["buildings"] == 80  # 85 minus the 5 deleted, unsaved
    assert card["base_model"] == read_weights_file(str(DEFAULT_WEIGHTS))[0].name
    assert card["val_f1_before"] == pytest.approx(result["F1_BEFORE"], abs=1e-4)
    assert card["val_f1_after"] == pytest.approx(result["F1_AFTER"], abs=1e-4)
    assert 0 < result["F1_BEFORE"] <= result["F1_AFTER"] <= 1
    log = feedback.textLog()
    assert "F1 before" in log and "F1 on your held-out area" in log and str(output) in log, log
    assert seconds < 120
    assert recent_weights() == [str(output.resolve())]  # offered by the Extract dialog


def test_train_model_area_layer_and_bad_input(provider, sample_layer, labels_layer, tmp_path):
    import processing

    few = QgsVectorLayer("Polygon?crs=EPSG:3857", "few", "memory")
    few.dataProvider().addFeatures(list(labels_layer.getFeatures(QgsFeatureRequest().setLimit(5))))
    QgsProject.instance().addMapLayer(few)
    output = tmp_path / "never.safetensors"
    message = ""
    try:
        processing.run("footprint:train_model", {"INPUT": sample_layer, "BUILDINGS": few, "MINUTES": TINY,
                                                 "OUTPUT": str(output)})
    except QgsProcessingException as exc:
        message = str(exc)
    assert "Only 5 buildings lie inside the area" in message and "\n" not in message
    assert not output.exists()
    xyz = QgsRasterLayer("type=xyz&url=https://tile.openstreetmap.org/{z}/{x}/{y}.png&zmax=19&zmin=0", "osm", "wms")
    QgsProject.instance().addMapLayer(xyz)
    try:
        processing.run("footprint:train_model", {"INPUT": xyz, "BUILDINGS": labels_layer, "MINUTES": TINY,
                                                 "OUTPUT": str(output)})
    except QgsProcessingException as exc:
        message = str(exc)
    assert "is not a local file" in message and not output.exists()


class CancellingFeedback(QgsProcessingFeedback):
    """Cancels as soon as ``when(message)`` is true for a message the algorithm reports."""

    def __init__(self, when) -> None:
        super().__init__()
        self.when, self.lines = when, []

    def pushInfo(self, info: str) -> None:  # noqa: N802 - QGIS API
        self.lines.append(info)
        super().pushInfo(info)
        if self.when(info):
            self.cancel()


def _improved(message: str) -> bool:
    """A progress line "F1 a (best b)" once b beats the "F1 before" line."""
    match = re.match(r"F1 ([0-9.]+) \(best ([0-9.]+)\)", message)
    return bool(match) and float(match.group(2)) > _improved.before


def test_train_model_cancel_writes_nothing_before_any_gain_and_says_so(provider, sample_layer, labels_layer, tmp_path):
    import processing

    output = tmp_path / "cancelled.safetensors"
    feedback = CancellingFeedback(lambda message: message.startswith("F1 before"))
    started = time.monotonic()
    result = processing.run("footprint:train_model", {"INPUT": sample_layer, "BUILDINGS": labels_layer,
                                                      "MINUTES": 2.0, "OUTPUT": str(output)}, feedback=feedback)
    assert time.monotonic() - started < 60  # well before the 2-minute budget
    assert result["CANCELLED"] is True and result["OUTPUT"] is None and not output.exists()
    assert result["F1_AFTER"] == result["F1_BEFORE"]
    assert "cancelled; best so far: F1 on your held-out area" in feedback.textLog()
    assert "nothing was written" in feedback.textLog()


def test_train_model_cancel_after_a_gain_keeps_the_best_weights_and_says_so(provider, sample_layer, labels_layer,
                                                                           tmp_path):
    import processing

    output = tmp_path / "best_so_far.safetensors"

    def when(message: str) -> bool:
        if message.startswith("F1 before"):
            _improved.before = float(message.split()[-1])
            return False
        return _improved(message)

    feedback = CancellingFeedback(when)
    started = time.monotonic()
    result = processing.run("footprint:train_model", {"INPUT": sample_layer, "BUILDINGS": labels_layer,
                                                      "MINUTES": 1.5, "OUTPUT": str(output)}, feedback=feedback)
    assert result["CANCELLED"] is True, feedback.lines  # the held-out F1 rose within the budget, then we cancelled
    assert time.monotonic() - started < 80
    assert result["OUTPUT"] == str(output) and output.is_file()
    assert result["F1_AFTER"] > result["F1_BEFORE"]
    assert _card_finetune(output)["val_f1_after"] == pytest.approx(result["F1_AFTER"], abs=1e-4)
    log = feedback.textLog()
    assert "cancelled; best so far: F1 on your held-out area" in log and f"weights saved to {output}" in log


# ----------------------------------------------------------------------------- dialog, task, Extract's history


@pytest.fixture()
def clean_history():
    from footprint_plugin.qgis_io.weights_history import KEY

    QgsSettings().remove(KEY)
    yield
    QgsSettings().remove(KEY)


def test_finetune_dialog_builds_its_request(qgis_iface, sample_layer, labels_layer, tmp_path):
    from footprint_plugin.core.errors import FootprintError
    from footprint_plugin.ui.finetune_dialog import AREA_EXTENT, AREA_LAYER, AREA_SELECTION, AREA_VIEW, FinetuneDialog

    dialog = FinetuneDialog(qgis_iface, raster=sample_layer, buildings=labels_layer)
    assert dialog.raster_combo.currentLayer() == sample_layer
    assert dialog.buildings_combo.currentLayer() == labels_layer
    assert dialog.output_file.filePath().endswith("sample_finetuned.safetensors")
    assert dialog.area_combo.currentText() == AREA_VIEW
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(sample_layer.crs())
    west = sample_layer.extent()
    west.setXMaximum(west.center().x())
    canvas.setExtent(west)
    dialog.minutes.setValue(3.5)
    output = tmp_path / "mine"
    dialog.output_file.setFilePath(str(output))
    request = dialog.request(str(tmp_path))
    assert request.rasters == [str(SAMPLE_RASTER)]
    assert request.buildings == str(SAMPLE_LABELS)  # a saved single-layer file is used as it is
    assert request.minutes == 3.5 and request.weights is None and request.output == str(output) + ".safetensors"
    assert request.device == "cpu" and dialog.device_combo.itemData(0) == "cpu"  # the CPU unless a GPU is chosen
    assert request.area_option == "the area where the edits are complete"
    from qgis.PyQt.QtWidgets import QLabel

    help_line = " ".join(label.text() for label in dialog.findChildren(QLabel))
    assert "about 100 corrected buildings and 5-10 minutes on a CPU added 0.08 to 0.20 F1" in help_line
    area = QgsVectorLayer(request.area, "area", "ogr")
    assert area.featureCount() == 1 and area.crs() == sample_layer.crs()
    assert area.extent().xMaximum() == pytest.approx(canvas.extent().xMaximum(), rel=1e-9)
    del area

    dialog.area_combo.setCurrentText(AREA_EXTENT)
    assert dialog.request(str(tmp_path)).area is None
    dialog.area_combo.setCurrentText(AREA_SELECTION)
    dialog.area_layer.setLayer(labels_layer)
    labels_layer.removeSelection()
    with pytest.raises(FootprintError, match="Select one or more features of osm"):
        dialog.request(str(tmp_path))
    labels_layer.selectByIds([f.id() for f in labels_layer.getFeatures(QgsFeatureRequest().setLimit(3))])
    selected = QgsVectorLayer(dialog.request(str(tmp_path)).area, "sel", "ogr")
    assert selected.featureCount() == 3
    del selected
    dialog.area_combo.setCurrentText(AREA_LAYER)
    assert dialog.request(str(tmp_path)).area == str(SAMPLE_LABELS)

    labels_layer.startEditing()
    labels_layer.deleteFeatures([next(labels_layer.getFeatures()).id()])
    edited = dialog.request(str(tmp_path)).buildings
    labels_layer.rollBack()
    assert edited != str(SAMPLE_LABELS) and QgsVectorLayer(edited, "e", "ogr").featureCount() == 84

    two = tmp_path / "two_layers.gpkg"  # the trainer reads every layer of a file: only b must reach it
    subprocess.run(["ogr2ogr", "-nln", "a", str(two), str(SAMPLE_LABELS)], check=True)
    subprocess.run(["ogr2ogr", "-update", "-nln", "b", "-limit", "30", str(two), str(SAMPLE_LABELS)], check=True)
    layer_b = QgsVectorLayer(f"{two}|layername=b", "b", "ogr")
    QgsProject.instance().addMapLayer(layer_b)
    dialog.buildings_combo.setLayer(layer_b)
    only_b = dialog.request(str(tmp_path)).buildings
    assert only_b != str(two) and QgsVectorLayer(only_b, "only b", "ogr").featureCount() == 30
    dialog.buildings_combo.setLayer(labels_layer)

    dialog.base_weights.setFilePath(str(tmp_path / "missing.safetensors"))
    with pytest.raises(FootprintError, match="file not found"):
        dialog.request(str(tmp_path))
    xyz = QgsRasterLayer("type=xyz&url=https://tile.openstreetmap.org/{z}/{x}/{y}.png&zmax=19&zmin=0", "osm", "wms")
    QgsProject.instance().addMapLayer(xyz)
    dialog.raster_combo.setLayer(xyz)
    with pytest.raises(FootprintError, match="not a local file"):
        dialog.request(str(tmp_path))


def test_finetune_task_reports_f1_and_extract_offers_the_weights(qgis_app, qgis_iface, sample_layer, labels_layer,
                                                                 tmp_path, clean_history):
    from footprint_plugin.ui.extract_dialog import ExtractDialog
    from footprint_plugin.ui.finetune_dialog import AREA_EXTENT

    plugin = footprint_plugin.classFactory(qgis_iface)
    plugin.initGui()
    try:
        names = [a.text() for a in plugin.corrections.actions]
        assert names == ["Fine-tune on my corrections", "Evaluate against reference"]
        from footprint_plugin.qgis_io.style import style_buildings_layer

        styled = QgsVectorLayer(str(SAMPLE_LABELS), "zz extracted earlier", "ogr")  # sorted after osm
        style_buildings_layer(styled)  # what Extract does to its layers (kept in the project file)
        QgsProject.instance().addMapLayer(styled)
        assert plugin.corrections.finetune_dialog().buildings_combo.currentLayer() == styled  # not the first, osm
        plugin.corrections.extraction_finished(sample_layer, labels_layer)  # as if Extract had added labels_layer
        dialog = plugin.corrections.finetune_dialog()
        assert dialog.buildings_combo.currentLayer() == labels_layer
        assert dialog.raster_combo.currentLayer() == sample_layer
        dialog.area_combo.setCurrentText(AREA_EXTENT)
        dialog.minutes.setValue(TINY)
        dialog.output_file.setFilePath(str(tmp_path / "task.safetensors"))
        request = dialog.request(str(tmp_path))
        descriptions, done = set(), {}
        qgis_iface.messageBar().clear_messages()
        task = plugin.corrections.start_finetune(request, on_done=lambda t, output: done.update(output=output))
        started = time.monotonic()
        while "output" not in done:
            qgis_app.processEvents()
            descriptions.add(task.description())
            time.sleep(0.01)
            assert time.monotonic() - started < 120, "fine-tuning task did not finish"
        assert done["output"] == str(tmp_path / "task.safetensors") and Path(done["output"]).is_file()
        assert any("F1" in d for d in descriptions), descriptions
        messages = qgis_iface.messageBar().get_messages(Qgis.Success)
        assert any(m.startswith("Building footprints:F1 on your held-out area: ") or "F1 on your held-out area:" in m
                   and "weights saved to" in m for m in messages), messages
        extract = ExtractDialog(qgis_iface)
        offered = [extract.weights_combo.itemData(i) for i in range(extract.weights_combo.count())]
        assert str((tmp_path / "task.safetensors").resolve()) in offered
        extract.weights_combo.setCurrentIndex(offered.index(str((tmp_path / "task.safetensors").resolve())))
        assert extract.request().parameters.weights == str((tmp_path / "task.safetensors").resolve())
    finally:
        plugin.unload()
    assert not plugin.corrections


def _run_task(qgis_app, plugin, request, cancel_when=None, timeout=150.0):
    done = {}
    task = plugin.corrections.start_finetune(request, on_done=lambda t, output: done.update(output=output))
    started = time.monotonic()
    while "output" not in done:
        qgis_app.processEvents()
        time.sleep(0.01)
        if cancel_when is not None and cancel_when(task.description()) and not task.isCanceled():
            task.cancel()
        assert time.monotonic() - started < timeout, "fine-tuning task did not finish"
    return task, done["output"], time.monotonic() - started


def test_finetune_task_failure_and_cancel_reach_the_message_bar(qgis_app, qgis_iface, sample_layer, labels_layer,
                                                                 tmp_path, clean_history):
    from footprint_plugin.qgis_io.weights_history import recent_weights
    from footprint_plugin.ui.finetune_dialog import AREA_EXTENT

    few = QgsVectorLayer("Polygon?crs=EPSG:3857", "few", "memory")  # not a file: written for the trainer
    few.dataProvider().addFeatures(list(labels_layer.getFeatures(QgsFeatureRequest().setLimit(5))))
    QgsProject.instance().addMapLayer(few)
    plugin = footprint_plugin.classFactory(qgis_iface)
    plugin.initGui()
    actions = list(plugin.corrections.actions)
    try:
        dialog = plugin.corrections.finetune_dialog()
        dialog.raster_combo.setLayer(sample_layer)
        dialog.buildings_combo.setLayer(few)
        dialog.area_combo.setCurrentText(AREA_EXTENT)
        dialog.minutes.setValue(TINY)
        dialog.output_file.setFilePath(str(tmp_path / "few.safetensors"))
        qgis_iface.messageBar().clear_messages()
        task, output, _ = _run_task(qgis_app, plugin, dialog.request(str(tmp_path)))
        assert output is None and not (tmp_path / "few.safetensors").exists()
        errors = qgis_iface.messageBar().get_messages(Qgis.Critical)
        assert any("Fine-tuning failed: Only 5 buildings lie inside the area" in m for m in errors), errors
        assert not any("Traceback" in m for m in errors)

        dialog.buildings_combo.setLayer(labels_layer)
        dialog.minutes.setValue(2.0)
        dialog.output_file.setFilePath(str(tmp_path / "cancel.safetensors"))
        qgis_iface.messageBar().clear_messages()
        task, output, seconds = _run_task(qgis_app, plugin, dialog.request(str(tmp_path)),
                                          cancel_when=lambda description: "F1 before" in description)
        assert seconds < 60  # well before the 2-minute budget
        infos = qgis_iface.messageBar().get_messages(Qgis.Info)
        assert len(infos) == 1 and infos[0].startswith("Building footprints:Fine-tuning cancelled; best so far: F1 on "
                                                       "your held-out area"), infos
        assert "nothing was written" in infos[0] and output is None and not (tmp_path / "cancel.safetensors").exists()
        assert recent_weights() == []
    finally:
        plugin.unload()
    assert plugin.corrections is None and len(actions) == 2
    for action in actions:
        qgis_iface.removePluginRasterMenu.assert_any_call("&Building footprints", action)


def test_evaluate_action_preselects_the_extracted_layer_and_a_reference(qgis_iface, qgis_processing, sample_layer,
                                                                        labels_layer, predicted_file):
    import processing

    predicted = QgsVectorLayer(f"{predicted_file}|layername=buildings", "sample buildings", "ogr")
    old_review = QgsVectorLayer("Polygon?crs=EPSG:3857", "True positives", "memory")  # of an earlier evaluation
    QgsProject.instance().addMapLayers([old_review, predicted])
    plugin = footprint_plugin.classFactory(qgis_iface)
    plugin.initGui()
    try:
        plugin.corrections.extraction_finished(sample_layer, predicted)
        parameters = plugin.corrections.evaluate_parameters()
        assert parameters == {"PREDICTED": predicted.id(), "REFERENCE": labels_layer.id()}
        result = processing.run("footprint:evaluate_buildings", {**parameters, **{
            k: "TEMPORARY_OUTPUT" for k in ("TRUE_POSITIVES", "FALSE_POSITIVES", "FALSE_NEGATIVES")}})
        assert result["F1"] == cli_scores(str(SAMPLE_LABELS), str(predicted_file))["f1"]
    finally:
        plugin.unload()


# ----------------------------------------------------------------------------- rounds, ground without buildings


class WarningsFeedback(QgsProcessingFeedback):
    def __init__(self) -> None:
        super().__init__()
        self.warnings = []

    def pushWarning(self, warning: str) -> None:  # noqa: N802 - QGIS API
        self.warnings.append(warning)
        super().pushWarning(warning)


def test_second_round_in_processing_and_the_task_learns_ground_and_warns(qgis_app, qgis_iface, qgis_processing,
                                                                         tmp_path, qgis_new_project):
    import shutil

    import numpy as np
    import processing
    import rasterio
    from qgis.core import QgsFeature, QgsGeometry
    from rasterio.transform import Affine

    from footprint_plugin.setup.trainer_access import trainer_module
    from trainer.cli import main

    from .helpers import tiny_unet_weights, write_raster

    copy = tmp_path / "copy.tif"
    shutil.copy(SAMPLE_RASTER, copy)
    first = tmp_path / "round1.safetensors"
    assert main(["finetune", "--raster", str(SAMPLE_RASTER), str(copy), "--buildings", str(SAMPLE_LABELS),
                 "--weights", str(tiny_unet_weights(tmp_path / "tiny.safetensors")), "--minutes", str(TINY),
                 "--batch-size", "2", "--output", str(first)]) == 0
    copy.unlink()  # round 1's second raster has gone since
    gone = (f"Skipped the rasters of earlier rounds that are no longer there ({copy.resolve()}): their corrections "
            "are left out; put the files back to include them.")
    with rasterio.open(SAMPLE_RASTER) as sample:
        left, top, res = sample.bounds.right + 200, sample.bounds.top, sample.res[0]  # 200 m east of the sample
    pixels = np.random.default_rng(0).integers(60, 120, (3, 256, 256), dtype=np.uint8)
    ground = QgsRasterLayer(str(write_raster(tmp_path / "ground.tif", pixels, crs="EPSG:3857",
                                             transform=Affine(res, 0, left, 0, -res, top))), "ground")
    area = QgsVectorLayer("Polygon?crs=EPSG:3857", "area", "memory")
    outline = QgsFeature()
    outline.setGeometry(QgsGeometry.fromRect(QgsRectangle(left, top - 256 * res, left + 256 * res, top)))
    area.dataProvider().addFeatures([outline])
    nothing = QgsVectorLayer("Polygon?crs=EPSG:3857", "no buildings", "memory")  # all deleted as false
    QgsProject.instance().addMapLayers([ground, area, nothing])
    plugin = footprint_plugin.classFactory(qgis_iface)
    plugin.initGui()  # also the Processing provider
    try:
        feedback = WarningsFeedback()
        output = tmp_path / "round2.safetensors"
        result = processing.run("footprint:train_model", {"INPUT": ground, "BUILDINGS": nothing, "AREA": area,
                                                          "WEIGHTS": str(first), "MINUTES": TINY,
                                                          "OUTPUT": str(output)}, feedback=feedback)
        assert result["OUTPUT"] == str(output) and result["CANCELLED"] is False and feedback.warnings == [gone]
        card, _ = read_weights_file(str(output))
        assert card.training_data["finetune"]["rasters"] == ["philippines_c1.tif", "ground.tif"]
        assert [(r["round"], r["buildings"]) for r in card.training_data["rounds"]] == [(1, 85), (2, 0)]
        assert card.training_data["rounds"][1]["area_m2"] == pytest.approx((256 * res) ** 2 * 0.94, rel=0.03)

        request = trainer_module("finetune").FinetuneRequest(
            rasters=[str(SAMPLE_RASTER)], buildings=str(SAMPLE_LABELS), output=str(tmp_path / "task.safetensors"),
            weights=str(first), minutes=TINY, device="cpu")
        qgis_iface.messageBar().clear_messages()
        task, written, _ = _run_task(qgis_app, plugin, request)
        assert written == request.output and task.warnings == [gone]
        assert qgis_iface.messageBar().get_messages(Qgis.Warning) == [f"Building footprints:{gone}"]
        assert any("(round 2, with the earlier rounds' buildings)" in m
                   for m in qgis_iface.messageBar().get_messages(Qgis.Success))
    finally:
        plugin.unload()
