"""A model prepared for inference on one device: normalisation in, class probabilities out."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .devices import resolve_device
from .errors import FootprintError
from .model import NETWORKS, fuse_for_inference
from .normalization import input_scale, normalize
from .onnx_cache import onnx_session, onnxruntime_available
from .tiling import BACKENDS
from .weights import ModelCard

if TYPE_CHECKING:
    from .buildings import VectorizeOptions


class Predictor:
    """A model prepared for inference on one device.

    BatchNorm is folded into the convolutions and tensors use channels_last.
    ``auto`` and ``torch`` run the model with PyTorch (measured fastest on CPU for
    the default network, see ``make bench``); ``onnxruntime`` runs it with ONNX
    Runtime on CPU, when that is installed.
    """

    def __init__(self, model: torch.nn.Module, card: ModelCard, device: str | torch.device = "auto", amp: bool = True,
                 backend: str = "auto") -> None:
        if backend not in BACKENDS:
            raise FootprintError(f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
        self.card = card
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.amp = amp and self.device.type == "cuda"
        model = model.eval()
        if isinstance(model, NETWORKS):
            model = fuse_for_inference(model)
        self.model = model.to(self.device)
        if self.device.type in ("cpu", "cuda"):
            self.model = self.model.to(memory_format=torch.channels_last)
        self.session = None
        if backend == "onnxruntime" and (self.device.type != "cpu" or not onnxruntime_available()):
            raise FootprintError("The onnxruntime backend needs the onnxruntime package and --device cpu.")
        if backend == "onnxruntime" and isinstance(model, NETWORKS):
            self.session = onnx_session(self.model, card.config.in_channels, torch.get_num_threads())
        self.backend = "onnxruntime" if self.session is not None else "torch"
        norm = card.normalization
        self._mean = torch.tensor(norm["mean"], dtype=torch.float32, device=self.device).reshape(1, -1, 1, 1)
        self._std = torch.tensor(norm["std"], dtype=torch.float32, device=self.device).reshape(1, -1, 1, 1)
        self._staging: dict = {}

    def scale_for(self, dtype: str, bit_depth: int | None) -> float:
        """Divisor that maps raw values to 0..1 for this input type (:func:`.normalization.input_scale`)."""
        return input_scale(self.card.normalization, dtype, bit_depth)

    def normalize(self, raw: np.ndarray, scale: float) -> np.ndarray:
        """Raw pixels (..., C, H, W) to the model's input, in one float32 array (:func:`.normalization.normalize`)."""
        return normalize(raw, scale, self.card.normalization["mean"], self.card.normalization["std"])

    def staging(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A host array to gather a batch of raw tiles in: page-locked on CUDA (uploaded without another
        copy), reused from batch to batch (each batch's maps come back before the next fills it)."""
        key = (tuple(shape), np.dtype(dtype).str)
        if key not in self._staging:
            array = np.empty(shape, dtype)
            if self.device.type == "cuda":
                array = torch.from_numpy(array).pin_memory().numpy()
            self._staging = {key: array}  # one shape at a time: the last row of tiles may be narrower
        return self._staging[key]

    def _on_device(self, batch: np.ndarray, scale: float | None) -> torch.Tensor:
        """The batch on the device as the model's input: raw pixels (``scale`` given) are sent as they are,
        a quarter of float32's bytes for 8-bit data, and normalised there."""
        tensor = torch.from_numpy(batch.view(np.int16) if batch.dtype == np.uint16 else batch)
        tensor = tensor.to(self.device, non_blocking=self.device.type == "cuda")
        if scale is not None:
            tensor = tensor.to(torch.float32)
            if batch.dtype == np.uint16:  # sent as int16: the values above 32767 came back negative
                tensor = torch.where(tensor < 0, tensor + 65536.0, tensor)
            tensor.mul_(self._scale(scale)).clamp_(0.0, 1.0).sub_(self._mean).div_(self._std)
        if self.device.type in ("cpu", "cuda"):
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    def _scale(self, scale: float) -> torch.Tensor:
        """1 / scale as the float32 the host normalisation multiplies by."""
        return torch.tensor(np.float32(1.0 / scale), device=self.device)

    def _logits(self, batch: np.ndarray, scale: float | None = None, flip: bool = False) -> torch.Tensor:
        if self.session is not None:
            data = self.normalize(batch, scale) if scale is not None else batch
            data = np.ascontiguousarray(data[..., ::-1] if flip else data)
            return torch.from_numpy(self.session.run(None, {"image": data})[0])
        tensor = self._on_device(batch, scale)
        if flip:
            tensor = torch.flip(tensor, dims=[3]).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=self.amp):
            return self.model(tensor).float()

    def _probabilities(self, batch: np.ndarray, flip_tta: bool, scale: float | None) -> torch.Tensor:
        probs = torch.softmax(self._logits(batch, scale), dim=1)
        if flip_tta:
            flipped = self._logits(batch, scale, flip=True)
            probs = 0.5 * (probs + torch.flip(torch.softmax(flipped, dim=1), dims=[3]))
        return probs

    @torch.inference_mode()
    def probabilities(self, batch: np.ndarray, flip_tta: bool = False, scale: float | None = None) -> np.ndarray:
        """Softmax class probabilities (N, 3, H, W) for a batch (N, C, H, W): normalised, or raw pixels with
        their ``scale`` (:meth:`scale_for`)."""
        return self._probabilities(batch, flip_tta, scale).cpu().numpy()

    @torch.inference_mode()
    def class_maps(self, batch: np.ndarray, thresholds: VectorizeOptions, flip_tta: bool = False,
                   scale: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Building mask, seed mask (bool) and building probability (uint8, x 255 and rounded), each
        (N, H, W), for a batch (normalised, or raw pixels with their ``scale``): thresholded where the model
        runs, so 3 bytes a pixel come back instead of two float32 probabilities (the same maps as
        :func:`.instances.class_maps`)."""
        probs = self._probabilities(batch, flip_tta, scale)
        building = 1.0 - probs[:, 0]
        mask = building > thresholds.mask_threshold
        seeds = mask if thresholds.instances == "binary" else (probs[:, 1] > thresholds.seed_threshold) & mask
        probability = building.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
        return mask.cpu().numpy(), seeds.cpu().numpy(), probability.cpu().numpy()
