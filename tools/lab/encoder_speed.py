"""CPU model-only speed through the engine (BatchNorm folded, channels_last) for several weights files.
Produced: docs/model_report.md, the CPU speed of the Lite0 encoder against v2.

python tools/lab/encoder_speed.py resources/default_weights.safetensors runs/lopo_v3/base.safetensors [--rounds 5]
    [--backends torch onnxruntime]

The networks take turns, round after round, so that a busy machine slows them alike; the ratio to the
first row is the steadier figure. Prints Mpx/s of 256 px tiles (batch 4) per file and backend (the
engine's ``--backend``): median over rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.bench import time_forward  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="+")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--backends", nargs="+", default=["torch"], choices=["torch", "onnxruntime"])
    args = parser.parse_args()

    import numpy as np

    from footprint_plugin.core.predictor import Predictor
    from footprint_plugin.core.weights import load_weights

    predictors = []
    for path in args.weights:
        model, card = load_weights(path)
        for backend in args.backends:
            predictors.append((f"{path} {backend}", card, Path(path), Predictor(model, card, "cpu", backend=backend)))
    batch = np.random.default_rng(0).normal(size=(args.batch_size, 3, args.tile, args.tile)).astype(np.float32)
    speeds: dict[str, list[float]] = {key: [] for key, _, _, _ in predictors}
    for _ in range(args.rounds):
        for key, _, _, predictor in predictors:
            seconds = time_forward(predictor, batch, repeats=3)
            speeds[key].append(args.batch_size * args.tile**2 / seconds / 1e6)
    first = statistics.median(speeds[predictors[0][0]])
    for key, card, path, predictor in predictors:
        median = statistics.median(speeds[key])
        size = path.stat().st_size / 1e6
        print(f"{card.name:<32} {card.architecture:<18} {predictor.backend:<12} {median:6.2f} Mpx/s  "
              f"x{median / first:.2f}  {size:5.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
