"""The weights file: tensors plus a model card, in the safetensors layout.

The file is ``<u64 little-endian header length><JSON header><raw tensor bytes>``
(the public safetensors layout, written and read by the ``safetensors`` package).
The JSON header maps each tensor name to its dtype, shape and byte range, and
its ``__metadata__`` entry holds the model card as a JSON string. Reading it
parses JSON and maps bytes; nothing in the file is ever executed, so a
weights file from an untrusted source cannot run code.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch

from .errors import FootprintError
from .model import CLASS_NAMES, EfficientUNetConfig, UNetConfig, architecture_of, build_model, config_from_card

FORMAT_NAME = "footprint-unet-weights"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 16 * 1024 * 1024
CONTEXT_PX = 96  # measured: the default model's output at a pixel depends on nothing further than this

_DTYPES: dict[str, tuple[np.dtype, torch.dtype]] = {
    "F32": (np.dtype("<f4"), torch.float32),
    "F16": (np.dtype("<f2"), torch.float16),
    "I64": (np.dtype("<i8"), torch.int64),
}
_TORCH_TO_CODE = {torch_dtype: code for code, (_, torch_dtype) in _DTYPES.items()}


def default_normalization() -> dict[str, Any]:
    """8-bit data is divided by 255; 16-bit data by its bit depth (SpaceNet: 11 bits = 2047)."""
    return {
        "scale": {"uint8": 255.0, "uint16": 2047.0},
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
    }


@dataclass
class ModelCard:
    """Everything needed to run a set of weights, stored inside the weights file."""

    model_args: dict[str, Any] = field(default_factory=lambda: UNetConfig().to_dict())
    architecture: str = "unet"
    input_bands: list[str] = field(default_factory=lambda: ["red", "green", "blue"])
    normalization: dict[str, Any] = field(default_factory=default_normalization)
    resolution_m: float = 0.3
    resolution_range_m: list[float] = field(default_factory=lambda: [0.1, 0.9])
    tile_size: int = 256
    context_px: int = CONTEXT_PX  # how far the network looks (tools/lab/context_reach.py): tiles overlap by twice this
    classes: list[str] = field(default_factory=lambda: list(CLASS_NAMES))
    postprocess: dict[str, float] = field(
        default_factory=lambda: {"mask_threshold": 0.5, "seed_threshold": 0.5}
    )
    name: str = "unnamed"
    description: str = ""
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    @property
    def config(self) -> UNetConfig | EfficientUNetConfig:
        """The network's constructor arguments (:data:`model.ARCHITECTURES` names the architectures)."""
        return config_from_card(self.architecture, self.model_args)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelCard:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})

    def validate(self) -> None:
        """Raise ValueError when the card is inconsistent."""
        if self.format != FORMAT_NAME:
            raise ValueError(f"not a {FORMAT_NAME} file (format {self.format!r})")
        if int(self.format_version) > FORMAT_VERSION:
            raise ValueError(
                f"format version {self.format_version} is newer than this program supports "
                f"({FORMAT_VERSION}); update the plugin"
            )
        config = self.config
        if len(self.input_bands) != config.in_channels:
            raise ValueError(
                f"{len(self.input_bands)} input bands listed for a network with {config.in_channels} inputs"
            )
        for key in ("mask_threshold", "seed_threshold"):
            if key in self.postprocess and not 0 < float(self.postprocess[key]) < 1:
                raise ValueError(f"postprocess {key} must lie between 0 and 1")
        if len(self.classes) != config.num_classes or config.num_classes != 3:
            raise ValueError("the network must have 3 classes: background, interior, border")
        norm = self.normalization
        for key in ("mean", "std"):
            if len(norm.get(key, [])) != config.in_channels:
                raise ValueError(f"normalization {key} needs {config.in_channels} values")
        if any(float(s) <= 0 for s in norm["std"]):
            raise ValueError("normalization std values must be positive")
        if float(self.resolution_m) <= 0:
            raise ValueError("resolution_m must be positive")
        if int(self.tile_size) % config.size_multiple:
            raise ValueError(f"tile_size must be a multiple of {config.size_multiple}")
        if not 0 <= int(self.context_px) <= 1024:
            raise ValueError("context_px must lie between 0 and 1024")


def save_weights(path: str | os.PathLike[str], model: torch.nn.Module, card: ModelCard) -> None:
    """Write ``model``'s tensors and ``card`` to ``path`` atomically."""
    card.architecture = architecture_of(model)
    card.model_args = model.config.to_dict()
    card.validate()
    tensors = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        tensors[name] = tensor if tensor.dtype in _TORCH_TO_CODE else tensor.float()
    # The safetensors package lays out the header (8-byte aligned) and the tensor bytes.
    data = safetensors.torch.save(tensors, metadata={"model_card": card.to_json()})
    path = Path(path)
    handle, tmp_name = tempfile.mkstemp(prefix=".weights-", dir=path.parent or ".")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(tmp_name, 0o644)  # mkstemp makes it private; weights are meant to be shared
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _fail(path: Path, problem: str) -> FootprintError:
    return FootprintError(f"Weights file {path}: {problem}")


def read_weights_file(path: str | os.PathLike[str]) -> tuple[ModelCard, dict[str, torch.Tensor]]:
    """Parse a weights file into its card and tensors, validating every field.

    ``safetensors.safe_open`` checks the layout (header, dtypes, shapes, byte ranges covering the file)
    and maps the file; the card is read and validated before any tensor is.
    """
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "file not found")
    try:
        with open(path, "rb") as handle:
            start = handle.read(8)
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror})") from None
    if len(start) < 8:
        raise _fail(path, "is too short to be a weights file")
    try:
        with safetensors.safe_open(str(path), framework="pt") as weights:
            metadata = weights.metadata() or {}
            try:
                card = ModelCard.from_dict(json.loads(metadata["model_card"]))
                card.validate()
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise _fail(path, f"has no valid model card ({exc})") from None
            # get_tensor's tensors share the file's mapping: copy them, so that the file can be replaced or
            # rewritten (export onto itself, Windows file locks) without changing a loaded model.
            tensors = {name: weights.get_tensor(name).clone() for name in weights.keys()}
    except safetensors.SafetensorError as exc:
        raise _fail(path, _layout_problem(start, str(exc))) from None
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror or exc})") from None
    for name, tensor in tensors.items():
        if tensor.dtype not in _TORCH_TO_CODE:
            raise _fail(path, f"tensor {name!r} has the unsupported type {tensor.dtype} (float32, float16 or int64)")
    return card, tensors


def _layout_problem(start: bytes, detail: str) -> str:
    """Our line for a file that safetensors refuses; ``start`` is its first 8 bytes."""
    if start[:2] == b"PK" or (start[0] == 0x80 and start[1] in range(2, 6)):
        return ("is a PyTorch pickle checkpoint, which is never loaded because it can run code; "
                "convert a trusted checkpoint with `python -m trainer export`")
    detail = detail.replace("Error while deserializing header: ", "")
    if "incomplete" in detail or "offset" in detail or "covered" in detail:
        return f"its tensors lie outside the file (truncated or corrupt: {detail})"
    return f"is not a weights file or is truncated (bad header: {detail})"


def load_weights(path: str | os.PathLike[str]) -> tuple[torch.nn.Module, ModelCard]:
    """Build the network described in the file's card and load its tensors (eval mode)."""
    card, tensors = read_weights_file(path)
    return model_from_tensors(card, tensors, path), card


def model_from_tensors(card: ModelCard, tensors: dict[str, torch.Tensor], path: str | os.PathLike[str]) -> torch.nn.Module:
    """The card's network with ``tensors`` (from :func:`read_weights_file` of ``path``) loaded, in eval mode."""
    model = build_model(card.config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise _fail(
            Path(path),
            f"tensors do not match the network in its model card (missing {missing[:3]}, unexpected {unexpected[:3]})",
        )
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise _fail(
                Path(path),
                f"tensor {name!r} has shape {tuple(tensor.shape)}, the model card's network needs "
                f"{tuple(expected[name].shape)}",
            )
        if not torch.isfinite(tensor.float()).all():
            raise _fail(Path(path), f"tensor {name!r} holds NaN or infinite values")
    model.load_state_dict(tensors)
    model.eval()
    return model
