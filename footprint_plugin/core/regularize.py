"""Regularising the building footprints of any polygon layer: right angles, diagonals, any angle or circles.

:class:`Regularizer` takes polygons as WKB, a batch at a time, in any CRS. Each polygon is moved into metres
about its own centre (the CRS's Jacobian there, on the ellipsoid: a local projection for geographic CRSs, Web
Mercator's scale, a foot's length), counted in tolerances, and shaped by :func:`.outlines.shaped_candidates`
on numpy arrays, all rings of the batch at once; the result is checked against the input (IoU) and moved
back. Invalid polygons are repaired with GEOS first (flagged), multi-part ones are shaped part by part, and
what cannot be repaired passes through unchanged, flagged: nothing is dropped but what is smaller than the
minimum area. :func:`regularize_file` streams an OGR layer into a new file (the command line); the Processing
algorithm hands its features to :class:`Regularizer` the same way.
"""

from __future__ import annotations

import os
import shutil
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import CancelledError, FootprintError
from .outlines import CIRCLE_MIN_IOU, ORTHOGONAL_MIN_IOU, SHAPES, shaped_candidates
from .rings import PAIRWISE_EDGES, Rings, simple, starts_of

MODES = SHAPES  # right-angles, diagonals, any-angle, circle
METHOD_FIELD, IOU_FIELD = "reg_method", "reg_iou"
KEPT = "input"  # the input kept: its shape overlapped it too little, or none could be made
REPAIRED = ",repaired"  # appended where an invalid polygon was repaired first
INVALID, EMPTY, MULTIPART = "invalid", "empty", "multipart"  # passed through unchanged
DROPPED = ""  # smaller than the minimum area: left out
BATCH = 2048  # features per batch: memory stays flat, numpy calls stay large


@dataclass
class RegularizeOptions:
    """What the layer tool does: the mode, the tolerance (m), the minimum area (m2), the fallback to the input
    where the shape overlaps it by less than ``min_iou``, and how round a circle must be (its IoU)."""

    mode: str = "right-angles"
    tolerance_m: float = 0.5
    min_area_m2: float = 0.0
    fallback: bool = True
    min_iou: float = ORTHOGONAL_MIN_IOU
    circle_min_iou: float = CIRCLE_MIN_IOU

    def validate(self) -> None:
        if self.mode not in MODES:
            raise FootprintError(f"Mode {self.mode!r} unknown; choose one of {', '.join(MODES)}.")
        if not self.tolerance_m > 0:
            raise FootprintError(f"Tolerance {self.tolerance_m:g} m: it must be above 0.")
        if self.min_area_m2 < 0:
            raise FootprintError("Minimum area must not be negative.")
        for name, value in (("IoU threshold", self.min_iou), ("Circle roundness", self.circle_min_iou)):
            if not 0 <= value <= 1:
                raise FootprintError(f"{name} {value:g}: it must lie between 0 and 1.")


class Result(NamedTuple):
    """One feature's outcome: its new geometry (WKB; None: no geometry, or left out), how it was made
    (``reg_method``) and its IoU with the input (None where not measured)."""

    wkb: bytes | None
    method: str
    iou: float | None

    @property
    def dropped(self) -> bool:
        return self.method == DROPPED


@dataclass
class _Parsed:
    """A feature's polygons: each part as its closed rings (exterior first) in the CRS, and a flag."""

    parts: list[list[np.ndarray]]
    flag: str = ""  # REPAIRED, or why it passes through (INVALID, EMPTY)


def _polygon_rings(polygon) -> list[np.ndarray]:
    return [np.asarray(ring.coords)[:, :2] for ring in (polygon.exterior, *polygon.interiors)]


def _repaired(blob: bytes | None) -> _Parsed:
    """The polygons of a WKB geometry with GEOS, repaired where invalid; none (flagged) where nothing polygonal is
    left or there was no geometry."""
    from shapely import wkb
    from shapely.validation import make_valid

    if blob is None:
        return _Parsed([], EMPTY)
    try:
        geometry = wkb.loads(bytes(blob))
    except Exception:  # noqa: BLE001 - GEOS's reader raises several kinds; all mean "not a geometry we can read"
        return _Parsed([], INVALID)
    if geometry.is_empty:
        return _Parsed([], EMPTY)
    flag = ""
    if geometry.geom_type not in ("Polygon", "MultiPolygon") or not geometry.is_valid:
        geometry, flag = make_valid(geometry), REPAIRED
    polygons = [part for part in getattr(geometry, "geoms", [geometry])
                if part.geom_type == "Polygon" and not part.is_empty and part.area > 0]
    polygons += [piece for part in getattr(geometry, "geoms", []) if part.geom_type == "MultiPolygon"
                 for piece in part.geoms if piece.area > 0]
    if not polygons:
        return _Parsed([], INVALID)
    return _Parsed([_polygon_rings(polygon) for polygon in polygons], flag)


def _read_wkb(blob: bytes) -> list[list[np.ndarray]] | None:
    """A Polygon or MultiPolygon WKB (2D, Z, M or ZM, either byte order) as parts of rings (x, y) with numpy;
    None for anything else, or rings that are not closed."""
    try:
        base, dims, order = _wkb_header(blob, 0)
        if base == 3:
            part, _ = _wkb_polygon(blob, 5, dims, order)
            parts = [part]
        elif base == 6:
            offset, parts = 9, []
            for _ in range(struct.unpack_from(order + "I", blob, 5)[0]):
                base, dims, order = _wkb_header(blob, offset)
                if base != 3:
                    return None
                part, offset = _wkb_polygon(blob, offset + 5, dims, order)
                parts.append(part)
        else:
            return None
    except (struct.error, ValueError, IndexError):
        return None
    closed = all(len(ring) >= 4 and (ring[0] == ring[-1]).all() for part in parts for ring in part)
    return parts if parts and closed else None


def _wkb_header(blob: bytes, offset: int) -> tuple[int, int, str]:
    """(geometry type without dimensions, coordinates per point, struct byte order) at ``offset``; base 0 for
    extended WKB with an SRID."""
    order = "<" if blob[offset] == 1 else ">"
    kind = struct.unpack_from(order + "I", blob, offset + 1)[0]
    if kind & 0x20000000:
        return 0, 2, order
    z, m = bool(kind & 0x80000000), bool(kind & 0x40000000)
    iso = (kind & 0x0FFFFFFF) // 1000
    z, m = z or iso in (1, 3), m or iso in (2, 3)
    return (kind & 0x0FFFFFFF) % 1000, 2 + z + m, order


def _wkb_polygon(blob: bytes, offset: int, dims: int, order: str) -> tuple[list[np.ndarray], int]:
    """The rings of a polygon's body at ``offset``, and the offset after it."""
    rings = []
    count = struct.unpack_from(order + "I", blob, offset)[0]
    offset += 4
    for _ in range(count):
        points = struct.unpack_from(order + "I", blob, offset)[0]
        values = np.frombuffer(blob, order + "f8", points * dims, offset + 4).reshape(points, dims)
        rings.append(values[:, :2].astype(np.float64))
        offset += 4 + 8 * points * dims
    return rings, offset


def _parse_all(blobs: Sequence[bytes | None]) -> list[_Parsed]:
    """Every WKB's polygons. Single rings of up to ``PAIRWISE_EDGES`` edges are read with numpy and checked all
    at once (:func:`.rings.simple`); other polygons with GEOS, which repairs the invalid ones."""
    from shapely import wkb

    parsed: list[_Parsed | None] = [None] * len(blobs)
    quick = []
    for index, blob in enumerate(blobs):
        parts = _read_wkb(blob) if blob is not None else None
        if parts is not None and len(parts) == 1 and len(parts[0]) == 1 and len(parts[0][0]) <= PAIRWISE_EDGES + 1:
            parsed[index] = _Parsed(parts)
            quick.append(index)
        elif parts is not None and wkb.loads(bytes(blob)).is_valid:
            parsed[index] = _Parsed(parts)
        else:
            parsed[index] = _repaired(blob)
    if quick:
        rings = Rings.from_list([parsed[i].parts[0][0] for i in quick])
        valid = simple(rings) & (rings.areas() != 0)
        for index in np.asarray(quick)[~valid].tolist():
            parsed[index] = _repaired(blobs[index])  # GEOS decides: repeated points are valid, crossings not
    return parsed


class LocalFrames:
    """A CRS about any point as metres east and north on its ellipsoid: one 2 x 2 Jacobian per point, so that a
    building, moved to its centre and multiplied by it, is in metres (a local projection), and back again."""

    def __init__(self, crs_wkt: str | None) -> None:
        self.transform, self.metres_per_unit = None, 1.0
        self.identity = True
        if not crs_wkt:
            return
        from osgeo import osr

        osr.UseExceptions()
        srs = osr.SpatialReference()
        try:
            srs.ImportFromWkt(crs_wkt)
            geographic = srs.CloneGeogCS()
        except RuntimeError:  # e.g. a local engineering CRS: its units, no ellipsoid
            self.metres_per_unit = srs.GetLinearUnits() or 1.0
            return
        for ref in (srs, geographic):
            ref.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        self.identity = False
        self.radians = geographic.GetAngularUnits()  # radians per angular unit
        if not srs.IsGeographic():
            self.transform = osr.CoordinateTransformation(srs, geographic)
        self.step = 1e-7 / self.radians if srs.IsGeographic() else 1.0 / (srs.GetLinearUnits() or 1.0)
        self.semi_major = geographic.GetSemiMajor()
        inverse = geographic.GetInvFlattening()
        flattening = 1 / inverse if inverse else 0.0
        self.e2 = flattening * (2 - flattening)

    def jacobians(self, centres: np.ndarray) -> np.ndarray:
        """(n, 2, 2): metres east and north per CRS unit along x and y, at each centre (NaN where it cannot be
        placed)."""
        count = len(centres)
        if self.identity:
            return np.broadcast_to(np.eye(2) * self.metres_per_unit, (count, 2, 2)).copy()
        step_x, step_y = np.array([self.step, 0.0]), np.array([0.0, self.step])
        points = np.concatenate([centres, centres + step_x, centres - step_x, centres + step_y, centres - step_y])
        if self.transform is not None:
            try:
                points = np.asarray(self.transform.TransformPoints(points.tolist()), np.float64)[:, :2]
            except RuntimeError:
                points = np.asarray([self._one(point) for point in points.tolist()])
        lon, lat = (points * self.radians).reshape(5, count, 2).transpose(2, 0, 1)
        w = np.sqrt(1 - self.e2 * np.sin(lat[0]) ** 2)
        north, east = self.semi_major * (1 - self.e2) / w**3, self.semi_major / w * np.cos(lat[0])
        jacobians = np.empty((count, 2, 2))
        for column, (ahead, behind) in enumerate(((1, 2), (3, 4))):  # central differences: exact to O(step^2)
            d_lon = (lon[ahead] - lon[behind] + np.pi) % (2 * np.pi) - np.pi
            jacobians[:, 0, column] = east * d_lon / (2 * self.step)
            jacobians[:, 1, column] = north * (lat[ahead] - lat[behind]) / (2 * self.step)
        return jacobians

    def _one(self, point: list[float]) -> tuple[float, float]:
        try:
            return self.transform.TransformPoint(*point)[:2]
        except RuntimeError:
            return (np.nan, np.nan)


@dataclass
class _Batch:
    """The polygons of a batch's features in tolerance units about each feature's centre: every ring (exteriors
    and holes) in one :class:`Rings`; the parts of feature f are ``part_start[f]:part_start[f + 1]``, the rings of
    part p ``ring_start[p]:ring_start[p + 1]`` (its exterior first)."""

    rings: Rings
    part_start: np.ndarray
    ring_start: np.ndarray
    ring_feature: np.ndarray
    is_hole: np.ndarray
    centres: np.ndarray  # per feature
    jacobians: np.ndarray  # per feature: metres per CRS unit


class Regularizer:
    """Regularises batches of polygons (WKB) in one CRS with :class:`RegularizeOptions`; ``multi``: the output takes
    multi-polygons (else a polygon that falls apart when repaired passes through, flagged ``multipart``)."""

    def __init__(self, options: RegularizeOptions, crs_wkt: str | None, multi: bool = True) -> None:
        options.validate()
        self.options, self.multi = options, multi
        self.frames = LocalFrames(crs_wkt)

    def batch(self, blobs: Sequence[bytes | None]) -> list[Result]:
        """One result per WKB, in order."""
        parsed = _parse_all(blobs)
        results: list[Result | None] = [None] * len(blobs)
        work = []
        for index, (one, blob) in enumerate(zip(parsed, blobs)):
            if not one.parts:
                results[index] = Result(blob, one.flag, None)
            elif len(one.parts) > 1 and not self.multi:
                results[index] = Result(blob, MULTIPART, None)
            else:
                work.append(index)
        if work:
            for index, result in zip(work, self._shape([parsed[i] for i in work], [blobs[i] for i in work])):
                results[index] = result
        return results

    def _shape(self, parsed: list[_Parsed], blobs: list[bytes | None]) -> list[Result]:
        batch = _local(parsed, self.frames, self.options.tolerance_m)
        squared = self.options.tolerance_m**2
        area_in = np.abs(batch.rings.areas()) * squared
        feature_area = np.bincount(batch.ring_feature, np.where(batch.is_hole, -area_in, area_in), len(parsed))
        placed = np.isfinite(batch.jacobians).all(axis=(1, 2))
        big = (feature_area >= self.options.min_area_m2) & placed
        shapes, ious, methods = self._candidates(batch, big[batch.ring_feature])
        shaped = _Shaped(shapes, _to_crs(shapes, batch, self.options.tolerance_m), ious, methods, area_in,
                         np.abs(shapes.areas()) * squared)
        return [self._feature(f, one, batch, shaped) if big[f] else Result(None, DROPPED, None) if placed[f]
                else Result(blob, INVALID, None) for f, (one, blob) in enumerate(zip(parsed, blobs))]

    def _candidates(self, batch: _Batch, usable: np.ndarray) -> tuple[Rings, np.ndarray, np.ndarray]:
        """Every ring's shape (the ring itself where none), IoU with it and method (0: none, or refused)."""
        shapes, ious, methods = shaped_candidates(batch.rings, usable, self.options.mode, self.options.circle_min_iou)
        refused = (methods > 0) & self.options.fallback & (ious < self.options.min_iou)
        methods = np.where(refused, 0, methods)
        return shapes, np.where(methods > 0, ious, 1.0), methods

    def _feature(self, feature: int, parsed: _Parsed, batch: _Batch, shaped: _Shaped) -> Result:
        """One feature's polygon(s) in the CRS, the method of its largest part and its IoU with the input."""
        polygons, overlaps, unions, largest, name = [], 0.0, 0.0, -1.0, KEPT
        for k, part in enumerate(range(batch.part_start[feature], batch.part_start[feature + 1])):
            rings = np.arange(batch.ring_start[part], batch.ring_start[part + 1])
            use, iou = _part_choice(rings, batch, shaped)
            polygons.append([shaped.crs.ring(r) if taken else original
                             for r, taken, original in zip(rings, use, parsed.parts[k])])
            sign = np.where(batch.is_hole[rings], -1.0, 1.0)
            before = float(sign @ shaped.area_in[rings])
            after = float(sign @ np.where(use, shaped.area_out[rings], shaped.area_in[rings]))
            overlap = iou * (before + after) / (1 + iou)
            overlaps, unions = overlaps + overlap, unions + before + after - overlap
            if before > largest:
                method = int(shaped.methods[rings[0]]) if use[0] else 0
                largest, name = before, SHAPES[method - 1] if method else KEPT
        return Result(_wkb(polygons, self.multi), name + parsed.flag, round(overlaps / unions, 4) if unions > 0 else None)


@dataclass
class _Shaped:
    """A batch's shaped rings, back in the CRS, with their IoU, method (0: the input kept) and areas (m2) before
    and after."""

    local: Rings  # in tolerance units about the feature's centre
    crs: Rings
    ious: np.ndarray
    methods: np.ndarray
    area_in: np.ndarray
    area_out: np.ndarray


def _local(parsed: list[_Parsed], frames: LocalFrames, tolerance: float) -> _Batch:
    """A batch's rings about each feature's centre (its bounding box's), in metres / ``tolerance``."""
    rings, parts_per_feature, rings_per_part, is_hole = [], [], [], []
    for one in parsed:
        parts_per_feature.append(len(one.parts))
        for part in one.parts:
            rings += part
            rings_per_part.append(len(part))
            is_hole += [False] + [True] * (len(part) - 1)
    all_rings = Rings.from_list(rings)
    part_start, ring_start = starts_of(np.asarray(parts_per_feature)), starts_of(np.asarray(rings_per_part))
    ring_feature = np.repeat(np.arange(len(parsed)), np.diff(ring_start[part_start]))
    first_point = all_rings.starts[ring_start[part_start[:-1]]]
    centres = (np.minimum.reduceat(all_rings.points, first_point) + np.maximum.reduceat(all_rings.points, first_point)) / 2
    jacobians = frames.jacobians(centres)
    point_feature = ring_feature[all_rings.owners()]
    usable = np.where(np.isfinite(jacobians), jacobians, 0.0)
    local = np.einsum("nij,nj->ni", usable[point_feature], all_rings.points - centres[point_feature]) / tolerance
    return _Batch(Rings(local, all_rings.starts), part_start, ring_start, ring_feature, np.asarray(is_hole, bool),
                  centres, jacobians)


def _to_crs(shapes: Rings, batch: _Batch, tolerance: float) -> Rings:
    """Rings in tolerance units about each feature's centre back in the CRS."""
    finite = np.isfinite(batch.jacobians).all(axis=(1, 2))
    inverse = np.linalg.inv(np.where(finite[:, None, None], batch.jacobians, np.eye(2)))
    point_feature = batch.ring_feature[shapes.owners()]
    points = np.einsum("nij,nj->ni", inverse[point_feature], shapes.points * tolerance) + batch.centres[point_feature]
    return Rings(points, shapes.starts)


def _part_choice(rings: np.ndarray, batch: _Batch, shaped: _Shaped) -> tuple[np.ndarray, float]:
    """Which of a part's rings take their shape, and the part's IoU with the input. A part with holes (they are few)
    is checked with GEOS: its shaped rings where they make a valid polygon, else the shaped exterior with the
    input's holes, else the input."""
    use = shaped.methods[rings] > 0
    if len(rings) == 1 or not use.any():
        return use, float(shaped.ious[rings[0]]) if use[0] else 1.0
    from shapely.geometry import Polygon

    before = [batch.rings.ring(r) for r in rings]
    original = Polygon(before[0], before[1:])
    for choice in (use, use & ~batch.is_hole[rings]):
        if not choice.any():
            break
        now = [shaped.local.ring(r) if taken else ring for r, taken, ring in zip(rings, choice, before)]
        polygon = Polygon(now[0], now[1:])
        if polygon.is_valid:
            overlap = polygon.intersection(original).area
            return choice, overlap / (polygon.area + original.area - overlap)
    return np.zeros(len(rings), bool), 1.0


def _wkb(polygons: list[list[np.ndarray]], multi: bool) -> bytes:
    """Polygon (or, with ``multi`` or several parts, MultiPolygon) WKB, little-endian, 2D."""
    def polygon(rings: list[np.ndarray]) -> bytes:
        parts = [struct.pack("<BII", 1, 3, len(rings))]
        for ring in rings:
            parts += [struct.pack("<I", len(ring)), np.ascontiguousarray(ring[:, :2], dtype="<f8").tobytes()]
        return b"".join(parts)

    if not multi and len(polygons) == 1:
        return polygon(polygons[0])
    return struct.pack("<BII", 1, 6, len(polygons)) + b"".join(polygon(rings) for rings in polygons)


@dataclass
class RegularizeSummary:
    """What a run did: features read and written, and how many of each ``reg_method``."""

    read: int = 0
    written: int = 0
    dropped: int = 0
    methods: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def add(self, results: Sequence[Result]) -> None:
        self.read += len(results)
        for result in results:
            if result.dropped:
                self.dropped += 1
            else:
                self.written += 1
                self.methods[result.method] += 1

    def message(self) -> str:
        counts = ", ".join(f"{count} {method}" for method, count in self.methods.most_common())
        left_out = f"; {self.dropped} smaller than the minimum area left out" if self.dropped else ""
        return (f"{self.written} of {self.read} features written in {self.seconds:.1f} s "
                f"({counts or 'none'}){left_out}")


def multi_output(geometry_type: int) -> bool:
    """Whether a layer of this OGR geometry type gets multi-polygons: multi, or of no declared type."""
    from osgeo import ogr

    flat = ogr.GT_Flatten(geometry_type)
    return flat not in (ogr.wkbPolygon, ogr.wkbCurvePolygon)


def regularize_file(source: str, target: str, options: RegularizeOptions, layer_name: str | None = None,
                    progress: Callable[[float, str], None] | None = None, cancel: Callable[[], bool] | None = None,
                    warn: Callable[[str], None] | None = None) -> RegularizeSummary:
    """Regularise every feature of a polygon layer of ``source`` into the new file ``target`` (its format by the
    extension), every attribute kept, plus ``reg_method`` and ``reg_iou``; the file appears only when complete."""
    from .output_paths import OGR_DRIVERS, check_output_path

    options.validate()
    path = check_output_path(target, tuple(OGR_DRIVERS))
    started = time.perf_counter()
    dataset, layer = _open_layer(source, layer_name)
    srs = layer.GetSpatialRef()
    if srs is None and warn is not None:
        warn(f"{source}: the layer has no CRS; its coordinates are taken as metres.")
    multi = multi_output(layer.GetGeomType())
    regularizer = Regularizer(options, srs.ExportToWkt() if srs is not None else None, multi)
    total = max(layer.GetFeatureCount(), 1)
    summary = RegularizeSummary()
    with LayerWriter(path, layer, multi) as writer:
        for features in _batches(layer):
            if cancel is not None and cancel():
                raise CancelledError()
            results = regularizer.batch([_feature_wkb(feature) for feature in features])
            writer.add(features, results)
            summary.add(results)
            if progress is not None:
                progress(min(summary.read / total, 1.0), f"{summary.read} features")
        writer.commit()
    del layer, dataset  # the layer before its dataset
    summary.seconds = time.perf_counter() - started
    return summary


def _open_layer(source: str, layer_name: str | None):
    """The dataset and its polygon layer (by name, or the first with polygons)."""
    from osgeo import ogr

    from .vector_files import open_vector

    if not Path(source).exists() and "://" not in source:
        raise FootprintError(f"{source}: no such file.")
    dataset = open_vector(source)
    if layer_name:
        layer = dataset.GetLayerByName(layer_name)
        if layer is None:
            names = ", ".join(dataset.GetLayer(i).GetName() for i in range(dataset.GetLayerCount()))
            raise FootprintError(f"{source}: no layer {layer_name!r} (it holds {names}).")
        return dataset, layer
    for index in range(dataset.GetLayerCount()):
        layer = dataset.GetLayer(index)
        if ogr.GT_Flatten(layer.GetGeomType()) in _POLYGONAL or layer.GetGeomType() == ogr.wkbUnknown:
            return dataset, layer
    raise FootprintError(f"{source}: holds no polygon layer.")


_POLYGONAL = (3, 6, 10, 12)  # Polygon, MultiPolygon, CurvePolygon, MultiSurface


def _batches(layer, size: int = BATCH) -> Iterator[list]:
    layer.ResetReading()
    features = []
    for feature in layer:
        features.append(feature)
        if len(features) == size:
            yield features
            features = []
    if features:
        yield features


def _feature_wkb(feature) -> bytes | None:
    """A feature's geometry as WKB, curves turned into straight segments; None without one."""
    from osgeo import ogr

    geometry = feature.GetGeometryRef()
    if geometry is None or geometry.IsEmpty():
        return None
    if ogr.GT_IsNonLinear(geometry.GetGeometryType()):
        geometry = geometry.GetLinearGeometry()
    return bytes(geometry.ExportToWkb(ogr.wkbNDR))


class LayerWriter:
    """A new vector file with the fields of ``source`` (an OGR layer) and ``reg_method``, ``reg_iou``, written under a
    temporary name beside ``path`` and moved into place by :meth:`commit`; leaving without it removes the file."""

    def __init__(self, path: Path, source, multi: bool) -> None:
        from osgeo import ogr

        from .output_paths import OGR_DRIVERS

        self.path, self.count = path, 0
        self.tmp_dir = path.with_name(f".{path.name}.{os.getpid()}.partial")
        driver = OGR_DRIVERS[path.suffix.lower()]
        try:
            self.tmp_dir.mkdir()
            self.dataset = ogr.GetDriverByName(driver).CreateDataSource(str(self.tmp_dir / path.name))
            name = path.stem if driver == "ESRI Shapefile" else source.GetName() or path.stem
            self.layer = self.dataset.CreateLayer(name, source.GetSpatialRef(),
                                                  ogr.wkbMultiPolygon if multi else ogr.wkbPolygon)
            self._fields(source.GetLayerDefn())
            self.layer.StartTransaction()
        except (RuntimeError, OSError) as exc:
            self._discard()
            raise self._error(exc) from None

    def _fields(self, definition) -> None:
        from osgeo import ogr

        for index in range(definition.GetFieldCount()):
            self.layer.CreateField(definition.GetFieldDefn(index))
        for name, kind, width, precision in ((METHOD_FIELD, ogr.OFTString, 40, 0), (IOU_FIELD, ogr.OFTReal, 8, 4)):
            if self.layer.GetLayerDefn().GetFieldIndex(name) < 0:
                new = ogr.FieldDefn(name, kind)
                new.SetWidth(width)
                new.SetPrecision(precision)
                self.layer.CreateField(new)
        self.definition = self.layer.GetLayerDefn()
        self.method_index = self.definition.GetFieldIndex(METHOD_FIELD)
        self.iou_index = self.definition.GetFieldIndex(IOU_FIELD)

    def _error(self, exc: BaseException) -> FootprintError:
        from .output import _detail

        return FootprintError(f"Output {self.path}: cannot write the file ({_detail(exc, self.path.parent)}).")

    def add(self, features: Sequence, results: Sequence[Result]) -> None:
        """The features with their results (those left out skipped)."""
        from osgeo import ogr

        from .output import _QuietGdal

        try:
            with _QuietGdal() as quiet:
                for feature, result in zip(features, results):
                    if result.dropped:
                        continue
                    out = ogr.Feature(self.definition)
                    out.SetFrom(feature)
                    out.SetGeometryDirectly(ogr.CreateGeometryFromWkb(result.wkb) if result.wkb else None)
                    out.SetField(self.method_index, result.method)
                    if result.iou is None:
                        out.SetFieldNull(self.iou_index)
                    else:
                        out.SetField(self.iou_index, result.iou)
                    if self.layer.CreateFeature(out) != 0 or quiet.errors:
                        raise RuntimeError(quiet.errors[-1] if quiet.errors else "a feature was not written")
                    self.count += 1
        except RuntimeError as exc:
            raise self._error(exc) from None

    def commit(self) -> None:
        """Close the file, check it holds every feature, and move it into place."""
        from osgeo import ogr

        from .output import _QuietGdal

        try:
            self.layer.CommitTransaction()
            self.layer = None
            with _QuietGdal() as quiet:
                self.dataset.FlushCache()
                self.dataset = None
            if quiet.errors:
                raise RuntimeError(quiet.errors[0])
            check = ogr.Open(str(self.tmp_dir / self.path.name))
            written = check.GetLayer(0).GetFeatureCount() if check is not None else -1
            check = None
            if written != self.count:
                raise OSError(0, f"the written file holds {max(written, 0)} of {self.count} features")
            for part in sorted(self.tmp_dir.iterdir()):
                if part.name.startswith(self.path.stem + "."):
                    os.replace(part, self.path.with_name(part.name))
        except (RuntimeError, OSError) as exc:
            raise self._error(exc) from None
        finally:
            self._discard()

    def _discard(self) -> None:
        """Close and delete the partial output; never raises."""
        self.layer = self.dataset = None
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def __enter__(self) -> LayerWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._discard()
