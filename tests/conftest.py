"""Shared test set-up: keep caches (the ONNX export cache) out of the user's home, and the user's
site-packages (~/.local/lib/python3.*, where another checkout or tool may have put a .pth) out of every
Python the tests start: QGIS, qgis_process, pip and /usr/bin/python3 see only what they have themselves."""

import os
import tempfile

import pytest

os.environ.setdefault("XDG_CACHE_HOME", tempfile.mkdtemp(prefix="footprint-test-cache-"))
os.environ["PYTHONNOUSERSITE"] = "1"


@pytest.fixture()
def provider(qgis_iface, qgis_processing):
    """The plugin's Processing provider, registered for one test (pytest-qgis's iface and Processing)."""
    import footprint_plugin

    plugin = footprint_plugin.classFactory(qgis_iface)
    plugin.initProcessing()
    yield plugin.provider
    plugin.unload()
