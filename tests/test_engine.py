"""Exact tests of the engine: tiling, blending, strips, vectorisation, masks, resolution."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.transform import Affine
from shapely.geometry import box
from shapely.ops import unary_union

from footprint_plugin.core.area import Area
from footprint_plugin.core.blocks import plan_blocks
from footprint_plugin.core.buildings import VectorizeOptions
from footprint_plugin.core.errors import CancelledError, FootprintError
from footprint_plugin.core.extract import extract_buildings
from footprint_plugin.core.geo import ground_resolution_m, model_grid
from footprint_plugin.core.inference import owned_spans
from footprint_plugin.core.instances import class_maps, label_instances
from footprint_plugin.core.outlines import orthogonalize
from footprint_plugin.core.parameters import ExtractionParameters
from footprint_plugin.core.readers import RasterioReader, resolve_band_mapping
from footprint_plugin.core.tiling import TilingOptions, tile_starts
from footprint_plugin.core.vectorize import StripVectorizer

from .helpers import MERCATOR_60N, ProbeModel, paint, probe_card, write_raster

UTM = Affine(0.3, 0, 500000, 0, -0.3, 6000000)
BOXES = [(10, 10, 40, 50), (10, 50, 40, 80), (70, 20, 150, 60), (100, 100, 130, 190), (160, 5, 175, 25)]


def probe_extract(path, tile=64, overlap=16, regularize="none", min_area=0.5, extent=None, block_size=8192,
                  block_halo=384, edge_margin=16, **kwargs):
    tiling = TilingOptions(tile, overlap, 3, block_size=block_size, block_halo=block_halo, edge_margin=edge_margin)
    parameters = ExtractionParameters(tiling=tiling, regularize=regularize, min_area_m2=min_area, device="cpu")
    with RasterioReader(path) as reader:
        return extract_buildings(reader, parameters, model=(ProbeModel(), probe_card(tile), "probe"),
                                 area=Area(extent=extent), **kwargs)


def test_tile_grid_covers_every_pixel_and_ends_at_the_edge():
    assert tile_starts(100, 64, 48) == [0, 36]
    assert tile_starts(50, 64, 48) == [0]
    starts = tile_starts(1000, 256, 192)
    assert starts[0] == 0 and starts[-1] == 1000 - 256
    assert all(b - a <= 192 for a, b in zip(starts, starts[1:]))
    # Overlap 32: each tile gives its pixels 16 px or more from its edges; the outer tiles reach the ends.
    assert owned_spans([0, 32, 64], 64, 128) == [(0, 48), (48, 80), (80, 128)]
    assert owned_spans([0, 32], 32, 64) == [(0, 32), (32, 64)]  # no overlap: every tile gives all its pixels
    assert owned_spans([0, 31], 64, 95) == [(0, 47), (47, 95)]  # odd overlap: the nearer centre, one side
    assert owned_spans([0], 64, 50) == [(0, 50)]


def test_reflected_margin_and_fitted_tiles():
    from footprint_plugin.core.tiling import fit_tile, reflect_indices

    assert reflect_indices(-3, 8, 5).tolist() == [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]  # like numpy.pad reflect
    assert reflect_indices(-2, 3, 1).tolist() == [0] * 5
    assert fit_tile(512, 230, 32) == 256 and fit_tile(256, 1000, 32) == 256 and fit_tile(512, 512, 32) == 512


def test_tiles_lie_on_one_lattice_whatever_the_tile_size():
    from footprint_plugin.core.tiling import ResolvedTiling, padded_grid

    for width, height in ((2049, 1537), (1024, 512), (300, 90)):
        for tile in (256, 512, 1024):
            tiling = ResolvedTiling(tile, 192, 1, 96)
            padded = padded_grid(width, height, tiling, 16)
            for length, side, stride in ((padded.width, padded.tile_width, padded.stride_x),
                                         (padded.height, padded.tile_height, padded.stride_y)):
                assert side % 16 == 0 and side <= tile and stride == side - 192
                starts = tile_starts(length, side, stride)
                # Every start is a multiple of the stride (so of 16: the pooling phase is the same for
                # every tile size) and the last tile ends exactly at the padded edge.
                assert all(start % stride == 0 for start in starts) and starts[-1] + side == length
                assert length - (width if length == padded.width else height) - 2 * 96 < 16 * len(starts)
            assert padded.width >= width + 2 * 96 and padded.height >= height + 2 * 96
    small = padded_grid(300, 90, ResolvedTiling(1024, 192, 1, 96), 16)
    assert (small.width, small.height) == (small.tile_width, small.tile_height) == (496, 288)  # one tile
    # A raster a little over one tile gets two smaller tiles, not two of 1024 px.
    just_over = padded_grid(1024, 1024, ResolvedTiling(1024, 192, 1, 96), 16)
    assert (just_over.width, just_over.tile_width) == (1216, 704)


def test_the_model_cards_context_sets_the_overlap_and_the_edge_margin():
    from footprint_plugin.core.inference import plan_inference
    from footprint_plugin.core.tiling import TilingOptions, resolve_tiling

    grid = model_grid("EPSG:32633", UTM, 500, 300, 0.3)
    for context, tile, overlap, margin in ((96, 768, 192, 96), (32, 256, 64, 32), (160, 768, 320, 160),
                                           (160, 256, 192, 160)):  # the overlap stays within 3/4 of the tile
        card = probe_card(64)
        card.context_px = context
        resolved = resolve_tiling(TilingOptions(tile_size=tile), card, "cpu")
        assert (resolved.overlap, resolved.margin) == (overlap, margin)
        padded = plan_inference(None, grid, [1, 2, 3], TilingOptions(tile_size=tile), card, "cpu").padded
        assert padded.margin == margin and padded.width >= 500 + 2 * margin
    explicit = resolve_tiling(TilingOptions(tile_size=256, overlap=16, edge_margin=8), card, "cpu")
    assert (explicit.overlap, explicit.margin) == (16, 8)
    card.context_px = -1
    with pytest.raises(ValueError, match="context_px"):
        card.validate()


def test_read_reflected_mirrors_the_edge_and_marks_only_the_raster_valid(tmp_path):
    from footprint_plugin.core.inference import read_reflected

    image = np.arange(3 * 20 * 30, dtype=np.uint16).reshape(3, 20, 30) % 251
    path = write_raster(tmp_path / "small.tif", image.astype(np.uint8), transform=UTM)
    with RasterioReader(path) as reader:
        grid = model_grid(reader.crs_wkt, reader.transform, 30, 20, 0.3)
        data, valid = read_reflected(reader, grid, [1, 2, 3], 4, (0, 0, 40, 32))
    expected = np.pad(image.astype(np.uint8), [(0, 0), (4, 8), (4, 6)], mode="reflect")
    np.testing.assert_array_equal(data, expected)
    assert valid[4:24, 4:34].all() and valid.sum() == 20 * 30


def test_painted_buildings_come_back_exactly_with_area_and_crs(tmp_path):
    path = write_raster(tmp_path / "painted.tif", paint(200, 200, BOXES), transform=UTM)
    result = probe_extract(path)
    assert result.device == "cpu"
    assert len(result.buildings) == len(BOXES)
    found = sorted(result.buildings, key=lambda b: (-b.geometry.bounds[3], b.geometry.bounds[0]))
    expected = sorted((box(500000 + c0 * 0.3, 6000000 - r1 * 0.3, 500000 + c1 * 0.3, 6000000 - r0 * 0.3)
                       for r0, c0, r1, c1 in BOXES), key=lambda g: (-g.bounds[3], g.bounds[0]))
    for building, truth in zip(found, expected):
        iou = building.geometry.intersection(truth).area / building.geometry.union(truth).area
        assert iou > 0.999
        assert building.area_m2 == pytest.approx(truth.area, rel=1e-3)
        assert 0.99 < building.score <= 1.0
    assert "UTM zone 33N" in result.crs_wkt


def test_touching_buildings_split_by_their_border(tmp_path):
    # Boxes 0 and 1 share an edge: one building mask, two interiors.
    path = write_raster(tmp_path / "touching.tif", paint(60, 100, BOXES[:2]), transform=UTM)
    result = probe_extract(path)
    assert len(result.buildings) == 2
    left, right = sorted(result.buildings, key=lambda b: b.geometry.bounds[0])
    assert left.geometry.intersection(right.geometry).area == pytest.approx(0, abs=1e-6)
    assert left.area_m2 == pytest.approx(30 * 40 * 0.09, rel=0.05)
    assert right.area_m2 == pytest.approx(30 * 30 * 0.09, rel=0.05)


@pytest.mark.parametrize("tile,overlap", [(32, 8), (64, 0), (64, 32), (128, 16)])
def test_result_does_not_depend_on_tiles(tmp_path, tile, overlap):
    path = write_raster(tmp_path / "painted.tif", paint(200, 200, BOXES), transform=UTM)
    reference = unary_union([b.geometry for b in probe_extract(path, 256, 0).buildings])
    result = probe_extract(path, tile, overlap)
    union = unary_union([b.geometry for b in result.buildings])
    assert len(result.buildings) == len(BOXES)
    assert union.symmetric_difference(reference).area < 1e-6


def test_building_across_strip_boundaries_is_one_polygon():
    # A tall building, fed in strips of 7 rows: it must come out once, whole.
    rows, cols = 120, 40
    building = np.zeros((rows, cols), np.float32)
    interior = np.zeros((rows, cols), np.float32)
    building[5:110, 5:30] = 1
    interior[7:108, 7:28] = 1
    building[50:60, 32:38] = 1  # a small second building beside it, inside one strip
    interior[52:58, 33:37] = 1
    options = VectorizeOptions(regularize="none", min_area_m2=0)
    whole = StripVectorizer(Affine.identity(), 1.0, cols, options).add(0, building, interior, True)
    stripped = StripVectorizer(Affine.identity(), 1.0, cols, options)
    pieces = []
    for start in range(0, rows, 7):
        pieces += stripped.add(start, building[start : start + 7], interior[start : start + 7], start + 7 >= rows)
    assert len(whole) == len(pieces) == 2
    for a, b in zip(sorted(whole, key=lambda x: x.area_m2), sorted(pieces, key=lambda x: x.area_m2)):
        assert a.geometry.equals(b.geometry)
    assert max(p.area_m2 for p in pieces) == pytest.approx(105 * 25)


def test_instances_grow_from_interior_seeds():
    building = np.zeros((20, 30), np.float32)
    interior = np.zeros((20, 30), np.float32)
    building[2:18, 2:28] = 1
    interior[4:16, 4:13] = 1
    interior[4:16, 17:26] = 1
    options = VectorizeOptions()
    instances, regions, boxes = label_instances(class_maps(building, interior, options), options)
    assert len(boxes) == 1
    assert regions.max() == 1
    assert len(np.unique(instances)) == 3
    assert (instances[2:18, 2:28] > 0).all() and (instances[:2] == 0).all()


def test_instances_fill_one_seed_regions_nearest_seeds_and_seedless_regions():
    from footprint_plugin.core.instances import ClassMaps

    building = np.zeros((40, 60), bool)
    seeds = np.zeros((40, 60), bool)
    building[2:38, 2:14] = True  # a region with one seed in a corner, far (> 3 rings) from most of it
    seeds[3:6, 3:6] = True
    building[2:12, 20:58] = True  # a region with two seeds at its ends: each pixel goes to the nearer
    seeds[4:8, 21:25] = True
    seeds[4:8, 53:57] = True
    building[20:24, 20:24] = True  # two regions without seeds: one building each, numbered in raster order
    building[30:34, 40:44] = True
    options = VectorizeOptions(min_seed_px=4)
    instances, regions, boxes = label_instances(ClassMaps(building, seeds, building.astype(np.uint8)), options)
    assert len(boxes) == 4
    assert (instances[building] > 0).all() and (instances[~building] == 0).all()
    assert len(np.unique(instances[2:38, 2:14])) == 1
    left, right = instances[6, 22], instances[6, 55]
    assert left != right
    assert (instances[2:12, 20:38] == left).all() and (instances[2:12, 40:58] == right).all()
    assert instances[22, 22] == 4 and instances[32, 42] == 5  # after the three seeds
    assert len(np.unique(instances)) == 6


def test_nodata_gives_no_buildings(tmp_path):
    # For the probe model a black pixel is 2/3 building: unmasked, the black block would be a building.
    image = paint(100, 100, [(10, 10, 40, 40)])
    image[:, 50:, 50:] = 0
    unmasked = probe_extract(write_raster(tmp_path / "plain.tif", image, transform=UTM))
    assert len(unmasked.buildings) == 2
    result = probe_extract(write_raster(tmp_path / "nodata.tif", image, transform=UTM, nodata=0))
    assert len(result.buildings) == 1
    assert result.buildings[0].geometry.bounds[2] < 500000 + 50 * 0.3


def test_alpha_band_masks_buildings(tmp_path):
    from rasterio.enums import ColorInterp

    image = paint(100, 100, [(10, 10, 40, 40), (60, 60, 90, 90)])
    alpha = np.full((1, 100, 100), 255, np.uint8)
    alpha[:, 50:, :] = 0
    path = write_raster(tmp_path / "alpha.tif", np.concatenate([image, alpha]), transform=UTM,
                        colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha])
    with RasterioReader(path) as reader:
        assert resolve_band_mapping(reader, ["red", "green", "blue"]) == [1, 2, 3]
    assert len(probe_extract(path).buildings) == 1


def test_sixteen_bit_input_is_scaled_by_its_bit_depth(tmp_path):
    image = (paint(100, 100, [(10, 10, 40, 40)]).astype(np.uint16) * 2047 // 255).astype(np.uint16)
    path = write_raster(tmp_path / "u16.tif", image, transform=UTM)
    result = probe_extract(path)
    assert len(result.buildings) == 1
    assert result.buildings[0].area_m2 == pytest.approx(900 * 0.09, rel=0.01)


def test_ground_resolution_in_web_mercator_and_degrees():
    # 0.6 Web-Mercator units at 60 degrees north are 0.3 m on the ground.
    res_x, res_y = ground_resolution_m("EPSG:3857", MERCATOR_60N, 100, 100)
    assert res_x == pytest.approx(0.3, rel=0.01) and res_y == pytest.approx(0.3, rel=0.01)
    # 1e-5 degrees of latitude is about 1.11 m; of longitude at 45 degrees about 0.79 m.
    res_x, res_y = ground_resolution_m("EPSG:4326", Affine(1e-5, 0, 10, 0, -1e-5, 45), 10, 10)
    assert res_x == pytest.approx(0.787, rel=0.01) and res_y == pytest.approx(1.112, rel=0.01)
    res_x, _ = ground_resolution_m("EPSG:32633", UTM, 100, 100)
    assert res_x == pytest.approx(0.3, rel=0.01)


def test_web_mercator_raster_is_not_resampled_at_the_models_ground_resolution(tmp_path):
    path = write_raster(tmp_path / "merc.tif", paint(120, 120, [(10, 10, 60, 60)]), crs="EPSG:3857",
                        transform=MERCATOR_60N)
    result = probe_extract(path)
    assert (result.grid.width, result.grid.height) == (120, 120) and not result.grid.resampled
    assert result.buildings[0].area_m2 == pytest.approx(50 * 50 * 0.09, rel=0.02)
    # The same pixels read as 0.6 m on the ground (e.g. at the equator) are upsampled 2x.
    grid = model_grid("EPSG:32633", Affine(0.6, 0, 500000, 0, -0.6, 6000000), 120, 120, 0.3)
    assert (grid.width, grid.height) == (240, 240) and grid.resampled


def test_resampled_raster_keeps_geometry_in_the_raster_crs(tmp_path):
    # 0.15 m pixels: the engine works at 0.3 m, the polygons stay where the building is.
    transform = Affine(0.15, 0, 500000, 0, -0.15, 6000000)
    path = write_raster(tmp_path / "fine.tif", paint(200, 200, [(20, 20, 120, 100)], border=4), transform=transform)
    result = probe_extract(path)
    assert (result.grid.width, result.grid.height) == (100, 100)
    truth = box(500000 + 20 * 0.15, 6000000 - 120 * 0.15, 500000 + 100 * 0.15, 6000000 - 20 * 0.15)
    (building,) = result.buildings
    assert building.geometry.intersection(truth).area / building.geometry.union(truth).area > 0.95
    assert building.area_m2 == pytest.approx(truth.area, rel=0.05)


def test_extent_restricts_the_area_and_outside_extent_is_an_error(tmp_path):
    path = write_raster(tmp_path / "painted.tif", paint(200, 200, BOXES), transform=UTM)
    left_half = (500000, 6000000 - 60, 500000 + 30, 6000000)  # columns 0-99
    result = probe_extract(path, extent=left_half)
    assert len(result.buildings) == 4  # the box reaching column 190 is cut, not dropped
    assert all(b.geometry.bounds[2] <= 500000 + 30 + 1e-6 for b in result.buildings)
    with pytest.raises(FootprintError, match="does not overlap"):
        probe_extract(path, extent=(0, 0, 10, 10))


def test_min_area_filter_and_regularisation(tmp_path):
    path = write_raster(tmp_path / "painted.tif", paint(200, 200, BOXES), transform=UTM)
    small = 15 * 20 * 0.09  # the smallest box, 27 m2
    assert len(probe_extract(path, min_area=small + 1).buildings) == len(BOXES) - 1
    for mode in ("simplify", "orthogonal"):
        result = probe_extract(path, regularize=mode)
        assert len(result.buildings) == len(BOXES)
        for building in result.buildings:
            assert building.geometry.is_valid
            assert len(building.geometry.exterior.coords) == 5  # rectangles stay 4 corners


def test_orthogonalize_squares_a_noisy_rotated_rectangle():
    from shapely import affinity
    from shapely.geometry import Polygon

    noisy = Polygon([(0, 0), (10, 0.3), (20, 0), (20.2, 10), (10, 10.2), (0, 10), (0.1, 5)])
    rotated = affinity.rotate(noisy, 30, origin=(0, 0))
    square = orthogonalize(rotated)
    coords = np.array(square.exterior.coords)[:-1]
    edges = np.diff(np.vstack([coords, coords[:1]]), axis=0)
    for a, b in zip(edges, np.roll(edges, -1, axis=0)):
        assert abs(np.dot(a, b)) < 1e-6 * np.linalg.norm(a) * np.linalg.norm(b) + 1e-9
    assert square.area == pytest.approx(rotated.area, rel=0.05)


def test_orthogonalize_keeps_an_l_and_leaves_a_blob_alone():
    import math

    from shapely import affinity
    from shapely.geometry import Polygon

    from footprint_plugin.core.outlines import dominant_direction

    # A pixel-mask L (grid px) rotated by 20 degrees, with 0.3 px of wobble on its walls.
    ell = Polygon([(0, 0), (40, 0.3), (40, 15), (15.2, 15), (15, 30), (0.3, 30)])
    rotated = affinity.rotate(ell, 20, origin=(0, 0))
    assert dominant_direction(rotated.exterior.coords) == pytest.approx(20, abs=1.0)
    out = orthogonalize(rotated)
    assert len(out.exterior.coords) == 7  # six corners, all right angles
    assert out.intersection(rotated).area / out.union(rotated).area > 0.97
    # The direction moves little when the outline changes a little (no jump between orientations).
    nudged = affinity.rotate(Polygon([(0, 0), (40, 0), (40, 15), (15, 15.6), (15, 30), (0, 30)]), 20, origin=(0, 0))
    assert abs(dominant_direction(nudged.exterior.coords) - dominant_direction(rotated.exterior.coords)) < 1.5
    # A round blob is no building: squaring it would move too much of its outline, so it stays.
    blob = Polygon([(10 * math.cos(t), 10 * math.sin(t)) for t in (2 * math.pi * i / 40 for i in range(40))])
    assert orthogonalize(blob).equals(blob)


def test_progress_and_cancel(tmp_path):
    path = write_raster(tmp_path / "painted.tif", paint(200, 200, BOXES), transform=UTM)
    seen = []
    probe_extract(path, progress=lambda fraction, message: seen.append(fraction))
    assert seen[-1] == 1.0 and seen == sorted(seen) and len(seen) > 3
    calls = []

    def cancel_after_two() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(CancelledError):
        probe_extract(path, cancel=cancel_after_two)


def test_band_mapping_rules(tmp_path):
    gray = write_raster(tmp_path / "gray.tif", np.zeros((1, 10, 10), np.uint8), transform=UTM)
    eight = write_raster(tmp_path / "eight.tif", np.zeros((8, 10, 10), np.uint16), transform=UTM)
    two = write_raster(tmp_path / "two.tif", np.zeros((2, 10, 10), np.uint8), transform=UTM)
    rgb = ["red", "green", "blue"]
    with RasterioReader(gray) as reader:
        assert resolve_band_mapping(reader, rgb) == [1, 1, 1]
    with RasterioReader(eight) as reader:
        assert resolve_band_mapping(reader, rgb) == [5, 3, 2]
        assert resolve_band_mapping(reader, rgb, [1, 2, 3]) == [1, 2, 3]
        with pytest.raises(FootprintError, match="has 8 band"):
            resolve_band_mapping(reader, rgb, [1, 2, 9])
    with RasterioReader(two) as reader, pytest.raises(FootprintError, match="2 band"):
        resolve_band_mapping(reader, rgb)
    with RasterioReader(eight) as reader:
        assert resolve_band_mapping(reader, [f"band{i}" for i in range(1, 9)]) == list(range(1, 9))


def test_onnxruntime_and_torch_backends_agree(tmp_path):
    pytest.importorskip("onnxruntime")
    import torch

    from footprint_plugin.core.model import UNet, UNetConfig
    from footprint_plugin.core.predictor import Predictor
    from footprint_plugin.core.weights import ModelCard

    torch.manual_seed(0)
    model = UNet(UNetConfig(base_filters=4, depth=3))
    for module in model.modules():  # BatchNorm statistics as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.3, 0.3)
            module.running_var.uniform_(0.5, 2.0)
    card = ModelCard(model_args=model.config.to_dict(), tile_size=64)
    batch = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    fast = Predictor(model, card, "cpu", backend="onnxruntime")
    plain = Predictor(model, card, "cpu", backend="auto")
    assert fast.backend == "onnxruntime" and plain.backend == "torch"
    with torch.inference_mode():
        reference = torch.softmax(model.eval()(torch.from_numpy(batch)), 1).numpy()
    np.testing.assert_allclose(fast.probabilities(batch), reference, atol=1e-4)
    np.testing.assert_allclose(plain.probabilities(batch), reference, atol=1e-4)
    flipped = plain.probabilities(batch, flip_tta=True)
    np.testing.assert_allclose(fast.probabilities(batch, flip_tta=True), flipped, atol=1e-4)


def test_endless_building_region_is_cut_to_bound_memory():
    # Everything is "building" (e.g. a model that sees roofs everywhere): memory must stay bounded.
    rows, cols = 3000, 64
    building = np.ones((rows, cols), np.float32)
    interior = np.ones((rows, cols), np.float32)
    warnings = []
    options = VectorizeOptions(regularize="none", min_area_m2=0, max_buffer_rows=1024)
    vectorizer = StripVectorizer(Affine.identity(), 1.0, cols, options, warn=warnings.append)
    found, held = [], []
    for start in range(0, rows, 100):
        found += vectorizer.add(start, building[start : start + 100], interior[start : start + 100], start + 100 >= rows)
        held.append(vectorizer.buffered_rows)
    assert max(held) <= 1024 + 100
    assert len(warnings) == 1 and "cut" in warnings[0]
    assert sum(b.area_m2 for b in found) == pytest.approx(rows * cols, rel=0.01)


@pytest.mark.parametrize("height,width,size,halo", [(20480, 20480, 8192, 384), (600, 200, 96, 48),
                                                    (1000, 30000, 300, 64), (10240, 10241, 8192, 384)])
def test_blocks_partition_the_grid(height, width, size, halo):
    plan = plan_blocks(height, width, size, halo)
    assert len(plan) > 1
    owned = np.zeros((height, width), np.uint8)
    for block in plan.blocks:
        top, bottom, left, right = block.own
        owned[top:bottom, left:right] += 1
        assert bottom - top <= 1.25 * size and right - left <= 1.25 * size  # memory follows the block
        assert block.window == (max(0, top - halo), min(height, bottom + halo), max(0, left - halo),
                                min(width, right + halo))
        rule = plan.rule(block)
        assert (rule.cut_top, rule.cut_left) == (top > 0, left > 0)
        assert (rule.cut_bottom, rule.cut_right) == (bottom < height, right < width)
    assert (owned == 1).all()  # own squares: a partition, no gaps, no overlap
    assert len(plan_blocks(10240, 10240, 8192, 384)) == 1  # up to 1.25 x the size: one block
    assert plan_blocks(10240, 10240, 8192, 384).rule(plan_blocks(10240, 10240, 8192, 384).blocks[0]) is None


def test_blocks_give_the_buildings_of_one_run(tmp_path):
    # Buildings up to 45 px on, beside and across the block boundaries (blocks of ~96 px with a 48 px halo, tile 64,
    # stride 48), in both directions: the same buildings as one run over the whole raster, bit for bit.
    boxes = [(10, 80, 40, 110), (10, 110, 40, 140), (50, 185, 90, 200), (50, 200, 90, 230), (100, 5, 140, 45),
             (100, 280, 130, 300), (130, 380, 170, 400), (20, 470, 60, 510), (140, 560, 180, 598), (60, 300, 80, 310),
             (180, 90, 225, 130), (285, 270, 299, 310), (200, 150, 240, 190)]
    path = write_raster(tmp_path / "wide.tif", paint(300, 600, boxes), transform=UTM)
    whole = probe_extract(path)
    warnings = []
    blocked = probe_extract(path, block_size=96, block_halo=48, warn=warnings.append)
    assert len(whole.buildings) == len(boxes)
    assert sorted(b.wkb for b in whole.buildings) == sorted(b.wkb for b in blocked.buildings)
    assert not warnings


def test_building_larger_than_the_halo_comes_out_in_pieces_each_pixel_once(tmp_path):
    long_building = [(80, 20, 110, 560)]  # 540 columns: crosses five block boundaries, ten times the halo
    path = write_raster(tmp_path / "long.tif", paint(200, 600, long_building), transform=UTM)
    whole = probe_extract(path)
    warnings = []
    blocked = probe_extract(path, block_size=96, block_halo=48, warn=warnings.append)
    assert len(whole.buildings) == 1 and len(blocked.buildings) > 1
    pieces = unary_union([b.geometry for b in blocked.buildings])
    assert pieces.symmetric_difference(whole.buildings[0].geometry).area < 1e-6  # every pixel, once
    assert sum(b.geometry.area for b in blocked.buildings) == pytest.approx(whole.buildings[0].geometry.area)
    assert len(warnings) == 1 and "--block-halo" in warnings[0]  # once a run, not once a block


def vectorize_in_blocks(probability: np.ndarray, size: int, halo: int):
    """Exact global probabilities fed through the block loop's vectorisers, window by window."""
    height, width = probability.shape
    options = VectorizeOptions(min_area_m2=0, regularize="none", min_seed_px=1)
    found = []
    plan = plan_blocks(height, width, size, halo)
    for block in plan.blocks:
        top, bottom, left, right = block.window
        vectorizer = StripVectorizer(Affine.identity(), 1.0, right - left, options, rule=plan.rule(block), column=left,
                                     row=top)
        window = probability[top:bottom, left:right]
        for row in range(0, bottom - top, 16):
            part = window[row : row + 16]
            found += vectorizer.add(top + row, part, part, row + 16 >= bottom - top)
        vectorizer.close()
    return plan, found


def _shapes_across_block_edges():
    plan = plan_blocks(80, 600, 96, 48)
    own_end = int(plan.column_bounds[1])
    emit_end = own_end + 48
    box_on_edge = np.zeros((80, 600), np.float32)
    box_on_edge[10:30, own_end - 10 : own_end + 10] = 0.9
    u_open_left = np.zeros((80, 600), np.float32)  # its lower arm starts right of block 0's own columns
    u_open_left[5:15, own_end - 30 : emit_end + 20] = 0.9
    u_open_left[5:65, emit_end + 10 : emit_end + 20] = 0.9
    u_open_left[55:65, own_end + 10 : emit_end + 20] = 0.9
    c_open_right = np.zeros((80, 600), np.float32)  # both arms cross block 0's window
    c_open_right[5:15, own_end - 30 : emit_end + 30] = 0.9
    c_open_right[5:65, own_end - 30 : own_end - 20] = 0.9
    c_open_right[55:65, own_end - 30 : emit_end + 30] = 0.9
    return {"box on a block edge": box_on_edge, "U open to the left": u_open_left, "C open to the right": c_open_right}


@pytest.mark.parametrize("name", list(_shapes_across_block_edges()))
def test_blocks_emit_every_building_pixel_exactly_once(name):
    probability = _shapes_across_block_edges()[name]
    plan, found = vectorize_in_blocks(probability, 96, 48)
    assert len(plan) > 3
    total = sum(b.geometry.area for b in found)
    union = unary_union([b.geometry for b in found])
    assert total == pytest.approx(float((probability > 0.5).sum()))  # nothing lost ...
    assert union.area == pytest.approx(total)  # ... nothing twice
    if name == "box on a block edge":
        assert len(found) == 1  # a building across a block boundary stays one polygon


@pytest.mark.parametrize("instances", ["three_class", "binary"])
def test_predictor_thresholds_tiles_as_the_vectoriser_would(instances):
    # The maps the model's side makes (Predictor.class_maps) are those vectorize.class_maps makes from
    # the same probabilities: the pipeline and the probability-array entry point agree pixel for pixel.
    import torch

    from footprint_plugin.core.model import UNet, UNetConfig
    from footprint_plugin.core.predictor import Predictor
    from footprint_plugin.core.weights import ModelCard

    torch.manual_seed(1)
    model = UNet(UNetConfig(base_filters=4, depth=3))
    predictor = Predictor(model, ModelCard(model_args=model.config.to_dict(), tile_size=64), "cpu")
    batch = np.random.default_rng(1).normal(size=(2, 3, 64, 64)).astype(np.float32)
    probs = predictor.probabilities(batch)
    # Thresholds at the medians (an untrained network's probabilities sit in a narrow band).
    options = VectorizeOptions(mask_threshold=float(np.median(1.0 - probs[:, 0])),
                               seed_threshold=float(np.median(probs[:, 1])), instances=instances)
    building, seeds, probability = predictor.class_maps(batch, options)
    assert building.dtype == seeds.dtype == bool and probability.dtype == np.uint8
    assert 0 < building.mean() < 1, "the thresholds must cut somewhere for the test to mean anything"
    for tile in range(2):
        expected = class_maps(1.0 - probs[tile, 0], probs[tile, 1], options)
        np.testing.assert_array_equal(building[tile], expected.building)
        np.testing.assert_array_equal(seeds[tile], expected.seeds)
        np.testing.assert_array_equal(probability[tile], expected.probability)
    assert (seeds <= building).all()
    assert instances != "binary" or (seeds == building).all()
