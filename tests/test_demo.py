"""The end-to-end demo (`make demo`), in its quick mode."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from keras_filterprune import PruningPlan, cli, demo
from keras_filterprune.datasets.fashion_mnist import DEFAULT_PATH


@pytest.mark.slow
def test_quick_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--quick", "--output-dir", str(out)]) == 0
    text = capsys.readouterr().out
    expected = {
        "plan.json", "widths.png", "sensitivity.png", "comparison.png",
        "original.keras", "pruned.keras", "original.tflite", "pruned.tflite",
        "report.md", "results.json",
    }  # fmt: skip
    assert expected <= {p.name for p in out.iterdir()}
    for line in (
        "| metric | original | pruned | pruned/original |",
        "| test accuracy (Keras) |",
        "| test accuracy (TFLite) |",
        "| params |",
        "| MACs |",
        "| .tflite size (float32) (KiB) |",
        "| TFLite latency, median, 2 threads (ms) |",
    ):
        assert line in text
    results = json.loads((out / "results.json").read_text())
    rows = {r["metric"]: r for r in results["report"]["rows"]}
    # Half of each prunable group went: far fewer parameters and MACs.
    assert rows["params"]["ratio"] < 0.75 and rows["macs"]["ratio"] < 0.75
    # The exported model computes what the Keras model does.
    keras_acc = rows["accuracy"]["pruned"]
    assert rows["tflite_accuracy"]["pruned"] == pytest.approx(keras_acc, abs=0.01)
    plan = PruningPlan.load(out / "plan.json")
    pruned = keras.saving.load_model(out / "pruned.keras")
    assert pruned.get_layer("conv1").filters == len(plan.kept_filters("conv1")) < 16
    source = "synthetic" if results["data"] == "synthetic" else "Fashion-MNIST"
    assert f"Original vs pruned ({source})" in text


def test_missing_data_falls_back_to_synthetic_data_and_says_so(
    tmp_path, capsys, monkeypatch
):
    import sys

    module = sys.modules["keras_filterprune.datasets.fashion_mnist"]
    monkeypatch.setattr(module, "DEFAULT_PATH", str(tmp_path / "none"))
    (train, test), synthetic = demo._load_data((64, 32), None)
    assert synthetic
    assert "USING SYNTHETIC DATA" in capsys.readouterr().out
    assert train[0].shape == (64, 28, 28, 1) and test[1].shape == (32,)
    assert train[0].dtype == np.float32 and 0 <= train[0].min() <= train[0].max() <= 1


def test_a_data_dir_given_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="`data_dir` .*none"):
        demo.run_demo(
            quick=True, output_dir=tmp_path / "out", data_dir=tmp_path / "none"
        )
    assert not (tmp_path / "out").exists()


def test_fashion_mnist_is_used_when_installed(capsys):
    import os

    if not os.path.isdir(DEFAULT_PATH):
        pytest.skip(f"{DEFAULT_PATH} missing (Debian's dataset-fashion-mnist)")
    (train, _), synthetic = demo._load_data((8, 8), None)
    assert not synthetic and train[0].shape == (8, 28, 28, 1)
    assert capsys.readouterr().out == ""


def test_demo_model_is_fully_prunable():
    """Every conv of the demo CNN can be pruned (the classifier head is frozen)."""
    from keras_filterprune.graph import trace_channels

    graph = trace_channels(demo.build_model(), warn=False)
    prunable = {p for g in graph.prunable_groups for p in g.producers}
    assert {"conv1", "conv2", "conv3", "conv4"} <= prunable
