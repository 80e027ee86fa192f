"""Tests of keras_filterprune/runtime.py: running TFLite, benchmarks, comparison."""

import json
import os
import sys

import keras
import numpy as np
import pytest

from keras_filterprune.export import export_tflite
from keras_filterprune.runtime import (
    ComparisonReport,
    LatencyStats,
    benchmark_keras,
    benchmark_tflite,
    compare_models,
    run_tflite,
)
from tests.test_export import assert_only, inputs_like, plain_cnn, two_io_model


# ----------------------------------------------------------------------------------
# Running TFLite files
# ----------------------------------------------------------------------------------
def test_dict_outputs_come_back_as_dict(tmp_path):
    inp = keras.Input((5,), name="features")
    model = keras.Model(
        inp, {"score": keras.layers.Dense(1)(inp), "logits": keras.layers.Dense(3)(inp)}
    )
    assert export_tflite(model, tmp_path / "m.tflite").passed
    x = inputs_like(model, 2)
    got = run_tflite(tmp_path / "m.tflite", x)
    ref = model(x)
    assert sorted(got) == ["logits", "score"]
    for key in got:
        np.testing.assert_allclose(got[key], ref[key], atol=1e-4)


# ----------------------------------------------------------------------------------
# Benchmarks and comparison
# ----------------------------------------------------------------------------------
def test_benchmark_tflite_and_keras(tmp_path):
    model = plain_cnn(8)
    path = export_tflite(model, tmp_path / "m.tflite", verify=False).path
    stats = benchmark_tflite(path, runs=7, warmup=1)
    assert isinstance(stats, LatencyStats)
    assert stats.runs == len(stats.times_ms) == 7 and stats.runtime == "tflite"
    assert 0 < stats.min_ms <= stats.median_ms <= stats.p90_ms
    with open(path, "rb") as f:
        stats = benchmark_tflite(f.read(), runs=3, batch_size=4, num_threads=1)
    assert (stats.batch_size, stats.num_threads) == (4, 1)
    x = inputs_like(model, 2)
    assert benchmark_tflite(path, runs=2, inputs=x).batch_size == 2
    stats = benchmark_keras(model, runs=4, warmup=1)
    assert stats.runs == 4 and stats.runtime == "keras" and stats.median_ms > 0
    assert benchmark_keras(model, runs=2, inputs=x).batch_size == 2
    with pytest.raises(ValueError, match="runs"):
        benchmark_tflite(path, runs=0)
    with pytest.raises(ValueError, match="num_threads"):
        benchmark_tflite(path, num_threads=0)
    with pytest.raises(FileNotFoundError):
        benchmark_tflite(tmp_path / "missing.tflite")


def test_missing_litert_gives_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(ImportError, match=r"pip install keras-filterprune\[litert\]"):
        benchmark_tflite(b"not used")
    with pytest.raises(ImportError, match="litert"):
        export_tflite(plain_cnn(2), tmp_path / "m.tflite")
    assert_only(tmp_path)
    # Without verification the runtime is not needed.
    assert export_tflite(plain_cnn(2), tmp_path / "m.tflite", verify=False).size_bytes


def test_compare_models_table(tmp_path):
    original, pruned = plain_cnn(32, "original"), plain_cnn(12, "pruned")
    report = compare_models(original, pruned, tmpdir=tmp_path, runs=15, warmup=2)
    assert isinstance(report, ComparisonReport)
    metrics = [row["metric"] for row in report.rows]
    assert metrics[:2] == ["params", "macs"]
    for metric in metrics[:4]:
        assert 0 < report.ratio(metric) < 1, metric
    assert report.ratio("params") == pruned.count_params() / original.count_params()
    latency = [r for r in report.rows if r["unit"] == "ms"]
    assert len(latency) == 2
    assert all(r["original"] > 0 and r["pruned"] > 0 for r in latency)
    # ~7x fewer MACs; the speed-up itself is measured by the benchmarks, not
    # asserted here (a loaded 2-core CI run measured 2.28 for this pair).
    diffs = [r for r in report.rows if "diff" in r["metric"]]
    assert all(r["ratio"] is None and r["original"] <= 1e-4 for r in diffs)
    table = report.to_markdown()
    assert table.splitlines()[0] == "| metric | original | pruned | pruned/original |"
    assert str(report) == table and len(table.splitlines()) == 2 + len(report.rows)
    assert json.loads(json.dumps(report.to_dict()))["settings"]["runs"] == 15
    assert sorted(report.latency) == [
        "original.keras",
        "original.tflite",
        "pruned.keras",
        "pruned.tflite",
    ]
    assert report.latency["pruned.tflite"].runs == 15
    assert sorted(os.listdir(tmp_path)) == [
        "original.keras",
        "original.tflite",
        "pruned.keras",
        "pruned.tflite",
    ]
    with pytest.raises(KeyError, match="known"):
        report.ratio("flops")


def test_multi_input_benchmark_needs_a_dict(tmp_path):
    model = two_io_model()
    path = export_tflite(model, tmp_path / "m.tflite", verify=False).path
    zeta, alpha = inputs_like(model, 2)
    with pytest.raises(ValueError, match="pass a dict"):
        benchmark_tflite(path, runs=1, inputs=zeta)
    stats = benchmark_tflite(path, runs=1, inputs={"zeta": zeta, "alpha": alpha})
    assert stats.batch_size == 2
