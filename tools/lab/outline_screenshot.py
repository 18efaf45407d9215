"""The outline modes drawn by QGIS itself over real imagery: one map image per mode, side by side.
Produced: docs/outlines_in_qgis.png (docs/model_report.md, "Outlines").

    QT_QPA_PLATFORM=offscreen .venv/bin/python tools/lab/outline_screenshot.py RASTER --png FILE
        [--modes simplify,orthogonal] [--crop x,y,width,height]

Runs the extraction once per mode (the engine, default model) into GeoPackages, loads each with
the raster into a QGIS project, styles the buildings as orange outlines and renders the map with
QGIS's renderer at the raster's resolution (``--crop`` in raster pixels).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def extract(raster: str, mode: str, out: Path) -> Path:
    from footprint_plugin.core.extract import extract
    from footprint_plugin.core.parameters import ExtractionParameters
    from footprint_plugin.core.readers import RasterioReader

    parameters = ExtractionParameters(regularize=mode)
    with RasterioReader(raster) as reader:
        extract(reader, parameters, output=out)
    return out


def render(raster_layer, vector_path: Path, extent, size: tuple[int, int], title: str):
    from qgis.core import QgsVectorLayer
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtGui import QColor

    from tools.lab.map_image import rendered_map

    buildings = QgsVectorLayer(f"{vector_path}|layername=buildings", title, "ogr")
    symbol = buildings.renderer().symbol()
    symbol.symbolLayer(0).setBrushStyle(Qt.NoBrush)
    symbol.symbolLayer(0).setStrokeColor(QColor(255, 120, 0))
    symbol.symbolLayer(0).setStrokeWidth(0.6)
    caption = f"{title}: {buildings.featureCount()} buildings, {vertices(buildings):.1f} vertices each"
    return rendered_map(buildings, raster_layer, extent, size, caption, 14)


def vertices(layer) -> float:
    counts = [sum(1 for _ in feature.geometry().vertices()) - 1 for feature in layer.getFeatures()]
    return sum(counts) / max(1, len(counts))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raster")
    parser.add_argument("--png", required=True, type=Path)
    parser.add_argument("--modes", default="simplify,orthogonal")
    parser.add_argument("--crop", help="x,y,width,height in raster pixels")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import QgsApplication, QgsRasterLayer, QgsRectangle

    from tools.lab.map_image import save_sheet

    app = QgsApplication([], False)
    app.initQgis()
    layer = QgsRasterLayer(args.raster, "raster")
    x, y, w, h = (int(v) for v in args.crop.split(",")) if args.crop else (0, 0, layer.width(), layer.height())
    ext, px, py = layer.extent(), layer.rasterUnitsPerPixelX(), layer.rasterUnitsPerPixelY()
    extent = QgsRectangle(ext.xMinimum() + x * px, ext.yMaximum() - (y + h) * py,
                          ext.xMinimum() + (x + w) * px, ext.yMaximum() - y * py)
    scale = 1.6  # screen pixels per raster pixel
    size = (int(w * scale), int(h * scale))
    work = Path(tempfile.mkdtemp(prefix="outlines-"))
    modes = args.modes.split(",")
    images = [render(layer, extract(args.raster, mode, work / f"{mode}.gpkg"), extent, size, mode) for mode in modes]
    save_sheet(images, size, args.png)
    print(f"wrote {args.png}", flush=True)
    os._exit(0)  # QGIS 3.22 may crash while tearing down; the image is written


if __name__ == "__main__":
    main()
