"""The SpaceNet building metric: greedy one-to-one matching at an IoU threshold."""

from __future__ import annotations

import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from shapely.geometry.base import BaseGeometry
from shapely.strtree import STRtree
from shapely.validation import make_valid


def precision_recall_f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """The SpaceNet figures of match counts (0 where undefined): F1 = 2 TP / (2 TP + FP + FN)."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return precision, recall, f1


class _Figures:
    """Precision, recall and F1 of a class with ``tp``, ``fp`` and ``fn``."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return precision_recall_f1(self.tp, self.fp, self.fn)[0]

    @property
    def recall(self) -> float:
        return precision_recall_f1(self.tp, self.fp, self.fn)[1]

    @property
    def f1(self) -> float:
        return precision_recall_f1(self.tp, self.fp, self.fn)[2]


@dataclass
class MatchCounts(_Figures):
    tp: int
    fp: int
    fn: int
    matches: list[tuple[int, int, float]]  # (proposal index, truth index, IoU)


def _valid(geometry: BaseGeometry) -> BaseGeometry:
    return geometry if geometry.is_valid else make_valid(geometry)


def _index(geometries: Sequence[BaseGeometry]) -> STRtree | None:
    if not geometries:
        return None
    with warnings.catch_warnings():  # shapely 1.8 announces the 2.0 API, which _query handles
        warnings.simplefilter("ignore")
        return STRtree(geometries)


def _query(tree: STRtree, geometry: BaseGeometry) -> list[int]:
    """Indexes of candidates: ``query_items`` on shapely 1.8, ``query`` returns indexes on 2.x."""
    if hasattr(tree, "query_items"):
        return [int(i) for i in tree.query_items(geometry)]
    return [int(i) for i in tree.query(geometry)]


def iou(a: BaseGeometry, b: BaseGeometry) -> float:
    union = a.union(b).area
    return a.intersection(b).area / union if union > 0 else 0.0


def match_buildings(truth: Sequence[BaseGeometry], proposals: Sequence[BaseGeometry],
                    confidences: Sequence[float] | None, threshold: float = 0.5) -> MatchCounts:
    """Proposals in descending confidence each take the still-unmatched truth polygon of
    highest IoU; a true positive when that IoU >= ``threshold``, else a false positive.
    Unmatched truth polygons are false negatives."""
    truth = [_valid(g) for g in truth]
    proposals = [_valid(g) for g in proposals]
    order = sorted(range(len(proposals)), key=lambda i: -(confidences[i] if confidences is not None else 0.0))
    tree = _index(truth)
    unmatched = set(range(len(truth)))
    matches = []
    for index in order:
        proposal = proposals[index]
        best, best_iou = -1, 0.0
        if tree is not None and not proposal.is_empty:
            for candidate in _query(tree, proposal):
                if candidate in unmatched:
                    value = iou(proposal, truth[candidate])
                    if value > best_iou:
                        best, best_iou = candidate, value
        if best >= 0 and best_iou >= threshold:
            unmatched.discard(best)
            matches.append((index, best, best_iou))
    tp = len(matches)
    return MatchCounts(tp, len(proposals) - tp, len(truth) - tp, matches)


@dataclass
class ErrorKinds:
    """Why truth buildings are hard, counted per truth building (a building may count twice)."""

    missed: int  # no proposal covers 20% of it
    merged: int  # a proposal covering 20% of it also covers 20% of another truth building
    split: int  # two or more proposals each cover 20% of it


def error_kinds(truth: Sequence[BaseGeometry], proposals: Sequence[BaseGeometry], cover: float = 0.2,
                counted: Collection[int] | None = None) -> ErrorKinds:
    """Counts of missed, merged and split truth buildings (coverage share ``cover`` of the truth's area),
    among the truth indexes ``counted`` (all when None; e.g. the unmatched ones)."""
    truth = [_valid(g) for g in truth]
    proposals = [_valid(g) for g in proposals]
    tree = _index(proposals)
    covering: list[list[int]] = []  # per truth: the proposals covering it
    for building in truth:
        found = []
        if tree is not None and building.area > 0:
            for candidate in _query(tree, building):
                if building.intersection(proposals[candidate]).area >= cover * building.area:
                    found.append(candidate)
        covering.append(found)
    covers_count: dict[int, int] = {}
    for found in covering:
        for candidate in found:
            covers_count[candidate] = covers_count.get(candidate, 0) + 1
    kept = [found for index, found in enumerate(covering) if counted is None or index in counted]
    return ErrorKinds(missed=sum(1 for found in kept if not found),
                      merged=sum(1 for found in kept if any(covers_count[c] > 1 for c in found)),
                      split=sum(1 for found in kept if len(found) > 1))


@dataclass
class RasterScore(_Figures):
    """One raster's predictions against its labels: SpaceNet counts, pixel overlap, error kinds."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    intersection: float = 0.0  # building pixels both in truth and prediction
    union: float = 0.0
    missed: int = 0  # unmatched truth buildings no prediction covers 20% of (error_kinds)
    merged: int = 0
    split: int = 0

    def add(self, other: RasterScore) -> None:
        """Pool ``other`` into this score (counts and pixel areas add up)."""
        for name in ("tp", "fp", "fn", "intersection", "union", "missed", "merged", "split"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def pixel_iou(self) -> float:
        return self.intersection / self.union if self.union else 0.0


MIN_TRUTH_AREA_M2 = 5.0  # truth buildings smaller than this (after clipping to the raster) are ignored


def score_raster_buildings(raster: str, labels: str, buildings: Sequence, min_area_m2: float = MIN_TRUTH_AREA_M2,
                           iou_threshold: float = 0.5) -> RasterScore:
    """The project's one scorer: ``buildings`` (with ``geometry`` in the raster's CRS and ``score``) against
    the polygons of ``labels``, in the raster's pixel space, truth clipped to the raster's frame.

    ``make demo`` and ``trainer/recipe.py report`` both use it, so they give the same F1 for a raster.
    """
    import numpy as np
    from rasterio.features import rasterize
    from shapely import affinity
    from shapely.geometry import box

    from footprint_plugin.core.geo import ground_resolution_m
    from footprint_plugin.core.readers import RasterioReader
    from footprint_plugin.core.vector_files import read_polygons

    with RasterioReader(raster) as reader:
        inverse = ~reader.transform
        width, height, crs = reader.width, reader.height, reader.crs_wkt
        res_x, res_y = ground_resolution_m(crs, reader.transform, width, height)
    matrix = [inverse.a, inverse.b, inverse.d, inverse.e, inverse.xoff, inverse.yoff]
    frame = box(0, 0, width, height)
    min_px = min_area_m2 / (res_x * res_y)
    truth = []
    for geometry in read_polygons(labels, crs).geometries:
        clipped = affinity.affine_transform(geometry, matrix).intersection(frame)
        if not clipped.is_empty and clipped.area >= min_px:
            truth.append(clipped)
    predicted = [affinity.affine_transform(b.geometry, matrix) for b in buildings]
    counts = match_buildings(truth, predicted, [b.score for b in buildings], iou_threshold)
    shape = (height, width)
    truth_mask = rasterize([(g, 1) for g in truth], out_shape=shape, dtype="uint8") if truth else np.zeros(shape, "uint8")
    pred_mask = rasterize([(g, 1) for g in predicted], out_shape=shape, dtype="uint8") if predicted else np.zeros(shape, "uint8")
    matched = {truth_index for _, truth_index, _ in counts.matches}
    kinds = error_kinds(truth, predicted, counted=set(range(len(truth))) - matched)
    return RasterScore(counts.tp, counts.fp, counts.fn, float(((truth_mask > 0) & (pred_mask > 0)).sum()),
                       float(((truth_mask > 0) | (pred_mask > 0)).sum()), kinds.missed, kinds.merged, kinds.split)
