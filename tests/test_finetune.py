"""`trainer finetune`: chips from corrected buildings, the area mask, the card it writes, and one-line errors."""

from __future__ import annotations

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
        (["--raster", str(elsewhere), "--buildings", str(labels)], "does not overlap"),
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
