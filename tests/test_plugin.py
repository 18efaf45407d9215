"""The QGIS glue under pytest-qgis: plugin life cycle, background task, Processing, XYZ input, errors."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from qgis.core import (
    Qgis,
    QgsApplication,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)

import footprint_plugin
from footprint_plugin.core.errors import FootprintError
from footprint_plugin.core.parameters import ExtractionParameters
from footprint_plugin.core.tiling import TilingOptions
from footprint_plugin.tasks.extraction_task import Cancelled, ExtractionRequest, ExtractionTask, Failed, Success

from .helpers import SAMPLE_RASTER, cut_tiles, tiny_unet_weights, write_raster


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return str(tiny_unet_weights(tmp_path_factory.mktemp("w") / "tiny.safetensors"))


@pytest.fixture()
def sample_layer(qgis_new_project):
    layer = QgsRasterLayer(str(SAMPLE_RASTER), "sample")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    return layer


def run_task(qgis_app, iface, request, cancel_after: float | None = None, timeout: float = 180.0):
    """Run an ExtractionTask in QGIS's task manager and wait for ``finished``."""
    done = {}
    task = ExtractionTask(request, iface, lambda outcome, layer: done.update(outcome=outcome, layer=layer))
    QgsApplication.taskManager().addTask(task)
    started = time.monotonic()
    cancelled = False
    while "outcome" not in done:
        qgis_app.processEvents()
        time.sleep(0.005)
        if cancel_after is not None and not cancelled and time.monotonic() - started > cancel_after:
            task.cancel()
            cancelled = True
        assert time.monotonic() - started < timeout, "task did not finish"
    return done["outcome"], done["layer"], time.monotonic() - started


def params(weights, **tiling):
    return ExtractionParameters(weights=weights, device="cpu", min_area_m2=0.0, tiling=TilingOptions(**tiling))


def test_plugin_life_cycle_leaves_nothing_behind(qgis_iface):
    registry = QgsApplication.processingRegistry()
    plugin = footprint_plugin.classFactory(qgis_iface)
    plugin.initGui()
    action = plugin.action
    assert action is not None and action.text() == "Extract buildings"
    assert registry.providerById("footprint") is not None
    assert registry.algorithmById("footprint:extract_buildings") is not None
    qgis_iface.addPluginToRasterMenu.assert_any_call("&Building footprints", action)
    plugin.unload()
    assert registry.providerById("footprint") is None
    assert plugin.action is None
    qgis_iface.removePluginRasterMenu.assert_any_call("&Building footprints", action)
    # Loading again works (plugin reloader).
    plugin.initGui()
    assert registry.providerById("footprint") is not None
    plugin.unload()
    assert registry.providerById("footprint") is None


def test_task_on_the_real_raster_adds_an_editable_layer(qgis_app, qgis_iface, sample_layer, weights, tmp_path):
    output = tmp_path / "sample_buildings.gpkg"
    request = ExtractionRequest(sample_layer, str(output), params(weights), layer_name="sample buildings")
    outcome, layer, seconds = run_task(qgis_app, qgis_iface, request)
    assert isinstance(outcome, Success), outcome.message()
    assert isinstance(layer, QgsVectorLayer) and layer.isValid()
    assert QgsProject.instance().mapLayersByName("sample buildings") == [layer]
    assert [f.name() for f in layer.fields()][-3:] == ["area_m2", "score", "source"]
    assert layer.crs().authid() == "EPSG:3857"
    assert layer.featureCount() == outcome.buildings
    assert layer.geometryType() == Qgis.GeometryType.Polygon if hasattr(Qgis, "GeometryType") else True
    assert layer.dataProvider().capabilities() & layer.dataProvider().ChangeGeometries  # editable
    assert "philippines_c1.tif" in layer.metadata().abstract()
    assert output.is_file()
    messages = qgis_iface.messageBar().get_messages(Qgis.Success)
    assert any("buildings found" in m for m in messages)


def test_cancel_leaves_no_layer_and_no_file(qgis_app, qgis_iface, qgis_new_project, weights, tmp_path):
    big = np.random.default_rng(0).integers(0, 255, (3, 1500, 1500), dtype=np.uint8)
    raster = write_raster(tmp_path / "big.tif", big)
    layer = QgsRasterLayer(str(raster), "big")
    QgsProject.instance().addMapLayer(layer)
    output = tmp_path / "big_buildings.gpkg"
    request = ExtractionRequest(layer, str(output), params(weights, tile_size=64, batch_size=1))
    outcome, result_layer, seconds = run_task(qgis_app, qgis_iface, request, cancel_after=0.5)
    assert isinstance(outcome, Cancelled)
    assert result_layer is None and not QgsProject.instance().mapLayersByName("big buildings")
    assert not output.exists() and not list(tmp_path.glob("*.gpkg*")) and not list(tmp_path.glob(".*"))
    assert seconds < 10  # cancel takes effect within a few seconds


def test_processing_algorithm(provider, sample_layer, weights, tmp_path):
    import processing

    output = str(tmp_path / "processing.gpkg")
    result = processing.run("footprint:extract_buildings", {
        "INPUT": sample_layer, "WEIGHTS": weights, "DEVICE": 1, "TILE_SIZE": 128, "OVERLAP": 32,
        "BATCH_SIZE": 2, "MIN_AREA": 0.0, "REGULARIZE": 2, "OUTPUT": output})
    layer = QgsVectorLayer(result["OUTPUT"], "out", "ogr")
    assert layer.isValid() and layer.crs().authid() == "EPSG:3857"
    assert [f.name() for f in layer.fields()][-3:] == ["area_m2", "score", "source"]
    assert layer.featureCount() >= 1
    del layer  # QGIS 3.22 crashes at exit if an open result is the target of a failed run
    bad = {"INPUT": sample_layer, "WEIGHTS": weights, "EXTENT": "0,10,0,10 [EPSG:3857]",
           "OUTPUT": str(tmp_path / "failed.gpkg")}
    from qgis.core import QgsProcessingException

    message = ""
    try:
        processing.run("footprint:extract_buildings", bad)
    except QgsProcessingException as exc:
        message = str(exc)  # only the text: a kept traceback would hold QGIS objects past QGIS's exit
    assert "does not overlap" in message
    assert not (tmp_path / "failed.gpkg").exists()


def _xyz_tiles(tmp_path: Path) -> Path:
    tiles = tmp_path / "tiles"
    subprocess.run(["gdal2tiles.py", "--xyz", "-z", "18-19", "-q", "-w", "none", str(SAMPLE_RASTER), str(tiles)],
                   check=True, capture_output=True)
    return tiles


def test_xyz_tiles_are_read_as_rgb_with_alpha_mask(qgis_app, qgis_iface, qgis_new_project, weights, tmp_path):
    from footprint_plugin.qgis_io.provider_reader import QgisProviderReader

    tiles = _xyz_tiles(tmp_path)
    layer = QgsRasterLayer(f"type=xyz&url=file://{tiles}/{{z}}/{{x}}/{{y}}.png&zmin=18&zmax=19", "xyz", "wms")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    with rasterio.open(SAMPLE_RASTER) as src:
        bounds, truth = src.bounds, src.read()
    # Only the inner part: the tiles around the raster are transparent.
    extent = QgsRectangle(bounds.left, bounds.bottom, bounds.right, bounds.top)
    reader = QgisProviderReader(layer, extent, pixel_size_m=0.289)
    assert reader.band_count == 4 and reader.color_interpretations[-1] == "alpha"
    data, valid = reader.read((0, 0, reader.width, reader.height), (256, 512), [1, 2, 3])
    assert data.shape == (3, 256, 512) and data.dtype == np.uint8
    assert valid[5:-5, 5:-5].all()
    assert np.abs(data.astype(int) - truth.astype(int))[:, 5:-5, 5:-5].mean() < 12
    outside = QgsRectangle(bounds.right + 20, bounds.bottom, bounds.right + 60, bounds.top)
    _, outside_valid = QgisProviderReader(layer, outside).read((0, 0, 40, 40), (40, 40), [1, 2, 3])
    assert not outside_valid.any()
    request = ExtractionRequest(layer, str(tmp_path / "xyz.gpkg"), params(weights), extent=extent)
    outcome, result_layer, _ = run_task(qgis_app, qgis_iface, request)
    assert isinstance(outcome, Success), outcome.message()
    assert result_layer.crs().authid() == "EPSG:3857"


def test_xyz_without_an_area_is_a_clear_error(qgis_app, qgis_iface, qgis_new_project, weights, tmp_path):
    tiles = _xyz_tiles(tmp_path)
    layer = QgsRasterLayer(f"type=xyz&url=file://{tiles}/{{z}}/{{x}}/{{y}}.png&zmin=18&zmax=19", "xyz", "wms")
    outcome, _, _ = run_task(qgis_app, qgis_iface, ExtractionRequest(layer, str(tmp_path / "x.gpkg"), params(weights)))
    assert isinstance(outcome, Failed) and "choose an area" in outcome.error


def _error_cases(tmp_path, weights, sample_layer):
    two = QgsRasterLayer(str(write_raster(tmp_path / "two.tif", np.zeros((2, 64, 64), np.uint8))), "two")
    mul = str(tiny_unet_weights(tmp_path / "mul.safetensors", bands=[f"band{i}" for i in range(1, 9)]))
    far = QgsRectangle(0, 0, 100, 100)
    out = str(tmp_path / "out.gpkg")
    return {
        "band count": (ExtractionRequest(two, out, params(weights)), "2 band"),
        "weights for other bands": (ExtractionRequest(sample_layer, out, params(mul)), "need 8"),
        "area outside": (ExtractionRequest(sample_layer, out, params(weights), extent=far), "does not overlap"),
        "unwritable output": (ExtractionRequest(sample_layer, str(tmp_path / "no" / "o.gpkg"), params(weights)),
                              "does not exist"),
        "corrupt weights": (ExtractionRequest(sample_layer, out, params(str(tmp_path / "two.tif"))),
                            "weights file|Weights file"),
    }


@pytest.mark.parametrize("case", ["band count", "weights for other bands", "area outside", "unwritable output",
                                  "corrupt weights"])
def test_errors_reach_the_message_bar_and_add_nothing(qgis_app, qgis_iface, sample_layer, weights, tmp_path, case):
    import re

    request, pattern = _error_cases(tmp_path, weights, sample_layer)[case]
    qgis_iface.messageBar().clear_messages()
    layers_before = set(QgsProject.instance().mapLayers())
    outcome, layer, _ = run_task(qgis_app, qgis_iface, request)
    assert isinstance(outcome, Failed) and re.search(pattern, outcome.error), outcome
    assert "Traceback" not in outcome.error
    assert layer is None and set(QgsProject.instance().mapLayers()) == layers_before
    assert any(re.search(pattern, m) for m in qgis_iface.messageBar().get_messages(Qgis.Critical))
    assert not list(tmp_path.glob("*.gpkg"))


def test_dialog_builds_the_request(qgis_iface, sample_layer, qgis_new_project):
    from footprint_plugin.ui.extract_dialog import AREA_SELECTION, ExtractDialog

    qgis_iface.setActiveLayer(sample_layer)
    dialog = ExtractDialog(qgis_iface)
    assert dialog.raster_combo.currentLayer() == sample_layer
    assert dialog.output_file.filePath().endswith("sample_buildings.gpkg")
    assert "1 Band 1" in dialog.bands_hint.text() or "Red" in dialog.bands_hint.text(), dialog.bands_hint.text()
    defaults = dialog.request().parameters
    assert defaults.seed_threshold is None and defaults.working_resolution_m is None and defaults.bands is None
    widgets = dialog.widgets
    widgets["min_area"].setValue(12.5)
    widgets["regularize"].setCurrentText("orthogonal")
    widgets["tile_size"].setValue(128)
    widgets["seed_threshold"].setValue(0.45)
    widgets["working_resolution"].setValue(0.25)
    widgets["bands"].setText("3,2,1")
    widgets["flip_tta"].setChecked(True)
    widgets["backend"].setCurrentText("torch")
    request = dialog.request()
    assert request.layer == sample_layer and request.extent is None
    parameters = request.parameters
    assert parameters.min_area_m2 == 12.5 and parameters.regularize == "orthogonal"
    assert parameters.tiling.tile_size == 128 and parameters.tiling.overlap is None
    assert parameters.seed_threshold == pytest.approx(0.45) and parameters.mask_threshold is None
    assert parameters.working_resolution_m == pytest.approx(0.25) and parameters.bands == [3, 2, 1]
    assert parameters.tiling.flip_tta and parameters.tiling.backend == "torch"
    assert parameters.weights is None  # bundled default
    dialog.area_combo.setCurrentText(AREA_SELECTION)
    with pytest.raises(FootprintError, match="Select one or more features"):
        dialog.request()
    dialog.weights_combo.setCurrentIndex(1)
    with pytest.raises(FootprintError, match="weights file"):
        dialog.request()
    QgsProject.instance().removeAllMapLayers()
    empty = ExtractDialog(qgis_iface)
    with pytest.raises(FootprintError, match="raster layer"):
        empty.request()


def test_missing_torch_opens_the_installer(qgis_iface, monkeypatch):
    import footprint_plugin.plugin as plugin_module

    monkeypatch.setattr(plugin_module, "missing_packages", lambda: ["torch"])
    plugin = footprint_plugin.classFactory(qgis_iface)
    plugin.initGui()
    qgis_iface.messageBar().clear_messages()
    plugin.run()
    dialog = plugin.installer
    assert dialog is not None and dialog.isVisible() and not dialog.isModal()
    assert "<b>torch</b>" in dialog.findChild(type(dialog.status)).text()
    assert dialog.cpu.isVisible() and dialog.cpu.isChecked()  # no NVIDIA driver here
    command = dialog.command()
    assert "pip install" in command and "--target" in command and "torch==" in command
    assert "python/footprint_plugin_packages/py" in command  # inside the QGIS profile
    assert not qgis_iface.messageBar().get_messages(Qgis.Critical)
    assert plugin.run() is None and plugin.installer is dialog  # a second click shows the same dialog
    plugin.unload()
    assert plugin.installer is None and not dialog.isVisible()


def test_dialog_processing_and_cli_offer_the_same_options(qgis_iface, provider, sample_layer):
    import argparse

    from footprint_plugin.core.parameters import OPTIONS
    from footprint_plugin.ui.extract_dialog import ExtractDialog
    from trainer.predict import add_arguments

    algorithm = QgsApplication.processingRegistry().algorithmById("footprint:extract_buildings")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = {action.dest: action for action in parser._actions}
    dialog = ExtractDialog(qgis_iface)
    for option in OPTIONS:
        definition = algorithm.parameterDefinition(option.key)
        assert definition is not None, option.key
        assert option.name in flags and flags[option.name].default is None  # None: the shared default applies
        assert option.name in dialog.widgets or option.name == "device"
        assert option.describe_default() in definition.description()
        assert option.describe_default() in flags[option.name].help


def test_processing_takes_several_rasters_in_two_crss(provider, qgis_new_project, tmp_path):
    # The Zanzibar sample cut into four tiles, two warped to UTM: one layer in EPSG:3857 with every tile as a
    # source, the buildings of the command line's run over the same files.
    import processing

    from trainer.cli import main

    tiles = cut_tiles(tmp_path / "tiles", utm=(2, 3))
    layers = [QgsRasterLayer(str(tile), tile.stem) for tile in tiles]
    output = str(tmp_path / "many.gpkg")
    result = processing.run("footprint:extract_buildings_many", {"INPUTS": layers, "DEVICE": 1, "BLOCK_SIZE": 512,
                                                                  "BLOCK_HALO": 128, "OUTPUT": output})
    layer = QgsVectorLayer(result["OUTPUT"], "out", "ogr")
    assert layer.isValid() and layer.crs().authid() == "EPSG:3857"
    sources = {feature["source"] for feature in layer.getFeatures()}
    count = layer.featureCount()
    del layer
    assert sources == {tile.name for tile in tiles}
    cli = tmp_path / "cli.gpkg"
    assert main(["predict", "--input", *map(str, tiles), "--output", str(cli), "--device", "cpu", "--block-size",
                 "512", "--block-halo", "128", "--quiet"]) == 0
    assert QgsVectorLayer(str(cli), "cli", "ogr").featureCount() == count > 60


def test_processing_fails_when_the_output_cannot_be_saved(provider, sample_layer, weights, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    folder = tmp_path / "full"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(folder)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (folder / "filler").write_bytes(b"\0" * 390 * 1024)
        message = ""
        try:
            processing.run("footprint:extract_buildings", {
                "INPUT": sample_layer, "WEIGHTS": weights, "DEVICE": 1, "MIN_AREA": 0.0,
                "OUTPUT": str(folder / "buildings.gpkg")})
        except QgsProcessingException as exc:
            message = str(exc)
        assert "buildings.gpkg" in message, message
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_task_and_processing_write_the_probability_raster(qgis_app, qgis_iface, provider, sample_layer, weights,
                                                          tmp_path):
    import processing
    from qgis.core import QgsSingleBandPseudoColorRenderer

    request = ExtractionRequest(sample_layer, str(tmp_path / "b.gpkg"), params(weights),
                                probabilities=str(tmp_path / "p.tif"))
    done = {}
    task = ExtractionTask(request, qgis_iface, lambda outcome, layer: done.update(outcome=outcome))
    QgsApplication.taskManager().addTask(task)
    started = time.monotonic()
    while "outcome" not in done and time.monotonic() - started < 180:
        qgis_app.processEvents()
        time.sleep(0.005)
    assert isinstance(done["outcome"], Success), done["outcome"].message()
    raster = task.probability_layer
    assert raster is not None and raster.isValid() and raster.width() == sample_layer.width()
    assert isinstance(raster.renderer(), QgsSingleBandPseudoColorRenderer)
    assert QgsProject.instance().mapLayersByName(f"{sample_layer.name()} building probability") == [raster]
    result = processing.run("footprint:extract_buildings", {
        "INPUT": sample_layer, "WEIGHTS": weights, "DEVICE": 1, "MIN_AREA": 0.0,
        "OUTPUT": str(tmp_path / "proc.gpkg"), "PROBABILITIES": str(tmp_path / "proc.tif")})
    assert result["PROBABILITIES"] == str(tmp_path / "proc.tif")
    with rasterio.open(tmp_path / "proc.tif") as dst:
        assert (dst.width, dst.height, dst.dtypes[0]) == (sample_layer.width(), sample_layer.height(), "uint8")


def test_processing_writes_the_review_layer_of_a_memory_output_as_of_a_file(qgis_app, provider, sample_layer,
                                                                           tmp_path):
    import processing
    from qgis.core import QgsProcessingContext, QgsRuleBasedRenderer

    from footprint_plugin.core.parameters import ExtractionParameters, vectorize_options
    from footprint_plugin.core.resource_files import default_weights_path
    from footprint_plugin.core.review import LAYER, write_review
    from footprint_plugin.core.weights import read_weights_file

    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    memory = processing.run("footprint:extract_buildings", {
        "INPUT": sample_layer, "OUTPUT": "TEMPORARY_OUTPUT", "REVIEW": str(tmp_path / "memory_review.gpkg")},
        context=context)
    assert memory["REVIEW"] == str(tmp_path / "memory_review.gpkg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["memory_review.gpkg"]  # no probability raster left
    to_file = processing.run("footprint:extract_buildings", {
        "INPUT": sample_layer, "OUTPUT": str(tmp_path / "b.gpkg"), "PROBABILITIES": str(tmp_path / "p.tif"),
        "REVIEW": str(tmp_path / "file_review.gpkg")})
    assert to_file["PROBABILITIES"] == str(tmp_path / "p.tif")
    # the same places as the CLI's path, which reads the buildings file back
    threshold = vectorize_options(ExtractionParameters(), read_weights_file(str(default_weights_path()))[0]).mask_threshold
    assert write_review(tmp_path / "b.gpkg", tmp_path / "p.tif", tmp_path / "cli_review.gpkg", threshold) > 0

    def ranked(name):
        layer = QgsVectorLayer(f"{tmp_path / name}|layername={LAYER}", name, "ogr")
        assert layer.isValid() and layer.crs() == sample_layer.crs()
        return [(f["rank"], f["kind"], f["probability"], round(f.geometry().area(), 1)) for f in layer.getFeatures()]

    assert ranked("memory_review.gpkg") == ranked("file_review.gpkg") == ranked("cli_review.gpkg")
    assert len(ranked("memory_review.gpkg")) > 0
    loaded = context.layersToLoadOnCompletion()
    assert [d.name for d in loaded.values()] == ["Review: correct here first"]
    [(source, details)] = loaded.items()
    layer = QgsVectorLayer(source, "review", "ogr")
    details.postProcessor().postProcessLayer(layer, context, None)
    assert isinstance(layer.renderer(), QgsRuleBasedRenderer) and layer.labelsEnabled()


def test_dialog_and_task_add_the_review_layer_styled_by_rank(qgis_app, qgis_iface, sample_layer, tmp_path):
    from qgis.core import QgsRuleBasedRenderer

    from footprint_plugin.ui.extract_dialog import ExtractDialog

    dialog = ExtractDialog(qgis_iface)  # the bundled model
    dialog.output_file.setFilePath(str(tmp_path / "b.gpkg"))
    assert dialog.request().review is None
    dialog.review_check.setChecked(True)
    request = dialog.request()
    assert request.review == str(tmp_path / "b_review.gpkg") and request.probabilities is None
    outcome, buildings, _ = run_task(qgis_app, qgis_iface, request)
    assert isinstance(outcome, Success), outcome.message()
    [review] = QgsProject.instance().mapLayersByName("sample review: correct here first")
    ranks = sorted(f["rank"] for f in review.getFeatures())
    assert outcome.places == len(ranks) > 0 and ranks == list(range(1, len(ranks) + 1))
    assert outcome.message().endswith(f"; {len(ranks)} places to review first")
    assert isinstance(review.renderer(), QgsRuleBasedRenderer)
    labels = [rule.label() for rule in review.renderer().rootRule().children()]
    assert labels == ["look first (1-10)", "then (11-50)", "later (51 on)"]
    assert review.labelsEnabled() and review.labeling().settings().fieldName == "rank"
    order = [node.layer() for node in QgsProject.instance().layerTreeRoot().findLayers()]
    assert order.index(review) < order.index(buildings)  # drawn above the buildings
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.gpkg", "b_review.gpkg"]  # no probability raster left


def test_task_and_processing_with_two_vectorising_processes_give_the_same_buildings(
        qgis_app, qgis_iface, provider, sample_layer, tmp_path, monkeypatch):
    import processing
    from osgeo import ogr

    from footprint_plugin.core import workers

    from .helpers import DEFAULT_WEIGHTS

    # As inside QGIS, where sys.executable is QGIS itself: the workers start with the Python beside it.
    monkeypatch.setattr(sys, "executable", "/usr/bin/qgis")
    workers.python_interpreter.cache_clear()
    assert workers.python_interpreter() not in (None, "/usr/bin/qgis")

    def features(path):
        dataset = ogr.Open(str(path))
        return [(bytes(f.GetGeometryRef().ExportToWkb()), f.GetField("area_m2"), f.GetField("score"))
                for f in dataset.GetLayer(0)]

    found = {}
    for count in (1, 2):
        parameters = ExtractionParameters(weights=str(DEFAULT_WEIGHTS), device="cpu", vectorize_workers=count)
        request = ExtractionRequest(sample_layer, str(tmp_path / f"task{count}.gpkg"), parameters)
        outcome, layer, _ = run_task(qgis_app, qgis_iface, request)
        assert isinstance(outcome, Success), outcome.message()
        found[f"task{count}"] = features(tmp_path / f"task{count}.gpkg")
        processing.run("footprint:extract_buildings", {"INPUT": sample_layer, "DEVICE": 1, "VECTORIZE_WORKERS": count,
                                                       "OUTPUT": str(tmp_path / f"processing{count}.gpkg")})
        found[f"processing{count}"] = features(tmp_path / f"processing{count}.gpkg")
    assert len(found["task1"]) > 20  # the sample holds ~70 OpenStreetMap buildings
    assert found["task2"] == found["task1"] and found["processing2"] == found["processing1"]
    assert sorted(found["processing1"]) == sorted(found["task1"])
    workers.python_interpreter.cache_clear()  # the next test's sys.executable is the real one again
