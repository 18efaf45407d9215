"""Country scale: many rasters as one input, runs that resume after SIGKILL, and a Dask cluster of two workers.

All on real imagery: the Zanzibar sample (1792 x 512 px, EPSG:3857) cut into GeoTIFF tiles, some of them warped
to UTM. Block sizes are small so that a small raster has many blocks.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rasterio
from osgeo import ogr
from shapely import wkb as shapely_wkb
from shapely.ops import unary_union

from footprint_plugin.core.errors import FootprintError
from footprint_plugin.core.inputs import find_rasters
from tools.large_areas import journal_rows
from trainer.cli import main

from .helpers import DEFAULT_WEIGHTS, REPO, ZANZIBAR, cut_tiles

BLOCKS = ["--block-size", "256", "--block-halo", "128"]  # 24 blocks over the sample (with its margin)


def predict(*argv: str) -> int:
    return main(["predict", *argv, "--weights", str(DEFAULT_WEIGHTS), "--device", "cpu", "--quiet"])


def layer(path: Path) -> list[tuple[bytes, float, float, str]]:
    dataset = ogr.Open(str(path))
    assert [dataset.GetLayer(i).GetName() for i in range(dataset.GetLayerCount())] == ["buildings"]
    found = [(bytes(f.GetGeometryRef().ExportToWkb()), f.GetField("area_m2"), f.GetField("score"),
              f.GetField("source")) for f in dataset.GetLayerByName("buildings")]
    dataset = None
    return sorted(found)


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The sample in one piece, one process, the small blocks."""
    output = tmp_path_factory.mktemp("whole") / "whole.gpkg"
    assert predict("--input", str(ZANZIBAR), "--output", str(output), *BLOCKS) == 0
    return layer(output)


def test_inputs_are_found_from_folders_globs_and_lists(tmp_path):
    tiles = cut_tiles(tmp_path / "tiles", columns=3)
    (tmp_path / "tiles" / "notes.md").write_text("not a raster")
    listing = tmp_path / "list.txt"
    listing.write_text("# the first two\ntiles/tile_0.tif\n\ntiles/tile_1.tif  # second\n")
    resolved = [tile.resolve() for tile in tiles]
    assert find_rasters([str(tmp_path / "tiles")]) == resolved
    assert find_rasters([str(tmp_path / "tiles" / "tile_*.tif")]) == resolved
    assert find_rasters([str(listing)]) == resolved[:2]
    assert find_rasters([str(tiles[2]), str(tiles[0]), str(tiles[2])]) == [resolved[2], resolved[0]]
    for spec, message in ((tmp_path / "nothing_*.tif", "no file matches"), (tmp_path / "missing.tif", "file not found"),
                          (tmp_path, "holds no raster")):
        with pytest.raises(FootprintError, match=message):
            find_rasters([str(spec)])


def test_tiles_in_one_crs_give_the_buildings_of_the_whole_raster(tmp_path, whole):
    # Four tiles side by side read as one mosaic: buildings across the tile edges come out whole and once, bit for
    # bit those of the sample in one piece, each with the tile that holds its centre as its source.
    tiles = cut_tiles(tmp_path / "tiles")
    output = tmp_path / "mosaic.gpkg"
    assert predict("--input", str(tmp_path / "tiles"), "--output", str(output), *BLOCKS) == 0
    found = layer(output)
    assert [item[:3] for item in found] == [item[:3] for item in whole]
    assert {item[3] for item in whole} == {ZANZIBAR.name}
    boxes = {}
    for tile in tiles:
        with rasterio.open(tile) as dataset:
            boxes[tile.name] = dataset.bounds
    crossing = 0
    for geometry, _, _, source in found:
        polygon = shapely_wkb.loads(geometry)
        x0, y0, x1, y1 = polygon.bounds
        left, bottom, right, top = boxes[source]
        assert left <= (x0 + x1) / 2 < right and bottom < (y0 + y1) / 2 <= top
        crossing += x0 < left or x1 > right
    assert crossing >= 2  # buildings that lie on two tiles came out once, whole
    assert not list(tmp_path.glob(".*mosaics*")) and not list(tmp_path.glob("*partial*"))


def test_rasters_in_two_crss_run_into_one_output(tmp_path, whole):
    # Tiles 2 and 3 warped to UTM 37S: the two groups run one after another into one layer in the first raster's
    # CRS (EPSG:3857), or in --crs. Where the groups meet, each building comes from one group only.
    cut_tiles(tmp_path / "tiles", utm=(2, 3))
    output = tmp_path / "mixed.gpkg"
    assert predict("--input", str(tmp_path / "tiles"), "--output", str(output), *BLOCKS) == 0
    found = layer(output)
    dataset = ogr.Open(str(output))
    assert dataset.GetLayer(0).GetSpatialRef().GetAuthorityCode(None) == "3857"
    dataset = None
    polygons = [shapely_wkb.loads(item[0]) for item in found]
    assert {item[3] for item in found} == {f"tile_{i}.tif" for i in range(4)}
    assert abs(len(found) - len(whole)) <= 0.15 * len(whole)
    reference = unary_union([shapely_wkb.loads(item[0]) for item in whole])
    union = unary_union(polygons)
    assert union.intersection(reference).area / union.union(reference).area > 0.8  # warped pixels: near, not exact
    for index, polygon in enumerate(polygons):  # no building twice
        for other in polygons[index + 1 :]:
            if polygon.intersects(other):
                assert polygon.intersection(other).area < 0.5 * min(polygon.area, other.area)
    lonlat = tmp_path / "lonlat.gpkg"
    assert predict("--input", str(tmp_path / "tiles"), "--output", str(lonlat), "--crs", "EPSG:4326", *BLOCKS) == 0
    dataset = ogr.Open(str(lonlat))
    assert dataset.GetLayer(0).GetSpatialRef().GetAuthorityCode(None) == "4326"
    x0, x1, y0, y1 = dataset.GetLayer(0).GetExtent()
    assert 39 < x0 < x1 < 40 and -7 < y0 < y1 < -5  # Zanzibar in degrees
    assert dataset.GetLayer(0).GetFeatureCount() == len(found)


def test_a_resumable_run_killed_three_times_gives_the_uninterrupted_buildings(tmp_path, whole):
    output = tmp_path / "killed.gpkg"
    partial = tmp_path / "killed.partial.gpkg"
    argv = [sys.executable, "-m", "trainer", "predict", "--input", str(ZANZIBAR), "--output", str(output),
            "--weights", str(DEFAULT_WEIGHTS), "--device", "cpu", "--quiet", *BLOCKS]
    random.seed(7)
    kills = []
    for attempt in range(3):
        process = subprocess.Popen(argv + (["--resume"] if attempt else []), cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        before = journal_rows(partial)
        deadline = time.monotonic() + 120
        while journal_rows(partial) <= before and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(random.uniform(0.0, 1.5))  # somewhere inside the next block
        assert process.poll() is None, "the run ended before it was killed"
        os.kill(process.pid, signal.SIGKILL)
        process.communicate()
        kills.append(journal_rows(partial))
    assert 0 < kills[0] < kills[-1] < 24 and not output.exists()  # of 24 blocks
    changed = subprocess.run(argv[:-4] + ["--block-size", "300", "--block-halo", "128", "--resume"], cwd=REPO,
                             capture_output=True, text=True)
    assert changed.returncode == 2 and "other settings" in changed.stderr and "Traceback" not in changed.stderr
    fresh = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)  # not --resume: the partial is kept
    assert fresh.returncode == 2 and "add --resume" in fresh.stderr
    done = subprocess.run(argv + ["--resume"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    print(f"resume: journal rows after each SIGKILL {kills}, then {done.stdout.strip()}")
    assert layer(output) == whole  # none twice, none missing, the same geometry and attributes
    assert not partial.exists()


def test_resume_needs_a_geopackage_and_a_partial_run(tmp_path, capsys):
    for output, message in ((tmp_path / "out.geojson", "Only a GeoPackage output can resume"),
                            (tmp_path / "out.gpkg", "Nothing to resume")):
        assert predict("--input", str(ZANZIBAR), "--output", str(output), "--resume") == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0], lines
    assert not list(tmp_path.iterdir())


def test_a_local_dask_cluster_of_two_workers_gives_the_same_buildings(tmp_path, whole):
    pytest.importorskip("distributed")
    cut_tiles(tmp_path / "tiles")
    output = tmp_path / "cluster.gpkg"
    assert predict("--input", str(tmp_path / "tiles"), "--output", str(output), "--cluster", "local:2", *BLOCKS) == 0
    found = layer(output)
    assert [item[:3] for item in found] == [item[:3] for item in whole]  # blocks came back in any order
    single = tmp_path / "single.gpkg"
    assert predict("--input", str(tmp_path / "tiles"), "--output", str(single), *BLOCKS) == 0
    assert found == layer(single)  # sources too


def test_a_killed_cluster_worker_has_its_block_run_again_and_the_output_stays_exact(tmp_path, whole):
    pytest.importorskip("distributed")
    import psutil

    output = tmp_path / "killed_worker.gpkg"
    process = subprocess.Popen([sys.executable, "-m", "trainer", "predict", "--input", str(ZANZIBAR), "--output",
                                str(output), "--weights", str(DEFAULT_WEIGHTS), "--device", "cpu", "--quiet",
                                "--cluster", "local:2", *BLOCKS], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    partial = tmp_path / "killed_worker.partial.gpkg"
    deadline = time.monotonic() + 120
    while journal_rows(partial) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = [child for child in psutil.Process(process.pid).children(recursive=True)
               if "spawn_main" in " ".join(child.cmdline()) and child.memory_info().rss > 200 * 2**20]
    assert len(workers) == 2 and process.poll() is None, "the cluster's workers were not running blocks"
    workers[0].send_signal(signal.SIGKILL)  # in the middle of a block: the scheduler hands it to the other
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-2000:]
    assert layer(output) == whole
