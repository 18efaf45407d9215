"""Which device the model runs on: CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import torch

from .errors import FootprintError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; others are checked for availability."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FootprintError("Device cuda was asked for, but PyTorch sees no CUDA GPU here; use --device cpu or auto.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise FootprintError("Device mps was asked for, but it is not available here; use --device cpu or auto.")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise FootprintError(f"Unknown device {name!r}; choose auto, cpu or cuda.")
    return torch.device(name)


def available_devices() -> list[str]:
    """Devices this machine can run the model on, best first."""
    devices = []
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devices.append("mps")
    return devices + ["cpu"]
