"""The weights file: round trip, model card, and refusal of unsafe or broken files."""

from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch

from footprint_plugin.core.errors import FootprintError
from footprint_plugin.core.model import UNet, UNetConfig
from footprint_plugin.core.weights import ModelCard, load_weights, read_weights_file, save_weights

from .helpers import tiny_unet_weights


def test_round_trip_keeps_tensors_and_card(tmp_path):
    torch.manual_seed(1)
    model = UNet(UNetConfig(base_filters=4, depth=3)).eval()
    card = ModelCard(name="round-trip", resolution_m=0.5, tile_size=128, metrics={"f1": 0.5})
    path = tmp_path / "w.safetensors"
    save_weights(path, model, card)
    loaded, loaded_card = load_weights(path)
    assert loaded_card.name == "round-trip" and loaded_card.resolution_m == 0.5
    assert loaded_card.model_args == {"in_channels": 3, "num_classes": 3, "base_filters": 4, "depth": 3}
    assert loaded_card.metrics == {"f1": 0.5}
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    # The layout is plain safetensors: header length, JSON header, raw bytes.
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    assert json.loads(header["__metadata__"]["model_card"])["format"] == "footprint-unet-weights"


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_payload_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _Payload(marker)}, evil)
    plain_pickle = tmp_path / "evil.safetensors"
    plain_pickle.write_bytes(pickle.dumps(_Payload(marker)))
    for path in (evil, plain_pickle):
        with pytest.raises(FootprintError, match="pickle"):
            load_weights(path)
    assert not marker.exists()


def test_pickle_hidden_in_the_header_is_just_text(tmp_path):
    marker = tmp_path / "pwned"
    path = tiny_unet_weights(tmp_path / "w.safetensors")
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    card = json.loads(header["__metadata__"]["model_card"])
    card["description"] = pickle.dumps(_Payload(marker)).hex()
    header["__metadata__"]["model_card"] = json.dumps(card)
    new_header = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(new_header)) + new_header + raw[8 + length :])
    _, loaded = load_weights(path)
    assert loaded.description and not marker.exists()


@pytest.mark.parametrize("damage,message", [
    (lambda raw: raw[: len(raw) // 2], "truncated|outside the file"),
    (lambda raw: b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + raw[24:], "bad header"),
    (lambda raw: b"GIF89a" + raw, "bad header|not a weights file"),
    (lambda raw: b"", "too short"),
])
def test_corrupt_files_give_a_clear_error_naming_the_file(tmp_path, damage, message):
    path = tiny_unet_weights(tmp_path / "broken.safetensors")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(FootprintError, match=message) as error:
        load_weights(path)
    assert str(path) in str(error.value)


def test_tensors_that_do_not_fit_the_card_are_refused(tmp_path):
    path = tiny_unet_weights(tmp_path / "w.safetensors", base_filters=4)
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    card = json.loads(header["__metadata__"]["model_card"])
    card["model_args"]["base_filters"] = 8
    header["__metadata__"]["model_card"] = json.dumps(card)
    new_header = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(new_header)) + new_header + raw[8 + length :])
    with pytest.raises(FootprintError, match="shape"):
        load_weights(path)


def test_missing_file_and_newer_format(tmp_path):
    with pytest.raises(FootprintError, match="file not found"):
        load_weights(tmp_path / "nothing.safetensors")
    path = tiny_unet_weights(tmp_path / "w.safetensors")
    card, _ = read_weights_file(path)
    card.format_version = 99
    with pytest.raises(ValueError, match="newer"):
        card.validate()


@pytest.mark.parametrize("threshold", [1.5, 0, -0.2, "high"])
def test_out_of_range_thresholds_in_the_card_are_refused(tmp_path, threshold):
    path = tiny_unet_weights(tmp_path / "w.safetensors")
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    card = json.loads(header["__metadata__"]["model_card"])
    card["postprocess"]["mask_threshold"] = threshold
    header["__metadata__"]["model_card"] = json.dumps(card)
    new_header = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(new_header)) + new_header + raw[8 + length :])
    with pytest.raises(FootprintError, match="no valid model card"):
        load_weights(path)


def test_header_length_starting_with_pickle_byte_still_loads(tmp_path):
    # A header of 0x..80 bytes begins with the byte that also starts a pickle: it must still load.
    path = tiny_unet_weights(tmp_path / "w.safetensors")
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = raw[8 : 8 + length].rstrip()
    padded = header + b" " * ((0x80 - len(header)) % 256)
    path.write_bytes(struct.pack("<Q", len(padded)) + padded + raw[8 + length :])
    assert path.read_bytes()[0] == 0x80
    model, card = load_weights(path)
    assert card.name == "tiny-0"


def test_loaded_tensors_do_not_follow_later_writes_to_the_file(tmp_path):
    path = tiny_unet_weights(tmp_path / "w.safetensors")
    _, tensors = read_weights_file(path)
    before = {name: tensor.clone() for name, tensor in tensors.items()}
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    with open(path, "r+b") as handle:  # overwrite the tensor bytes in place (same file, same mapping)
        handle.seek(8 + length)
        handle.write(b"\x7f" * (len(raw) - 8 - length))
    assert all(torch.equal(before[name], tensors[name]) for name in tensors)


def test_files_are_read_by_the_safetensors_package_too(tmp_path):
    from safetensors.torch import load_file

    torch.manual_seed(2)
    model = UNet(UNetConfig(base_filters=4, depth=3)).eval().half()
    path = tmp_path / "w.safetensors"
    save_weights(path, model, ModelCard(name="half"))
    loaded = load_file(str(path))
    assert set(loaded) == set(model.state_dict())
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    assert torch.float16 in {v.dtype for v in loaded.values()}  # a float16 model stays float16 on disk
