"""The rasters the benchmarks run on, made from real imagery.

* :func:`mosaic_vrt`: one real raster repeated to a square of any size (a VRT; the Banepa-north mosaic of
  ``make bench`` is ``mosaic_vrt(../shared/data/banepa_north/banepa_north.tif, 4096, ...)``).
* :func:`dense_mosaic`: the *dense 4k mosaic* of the GPU measurements, a GeoTIFF (EPSG:32636, 0.3 m) filled
  row by row with 224 px crops of ``data/default``'s chips (the validation chips, then the first 20 training
  chips, sorted by name, cycled): about 9,500 buildings in 4096 x 4096 px.
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DENSE_DATA = REPO / "data" / "default"  # python -m trainer.recipe prepare writes it from ../shared/data
CROP = 224
DENSE_CRS = "EPSG:32636"
DENSE_ORIGIN = (500000.0, 1000000.0)  # upper-left corner, metres
DENSE_RESOLUTION = 0.3


def mosaic_vrt(source: Path, size: int, path: Path) -> Path:
    """A size x size VRT that repeats the real ``source`` raster, georeferenced continuously."""
    import rasterio

    with rasterio.open(source) as src:
        width, height, transform, crs = src.width, src.height, src.transform, src.crs
        interps = [ci.name.capitalize() for ci in src.colorinterp]
    bands = []
    for band in (1, 2, 3):
        sources = []
        for y in range(0, size, height):
            for x in range(0, size, width):
                w, h = min(width, size - x), min(height, size - y)
                sources.append(
                    f'<SimpleSource><SourceFilename relativeToVRT="0">{source}</SourceFilename>'
                    f"<SourceBand>{band}</SourceBand><SrcRect xOff=\"0\" yOff=\"0\" xSize=\"{w}\" ySize=\"{h}\"/>"
                    f'<DstRect xOff="{x}" yOff="{y}" xSize="{w}" ySize="{h}"/></SimpleSource>')
        bands.append(f'<VRTRasterBand dataType="Byte" band="{band}"><ColorInterp>{interps[band - 1]}</ColorInterp>'
                     + "".join(sources) + "</VRTRasterBand>")
    geo = ", ".join(str(v) for v in (transform.c, transform.a, transform.b, transform.f, transform.d, transform.e))
    path.write_text(f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><SRS>{crs.to_wkt()}</SRS>'
                    f"<GeoTransform>{geo}</GeoTransform>" + "".join(bands) + "</VRTDataset>")
    return path


def mosaic_chips(data: Path) -> list[Path]:
    """The chips the dense mosaic cycles through: the validation chips, then the first 20 training chips."""
    manifest = json.loads((data / "manifest.json").read_text())
    chips = {split: sorted(chip for image in manifest["images"] if image["split"] == split for chip in image["chips"])
             for split in ("val", "train")}
    return [data / chip for chip in chips["val"] + chips["train"][:20]]


def chip_crops(data: Path) -> list:
    """The 224 px crops the dense mosaic cycles through (:func:`mosaic_chips`)."""
    import numpy as np

    crops = []
    for chip in mosaic_chips(data):
        with np.load(chip) as arrays:
            crops.append(arrays["image"][:3, :CROP, :CROP])
    if not crops:
        raise SystemExit(f"{data} holds no chips; run `python -m trainer.recipe prepare` first")
    return crops


def sample_crops() -> list:
    """224 px crops of the repository's own sample rasters, row by row (for a dense mosaic without
    ``data/default``, as in ``--smoke`` runs)."""
    import rasterio

    crops = []
    for path in sorted((REPO / "resources" / "sample").glob("*.tif")):
        with rasterio.open(path) as src:
            image = src.read([1, 2, 3])
        for top in range(0, image.shape[1] - CROP + 1, CROP):
            for left in range(0, image.shape[2] - CROP + 1, CROP):
                crops.append(image[:, top : top + CROP, left : left + CROP])
    return crops


def dense_mosaic(data: Path | None, size: int, path: Path) -> Path:
    """The dense mosaic of ``size`` x ``size`` px from the prepared chips in ``data`` (see the module's text),
    or from the sample rasters' crops when ``data`` is None."""
    import numpy as np
    import rasterio
    from rasterio.transform import Affine

    crops = chip_crops(data) if data is not None else sample_crops()
    image = np.zeros((3, size, size), np.uint8)
    index = 0
    for top in range(0, size, CROP):
        for left in range(0, size, CROP):
            crop = crops[index % len(crops)]
            index += 1
            rows, cols = min(crop.shape[1], size - top), min(crop.shape[2], size - left)
            image[:, top : top + rows, left : left + cols] = crop[:, :rows, :cols]
    transform = Affine(DENSE_RESOLUTION, 0, DENSE_ORIGIN[0], 0, -DENSE_RESOLUTION, DENSE_ORIGIN[1])
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8", "crs": DENSE_CRS,
               "transform": transform, "tiled": True, "blockxsize": 256, "blockysize": 256, "photometric": "RGB"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image)
    return path


def ensure_default_chips() -> Path:
    """``data/default``, prepared from ``../shared/data`` first when it is missing."""
    if not (DENSE_DATA / "manifest.json").is_file():
        from trainer.recipe import main as recipe

        if recipe(["prepare", "--out", str(DENSE_DATA)]) != 0:
            raise SystemExit("cannot prepare data/default (it needs ../shared/data)")
    return DENSE_DATA
