"""A Dask cluster as the engine for more than one machine: blocks are tasks, this process writes.

``--cluster local:N`` starts a ``dask.distributed`` LocalCluster of N worker processes here; ``--cluster
tcp://HOST:8786`` uses a running scheduler, whose workers must see the rasters at the same paths. Each block
(:mod:`.blocks`) is one task: the worker loads the weights once (sent by this process as bytes), reads the
block's window, runs the model on its own GPU or CPU and the vectoriser, and sends the buildings back as WKB with
their attributes. This process writes them and the block's journal row (:mod:`.journal`), with a bounded number of
blocks in flight, so its memory stays flat. A worker that dies has its block run again elsewhere (Dask's own
rescheduling, and ``retries`` for a task that failed), and the output stays exact: a block is written only once
it came back whole. Dask is optional: without it everything else works.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .area import Area
from .buildings import Building
from .errors import CancelledError, FootprintError
from .inference import CancelCheck, ProgressCallback
from .parameters import ExtractionParameters, vectorize_options
from .pipeline import BlockJournal, Model, Summary, block_buildings, plan_run_blocks, set_up
from .readers import RasterioReader
from .sinks import Sink

if TYPE_CHECKING:
    from .inputs import RasterGroup
    from .readers import WindowReader

INSTALL_HINT = "pip install 'dask[distributed]' (or pip install 'building-footprints[cluster]')"
IN_FLIGHT_PER_WORKER = 2  # blocks handed out per worker: one running, one waiting
RETRIES = 2  # a block whose task failed runs this many times more
POLL_S = 0.25


@dataclass(frozen=True)
class BlockTask:
    """One block for a worker: the raster (a path the workers see; a mosaic VRT travels as its text), the run's
    parameters, the block's index in the plan and the weights' digest."""

    raster: str
    vrt_text: str | None
    parameters: ExtractionParameters
    block: int
    weights_digest: str


@dataclass
class BlockResult:
    """What a worker sends back: the block's buildings (WKB, area, score, centre), its window's pixels, and how it
    went."""

    block: int
    buildings: list[tuple[bytes, float, float, tuple[float, float]]]
    pixels: int
    seconds: float
    device: str
    worker: str
    warnings: list[str] = field(default_factory=list)


_MODELS: dict[str, Model] = {}  # per worker process: the weights loaded once ...
_PREDICTORS: dict[tuple, Any] = {}  # ... and prepared for the device once


def run_block(task: BlockTask, weights: bytes) -> BlockResult:
    """A worker's task: the buildings of one block."""
    import socket

    started = time.perf_counter()
    warnings: list[str] = []
    model = _model(task.weights_digest, weights)
    with RasterioReader(_raster_path(task)) as reader:
        setup = set_up(reader, task.parameters, Area(), model, warnings.append)
        tiling = task.parameters.tiling
        key = (task.weights_digest, str(setup.device), tiling.amp, tiling.backend)
        setup._predictor = _PREDICTORS.get(key)
        if setup._predictor is None:
            _PREDICTORS.clear()
            _PREDICTORS[key] = setup.predictor
        blocks = plan_run_blocks(setup.plan, task.parameters.tiling)
        block = blocks.blocks[task.block]
        options = vectorize_options(task.parameters, card=setup.card)
        found: list[Building] = []
        for buildings in block_buildings(setup.plan, blocks, block, setup.model_class_maps(), options, None, None,
                                         warnings.append):
            found += buildings
    return BlockResult(task.block, [(b.wkb, b.area_m2, b.score, b.centre) for b in found], block.window_pixels,
                       time.perf_counter() - started, setup.device_name(), f"{socket.gethostname()}:{os.getpid()}",
                       list(dict.fromkeys(warnings)))


def _model(digest: str, weights: bytes) -> Model:
    """The weights of ``digest`` as a model, loaded once per worker process (checked like any weights file)."""
    if digest not in _MODELS:
        from .weights import load_weights

        path = Path(tempfile.gettempdir()) / f"footprint-weights-{digest[:16]}.safetensors"
        if not path.is_file():
            partial = path.with_suffix(f".{os.getpid()}.partial")
            partial.write_bytes(weights)
            partial.replace(path)
        network, card = load_weights(path)
        _MODELS.clear()  # one model per worker
        _MODELS[digest] = (network, card, str(path))
    return _MODELS[digest]


def _raster_path(task: BlockTask) -> str:
    """The task's raster: its path, or its mosaic VRT written once into this worker's temporary folder."""
    if task.vrt_text is None:
        return task.raster
    digest = hashlib.sha1(task.vrt_text.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"footprint-mosaic-{digest}.vrt"
    if not path.is_file():
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(task.vrt_text, encoding="utf-8")
        partial.replace(path)
    return str(path)


class ClusterEngine:
    """A Dask client (and the LocalCluster it started, if any) that runs the blocks of a run."""

    def __init__(self, client: Any, cluster: Any = None, warn: Callable[[str], None] | None = None) -> None:
        self.client, self.cluster, self.warn = client, cluster, warn
        self._weights: dict[str, Any] = {}  # digest -> the scattered bytes

    @classmethod
    def connect(cls, spec: str, warn: Callable[[str], None] | None = None) -> ClusterEngine:
        """``local:N`` (a LocalCluster of N worker processes, one thread each) or a scheduler's address."""
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise FootprintError(f"--cluster needs Dask, which this Python lacks: {INSTALL_HINT}.") from None
        if spec.startswith("local:"):
            try:
                workers = int(spec.split(":", 1)[1])
            except ValueError:
                workers = 0
            if workers < 1:
                raise FootprintError(f"--cluster {spec}: give the number of worker processes, e.g. local:2.")
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
            return cls(Client(cluster), cluster, warn)
        if not spec.startswith(("tcp://", "tls://", "ws://", "wss://")):
            raise FootprintError(f"--cluster {spec}: give local:N or a scheduler address such as tcp://HOST:8786.")
        try:
            return cls(Client(spec, timeout="30s"), None, warn)
        except (OSError, TimeoutError) as exc:
            raise FootprintError(f"--cluster {spec}: cannot reach the scheduler ({exc}); is `dask scheduler` "
                                 "running there?") from None

    @property
    def workers(self) -> int:
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()

    def _scattered(self, model: Model) -> tuple[str, Any]:
        data = Path(model[2]).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest not in self._weights:
            self._weights[digest] = self.client.scatter(data, broadcast=True, hash=False)
        return digest, self._weights[digest]

    def stream(self, group: RasterGroup, reader: WindowReader, parameters: ExtractionParameters, sink: Sink,
               progress: ProgressCallback | None, cancel: CancelCheck | None, warn: Callable[[str], None] | None,
               model: Model, deliver: Callable[[list[Building]], list[Building]], journal: BlockJournal) -> Summary:
        """The blocks of one group of rasters on the cluster, written here as they come back (any order)."""
        started = time.perf_counter()
        warnings: list[str] = []
        setup = set_up(reader, parameters, Area(), model, warnings.append)
        blocks = plan_run_blocks(setup.plan, parameters.tiling)
        todo = [block for block in blocks.blocks if not journal.done(block)]
        vrt_text = Path(group.path).read_text(encoding="utf-8") if len(group.rasters) > 1 else None
        digest, weights = self._scattered(model)
        tracker = _ClusterProgress(progress, blocks.blocks, todo)
        pending = list(reversed(todo))
        running: dict[Any, Any] = {}
        count, device, limit = 0, "", IN_FLIGHT_PER_WORKER * self.workers
        try:
            while pending or running:
                while pending and len(running) < limit:
                    block = pending.pop()
                    task = BlockTask(group.path, vrt_text, parameters, block.index, digest)
                    future = self.client.submit(run_block, task, weights, retries=RETRIES, pure=False,
                                                key=f"footprint-block-{group.index}-{block.index}-{time.time_ns()}")
                    running[future] = block
                done = [future for future in running if future.done()]
                if cancel and cancel():
                    raise CancelledError()
                if not done:
                    time.sleep(POLL_S)
                for future in done:
                    block = running.pop(future)
                    result = self._result(future, block.index)
                    buildings = deliver([Building.from_wkb(wkb, area, score, centre)
                                         for wkb, area, score, centre in result.buildings])
                    if buildings:
                        sink.add(buildings)
                        count += len(buildings)
                    journal.finished(sink, block)
                    device = device or result.device
                    for message in result.warnings:
                        if message not in warnings:
                            warnings.append(message)
                            if warn:
                                warn(message)
                    tracker.finished(block)
        finally:
            for future in running:
                future.cancel()
        return Summary(count, time.perf_counter() - started, f"cluster ({device or 'no block run'})", setup.plan.grid,
                       setup.card, setup.weights_path, setup.plan.reader.crs_wkt, setup.raster_name, warnings)

    @staticmethod
    def _result(future: Any, block: int) -> BlockResult:
        """A finished task's result; its failure as one line (the worker's own FootprintError as it is)."""
        try:
            return future.result()
        except FootprintError:
            raise
        except Exception as exc:  # noqa: BLE001 - a worker's failure of any kind, e.g. KilledWorker
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise FootprintError(f"Block {block} failed on the cluster ({type(exc).__name__}: {detail}).") from None


class _ClusterProgress:
    """Blocks done of all, Mpx/s and the time left, as blocks come back."""

    def __init__(self, progress: ProgressCallback | None, blocks: tuple, todo: list) -> None:
        self.progress = progress
        self.total = len(blocks)
        self.done = len(blocks) - len(todo)
        self.pixels_left = sum(block.window_pixels for block in todo)
        self.pixels = 0
        self.started = time.perf_counter()
        if progress:
            progress(self.done / max(1, self.total), f"block {self.done}/{self.total}")

    def finished(self, block: Any) -> None:
        self.done += 1
        self.pixels += block.window_pixels
        self.pixels_left -= block.window_pixels
        if self.progress is None:
            return
        from .pipeline import format_duration

        rate = self.pixels / max(1e-9, time.perf_counter() - self.started)
        self.progress(self.done / max(1, self.total), f"block {self.done}/{self.total} · {rate / 1e6:.2f} Mpx/s · "
                                                       f"{format_duration(self.pixels_left / rate)} left")
