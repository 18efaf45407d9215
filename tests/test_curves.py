"""trainer.curves: the PNG of loss, validation F1 and pixel IoU per epoch beside metrics.jsonl."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from trainer.curves import main, read_metrics, write_curves


def metrics_file(path, epochs=6, resumed_from=None):
    """Records shaped like trainer train's, with a resumed run repeating some epochs and a cut-off line."""
    lines = []
    for epoch in range(1, epochs + 1):
        lines.append(json.dumps({"epoch": epoch, "train_loss": round(1.0 / epoch, 5), "chips_per_s": 40.0,
                                 "lr": 1e-3, "device": "cpu", "amp": False, "world_size": 1,
                                 "val_loss": round(1.2 / epoch + 0.05, 4), "val_pixel_iou": round(0.1 * epoch, 4),
                                 "val_f1": round(0.08 * epoch, 4), "val_precision": 0.5, "val_recall": 0.5,
                                 "val_tp": epoch, "val_fp": 3, "val_fn": 3}))
    if resumed_from:
        lines.append(json.dumps({"epoch": resumed_from, "train_loss": 0.9, "val_f1": 0.01, "val_pixel_iou": 0.01}))
    lines.append('{"epoch": 7, "train_lo')  # interrupted while writing
    path.write_text("\n".join(lines) + "\n")
    return path


def test_records_one_per_epoch_later_wins(tmp_path):
    records = read_metrics(metrics_file(tmp_path / "metrics.jsonl", resumed_from=3))
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[2]["val_f1"] == 0.01


def test_writes_a_png_with_curves(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    metrics = metrics_file(tmp_path / "metrics.jsonl")
    png = tmp_path / "curves.png"
    assert write_curves(metrics, png) is True
    image = imread(png)
    assert image.shape[:2] == (360, 900)
    rgb = image[..., :3]
    # Lines in the default colours (blue C0 for training loss and F1, orange C1 for the second series).
    blue = np.all(np.abs(rgb - np.array([0x1F, 0x77, 0xB4]) / 255) < 0.08, axis=-1)
    orange = np.all(np.abs(rgb - np.array([0xFF, 0x7F, 0x0E]) / 255) < 0.08, axis=-1)
    assert blue[:, :450].sum() > 200 and blue[:, 450:].sum() > 200  # a curve in each panel
    assert orange[:, :450].sum() > 200 and orange[:, 450:].sum() > 200
    assert not list(tmp_path.glob(".*partial"))


def test_quietly_false_without_matplotlib_or_records(tmp_path, monkeypatch, capsys):
    metrics = metrics_file(tmp_path / "metrics.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert write_curves(empty, tmp_path / "a.png") is False
    assert write_curves(tmp_path / "missing.jsonl", tmp_path / "b.png") is False
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as on a machine without it
    assert write_curves(metrics, tmp_path / "c.png") is False
    assert not list(tmp_path.glob("*.png"))
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""


def test_command_line(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    metrics = metrics_file(tmp_path / "metrics.jsonl")
    assert main([str(metrics)]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    assert main([str(tmp_path / "none.jsonl")]) == 2
    assert "no curves drawn" in capsys.readouterr().err
