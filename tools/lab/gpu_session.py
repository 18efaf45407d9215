"""One short session on a lent CUDA machine: GPU training runs for the default model, then training speed.
Produced: docs/model_report.md, "Training recipe" (the GPU runs). Extraction speed: tools/gpu_check.py.

    python tools/lab/gpu_session.py --data data/default --out OUT --minutes 8.5

Everything must fit one command of a few minutes, so the script
1. starts the training runs of ``RUNS`` side by side on the one GPU for a short calibration
   (two epochs each), reads their chips/s and sizes each run's epochs to the time that is left,
2. trains them to the end of their learning-rate schedule (unless ``--max-minutes`` or the watchdog
   stops a run that would overrun; checkpoints are written atomically every epoch),
3. measures synthetic training steps with AMP on and off,
4. exports each run's best (and last) checkpoint as a float16 weights file into OUT.

OUT receives session.log, measure.json, metrics.jsonl and the weights files: at most 8 files.
``--smoke`` runs the whole script in a minute on a CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

COMMON = ["--class-weights", "0.2,0.35,0.45", "--dice", "0.5", "--threads", "2", "--workers", "4"]
RUNS = {  # name -> (train arguments, chips per epoch)
    "w32": (["--width", "32", "--batch-size", "16", "--lr", "1e-3", "--seed", "0"], 4000),
    "w16": (["--width", "16", "--batch-size", "16", "--lr", "1e-3", "--seed", "0"], 4000),
    "w32b32": (["--width", "32", "--batch-size", "32", "--lr", "2e-3", "--scale-jitter", "0.3", "--seed", "1"], 4000),
}
KEEP_LAST = ("w32", "w16")  # runs whose last.pt also comes back
OUT_FILES = 3  # session.log, measure.json, metrics.jsonl
assert OUT_FILES + len(RUNS) + len(KEEP_LAST) <= 8, "the device tool brings back at most 8 files"
MEASURE_SECONDS = 75  # kept free at the end for the speed figures and the exports


class Log:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, message: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        print(line, flush=True)
        with open(self.path, "a") as handle:
            handle.write(line + "\n")


def batch_size_of(arguments: list[str]) -> int:
    return int(arguments[arguments.index("--batch-size") + 1])


def launch(name: str, arguments: list[str], data: str, work: Path, epochs: int, steps: int,
           max_minutes: float | None, smoke: bool) -> tuple[list[str], subprocess.Popen]:
    command = [sys.executable, "-m", "trainer", "train", "--data", data, "--out", str(work / name),
               "--epochs", str(epochs), "--steps-per-epoch", str(steps), *COMMON, *arguments]
    if smoke:
        command += ["--device", "cpu", "--workers", "0"]
    if max_minutes is not None:
        command += ["--max-minutes", f"{max_minutes:.2f}"]
    handle = open(work / f"{name}.out", "w")
    return command, subprocess.Popen(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)


def read_metrics(folder: Path) -> list[dict]:
    path = folder / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def wait_all(processes: dict[str, subprocess.Popen], stop_at: float, log: Log) -> dict[str, tuple[int, float]]:
    """Exit code and finishing time (monotonic) of each process; those still running at ``stop_at`` are stopped."""
    done: dict[str, tuple[int, float]] = {}
    while len(done) < len(processes):
        for name, process in processes.items():
            if name not in done and process.poll() is not None:
                done[name] = (process.returncode, time.monotonic())
        if time.monotonic() > stop_at:
            late = [name for name in processes if name not in done]
            for name in late:
                log(f"{name}: still running at the deadline, stopped (its last epoch's checkpoints stay)")
                processes[name].terminate()
            for name in late:
                try:
                    processes[name].wait(10)
                except subprocess.TimeoutExpired:
                    processes[name].kill()
                    processes[name].wait()
                done[name] = (processes[name].returncode, time.monotonic())
        time.sleep(0.5)
    return done


def train_runs(args: argparse.Namespace, work: Path, deadline: float, log: Log) -> dict:
    """Calibrate side by side, size the epochs to the time left, train side by side."""
    calibration_steps = 3 if args.smoke else 120
    processes = {}
    for name, (arguments, _) in RUNS.items():
        _, processes[name] = launch(name, arguments, args.data, work / "calibration", 2,
                                    calibration_steps, None, args.smoke)
    codes = wait_all(processes, deadline - MEASURE_SECONDS, log)
    rates = {}
    for name, (code, _) in codes.items():
        records = read_metrics(work / "calibration" / name)
        if code != 0 or not records:
            tail = (work / "calibration" / f"{name}.out").read_text()[-1500:]
            log(f"{name}: calibration failed (exit {code}):\n{tail}")
            continue
        rates[name] = records[-1]["chips_per_s"]
        log(f"{name}: calibration {records[-1]['chips_per_s']} chips/s side by side, epoch 2 record {records[-1]}")
    train_seconds = deadline - MEASURE_SECONDS - time.monotonic()
    log(f"training time left: {train_seconds:.0f} s")
    plan, processes = {}, {}
    for name, rate in rates.items():
        arguments, chips_per_epoch = RUNS[name]
        steps = 2 if args.smoke else max(1, chips_per_epoch // batch_size_of(arguments))
        epoch_seconds = steps * batch_size_of(arguments) / rate + 2.0  # + validation and checkpoints
        epochs = 2 if args.smoke else max(2, int(0.85 * (train_seconds - 20) / epoch_seconds))
        max_minutes = max(0.0, (train_seconds - 1.5 * epoch_seconds) / 60)
        command, processes[name] = launch(name, arguments, args.data, work, epochs, steps, max_minutes, args.smoke)
        plan[name] = {"command": " ".join(command[1:]), "epochs": epochs, "steps_per_epoch": steps,
                      "calibration_chips_per_s": rate, "expected_epoch_s": round(epoch_seconds, 1)}
        log(f"{name}: {epochs} epochs x {steps} steps: {' '.join(command[1:])}")
    started = time.monotonic()
    codes = wait_all(processes, deadline - MEASURE_SECONDS + 10, log)
    for name, (code, finished) in codes.items():
        records = read_metrics(work / name)
        best = max(records, key=lambda r: r.get("val_f1", -1)) if records else {}
        plan[name].update({"exit": code, "epochs_done": len(records), "minutes": round((finished - started) / 60, 2),
                           "best_epoch": best.get("epoch"), "best_val_f1": best.get("val_f1"),
                           "mean_chips_per_s": round(sum(r["chips_per_s"] for r in records) / max(1, len(records)), 1)})
        log(f"{name}: exit {code}, {len(records)} epochs, best epoch {best.get('epoch')} val F1 {best.get('val_f1')}")
    return plan


def gpu_facts() -> dict:
    import torch

    facts = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        facts.update({"gpu": props.name, "memory_gb": round(props.total_memory / 2**30, 1),
                      "multiprocessors": props.multi_processor_count})
    return facts


def _train_steps(model, optimizer, scaler, images, masks, amp: bool, steps: int) -> None:
    import torch
    import torch.nn.functional as F

    for _ in range(steps):
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            logits = model(images)
        loss = F.cross_entropy(logits.float(), masks)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    if images.device.type == "cuda":
        torch.cuda.synchronize()


def measure_training_steps(device: str, smoke: bool) -> list[dict]:
    """Synthetic training steps (no data loading): chips/s with AMP on and off."""
    import torch

    from footprint_plugin.core.model import UNet, UNetConfig

    rows = []
    for width in (16, 32):
        for amp in (True, False):
            torch.manual_seed(0)
            model = UNet(UNetConfig(in_channels=3, base_filters=width, depth=5)).to(device)
            model = model.to(memory_format=torch.channels_last).train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
            scaler = torch.amp.GradScaler("cuda", enabled=amp and device == "cuda")
            batch = 2 if smoke else 32
            images = torch.randn(batch, 3, 256, 256, device=device).contiguous(memory_format=torch.channels_last)
            masks = torch.randint(0, 3, (batch, 256, 256), device=device)

            use_amp = amp and device == "cuda"
            _train_steps(model, optimizer, scaler, images, masks, use_amp, 1 if smoke else 5)
            steps = 1 if smoke else 25
            started = time.perf_counter()
            _train_steps(model, optimizer, scaler, images, masks, use_amp, steps)
            rows.append({"width": width, "batch": batch, "amp": amp,
                         "chips_per_s": round(steps * batch / (time.perf_counter() - started), 1)})
            del model, optimizer
    return rows


def export_weights(work: Path, out: Path, plan: dict, log: Log) -> None:
    from trainer.cli import main as trainer_main

    for name in plan:
        for kind in ("best", "last") if name in KEEP_LAST else ("best",):
            checkpoint = work / name / f"{kind}.pt"
            if checkpoint.is_file():
                try:
                    code = trainer_main(["export", "--checkpoint", str(checkpoint), "--float16",
                                         "--name", f"gpu-{name}-{kind}", "--output", str(out / f"{name}_{kind}.safetensors")])
                except Exception as exc:  # one broken checkpoint must not cost the others
                    code = f"{type(exc).__name__}: {exc}"
                log(f"export {name} {kind}: exit {code}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/default")
    parser.add_argument("--out", required=True)
    parser.add_argument("--work", help="scratch folder for checkpoints (default: a new temporary folder)")
    parser.add_argument("--minutes", type=float, default=8.5, help="the whole script's time, measurements included")
    parser.add_argument("--smoke", action="store_true", help="tiny settings on the CPU, to check the script")
    args = parser.parse_args(argv)
    started = time.monotonic()
    deadline = started + args.minutes * 60
    out = Path(args.out)
    if out.is_dir() and any(out.iterdir()):
        parser.error(f"--out {out} is not empty; give a new folder (at most 8 files come back from the device)")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu_session-"))
    if (work / "calibration").exists() or any((work / name).exists() for name in RUNS):
        parser.error(f"--work {work} holds an earlier session's runs; give a new folder")
    (work / "calibration").mkdir(parents=True)
    log = Log(out / "session.log")
    results: dict = {"facts": gpu_facts()}
    log(f"facts: {results['facts']}")
    device = "cuda" if results["facts"]["cuda"] and not args.smoke else "cpu"

    def save() -> None:
        (out / "measure.json").write_text(json.dumps(results, indent=1))

    results["training"] = train_runs(args, work, deadline, log)
    save()
    with open(out / "metrics.jsonl", "w") as merged:
        for name in RUNS:
            for record in read_metrics(work / name):
                merged.write(json.dumps({"run": name, **record}) + "\n")
    export_weights(work, out, results["training"], log)
    # Extraction speed is measured by tools/gpu_check.py (its tile count follows the engine's own plan).
    for key, measure in (("training_steps", lambda: measure_training_steps(device, args.smoke)),):
        if time.monotonic() > deadline + 30:
            log(f"{key}: skipped, out of time")
            continue
        try:
            results[key] = measure()
            log(f"{key}: {json.dumps(results[key])}")
        except Exception as exc:  # a failed measurement must not lose the trained weights
            log(f"{key}: failed: {type(exc).__name__}: {exc}")
        save()
    log(f"done in {(time.monotonic() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
