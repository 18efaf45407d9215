"""The bundled default weights on the real sample raster (OpenAerialMap imagery, OSM labels)."""

from __future__ import annotations

import pytest
from shapely.ops import unary_union

from footprint_plugin.core.extract import extract_buildings
from footprint_plugin.core.parameters import ExtractionParameters
from footprint_plugin.core.pipeline import load_model
from footprint_plugin.core.readers import RasterioReader
from footprint_plugin.core.tiling import TilingOptions
from trainer.evaluate import evaluate, read_vector_pair

from .helpers import DEFAULT_WEIGHTS, REPO, SAMPLE_LABELS, SAMPLE_RASTER

ZANZIBAR = REPO / "resources" / "sample" / "zanzibar_c1.tif"  # 1792 x 512 px, EPSG:3857, held out of training


@pytest.fixture(scope="module")
def default_model():
    assert DEFAULT_WEIGHTS.is_file(), "the default weights must ship in resources/"
    return load_model(None)


def run(model, raster=SAMPLE_RASTER, **tiling):
    with RasterioReader(raster) as reader:
        return extract_buildings(reader, ExtractionParameters(tiling=TilingOptions(**tiling)), model=model)


SHARED = REPO.parent / "shared" / "data"
SMALLEST = [SAMPLE_RASTER, ZANZIBAR, SHARED / "philippines" / "philippines_c0.tif",
            SHARED / "philippines" / "philippines_c1.tif",
            SHARED / "nairobi" / "nairobi_c1.tif"]  # the lowest of tools/lab/tile_iou.py's table


@pytest.mark.parametrize("raster", SMALLEST, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_result_does_not_depend_on_tile_size(default_model, raster):
    if not raster.is_file():
        pytest.skip(f"{raster} is not here (../shared/data)")
    small = run(default_model, raster, tile_size=256)
    large = run(default_model, raster, tile_size=512)
    a = unary_union([b.geometry for b in small.buildings])
    b = unary_union([b.geometry for b in large.buildings])
    assert len(small.buildings) > 20
    iou = a.intersection(b).area / a.union(b).area
    print(f"tile-iou {raster.name}: {iou:.4f}")
    assert iou >= 0.999  # the same lattice and context at both sizes: the same buildings (tools/lab/tile_iou.py)


@pytest.mark.parametrize("raster,size,halo", [(ZANZIBAR, 256, 128), (ZANZIBAR, 384, 128),
                                              (SHARED / "nairobi" / "nairobi_c1.tif", 300, 192)],
                         ids=["zanzibar-256", "zanzibar-384", "nairobi-300"])
def test_blocks_give_the_buildings_of_one_run(default_model, raster, size, halo):
    # Square blocks of 256 and 384 px (up to 16 blocks) against one run over the whole raster: a building belongs
    # to the block holding its first pixel, and a window's maps are those of the one tile lattice, so the same
    # buildings come out, each once. Nairobi's dense blocks join into building regions far wider than the halo: the
    # instances still come out whole, but its largest building (170 px) needs the wider halo.
    if not raster.is_file():
        pytest.skip(f"{raster} is not here (../shared/data)")
    whole = run(default_model, raster)
    blocked = run(default_model, raster, block_size=size, block_halo=halo)
    assert blocked.grid.width >= 2 * size and blocked.grid.height >= 1.25 * size
    key = lambda b: b.wkb  # noqa: E731 - outlines cleaned in grid pixels: bit for bit the same
    assert len(whole.buildings) > 20
    assert sorted(map(key, whole.buildings)) == sorted(map(key, blocked.buildings))
    a = unary_union([b.geometry for b in whole.buildings])
    b = unary_union([b.geometry for b in blocked.buildings])
    assert a.intersection(b).area / a.union(b).area >= 0.999


def test_default_weights_find_the_osm_buildings(default_model, tmp_path):
    from footprint_plugin.core.output import write_geopackage

    result = run(default_model)
    output = tmp_path / "sample.gpkg"
    write_geopackage(output, result.buildings, result.crs_wkt)
    truth, pred, _ = read_vector_pair(str(SAMPLE_LABELS), str(output))
    scores = evaluate(truth, pred, 0.5, 20.0)
    assert scores["tp"] + scores["fn"] >= 40  # the OSM buildings of the sample, clipped or not
    assert scores["f1"] >= F1_FLOOR, scores
    assert all(5.0 <= b.area_m2 < 2000 for b in result.buildings)


F1_FLOOR = 0.5  # the default weights reach 0.63 on this raster (a test raster, never trained on)
