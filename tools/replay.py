"""Replay: the post-processing of a run as a GPU user sees it, measured on any CPU.

The class maps of a raster are computed once with the real model and cached (``out/replay-cache/``). A replay
then runs the whole pipeline (vectorising, outline clean-up, the GeoPackage) with a model stage that hands
over the cached maps at once: the model's cost disappears exactly as on a fast GPU. It reports the wall time,
buildings, Mpx/s and the CPU seconds of the run's own process ("main") and of its vectorising workers.
"""

from __future__ import annotations

import hashlib
import json
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CACHE = REPO / "out" / "replay-cache"


def _key(raster: Path, weights: Path | None) -> str:
    stat = raster.stat()
    weights = weights or REPO / "resources" / "default_weights.safetensors"
    text = f"{raster.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{hashlib.sha1(weights.read_bytes()).hexdigest()}"
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def class_maps_cache(raster: Path, weights: Path | None = None, folder: Path = CACHE, device: str = "cpu") -> Path:
    """The cached class maps of ``raster`` (computed now with the model on ``device`` when missing); returns the
    file."""
    from footprint_plugin.core.area import Area
    from footprint_plugin.core.extract import extract
    from footprint_plugin.core.parameters import ExtractionParameters
    from footprint_plugin.core.pipeline import set_up
    from footprint_plugin.core.readers import RasterioReader
    from footprint_plugin.core.sinks import ListSink

    path = folder / f"{raster.stem}-{device.replace(':', '')}-{_key(raster, weights)}.npz"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    parameters = ExtractionParameters(weights=str(weights) if weights else None, device=device)
    arrays, strips = {}, []
    with RasterioReader(raster) as reader:
        model_maps = set_up(reader, parameters, Area()).model_class_maps()

        def recording(progress, cancelled, window):
            for strip in model_maps(progress, cancelled, window):
                index = len(strips)
                strips.append({"window": list(window), "row_start": strip.row_start, "last": strip.last})
                for name, array in zip(("building", "seeds", "probability"), strip.maps.arrays()):
                    arrays[f"{index}_{name}"] = array
                yield strip

        extract(reader, parameters, sinks=[ListSink()], class_maps=recording)
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, strips=np.frombuffer(json.dumps(strips).encode(), np.uint8), **arrays)
    partial.replace(path)
    return path


class CachedClassMaps:
    """A class-map source that hands over the cached strips of a one-block run, cut to each block's window."""

    def __init__(self, path: Path) -> None:
        from footprint_plugin.core.inference import ClassStrip
        from footprint_plugin.core.instances import ClassMaps

        with np.load(path) as data:
            meta = json.loads(bytes(data["strips"]).decode())
            self.strips = [ClassStrip(m["row_start"], ClassMaps(
                *(data[f"{i}_{name}"] for name in ("building", "seeds", "probability"))), m["last"])
                for i, m in enumerate(meta)]
        self._class_strip, self._class_maps = ClassStrip, ClassMaps

    def __call__(self, progress, cancelled, window) -> Iterator:
        top, bottom, left, right = window
        inside = [strip for strip in self.strips
                  if strip.row_start < bottom and strip.row_start + len(strip.maps.building) > top]
        for index, strip in enumerate(inside):
            first = max(top, strip.row_start) - strip.row_start
            end = min(bottom, strip.row_start + len(strip.maps.building)) - strip.row_start
            maps = self._class_maps(*(array[first:end, left:right] for array in strip.maps.arrays()))
            yield self._class_strip(strip.row_start + first, maps, index + 1 == len(inside))


def replay(raster: Path, cache: Path, workers: int, regularize: str = "orthogonal",
           output: Path | None = None, device: str = "cpu") -> dict:
    """One replay of the cached maps of ``raster`` into a GeoPackage with ``workers`` vectorising processes."""
    from footprint_plugin.core.extract import extract
    from footprint_plugin.core.parameters import ExtractionParameters
    from footprint_plugin.core.pipeline import load_model
    from footprint_plugin.core.readers import RasterioReader
    from footprint_plugin.core.workers import start_workers

    maps = CachedClassMaps(cache)
    model = load_model(None)  # before the clock: a replay measures what follows the model
    started = time.perf_counter()
    pool = start_workers(workers, "cpu")  # started before the clock too (reported apart)
    start_seconds = time.perf_counter() - started
    output = output or Path(tempfile.mkdtemp(prefix="replay-")) / "buildings.gpkg"
    parameters = ExtractionParameters(device=device, vectorize_workers=workers, regularize=regularize)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    try:
        with RasterioReader(raster) as reader:
            summary = extract(reader, parameters, output=output, class_maps=maps, model=model, workers=pool)
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        if pool is not None:
            pool.close()
    main_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    worker_cpu = float(summary.worker_cpu_s or 0.0)
    mpx = summary.grid.width * summary.grid.height / 1e6
    return {"raster": raster.name, "size": f"{summary.grid.width}x{summary.grid.height}", "workers": workers,
            "buildings": summary.count, "seconds": seconds, "mpx_per_s": mpx / seconds,
            "buildings_per_s": summary.count / seconds, "main_cpu_s": main_cpu, "worker_cpu_s": worker_cpu,
            "cpu_ms_per_building": 1000 * (main_cpu + worker_cpu) / max(1, summary.count),
            "main_share": main_cpu / max(1e-9, main_cpu + worker_cpu), "workers_start_s": start_seconds,
            "output": str(output)}
