"""The trainer CLI: prepare (SpaceNet and generic layouts), train, resume, export, predict, evaluate, DDP."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
from osgeo import ogr, osr
from rasterio.transform import Affine

from footprint_plugin.core.weights import load_weights
from trainer.cli import main
from trainer.train import load_checkpoint

from .helpers import REPO, write_raster

DEG = 2.7e-6  # about 0.3 m at the equator


def _building_image(rng, rows, cols, boxes, scale):
    image = rng.integers(int(0.1 * scale), int(0.3 * scale), (3, rows, cols)).astype(np.uint16)
    for r0, c0, r1, c1 in boxes:
        image[:, r0:r1, c0:c1] = int(0.8 * scale)
    return image


def _boxes(rng, rows, cols, count=4):
    boxes = []
    for _ in range(count):
        r0, c0 = int(rng.integers(2, rows - 30)), int(rng.integers(2, cols - 30))
        boxes.append((r0, c0, r0 + int(rng.integers(12, 28)), c0 + int(rng.integers(12, 28))))
    return boxes


def _geojson(boxes, transform, path, extra=None):
    features = []
    for r0, c0, r1, c1 in boxes:
        x0, y0 = transform * (c0, r0)
        x1, y1 = transform * (c1, r1)
        ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        features.append({"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}})
    features += extra or []
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))


@pytest.fixture(scope="module")
def spacenet_aoi(tmp_path_factory):
    """A SpaceNet-2 style AOI: 11-bit RGB-PanSharpen GeoTIFFs in EPSG:4326 with per-image GeoJSON."""
    root = tmp_path_factory.mktemp("AOI_9_Test")
    images, labels = root / "RGB-PanSharpen", root / "geojson" / "buildings"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for n in range(1, 9):
        transform = Affine(DEG, 0, 36.8 + n * 0.01, 0, -DEG, -1.28)
        boxes = _boxes(rng, 96, 96) if n != 3 else []
        write_raster(images / f"RGB-PanSharpen_AOI_9_Test_img{n}.tif", _building_image(rng, 96, 96, boxes, 2047),
                     crs="EPSG:4326", transform=transform)
        if n == 8:
            continue  # an image without a label file
        bowtie = [] if n != 2 else [{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
            [[36.8 + n * 0.01 + 10 * DEG, -1.28 - 10 * DEG], [36.8 + n * 0.01 + 20 * DEG, -1.28 - 20 * DEG],
             [36.8 + n * 0.01 + 20 * DEG, -1.28 - 10 * DEG], [36.8 + n * 0.01 + 10 * DEG, -1.28 - 20 * DEG],
             [36.8 + n * 0.01 + 10 * DEG, -1.28 - 10 * DEG]]]}}]
        _geojson(boxes, transform, labels / f"buildings_AOI_9_Test_img{n}.geojson", bowtie)
    return root


def test_prepare_spacenet_layout(spacenet_aoi, tmp_path, capsys):
    out = tmp_path / "prepared"
    assert main(["prepare", "--spacenet", str(spacenet_aoi), "--out", str(out), "--chip-size", "64", "--seed", "1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dtype"] == ["uint16"] and manifest["scale"] == 2047.0
    assert manifest["invalid_label_polygons"] == 1
    assert [s["status"] for s in manifest["skipped_images"]] == ["no label file"]
    splits = manifest["splits"]
    assert sum(s["images"] for s in splits.values()) == 7
    assert 5 <= splits["train"]["images"] <= 6  # 70% of 8 whole images, one of them unlabelled
    chip = np.load(out / manifest["images"][0]["chips"][0])
    assert chip["image"].dtype == np.uint16 and chip["image"].shape[0] == 3
    assert set(np.unique(chip["mask"])) <= {0, 1, 2}
    empty = next(i for i in manifest["images"] if i["path"].endswith("img3.tif"))
    assert empty["buildings"] == 0 and empty["chips"]  # an empty GeoJSON gives background chips
    # The same seed gives the same split; the split is by whole image.
    out2 = tmp_path / "again"
    main(["prepare", "--spacenet", str(spacenet_aoi), "--out", str(out2), "--chip-size", "64", "--seed", "1"])
    again = json.loads((out2 / "manifest.json").read_text())
    assert [(i["path"], i["split"]) for i in again["images"]] == [(i["path"], i["split"]) for i in manifest["images"]]


def test_three_class_mask_separates_touching_buildings():
    from trainer.prepare import three_class_mask

    instances = np.zeros((12, 20), np.int32)
    instances[2:10, 2:10] = 1
    instances[2:10, 10:18] = 2
    mask = three_class_mask(instances, 1)
    assert (mask[2:10, 9:11] == 2).all()  # the shared wall is border on both sides
    assert (mask[3:9, 3:9] == 1).all() and (mask[3:9, 11:17] == 1).all()
    assert (mask[0] == 0).all()


def _generic_dataset(tmp_path):
    """UTM rasters with one GeoPackage of labels in EPSG:4326 (another CRS than the rasters)."""
    rng = np.random.default_rng(3)
    srs_utm, srs_wgs = osr.SpatialReference(), osr.SpatialReference()
    srs_utm.ImportFromEPSG(32637)
    srs_wgs.ImportFromEPSG(4326)
    srs_wgs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    to_wgs = osr.CoordinateTransformation(srs_utm, srs_wgs)
    labels = tmp_path / "labels.gpkg"
    dataset = ogr.GetDriverByName("GPKG").CreateDataSource(str(labels))
    layer = dataset.CreateLayer("buildings", srs_wgs, ogr.wkbPolygon)
    rasters = []
    for n in range(5):
        transform = Affine(0.3, 0, 300000 + n * 1000, 0, -0.3, 9800000)
        boxes = _boxes(rng, 128, 128, 6)
        rasters.append(write_raster(tmp_path / f"scene_{n}.tif", _building_image(rng, 128, 128, boxes, 255)
                                    .astype(np.uint8), crs="EPSG:32637", transform=transform))
        for r0, c0, r1, c1 in boxes:
            x0, y0 = transform * (c0, r0)
            x1, y1 = transform * (c1, r1)
            geometry = ogr.CreateGeometryFromWkt(f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))")
            geometry.Transform(to_wgs)
            feature = ogr.Feature(layer.GetLayerDefn())
            feature.SetGeometry(geometry)
            layer.CreateFeature(feature)
    dataset = None
    return rasters, labels


def _tensor_bytes(path) -> int:
    """Bytes of a weights file's tensors, without its JSON header (the card's size does not scale with them)."""
    raw = path.read_bytes()
    (header_length,) = struct.unpack("<Q", raw[:8])
    return len(raw) - 8 - header_length


def test_prepare_train_export_predict_evaluate(tmp_path, capsys):
    rasters, labels = _generic_dataset(tmp_path)
    prepared, run = tmp_path / "prepared", tmp_path / "run"
    assert main(["prepare", "--images", *map(str, rasters), "--labels", str(labels), "--out", str(prepared),
                 "--chip-size", "64", "--split", "0.6,0.2,0.2"]) == 0
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert manifest["splits"]["train"]["images"] == 3 and manifest["splits"]["train"]["buildings"] >= 12
    assert main(["train", "--data", str(prepared), "--out", str(run), "--epochs", "2", "--steps-per-epoch", "1",
                 "--batch-size", "2", "--crop-size", "32", "--width", "4", "--depth", "3"]) == 0
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and all("val_f1" in r and r["chips_per_s"] > 0 for r in log)
    assert (run / "best.pt").is_file() and (run / "last.pt").is_file()
    weights = tmp_path / "model.safetensors"
    assert main(["export", "--checkpoint", str(run / "best.pt"), "--output", str(weights), "--name", "e2e"]) == 0
    model, card = load_weights(weights)
    assert card.name == "e2e" and card.model_args["base_filters"] == 4 and card.tile_size == 32
    assert card.normalization["mean"] == manifest["band_stats"]["mean"] and "validation" in card.metrics
    half = tmp_path / "model16.safetensors"
    assert main(["export", "--checkpoint", str(run / "best.pt"), "--output", str(half), "--float16"]) == 0
    model16, _ = load_weights(half)
    assert _tensor_bytes(half) < 0.6 * _tensor_bytes(weights)
    assert all(t.dtype in (torch.float32, torch.int64) for t in model16.state_dict().values())
    sample = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model16(sample), model(sample), atol=0.02, rtol=0.02)
    # A weights file re-exported with new thresholds keeps its tensors and the rest of its card.
    renamed = tmp_path / "renamed.safetensors"
    assert main(["export", "--checkpoint", str(half), "--output", str(renamed), "--name", "tuned",
                 "--seed-threshold", "0.7"]) == 0  # stays float16 without --float16
    model_renamed, card_renamed = load_weights(renamed)
    assert card_renamed.name == "tuned" and card_renamed.postprocess == {"seed_threshold": 0.7, "mask_threshold": 0.5}
    assert card_renamed.normalization == card.normalization
    for name, tensor in model16.state_dict().items():
        assert torch.equal(tensor, model_renamed.state_dict()[name]), name
    assert _tensor_bytes(renamed) < 0.6 * _tensor_bytes(weights)
    assert main(["export", "--checkpoint", str(half), "--output", str(tmp_path / "bad.safetensors"),
                 "--mask-threshold", "1.5"]) == 2 and not (tmp_path / "bad.safetensors").exists()
    assert main(["export", "--checkpoint", str(half), "--output", str(tmp_path / "bad.safetensors"),
                 "--tile-size", "30"]) == 2 and not (tmp_path / "bad.safetensors").exists()
    test_image = next(i["path"] for i in manifest["images"] if i["split"] == "test")
    predicted = tmp_path / "pred.gpkg"
    assert main(["predict", "--input", test_image, "--output", str(predicted), "--weights", str(weights),
                 "--min-area", "0", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--truth", str(labels), "--pred", str(predicted), "--json", "--min-area", "0",
                 "--out-dir", str(tmp_path / "review")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"tp", "fp", "fn", "precision", "recall", "f1", "images"} <= set(result)
    assert result["tp"] + result["fn"] == 30  # every labelled building of all five scenes counts as truth
    review = ogr.Open(str(tmp_path / "review" / "evaluation.gpkg"))
    assert {review.GetLayer(i).GetName() for i in range(review.GetLayerCount())} == {
        "true_positive", "false_positive", "false_negative"}


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    rasters, labels = _generic_dataset(tmp_path)
    prepared = tmp_path / "prepared"
    main(["prepare", "--images", *map(str, rasters), "--labels", str(labels), "--out", str(prepared), "--chip-size", "64"])
    common = ["--data", str(prepared), "--steps-per-epoch", "2", "--batch-size", "2", "--crop-size", "32",
              "--width", "4", "--depth", "3", "--seed", "5", "--threads", "1"]
    assert main(["train", *common, "--out", str(tmp_path / "straight"), "--epochs", "3"]) == 0
    assert main(["train", *common, "--out", str(tmp_path / "resumed"), "--epochs", "3", "--max-minutes", "0"]) == 0
    first = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert first["epoch"] == 0  # stopped after one epoch
    assert main(["train", *common, "--out", str(tmp_path / "resumed"), "--epochs", "3", "--resume"]) == 0
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")["model"]
    for name, tensor in straight.items():
        assert torch.equal(tensor, resumed[name]), name


def test_distributed_training_with_two_gloo_processes(tmp_path):
    rasters, labels = _generic_dataset(tmp_path)
    prepared = tmp_path / "prepared"
    main(["prepare", "--images", *map(str, rasters), "--labels", str(labels), "--out", str(prepared), "--chip-size", "64"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
               "-m", "trainer", "train", "--data", str(prepared), "--out", str(tmp_path / "ddp"), "--epochs", "1",
               "--steps-per-epoch", "2", "--batch-size", "2", "--crop-size", "32", "--width", "4", "--depth", "3",
               "--device", "cpu", "--threads", "1"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert record["world_size"] == 2 and record["device"] == "cpu"
    assert (tmp_path / "ddp" / "last.pt").is_file()


def test_trainer_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "run `python -m trainer prepare` first" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--output", str(tmp_path / "w")]) == 2
    assert main(["prepare", "--images", str(tmp_path / "none.tif"), "--labels", "x", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "Traceback" not in err
