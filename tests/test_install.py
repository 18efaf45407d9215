"""`pip install .` and `pip install -e .` give a `footprints` command that works from any folder.

Each test makes a fresh venv on Debian's Python (``--system-site-packages``: numpy, rasterio, shapely,
scipy, GDAL, tqdm come from Debian as on a user's machine). torch and safetensors come from this
checkout's .venv through a ``.pth`` file instead of a second 200 MB torch install, and pip runs with
``--no-index`` and without ``--no-deps``, so it must find every declared dependency already there:
the declared versions (no numpy upper pin) fit this machine's QGIS stack.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from osgeo import ogr

from trainer.cli import COMMANDS

from .helpers import REPO, SAMPLE_RASTER

SYSTEM_PYTHON = Path("/usr/bin/python3")
pytestmark = pytest.mark.skipif(not SYSTEM_PYTHON.is_file(), reason="needs Debian's /usr/bin/python3")

# What a source distribution holds: the package sources, metadata and the bundled weights, nothing else
# (so the test cannot pass by finding files of the checkout).
SOURCE_FILES = ["pyproject.toml", "README.md", "LICENSE", "NOTICE.md",
                "resources/default_weights.safetensors", "resources/icon.svg"]
SOURCE_PACKAGES = ["footprint_plugin", "trainer"]


def copy_source(dest: Path) -> Path:
    for name in SOURCE_FILES:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)
    for name in SOURCE_PACKAGES:
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def fresh_venv(path: Path) -> Path:
    """A venv on /usr/bin/python3 with Debian's packages, plus this .venv's torch and safetensors."""
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--system-site-packages", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    own_site = sysconfig.get_paths()["purelib"]  # this test's .venv, which holds torch
    Path(site, "checkout_venv.pth").write_text(own_site + "\n")
    return python


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def pip_install(python: Path, *args: str) -> None:
    # This pip, run for the new venv's interpreter (--python); the build uses that venv's setuptools.
    command = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-index",
               "--no-build-isolation", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=clean_env(), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def run_footprints(venv_python: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    command = venv_python.parent / "footprints"
    assert command.is_file(), "pip did not install the footprints console command"
    return subprocess.run([str(command), *args], cwd=cwd, capture_output=True, text=True, env=clean_env(), timeout=300)


def count_buildings(gpkg: Path) -> int:
    dataset = ogr.Open(str(gpkg))
    assert dataset is not None, f"{gpkg} is not a GeoPackage"
    layer = dataset.GetLayerByName("buildings")
    assert layer is not None
    return layer.GetFeatureCount()


def check_command(python: Path, elsewhere: Path, expect_module_under: Path) -> None:
    where = subprocess.run([str(python), "-c", "import footprint_plugin.core.resource_files as e, trainer; "
                            "print(trainer.__file__); print(e.default_weights_path())"],
                           cwd=elsewhere, capture_output=True, text=True, env=clean_env())
    assert where.returncode == 0, where.stderr
    module_file, weights = (Path(line) for line in where.stdout.split())
    assert expect_module_under in module_file.parents, module_file
    assert REPO not in module_file.parents and REPO not in weights.parents
    assert weights.is_file() and weights.stat().st_size == (REPO / "resources/default_weights.safetensors").stat().st_size

    help_text = run_footprints(python, elsewhere, "--help")
    assert help_text.returncode == 0, help_text.stderr
    for name in COMMANDS:
        assert name in help_text.stdout
    assert "usage: footprints" in help_text.stdout

    out = elsewhere / "x.gpkg"
    done = run_footprints(python, elsewhere, "predict", "--input", str(SAMPLE_RASTER), "--output", "x.gpkg", "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    count = count_buildings(out)
    assert count > 20, done.stdout  # the sample holds ~100 OpenStreetMap buildings
    assert done.stdout.split()[0] == str(count)

    missing = run_footprints(python, elsewhere, "predict", "--input", "nothing.tif", "--output", "y.gpkg")
    assert missing.returncode == 2 and missing.stderr.startswith("error:") and not (elsewhere / "y.gpkg").exists()


def test_pip_install_gives_a_footprints_command_that_works_from_any_folder(tmp_path):
    source = copy_source(tmp_path / "src")
    python = fresh_venv(tmp_path / "venv")
    pip_install(python, str(source))
    shutil.rmtree(source)  # an installed copy must not need its source tree
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    check_command(python, elsewhere, site)
    installed = {p.name for p in (site / "footprint_plugin" / "resources").iterdir()}
    assert installed == {"default_weights.safetensors", "icon.svg"}  # package data: no sample rasters


def test_editable_install_runs_the_source_tree(tmp_path):
    source = copy_source(tmp_path / "src")
    python = fresh_venv(tmp_path / "venv")
    pip_install(python, "-e", str(source))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    check_command(python, elsewhere, source)
