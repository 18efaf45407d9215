"""Instance labels to building polygons: traced outlines, cleaned, as WKB in the CRS."""

from __future__ import annotations

import struct

import numpy as np

from .buildings import Building, VectorizeOptions
from .outlines import clean_outlines
from .rings import Outlines, ring_area
from .trace import trace


def polygonise(labels: np.ndarray, partial: np.ndarray, scores: np.ndarray, matrix: tuple[float, ...],
               pixel_area_m2: float, options: VectorizeOptions, origin: tuple[int, int] = (0, 0)
               ) -> tuple[list[Building], np.ndarray]:
    """The buildings of the instance ``labels`` (0: nothing) and the label of each: their traced outlines cleaned
    (:func:`.outlines.clean_outlines`), in the CRS of the pixel -> CRS affine ``matrix`` (a, b, d, e, xoff, yoff),
    with ground area and ``scores`` (per label); an instance that fell apart keeps its largest piece, or every
    piece where ``partial`` (per label) says so. ``origin`` (column, row) is where ``labels`` lies in the pixels
    ``matrix`` maps: the outlines are cleaned there, so that they come out the same from any window of the same
    pixels."""
    outlines = traced_outlines(labels, partial)
    if origin != (0, 0):
        outlines = outlines.shifted(origin)
    cleaned = clean_outlines(outlines, pixel_area_m2, options)
    a, b, d, e, xoff, yoff = matrix
    buildings, kept = [], []
    for rings, value in zip(cleaned, outlines.labels.tolist()):
        if rings is None:
            continue
        kept.append(value)
        area = abs(ring_area(rings[0])) - sum(abs(ring_area(ring)) for ring in rings[1:])
        crs_rings = [np.column_stack([a * ring[:, 0] + b * ring[:, 1] + xoff, d * ring[:, 0] + e * ring[:, 1] + yoff])
                     for ring in rings]
        outer = crs_rings[0]
        centre = (float(outer[:, 0].min() + outer[:, 0].max()) / 2, float(outer[:, 1].min() + outer[:, 1].max()) / 2)
        buildings.append(Building.from_wkb(polygon_wkb(crs_rings), area * pixel_area_m2, float(scores[value]), centre))
    return buildings, np.asarray(kept, np.int64)


def traced_outlines(labels: np.ndarray, partial: np.ndarray) -> Outlines:
    """The pixel outline of each instance of ``labels`` (:func:`.trace.trace`): the largest piece of an instance,
    or every piece where ``partial`` says so."""
    outlines = trace(labels)
    if not len(outlines):
        return outlines
    areas = outlines.areas()
    order = np.lexsort((-areas, outlines.labels))  # by label, the largest piece first
    ordered_labels = outlines.labels[order]
    first_of_label = np.ones(len(order), bool)
    first_of_label[1:] = ordered_labels[1:] != ordered_labels[:-1]
    keep = order[first_of_label | partial[ordered_labels]]
    return outlines.take(np.sort(keep))


def polygon_wkb(rings: list[np.ndarray]) -> bytes:
    """A polygon's WKB (little-endian) from its closed rings."""
    parts = [struct.pack("<BII", 1, 3, len(rings))]
    for ring in rings:
        parts.append(struct.pack("<I", len(ring)))
        parts.append(np.ascontiguousarray(ring, dtype="<f8").tobytes())
    return b"".join(parts)

