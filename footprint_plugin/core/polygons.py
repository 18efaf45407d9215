"""Instance labels to building polygons: one part of a strip at a time (in this process or a worker)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rasterio.features import shapes
from scipy import ndimage
from shapely import affinity
from shapely.geometry import Polygon, shape

from .buildings import Building, VectorizeOptions
from .outlines import clean_outline


def split_columns(labels: np.ndarray, count: int, pieces: int) -> list[int]:
    """Column cuts [0, ..., width] into at most ``pieces`` parts of about equal width that no
    labelled instance crosses (``count`` = largest label + 1)."""
    width = labels.shape[1]
    if pieces <= 1 or width < 2 * pieces:
        return [0, width]
    crossing = np.zeros(width + 1, np.int64)  # crossing[c] > 0: some instance has pixels in c - 1 and c
    for box in ndimage.find_objects(labels, max_label=count - 1):
        if box is not None and box[1].stop - box[1].start > 1:
            crossing[box[1].start + 1] += 1
            crossing[box[1].stop] -= 1
    free = np.flatnonzero(np.cumsum(crossing)[1:width] == 0) + 1
    cuts = [0]
    for target in (width * i // pieces for i in range(1, pieces)):
        if len(free):
            cut = int(free[np.argmin(np.abs(free - target))])
            if cuts[-1] < cut < width:
                cuts.append(cut)
    return cuts + [width]


@dataclass
class PolygonJob:
    """One part of a strip to turn into buildings: the instance labels of the pixels to emit (0
    elsewhere), per-label flags and scores, and the part's pixel -> CRS affine (a, b, d, e, x, y)."""

    labels: np.ndarray
    partial: np.ndarray  # bool per label: keep every piece, not only the largest
    scores: np.ndarray  # mean building probability per label
    matrix: tuple[float, ...]
    pixel_area_m2: float
    options: VectorizeOptions


def polygonise(job: PolygonJob) -> list[Building]:
    """The buildings of a :class:`PolygonJob` (runs in this process or in a vectorising worker)."""
    parts: dict[int, list[Polygon]] = {}
    for geom, value in shapes(job.labels, mask=job.labels > 0, connectivity=4):
        polygon = shape(geom)
        value = int(value)
        if value not in parts:
            parts[value] = [polygon]
        elif job.partial[value]:
            parts[value].append(polygon)
        elif polygon.area > parts[value][0].area:
            parts[value] = [polygon]
    buildings = []
    for value, pieces in parts.items():
        for polygon in pieces:
            polygon = clean_outline(polygon, job.pixel_area_m2, job.options)
            if polygon is not None:
                buildings.append(Building(affinity.affine_transform(polygon, list(job.matrix)),
                                          polygon.area * job.pixel_area_m2, float(job.scores[value])))
    return buildings
