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


def test_column_blocks_change_nothing_on_real_imagery(default_model):
    # Zanzibar c1 in blocks of ~512 columns (four blocks) against one whole-width run: the blend
    # gives each block's own columns the same probabilities, so the same buildings come out.
    whole = run(default_model, ZANZIBAR)
    blocked = run(default_model, ZANZIBAR, block_width=512, block_halo=192)
    assert blocked.grid.width >= 3 * 512
    key = lambda b: tuple(round(v, 2) for v in b.geometry.bounds)  # noqa: E731
    assert sorted(map(key, whole.buildings)) == sorted(map(key, blocked.buildings))
    a = unary_union([b.geometry for b in whole.buildings])
    b = unary_union([b.geometry for b in blocked.buildings])
    assert a.symmetric_difference(b).area <= 1e-6 * a.area


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
