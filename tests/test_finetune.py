"""`trainer finetune`: chips from corrected buildings, the area mask, the card it writes, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import ogr, osr
from rasterio.transform import Affine

from footprint_plugin.core.weights import ModelCard, load_weights
from trainer.cli import main
from trainer.finetune import IGNORE, FinetuneRequest, prepare_chips

from .helpers import tiny_unet_weights, write_raster
from .test_trainer import _generic_dataset


def _polygon_layer(path, rings_4326, epsg: int | None = 4326):
    srs = None
    if epsg:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    driver = "ESRI Shapefile" if str(path).endswith(".shp") else "GPKG"  # a shapefile without .prj has no CRS
    dataset = ogr.GetDriverByName(driver).CreateDataSource(str(path))
    layer = dataset.CreateLayer("area", srs, ogr.wkbPolygon)
    for ring in rings_4326:
        feature = ogr.Feature(layer.GetLayerDefn())
        wkt = "POLYGON((" + ",".join(f"{x} {y}" for x, y in ring) + "))"
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feature)
    dataset = None
    return path


def _utm_box_4326(x0, y0, x1, y1):
    """A rectangle given in EPSG:32637 metres, as a ring of EPSG:4326 coordinates."""
    utm, wgs = osr.SpatialReference(), osr.SpatialReference()
    utm.ImportFromEPSG(32637)
    wgs.ImportFromEPSG(4326)
    wgs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    to_wgs = osr.CoordinateTransformation(utm, wgs)
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
    return [to_wgs.TransformPoint(x, y)[:2] for x, y in corners]


def test_finetune_writes_a_card_naming_the_base_model_and_the_data(tmp_path, capsys):
    rasters, labels = _generic_dataset(tmp_path)
    base = tiny_unet_weights(tmp_path / "base.safetensors")
    output = tmp_path / "tuned.safetensors"
    assert main(["finetune", "--raster", *map(str, rasters), "--buildings", str(labels), "--weights", str(base),
                 "--minutes", "0.05", "--batch-size", "2", "--output", str(output), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "F1 on your held-out area:" in printed and f"weights saved to {output}" in printed
    model, card = load_weights(output)
    assert card.name == "tiny-0-finetuned" and card.training_data["base_model"] == "tiny-0"
    tuned = card.training_data["finetune"]
    assert tuned["buildings"] == 30 and tuned["rasters"] == [r.name for r in rasters]
    assert tuned["train_chips"] + tuned["val_chips"] == 5 and tuned["val_chips"] >= 1 and tuned["steps"] >= 1
    assert tuned["area_m2"] > 5 * (128 * 0.3) ** 2 * 0.9  # the buffered extent covers all five scenes
    finetune_metrics = card.metrics["finetune"]
    assert finetune_metrics["val_f1_after"] >= finetune_metrics["val_f1_before"]
    assert finetune_metrics["history"][0]["minutes"] == 0.0
    assert card.model_args == ModelCard(model_args=card.model_args).model_args


def test_pixels_outside_the_area_are_ignored(tmp_path):
    rasters, labels = _generic_dataset(tmp_path)
    # The area: the left half of scenes 0-2 (each scene is 38.4 m wide and 1 km apart).
    rings = [_utm_box_4326(300000 + n * 1000, 9800000 - 38.4, 300000 + n * 1000 + 19.2, 9800000) for n in range(3)]
    area = _polygon_layer(tmp_path / "area.gpkg", rings)
    base = tiny_unet_weights(tmp_path / "base.safetensors")
    request = FinetuneRequest(rasters=[str(r) for r in rasters[:3]], buildings=str(labels), output="unused",
                              area=str(area), weights=str(base), min_buildings=1)
    _, card = load_weights(base)
    folder = tmp_path / "chips"
    folder.mkdir()
    chips = prepare_chips(request, card, folder)
    assert len(chips.train) + len(chips.val) == 3 and 1 <= chips.buildings <= 18
    assert chips.scale == 255.0  # 8-bit rasters, as extraction reads them
    for path in chips.train + chips.val:
        mask = np.load(path)["mask"]
        assert (mask[:, 70:] == IGNORE).all()  # right half: outside the area
        assert (mask[:, :60] != IGNORE).all()  # left half: labelled, background or building
    assert chips.area_m2 == pytest.approx(3 * 19.2 * 38.4, rel=0.05)


def test_bad_input_is_one_line(tmp_path, capsys):
    rasters, labels = _generic_dataset(tmp_path)
    base = tiny_unet_weights(tmp_path / "base.safetensors")
    common = ["--weights", str(base), "--minutes", "0.01", "--output", str(tmp_path / "out.safetensors")]
    far = _polygon_layer(tmp_path / "far.gpkg", [[(10, 10), (10.01, 10), (10.01, 10.01), (10, 10.01), (10, 10)]])
    one_scene = _polygon_layer(tmp_path / "one.gpkg", [_utm_box_4326(300000, 9800000 - 38.4, 300038.4, 9800000)])
    elsewhere = write_raster(tmp_path / "elsewhere.tif", np.zeros((3, 64, 64), np.uint8), crs="EPSG:32637",
                             transform=Affine(0.3, 0, 500000, 0, -0.3, 9000000))
    no_crs = _polygon_layer(tmp_path / "nocrs.shp", [[(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)]], epsg=None)
    cases = [
        (["--raster", str(rasters[0]), "--buildings", str(labels), "--area", str(far)], "No buildings lie inside"),
        (["--raster", str(rasters[0]), "--buildings", str(labels), "--area", str(one_scene)],
         "Only 6 buildings lie inside the area; fine-tuning needs at least 20"),
        (["--raster", str(elsewhere), "--buildings", str(labels)],
         "No raster lies inside the area where the buildings are complete (elsewhere.tif); include them in --area"),
        (["--raster", str(rasters[0]), "--buildings", str(no_crs)], "has no CRS"),
        (["--raster", str(tmp_path / "missing.tif"), "--buildings", str(labels)], "file not found"),
    ]
    for argv, message in cases:
        assert main(["finetune", *argv, *common]) == 2, message
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out.safetensors").exists()


def test_cancel_before_any_gain_writes_nothing(tmp_path):
    from trainer.finetune import finetune

    rasters, labels = _generic_dataset(tmp_path)
    base = tiny_unet_weights(tmp_path / "base.safetensors")
    output = tmp_path / "tuned.safetensors"
    request = FinetuneRequest(rasters=[str(r) for r in rasters], buildings=str(labels), output=str(output),
                              weights=str(base), minutes=5, batch_size=2)
    result = finetune(request, cancelled=lambda: True)
    assert result.cancelled and result.output is None and not output.exists()
    assert "nothing was written" in result.message()


def test_unwritable_output_folder_fails_before_training(tmp_path, capsys):
    rasters, labels = _generic_dataset(tmp_path)
    assert main(["finetune", "--raster", str(rasters[0]), "--buildings", str(labels),
                 "--output", str(tmp_path / "missing" / "x.safetensors")]) == 2
    assert "is not a writable folder" in capsys.readouterr().err


# ----------------------------------------------------------------------------- empty rasters, skipped rasters, rounds


def _scene_rings(scenes):
    """The whole squares of the generic dataset's scenes (38.4 m each, 1 km apart), as EPSG:4326 rings."""
    return [_utm_box_4326(300000 + n * 1000, 9800000 - 38.4, 300000 + n * 1000 + 38.4, 9800000) for n in scenes]


def _labels_of(labels, path, scenes):
    """Another layer holding only the buildings of ``scenes``."""
    source = ogr.Open(str(labels))
    layer = source.GetLayer(0)
    target = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    subset = target.CreateLayer("buildings", layer.GetSpatialRef(), ogr.wkbPolygon)
    for ring in _scene_rings(scenes):
        xs, ys = zip(*ring)
        layer.SetSpatialFilterRect(min(xs), min(ys), max(xs), max(ys))
        for feature in layer:
            copy = ogr.Feature(subset.GetLayerDefn())
            copy.SetGeometry(feature.GetGeometryRef().Clone())
            subset.CreateFeature(copy)
    target = None
    return path


def _chip_masks(paths, stem):
    return [np.load(p)["mask"] for p in paths if f"_{stem}_" in p.name]


def test_a_raster_without_buildings_inside_the_area_is_ground_one_outside_is_skipped(tmp_path, capsys):
    rasters, labels = _generic_dataset(tmp_path)
    # Between scenes 2 and 3: inside the default area (the buildings' extent + 10 m), with no building on it.
    empty = write_raster(tmp_path / "empty.tif", np.full((3, 128, 128), 90, np.uint8), crs="EPSG:32637",
                         transform=Affine(0.3, 0, 302500, 0, -0.3, 9800000))
    elsewhere = write_raster(tmp_path / "elsewhere.tif", np.zeros((3, 64, 64), np.uint8), crs="EPSG:32637",
                             transform=Affine(0.3, 0, 500000, 0, -0.3, 9000000))
    base = tiny_unet_weights(tmp_path / "base.safetensors")
    everything = [*map(str, rasters), str(empty), str(elsewhere)]
    request = FinetuneRequest(rasters=everything, buildings=str(labels), output="unused", weights=str(base))
    warnings = []
    folder = tmp_path / "chips"
    folder.mkdir()
    chips = prepare_chips(request, load_weights(base)[1], folder, warnings.append)
    skipped = ("Skipped elsewhere.tif: outside the area where the buildings are complete; to use it as ground "
               "without buildings, include it in --area.")
    assert warnings == [skipped]
    assert [Path(r).name for r in chips.rasters] == [r.name for r in rasters] + ["empty.tif"]
    assert len(chips.train) + len(chips.val) == 6 and chips.buildings == 30
    [ground] = _chip_masks(chips.train, "empty")  # learnt from, never the held-out measure
    assert ground.shape == (128, 128) and (ground == 0).all()  # every pixel background: building-free ground

    output = tmp_path / "tuned.safetensors"
    assert main(["finetune", "--raster", *everything, "--buildings", str(labels), "--weights", str(base),
                 "--minutes", "0.05", "--batch-size", "2", "--output", str(output), "--threads", "1"]) == 0
    assert capsys.readouterr().err == f"warning: {skipped}\n"
    tuned = load_weights(output)[1].training_data["finetune"]
    assert tuned["rasters"] == [r.name for r in rasters] + ["empty.tif"]
    assert tuned["train_chips"] + tuned["val_chips"] == 6 and tuned["buildings"] == 30


def test_a_second_round_trains_on_the_first_rounds_buildings_and_the_card_records_both(tmp_path, capsys):
    rasters, labels = _generic_dataset(tmp_path)
    base = tiny_unet_weights(tmp_path / "base.safetensors")
    common = ["--minutes", "0.05", "--batch-size", "2", "--threads", "1"]
    first, second = tmp_path / "round1.safetensors", tmp_path / "round2.safetensors"
    first_area = _polygon_layer(tmp_path / "first.gpkg", _scene_rings(range(4)))
    assert main(["finetune", "--raster", *map(str, rasters[:4]), "--buildings", str(labels), "--area", str(first_area),
                 "--weights", str(base), "--output", str(first), *common]) == 0
    # Round 2 corrects scene 4 only: its 6 buildings alone are too few, with round 1's 24 they are 30.
    second_area = _polygon_layer(tmp_path / "second.gpkg", _scene_rings([4]))
    argv = ["finetune", "--raster", str(rasters[4]), "--buildings", str(labels), "--area", str(second_area),
            "--output", str(second), *common]
    assert main([*argv, "--weights", str(base)]) == 2
    assert "Only 6 buildings lie inside the area; fine-tuning needs at least 20" in capsys.readouterr().err
    assert main([*argv, "--weights", str(first)]) == 0
    assert "(round 2, with the earlier rounds' buildings)" in capsys.readouterr().out
    card = load_weights(second)[1]
    tuned = card.training_data["finetune"]
    assert tuned["round"] == 2 and tuned["buildings"] == 30 and tuned["rasters"] == [r.name for r in rasters]
    assert tuned["train_chips"] + tuned["val_chips"] == 5
    rounds = card.training_data["rounds"]
    assert [r["round"] for r in rounds] == [1, 2] and [r["buildings"] for r in rounds] == [24, 6]
    assert rounds[0]["rasters"] == [r.name for r in rasters[:4]] and rounds[1]["rasters"] == ["scene_4.tif"]
    assert [r["base_model"] for r in rounds] == ["tiny-0", "tiny-0-finetuned"]
    assert [r["base_weights"] for r in rounds] == ["base.safetensors", "round1.safetensors"]
    assert rounds[0]["area_m2"] == pytest.approx(4 * 38.4**2, rel=0.02)
    assert rounds[1]["area_m2"] == pytest.approx(38.4**2, rel=0.02)
    for entry in rounds:
        assert 0 <= entry["f1_before"] <= entry["f1_after"] <= 1 and entry["minutes"] == 0.05 and entry["steps"] >= 1
        assert len(entry["buildings_wkt"]) == entry["buildings"] and len(entry["area_wkt"]) == len(entry["rasters"])
    assert rounds[1]["f1_after"] == card.metrics["finetune"]["val_f1_after"]
    assert card.training_data["base_training_data"] == {} and card.metrics["base"] == {}  # the tiny model's, unnested

    # What round 2 trains on: every scene with its buildings, round 1's read back from round 1's card.
    folder = tmp_path / "chips"
    folder.mkdir()
    request = FinetuneRequest(rasters=[str(rasters[4])], buildings=str(labels), output="unused",
                              area=str(second_area))
    chips = prepare_chips(request, load_weights(first)[1], folder)
    for stem in (f"scene_{n}" for n in range(5)):
        [mask] = _chip_masks(chips.train + chips.val, stem)
        assert ((mask == 1) | (mask == 2)).any(), stem


def test_a_later_round_corrects_an_earlier_one_where_their_areas_overlap(tmp_path):
    rasters, labels = _generic_dataset(tmp_path)
    base = tiny_unet_weights(tmp_path / "base.safetensors")
    first = tmp_path / "round1.safetensors"
    first_area = _polygon_layer(tmp_path / "first.gpkg", _scene_rings(range(4)))
    assert main(["finetune", "--raster", *map(str, rasters[:4]), "--buildings", str(labels), "--area", str(first_area),
                 "--weights", str(base), "--minutes", "0.02", "--batch-size", "2", "--output", str(first)]) == 0
    # Round 2 says: scene 3 has no buildings after all (its area covers scenes 3 and 4; its layer only scene 4's).
    request = FinetuneRequest(rasters=[str(rasters[3]), str(rasters[4])], output="unused",
                              buildings=str(_labels_of(labels, tmp_path / "scene4.gpkg", [4])),
                              area=str(_polygon_layer(tmp_path / "second.gpkg", _scene_rings([3, 4]))))
    folder = tmp_path / "chips"
    folder.mkdir()
    rasters[0].rename(tmp_path / "moved.tif")  # and round 1's first raster has gone since
    warnings = []
    chips = prepare_chips(request, load_weights(first)[1], folder, warnings.append)
    assert warnings == [f"Skipped the rasters of earlier rounds that are no longer there ({rasters[0].resolve()}): "
                        "their corrections are left out; put the files back to include them."]
    assert chips.buildings == 18 + 6  # scenes 0-2 of round 1 (scene 0 counted, no longer trained), scene 4
    assert [r.number for r in chips.rounds] == [1, 2] and [r.counted() for r in chips.rounds] == [18, 6]
    [scene3] = _chip_masks(chips.train + chips.val, "scene_3")
    assert (scene3 == 0).all()  # round 2's word: ground without buildings
    assert not _chip_masks(chips.train + chips.val, "scene_0")


def test_weights_fine_tuned_before_rounds_were_kept_start_round_two_with_a_warning(tmp_path):
    rasters, labels = _generic_dataset(tmp_path)
    card = load_weights(tiny_unet_weights(tmp_path / "base.safetensors"))[1]
    card.training_data = {"base_model": "tiny-0", "finetune": {"buildings": 40, "area_m2": 900.0}}  # an older card
    request = FinetuneRequest(rasters=[str(r) for r in rasters], buildings=str(labels), output="unused")
    warnings = []
    folder = tmp_path / "chips"
    folder.mkdir()
    chips = prepare_chips(request, card, folder, warnings.append)
    assert warnings == ["The base weights were fine-tuned by an earlier version, which kept no corrections; this "
                        "round trains on its own buildings only."]
    assert [r.number for r in chips.rounds] == [1, 2] and chips.buildings == 30
