"""Fixtures generated in code: georeferenced rasters and models with known outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.transform import Affine
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasterio.windows import Window
from torch import nn

from footprint_plugin.core.model import UNet, UNetConfig
from footprint_plugin.core.weights import ModelCard, save_weights

REPO = Path(__file__).resolve().parents[1]
SAMPLE_RASTER = REPO / "resources" / "sample" / "philippines_c1.tif"
SAMPLE_LABELS = REPO / "resources" / "sample" / "philippines_c1_buildings.geojson"
DEFAULT_WEIGHTS = REPO / "resources" / "default_weights.safetensors"
ZANZIBAR = REPO / "resources" / "sample" / "zanzibar_c1.tif"  # 1792 x 512 px, EPSG:3857, held out of training

# Web Mercator at 60 degrees north: one map unit is half a metre on the ground.
MERCATOR_60N = Affine(0.6, 0, 0.0, 0, -0.6, 8399737.89)


def write_raster(path: Path, data: np.ndarray, crs: str = "EPSG:32633",
                 transform: Affine = Affine(0.3, 0, 500000, 0, -0.3, 6000000),
                 nodata: float | None = None, colorinterp: list[ColorInterp] | None = None) -> Path:
    """A GeoTIFF with real CRS and transform; ``data`` is (bands, rows, cols)."""
    bands, rows, cols = data.shape
    profile = {"driver": "GTiff", "width": cols, "height": rows, "count": bands, "dtype": data.dtype.name,
               "crs": CRS.from_user_input(crs), "transform": transform, "nodata": nodata}
    if bands in (3, 4) and data.dtype == np.uint8:
        profile["photometric"] = "RGB"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if colorinterp:
            dst.colorinterp = colorinterp
    return path


class ProbeModel(nn.Module):
    """Logits are a fixed function of the input: class k follows band k.

    With normalisation mean 0, std 1 and scale 255, a pixel (0, 255, 0) is
    building interior, (0, 0, 255) border, (255, 0, 0) background: a painted
    raster is its own ground truth.
    """

    def __init__(self) -> None:
        super().__init__()
        self.config = UNetConfig(depth=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 40.0 * (x - 0.5)


def probe_card(tile_size: int = 64, resolution_m: float = 0.3) -> ModelCard:
    return ModelCard(
        model_args=UNetConfig(depth=2).to_dict(),
        normalization={"scale": {"uint8": 255.0, "uint16": 2047.0}, "mean": [0, 0, 0], "std": [1, 1, 1]},
        resolution_m=resolution_m,
        tile_size=tile_size,
        name="probe",
    )


def paint(rows: int, cols: int, boxes: list[tuple[int, int, int, int]], border: int = 2) -> np.ndarray:
    """uint8 RGB for ProbeModel: each box (row0, col0, row1, col1) is a building with a border ring."""
    image = np.zeros((3, rows, cols), np.uint8)
    image[0] = 255
    border_colour = np.array([0, 0, 255], np.uint8)[:, None, None]
    interior_colour = np.array([0, 255, 0], np.uint8)[:, None, None]
    for r0, c0, r1, c1 in boxes:
        image[:, r0:r1, c0:c1] = border_colour
        image[:, r0 + border : r1 - border, c0 + border : c1 - border] = interior_colour
    return image


def tiny_unet_weights(path: Path, base_filters: int = 4, depth: int = 3, bands: list[str] | None = None,
                      seed: int = 0, resolution_m: float = 0.3) -> Path:
    """A real (untrained, seeded) U-Net saved as a weights file."""
    torch.manual_seed(seed)
    bands = bands or ["red", "green", "blue"]
    model = UNet(UNetConfig(in_channels=len(bands), base_filters=base_filters, depth=depth))
    card = ModelCard(input_bands=bands, tile_size=64, resolution_m=resolution_m, name=f"tiny-{seed}",
                     normalization={"scale": {"uint8": 255.0, "uint16": 2047.0}, "mean": [0.5] * len(bands),
                                    "std": [0.25] * len(bands)})
    save_weights(path, model, card)
    return path


def cut_tiles(folder: Path, columns: int = 4, utm: tuple[int, ...] = ()) -> list[Path]:
    """The sample cut into ``columns`` GeoTIFF tiles side by side; the tiles numbered in ``utm`` warped to
    EPSG:32737 (UTM 37S, where Zanzibar lies)."""
    folder.mkdir(parents=True, exist_ok=True)
    tiles = []
    with rasterio.open(ZANZIBAR) as source:
        width = source.width // columns
        for index in range(columns):
            window = Window(index * width, 0, width if index + 1 < columns else source.width - index * width,
                            source.height)
            profile = source.profile | {"width": window.width, "height": window.height,
                                        "transform": source.window_transform(window)}
            data = source.read(window=window)
            path = folder / f"tile_{index}.tif"
            if index in utm:
                _write_warped(path, data, profile, "EPSG:32737")
            else:
                with rasterio.open(path, "w", **profile) as target:
                    target.write(data)
            tiles.append(path)
    return tiles


def _write_warped(path: Path, data: np.ndarray, profile: dict, crs: str) -> None:
    transform, width, height = calculate_default_transform(profile["crs"], crs, profile["width"], profile["height"],
                                                           *rasterio.transform.array_bounds(
                                                               profile["height"], profile["width"], profile["transform"]))
    warped = np.zeros((data.shape[0], height, width), data.dtype)
    for band in range(data.shape[0]):
        reproject(data[band], warped[band], src_transform=profile["transform"], src_crs=profile["crs"],
                  dst_transform=transform, dst_crs=crs, resampling=Resampling.bilinear)
    with rasterio.open(path, "w", **(profile | {"crs": crs, "transform": transform, "width": width, "height": height,
                                                 "nodata": 0})) as target:
        target.write(warped)
