"""The review layer: buildings with low scores and areas where the probability hovers near the threshold, ranked."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import ogr
from shapely import wkb
from shapely.geometry import box

from footprint_plugin.core.extract import extract
from footprint_plugin.core.parameters import ExtractionParameters
from footprint_plugin.core.readers import RasterioReader
from footprint_plugin.core.review import certainty, write_review
from footprint_plugin.core.tiling import TilingOptions
from trainer.cli import main

from .helpers import SAMPLE_RASTER, ProbeModel, paint, probe_card, tiny_unet_weights, write_raster

UNSURE = (130, 128, 0)  # ProbeModel: P(building) = sigmoid(40 * (128 - 130) / 255) = 0.42, threshold 0.5
DOUBTFUL = (120, 126, 0)  # P = 0.72: a building, but one the model is less sure of


def read_review(path):
    dataset = ogr.Open(str(path))
    layer = dataset.GetLayerByName("review")
    assert layer is not None and dataset.GetLayerCount() == 1
    rows = [{"geometry": wkb.loads(bytes(f.GetGeometryRef().ExportToWkb())), **f.items()} for f in layer]
    return sorted(rows, key=lambda row: row["rank"]), layer.GetSpatialRef().GetAuthorityCode(None)


def test_review_ranks_a_painted_unsure_area_first(tmp_path):
    image = paint(256, 256, [(20, 20, 50, 60), (20, 150, 60, 200), (180, 180, 230, 240)])  # three clear buildings
    image[:, 100:140, 40:90] = np.array(UNSURE, np.uint8)[:, None, None]  # 12 m x 15 m where the model is unsure
    image[:, 200:202, 20:120] = np.array(UNSURE, np.uint8)[:, None, None]  # a 0.6 m band: like a building's edge
    image[:, 150:180, 100:140] = np.array([0, 0, 255], np.uint8)[:, None, None]  # a building the model doubts
    image[:, 152:178, 102:138] = np.array(DOUBTFUL, np.uint8)[:, None, None]
    raster = write_raster(tmp_path / "painted.tif", image)
    buildings, probabilities = tmp_path / "buildings.gpkg", tmp_path / "p.tif"
    parameters = ExtractionParameters(tiling=TilingOptions(64, 16, 3), regularize="none", min_area_m2=0.5,
                                      device="cpu")
    with RasterioReader(str(raster)) as reader:
        summary = extract(reader, parameters, output=buildings, probabilities=probabilities,
                          model=(ProbeModel(), probe_card(64), "probe"))
    assert summary.count == 4
    review = tmp_path / "review.gpkg"
    assert write_review(buildings, probabilities, review, 0.5) == 2
    rows, epsg = read_review(review)
    assert epsg == "32633" and [row["rank"] for row in rows] == [1, 2]
    first, second = rows
    painted = box(500000 + 40 * 0.3, 6000000 - 140 * 0.3, 500000 + 90 * 0.3, 6000000 - 100 * 0.3)
    assert first["kind"] == "area" and first["geometry"].symmetric_difference(painted).area < 0.05 * painted.area
    assert first["area_m2"] == pytest.approx(15 * 12, rel=0.02)
    assert first["probability"] == pytest.approx(0.42, abs=0.01)
    assert first["reason"].startswith("unsure area outside the buildings (probability 0.42, threshold 0.50)")
    assert second["kind"] == "building" and second["reason"].startswith("building with a low score")
    assert 0.72 < second["probability"] < 0.85  # the doubtful interior with its sure border
    doubted = box(500000 + 100 * 0.3, 6000000 - 180 * 0.3, 500000 + 140 * 0.3, 6000000 - 150 * 0.3)
    assert second["geometry"].intersection(doubted).area > 0.8 * doubted.area
    # The three clear buildings (P ~ 1) and the thin band are not listed.


def test_certainty_is_zero_at_the_threshold_and_one_at_the_ends():
    assert certainty(np.array([0.6, 0.0, 1.0, 0.3, 0.8]), 0.6).tolist() == pytest.approx([0, 1, 1, 0.5, 0.5])


def test_predict_writes_a_review_layer_without_a_probability_file(tmp_path, capsys):
    out, review = tmp_path / "b.gpkg", tmp_path / "review.gpkg"
    code = main(["predict", "--input", str(SAMPLE_RASTER), "--output", str(out), "--review", str(review), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows, epsg = read_review(review)
    assert epsg == "3857" and f"{len(rows)} places to review first -> {review}" in captured.out
    assert [row["rank"] for row in rows] == list(range(1, len(rows) + 1))
    kinds = [row["kind"] for row in rows]
    assert set(kinds) == {"area", "building"} and all(row["reason"] for row in rows)
    found = ogr.Open(str(out))
    assert kinds.count("building") < found.GetLayerByName("buildings").GetFeatureCount()  # only the doubtful ones
    scores = [row["probability"] for row in rows if row["kind"] == "building"]
    assert scores == sorted(scores) and max(scores) <= 0.6 + 0.75 * 0.4 + 5e-4  # threshold 0.6; rounded to 3 decimals
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.gpkg", "review.gpkg"]  # no probability file left


def test_review_bad_input_is_one_line(tmp_path, capsys):
    weights = tiny_unet_weights(tmp_path / "tiny.safetensors")
    common = ["predict", "--input", str(SAMPLE_RASTER), "--weights", str(weights), "--quiet"]
    cases = [
        (["--output", str(tmp_path / "b.csv"), "--review", str(tmp_path / "r.gpkg")], "needs buildings in a vector"),
        (["--output", str(tmp_path / "b.gpkg"), "--review", str(tmp_path / "r.shp")], "must be a GeoPackage"),
        (["--output", str(tmp_path / "b.gpkg"), "--review", str(tmp_path / "r.gpkg"), "--resume"],
         "cannot be written with --resume"),
    ]
    for argv, message in cases:
        assert main([*common, *argv]) == 2, message
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.safetensors"]
