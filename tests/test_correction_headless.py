"""Headless correction loop: `qgis_process.bin run footprint:evaluate_buildings / footprint:train_model` with the
plugin installed from its zip (the trainer comes from the zip's vendored copy), and the plugin without the trainer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from footprint_plugin.core.weights import read_weights_file
from tools import plugin_package

from .helpers import REPO, SAMPLE_LABELS, SAMPLE_RASTER

needs_qgis_process = pytest.mark.skipif(not shutil.which("qgis_process.bin"), reason="needs QGIS (make setup installs it)")


def qgis_process(env, cwd, *args, timeout=300):
    return subprocess.run(["qgis_process.bin", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@needs_qgis_process
def test_qgis_process_evaluates_and_fine_tunes_with_the_vendored_trainer(tmp_path):
    zip_path = plugin_package.package(tmp_path / "plugin.zip")
    names = zipfile.ZipFile(zip_path).namelist()
    assert "footprint_plugin/vendor/trainer/finetune.py" in names and "footprint_plugin/vendor/trainer/evaluate.py" in names
    assert plugin_package.check_package(zip_path)[0] == []
    root = tmp_path / "config"
    venv_site = plugin_package.venv_site_packages()
    plugin_package.install(zip_path, root / "profiles" / "default", developer_site=venv_site)  # as make install
    env = {**os.environ, "QGIS_CUSTOM_CONFIG_PATH": str(root), "QT_QPA_PLATFORM": "offscreen"}
    for name in ("QGIS_OPTS", "PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(name, None)
    # Only the venv's packages (torch): `trainer` is not importable from there, nor from the working folder.
    assert subprocess.run([sys.executable, "-c", "import trainer"], env={**env, "PYTHONPATH": str(venv_site)},
                          cwd=tmp_path, capture_output=True).returncode != 0

    outputs = {name: str(tmp_path / f"{name.lower()}.gpkg") for name in ("TRUE_POSITIVES", "FALSE_POSITIVES",
                                                                          "FALSE_NEGATIVES")}
    done = qgis_process(env, tmp_path, "--json", "run", "footprint:evaluate_buildings", "--",
                        f"PREDICTED={SAMPLE_LABELS}", f"REFERENCE={SAMPLE_LABELS}", "MIN_AREA=0",
                        *[f"{k}={v}" for k, v in outputs.items()])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads(done.stdout[done.stdout.index("{"):])["results"]
    assert results["F1"] == results["PRECISION"] == results["RECALL"] == 1.0  # the reference against itself
    from osgeo import ogr

    def count(path: str) -> int:
        dataset = ogr.Open(path)  # held while its layer is read
        return dataset.GetLayer(0).GetFeatureCount()

    counts = {k: count(v) for k, v in outputs.items()}
    assert counts == {"TRUE_POSITIVES": 85, "FALSE_POSITIVES": 0, "FALSE_NEGATIVES": 0}

    weights = tmp_path / "tuned.safetensors"
    done = qgis_process(env, tmp_path, "--json", "run", "footprint:train_model", "--", f"INPUT={SAMPLE_RASTER}",
                        f"BUILDINGS={SAMPLE_LABELS}", "MINUTES=0.05", f"OUTPUT={weights}")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads(done.stdout[done.stdout.index("{"):])["results"]
    assert results["OUTPUT"] == str(weights) and weights.is_file() and results["CANCELLED"] is False
    card, _ = read_weights_file(str(weights))
    assert card.metrics["finetune"]["val_f1_before"] == pytest.approx(results["F1_BEFORE"], abs=1e-4)
    assert card.metrics["finetune"]["val_f1_after"] == pytest.approx(results["F1_AFTER"], abs=1e-4)
    assert card.training_data["finetune"]["buildings"] == 85

    # Bad input: one line, no traceback, nothing written.
    few = tmp_path / "few.geojson"
    subprocess.run(["ogr2ogr", "-limit", "5", str(few), str(SAMPLE_LABELS)], check=True)
    failed = qgis_process(env, tmp_path, "run", "footprint:train_model", "--", f"INPUT={SAMPLE_RASTER}",
                          f"BUILDINGS={few}", "MINUTES=0.05", f"OUTPUT={tmp_path / 'never.safetensors'}")
    text = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "Traceback" not in text and "Only 5 buildings lie inside the area" in text
    assert not (tmp_path / "never.safetensors").exists()


WITHOUT_TRAINER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'trainer':
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
sys.path.append('/usr/share/qgis/python/plugins')
from qgis.core import QgsApplication, QgsProcessingException, QgsRasterLayer
app = QgsApplication([], False)
app.initQgis()
from processing.core.Processing import Processing
Processing.initialize()
import processing
import footprint_plugin
plugin = footprint_plugin.classFactory(None)
plugin.initProcessing()
registry = QgsApplication.processingRegistry()
assert registry.algorithmById('footprint:train_model') and registry.algorithmById('footprint:evaluate_buildings')
assert not [m for m in sys.modules if m.split('.')[0] == 'trainer'], 'trainer imported at load'
result = processing.run('footprint:extract_buildings', {'INPUT': QgsRasterLayer(sys.argv[1], 'sample'),
                        'OUTPUT': 'TEMPORARY_OUTPUT'})
print('extracted', result['OUTPUT'].featureCount())
try:
    processing.run('footprint:evaluate_buildings', {'PREDICTED': sys.argv[2], 'REFERENCE': sys.argv[2],
                   'TRUE_POSITIVES': 'TEMPORARY_OUTPUT', 'FALSE_POSITIVES': 'TEMPORARY_OUTPUT',
                   'FALSE_NEGATIVES': 'TEMPORARY_OUTPUT'})
except QgsProcessingException as exc:
    print('error:', exc)
plugin.unload()
"""


@needs_qgis_process
def test_without_the_trainer_the_plugin_loads_and_extracts(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", WITHOUT_TRAINER, str(SAMPLE_RASTER), str(SAMPLE_LABELS)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert int(next(line for line in lines if line.startswith("extracted")).split()[1]) > 20
    error = next(line for line in lines if line.startswith("error:"))
    assert "The training part of the plugin cannot be loaded" in error and "blocked: trainer" in error
