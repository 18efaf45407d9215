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
    building = maps.building
    regions, _ = ndimage.label(building, structure=_CROSS)
    seeds, n_seeds = ndimage.label(maps.seeds, structure=_CROSS)
    where = np.flatnonzero(maps.seeds)
    values = seeds.reshape(-1)[where]
    if n_seeds and options.min_seed_px > 1:  # drop tiny seeds, looking at seed pixels only
        small = np.bincount(values, minlength=n_seeds + 1) < options.min_seed_px
        small[0] = False
        drop = small[values]
        if drop.any():
            seeds.reshape(-1)[where[drop]] = 0
            where, values = where[~drop], values[~drop]
    instances = np.asarray(seeds, dtype=np.int32)  # ndimage.label gives int32 already: no copy
    unassigned = building & (instances == 0)
    # Grow seeds into the building mask one pixel ring at a time: a few rings over the whole
    # array (most borders are thin), then region by region for what is left.
    for _ in range(3):
        if not _grow_once(instances, unassigned):
            break
    boxes = ndimage.find_objects(regions)
    if unassigned.any():
        seeds_in = _seeds_per_region(values, regions.reshape(-1)[where], n_seeds, len(boxes) + 1)
        _fill_from_only_seed(instances, regions, unassigned, seeds_in)
        for region in np.flatnonzero(seeds_in.count > 1):
            _fill_from_nearest_seed(instances, regions, unassigned, boxes[region - 1], region)
        # Building regions without any seed become one building each, numbered after the seeds
        # in the order of the regions (raster order, as ndimage.label would number them).
        seedless = seeds_in.count == 0
        seedless[0] = False
        renumber = np.zeros(len(seedless), np.int32)
        renumber[seedless] = int(instances.max()) + np.arange(1, int(seedless.sum()) + 1, dtype=np.int32)
        where = np.flatnonzero(unassigned)
        instances.reshape(-1)[where] = renumber[regions.reshape(-1)[where]]
    return instances, np.asarray(regions, dtype=np.int32), boxes


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


def _fill_from_nearest_seed(instances: np.ndarray, regions: np.ndarray, unassigned: np.ndarray,
                            box: tuple[slice, slice], region: int) -> None:
    """Unassigned pixels of one region with several seed instances: the nearest seed pixel's."""
    inside = regions[box] == region
    fill = inside & unassigned[box]
    if not fill.any():
        return
    own_seeds = np.where(inside, instances[box], 0)
    nearest = ndimage.distance_transform_edt(own_seeds == 0, return_distances=False, return_indices=True)
    instances[box][fill] = own_seeds[nearest[0][fill], nearest[1][fill]]
    unassigned[box][fill] = False


def _grow_once(instances: np.ndarray, unassigned: np.ndarray) -> bool:
    """Give each unassigned pixel next to a labelled one (4-neighbourhood) that label; True if any changed.

    A 4-neighbour of a building pixel that is building belongs to the same region, so growth never
    crosses from one building region into another. Works on the bounding box of the unassigned
    pixels only (plus one pixel), with four shifted maxima instead of a generic filter.
    """
    rows, cols = np.flatnonzero(unassigned.any(axis=1)), np.flatnonzero(unassigned.any(axis=0))
    if not len(rows):
        return False
    box = (slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2))
    part, todo = instances[box], unassigned[box]
    grown = _dilate_cross(part)
    take = todo & (grown > 0)
    if not take.any():
        return False
    part[take] = grown[take]
    todo &= ~take
    return True


def _dilate_cross(values: np.ndarray) -> np.ndarray:
    """Maximum over each pixel and its 4 neighbours (``grey_dilation`` with a cross, exactly)."""
    out = values.copy()
    np.maximum(out[1:], values[:-1], out=out[1:])
    np.maximum(out[:-1], values[1:], out=out[:-1])
    np.maximum(out[:, 1:], values[:, :-1], out=out[:, 1:])
    np.maximum(out[:, :-1], values[:, 1:], out=out[:, :-1])
    return out
