"""The measuring helpers of trainer/recipe.py (they need no ../shared/data)."""

from __future__ import annotations

import numpy as np
import torch

from footprint_plugin.core.model import UNet
from footprint_plugin.core.pipeline import load_model
from footprint_plugin.core.predictor import Predictor
from footprint_plugin.core.weights import save_weights
from trainer.recipe import measured_model

from .helpers import REPO


def test_ensemble_averages_the_members_probabilities(tmp_path):
    default = load_model(None)
    torch.manual_seed(1)
    other_path = tmp_path / "other.safetensors"
    save_weights(other_path, UNet(default[1].config).eval(), default[1])  # same card, other (random) weights
    other = load_model(str(other_path))
    averaged = measured_model(None, [str(other_path)])
    batch = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    first = Predictor(default[0], default[1], "cpu").probabilities(batch)
    second = Predictor(other[0], other[1], "cpu").probabilities(batch)
    assert np.abs(first - second).max() > 0.1
    got = Predictor(averaged[0], averaged[1], "cpu").probabilities(batch)
    np.testing.assert_allclose(got, (first + second) / 2, atol=1e-4)


def test_working_resolution_changes_a_copy_of_the_card():
    _, card, _ = measured_model(None, working_resolution=0.25)
    assert card.resolution_m == 0.25
    assert load_model(None)[1].resolution_m == 0.3


def test_remembering_network_computes_each_input_once_and_gives_the_same_output():
    from trainer.recipe import remembering

    network, card, _ = load_model(None)
    remembered = remembering(network)
    batch = np.random.default_rng(2).normal(size=(1, 3, 64, 64)).astype(np.float32)
    plain = Predictor(network, card, "cpu").probabilities(batch)
    first = Predictor(remembered, card, "cpu").probabilities(batch)
    again = Predictor(remembered, card, "cpu").probabilities(batch)  # a new predictor, as each raster gets
    other = Predictor(remembered, card, "cpu").probabilities(batch + 1)
    np.testing.assert_allclose(first, plain, atol=1e-5)
    np.testing.assert_array_equal(again, first)
    assert len(remembered.seen) == 2 and not np.allclose(other, first)


OLDER_VECTORISER = "7b1044a"  # the last revision with column blocks (ClaimMask) before square blocks


def test_vectorize_ab_runs_an_older_revisions_own_vectoriser_and_finds_the_same_buildings(capsys):
    # A real older revision: its engine taken from git into a package of its own, with other code (column blocks
    # that claim pixels, no anchored blocks), and the same buildings on a real raster.
    import inspect

    from footprint_plugin.core import vectorize
    from tools.lab.vectorize_ab import main, vectorize_module

    older = vectorize_module(OLDER_VECTORISER)
    assert older.__file__ != vectorize.__file__ and "vectorize-ab-" in older.__file__
    assert hasattr(older, "ClaimMask") and not hasattr(vectorize, "ClaimMask")  # other code
    assert "rule" not in inspect.signature(older.StripVectorizer).parameters
    assert main([str(REPO / "resources" / "sample" / "philippines_c1.tif"), "--rev", OLDER_VECTORISER,
                 "--rounds", "1"]) == 0
    line = capsys.readouterr().out.strip()
    assert "identical" in line and "NOT" not in line and " 0 buildings" not in line, line  # the same output


def test_gpu_check_smoke_measures_every_stage_and_finds_the_same_buildings(tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "smoke.json"
    result = subprocess.run([sys.executable, str(REPO / "tools" / "gpu_check.py"), "--smoke", "--out", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["mosaic"]["size"] == 512
    assert all(row["mpx_per_s"] > 0 for row in report["model_alone"]) and report["class_maps"]["mpx_per_s"] > 0
    assert report["reading"]["threads_1"] > 0
    assert [row["workers"] for row in report["replay"]][0] == 1 and len(report["end_to_end"]) == 2
    assert report["end_to_end"][0]["buildings"] > 10 and report["summary"]["same_buildings"]
    assert result.stdout.strip().splitlines()[-1].startswith("gpu_check: device=cpu e2e_mpx_per_s=")
