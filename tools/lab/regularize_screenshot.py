"""Each regularisation mode drawn by QGIS over the same buildings.
Produced: docs/regularize_modes_in_qgis.png (docs/regularize.md, "Each mode drawn by QGIS").

    QT_QPA_PLATFORM=offscreen .venv/bin/python tools/lab/regularize_screenshot.py RASTER --png FILE
        [--crop x,y,width,height] [--tolerance 0.3]

Extracts the buildings of RASTER once with the default model as pixel outlines (``--regularize none``), then runs
the Processing algorithm ``footprint:regularize_buildings`` on them once per mode, and renders each result with
QGIS's renderer over the raster, styled as the algorithm loads it (orange: regularised; dashed grey: kept as it
was), the pixel outlines first.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

MODES = ("right angles", "right angles and diagonals", "any angle", "circle")


def pixel_outlines(raster: str, out: Path) -> Path:
    from footprint_plugin.core.extract import extract
    from footprint_plugin.core.parameters import ExtractionParameters
    from footprint_plugin.core.readers import RasterioReader

    with RasterioReader(raster) as reader:
        extract(reader, ExtractionParameters(regularize="none"), output=out)
    return out


def start_processing():
    """QGIS with Processing and this plugin's provider, headless."""
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    sys.path.append("/usr/share/qgis/python/plugins")
    from processing.core.Processing import Processing

    from footprint_plugin.processing.provider import FootprintProvider

    Processing.initialize()
    provider = FootprintProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    return app, provider


def render(raster_layer, vector_path: Path, extent, size: tuple[int, int], title: str, regularised: bool):
    from qgis.core import QgsVectorLayer
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtGui import QColor

    from footprint_plugin.qgis_io.style import style_regularized_layer
    from tools.lab.map_image import rendered_map

    buildings = QgsVectorLayer(str(vector_path), title, "ogr")
    if regularised:
        style_regularized_layer(buildings)
    else:
        symbol = buildings.renderer().symbol().symbolLayer(0)
        symbol.setBrushStyle(Qt.NoBrush)
        symbol.setStrokeColor(QColor(0, 229, 255))
        symbol.setStrokeWidth(0.5)
    return rendered_map(buildings, raster_layer, extent, size, f"{title}: {summary(buildings)}", 13)


def summary(layer) -> str:
    """Vertices per building and, for a regularised layer, how many kept their input."""
    counts = [sum(1 for _ in feature.geometry().vertices()) - feature.geometry().constGet().partCount()
              for feature in layer.getFeatures()]
    text = f"{len(counts)} buildings, {sum(counts) / max(1, len(counts)):.1f} vertices each"
    if layer.fields().indexOf("reg_method") >= 0:
        kept = sum(1 for f in layer.getFeatures() if str(f["reg_method"]).startswith("input"))
        text += f", {kept} kept as they were"
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raster")
    parser.add_argument("--png", required=True, type=Path)
    parser.add_argument("--crop", help="x,y,width,height in raster pixels")
    parser.add_argument("--tolerance", type=float, default=0.3)
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    work = Path(tempfile.mkdtemp(prefix="regularize-"))
    outlines = pixel_outlines(args.raster, work / "pixel_outlines.gpkg")
    app, _provider = start_processing()
    import processing
    from qgis.core import QgsRasterLayer, QgsRectangle

    from tools.lab.map_image import save_sheet

    layer = QgsRasterLayer(args.raster, "raster")
    x, y, w, h = (int(v) for v in args.crop.split(",")) if args.crop else (0, 0, layer.width(), layer.height())
    ext, px, py = layer.extent(), layer.rasterUnitsPerPixelX(), layer.rasterUnitsPerPixelY()
    extent = QgsRectangle(ext.xMinimum() + x * px, ext.yMaximum() - (y + h) * py,
                          ext.xMinimum() + (x + w) * px, ext.yMaximum() - y * py)
    size = (int(w * 1.6), int(h * 1.6))  # screen pixels per raster pixel
    images = [render(layer, outlines, extent, size, "model's pixel outlines (input)", False)]
    for index, mode in enumerate(MODES):
        result = processing.run("footprint:regularize_buildings", {
            "INPUT": str(outlines), "MODE": index, "TOLERANCE": args.tolerance, "OUTPUT": str(work / f"{index}.gpkg")})
        images.append(render(layer, Path(result["OUTPUT"]), extent, size, mode, True))
    save_sheet(images, size, args.png, colours_256=True)
    print(f"wrote {args.png}", flush=True)
    del app
    os._exit(0)  # QGIS 3.22 may crash while tearing down; the image is written


if __name__ == "__main__":
    main()
