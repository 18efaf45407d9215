"""The engine and the trainer never import QGIS or Qt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('qgis', 'PyQt5', 'PyQt6', 'sip', 'PyQt'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import pkgutil, importlib
import footprint_plugin, footprint_plugin.core
names = ['footprint_plugin.core.' + m.name for m in pkgutil.iter_modules(footprint_plugin.core.__path__)]
import trainer
names += ['trainer.' + m.name for m in pkgutil.iter_modules(trainer.__path__) if m.name != '__main__']
for name in names:
    importlib.import_module(name)
loaded = [m for m in sys.modules if m.split('.')[0] in ('qgis', 'PyQt5', 'PyQt6')]
assert not loaded, loaded
print(len(names), 'modules')
"""


def test_core_and_trainer_import_without_qgis_or_qt():
    result = subprocess.run([sys.executable, "-c", BLOCKER], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    count = int(result.stdout.split()[0])
    assert count >= 12  # every core and trainer module was imported


def test_blocker_really_blocks():
    code = BLOCKER.split("import pkgutil")[0] + "import qgis.core\n"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0 and "blocked: qgis" in result.stderr


WITHOUT_GDAL_BINDINGS = """
import importlib.abc, sys
attempts = []
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'osgeo':
            attempts.append(name)
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
from trainer.cli import build_parser
build_parser()  # imports every trainer command
from footprint_plugin.core.errors import FootprintError
from footprint_plugin.core.extract import extract, extract_buildings
from footprint_plugin.core.parameters import ExtractionParameters
from footprint_plugin.core.readers import RasterioReader
with RasterioReader('resources/sample/philippines_c1.tif') as reader:
    result = extract_buildings(reader, ExtractionParameters())
    assert not attempts, attempts  # nothing so far even tried to import osgeo
    try:
        extract(reader, ExtractionParameters(), output='/tmp/never.gpkg')
    except FootprintError as exc:
        assert 'python3-gdal' in str(exc), exc
    else:
        raise AssertionError('GeoPackage written without osgeo')
print(result.count)
"""


def test_training_and_extraction_run_without_gdal_python_bindings():
    """A GPU server may have rasterio's own GDAL but not the osgeo bindings: only GeoPackage output needs them."""
    result = subprocess.run([sys.executable, "-c", WITHOUT_GDAL_BINDINGS], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) > 20  # buildings found in the sample raster
