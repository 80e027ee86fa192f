"""Tests of keras_filterprune/runtime/: running TFLite, benchmarks, comparison."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_filterprune import FilterPruneWarning
from keras_filterprune.export import export_tflite
from keras_filterprune.runtime import (
    ComparisonReport,
    LatencyStats,
    benchmark_keras,
    benchmark_tflite,
    compare_models,
    run_tflite,
)
from tests.test_export import (
    assert_no_temporary_path,
    assert_only,
    differing_model,
    inputs_like,
    plain_cnn,
    two_io_model,
)

QUICK = {"target_ci": None}
"""Timing of the tests here: a fixed number of rounds (at least 6 of 20 ms, so
that an interval is reported) instead of going on until the interval is within
±2 %: they check what is reported, not how precise it is (the stopping rule is
tested below with a fake clock). Never a time cap: a slow machine must not cut
the rounds a test counts."""


# ----------------------------------------------------------------------------------
# Running TFLite files
# ----------------------------------------------------------------------------------
def test_the_runner_loads_without_keras():
    """The package loads its names on first use, and the LiteRT runner the
    exporter and latency measuring share imports neither Keras nor TensorFlow."""
    code = (
        "import sys\n"
        "import keras_filterprune.runtime as runtime\n"
        "from keras_filterprune.runtime.litert import Runner, sorted_outputs\n"
        "assert set(runtime.__all__) <= set(dir(runtime))\n"
        "heavy = [m for m in ('keras', 'tensorflow') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert runtime.run_tflite.__module__ == 'keras_filterprune.runtime.litert'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr


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
    stats = benchmark_tflite(path, runs=7, warmup=1)  # adaptive, the default
    assert isinstance(stats, LatencyStats)
    # `runs` is a minimum: rounds of >= 20 ms call a fast model many times.
    assert stats.runs >= 7 and stats.runtime == "tflite"
    assert stats.runs == stats.rounds * stats.calls_per_round
    assert len(stats.times_ms) == stats.rounds >= 6
    assert 0 < stats.min_ms <= stats.median_ms <= stats.p90_ms
    assert stats.ci_low_ms <= stats.median_ms <= stats.ci_high_ms
    assert stats.ci_rel >= 0 and isinstance(stats.converged, bool)
    assert "95 % CI" in str(stats)
    fixed = benchmark_tflite(path, runs=3, min_round_ms=0, target_ci=None)
    assert (fixed.runs, fixed.rounds, fixed.calls_per_round) == (3, 3, 1)
    assert fixed.ci_rel is None and fixed.converged
    with open(path, "rb") as f:
        stats = benchmark_tflite(f.read(), runs=3, **QUICK, batch_size=4, num_threads=1)
    assert (stats.batch_size, stats.num_threads) == (4, 1)
    x = inputs_like(model, 2)
    assert benchmark_tflite(path, runs=2, **QUICK, inputs=x).batch_size == 2
    stats = benchmark_keras(model, runs=4, warmup=1, **QUICK)
    assert stats.runs >= 4 and stats.runtime == "keras" and stats.median_ms > 0
    assert benchmark_keras(model, runs=2, **QUICK, inputs=x).batch_size == 2
    with pytest.raises(ValueError, match="runs"):
        benchmark_tflite(path, runs=0)
    for bad, match in (
        (dict(min_round_ms=-1), "min_round_ms"),
        (dict(target_ci=0), "target_ci"),
        (dict(target_ci=1.5), "target_ci"),
        (dict(max_seconds=0), "max_seconds"),
    ):
        with pytest.raises(ValueError, match=match):
            benchmark_tflite(path, **bad)
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
    report = compare_models(
        original,
        pruned,
        tmpdir=tmp_path,
        runs=15,
        **QUICK,
        warmup=2,
        verbose=0,
    )
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
    assert str(report) == table
    lines = table.splitlines()
    assert lines[2 + len(report.rows) :] == [
        "",
        "Export checks:",
        *(f"- {k}: {e.verification}" for k, e in report.exports.items()),
    ]
    assert all(e.passed for e in report.exports.values())
    assert json.loads(json.dumps(report.to_dict()))["settings"]["runs"] == 15
    assert sorted(report.latency) == [
        "original.keras",
        "original.tflite",
        "pruned.keras",
        "pruned.tflite",
    ]
    assert report.latency["pruned.tflite"].runs >= 15
    assert all(s.rounds >= 6 for s in report.latency.values())
    latency_json = json.loads(json.dumps(report.to_dict()))["latency"]
    assert {"ci_low_ms", "ci_high_ms", "ci_rel", "converged"} <= set(
        latency_json["pruned.tflite"]
    )
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
        benchmark_tflite(path, runs=1, **QUICK, inputs=zeta)
    stats = benchmark_tflite(
        path, runs=1, **QUICK, inputs={"zeta": zeta, "alpha": alpha}
    )
    assert stats.batch_size == 2


@pytest.mark.slow  # converts and times six models, ~30 s
def test_compare_models_accuracy_on_eval_data(tmp_path):
    original, pruned = plain_cnn(16, "original"), plain_cnn(8, "pruned")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 16, 16, 3)).astype("float32")  # two chunks
    y = rng.integers(0, 10, 300)
    report = compare_models(
        original,
        pruned,
        tmpdir=tmp_path,
        runs=2,
        **QUICK,
        eval_data=(x, y),
        verbose=0,
    )
    rows = {r["metric"]: r for r in report.rows}
    assert [r["metric"] for r in report.rows][:2] == ["accuracy", "tflite_accuracy"]
    for key, model in (("original", original), ("pruned", pruned)):
        expected = np.mean(model.predict(x, verbose=0).argmax(1) == y)
        assert rows["accuracy"][key] == pytest.approx(expected)
        lite = run_tflite(tmp_path / f"{key}.tflite", x).argmax(1)
        assert rows["tflite_accuracy"][key] == pytest.approx(np.mean(lite == y))
    assert rows["accuracy"]["original"] != rows["accuracy"]["pruned"]
    assert report.settings["eval_samples"] == 300
    one_hot = keras.utils.to_categorical(y, 10)
    again = compare_models(
        original, pruned, runs=1, **QUICK, eval_data=(x, one_hot), verbose=0
    )
    assert again.rows[:2] == report.rows[:2]
    with pytest.raises(ValueError, match="labels"):
        compare_models(original, pruned, eval_data=(x, y[:10].astype(float) + 0.5))
    with pytest.raises(TypeError, match=r"\(x, y\)"):
        compare_models(original, pruned, eval_data=x)
    with pytest.raises(ValueError, match="classes"):
        compare_models(two_io_model(), two_io_model(), eval_data=(x, y))


def test_compare_models_sizes_without_optimizer_state(tmp_path):
    original, pruned = plain_cnn(32, "original"), plain_cnn(32, "pruned")
    original.compile(optimizer="adam", loss="mse")
    original.fit(inputs_like(original, 4), np.zeros((4, 10)), verbose=0)
    report = compare_models(
        original, pruned, tmpdir=tmp_path, runs=1, **QUICK, verbose=0
    )
    # Same architecture: the same size once the trained model's Adam state
    # (twice its weights) is left out.
    assert report.ratio("keras_size") == pytest.approx(1.0, abs=0.05)
    assert report.settings["keras_size"] == "without optimizer state"
    original.save(tmp_path / "with_optimizer.keras")
    with_optimizer = os.path.getsize(tmp_path / "with_optimizer.keras")
    assert report.exports["original.keras"].size_bytes < 0.5 * with_optimizer
    assert original.optimizer is not None and original.compiled  # untouched


def test_compare_models_failed_checks_name_the_model(tmp_path):
    with pytest.warns(FilterPruneWarning) as record:
        report = compare_models(
            differing_model("big"),
            differing_model("small"),
            runs=1,
            **QUICK,
            verbose=0,
        )
    messages = [
        str(w.message) for w in record if issubclass(w.category, FilterPruneWarning)
    ]
    assert len(messages) == 2  # the two TFLite files; the .keras files pass
    assert "TFLite (float32) export of the original model 'big'" in messages[0]
    assert "pruned model 'small'" in messages[1]
    for message in messages:
        assert "exceeds the allowed" in message
        assert_no_temporary_path(message)
    # The files are gone: the reports name them, not a temporary path.
    assert report.exports["pruned.tflite"].path == "pruned.tflite"
    assert report.exports["pruned.tflite"].passed is False
    assert report.exports["pruned.keras"].passed
    assert "- pruned.tflite: TFLite (float32) in LiteRT vs Keras" in str(report)
    assert_no_temporary_path(str(report))


@pytest.mark.slow  # two int8 conversions with calibration, ~30 s
def test_compare_models_progress_and_no_native_noise(capfd):
    original, pruned = plain_cnn(8, "wide"), plain_cnn(4, "narrow")
    x = inputs_like(original, 4)
    y = np.arange(4)
    data = inputs_like(original, 16, seed=2)
    compare_models(
        original, pruned, runs=2, **QUICK, quantization="int8",
        representative_data=data, eval_data=(x, y),
    )  # fmt: skip
    out, err = capfd.readouterr()
    assert out.splitlines() == [
        "compare_models: saving 'wide' as .keras (no optimizer state) and checking "
        "the reload...",
        "compare_models: converting 'wide' to TFLite (int8) and checking it...",
        "compare_models: saving 'narrow' as .keras (no optimizer state) and "
        "checking the reload...",
        "compare_models: converting 'narrow' to TFLite (int8) and checking it...",
        "compare_models: timing Keras, at least 2 runs per model, interleaved...",
        "compare_models: timing TFLite in LiteRT (2 threads), at least 2 runs per "
        "model, interleaved...",
        "compare_models: evaluating both models on 4 samples, Keras and TFLite...",
    ]
    assert err == ""
    compare_models(original, pruned, runs=1, **QUICK, verbose=0)
    assert capfd.readouterr() == ("", "")


# ----------------------------------------------------------------------------------
# Adaptive timing: the statistics and the stopping rule (no clock is asserted on)
# ----------------------------------------------------------------------------------
def test_median_ci_from_order_statistics():
    from keras_filterprune.runtime.timing import median_ci, relative_halfwidth

    # Below 6 samples no pair of order statistics covers the median with 95 %.
    median, low, high = median_ci([3.0, 1.0, 2.0, 5.0, 4.0])
    assert median == 3.0 and (low, high) == (-np.inf, np.inf)
    assert relative_halfwidth(median, low, high) == np.inf
    # 6 to 8 samples: the extremes; 9 to 11: the second smallest and largest
    # (P(Binomial(9, 1/2) <= 1) = 10/512 <= 2.5 %).
    assert median_ci([1, 2, 3, 4, 5, 6]) == (3.5, 1.0, 6.0)
    assert median_ci(list(range(1, 10))) == (5.0, 2.0, 8.0)
    # One burst of noise does not move a wide sample's interval.
    samples = [1.0] * 19 + [1.01] * 20 + [50.0]
    median, low, high = median_ci(samples)
    assert (low, high) == (1.0, 1.01)
    assert relative_halfwidth(median, low, high) == pytest.approx(0.01 / 1.01)
    with pytest.raises(ValueError, match="empty"):
        median_ci([])


class _FakeClock:
    """A clock that each call of a fake model advances by the model's cost."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def model(self, costs):
        costs = iter(costs)

        def call():
            self.now += next(costs)

        return call


def test_timing_stops_when_the_interval_is_narrow():
    from keras_filterprune.runtime.timing import time_rounds

    clock = _FakeClock()
    steady = clock.model(iter(lambda: 0.001, None))  # 1 ms, every call
    (timing,) = time_rounds(
        [steady], runs=1, warmup=0, target_ci=0.02, max_rounds=100, clock=clock
    )
    assert timing.converged and len(timing.rounds) == 6  # the fewest with a CI
    assert timing.calls_per_round == 1 and timing.runs == 6


def test_timing_stops_at_the_round_cap_when_noisy():
    from keras_filterprune.runtime.timing import time_rounds

    clock = _FakeClock()
    rng = np.random.default_rng(0)
    noisy = clock.model(iter(lambda: float(rng.uniform(0.5, 1.5)), None))
    steady = clock.model(iter(lambda: 1.0, None))
    timings = time_rounds(
        [noisy, steady], warmup=0, target_ci=0.01, max_rounds=12, clock=clock
    )
    assert [len(t.rounds) for t in timings] == [12, 12]  # interleaved: together
    assert [t.converged for t in timings] == [False, True]


def test_timing_stops_at_the_time_cap():
    from keras_filterprune.runtime.timing import time_rounds

    clock = _FakeClock()
    rng = np.random.default_rng(1)
    noisy = clock.model(iter(lambda: float(rng.uniform(0.5, 1.5)), None))
    (timing,) = time_rounds(
        [noisy], warmup=0, target_ci=0.001, max_rounds=1000, max_seconds=20.0,
        clock=clock,
    )  # fmt: skip
    assert not timing.converged and 14 <= len(timing.rounds) <= 40


def test_rounds_last_at_least_the_minimum_and_runs_are_a_minimum():
    from keras_filterprune.runtime.timing import time_rounds

    clock = _FakeClock()
    fast = clock.model(iter(lambda: 0.0004, None))  # 0.4 ms
    (timing,) = time_rounds(
        [fast], runs=500, warmup=3, min_round_s=0.02, target_ci=0.02, clock=clock
    )
    assert timing.calls_per_round == 50  # 20 ms / 0.4 ms
    assert timing.runs >= 500 and len(timing.rounds) == 10
    assert timing.rounds == pytest.approx([0.0004] * 10)
    # A converged call drops out of later rounds when asked; the others go on.
    rng = np.random.default_rng(2)
    noisy = clock.model(iter(lambda: float(rng.uniform(0.5, 1.5)), None))
    steady = clock.model(iter(lambda: 1.0, None))
    timings = time_rounds(
        [steady, noisy], warmup=0, target_ci=0.01, max_rounds=12,
        drop_converged=True, clock=clock,
    )  # fmt: skip
    assert [len(t.rounds) for t in timings] == [6, 12]
