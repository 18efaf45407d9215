"""Faults in the middle of a run: every stage (reader, model, vectoriser, sink) fails or is cancelled,
and the caller gets that error within about a second, with no thread and no file left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from osgeo import gdal

from footprint_plugin.core import vectorize
from footprint_plugin.core.errors import CancelledError, FootprintError
from footprint_plugin.core.parameters import ExtractionParameters
from footprint_plugin.core.pipeline import run
from footprint_plugin.core.readers import RasterioReader
from footprint_plugin.core.sinks import ListSink, open_output
from footprint_plugin.core.tiling import TilingOptions
from trainer.cli import main

from .helpers import DEFAULT_WEIGHTS, REPO, ProbeModel, paint, probe_card, write_raster

BOXES = [(10 + 40 * i, 10 + 30 * j, 30 + 40 * i, 35 + 30 * j) for i in range(9) for j in range(6)]
QUICK_S = 1.5  # "about a second", with room for a busy 2-core machine


class Trigger:
    """Counts calls of one stage; from the ``at``-th on it fails (``error``) or asks to cancel."""

    def __init__(self, at: int, error: BaseException | None = None) -> None:
        self.at, self.error = at, error
        self.calls = 0
        self.fired_at: float | None = None

    def __call__(self) -> None:
        self.calls += 1
        if self.calls >= self.at:
            if self.fired_at is None:
                self.fired_at = time.monotonic()
            if self.error is not None:
                raise self.error

    def cancelled(self) -> bool:
        return self.error is None and self.fired_at is not None


class TriggeredReader(RasterioReader):
    def __init__(self, path: Path, trigger: Trigger) -> None:
        super().__init__(path)
        self.trigger = trigger

    def read(self, window, out_shape, bands):
        self.trigger()
        return super().read(window, out_shape, bands)


class TriggeredModel(ProbeModel):
    def __init__(self, trigger: Trigger) -> None:
        super().__init__()
        self.trigger = trigger

    def forward(self, x):
        self.trigger()
        return super().forward(x)


class TriggeredSink(ListSink):
    def __init__(self, trigger: Trigger, delay: float = 0.0) -> None:
        super().__init__()
        self.trigger, self.delay = trigger, delay
        self.aborted = False

    def add(self, buildings):
        time.sleep(self.delay)
        self.trigger()
        super().add(buildings)

    def abort(self):
        self.aborted = True
        super().abort()


@pytest.fixture(scope="module")
def painted(tmp_path_factory) -> Path:
    # 400 rows: several strips at tile 64, overlap 16, so every stage runs many times.
    return write_raster(tmp_path_factory.mktemp("faults") / "painted.tif", paint(400, 200, BOXES))


def extract(raster: Path, stage: str, trigger: Trigger, sink=None) -> tuple[BaseException | None, float]:
    """Run the pipeline with ``trigger`` in ``stage``; the error and the seconds from the fault to the return."""
    parameters = ExtractionParameters(device="cpu", min_area_m2=0, regularize="none",
                                      tiling=TilingOptions(64, 16, 1, edge_margin=16))
    reader = TriggeredReader(raster, trigger) if stage == "reader" else RasterioReader(raster)
    network = TriggeredModel(trigger) if stage == "model" else ProbeModel()
    sink = sink or (TriggeredSink(trigger) if stage == "sink" else ListSink())
    error = None
    try:
        with reader:
            run(reader, parameters, sink, cancel=trigger.cancelled, model=(network, probe_card(64), "probe"))
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        error = exc
    returned = time.monotonic()
    return error, returned - (trigger.fired_at or returned)


@pytest.fixture()
def vectoriser_trigger(monkeypatch):
    """The vectoriser stage: StripVectorizer.add_maps calls the trigger (set per test) first."""
    holder: dict[str, Trigger] = {}
    original = vectorize.StripVectorizer.add_maps

    def add(self, *args, **kwargs):
        holder["trigger"]()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(vectorize.StripVectorizer, "add_maps", add)
    return holder


def threads_now() -> set[int]:
    return {thread.ident for thread in threading.enumerate()}


STAGES = ["reader", "model", "vectoriser", "sink"]


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("kind", ["error", "cancel"])
def test_a_fault_in_any_stage_stops_the_run_at_once(painted, vectoriser_trigger, stage, kind):
    before = threads_now()
    trigger = Trigger(at=3, error=OSError(28, "injected failure") if kind == "error" else None)
    vectoriser_trigger["trigger"] = trigger if stage == "vectoriser" else (lambda: None)
    sink = TriggeredSink(trigger) if stage == "sink" else TriggeredSink(Trigger(10**9))
    error, seconds = extract(painted, stage, trigger, sink)
    if kind == "error":
        assert isinstance(error, OSError) and "injected failure" in str(error), repr(error)
    else:
        assert isinstance(error, CancelledError), repr(error)
    assert trigger.fired_at is not None
    print(f"fault-matrix: {stage} {kind}: {type(error).__name__} after {seconds:.2f} s")
    assert seconds < QUICK_S, f"{stage} {kind}: returned {seconds:.2f} s after the fault"
    assert threads_now() == before, "a worker thread is still running"
    assert sink.aborted and not sink.buildings


def test_a_sink_that_fails_late_does_not_hang_the_run(painted):
    # The repro: each write sleeps 0.5 s then raises, while the queue is full and the reader done.
    before = threads_now()
    trigger = Trigger(at=1, error=OSError("sink failed"))
    started = time.monotonic()
    error, seconds = extract(painted, "sink", trigger, TriggeredSink(trigger, delay=0.5))
    assert isinstance(error, OSError)
    print(f"fault-matrix: sink fails after a 0.5 s write: {type(error).__name__} after {seconds:.2f} s")
    assert seconds < QUICK_S and time.monotonic() - started < 10
    assert threads_now() == before


def test_every_stage_runs_when_nothing_fails(painted, vectoriser_trigger):
    # The triggers above do sit in the stages: unfired, the same run finds every box.
    trigger = Trigger(at=10**9)
    vectoriser_trigger["trigger"] = trigger
    sink = TriggeredSink(Trigger(10**9))
    error, _ = extract(painted, "model", trigger, sink)
    assert error is None and len(sink.buildings) == len(BOXES) and sink.finished
    assert trigger.calls > 10  # model + vectoriser calls


def corrupt_tiled_raster(path: Path) -> tuple[int, int]:
    """A compressed, tiled GeoTIFF with one block in the middle overwritten; its block position."""
    data = np.random.default_rng(0).integers(0, 255, (3, 512, 512), dtype=np.uint8)
    profile = {"driver": "GTiff", "width": 512, "height": 512, "count": 3, "dtype": "uint8", "crs": "EPSG:32633",
               "transform": rasterio.Affine(0.3, 0, 500000, 0, -0.3, 6000000), "tiled": True,
               "blockxsize": 128, "blockysize": 128, "compress": "deflate", "interleave": "band"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    dataset = gdal.Open(str(path))  # kept: a band must not outlive its dataset
    band = dataset.GetRasterBand(1)
    offset = int(band.GetMetadataItem("BLOCK_OFFSET_1_2", "TIFF"))
    size = int(band.GetMetadataItem("BLOCK_SIZE_1_2", "TIFF"))
    band = dataset = None
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xff" * size)
    return 1 * 128, 2 * 128


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from .helpers import tiny_unet_weights

    return tiny_unet_weights(tmp_path_factory.mktemp("w") / "tiny.safetensors")


def test_corrupt_block_is_one_error_line_naming_file_and_position(tmp_path, tiny_weights, capsys):
    raster = tmp_path / "corrupt.tif"
    corrupt_tiled_raster(raster)
    out = tmp_path / "out.gpkg"
    before = threads_now()
    started = time.monotonic()
    code = main(["predict", "--input", str(raster), "--output", str(out), "--weights", str(tiny_weights),
                 "--tile-size", "64", "--quiet"])
    seconds = time.monotonic() - started
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    print(f"fault-matrix: corrupt block: exit {code} after {seconds:.2f} s: {lines}")
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: Input raster") and "corrupt.tif" in lines[0]
    assert "cannot read the pixels at column" in lines[0] and "row" in lines[0]
    assert seconds < 30 and threads_now() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.tif"]


@pytest.fixture()
def full_disk(tmp_path):
    """A 400 KB tmpfs, mostly filled (needs root; skipped where mounting is not allowed)."""
    folder = tmp_path / "full"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    (folder / "filler").write_bytes(b"\0" * 390 * 1024)  # about 10 KB left
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("suffix", [".gpkg", ".csv", ".geojson", ".fgb", ".shp"])
def test_disk_full_gives_one_line_and_no_file(full_disk, tmp_path, suffix):
    raster = REPO / "resources" / "sample" / "zanzibar_c1.tif"
    output = full_disk / f"buildings{suffix}"
    result = subprocess.run([sys.executable, "-m", "trainer", "predict", "--input", str(raster), "--output",
                             str(output), "--weights", str(DEFAULT_WEIGHTS), "--quiet"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    print(f"fault-matrix: disk full {suffix}: exit {result.returncode}: {lines}")
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith(f"error: Output {output}: cannot write the file ("), lines
    assert "()" not in lines[0] and "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


def test_writer_cleanup_after_a_failed_write_never_raises(full_disk):
    from shapely.geometry import box

    from footprint_plugin.core.buildings import Building

    (full_disk / "filler").unlink()  # room for an empty GeoPackage, not for 20,000 buildings
    with RasterioReader(REPO / "resources" / "sample" / "philippines_c1.tif") as reader:
        sink = open_output(full_disk / "b.gpkg", reader.crs_wkt, reader.transform, "b")
    many = [Building(box(i, 0, i + 0.5, 0.5), 1.0, 0.5) for i in range(20000)]
    with pytest.raises(FootprintError, match="cannot write the file"):
        sink.add(many)
        sink.commit()
    sink.abort()
    sink.abort()  # twice is harmless
    assert not list(full_disk.iterdir())


def _default_sigint() -> None:
    """In the child: Ctrl-C as in a terminal, even when the test runs as a background job (which ignores it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _descendants(pid: int) -> set[int]:
    """Process ids of ``pid``'s children, their children, and so on (from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit():
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _running(pids: set[int]) -> list[int]:
    """Those of ``pids`` still running (not gone, not a zombie waiting to be reaped)."""
    alive = []
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                alive.append(pid)
        except (OSError, IndexError):
            continue
    return alive


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_stops_predict_at_once_with_exit_130_and_no_file(tmp_path, workers):
    # Real imagery (the Zanzibar sample repeated to 3072 x 3072 px), so buildings reach the workers early.
    from tools.mosaics import mosaic_vrt

    raster = mosaic_vrt(REPO / "resources" / "sample" / "zanzibar_c1.tif", 3072, tmp_path / "big.vrt")
    output = tmp_path / "big.gpkg"
    process = subprocess.Popen([sys.executable, "-m", "trainer", "predict", "--input", str(raster), "--output",
                                str(output), "--weights", str(DEFAULT_WEIGHTS), "--device", "cpu", "--quiet",
                                "--vectorize-workers", workers],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=_default_sigint)
    deadline = time.monotonic() + 60
    while not (tmp_path / "big.partial.gpkg").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)  # inside the run: model loaded, output open, inference going
    helpers = _descendants(process.pid)  # the vectorising workers and their forkserver, once started
    while workers == "2" and len(helpers) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
        helpers = _descendants(process.pid)
    assert process.poll() is None, "the run ended before the interrupt"
    if workers == "2":
        assert len(helpers) >= 3, "the vectorising workers had not started"  # forkserver + 2 workers
    process.send_signal(signal.SIGINT)
    sent = time.monotonic()
    try:
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
    seconds = time.monotonic() - sent
    lines = [line for line in err.splitlines() if line.strip()]
    print(f"fault-matrix: SIGINT ({workers} vectorising process(es)): exit {process.returncode} after "
          f"{seconds:.2f} s: {lines}")
    assert process.returncode == 130, err[-2000:]
    assert lines == ["interrupted"], err[-2000:]
    assert seconds < 5, f"exit {seconds:.1f} s after SIGINT"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.vrt"]
    deadline = time.monotonic() + 5  # the workers and their forkserver exit once the run's pipes close
    while _running(helpers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _running(helpers), "a vectorising helper process outlived the run"


def test_a_killed_vectorising_worker_ends_the_run_with_one_line_and_no_file(tmp_path):
    from tools.mosaics import mosaic_vrt

    raster = mosaic_vrt(REPO / "resources" / "sample" / "zanzibar_c1.tif", 3072, tmp_path / "big.vrt")
    output = tmp_path / "big.gpkg"
    process = subprocess.Popen([sys.executable, "-m", "trainer", "predict", "--input", str(raster), "--output",
                                str(output), "--weights", str(DEFAULT_WEIGHTS), "--device", "cpu", "--quiet",
                                "--vectorize-workers", "2"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    helpers: set[int] = set()
    while len(helpers) < 3 and time.monotonic() < deadline:  # the forkserver and its two workers
        time.sleep(0.2)
        helpers = _descendants(process.pid)
    assert len(helpers) >= 3 and process.poll() is None, "the vectorising workers had not started"
    parents = {pid: int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) for pid in helpers}
    # A worker: a child of the forkserver (itself a helper), not the forkserver or the resource tracker.
    worker = next(pid for pid in helpers if parents[pid] in helpers and pid not in parents.values())
    time.sleep(1.0)  # inside the run
    os.kill(worker, signal.SIGKILL)
    killed = time.monotonic()
    try:
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
    seconds = time.monotonic() - killed
    lines = [line for line in err.splitlines() if line.strip()]
    print(f"fault-matrix: SIGKILL of a vectorising worker: exit {process.returncode} after {seconds:.2f} s: {lines}")
    assert process.returncode == 2, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: A vectorising worker process stopped"), err[-2000:]
    assert seconds < QUICK_S + 1.5, f"exit {seconds:.1f} s after the kill"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.vrt"]
    deadline = time.monotonic() + 5
    while _running(helpers - {worker}) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _running(helpers - {worker}), "a vectorising helper process outlived the run"
