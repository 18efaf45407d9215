"""From class maps to building instances: thresholding, seeds, and seeds grown into the building mask.

Buildings are seeded from the interior class and grown into interior + border, so touching buildings
separated by predicted border come out as separate instances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .buildings import VectorizeOptions

_CROSS = ndimage.generate_binary_structure(2, 1)


@dataclass
class ClassMaps:
    """Rows of the model's output, thresholded: all the vectoriser needs, 3 bytes a pixel."""

    building: np.ndarray  # bool: P(interior) + P(border) above the mask threshold
    seeds: np.ndarray  # bool: building, and P(interior) above the seed threshold (binary instances: = building)
    probability: np.ndarray  # uint8: P(interior) + P(border), x 255 and rounded (scores, probability raster)

    def __len__(self) -> int:
        return len(self.building)

    @classmethod
    def zeros(cls, rows: int, width: int) -> ClassMaps:
        """Nothing found, in ``rows`` x ``width`` px."""
        return cls(np.zeros((rows, width), bool), np.zeros((rows, width), bool), np.zeros((rows, width), np.uint8))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The three maps, in the constructor's order."""
        return self.building, self.seeds, self.probability


def class_maps(building_prob: np.ndarray, interior_prob: np.ndarray, options: VectorizeOptions) -> ClassMaps:
    """Threshold one strip of probabilities (float32 is fastest) into :class:`ClassMaps`."""
    building = building_prob > options.mask_threshold
    seeds = building if options.instances == "binary" else (interior_prob > options.seed_threshold) & building
    probability = np.empty(building_prob.shape, np.float32)
    np.multiply(building_prob, 255.0, out=probability)
    np.clip(probability, 0.0, 255.0, out=probability)
    np.rint(probability, out=probability)
    return ClassMaps(building, seeds, probability.astype(np.uint8))


def join_rows(first: ClassMaps, second: ClassMaps) -> ClassMaps:
    """``second``'s rows below ``first``'s."""
    return ClassMaps(*(np.concatenate(pair) for pair in zip(first.arrays(), second.arrays())))


def rows_from(maps: ClassMaps, start: int) -> ClassMaps:
    """The rows of ``maps`` from ``start`` on (views, not copies)."""
    return ClassMaps(*(array[start:] for array in maps.arrays()))


def label_instances(maps: ClassMaps, options: VectorizeOptions) -> tuple[np.ndarray, np.ndarray, list]:
    """Instance labels, connected building-region labels (both int32, 0 = background) and the
    regions' bounding boxes (``ndimage.find_objects``)."""
    regions, _ = ndimage.label(maps.building, structure=_CROSS)
    boxes = ndimage.find_objects(regions)
    return grow_instances(regions, boxes, maps.seeds, options), np.asarray(regions, dtype=np.int32), boxes


def grow_instances(regions: np.ndarray, boxes: list, seed_mask: np.ndarray, options: VectorizeOptions,
                   barrier: np.ndarray | None = None) -> np.ndarray:
    """Instance labels (int32, 0 = background) of the building ``regions`` (labels 1..n, their boxes): seeds
    (``seed_mask`` inside the regions, the tiny ones dropped) grown into their regions.

    ``barrier`` (pixels on a side of a block's window where regions continue out of sight) stands for the seeds
    beyond it: in a region with seeds of its own it is grown like one more seed, and what it takes is left out,
    so the pixels nearer to the unseen seeds do not join a seen one."""
    building = regions > 0
    seeds, n_seeds = ndimage.label(seed_mask, structure=_CROSS)
    where = np.flatnonzero(seed_mask)
    values = seeds.reshape(-1)[where]
    if n_seeds and options.min_seed_px > 1:  # drop tiny seeds, looking at seed pixels only
        small = np.bincount(values, minlength=n_seeds + 1) < options.min_seed_px
        small[0] = False
        drop = small[values]
        if drop.any():
            seeds.reshape(-1)[where[drop]] = 0
            where, values = where[~drop], values[~drop]
    instances = np.asarray(seeds, dtype=np.int32)  # ndimage.label gives int32 already: no copy
    if barrier is not None:
        where, values = _add_barrier(instances, regions, barrier, where, values, n_seeds)
    unassigned = building & (instances == 0)
    if unassigned.any():
        # A region with one seed instance is all that instance; a region with several grows them into the
        # building mask one pixel ring at a time (most borders are thin), then gives what is left to the nearest.
        seeds_in = _seeds_per_region(values, regions.reshape(-1)[where], int(instances.max()), len(boxes) + 1)
        _fill_from_only_seed(instances, regions, unassigned, seeds_in)
        for region in np.flatnonzero(seeds_in.count > 1):
            _grow_and_fill(instances, regions, unassigned, boxes[region - 1], region)
        # Building regions without any seed become one building each, numbered after the seeds
        # in the order of the regions (raster order, as ndimage.label would number them).
        seedless = seeds_in.count == 0
        seedless[0] = False
        renumber = np.zeros(len(seedless), np.int32)
        base = int(instances.max()) if barrier is None else max(int(instances.max()), n_seeds + len(boxes))
        renumber[seedless] = base + np.arange(1, int(seedless.sum()) + 1, dtype=np.int32)
        where = np.flatnonzero(unassigned)
        instances.reshape(-1)[where] = renumber[regions.reshape(-1)[where]]
    if barrier is not None:
        instances[(instances > n_seeds) & (instances <= n_seeds + len(boxes))] = 0  # what the barrier took
    return instances


def _add_barrier(instances: np.ndarray, regions: np.ndarray, barrier: np.ndarray, where: np.ndarray,
                 values: np.ndarray, n_seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """Label the barrier's free pixels in regions that hold seeds as one more seed per region (n_seeds + region);
    returns the seed pixels and their labels with them."""
    seeded = np.zeros(int(regions.max()) + 1, bool)
    seeded[regions.reshape(-1)[where]] = True
    seeded[0] = False
    extra = np.flatnonzero((barrier & (instances == 0)).reshape(-1))
    extra = extra[seeded[regions.reshape(-1)[extra]]]
    labels = n_seeds + regions.reshape(-1)[extra]
    instances.reshape(-1)[extra] = labels
    return np.concatenate([where, extra]), np.concatenate([values, labels])


@dataclass
class _RegionSeeds:
    """Per building region (index = region label): how many seed instances it holds, and one of them."""

    count: np.ndarray
    label: np.ndarray


def _seeds_per_region(seed_labels: np.ndarray, seed_regions: np.ndarray, n_seeds: int, count: int) -> _RegionSeeds:
    """Which seed instances each of ``count`` regions holds, from the seed pixels' instance and
    region labels (an instance lies in one region)."""
    region_of = np.zeros(n_seeds + 1, np.int64)
    region_of[seed_labels] = seed_regions
    present = np.flatnonzero(region_of)
    label = np.zeros(count, np.int32)
    label[region_of[present]] = present
    return _RegionSeeds(np.bincount(region_of[present], minlength=count), label)


def _fill_from_only_seed(instances: np.ndarray, regions: np.ndarray, unassigned: np.ndarray,
                         seeds_in: _RegionSeeds) -> None:
    """Unassigned pixels of a region with one seed instance: that instance (its nearest seed)."""
    where = np.flatnonzero(unassigned)
    region = regions.reshape(-1)[where]
    take = seeds_in.count[region] == 1
    instances.reshape(-1)[where[take]] = seeds_in.label[region[take]]
    unassigned.reshape(-1)[where[take]] = False


def _grow_and_fill(instances: np.ndarray, regions: np.ndarray, unassigned: np.ndarray, box: tuple[slice, slice],
                   region: int, rings: int = 3) -> None:
    """Unassigned pixels of one region with several seed instances: up to ``rings`` rings of growth from the
    seeds (4-neighbours), then the nearest seed pixel's instance for the rest."""
    inside = regions[box] == region
    fill = inside & unassigned[box]
    if not fill.any():
        return
    part = instances[box]
    for _ in range(rings):
        grown = _dilate_cross(part)
        take = fill & (grown > 0)
        if not take.any():
            break
        part[take] = grown[take]
        fill &= ~take
    unassigned[box] &= ~(inside & ~fill)
    if not fill.any():
        return
    own_seeds = np.where(inside, part, 0)
    nearest = ndimage.distance_transform_edt(own_seeds == 0, return_distances=False, return_indices=True)
    instances[box][fill] = own_seeds[nearest[0][fill], nearest[1][fill]]
    unassigned[box][fill] = False


def _dilate_cross(values: np.ndarray) -> np.ndarray:
    """Maximum over each pixel and its 4 neighbours (``grey_dilation`` with a cross, exactly)."""
    out = values.copy()
    np.maximum(out[1:], values[:-1], out=out[1:])
    np.maximum(out[:-1], values[1:], out=out[:-1])
    np.maximum(out[:, 1:], values[:, :-1], out=out[:, 1:])
    np.maximum(out[:, :-1], values[:, 1:], out=out[:, :-1])
    return out
