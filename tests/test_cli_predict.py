"""`python -m trainer predict`: output layer, and one clear error line for every bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from osgeo import ogr

from trainer.cli import main

from .helpers import REPO, SAMPLE_RASTER, tiny_unet_weights, write_raster


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_unet_weights(tmp_path_factory.mktemp("w") / "tiny.safetensors")


def read_layer(path):
    dataset = ogr.Open(str(path))
    layer = dataset.GetLayerByName("buildings")
    assert layer is not None
    fields = [layer.GetLayerDefn().GetFieldDefn(i).GetName() for i in range(layer.GetLayerDefn().GetFieldCount())]
    srs = layer.GetSpatialRef()
    features = [(f.GetGeometryRef().Clone(), f.GetField("area_m2"), f.GetField("score")) for f in layer]
    return fields, srs.GetAuthorityCode(None), features, dataset


def test_predict_on_the_real_sample_writes_a_buildings_layer(tmp_path, weights, capsys):
    out = tmp_path / "buildings.gpkg"
    code = main(["predict", "--input", str(SAMPLE_RASTER), "--output", str(out), "--weights", str(weights),
                 "--min-area", "0", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "buildings in" in captured.out and "on cpu" in captured.out
    fields, epsg, features, dataset = read_layer(out)
    assert fields == ["area_m2", "score", "source"]
    assert {f.GetField("source") for f in dataset.GetLayerByName("buildings")} == {SAMPLE_RASTER.name}
    assert [dataset.GetLayer(i).GetName() for i in range(dataset.GetLayerCount())] == ["buildings"]  # no journal
    assert epsg == "3857"
    count = int(captured.out.split()[0])
    assert count == len(features)
    for geometry, area, score in features:
        assert geometry.GetGeometryName() == "POLYGON" and geometry.IsValid()
        assert area > 0 and 0 <= score <= 1
    assert not list(tmp_path.glob(".*partial*")) and not list(tmp_path.glob("*partial*"))


def test_module_entry_point_and_help():
    result = subprocess.run([sys.executable, "-m", "trainer", "predict", "--help"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0 and "--regularize" in result.stdout
    result = subprocess.run([sys.executable, "-m", "trainer"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and "COMMAND" in result.stderr


def _bad_inputs(tmp_path, weights):
    text = tmp_path / "notes.tif"
    text.write_text("this is not a raster")
    two_band = write_raster(tmp_path / "two.tif", np.zeros((2, 64, 64), np.uint8))
    rgb = write_raster(tmp_path / "rgb.tif", np.zeros((3, 64, 64), np.uint8))
    float_raster = write_raster(tmp_path / "float.tif", np.zeros((3, 64, 64), np.float32))
    eight_band_weights = tiny_unet_weights(tmp_path / "mul.safetensors", bands=[f"band{i}" for i in range(1, 9)])
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(weights.read_bytes()[:5000])
    out = str(tmp_path / "out.gpkg")
    return {
        "missing input": (["--input", str(tmp_path / "nope.tif"), "--output", out], "file not found"),
        "not a raster": (["--input", str(text), "--output", out], "cannot be opened as a raster"),
        "two bands": (["--input", str(two_band), "--output", out], "2 band"),
        "float pixels": (["--input", str(float_raster), "--output", out], "float32 is not supported"),
        "weights for other bands": (["--input", str(rgb), "--output", out, "--weights", str(eight_band_weights)],
                                    "need 8"),
        "corrupt weights": (["--input", str(rgb), "--output", out, "--weights", str(corrupt)], "corrupt"),
        "pickle weights": (["--input", str(rgb), "--output", out, "--weights", str(text)], "too short|header"),
        "missing folder": (["--input", str(rgb), "--output", str(tmp_path / "no" / "out.gpkg")], "does not exist"),
        "output is a folder": (["--input", str(rgb), "--output", str(tmp_path)], "GeoPackage"),
        "bad band mapping": (["--input", str(rgb), "--output", out, "--bands", "1,2,7"], "has 3 band"),
        "bad tile size": (["--input", str(rgb), "--output", out, "--tile-size", "90"], "multiple of"),
    }


CASES = ["missing input", "not a raster", "two bands", "float pixels", "weights for other bands", "corrupt weights",
         "pickle weights", "missing folder", "output is a folder", "bad band mapping", "bad tile size"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gives_exit_2_one_line_and_no_file(tmp_path, weights, capsys, case):
    argv, message = _bad_inputs(tmp_path, weights)[case]
    if "--weights" not in argv:
        argv += ["--weights", str(weights)]
    code = main(["predict", *argv, "--quiet"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    import re

    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "out.gpkg").exists()
    assert not list(tmp_path.glob("*.gpkg")) and not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("suffix", [".geojson", ".fgb", ".shp", ".csv"])
def test_output_format_follows_the_extension(tmp_path, weights, suffix):
    from trainer.evaluate import read_spacenet_csv

    out = tmp_path / f"buildings{suffix}"
    code = main(["predict", "--input", str(SAMPLE_RASTER), "--output", str(out), "--weights", str(weights),
                 "--min-area", "0", "--quiet"])
    assert code == 0 and out.is_file()
    reference = tmp_path / "reference.gpkg"
    assert main(["predict", "--input", str(SAMPLE_RASTER), "--output", str(reference), "--weights", str(weights),
                 "--min-area", "0", "--quiet"]) == 0
    expected = read_layer(reference)[2]
    if suffix == ".csv":
        (polygons, scores), = read_spacenet_csv(str(out)).values()
        assert list(read_spacenet_csv(str(out))) == ["philippines_c1"]
        assert len(polygons) == len(expected) and all(0 <= s <= 1 for s in scores)
        assert all(0 <= x <= 512 and 0 <= y <= 256 for g in polygons for x, y in g.exterior.coords)  # pixels
    else:
        dataset = ogr.Open(str(out))
        assert dataset.GetLayer(0).GetFeatureCount() == len(expected)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_probability_raster_lies_on_the_grid_and_marks_the_buildings(tmp_path):
    import rasterio
    from rasterio.features import rasterize

    from .helpers import DEFAULT_WEIGHTS

    out, probabilities = tmp_path / "b.gpkg", tmp_path / "p.tif"
    code = main(["predict", "--input", str(SAMPLE_RASTER), "--output", str(out), "--weights", str(DEFAULT_WEIGHTS),
                 "--probabilities", str(probabilities), "--quiet"])
    assert code == 0
    with rasterio.open(probabilities) as dst, rasterio.open(SAMPLE_RASTER) as src:
        assert (dst.width, dst.height, dst.dtypes[0]) == (src.width, src.height, "uint8")  # 0.29 m: not resampled
        assert dst.transform.almost_equals(src.transform) and dst.crs == src.crs
        values = dst.read(1)
    _, _, features, _ = read_layer(out)
    from shapely import wkb

    inside = rasterize([(wkb.loads(bytes(g.ExportToWkb())), 1) for g, _, _ in features], out_shape=values.shape,
                       transform=src.transform).astype(bool)
    assert values[inside].mean() > 150 and values[~inside].mean() < 60


def test_vectorising_workers_give_the_same_buildings(tmp_path):
    from shapely import wkt

    # The real model on the real Zanzibar sample, through `python -m trainer` (the main module a
    # worker process imports again): two worker processes find exactly what one process finds.
    zanzibar = REPO / "resources" / "sample" / "zanzibar_c1.tif"
    found = {}
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}.csv"
        result = subprocess.run([sys.executable, "-m", "trainer", "predict", "--input", str(zanzibar), "--output",
                                 str(out), "--vectorize-workers", workers, "--quiet"], cwd=REPO,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        rows = out.read_text().splitlines()[1:]
        found[workers] = sorted((wkt.loads(row.split(",", 2)[2].rsplit(",", 1)[0].strip('"')) for row in rows),
                                key=lambda g: (round(g.bounds[0], 3), round(g.bounds[1], 3)))
    assert len(found["1"]) > 50 and len(found["1"]) == len(found["2"])
    # The same outlines; a part's own pixel -> CRS offset may change the last of 16 digits.
    assert all(a.equals_exact(b, 1e-6) for a, b in zip(found["1"], found["2"]))


def test_regions_labelled_in_pieces_and_joined_are_the_whole_buffers_regions():
    from scipy import ndimage

    from footprint_plugin.core.instances import ClassMaps
    from footprint_plugin.core.pieces import RegionJob, Regions, join_regions, label_regions
    from footprint_plugin.core.strip_buffer import LocalStripBuffer

    rng = np.random.default_rng(3)
    building = ndimage.binary_opening(rng.random((60, 200)) < 0.55)  # blobs, many crossing any cut
    building[5:9, 10:190] = True  # one region across every piece
    buffer = LocalStripBuffer(200)
    buffer.append(ClassMaps(building, building, building.astype(np.uint8)))
    whole, count = ndimage.label(building, structure=ndimage.generate_binary_structure(2, 1))
    for cuts in ([0, 200], [0, 50, 100, 150, 200], [0, 1, 7, 199, 200]):
        jobs = [RegionJob(buffer.view(), (a, b)) for a, b in zip(cuts[:-1], cuts[1:])]
        labelled = Regions.join([label_regions(job) for job in jobs])
        joined, owner = join_regions(labelled, buffer.labels(), cuts)
        assert len(joined.labels) == count
        # The same partition of the pixels, and each joined region's box, first pixel and size.
        joined_id = np.zeros(int(buffer.labels().max()) + 1, np.int64)
        joined_id[labelled.labels] = owner + 1
        mine = joined_id[buffer.labels()]
        pairs = {(a, b) for a, b in zip(whole[building].tolist(), mine[building].tolist())}
        assert len(pairs) == count and len({a for a, _ in pairs}) == count
        for region, joined_index in pairs:
            rows, cols = np.nonzero(whole == region)
            j = joined_index - 1
            assert (joined.top[j], joined.bottom[j] - 1, joined.left[j], joined.right[j] - 1) == (
                rows.min(), rows.max(), cols.min(), cols.max())
            assert joined.first[j] == rows[0] * 200 + cols[0] and joined.pixels[j] == len(rows)
