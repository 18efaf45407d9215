"""The GPU check: what a CUDA machine does with the dense 4k mosaic, stage by stage, in a few minutes.

    .venv/bin/python tools/gpu_check.py --out gpu_check.json          # on a CUDA machine (CPU without one)
    .venv/bin/python tools/gpu_check.py --smoke --out smoke.json      # a small mosaic, on the CPU (make test)

Builds the dense mosaic from ``data/default`` (``tools/mosaics.py``; with ``--smoke``, or without the data,
from the repository's sample rasters), then measures, each in Mpx/s of the mosaic:

* ``model_alone``: the network on tiles already on the device (AMP on CUDA, the engine's tile size), for a few
  batch sizes;
* ``class_maps``: ``Predictor.class_maps`` from raw host pixels to host maps (the engine's batch);
* ``reading``: reading the raster row of tiles by row of tiles, with one thread and with the engine's threads;
* ``replay``: the post-processing of the run's cached class maps, with one process and with every core;
* ``end_to_end``: a whole extraction into a GeoPackage, with one vectorising process and with the automatic
  number; its ratio to ``class_maps``.

Everything goes into one JSON file (``--out``) and a line per measurement on the screen.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _seconds(function, repeats: int, synchronize) -> float:
    """Best time of ``repeats`` calls after one warm-up call."""
    function()
    synchronize()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        synchronize()
        best = min(best, time.perf_counter() - started)
    return best


def model_alone(predictor, tile: int, batches: list[int], repeats: int, synchronize) -> list[dict]:
    """The network on normalised tiles already on the device."""
    import torch

    rows = []
    for batch in batches:
        tensor = torch.randn(batch, 3, tile, tile, device=predictor.device).contiguous(memory_format=torch.channels_last)

        def forward(tensor=tensor):
            with torch.inference_mode(), torch.autocast(device_type="cuda", dtype=torch.float16, enabled=predictor.amp):
                predictor.model(tensor)

        seconds = _seconds(forward, repeats, synchronize)
        rows.append({"batch": batch, "tile": tile, "mpx_per_s": batch * tile * tile / seconds / 1e6})
    return rows


def class_maps_speed(predictor, plan, options, repeats: int, synchronize) -> dict:
    """``Predictor.class_maps`` from raw uint8 host tiles to host maps, at the engine's batch size."""
    import numpy as np

    padded = plan.padded
    raw = np.random.default_rng(0).integers(0, 255, (plan.batch_size, 3, padded.tile_height, padded.tile_width),
                                            dtype=np.uint8)
    seconds = _seconds(lambda: predictor.class_maps(raw, options, scale=255.0), repeats, synchronize)
    pixels = raw.shape[0] * raw.shape[2] * raw.shape[3]
    return {"batch": plan.batch_size, "tile": padded.tile_width, "mpx_per_s": pixels / seconds / 1e6}


def reading_speed(raster: Path, plan) -> dict:
    """Reading the raster row of tiles by row of tiles, as the engine does, with 1 thread and with its threads."""
    from concurrent.futures import ThreadPoolExecutor

    from footprint_plugin.core.inference import read_reflected, read_threads
    from footprint_plugin.core.readers import RasterioReader
    from footprint_plugin.core.tiling import tile_starts

    result = {}
    with RasterioReader(raster) as reader:
        padded = plan.padded
        rows = tile_starts(padded.height, padded.tile_height, padded.stride_y)
        engine_threads = read_threads(reader, plan.grid)
        for threads in sorted({1, engine_threads}):
            with ThreadPoolExecutor(threads) as pool:
                started = time.perf_counter()
                for y0 in rows:
                    read_reflected(reader, plan.grid, plan.bands, padded.margin, (0, y0, padded.width, padded.tile_height),
                                   pool if threads > 1 else None)
                seconds = time.perf_counter() - started
            result[f"threads_{threads}"] = plan.grid.width * plan.grid.height / 1e6 / seconds
    return result


def end_to_end(raster: Path, device: str, workers: int | None) -> dict:
    """A whole extraction into a GeoPackage (the model loaded before the clock)."""
    from footprint_plugin.core.extract import extract
    from footprint_plugin.core.parameters import ExtractionParameters
    from footprint_plugin.core.pipeline import load_model
    from footprint_plugin.core.readers import RasterioReader

    model = load_model(None)
    output = Path(tempfile.mkdtemp(prefix="gpu-check-")) / "buildings.gpkg"
    started = time.perf_counter()
    with RasterioReader(raster) as reader:
        summary = extract(reader, ExtractionParameters(device=device, vectorize_workers=workers), output=output,
                          model=model)
    seconds = time.perf_counter() - started
    mpx = summary.grid.width * summary.grid.height / 1e6
    return {"workers": workers or "automatic", "seconds": seconds, "mpx_per_s": mpx / seconds,
            "buildings": summary.count, "device": summary.device}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    parser.add_argument("--smoke", action="store_true", help="a 512 px mosaic of the sample rasters, on the CPU")
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu")
    parser.add_argument("--size", type=int, help="mosaic side, px (default 4096; 512 with --smoke)")
    args = parser.parse_args(argv)

    import torch

    from footprint_plugin.core.area import Area
    from footprint_plugin.core.devices import resolve_device
    from footprint_plugin.core.parameters import ExtractionParameters, vectorize_options
    from footprint_plugin.core.pipeline import set_up
    from footprint_plugin.core.readers import RasterioReader
    from footprint_plugin.core.workers import available_cores
    from tools.mosaics import DENSE_DATA, dense_mosaic
    from tools.replay import class_maps_cache, replay

    device = "cpu" if args.smoke else str(resolve_device(args.device))
    size = args.size or (512 if args.smoke else 4096)
    cuda = device.startswith("cuda")
    synchronize = torch.cuda.synchronize if cuda else (lambda: None)
    repeats = 2 if args.smoke else 10
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    data = DENSE_DATA if (DENSE_DATA / "manifest.json").is_file() and not args.smoke else None
    raster = dense_mosaic(data, size, work / f"dense_{size}.tif")
    results: dict = {"device": device, "torch": torch.__version__, "cores": available_cores(), "mosaic": {
        "size": size, "from": "data/default" if data else "resources/sample"}}
    if cuda:
        results["gpu"] = torch.cuda.get_device_name(0)

    def report(key: str, value) -> None:
        results[key] = value
        print(f"{key}: {json.dumps(value)}", flush=True)
        args.out.write_text(json.dumps(results, indent=1))

    parameters = ExtractionParameters(device=device)
    with RasterioReader(raster) as reader:
        setup = set_up(reader, parameters, Area())
        predictor, plan = setup.predictor, setup.plan
        options = vectorize_options(parameters, setup.card)
        report("model_alone", model_alone(predictor, plan.padded.tile_width, [1, 2] if args.smoke else [1, 8, 16, 32],
                                          repeats, synchronize))
        report("class_maps", class_maps_speed(predictor, plan, options, repeats, synchronize))
    report("reading", reading_speed(raster, plan))
    cache = class_maps_cache(raster, device=device, folder=work / "cache")
    counts = sorted({1, available_cores()})
    report("replay", [{key: value for key, value in replay(raster, cache, count, device=device).items() if key != "output"}
                      for count in counts])
    e2e = [end_to_end(raster, device, 1), end_to_end(raster, device, None)]
    best = max(row["mpx_per_s"] for row in e2e)
    report("end_to_end", e2e)
    counts_found = {row["buildings"] for row in e2e} | {row["buildings"] for row in results["replay"]}
    report("summary", {"e2e_mpx_per_s": best, "e2e_vs_class_maps": best / results["class_maps"]["mpx_per_s"],
                       "same_buildings": len(counts_found) == 1})
    print(f"gpu_check: device={device} e2e_mpx_per_s={best:.2f} "
          f"e2e_vs_class_maps={results['summary']['e2e_vs_class_maps']:.3f} buildings={e2e[0]['buildings']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
