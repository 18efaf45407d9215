"""``footprint:regularize_buildings`` in QGIS: under pytest-qgis (attributes, CRS, style, the toolbox) and headless
through ``qgis_process.bin`` on an OpenStreetMap layer with the plugin installed from its ZIP."""

from __future__ import annotations

import math
import os
import shutil
import subprocess

import pytest
from osgeo import ogr
from qgis.core import QgsApplication, QgsProject, QgsRuleBasedRenderer, QgsVectorLayer
from shapely import wkb

from tools import plugin_package
from tools.lab.outline_shapes import is_right, ring_angles

from .helpers import REPO

ZANZIBAR = REPO / "resources" / "sample" / "zanzibar_c1_buildings.geojson"  # EPSG:3857, OSM
BANEPA_NORTH = REPO.parent / "shared" / "data" / "banepa_north" / "buildings.geojson"  # EPSG:4326, multi-polygons


def polygon_layer(crs: str, rows: list[tuple[str, int, str]]) -> QgsVectorLayer:
    """A memory layer with fields name and floors, features from WKT."""
    from qgis.core import QgsFeature, QgsGeometry

    layer = QgsVectorLayer(f"Polygon?crs={crs}&field=name:string&field=floors:integer", "mine", "memory")
    features = []
    for wkt, floors, name in rows:
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromWkt(wkt))
        feature.setAttributes([name, floors])
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    return layer


def rotated_l_wkt(x: float, y: float, scale_x: float = 1.0, scale_y: float = 1.0) -> str:
    """An L (40 x 30 m, wobbly walls) turned by 20 degrees, moved to (x, y), stretched per axis."""
    corners = [(0, 0), (40, 0.3), (40, 15), (15.2, 15), (15, 30), (0.3, 30), (0, 0)]
    turn = math.radians(20)
    points = [(x + (a * math.cos(turn) - b * math.sin(turn)) * scale_x, y + (a * math.sin(turn) + b * math.cos(turn))
               * scale_y) for a, b in corners]
    return "POLYGON((" + ", ".join(f"{px!r} {py!r}" for px, py in points) + "))"


def test_the_algorithm_keeps_attributes_and_crs_and_loads_styled(provider, tmp_path):
    import processing

    algorithm = QgsApplication.processingRegistry().algorithmById("footprint:regularize_buildings")
    assert algorithm is not None and algorithm.provider().name() == "Building footprints"
    assert all(word in algorithm.shortHelpString() for word in ("Right angles", "diagonals", "Any angle", "Circle"))
    layer = polygon_layer("EPSG:32633", [(rotated_l_wkt(500_000, 6_000_000), 2, "school"),
                                         ("POLYGON((500100 6000000, 500110 6000010, 500110 6000000, 500100 6000010, "
                                          "500100 6000000))", 1, "bow-tie")])
    output = str(tmp_path / "regular.gpkg")
    result = processing.run("footprint:regularize_buildings", {"INPUT": layer, "MODE": 1, "OUTPUT": output})
    out = QgsVectorLayer(result["OUTPUT"], "out", "ogr")
    assert out.isValid() and out.crs().authid() == "EPSG:32633" and out.featureCount() == 2
    assert [f.name() for f in out.fields()][-4:] == ["name", "floors", "reg_method", "reg_iou"]
    rows = {f["name"]: f for f in out.getFeatures()}
    assert rows["school"]["floors"] == 2 and rows["school"]["reg_method"] == "diagonals"
    assert rows["school"]["reg_iou"] > 0.98
    ell = wkb.loads(bytes(rows["school"].geometry().asWkb()))
    assert len(ring_angles(ell.exterior.coords)) == 6 and all(is_right(a, 1e-6) for a in ring_angles(ell.exterior.coords))
    assert rows["bow-tie"]["reg_method"] == "multipart"  # a polygon layer: passed through, flagged, not dropped
    del out, rows
    processing.runAndLoadResults("footprint:regularize_buildings", {"INPUT": layer, "MODE": 0,
                                                                    "OUTPUT": str(tmp_path / "loaded.gpkg")})
    shown = [one for one in QgsProject.instance().mapLayers().values() if "loaded.gpkg" in one.source()]
    assert len(shown) == 1 and isinstance(shown[0].renderer(), QgsRuleBasedRenderer)
    labels = [rule.label() for rule in shown[0].renderer().rootRule().children()]
    assert labels == ["regularised", "kept as it was"]
    QgsProject.instance().removeAllMapLayers()


def test_the_algorithm_works_in_degrees(provider, tmp_path):
    import processing

    metres_per_degree = 111_320.0
    lon_scale = 1 / (metres_per_degree * math.cos(math.radians(60)))
    layer = polygon_layer("EPSG:4326", [(rotated_l_wkt(10.0, 60.0, lon_scale, 1 / metres_per_degree), 3, "north")])
    result = processing.run("footprint:regularize_buildings", {"INPUT": layer, "MODE": 0,
                                                               "OUTPUT": str(tmp_path / "degrees.gpkg")})
    out = QgsVectorLayer(result["OUTPUT"], "out", "ogr")
    feature = next(out.getFeatures())
    assert out.crs().authid() == "EPSG:4326" and feature["reg_method"] == "right-angles"
    polygon = wkb.loads(bytes(feature.geometry().asWkb()))
    on_ground = [((x - 10.0) / lon_scale, (y - 60.0) * metres_per_degree) for x, y in polygon.exterior.coords]
    assert len(ring_angles(on_ground)) == 6 and all(is_right(a, 0.2) for a in ring_angles(on_ground))


@pytest.mark.skipif(not shutil.which("qgis_process.bin"), reason="needs QGIS (make setup installs it)")
@pytest.mark.skipif(not BANEPA_NORTH.is_file(), reason="needs ../shared/data (the Banepa buildings)")
def test_qgis_process_regularizes_openstreetmap_buildings(tmp_path):
    root = tmp_path / "config"
    plugin_package.install(plugin_package.package(tmp_path / "plugin.zip"), root / "profiles" / "default",
                           developer_site=plugin_package.venv_site_packages())
    env = {**os.environ, "QGIS_CUSTOM_CONFIG_PATH": str(root), "QT_QPA_PLATFORM": "offscreen"}
    for name in ("QGIS_OPTS", "PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(name, None)
    output = tmp_path / "osm.gpkg"
    run = ["qgis_process.bin", "run", "footprint:regularize_buildings", "--"]
    result = subprocess.run([*run, f"INPUT={BANEPA_NORTH}", "MODE=0", "TOLERANCE=0.5", f"OUTPUT={output}"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "527 of 527 features written" in result.stdout + result.stderr
    dataset = ogr.Open(str(output))
    layer = dataset.GetLayer(0)
    assert layer.GetFeatureCount() == 527 and layer.GetSpatialRef().GetAuthorityCode(None) == "4326"
    assert ogr.GeometryTypeToName(layer.GetGeomType()) == "Multi Polygon"
    methods = [feature.GetField("reg_method") for feature in layer]
    assert methods.count("right-angles") > 0.9 * 527 and all(m in ("right-angles", "input") for m in methods)
    assert all(feature.GetField("osm_id") for feature in layer)  # OpenStreetMap's attributes are kept
    del layer, dataset
    failed = subprocess.run([*run, f"INPUT={tmp_path / 'missing.gpkg'}", f"OUTPUT={tmp_path / 'x.gpkg'}"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert failed.returncode != 0 and "Traceback" not in failed.stdout + failed.stderr
    assert not (tmp_path / "x.gpkg").exists()
