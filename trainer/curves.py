"""Training curves: loss, validation building F1 and pixel IoU per epoch, as a PNG beside metrics.jsonl.

``python -m trainer.curves runs/mine/metrics.jsonl [--output curves.png]``; ``trainer train`` calls
:func:`write_curves` after each epoch. Drawn with matplotlib when it is installed (Debian's
python3-matplotlib, or the ``train`` extra); without it nothing is drawn and nothing is said.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def read_metrics(metrics_jsonl: Path) -> list[dict]:
    """The epoch records of a metrics.jsonl, one per epoch (a resumed run's later record wins), in order."""
    by_epoch: dict[int, dict] = {}
    try:
        lines = Path(metrics_jsonl).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    for line in lines:
        try:
            record = json.loads(line)
            by_epoch[int(record["epoch"])] = record
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by an interrupted run
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["epoch"], float(r[key])) for r in records if isinstance(r.get(key), (int, float))]
    return [p[0] for p in points], [p[1] for p in points]


def write_curves(metrics_jsonl: Path, png: Path) -> bool:
    """Draw ``metrics_jsonl`` into ``png`` (written atomically). False, quietly, without matplotlib or records."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return False
    records = read_metrics(metrics_jsonl)
    if not records:
        return False
    figure = Figure(figsize=(9, 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    loss_axes, score_axes = figure.subplots(1, 2)
    for key, label, style in (("train_loss", "training loss", "-"), ("val_loss", "validation loss", "--")):
        epochs, values = _series(records, key)
        if values:
            loss_axes.plot(epochs, values, style, marker="o", markersize=3, label=label)
    loss_axes.set(xlabel="epoch", ylabel="loss", title="Loss")
    for key, label in (("val_f1", "building F1 (IoU >= 0.5)"), ("val_pixel_iou", "building pixel IoU")):
        epochs, values = _series(records, key)
        if values:
            score_axes.plot(epochs, values, marker="o", markersize=3, label=label)
    epochs, f1 = _series(records, "val_f1")
    if f1:
        best = max(range(len(f1)), key=f1.__getitem__)
        score_axes.axvline(epochs[best], color="grey", linewidth=0.8, linestyle=":")
        right_half = best >= len(f1) / 2  # keep the label inside the panel, along its foot
        score_axes.text(epochs[best], 0.03, f" best F1 {f1[best]:.3f}, epoch {epochs[best]} ", fontsize=8,
                        ha="right" if right_half else "left", va="bottom")
    score_axes.set(xlabel="epoch", ylabel="validation score", title="Validation", ylim=(0, 1))
    for axes in (loss_axes, score_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
    figure.suptitle(f"{Path(metrics_jsonl).parent.name}: {len(records)} epoch{'s' if len(records) > 1 else ''}", fontsize=10)
    png = Path(png)
    tmp = png.with_name(f".{png.name}.partial")
    try:
        figure.savefig(tmp, format="png")
        os.replace(tmp, png)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.curves", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics", type=Path, help="a metrics.jsonl written by trainer train")
    parser.add_argument("--output", type=Path, help="PNG to write (default: curves.png beside metrics.jsonl)")
    args = parser.parse_args(argv)
    output = args.output or args.metrics.with_name("curves.png")
    if not write_curves(args.metrics, output):
        print(f"error: no curves drawn (no epoch records in {args.metrics}, or matplotlib is not installed)",
              file=sys.stderr)
        return 2
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
