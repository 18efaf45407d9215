"""``make demo``: extract buildings from the real sample raster shipped in the repository.

Writes out/demo_buildings.gpkg and out/demo_overlay.png (predictions in orange,
OpenStreetMap buildings in cyan) and prints count, time, device and the F1
against the shipped OpenStreetMap labels.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors
from rasterio.features import rasterize

from footprint_plugin.core.errors import FootprintError
from footprint_plugin.core.extract import extract
from footprint_plugin.core.parameters import ExtractionParameters
from footprint_plugin.core.readers import RasterioReader
from footprint_plugin.core.sinks import ListSink
from footprint_plugin.core.vector_files import read_polygons

from .progress import ProgressBar
from .scoring import MIN_TRUTH_AREA_M2, score_raster_buildings

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "resources" / "sample" / "philippines_c1.tif"
LABELS = REPO / "resources" / "sample" / "philippines_c1_buildings.geojson"


def overlay_png(raster: Path, predicted: list, truth: list, path: Path, zoom: int = 2) -> None:
    """The image with polygon outlines burnt in, enlarged ``zoom`` times, as PNG."""
    with rasterio.open(raster) as src:
        image = src.read([1, 2, 3])
        transform = src.transform
    image = np.repeat(np.repeat(image, zoom, axis=1), zoom, axis=2)
    transform = transform * rasterio.Affine.scale(1 / zoom)
    shape = image.shape[1:]
    for geometries, colour in ((truth, (0, 230, 255)), (predicted, (255, 140, 0))):
        if not geometries:
            continue
        outlines = rasterize([(g.boundary, 1) for g in geometries], out_shape=shape, transform=transform,
                             all_touched=True, dtype="uint8")
        for band, value in enumerate(colour):
            image[band][outlines > 0] = value
    profile = {"driver": "PNG", "width": shape[1], "height": shape[0], "count": 3, "dtype": "uint8"}
    with warnings.catch_warnings():  # a PNG has no georeferencing, as intended
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(image)
    Path(f"{path}.aux.xml").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.demo", description=__doc__)
    parser.add_argument("--input", default=str(SAMPLE))
    parser.add_argument("--labels", default=str(LABELS))
    parser.add_argument("--weights", help="weights file (default: the bundled default model)")
    parser.add_argument("--out", default=str(REPO / "out"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gpkg, png = out / "demo_buildings.gpkg", out / "demo_overlay.png"
    try:
        bar = ProgressBar("demo")
        found = ListSink()
        with RasterioReader(args.input) as reader:
            result = extract(reader, ExtractionParameters(weights=args.weights), output=gpkg, sinks=[found],
                             progress=bar)
        bar.close()
        scores = score_raster_buildings(args.input, args.labels, found.buildings)
        truth_native = read_polygons(args.labels, result.crs_wkt).geometries
        overlay_png(Path(args.input), [b.geometry for b in found.buildings], truth_native, png)
    except FootprintError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"weights: {Path(result.weights_path).name} ({result.card.name})")
    print(f"{result.count} buildings in {result.seconds:.1f} s on {result.device} -> {gpkg}")
    print(f"overlay (orange: predicted, cyan: OpenStreetMap) -> {png}")
    print(f"F1 against the {scores.tp + scores.fn} OpenStreetMap buildings inside the raster (IoU >= 0.5, "
          f"truth under {MIN_TRUTH_AREA_M2:g} m2 ignored): {scores.f1:.3f} "
          f"(precision {scores.precision:.3f}, recall {scores.recall:.3f}; pixel IoU {scores.pixel_iou:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
