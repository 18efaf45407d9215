"""Output files: the formats by extension, and the check that a path can be written, made before any work."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import FootprintError

LAYER_NAME = "buildings"
OGR_DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON", ".fgb": "FlatGeobuf",
               ".shp": "ESRI Shapefile"}
CSV_SUFFIX = ".csv"
OUTPUT_SUFFIXES = (*OGR_DRIVERS, CSV_SUFFIX)


def check_output_path(path: str | os.PathLike[str], suffixes: tuple[str, ...] = OUTPUT_SUFFIXES) -> Path:
    """Fail early, before any work, when ``path`` cannot be written or has an unknown extension."""
    path = Path(path)
    if path.is_dir():
        raise FootprintError(f"Output {path} is a folder; give a file name, e.g. buildings.gpkg (a GeoPackage).")
    if path.suffix.lower() not in suffixes:
        kinds = "a GeoPackage ending in .gpkg" if suffixes == (".gpkg",) else f"a file ending in {', '.join(suffixes)}"
        raise FootprintError(f"Output {path}: the output must be {kinds}.")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FootprintError(f"Output {path}: folder {folder} does not exist.")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise FootprintError(f"Output {path}: no permission to write there; choose another folder.")
    return path


def partial_path(output: str | os.PathLike[str]) -> Path:
    """Where a resumable run keeps its finished blocks until it completes (:mod:`.journal`)."""
    path = Path(output)
    return path.with_name(f"{path.stem}.partial.gpkg")
