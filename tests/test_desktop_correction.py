"""The correction loop in the real QGIS desktop under Xvfb: Extract -> correct -> Fine-tune -> Extract with
the fine-tuned weights, with the plugin installed from the built zip (the trainer from its vendored copy)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from footprint_plugin.core.weights import read_weights_file
from tools import plugin_package

from .helpers import REPO, SAMPLE_LABELS, SAMPLE_RASTER

ARTIFACTS = REPO / "out" / "test-artifacts"
MINUTES = 0.5


needs_desktop = pytest.mark.skipif(not (shutil.which("qgis") and shutil.which("xvfb-run") and shutil.which("import")),
                                   reason="needs qgis, xvfb-run and ImageMagick (make setup installs them)")


@needs_desktop
def test_extract_finetune_extract_in_the_qgis_desktop(tmp_path):
    zip_path = plugin_package.package(tmp_path / "footprint_plugin.zip")
    profiles = tmp_path / "profiles_root"
    # torch from .venv through the profile's record, as `make install` does; not the repository's trainer
    plugin_package.install(zip_path, profiles / "profiles" / "default", developer_site=plugin_package.venv_site_packages())
    out = tmp_path / "loop"
    out.mkdir()
    env = {**os.environ, "FOOTPRINT_E2E_RASTER": str(SAMPLE_RASTER), "FOOTPRINT_E2E_LABELS": str(SAMPLE_LABELS),
           "FOOTPRINT_E2E_OUT": str(out), "FOOTPRINT_E2E_MINUTES": str(MINUTES)}
    for name in ("QT_QPA_PLATFORM", "PYTHONPATH", "VIRTUAL_ENV"):  # a real (virtual) display
        env.pop(name, None)
    command = ["xvfb-run", "-a", "-s", "-screen 0 1280x900x24", "qgis", "--profiles-path", str(profiles),
               "--nologo", "--code", str(REPO / "tests" / "desktop" / "run_correction_loop.py")]
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=420)
    report_path = out / "report.json"
    assert report_path.is_file(), f"QGIS wrote no report (exit {result.returncode}): {result.stderr[-2000:]}"
    report = json.loads(report_path.read_text())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "correction_loop_report.json").write_text(json.dumps(report, indent=1))
    for screenshot in report.get("screenshots", []):
        shutil.copy(screenshot, ARTIFACTS / f"correction_{os.path.basename(screenshot)}")
    assert "error" not in report, report["error"]
    assert report["plugin_loaded"]
    assert {"Extract buildings", "Fine-tune on my corrections", "Evaluate against reference"} <= set(report["actions"])
    assert report["first_model"] == "Bundled default model" and report["first_features"] > 20
    assert report["corrected_features"] == 85
    assert report["finetune_dialog"] == {"title": "Fine-tune on my corrections", "raster": "sample",
                                         "buildings": "sample buildings", "area": "Current map view"}
    assert any("F1" in d for d in report["descriptions"]), report["descriptions"]
    final = next(m for m in report["messages"] if "F1 on your held-out area" in m)
    weights = out / "finetuned.safetensors"
    assert f"weights saved to {weights}" in final and weights.is_file()
    card, _ = read_weights_file(str(weights))
    assert card.training_data["finetune"]["buildings"] == 85
    assert card.training_data["finetune"]["minutes"] == MINUTES
    before, after = card.metrics["finetune"]["val_f1_before"], card.metrics["finetune"]["val_f1_after"]
    assert f"{before:.2f} -> {after:.2f}" in final
    assert "Recent: finetuned.safetensors" in report["models_offered"]
    assert report["second_features"] > 0 and "finetuned.safetensors" in report["second_abstract"]
    assert (out / "second.gpkg").is_file()
    assert report["evaluate_dialog"].startswith("Evaluate buildings against a reference")
    review = report["review_layers"]
    assert {name: value["colour"] for name, value in review.items()} == {
        "True positives": [0, 170, 0], "False positives": [220, 0, 0], "False negatives": [0, 90, 255]}
    assert review["True positives"]["features"] + review["False positives"]["features"] == report["second_features"]
    assert any(t.startswith("F1 ") and "precision" in t for t in report["message_bar"]), report["message_bar"]
    assert all(os.path.getsize(s) > 10_000 for s in report["screenshots"])
    seconds = report["seconds"]
    assert seconds < 60 * MINUTES + 150, report["steps"]
