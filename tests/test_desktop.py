"""End to end in the real QGIS desktop under Xvfb, with the plugin installed from the built ZIP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tools import plugin_package

from .helpers import REPO, SAMPLE_RASTER

ARTIFACTS = REPO / "out" / "test-artifacts"


needs_desktop = pytest.mark.skipif(not (shutil.which("qgis") and shutil.which("xvfb-run") and shutil.which("import")),
                                   reason="needs qgis, xvfb-run and ImageMagick (make setup installs them)")


@needs_desktop
def test_extract_buildings_in_the_qgis_desktop(tmp_path):
    zip_path = plugin_package.package(tmp_path / "footprint_plugin.zip")
    profiles = tmp_path / "profiles_root"
    # As `make install` does: the plugin finds torch in .venv through the profile's record, not PYTHONPATH.
    plugin_package.install(zip_path, profiles / "profiles" / "default", developer_site=plugin_package.venv_site_packages())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "e2e"
    out.mkdir()
    env = {**os.environ, "FOOTPRINT_E2E_RASTER": str(SAMPLE_RASTER), "FOOTPRINT_E2E_OUT": str(out)}
    for name in ("QT_QPA_PLATFORM", "PYTHONPATH", "VIRTUAL_ENV"):  # a real (virtual) display this time
        env.pop(name, None)
    # --profiles-path is the root that holds profiles/default
    command = ["xvfb-run", "-a", "-s", "-screen 0 1280x900x24", "qgis", "--profiles-path", str(profiles),
               "--nologo", "--code", str(REPO / "tests" / "desktop" / "run_in_qgis.py")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=420)
    report_path = out / "report.json"
    assert report_path.is_file(), f"QGIS wrote no report (exit {result.returncode}): {result.stderr[-2000:]}"
    report = json.loads(report_path.read_text())
    assert "error" not in report, report["error"]
    assert report["plugin_loaded"] and report["action_in_raster_menu"]
    assert report["dialog_title"] == "Extract buildings" and report["dialog_raster"] == "sample"
    assert report["features"] > 0 and report["crs"] == "EPSG:3857" and report["editable"]
    assert report["fields"][-3:] == ["area_m2", "score", "source"]
    assert any(f"{report['features']} buildings found" in m for m in report["messages"]), report["messages"]
    assert (out / "desktop_buildings.gpkg").is_file()
    # Two vectorising processes started from inside QGIS with its own Python (here sys.executable names another
    # Python, the first python3 on the PATH): the buildings of the command line.
    assert report["interpreter"] and Path(report["interpreter"]).name.startswith("python")
    cli = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "trainer", "predict", "--input",
                          str(SAMPLE_RASTER), "--output", str(tmp_path / "cli.gpkg"), "--device", "cpu",
                          "--vectorize-workers", "1", "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert report["features"] == int(cli.stdout.split()[0])
    screenshot = Path(report["screenshot"])
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000
    shutil.copy(screenshot, ARTIFACTS / "qgis_desktop.png")
    (ARTIFACTS / "qgis_desktop_report.json").write_text(json.dumps(report, indent=1))
