"""Tiled, batched U-Net inference that yields blended class probabilities strip by strip.

Tiles lie on one fixed grid over the whole raster and overlap; each tile's
softmax output is weighted by a smooth window that falls towards the tile's
edges, so the blended probabilities show no seams. Only the rows that are
still receiving tiles are kept in memory, and rasters wider than a block
(6144 px of the model grid by default) run block by block
(:func:`plan_column_blocks`): peak memory depends on neither the raster's
height nor its width.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .errors import CancelledError, FootprintError
from .geo import ModelGrid
from .model import NETWORKS, fuse_for_inference
from .readers import WindowReader
from .weights import ModelCard

ProgressCallback = Callable[[float, str], None]
CancelCheck = Callable[[], bool]


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


@dataclass
class TilingOptions:
    """How the raster is cut into tiles; ``None`` takes the default."""

    tile_size: int | None = None  # model card's training tile size
    overlap: int | None = None  # a quarter of the tile
    batch_size: int | None = None  # 16 on CUDA, 4 elsewhere
    amp: bool = True  # float16 autocast on CUDA
    flip_tta: bool = False  # average with the horizontally flipped tile
    backend: str = "auto"  # auto/torch: PyTorch; onnxruntime: ONNX Runtime (CPU)
    block_width: int = 6144  # grid px: wider rasters run in column blocks, so memory does not grow with width
    block_halo: int = 192  # grid px each block also infers right of its own columns


@dataclass(frozen=True)
class ResolvedTiling:
    tile: int
    overlap: int
    batch_size: int

    @property
    def stride(self) -> int:
        return self.tile - self.overlap


def resolve_tiling(options: TilingOptions, predictor: Predictor) -> ResolvedTiling:
    """Tile size, overlap and batch size with defaults filled in and checked against the weights."""
    multiple = predictor.card.config.size_multiple
    tile = int(options.tile_size or predictor.card.tile_size)
    if tile < multiple or tile % multiple:
        raise FootprintError(f"Tile size {tile} must be a positive multiple of {multiple} for these weights.")
    overlap = tile // 4 if options.overlap is None else int(options.overlap)
    if not 0 <= overlap <= tile // 2:
        raise FootprintError(f"Overlap {overlap} must be between 0 and half the tile size ({tile // 2}).")
    batch_size = int(options.batch_size or (16 if predictor.device.type == "cuda" else 4))
    if batch_size < 1:
        raise FootprintError("Batch size must be at least 1.")
    return ResolvedTiling(tile, overlap, batch_size)


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles covering ``length`` pixels; the last tile ends at the edge."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


@dataclass(frozen=True)
class ColumnBlock:
    """Grid columns [start, end) inferred together.

    The block emits building pixels in [own_start, emit_end): its own columns plus ``halo``
    columns of the next block's, where a building that starts in its own columns may continue.
    """

    start: int
    end: int
    own_start: int
    own_end: int
    emit_end: int

    @property
    def width(self) -> int:
        return self.end - self.start


def plan_column_blocks(width: int, tile: int, stride: int, block_width: int, halo: int) -> list[ColumnBlock]:
    """Cut a wide grid into column blocks made of whole tiles of the global tile grid.

    A block infers every tile that covers a column in [own_start - 1, emit_end), so those columns
    get exactly the blended probabilities of one run over the whole width. Rasters up to 1.25 x
    ``block_width`` wide are one block.
    """
    xs = tile_starts(width, tile, stride)
    block_width = max(block_width, 2 * stride)
    if width <= 1.25 * block_width or len(xs) < 3:
        return [ColumnBlock(0, width, 0, width, width)]
    count = math.ceil(width / block_width)
    bounds = sorted({round(i * width / count / stride) * stride for i in range(count)} - {width}) + [width]
    blocks: list[ColumnBlock] = []
    for own_start, own_end in zip(bounds[:-1], bounds[1:]):
        emit_end = min(width, own_end + halo)
        used = [x for x in xs if x + tile > own_start - 1 and x < emit_end]
        blocks.append(ColumnBlock(used[0], min(width, used[-1] + tile), own_start, own_end, emit_end))
    return blocks


def blend_window(tile: int) -> np.ndarray:
    """2-D weights, highest in the tile's centre and near zero at its edges."""
    ramp = np.sin(np.pi * (np.arange(tile) + 0.5) / tile) ** 2
    ramp = np.maximum(ramp, 1e-3).astype(np.float32)
    return np.outer(ramp, ramp)


def _onnxruntime_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def _onnx_session(model: nn.Module, in_channels: int, threads: int, memory_arena: bool = False):
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


BACKENDS = ("auto", "torch", "onnxruntime")


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
        if backend == "onnxruntime" and (self.device.type != "cpu" or not _onnxruntime_available()):
            raise FootprintError("The onnxruntime backend needs the onnxruntime package and --device cpu.")
        if backend == "onnxruntime" and isinstance(model, NETWORKS):
            self.session = _onnx_session(self.model, card.config.in_channels, torch.get_num_threads())
        self.backend = "onnxruntime" if self.session is not None else "torch"
        norm = card.normalization
        self.mean = np.asarray(norm["mean"], dtype=np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(norm["std"], dtype=np.float32).reshape(-1, 1, 1)
        self.scales = {k: float(v) for k, v in norm["scale"].items()}

    def scale_for(self, dtype: str, bit_depth: int | None) -> float:
        """Divisor that maps raw values to 0..1 for this input type."""
        if bit_depth and dtype != "uint8":
            return float(2**bit_depth - 1)
        key = "uint16" if dtype == "int16" else dtype
        return self.scales.get(key, 255.0)

    def normalize(self, raw: np.ndarray, scale: float) -> np.ndarray:
        """Raw pixels (..., C, H, W) to the model's input scale, in one float32 array."""
        data = raw.astype(np.float32)
        data *= 1.0 / scale
        np.clip(data, 0.0, 1.0, out=data)
        data -= self.mean
        data /= self.std
        return data

    def _logits(self, batch: np.ndarray) -> torch.Tensor:
        if self.session is not None:
            return torch.from_numpy(self.session.run(None, {"image": np.ascontiguousarray(batch)})[0])
        tensor = torch.from_numpy(batch)
        if self.device.type == "cuda":
            tensor = tensor.pin_memory().to(self.device, non_blocking=True)
        else:
            tensor = tensor.to(self.device)
        if self.device.type in ("cpu", "cuda"):
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=self.amp):
            return self.model(tensor).float()

    @torch.inference_mode()
    def probabilities(self, batch: np.ndarray, flip_tta: bool = False) -> np.ndarray:
        """Softmax class probabilities (N, 3, H, W) for a normalised batch (N, C, H, W)."""
        probs = torch.softmax(self._logits(batch), dim=1)
        if flip_tta:
            flipped = self._logits(np.ascontiguousarray(batch[..., ::-1]))
            probs = 0.5 * (probs + torch.flip(torch.softmax(flipped, dim=1), dims=[3]))
        return probs.cpu().numpy()


@dataclass
class ProbabilityStrip:
    """Final blended probabilities for grid rows ``row_start .. row_start + rows``."""

    row_start: int
    building: np.ndarray  # P(interior) + P(border), float16 (rows, width)
    interior: np.ndarray  # P(interior), float16 (rows, width)
    last: bool


def _pad_to(array: np.ndarray, rows: int, cols: int) -> np.ndarray:
    pad_r, pad_c = rows - array.shape[-2], cols - array.shape[-1]
    if pad_r == 0 and pad_c == 0:
        return array
    pads = [(0, 0)] * (array.ndim - 2) + [(0, pad_r), (0, pad_c)]
    mode = "reflect" if pad_r < array.shape[-2] and pad_c < array.shape[-1] else "edge"
    return np.pad(array, pads, mode=mode)


def iter_probability_strips(
    reader: WindowReader,
    grid: ModelGrid,
    bands: list[int],
    predictor: Predictor,
    options: TilingOptions,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
    columns: tuple[int, int] | None = None,
) -> Iterator[ProbabilityStrip]:
    """Run the model over the grid; yield final probabilities top to bottom.

    ``columns`` = (start, end) limits the run to a :class:`ColumnBlock`'s columns (whole tiles of
    the global tile grid); strips then hold those columns only. Reading the next row of tiles runs
    in a background thread while the model works on the current one.
    """
    tiling = resolve_tiling(options, predictor)
    tile, batch_size = tiling.tile, tiling.batch_size
    column0, column1 = columns or (0, grid.width)
    width, height = column1 - column0, grid.height
    xs = [x - column0 for x in tile_starts(grid.width, tile, tiling.stride) if x >= column0 and x + tile <= max(column1, tile)]
    ys = tile_starts(height, tile, tiling.stride)
    window = blend_window(tile)
    scale = predictor.scale_for(reader.dtype, reader.bit_depth)
    sx = grid.source_width / grid.width
    sy = grid.source_height / grid.height
    padded_width = max(width, tile)
    total_tiles = len(xs) * len(ys)
    done_tiles = 0

    def read_row(y0: int) -> tuple[np.ndarray, np.ndarray]:
        rows = min(tile, height - y0)
        data, valid = reader.read((column0 * sx, y0 * sy, width * sx, rows * sy), (rows, width), bands)
        # Normalised here, in the reading thread, so the model's thread only runs the model.
        return _pad_to(predictor.normalize(data, scale), tile, padded_width), _pad_to(valid, tile, padded_width)

    # Accumulators for grid rows [buffer_top, buffer_top + tile): each row of tiles starts where the
    # previous one's final rows end, so one tile height is all that is ever pending.
    buffer_rows = tile
    acc = np.zeros((3, buffer_rows, padded_width), np.float32)
    weight = np.zeros((buffer_rows, padded_width), np.float32)
    valid_buf = np.zeros((buffer_rows, padded_width), bool)
    buffer_top = 0
    emitted_until = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="footprint-read") as pool:
        pending = pool.submit(read_row, ys[0])
        for index, y0 in enumerate(ys):
            data, valid = pending.result()
            if index + 1 < len(ys):
                pending = pool.submit(read_row, ys[index + 1])
            offset = y0 - buffer_top
            valid_buf[offset : offset + tile] |= valid
            for first in range(0, len(xs), batch_size):
                if cancelled and cancelled():
                    raise CancelledError()
                starts = xs[first : first + batch_size]
                batch = np.stack([data[:, :, x : x + tile] for x in starts])
                probs = predictor.probabilities(batch, options.flip_tta)
                for x, tile_probs in zip(starts, probs):
                    acc[:, offset : offset + tile, x : x + tile] += tile_probs * window
                    weight[offset : offset + tile, x : x + tile] += window
                done_tiles += len(starts)
                if progress:
                    progress(done_tiles / total_tiles, f"tile {done_tiles}/{total_tiles}")
            final_end = ys[index + 1] if index + 1 < len(ys) else height
            count = final_end - emitted_until
            if count > 0:
                rows = slice(emitted_until - buffer_top, final_end - buffer_top)
                total = weight[rows, :width]
                missing = ~valid_buf[rows, :width]
                building = acc[0, rows, :width] / total
                np.subtract(1.0, building, out=building)
                building[missing] = 0.0
                interior = acc[1, rows, :width] / total
                interior[missing] = 0.0
                # float16 halves what waits in the queue and in the vectoriser; thresholds need no more.
                yield ProbabilityStrip(emitted_until, building.astype(np.float16), interior.astype(np.float16),
                                       index + 1 == len(ys))
                emitted_until = final_end
            # Drop the emitted rows from the accumulators.
            shift = emitted_until - buffer_top
            if shift > 0:
                for array in (acc, weight, valid_buf):
                    array[..., : buffer_rows - shift, :] = array[..., shift:, :].copy()
                    array[..., buffer_rows - shift :, :] = 0
                buffer_top = emitted_until
    if emitted_until < height:  # cannot happen; guards the memory design
        raise RuntimeError("rows left unprocessed")


def run_in_background(iterator: Iterator, maxsize: int = 2) -> Iterator:
    """Drive ``iterator`` in a worker thread so its consumer runs concurrently with it."""
    items: queue.Queue = queue.Queue(maxsize=maxsize)
    stop = threading.Event()
    sentinel = object()

    def worker() -> None:
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        items.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put((sentinel, None))
        except BaseException as exc:  # re-raised in the consumer
            items.put((sentinel, exc))

    thread = threading.Thread(target=worker, name="footprint-infer", daemon=True)
    thread.start()
    try:
        while True:
            item, error = items.get()
            if item is sentinel:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()

