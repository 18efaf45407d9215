"""Headless: `qgis_process.bin run footprint:extract_buildings` with the plugin installed from the ZIP."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from osgeo import ogr

from tools import plugin_package

from .helpers import SAMPLE_RASTER, tiny_unet_weights


@pytest.mark.skipif(not shutil.which("qgis_process.bin"), reason="needs QGIS (make setup installs it)")
def test_qgis_process_runs_the_algorithm(tmp_path):
    root = tmp_path / "config"
    # As `make install` does: the plugin finds torch in .venv through the profile's record, not PYTHONPATH.
    plugin_package.install(plugin_package.package(tmp_path / "plugin.zip"), root / "profiles" / "default",
                           developer_site=plugin_package.venv_site_packages())
    weights = tiny_unet_weights(tmp_path / "tiny.safetensors")
    env = {**os.environ, "QGIS_CUSTOM_CONFIG_PATH": str(root), "QT_QPA_PLATFORM": "offscreen"}
    for name in ("QGIS_OPTS", "PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(name, None)
    output = tmp_path / "headless.gpkg"
    base = ["qgis_process.bin"]
    listing = subprocess.run([*base, "list"], env=env, capture_output=True, text=True, timeout=120)
    assert "footprint:extract_buildings" in listing.stdout, listing.stderr[-2000:]
    result = subprocess.run([*base, "run", "footprint:extract_buildings", "--", f"INPUT={SAMPLE_RASTER}",
                             f"WEIGHTS={weights}", "MIN_AREA=0", f"OUTPUT={output}"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "buildings in" in result.stdout + result.stderr
    dataset = ogr.Open(str(output))
    layer = dataset.GetLayer(0)
    assert layer.GetFeatureCount() > 0
    assert layer.GetSpatialRef().GetAuthorityCode(None) == "3857"
    names = [layer.GetLayerDefn().GetFieldDefn(i).GetName() for i in range(layer.GetLayerDefn().GetFieldCount())]
    assert names[-3:] == ["area_m2", "score", "source"]
    failed = subprocess.run([*base, "run", "footprint:extract_buildings", "--", f"INPUT={SAMPLE_RASTER}",
                             f"WEIGHTS={tmp_path / 'missing.safetensors'}", f"OUTPUT={tmp_path / 'x.gpkg'}"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert failed.returncode != 0 and "Traceback" not in failed.stdout + failed.stderr
    assert not (tmp_path / "x.gpkg").exists()
