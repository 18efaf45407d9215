"""Which Python packages the engine needs, and how to install the missing ones into QGIS's Python."""

from __future__ import annotations

import importlib.util
import sys

REQUIRED = {  # import name -> pip name
    "torch": "torch",
    "safetensors": "safetensors",
    "numpy": "numpy",
    "rasterio": "rasterio",
    "shapely": "shapely",
    "scipy": "scipy",
}


def missing_packages() -> list[str]:
    """pip names of the required packages that cannot be imported here."""
    return [pip for module, pip in REQUIRED.items() if importlib.util.find_spec(module) is None]


def install_hint(missing: list[str]) -> str:
    """One message saying what is missing and the command that installs it for this QGIS."""
    python = sys.executable if sys.platform == "win32" else f"{sys.base_prefix}/bin/python3"
    if sys.platform.startswith("linux") and "torch" in missing:
        command = f"{python} -m pip install --user torch --index-url https://download.pytorch.org/whl/cpu"
        others = [p for p in missing if p != "torch"]
        if others:
            command += f" && {python} -m pip install --user {' '.join(others)}"
    else:
        command = f"{python} -m pip install --user {' '.join(missing)}"
    if sys.platform == "win32":
        command = f"(in the OSGeo4W Shell) python -m pip install {' '.join(missing)}"
    return (f"Building footprints needs the Python package(s) {', '.join(missing)}, which QGIS's Python "
            f"cannot find. Install them with: {command} - then restart QGIS.")
