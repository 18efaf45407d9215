"""Measurements of issue 23 (country scale): the Dask engine against one process, resuming after SIGKILLs, and
the client's memory on a large mosaic. Each runs ``python -m trainer predict`` as the user would, and prints one
JSON line per run plus a summary line.

    .venv/bin/python tools/large_areas.py cluster out/bench/banepa_4096.vrt --block-size 2048
    .venv/bin/python tools/large_areas.py resume out/bench/banepa_4096.vrt --block-size 1024 --kills 5
    .venv/bin/python tools/large_areas.py flat --size 20480 --block-size 4096 --cluster local:2
    .venv/bin/python tools/large_areas.py writing --buildings 200000

Peak memory is the highest resident set size sampled every 0.2 s (the client; each worker process of a
LocalCluster: the client's descendants that are not the forkserver's).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def predict_command(raster: Path, output: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "trainer", "predict", "--input", str(raster), "--output", str(output), "--quiet",
            *extra]


class MemorySampler:
    """The peak RSS of a process and of each of its descendants, sampled in a thread."""

    def __init__(self, pid: int, every: float = 0.2, log: Path | None = None, watch: Path | None = None) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.log, self.watch, self._logged = log, watch, 0.0
        self.peaks: dict[int, tuple[str, int]] = {}
        self.client_samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._every = every
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                processes = [self.process, *self.process.children(recursive=True)]
            except psutil.Error:
                return
            for process in processes:
                try:
                    rss = process.memory_info().rss
                    name = " ".join(process.cmdline())
                except psutil.Error:
                    continue
                if process.pid == self.process.pid:
                    self.client_samples.append((time.monotonic() - self._started, rss))
                if rss > self.peaks.get(process.pid, ("", 0))[1]:
                    self.peaks[process.pid] = (name, rss)
            self._write_log()
            self._stop.wait(self._every)

    def _write_log(self) -> None:
        """Every 10 s, one JSON line: time, the client's RSS, and the blocks the journal holds (``watch``)."""
        now = time.monotonic() - self._started
        if self.log is None or not self.client_samples or now - self._logged < 10:
            return
        self._logged = now
        blocks = journal_rows(self.watch) if self.watch is not None else None
        with self.log.open("a") as handle:
            handle.write(json.dumps({"s": round(now), "client_mb": round(self.client_samples[-1][1] / 2**20),
                                     "blocks": blocks}) + "\n")

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        client = self.peaks.get(self.process.pid, ("", 0))[1]
        workers = sorted(rss for pid, (name, rss) in self.peaks.items()
                         if pid != self.process.pid and "spawn_main" in name)
        return {"client_peak_mb": round(client / 2**20), "worker_peaks_mb": [round(rss / 2**20) for rss in workers]}


def timed_run(command: list[str], log: Path | None = None, watch: Path | None = None) -> dict:
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = MemorySampler(process.pid, log=log, watch=watch)
    out, err = process.communicate()
    memory = sampler.stop()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{err[-2000:]}")
    return {"seconds": round(time.perf_counter() - started, 1), "stdout": out.strip(), **memory,
            "client_samples": sampler.client_samples}


def same_buildings(first: Path, second: Path) -> dict:
    """Whether two outputs hold the same buildings (geometry, area, score, source), in any order."""
    from osgeo import ogr

    def rows(path: Path) -> list:
        dataset = ogr.Open(str(path))
        found = sorted((bytes(f.GetGeometryRef().ExportToWkb()), f.GetField("area_m2"), f.GetField("score"),
                        f.GetField("source")) for f in dataset.GetLayerByName("buildings"))
        dataset = None
        return found

    a, b = rows(first), rows(second)
    return {"buildings": [len(a), len(b)], "identical": a == b}


def cluster(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="cluster-"))
    blocks = ["--block-size", str(args.block_size), "--device", "cpu"]
    single = folder / "single.gpkg"
    runs = {"single": timed_run(predict_command(args.raster, single, *blocks))}
    for workers in args.workers:
        output = folder / f"local{workers}.gpkg"
        runs[f"local:{workers}"] = timed_run(predict_command(args.raster, output, *blocks, "--cluster",
                                                             f"local:{workers}"))
        runs[f"local:{workers}"].update(same_buildings(single, output))
    for name, run in runs.items():
        run.pop("client_samples")
        print(json.dumps({"run": name, **run}))
    line = " ".join(f"{name}={run['seconds']}s" for name, run in runs.items())
    print(f"cluster: {line} identical={all(run.get('identical', True) for run in runs.values())}")


def resume(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="resume-"))
    blocks = ["--block-size", str(args.block_size), "--device", "cpu"]
    reference = folder / "uninterrupted.gpkg"
    timed_run(predict_command(args.raster, reference, *blocks))
    output = folder / "killed.gpkg"
    partial = output.with_name("killed.partial.gpkg")
    command = predict_command(args.raster, output, *blocks)
    random.seed(args.seed)
    rows_after = []
    for attempt in range(args.kills):
        process = subprocess.Popen(command + (["--resume"] if attempt else []), cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        time.sleep(random.uniform(args.min_s, args.max_s))  # a random moment: loading, inferring or committing
        if process.poll() is not None:
            raise SystemExit(f"run {attempt + 1} ended before its SIGKILL; choose a shorter --max-s")
        os.kill(process.pid, signal.SIGKILL)
        process.communicate()
        rows_after.append(journal_rows(partial))
    final = timed_run(command + ["--resume"])
    from tools.compare_outputs import compare

    comparison = compare(reference, output)
    result = {"kills": args.kills, "journal_rows_after_each_kill": rows_after, "final": final["stdout"],
              **same_buildings(reference, output), "union_iou": round(comparison["union_iou"], 6)}
    print(json.dumps(result))
    print(f"resume: kills={args.kills} buildings={result['buildings']} identical={result['identical']} "
          f"union_iou={result['union_iou']:.4f}")


def journal_rows(path: Path) -> int:
    """Blocks a resumable run has committed (0 before its journal exists)."""
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(str(path), timeout=10) as connection:
            return connection.execute("SELECT count(*) FROM footprint_journal").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def flat(args: argparse.Namespace) -> None:
    from tools.mosaics import mosaic_vrt

    folder = Path(tempfile.mkdtemp(prefix="flat-"))
    source = REPO.parent / "shared" / "data" / "banepa_north" / "banepa_north.tif"
    raster = mosaic_vrt(source, args.size, folder / f"banepa_{args.size}.vrt")
    output = folder / "flat.gpkg"
    print(f"flat: following the client in {args.log}", flush=True)
    run = timed_run(predict_command(raster, output, "--block-size", str(args.block_size), "--device", "cpu",
                                    "--cluster", args.cluster), log=args.log, watch=output.with_name("flat.partial.gpkg"))
    samples = run.pop("client_samples")
    quarter = len(samples) // 4
    early = max((rss for _, rss in samples[quarter : 2 * quarter]), default=0)
    late = max((rss for _, rss in samples[3 * quarter :]), default=0)
    print(json.dumps({**run, "client_mb_second_quarter": round(early / 2**20), "client_mb_last_quarter":
                      round(late / 2**20), "samples": [(round(t), round(rss / 2**20)) for t, rss in samples[::25]]}))
    print(f"flat: {args.size}px in {run['seconds']}s, client peak {run['client_peak_mb']} MB, second quarter "
          f"{round(early / 2**20)} MB, last quarter {round(late / 2**20)} MB, workers {run['worker_peaks_mb']} MB")


def writing(args: argparse.Namespace) -> None:
    """The client's cost per building: real outlines (the Banepa sample's) written again and again through the
    resumable GeoPackage writer in its thread, a journal commit every ``--per-block`` buildings."""
    import resource

    from footprint_plugin.core.extract import extract_buildings
    from footprint_plugin.core.journal import JournalledGeoPackage
    from footprint_plugin.core.parameters import ExtractionParameters
    from footprint_plugin.core.readers import RasterioReader
    from footprint_plugin.core.sinks import BackgroundSink

    raster = REPO.parent / "shared" / "data" / "banepa_north" / "banepa_north.tif"
    with RasterioReader(raster) as reader:
        found = extract_buildings(reader, ExtractionParameters(device="cpu"))
    for building in found.buildings:
        building.source = raster.name
    folder = Path(tempfile.mkdtemp(prefix="writing-"))
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    sink = BackgroundSink(JournalledGeoPackage(folder / "written.gpkg", found.crs_wkt, {"run": "writing"}))
    written, block = 0, 0
    while written < args.buildings:
        batch = found.buildings[: min(len(found.buildings), args.buildings - written)]
        sink.add(batch)
        written += len(batch)
        if written // args.per_block > block:
            block = written // args.per_block
            sink.block_done(str(block))
    sink.finish({})
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"buildings": written, "seconds": round(seconds, 2), "cpu_s": round(cpu, 2),
                      "us_per_building": round(1e6 * seconds / written, 1),
                      "cpu_us_per_building": round(1e6 * cpu / written, 1), "per_block": args.per_block,
                      "file_mb": round((folder / "written.gpkg").stat().st_size / 2**20, 1)}))
    print(f"writing: {written} buildings, {1e6 * seconds / written:.1f} us a building (wall), "
          f"{1e6 * cpu / written:.1f} us CPU")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("cluster", help="LocalCluster of 1 and 2 workers against one process")
    one.add_argument("raster", type=Path)
    one.add_argument("--block-size", type=int, default=2048)
    one.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    one.set_defaults(run=cluster)
    two = sub.add_parser("resume", help="SIGKILLs at random moments, then --resume, against an uninterrupted run")
    two.add_argument("raster", type=Path)
    two.add_argument("--block-size", type=int, default=1024)
    two.add_argument("--kills", type=int, default=5)
    two.add_argument("--min-s", type=float, default=8.0)
    two.add_argument("--max-s", type=float, default=30.0)
    two.add_argument("--seed", type=int, default=23)
    two.set_defaults(run=resume)
    three = sub.add_parser("flat", help="the client's memory over a large mosaic on a cluster")
    three.add_argument("--size", type=int, default=20480)
    three.add_argument("--block-size", type=int, default=4096)
    three.add_argument("--cluster", default="local:2")
    three.add_argument("--log", type=Path, default=Path("out/flat_client.jsonl"), help="the client's memory every 10 s")
    three.set_defaults(run=flat)
    four = sub.add_parser("writing", help="the client's writing cost per building (GeoPackage with the journal)")
    four.add_argument("--buildings", type=int, default=200_000)
    four.add_argument("--per-block", type=int, default=5000)
    four.set_defaults(run=writing)
    args = parser.parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
