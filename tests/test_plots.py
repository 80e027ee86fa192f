"""Figures: kept widths, sensitivity curves, before/after bars."""

from __future__ import annotations

import sys

import keras
import numpy as np
import pytest
from matplotlib.figure import Figure

from keras_filterprune import apply_plan, plan_pruning
from keras_filterprune.plots import plot_comparison, plot_sensitivity, plot_widths
from keras_filterprune.runtime import ComparisonReport
from keras_filterprune.sensitivity import SensitivityResult


def _model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="a")(inputs)
    x = keras.layers.BatchNormalization(name="a_bn")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", name="b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x))


def _bars(fig: Figure) -> list[list[float]]:
    """Heights of each bar container of the first axes."""
    return [[p.get_height() for p in c] for c in fig.axes[0].containers]


def test_plot_widths_from_a_model_and_from_a_plan(tmp_path):
    model = _model()
    plan = plan_pruning(model, 0.5, per_layer={"b": 0.75})
    for pruned in (apply_plan(model, plan), plan):
        fig = plot_widths(model, pruned)
        assert isinstance(fig, Figure)
        labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
        assert labels == ["a", "b", "head"]
        original, kept = _bars(fig)
        assert original == [8, 16, 4] and kept == [4, 4, 4]
        assert "12/28" in fig.axes[0].get_title()
    fig.savefig(tmp_path / "widths.png")
    assert (tmp_path / "widths.png").stat().st_size > 1000
    with pytest.raises(TypeError, match="PruningPlan"):
        plot_widths(model, {"a": 4})


def test_plot_sensitivity(tmp_path):
    result = SensitivityResult(
        0.9,
        {
            "a": [(0.0, 0.9), (0.5, 0.85), (0.9, 0.3)],
            "b": [(0.0, 0.9), (0.5, 0.9), (0.9, 0.8)],
        },
        {"a": ["a"], "b": ["b", "c"]},
        {"a": 8, "b": 16},
        metric="accuracy",
    )
    fig = plot_sensitivity(result, max_drop=0.05, title="T")
    ax = fig.axes[0]
    assert ax.get_title() == "T" and ax.get_ylabel() == "accuracy"
    assert [list(line.get_xdata()) for line in ax.lines[:2]] == [[0.0, 0.5, 0.9]] * 2
    assert ax.lines[2].get_ydata()[0] == pytest.approx(0.85)  # the threshold
    assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == [
        "a (8)",
        "b (16)",
    ]
    fig.savefig(tmp_path / "s.png")


def test_plot_comparison_accepts_a_report_its_dict_and_a_mapping():
    def row(metric, label, unit, a, b):
        ratio = None if "diff" in metric else b / a
        return dict(metric=metric, label=label, unit=unit, original=a, pruned=b,
                    ratio=ratio)  # fmt: skip

    rows = [
        row("params", "params", "", 100, 40),
        row("macs", "MACs", "", 1e6, 3e5),
        row("keras_size", ".keras size", "KiB", 30.0, 15.0),
        row("tflite_size", ".tflite size (float32)", "KiB", 20.0, 9.0),
        row("tflite_max_abs_diff", ".tflite max abs diff", "", 1e-6, 2e-6),
    ]
    report = ComparisonReport(rows=rows, settings={})
    for given in (report, report.to_dict()):
        fig = plot_comparison(given)
        titles = [ax.get_title() for ax in fig.axes]
        assert titles == ["params", "MACs", ".tflite size (float32) (KiB)"]
        heights = [[p.get_height() for p in ax.containers[0]] for ax in fig.axes]
        assert heights[0] == [100, 40]
    fig = plot_comparison({"accuracy": (0.9, 0.88)}, title="x")
    assert fig.axes[0].get_title() == "accuracy"
    with pytest.raises(ValueError, match="pair"):
        plot_comparison({"accuracy": 0.9})
    with pytest.raises(TypeError, match="ComparisonReport"):
        plot_comparison([1, 2])
    with pytest.raises(ValueError, match="no metric"):
        plot_comparison({})


def test_missing_matplotlib_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"keras-filterprune\[plot\]"):
        plot_comparison({"params": (2, 1)})


def test_no_pyplot_state_is_created():
    plot_comparison({"params": (np.int64(2), 1)})
    pyplot = sys.modules.get("matplotlib.pyplot")
    assert pyplot is None or not pyplot.get_fignums()
