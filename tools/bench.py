"""``make bench``: throughput and memory of the extraction on real imagery.

Prints a table and ends with one line:
``bench: e2e_vs_model=<ratio> mpx_per_s=<n> peak_rss_mb=<n> device=<d>``

* model-only forward throughput of the U-Net (default width and width 32) for each CPU path;
* end-to-end extraction (read, resample, infer, threshold, vectorise, write the GeoPackage) on VRT
  mosaics of real imagery of about 1k, 4k, 10k and 20k px squares, each in a fresh process so
  its peak RSS is its own; e2e_vs_model compares it with the model alone on the same tiles, timed
  just before and just after the run (the mean: this machine's speed drifts), and the CPU seconds
  of each thread say where the rest goes; the ceiling is the ratio those CPU seconds allow at
  best (the model alone against the run's CPU seconds spread over every core);
* the QGIS data-provider reader against the rasterio reader on the same raster;
* ``--replay``: the post-processing alone on cached class maps (``tools/replay.py``), with 1, 2 and all
  cores' processes, ending with one line:
  ``replay: ms_per_building=<n> scaling_2=<n> main_share=<n> buildings=<n>``;
* CUDA figures when a GPU is present.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tools.mosaics import mosaic_vrt  # noqa: E402

SHARED_SOURCE = REPO.parent / "shared" / "data" / "banepa_north" / "banepa_north.tif"
SAMPLE_SOURCE = REPO / "resources" / "sample" / "philippines_c1.tif"
SIZES = [1024, 4096, 10240, 20480]


def peak_rss_mb() -> float:
    """Peak resident memory of this process image (VmHWM).

    Not ru_maxrss: on Linux that survives exec, so a child started from the benchmark's own large
    process would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_forward(predictor, batch, repeats: int, warm_up: int = 1) -> float:
    """Seconds per forward pass of ``batch`` (after ``warm_up`` passes)."""
    for _ in range(warm_up):
        predictor.probabilities(batch)
    started = time.perf_counter()
    for _ in range(repeats):
        predictor.probabilities(batch)
    return (time.perf_counter() - started) / repeats


def model_only_table(weights: Path, batch_size: int, tile: int) -> list[dict]:
    """Model-only Mpx/s for every CPU path, for the default network and the walkthrough's width 32."""
    import numpy as np
    import torch

    from footprint_plugin.core.model import UNet, UNetConfig
    from footprint_plugin.core.onnx_cache import onnx_session as _onnx_session
    from footprint_plugin.core.onnx_cache import onnxruntime_available as _onnxruntime_available
    from footprint_plugin.core.predictor import Predictor
    from footprint_plugin.core.weights import load_weights

    default_model, card = load_weights(weights)
    rows = []
    batch = np.random.default_rng(0).normal(size=(batch_size, 3, tile, tile)).astype(np.float32)
    tensor = torch.from_numpy(batch)
    for width in sorted({card.config.base_filters, 32}):
        model = default_model if width == card.config.base_filters else UNet(UNetConfig(base_filters=width)).eval()
        label = f"width {width}" + (" (default)" if model is default_model else "")
        with torch.inference_mode():
            for name, channels_last in (("torch eager", False), ("torch eager channels_last", True)):
                net = model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
                x = tensor.contiguous(memory_format=torch.channels_last) if channels_last else tensor
                net(x)
                started = time.perf_counter()
                for _ in range(2):
                    net(x)
                seconds = (time.perf_counter() - started) / 2
                rows.append({"network": label, "path": name, "mpx_per_s": batch_size * tile * tile / seconds / 1e6})
        model_card = card if model is default_model else type(card)(model_args=model.config.to_dict(), tile_size=tile)
        predictor = Predictor(model, model_card, "cpu", backend="torch")
        seconds = time_forward(predictor, batch, 2)
        rows.append({"network": label, "path": "engine: BN folded + channels_last",
                     "mpx_per_s": batch_size * tile * tile / seconds / 1e6})
        if _onnxruntime_available():
            for arena in (True, False):
                predictor.session = _onnx_session(predictor.model, 3, torch.get_num_threads(), memory_arena=arena)
                seconds = time_forward(predictor, batch, 2)
                rows.append({"network": label, "path": f"ONNX Runtime, BN folded, arena {'on' if arena else 'off'}",
                             "mpx_per_s": batch_size * tile * tile / seconds / 1e6})
    return rows


def model_alone(raster: Path, weights: Path, device: str, batch_size: int | None, amp: bool = True) -> dict:
    """Seconds of the model alone on the tiles an extraction of ``raster`` infers (up to 32 timed)."""
    import numpy as np

    from footprint_plugin.core.geo import model_grid
    from footprint_plugin.core.inference import plan_inference
    from footprint_plugin.core.pipeline import load_model
    from footprint_plugin.core.predictor import Predictor
    from footprint_plugin.core.readers import RasterioReader
    from footprint_plugin.core.tiling import TilingOptions, tile_starts

    tiling = TilingOptions(batch_size=batch_size, amp=amp)
    model, card, _ = load_model(str(weights))
    predictor = Predictor(model, card, device, amp=amp)
    with RasterioReader(raster) as reader:
        grid = model_grid(reader.crs_wkt, reader.transform, reader.width, reader.height, card.resolution_m)
    plan = plan_inference(None, grid, [1, 2, 3], tiling, predictor.card, predictor.device.type)
    padded, batch_n = plan.padded, plan.batch_size  # the tiles the run infers, as large as it uses them
    tiles = (len(tile_starts(padded.width, padded.tile_width, padded.stride_x))
             * len(tile_starts(padded.height, padded.tile_height, padded.stride_y)))
    batch = np.random.default_rng(0).normal(size=(batch_n, 3, padded.tile_height, padded.tile_width)).astype(np.float32)
    full_batches, rest = divmod(tiles, batch_n)
    if predictor.device.type == "cuda":
        import torch

        torch.cuda.synchronize()
    per_batch = time_forward(predictor, batch, max(1, min(full_batches, 32)))
    seconds = full_batches * per_batch + (time_forward(predictor, batch[:rest], 1) if rest else 0.0)
    return {"seconds": seconds, "tiles": tiles}


def run_e2e(raster: Path, weights: Path, device: str, batch_size: int | None, amp: bool = True) -> dict:
    """One end-to-end extraction to a GeoPackage with the CPU seconds of its threads, then the model
    alone on the same tiles (this process)."""
    from footprint_plugin.core.extract import extract
    from footprint_plugin.core.parameters import ExtractionParameters
    from footprint_plugin.core.readers import RasterioReader
    from footprint_plugin.core.tiling import TilingOptions

    out = Path(tempfile.mkdtemp(prefix="bench-")) / "buildings.gpkg"
    tiling = TilingOptions(batch_size=batch_size, amp=amp)
    with RasterioReader(raster) as reader, ThreadCpu() as cpu:
        result = extract(reader, ExtractionParameters(weights=str(weights), device=device, tiling=tiling), output=out)
    e2e_rss = peak_rss_mb()
    alone = model_alone(raster, weights, device, batch_size, amp)
    grid = result.grid
    mpx = grid.width * grid.height / 1e6
    return {"size": f"{grid.width}x{grid.height}", "mpx": mpx, "tiles": alone["tiles"], "seconds": result.seconds,
            "buildings": result.count, "device": result.device, "e2e_mpx_per_s": mpx / result.seconds,
            "model_seconds": alone["seconds"], "peak_rss_mb": e2e_rss, "s_per_mpx": result.seconds / mpx,
            "cpu_s": cpu.seconds}


class ThreadCpu:
    """CPU seconds of this process's threads while the block runs, by job: ``model`` (the inference
    thread and torch's own threads), ``main`` (vectorising and writing), ``read`` (reading and
    normalising). Linux (/proc); empty elsewhere."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._latest: dict[str, tuple[str, float]] = {}
        self._done = threading.Event()

    def _sample(self) -> None:
        names = {str(thread.native_id): thread.name for thread in threading.enumerate()}
        tick = os.sysconf("SC_CLK_TCK")
        for tid in os.listdir("/proc/self/task"):
            try:
                fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            name = names.get(tid, "")
            job = ("main" if name == "MainThread" else "read" if name.startswith("footprint-read")
                   else "watch" if name == "bench-cpu" else "model")
            self._latest[tid] = (job, (int(fields[11]) + int(fields[12])) / tick)

    def _watch(self) -> None:
        while not self._done.wait(0.1):
            self._sample()

    def __enter__(self) -> ThreadCpu:
        if Path("/proc/self/task").is_dir():
            self._sample()
            self._start = dict(self._latest)
            self._thread = threading.Thread(target=self._watch, name="bench-cpu", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not hasattr(self, "_thread"):
            return
        self._done.set()
        self._thread.join()
        self._sample()
        for tid, (job, total) in self._latest.items():
            if job != "watch":
                start = self._start.get(tid, (job, 0.0))[1]
                self.seconds[job] = round(self.seconds.get(job, 0.0) + total - start, 1)


def reader_comparison(raster: Path) -> dict:
    """Seconds to read the raster in 256-row strips through rasterio and through QGIS's provider."""
    from footprint_plugin.core.readers import RasterioReader

    def read_all(reader) -> float:
        started = time.perf_counter()
        for row in range(0, reader.height, 256):
            rows = min(256, reader.height - row)
            reader.read((0, row, reader.width, rows), (rows, reader.width), [1, 2, 3])
        return reader.width * reader.height / 1e6 / (time.perf_counter() - started)

    result = {}
    with RasterioReader(raster) as reader:
        result["rasterio"] = read_all(reader)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    try:
        from qgis.core import QgsApplication, QgsRasterLayer

        app = QgsApplication([], False)
        app.initQgis()
        from footprint_plugin.qgis_io.provider_reader import QgisProviderReader

        result["qgis_provider"] = read_all(QgisProviderReader(QgsRasterLayer(str(raster), "bench")))
    except ImportError:
        result["qgis_provider"] = None
    return result


def run_processing(raster: Path, weights: Path) -> dict:
    """The Processing algorithm (``processing.run``, as the QGIS GUI and models call it) in this process:
    seconds and peak RSS, to compare with the command line's on the same raster."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.append("/usr/share/qgis/python/plugins")
    from qgis.core import QgsApplication, QgsRasterLayer

    app = QgsApplication([], False)
    app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    import footprint_plugin

    plugin = footprint_plugin.classFactory(None)
    plugin.initProcessing()
    import processing

    layer = QgsRasterLayer(str(raster), "bench")
    out = Path(tempfile.mkdtemp(prefix="bench-qgis-")) / "buildings.gpkg"
    started = time.perf_counter()
    processing.run("footprint:extract_buildings", {"INPUT": layer, "WEIGHTS": str(weights), "DEVICE": 1,
                                                   "OUTPUT": str(out)})
    seconds = time.perf_counter() - started
    from osgeo import ogr

    dataset = ogr.Open(str(out))  # kept while its layer is used
    count = dataset.GetLayer(0).GetFeatureCount()
    return {"size": f"{layer.width()}x{layer.height()}", "seconds": seconds, "buildings": count,
            "peak_rss_mb": peak_rss_mb()}


def child(args: list[str]) -> dict:
    command = [sys.executable, __file__, *args]
    output = subprocess.run(command, capture_output=True, text=True, check=False)
    if output.returncode != 0:
        raise SystemExit(f"bench step failed: {' '.join(args)}\n{output.stderr[-3000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def e2e_row(vrt: Path, weights: Path, device: str, extra: list[str] | None = None) -> dict:
    """An end-to-end run (fresh process) against the model alone on its tiles, timed in a fresh
    process just before it and in the run's process just after it: the mean, as this machine's
    speed drifts between minutes."""
    common = ["--weights", str(weights), "--device", device, *(extra or [])]
    before = child(["--model-alone", str(vrt), *common])["seconds"]
    row = child(["--e2e", str(vrt), *common])
    model_s = (before + row["model_seconds"]) / 2
    row.update(model_seconds_before_after=[round(before, 2), round(row["model_seconds"], 2)],
               model_mpx_per_s=row["mpx"] / model_s, e2e_vs_model=model_s / row["seconds"],
               ceiling=cpu_ceiling(model_s, sum(row["cpu_s"].values())))
    return row


def cpu_ceiling(model_seconds: float, run_cpu_seconds: float, cores: int | None = None) -> float:
    """The highest e2e/model ratio the run's own CPU seconds allow: even packed perfectly onto the
    cores, the run takes at least its CPU seconds / cores (nan without CPU figures)."""
    if not run_cpu_seconds:
        return float("nan")
    floor = run_cpu_seconds / (cores or os.cpu_count() or 1)
    return model_seconds / max(model_seconds, floor)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=REPO / "resources" / "default_weights.safetensors")
    parser.add_argument("--sizes", type=int, nargs="*", default=SIZES)
    parser.add_argument("--e2e", type=Path, help=argparse.SUPPRESS)  # internal: one run in this process
    parser.add_argument("--model-alone", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--readers", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--processing", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--replay", action="store_true",
                        help="only the replay: the post-processing as a GPU user sees it (cached class maps), with "
                             "1, 2 and all cores' processes, on the dense 4k mosaic and the Banepa-north mosaic")
    parser.add_argument("--replay-one", nargs=2, metavar=("RASTER", "WORKERS"), help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3, help="replay: runs of each setting; the best counts")
    parser.add_argument("--processing-sizes", type=int, nargs="*", default=[4096, 10240],
                        help="mosaic sizes the Processing algorithm runs on (peak RSS next to the CLI's)")
    parser.add_argument("--e2e-only", action="store_true", help="only the end-to-end rows (to repeat them)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-amp", action="store_true")
    args = parser.parse_args()
    if args.e2e:
        print(json.dumps(run_e2e(args.e2e, args.weights, args.device, None, amp=not args.no_amp)))
        return 0
    if args.model_alone:
        print(json.dumps(model_alone(args.model_alone, args.weights, args.device, None, amp=not args.no_amp)))
        return 0
    if args.readers:
        print(json.dumps(reader_comparison(args.readers)))
        return 0
    if args.replay_one:
        from tools.replay import class_maps_cache, replay

        raster = Path(args.replay_one[0])
        print(json.dumps(replay(raster, class_maps_cache(raster), int(args.replay_one[1]))))
        return 0
    if args.replay:
        return replay_table(args.rounds)
    if args.processing:
        print(json.dumps(run_processing(args.processing, args.weights)), flush=True)
        os._exit(0)  # QGIS 3.22 may crash while tearing down; the result is out

    import torch

    source = SHARED_SOURCE if SHARED_SOURCE.is_file() else SAMPLE_SOURCE
    work = Path(tempfile.mkdtemp(prefix="footprint-bench-"))
    print(f"bench on {source.name} (real OpenAerialMap imagery), torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads, weights {args.weights.name}\n", flush=True)

    if not args.e2e_only:
        print("Model only, batch 4 of 256x256 tiles (CPU):")
        print(f"  {'network':<20} {'path':<36} {'Mpx/s':>7}")
        for row in model_only_table(args.weights, 4, 256):
            print(f"  {row['network']:<20} {row['path']:<36} {row['mpx_per_s']:7.2f}", flush=True)

    print("\nEnd to end, read -> GeoPackage (CPU, default network and tiles, each size in a fresh process):")
    print(f"  {'raster':<13} {'Mpx':>6} {'tiles':>6} {'seconds':>8} {'s/Mpx':>6} {'e2e Mpx/s':>9} "
          f"{'model Mpx/s':>11} {'e2e/model':>9} {'ceiling':>7} {'peak RSS MB':>11} {'buildings':>9}  CPU s: model/main/read"
          "  model alone s: before/after")
    results = []
    for size in args.sizes:
        vrt = mosaic_vrt(source, size, work / f"mosaic_{size}.vrt")
        row = e2e_row(vrt, args.weights, "cpu")
        results.append(row)
        print(f"  {row['size']:<13} {row['mpx']:6.1f} {row['tiles']:6d} {row['seconds']:8.1f} {row['s_per_mpx']:6.2f} "
              f"{row['e2e_mpx_per_s']:9.2f} {row['model_mpx_per_s']:11.2f} {row['e2e_vs_model']:9.2f} {row['ceiling']:7.2f} "
              f"{row['peak_rss_mb']:11.0f} {row['buildings']:9d}  "
              + "/".join(f"{row['cpu_s'].get(job, float('nan')):.1f}" for job in ("model", "main", "read"))
              + "  " + "/".join(f"{seconds:.1f}" for seconds in row["model_seconds_before_after"]), flush=True)

    if args.e2e_only:
        return summary_line(results)

    print("\nProcessing algorithm (processing.run in QGIS, QgsFeatureSink -> GeoPackage, fresh process each):")
    print(f"  {'raster':<13} {'seconds':>8} {'peak RSS MB':>11} {'CLI peak RSS MB':>15} {'buildings':>9}")
    for size in args.processing_sizes:
        vrt = work / f"mosaic_{size}.vrt"
        if not vrt.is_file():
            mosaic_vrt(source, size, vrt)
        row = child(["--processing", str(vrt), "--weights", str(args.weights)])
        cli = next((r["peak_rss_mb"] for r in results if r["size"] == row["size"]), float("nan"))
        print(f"  {row['size']:<13} {row['seconds']:8.1f} {row['peak_rss_mb']:11.0f} {cli:15.0f} "
              f"{row['buildings']:9d}", flush=True)

    readers = child(["--readers", str(work / f"mosaic_{min(args.sizes, key=lambda s: abs(s - 4096))}.vrt")])
    print("\nReaders, whole raster in 256-row strips (Mpx/s): "
          f"rasterio {readers['rasterio']:.1f}, QGIS data provider "
          f"{readers['qgis_provider']:.1f}" if readers["qgis_provider"] else "QGIS not available")

    if torch.cuda.is_available():
        print(f"\nCUDA ({torch.cuda.get_device_name(0)}):")
        vrt = work / f"mosaic_{max(args.sizes)}.vrt"
        for amp in (True, False):
            extra = [] if amp else ["--no-amp"]
            row = e2e_row(vrt, args.weights, "cuda", extra)
            print(f"  AMP {'on ' if amp else 'off'}: e2e {row['e2e_mpx_per_s']:.1f} Mpx/s, model "
                  f"{row['model_mpx_per_s']:.1f} Mpx/s, e2e/model {row['e2e_vs_model']:.2f}", flush=True)
    else:
        print("\nCUDA: no GPU on this machine; GPU figures not measured here.")

    return summary_line(results)


def replay_table(rounds: int) -> int:
    """Replay rows for 1, 2 and every core's processes, and the one-line summary for the dense mosaic."""
    from footprint_plugin.core.workers import available_cores
    from tools.mosaics import DENSE_DATA, dense_mosaic, ensure_default_chips
    from tools.replay import class_maps_cache

    work = REPO / "out" / "bench"
    work.mkdir(parents=True, exist_ok=True)
    ensure_default_chips()
    dense = work / "dense_4096.tif"
    if not dense.is_file():
        dense_mosaic(DENSE_DATA, 4096, dense)
    source = SHARED_SOURCE if SHARED_SOURCE.is_file() else SAMPLE_SOURCE
    typical = mosaic_vrt(source, 4096, work / f"{source.stem}_4096.vrt")
    counts = sorted({1, 2, available_cores()})
    print(f"Replay: the post-processing of cached class maps (the model's cost gone, as on a fast GPU), "
          f"best of {rounds} runs each, {available_cores()} cores")
    print(f"  {'raster':<22} {'processes':>9} {'seconds':>8} {'Mpx/s':>7} {'buildings/s':>11} {'CPU ms/bldg':>11} "
          f"{'main share':>10} {'buildings':>9}")
    best_rows: dict = {}
    for raster in (dense, typical):
        class_maps_cache(raster)  # computed once, with the model, before any clock
        for count in counts:
            runs = [child(["--replay-one", str(raster), str(count)]) for _ in range(rounds)]
            best = max(runs, key=lambda r: r["mpx_per_s"])
            best["cpu_ms_per_building"] = min(r["cpu_ms_per_building"] for r in runs)
            best["main_share"] = min(r["main_share"] for r in runs)
            best_rows[(raster.name, count)] = best
            print(f"  {raster.name:<22} {count:9d} {best['seconds']:8.2f} {best['mpx_per_s']:7.2f} "
                  f"{best['buildings_per_s']:11.0f} {best['cpu_ms_per_building']:11.3f} {best['main_share']:10.3f} "
                  f"{best['buildings']:9d}", flush=True)
    one, two = best_rows[(dense.name, 1)], best_rows[(dense.name, 2)]
    print(f"\nreplay: ms_per_building={one['cpu_ms_per_building']:.3f} scaling_2={two['mpx_per_s'] / one['mpx_per_s']:.2f} "
          f"main_share={two['main_share']:.3f} buildings={one['buildings']}")
    return 0


def summary_line(results: list[dict]) -> int:
    reference = min(results, key=lambda r: abs(r["mpx"] - 16.8))  # the ~4k raster
    largest = max(results, key=lambda r: r["mpx"])
    print(f"\nbench: e2e_vs_model={reference['e2e_vs_model']:.2f} mpx_per_s={reference['e2e_mpx_per_s']:.2f} "
          f"peak_rss_mb={largest['peak_rss_mb']:.0f} device={reference['device'].split()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
