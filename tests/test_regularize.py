"""The building-footprint regulariser (core.regularize, outlines' modes, ``python -m trainer regularize``): each mode
on synthetic and real shapes, attributes, CRSs, broken geometries, the extraction's new outline modes."""

from __future__ import annotations

import math
import statistics
import subprocess
import sys

import numpy as np
import pytest
from osgeo import ogr, osr
from shapely import affinity, wkb
from shapely.geometry import MultiPolygon, Polygon

from footprint_plugin.core.buildings import REGULARIZE_MODES, VectorizeOptions
from footprint_plugin.core.errors import CancelledError, FootprintError
from footprint_plugin.core.outlines import clean_outlines
from footprint_plugin.core.regularize import RegularizeOptions, Regularizer, regularize_file
from footprint_plugin.core.rings import Outlines, Rings, polygon_ious
from tools.lab.outline_shapes import is_right, ring_angles

from .helpers import REPO

ZANZIBAR = REPO / "resources" / "sample" / "zanzibar_c1_buildings.geojson"  # EPSG:3857, OpenStreetMap
UTM = 32633
L_SHAPE = [(0, 0), (40, 0.3), (40, 15), (15.2, 15), (15, 30), (0.3, 30)]  # metres, a little wobble
BAY = [(0, 0), (40, 0), (40, 20), (26, 20), (22, 24), (18, 24), (14, 20), (0, 20)]  # a 45-degree bay window


def crs_wkt(epsg: int) -> str:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    return srs.ExportToWkt()


def placed(shape: list, degrees: float = 20, x: float = 500_000, y: float = 6_000_000) -> Polygon:
    return affinity.translate(affinity.rotate(Polygon(shape), degrees, origin=(0, 0)), x, y)


def regularize_one(polygon, mode: str, epsg: int = UTM, **options):
    result = Regularizer(RegularizeOptions(mode=mode, **options), crs_wkt(epsg), multi=False).batch([polygon.wkb])[0]
    return result, wkb.loads(result.wkb) if result.wkb else None


def angles_of(polygon: Polygon) -> list[float]:
    return ring_angles(polygon.exterior.coords)


def edge_directions(polygon: Polygon) -> list[float]:
    """Each edge's direction in degrees, modulo 180, relative to the first edge's."""
    ring = np.asarray(polygon.exterior.coords)
    steps = np.diff(ring, axis=0)
    angles = np.degrees(np.arctan2(steps[:, 1], steps[:, 0]))
    return [round((a - angles[0]) % 180, 6) % 180 for a in angles]


@pytest.mark.parametrize("mode", ["right-angles", "diagonals", "any-angle", "circle"])
def test_a_rotated_l_stays_an_l_in_every_mode(mode):
    ell = placed(L_SHAPE)
    result, out = regularize_one(ell, mode)
    angles = angles_of(out)
    exact = 2.0 if mode == "any-angle" else 1e-6  # any angle follows the slightly skewed walls as drawn
    assert len(angles) == 6 and all(is_right(a, exact) for a in angles) and sum(a > 180 for a in angles) == 1
    assert result.method == ("any-angle" if mode == "any-angle" else "right-angles" if mode == "circle" else mode)
    assert result.iou == pytest.approx(out.intersection(ell).area / out.union(ell).area, abs=1e-4)
    assert result.iou > 0.98


def test_a_45_degree_bay_window_gives_diagonals_only_in_that_mode():
    bay = placed(BAY, degrees=12)
    result, diagonal = regularize_one(bay, "diagonals")
    directions = set(edge_directions(diagonal))
    assert result.method == "diagonals" and directions == {0.0, 45.0, 90.0, 135.0}
    assert len(angles_of(diagonal)) == 8 and result.iou > 0.99
    result, square = regularize_one(bay, "right-angles")
    assert result.method == "right-angles" and set(edge_directions(square)) <= {0.0, 90.0}
    assert all(is_right(a, 1e-6) for a in angles_of(square))


def test_a_16_gon_becomes_a_circle_and_a_square_does_not():
    gon = Polygon([(500_000 + 6 * math.cos(t), 6_000_000 + 6 * math.sin(t))
                   for t in np.linspace(0, 2 * math.pi, 16, endpoint=False)])
    result, circle = regularize_one(gon, "circle")
    centre = np.asarray(circle.centroid.coords[0])
    radii = np.hypot(*(np.asarray(circle.exterior.coords) - centre).T)
    assert result.method == "circle" and len(circle.exterior.coords) > 17
    assert radii.std() < 1e-6 and circle.area == pytest.approx(gon.area, rel=1e-6) and result.iou > 0.98
    square = placed([(0, 0), (8, 0), (8, 8), (0, 8)], degrees=33)
    result, out = regularize_one(square, "circle")
    assert result.method == "right-angles" and len(out.exterior.coords) == 5
    result, _ = regularize_one(gon, "circle", circle_min_iou=0.999)  # too strict: right angles, or the input
    assert result.method in ("right-angles", "input")


def test_a_geographic_crs_gets_right_angles_on_the_ground():
    """The L in EPSG:4326 at 60 degrees north (a degree of longitude is half a degree of latitude there): right
    angles in metres, not in degrees."""
    ell = placed(L_SHAPE, x=0, y=0)
    metres_per_degree = 111_320.0
    lon_scale = metres_per_degree * math.cos(math.radians(60))
    in_degrees = affinity.affine_transform(ell, [1 / lon_scale, 0, 0, 1 / metres_per_degree, 10.0, 60.0])
    result, out = regularize_one(in_degrees, "right-angles", epsg=4326)
    assert result.method == "right-angles"
    on_ground = affinity.affine_transform(out, [lon_scale, 0, 0, metres_per_degree, 0, 0])
    assert len(angles_of(on_ground)) == 6 and all(is_right(a, 0.2) for a in angles_of(on_ground))
    assert not all(is_right(a, 2.0) for a in angles_of(out))  # in degrees they are not right angles
    assert abs(out.bounds[0] - 10.0) < 0.001 and abs(out.bounds[1] - 60.0) < 0.001  # still in degrees, in place


def test_broken_and_multipart_polygons_are_repaired_or_flagged_never_dropped():
    bowtie = affinity.translate(Polygon([(0, 0), (10, 10), (10, 0), (0, 10)]), 500_000, 6_000_000)
    spike = affinity.translate(Polygon([(0, 0), (10, 0), (10, 10), (10, 20), (10, 10), (0, 10)]), 500_100, 6_000_000)
    flat = Polygon([(500_200, 6_000_000), (500_210, 6_000_000), (500_220, 6_000_000)])
    ells = MultiPolygon([placed(L_SHAPE, x=500_300), placed(L_SHAPE, x=500_400)])
    blobs = [bowtie.wkb, spike.wkb, flat.wkb, ells.wkb, None, b"not wkb"]
    multi = Regularizer(RegularizeOptions(), crs_wkt(UTM), multi=True).batch(blobs)
    assert [r.method for r in multi] == ["input,repaired", "right-angles,repaired", "invalid", "right-angles", "empty",
                                         "invalid"]
    repaired = wkb.loads(multi[0].wkb)
    assert repaired.is_valid and len(repaired.geoms) == 2 and repaired.area == pytest.approx(50)
    assert wkb.loads(multi[1].wkb).is_valid and wkb.loads(multi[1].wkb).area == pytest.approx(100, rel=0.01)
    assert multi[2].wkb == flat.wkb and multi[2].iou is None  # passed through unchanged
    both = wkb.loads(multi[3].wkb)
    assert both.geom_type == "MultiPolygon" and all(len(angles_of(part)) == 6 for part in both.geoms)
    single = Regularizer(RegularizeOptions(), crs_wkt(UTM), multi=False).batch(blobs[:1])
    assert single[0].method == "multipart" and single[0].wkb == bowtie.wkb  # a polygon layer takes no multi-polygon


def test_holes_stay_inside_and_small_buildings_are_left_out():
    courtyard = affinity.rotate(Polygon([(0, 0), (30, 0.2), (30, 30), (0, 30)], [[(10, 10), (20, 10), (20, 20.3),
                                                                                 (10, 20)]]), 15, origin=(0, 0))
    courtyard = affinity.translate(courtyard, 500_000, 6_000_000)
    tiny = placed([(0, 0), (2, 0), (2, 2), (0, 2)], x=500_100)
    results = Regularizer(RegularizeOptions(min_area_m2=5), crs_wkt(UTM)).batch([courtyard.wkb, tiny.wkb])
    out = wkb.loads(results[0].wkb).geoms[0]
    assert results[0].method == "right-angles" and out.is_valid and len(out.interiors) == 1
    assert all(is_right(a, 1e-6) for a in ring_angles(out.interiors[0].coords))
    assert results[0].iou == pytest.approx(out.intersection(courtyard).area / out.union(courtyard).area, abs=1e-4)
    assert results[1].dropped and results[1].wkb is None


def test_polygon_ious_match_geos_for_any_shapes():
    rng = np.random.default_rng(3)
    first, second = [], []
    for _ in range(60):
        for rings in (first, second):
            turn = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(3, 20)))
            radius = 10 * (1 + 0.5 * rng.uniform(-1, 1, len(turn)))
            points = np.column_stack([radius * np.cos(turn), radius * np.sin(turn)]) + rng.uniform(-4, 4, 2) + 1e5
            points = points[::-1] if rng.random() < 0.5 else points  # either orientation
            rings.append(np.vstack([points, points[:1]]))
    ious = polygon_ious(Rings.from_list(first), Rings.from_list(second), max_pairs=500)
    for a, b, iou in zip(first, second, ious):
        pa, pb = Polygon(a), Polygon(b)
        if pa.is_valid and pb.is_valid:
            assert iou == pytest.approx(pa.intersection(pb).area / pa.union(pb).area, abs=1e-7)


def test_the_extraction_offers_the_modes_and_keeps_orthogonal_where_it_was():
    assert REGULARIZE_MODES[:3] == ("none", "simplify", "orthogonal")  # Processing's enum index 2 still means it
    assert set(REGULARIZE_MODES[3:]) == {"diagonals", "any-angle", "circle"}
    yy, xx = np.mgrid[0:60, 0:60]
    disc = (np.hypot(xx - 30, yy - 30) <= 20).astype(np.uint8)
    outline = _pixel_outline(disc)
    staircase = np.array([(0, 0), (30, 0), (30, 10), (20, 10), (20, 30), (0, 30), (0, 0)], float)
    outlines = Outlines(Rings.from_list([outline, staircase]), np.array([1, 2]), {})
    found = {}
    for mode in REGULARIZE_MODES:
        rings = clean_outlines(outlines, 0.09, VectorizeOptions(regularize=mode, min_area_m2=0))
        found[mode] = [Polygon(r[0]) for r in rings]
    assert len(angles_of(found["circle"][0])) > 16 and len(angles_of(found["orthogonal"][0])) == 4
    for mode in ("orthogonal", "diagonals", "any-angle", "circle"):
        assert len(angles_of(found[mode][1])) == 6  # the L stays an L
    assert found["none"][0].equals(Polygon(outline))


def _pixel_outline(mask: np.ndarray) -> np.ndarray:
    """The outline of a convex pixel mask as a closed ring along pixel edges (anticlockwise)."""
    rows = np.flatnonzero(mask.any(axis=1))
    left = [np.flatnonzero(mask[r])[0] for r in rows]
    right = [np.flatnonzero(mask[r])[-1] + 1 for r in rows]
    points = []
    for row, x in zip(rows, right):
        points += [(x, row), (x, row + 1)]
    for row, x in zip(rows[::-1], left[::-1]):
        points += [(x, row + 1), (x, row)]
    ring = [points[0]] + [p for prev, p in zip(points, points[1:]) if p != prev]
    return np.asarray(ring + [ring[0]], float)


def write_layer(path, features: list[tuple[Polygon | None, dict]], epsg: int = UTM, layer: str = "mine") -> None:
    """A GeoPackage layer with an integer, a text and a real field."""
    dataset = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    out = dataset.CreateLayer(layer, srs, ogr.wkbPolygon)
    for name, kind in (("osm_id", ogr.OFTInteger64), ("name", ogr.OFTString), ("height", ogr.OFTReal)):
        out.CreateField(ogr.FieldDefn(name, kind))
    for geometry, attributes in features:
        feature = ogr.Feature(out.GetLayerDefn())
        if geometry is not None:
            feature.SetGeometry(ogr.CreateGeometryFromWkb(geometry.wkb))
        for key, value in attributes.items():
            feature.SetField(key, value)
        out.CreateFeature(feature)
    del out, dataset  # the layer before its dataset


def read_layer(path) -> tuple[list[dict], str | None, str]:
    dataset = ogr.Open(str(path))
    layer = dataset.GetLayer(0)
    rows = [{**feature.items(), "geometry": wkb.loads(bytes(feature.GetGeometryRef().ExportToWkb()))
             if feature.GetGeometryRef() else None} for feature in layer]
    srs = layer.GetSpatialRef()
    found = rows, srs.GetAuthorityCode(None) if srs else None, ogr.GeometryTypeToName(layer.GetGeomType())
    del layer, dataset
    return found


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer", "regularize", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_command_line_keeps_every_attribute_and_the_crs(tmp_path):
    source = tmp_path / "mine.gpkg"
    write_layer(source, [(placed(L_SHAPE), {"osm_id": 2**40, "name": "école", "height": 7.5}),
                         (placed(BAY, x=500_100), {"osm_id": 2, "name": None, "height": 3.0}),
                         (None, {"osm_id": 3, "name": "no geometry"}),
                         (placed([(0, 0), (1, 0), (1, 1), (0, 1)], x=500_200), {"osm_id": 4})])
    for mode in ("right-angles", "diagonals"):
        output = tmp_path / f"{mode}.gpkg"
        result = cli(source, output, "--mode", mode, "--min-area", "2", "--quiet")
        assert result.returncode == 0, result.stderr
        assert "3 of 4 features written" in result.stdout and "1 smaller than the minimum area" in result.stdout
        rows, epsg, kind = read_layer(output)
        assert epsg == str(UTM) and kind == "Polygon"
        assert [(r["osm_id"], r["name"], r["height"]) for r in rows] == [(2**40, "école", 7.5), (2, None, 3.0),
                                                                         (3, "no geometry", None)]
        assert [r["reg_method"] for r in rows] == [mode, mode, "empty"]
        assert rows[0]["reg_iou"] > 0.98 and rows[2]["reg_iou"] is None and rows[2]["geometry"] is None
        assert len(angles_of(rows[0]["geometry"])) == 6


def test_command_line_on_real_openstreetmap_buildings_in_every_mode(tmp_path):
    dataset = ogr.Open(str(ZANZIBAR))
    source_rows = dataset.GetLayer(0).GetFeatureCount()
    del dataset
    for mode in ("right-angles", "diagonals", "any-angle", "circle"):
        output = tmp_path / f"{mode}.geojson"
        result = cli(ZANZIBAR, output, "--mode", mode, "--quiet")
        assert result.returncode == 0, result.stderr
        rows, epsg, _ = read_layer(output)
        assert len(rows) == source_rows and epsg == "3857"
        assert all("frac_inside" in row for row in rows)  # the layer's own attribute
        ious = [row["reg_iou"] for row in rows]
        assert statistics.median(ious) > 0.9 and min(ious) >= 0.8  # the fallback keeps the rest as they were
        shaped = [row for row in rows if row["reg_method"] == mode]
        assert len(shaped) > 0.8 * len(rows) or mode == "circle"  # no round buildings here: right angles instead
        if mode == "right-angles":
            assert all(all(is_right(a, 0.5) for a in angles_of(part)) for row in shaped
                       for part in getattr(row["geometry"], "geoms", [row["geometry"]]))


def test_command_line_errors_are_one_line_and_leave_no_file(tmp_path):
    for args, message in (([tmp_path / "missing.gpkg", tmp_path / "out.gpkg"], "no such file"),
                          ([ZANZIBAR, tmp_path / "out.txt"], "must be a file ending in"),
                          ([ZANZIBAR, tmp_path / "out.gpkg", "--tolerance", "0"], "must be above 0"),
                          ([ZANZIBAR, tmp_path / "out.gpkg", "--layer", "nope"], "no layer 'nope'")):
        result = cli(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip().startswith("error: ") and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert cli(ZANZIBAR, tmp_path / "out.gpkg", "--mode", "round").returncode == 2  # argparse's choices
    assert not list(tmp_path.iterdir())


def test_cancel_leaves_no_file(tmp_path):
    output = tmp_path / "cancelled.gpkg"
    with pytest.raises(CancelledError):
        regularize_file(str(ZANZIBAR), str(output), RegularizeOptions(), cancel=lambda: True)
    assert not list(tmp_path.iterdir())
    with pytest.raises(FootprintError, match="Mode 'square' unknown"):
        regularize_file(str(ZANZIBAR), str(output), RegularizeOptions(mode="square"))
