"""ONNX export of a model, cached on disk by content hash, and its ONNX Runtime session."""

from __future__ import annotations

import torch
from torch import nn


def onnxruntime_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def onnx_session(model: nn.Module, in_channels: int, threads: int, memory_arena: bool = False):
    """An ONNX Runtime session for ``model`` (exported once, cached on disk by content hash)."""
    import hashlib
    import io
    import os
    import warnings
    from pathlib import Path

    import onnxruntime

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    digest.update(torch.__version__.encode())
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "footprint_plugin" / "onnx"
    path = cache / f"{digest.hexdigest()[:32]}.onnx"
    if path.is_file():
        data = path.read_bytes()
    else:
        buffer = io.BytesIO()
        example = torch.zeros(1, in_channels, 64, 64)
        axes = {0: "batch", 2: "height", 3: "width"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), buffer, input_names=["image"], output_names=["logits"],
                              dynamic_axes={"image": axes, "logits": axes}, opset_version=17, dynamo=False)
        data = buffer.getvalue()
        try:
            cache.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            pass  # no cache, export again next time
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = memory_arena  # off: activations go back to the system, lower peak memory
    return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
