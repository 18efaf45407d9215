"""Rasterise labelled imagery into 3-class training chips (background / interior / border).

Input is a SpaceNet AOI folder (--spacenet DIR: RGB-PanSharpen or MUL-PanSharpen
images with geojson/buildings/buildings_<AOI>_img<N>.geojson) or any rasters with
one or more vector label files (--images ... --labels ...; any OGR format and
CRS). Images are resampled to --resolution metres, split by whole image into
train/val/test, and cut into chips; a manifest.json records counts and band
statistics. Pixels outside --label-area (partly labelled imagery) and nodata
are marked 255 = ignore.
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.crs import CRS
from rasterio.features import rasterize
from rasterio.warp import transform_geom
from scipy import ndimage
from shapely.geometry import box, mapping, shape

from footprint_plugin.core.errors import FootprintError
from footprint_plugin.core.geo import model_grid
from footprint_plugin.core.normalization import input_scale
from footprint_plugin.core.readers import RasterioReader, resolve_band_mapping
from footprint_plugin.core.vector_files import polygons_4326
from footprint_plugin.core.weights import default_normalization

from .progress import ProgressBar

IGNORE = 255
SPLITS = ("train", "val", "test")
SPACENET_RE = re.compile(r"(?:RGB|MUL)-PanSharpen_(?P<aoi>.+)_img(?P<n>\d+)\.tif$", re.IGNORECASE)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--spacenet", help="SpaceNet AOI folder (holds RGB-PanSharpen/ or MUL-PanSharpen/ and geojson/)")
    source.add_argument("--images", nargs="+", help="raster files or glob patterns")
    parser.add_argument("--labels", nargs="+", default=[], help="vector files with building polygons (with --images)")
    parser.add_argument("--label-area", nargs="*", default=[],
                        help="polygons outlining where labels are complete; elsewhere pixels are ignored")
    parser.add_argument("--multispectral", action="store_true", help="SpaceNet: use MUL-PanSharpen (8 bands)")
    parser.add_argument("--out", required=True, help="output folder for chips and manifest.json")
    parser.add_argument("--resolution", type=float, default=0.3, help="ground resolution of the chips, m (default 0.3)")
    parser.add_argument("--border-width", type=int, default=2, help="building border class width, px (default 2)")
    parser.add_argument("--chip-size", type=int, default=256, help="chip side, px (default 256)")
    parser.add_argument("--split", default="0.7,0.15,0.15", help="train,val,test fractions by whole image")
    parser.add_argument("--assign", action="append", default=[], metavar="PATTERN=SPLIT",
                        help="put images matching a glob pattern into a split, e.g. '*nairobi_c1*=test'")
    parser.add_argument("--seed", type=int, default=0)


@dataclass
class ImageRecord:
    path: str
    split: str
    chips: list[str] = field(default_factory=list)
    buildings: int = 0
    status: str = "ok"


def three_class_mask(instances: np.ndarray, border_width: int) -> np.ndarray:
    """0 background, 1 interior, 2 border: building pixels within ``border_width`` px of
    the outside or of another building."""
    size = 2 * border_width + 1
    high = ndimage.maximum_filter(instances, size=size, mode="nearest")
    low = ndimage.minimum_filter(instances, size=size, mode="constant", cval=0)
    mask = np.zeros(instances.shape, np.uint8)
    building = instances > 0
    mask[building] = 1
    mask[building & ((high != instances) | (low != instances))] = 2
    return mask


@dataclass
class LabelledImage:
    """A raster resampled to the chips' resolution, its 3-class mask, and what its input scale depends on."""

    image: np.ndarray  # (bands, H, W), the raster's own type
    mask: np.ndarray  # uint8: 0 background, 1 interior, 2 border, IGNORE
    buildings: int
    dtype: str
    bit_depth: int | None

    def scale(self, normalization: dict[str, Any]) -> float:
        """The divisor to 0..1 of these pixels under ``normalization`` (the core's rule, as in extraction)."""
        return input_scale(normalization, self.dtype, self.bit_depth)


def label_image(path: str, buildings_4326: list[dict[str, Any]], areas_4326: list[dict[str, Any]],
                resolution: float, border_width: int, bands: list[str]) -> LabelledImage:
    """Image resampled to ``resolution`` (bands, H, W) and its 3-class mask; buildings counted."""
    with RasterioReader(path) as reader:
        dtype, bit_depth = reader.dtype, reader.bit_depth
        mapping_ = resolve_band_mapping(reader, bands)
        grid = model_grid(reader.crs_wkt, reader.transform, reader.width, reader.height, resolution)
        image, valid = reader.read((0.0, 0.0, float(reader.width), float(reader.height)),
                                   (grid.height, grid.width), mapping_)
        crs = CRS.from_wkt(reader.crs_wkt)
    left, top = grid.transform * (0, 0)
    right, bottom = grid.transform * (grid.width, grid.height)
    footprint = box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))
    wgs84 = CRS.from_epsg(4326)
    footprint_4326 = shape(transform_geom(crs, wgs84, mapping(footprint)))
    local = []
    for geometry in buildings_4326:
        if shape(geometry).intersects(footprint_4326):
            local.append(shape(transform_geom(wgs84, crs, geometry)))
    shapes_with_ids = [(mapping(geometry), index + 1) for index, geometry in enumerate(local)]
    instances = np.zeros((grid.height, grid.width), np.int32)
    if shapes_with_ids:
        instances = rasterize(shapes_with_ids, out_shape=instances.shape, transform=grid.transform, dtype="int32")
    mask = three_class_mask(instances, border_width)
    mask[~valid] = IGNORE
    # Label areas restrict the images they overlap; images outside every area are fully labelled.
    overlapping = [g for g in areas_4326 if shape(g).intersects(footprint_4326)]
    if overlapping:
        area_shapes = [transform_geom(wgs84, crs, geometry) for geometry in overlapping]
        inside = rasterize([(g, 1) for g in area_shapes], out_shape=mask.shape, transform=grid.transform, dtype="uint8")
        mask[inside == 0] = IGNORE
    ids = np.unique(instances[mask != IGNORE])
    return LabelledImage(image, mask, int((ids > 0).sum()), dtype, bit_depth)


def cut_chips(image: np.ndarray, mask: np.ndarray, size: int) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """Non-overlapping chips covering the image; edge chips end at the edge. All-ignore chips are dropped."""
    from footprint_plugin.core.tiling import tile_starts

    chips = []
    for row in tile_starts(mask.shape[0], size, size):
        for col in tile_starts(mask.shape[1], size, size):
            chip_mask = mask[row : row + size, col : col + size]
            if (chip_mask == IGNORE).all():
                continue
            chips.append((row, col, image[:, row : row + size, col : col + size], chip_mask))
    return chips


def assign_splits(paths: list[str], fractions: list[float], rules: list[str], seed: int) -> dict[str, str]:
    """Whole images to splits: pattern rules first, the rest shuffled (seeded) by the fractions."""
    result: dict[str, str] = {}
    for rule in rules:
        pattern, _, split = rule.rpartition("=")
        if split not in SPLITS or not pattern:
            raise FootprintError(f"--assign {rule!r}: use PATTERN=train|val|test.")
        for path in paths:
            if path not in result and fnmatch.fnmatch(path, pattern):
                result[path] = split
    rest = sorted(p for p in paths if p not in result)
    random.Random(seed).shuffle(rest)
    n_train = round(fractions[0] * len(rest))
    n_val = round(fractions[1] * len(rest))
    for index, path in enumerate(rest):
        result[path] = "train" if index < n_train else "val" if index < n_train + n_val else "test"
    return result


def spacenet_pairs(folder: str, multispectral: bool) -> list[tuple[str, list[str]]]:
    root = Path(folder)
    image_dir = root / ("MUL-PanSharpen" if multispectral else "RGB-PanSharpen")
    if not image_dir.is_dir():
        raise FootprintError(f"{folder} is not a SpaceNet AOI folder: {image_dir.name}/ is missing.")
    pairs = []
    for image in sorted(image_dir.glob("*.tif")):
        match = SPACENET_RE.search(image.name)
        if not match:
            continue
        label = root / "geojson" / "buildings" / f"buildings_{match['aoi']}_img{match['n']}.geojson"
        pairs.append((str(image), [str(label)] if label.is_file() else []))
    if not pairs:
        raise FootprintError(f"No SpaceNet images (*PanSharpen_<AOI>_img<N>.tif) found in {image_dir}.")
    return pairs


def band_statistics(images: list[np.ndarray], scale: float) -> dict[str, list[float]]:
    total = sum(img.shape[1] * img.shape[2] for img in images)
    sums = sum(img.reshape(img.shape[0], -1).astype(np.float64).sum(axis=1) for img in images)
    mean = sums / total / scale
    squares = sum(((img.reshape(img.shape[0], -1) / scale - mean[:, None]) ** 2).sum(axis=1) for img in images)
    std = np.sqrt(squares / total)
    return {"mean": [round(float(v), 4) for v in mean], "std": [round(float(max(v, 1e-3)), 4) for v in std]}


def run(args: argparse.Namespace) -> int:
    fractions = [float(v) for v in args.split.split(",")]
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise FootprintError("--split needs three fractions that add up to 1, e.g. 0.7,0.15,0.15.")
    if args.spacenet:
        pairs = spacenet_pairs(args.spacenet, args.multispectral)
        shared_labels: list[dict[str, Any]] | None = None
    else:
        paths = sorted({p for pattern in args.images for p in (glob.glob(pattern) or [pattern])})
        missing = [p for p in paths if not Path(p).is_file()]
        if missing:
            raise FootprintError(f"Image {missing[0]}: file not found.")
        if not args.labels:
            raise FootprintError("--images needs --labels with the building polygons.")
        pairs = [(p, []) for p in paths]
        shared_labels = []
        for label_path in args.labels:
            shared_labels.extend(polygons_4326(label_path)[0])
    areas = [g for path in args.label_area for g in polygons_4326(path)[0]]
    bands = [f"band{i}" for i in range(1, 9)] if args.multispectral else ["red", "green", "blue"]
    out = Path(args.out)
    splits = assign_splits([p for p, _ in pairs], fractions, args.assign, args.seed)
    records: list[ImageRecord] = []
    stats_images: list[np.ndarray] = []
    dtypes, scales = set(), set()
    invalid_labels = 0
    bar = ProgressBar("prepare")
    for index, (path, label_files) in enumerate(pairs):
        bar(index / len(pairs), Path(path).name)
        record = ImageRecord(path, splits[path])
        records.append(record)
        if shared_labels is None:
            polygons = []
            for label_file in label_files:
                found, bad = polygons_4326(label_file)
                polygons.extend(found)
                invalid_labels += bad
            if not label_files:
                record.status = "no label file"
                continue
        else:
            polygons = shared_labels
        try:
            labelled = label_image(path, polygons, areas, args.resolution, args.border_width, bands)
        except FootprintError as exc:
            record.status = f"skipped: {exc}"
            continue
        image, mask, record.buildings = labelled.image, labelled.mask, labelled.buildings
        dtypes.add(str(image.dtype))
        scales.add(labelled.scale(default_normalization()))
        if record.split == "train":
            stats_images.append(image)
        folder = out / "chips" / record.split
        folder.mkdir(parents=True, exist_ok=True)
        for row, col, chip_image, chip_mask in cut_chips(image, mask, args.chip_size):
            name = f"{Path(path).stem}_{row}_{col}.npz"
            np.savez_compressed(folder / name, image=chip_image, mask=chip_mask)
            record.chips.append(f"chips/{record.split}/{name}")
    bar(1.0, "done")
    bar.close()
    if len(scales) > 1:
        raise FootprintError(f"The images have different value ranges ({', '.join(sorted(dtypes))}; divisors "
                             f"{', '.join(f'{s:g}' for s in sorted(scales))}): prepare each kind into a folder of "
                             "its own, or convert them to one type first (e.g. gdal_translate -ot Byte -scale).")
    scale = scales.pop() if scales else 255.0
    summary = {split: {"images": sum(r.split == split and r.status == "ok" for r in records),
                       "chips": sum(len(r.chips) for r in records if r.split == split),
                       "buildings": sum(r.buildings for r in records if r.split == split)} for split in SPLITS}
    manifest = {
        "resolution_m": args.resolution,
        "border_width_px": args.border_width,
        "chip_size": args.chip_size,
        "input_bands": bands,
        "dtype": sorted(dtypes),
        "scale": scale,
        "band_stats": band_statistics(stats_images, scale) if stats_images else None,
        "splits": summary,
        "invalid_label_polygons": invalid_labels,
        "skipped_images": [{"path": r.path, "status": r.status} for r in records if r.status != "ok"],
        "images": [{"path": r.path, "split": r.split, "buildings": r.buildings, "chips": r.chips} for r in records
                   if r.status == "ok"],
        "seed": args.seed,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    for split in SPLITS:
        counts = summary[split]
        print(f"{split}: {counts['images']} images, {counts['chips']} chips, {counts['buildings']} buildings")
    if manifest["skipped_images"]:
        print(f"{len(manifest['skipped_images'])} image(s) skipped (see manifest.json)")
    return 0
