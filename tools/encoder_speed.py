"""CPU model-only speed through the engine (BatchNorm folded, channels_last) for several weights files.

python tools/encoder_speed.py resources/default_weights.safetensors runs/lopo_v3/base.safetensors [--rounds 5]

The networks take turns, round after round, so that a busy machine slows them alike; the ratio to the
first file is the steadier figure. Prints Mpx/s of 256 px tiles (batch 4) per file: median over rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.bench import time_forward  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="+")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--tile", type=int, default=256)
    args = parser.parse_args()

    import numpy as np

    from footprint_plugin.core.inference import Predictor
    from footprint_plugin.core.weights import load_weights

    predictors = []
    for path in args.weights:
        model, card = load_weights(path)
        predictors.append((path, card, Predictor(model, card, "cpu")))
    batch = np.random.default_rng(0).normal(size=(args.batch_size, 3, args.tile, args.tile)).astype(np.float32)
    speeds: dict[str, list[float]] = {path: [] for path, _, _ in predictors}
    for _ in range(args.rounds):
        for path, _, predictor in predictors:
            seconds = time_forward(predictor, batch, repeats=3)
            speeds[path].append(args.batch_size * args.tile**2 / seconds / 1e6)
    first = statistics.median(speeds[args.weights[0]])
    for path, card, _ in predictors:
        median = statistics.median(speeds[path])
        size = Path(path).stat().st_size / 1e6
        print(f"{card.name:<32} {card.architecture:<18} {median:6.2f} Mpx/s  x{median / first:.2f}  {size:5.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
