"""`compare_models`: a model against its pruned copy, side by side: parameters,
MACs, file sizes and interleaved A/B latency, so that machine noise hits both
alike."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from typing import Any

import keras
import numpy as np

from keras_filterprune.benchmark import (
    LatencyStats,
    _check_timing_args,
    _keras_call,
    _tflite_call,
    _time_calls,
)
from keras_filterprune.export import ExportReport, export_tflite, save_keras

__all__ = ["ComparisonReport", "compare_models"]


@dataclasses.dataclass
class ComparisonReport:
    """Original vs pruned model: sizes, MACs, latencies, export accuracy.

    Attributes:
        rows: `list[dict]`. One dict per metric with keys `metric` (a stable key:
            `"params"`, `"macs"`, `"keras_size"`, `"tflite_size"`,
            `"keras_latency"`, `"tflite_latency"`, `"keras_max_abs_diff"`,
            `"tflite_max_abs_diff"`), `label`, `unit`, `original`, `pruned` and
            `ratio` (pruned / original; `None` where a ratio means nothing).
        settings: `dict`. How it was measured (threads, runs, quantization, ...).
        exports: `dict[str, ExportReport]`. The exports the sizes come from
            (their files remain only when `compare_models` got a `tmpdir`).
        latency: `dict[str, LatencyStats]`. Full timing statistics (min, p90,
            every run), keys `"original.keras"`, `"pruned.tflite"`, ….
    """

    rows: list[dict[str, Any]]
    settings: dict[str, Any]
    exports: dict[str, ExportReport] = dataclasses.field(default_factory=dict)
    latency: dict[str, LatencyStats] = dataclasses.field(default_factory=dict)

    def ratio(self, metric: str) -> float | None:
        """Returns the pruned / original ratio of `metric` (e.g. `"macs"`)."""
        for row in self.rows:
            if row["metric"] == metric:
                return row["ratio"]
        raise KeyError(
            f"No metric {metric!r}; known: {[r['metric'] for r in self.rows]}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Returns plain data (JSON-serialisable)."""
        return {
            "rows": [dict(r) for r in self.rows],
            "settings": dict(self.settings),
            "exports": {k: dataclasses.asdict(v) for k, v in self.exports.items()},
            "latency": {k: dataclasses.asdict(v) for k, v in self.latency.items()},
        }

    def to_markdown(self) -> str:
        """Returns the table in Markdown."""
        lines = [
            "| metric | original | pruned | pruned/original |",
            "|---|---:|---:|---:|",
        ]
        for r in self.rows:
            name = f"{r['label']} ({r['unit']})" if r["unit"] else r["label"]
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
            lines.append(
                f"| {name} | {_fmt(r['original'])} | {_fmt(r['pruned'])} | {ratio} |"
            )
        return "\n".join(lines)

    __str__ = to_markdown


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e6):
        return f"{value:.2e}"
    return f"{value:.3f}"


def compare_models(
    original: keras.Model,
    pruned: keras.Model,
    *,
    tmpdir: str | os.PathLike | None = None,
    num_threads: int = 2,
    runs: int = 50,
    warmup: int = 5,
    batch_size: int = 1,
    quantization: str | None = None,
    representative_data: Any = None,
    interleave: bool = True,
) -> ComparisonReport:
    """Compares two models: params, MACs, file sizes, latencies, export accuracy.

    Both models are saved as `.keras` and exported to TFLite (each export
    verified against its Keras model); latencies are medians of `runs` calls,
    measured with the runs of the two models alternating (A B, B A, …) when
    `interleave=True`, so that machine noise hits both equally.

    Args:
        original: `keras.Model`, the reference.
        pruned: `keras.Model`, e.g. from `apply_plan`. Ratios are pruned/original.
        tmpdir: where to keep the files (`original.keras`, `pruned.tflite`, …);
            `None` writes them to a temporary directory that is removed.
        num_threads: int. LiteRT threads. Defaults to `2`.
        runs, warmup, batch_size: latency settings. Defaults `50`, `5`, `1`.
        quantization: TFLite quantization, as in `export_tflite`.
        representative_data: as in `export_tflite` (required for `"int8"`).
        interleave: bool. Alternate the two models' runs. Defaults to `True`.

    Returns:
        `ComparisonReport`; `print(report)` shows a Markdown table.

    Example:

    >>> import keras
    >>> def net(width):
    ...     inp = keras.Input((8, 8, 3))
    ...     x = keras.layers.Conv2D(width, 3, activation="relu")(inp)
    ...     return keras.Model(inp, keras.layers.GlobalAveragePooling2D()(x))
    >>> report = compare_models(net(8), net(4), runs=3, warmup=1)
    >>> report.ratio("params")
    0.5
    """
    from keras_filterprune.profile import count_macs

    _check_timing_args(runs, warmup, batch_size)
    with contextlib.ExitStack() as stack:
        if tmpdir is None:
            tmpdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="kfp-"))
        elif not os.path.isdir(tmpdir):
            raise FileNotFoundError(
                f"`tmpdir` {os.fspath(tmpdir)!r} is not a directory."
            )
        models = {"original": original, "pruned": pruned}
        exports: dict[str, ExportReport] = {}
        for key, model in models.items():
            exports[f"{key}.keras"] = save_keras(
                model, os.path.join(tmpdir, f"{key}.keras")
            )
            exports[f"{key}.tflite"] = export_tflite(
                model,
                os.path.join(tmpdir, f"{key}.tflite"),
                quantization,
                representative_data,
            )
        keras_times = _time_calls(
            [_keras_call(m, batch_size, None)[0] for m in models.values()],
            runs,
            max(warmup, 1),
            interleave,
        )
        tflite_times = _time_calls(
            [
                _tflite_call(
                    exports[f"{k}.tflite"].path, num_threads, batch_size, None
                )[0]
                for k in models
            ],
            runs,
            warmup,
            interleave,
        )
    latency = {}
    for fmt, times, threads in (
        ("keras", keras_times, None),
        ("tflite", tflite_times, num_threads),
    ):
        for key, t in zip(models, times, strict=True):
            latency[f"{key}.{fmt}"] = LatencyStats.from_times(
                t, batch_size=batch_size, num_threads=threads, runtime=fmt
            )

    def pair(values, ratio=True):
        a, b = values
        return {"original": a, "pruned": b, "ratio": b / a if ratio and a else None}

    def median(fmt):
        return [latency[f"{k}.{fmt}"].median_ms for k in models]

    def from_exports(fmt, field):
        return [getattr(exports[f"{k}.{fmt}"], field) for k in models]

    def kib(fmt):
        return [size / 1024 for size in from_exports(fmt, "size_bytes")]

    q = quantization or "float32"
    measured = [
        ("params", "params", "", pair([m.count_params() for m in models.values()])),
        ("macs", "MACs", "", pair([count_macs(m) for m in models.values()])),
        ("keras_size", ".keras size", "KiB", pair(kib("keras"))),
        ("tflite_size", f".tflite size ({q})", "KiB", pair(kib("tflite"))),
        ("keras_latency", "Keras latency, median", "ms", pair(median("keras"))),
        (
            "tflite_latency",
            f"TFLite latency, median, {num_threads} threads",
            "ms",
            pair(median("tflite")),
        ),
        (
            "keras_max_abs_diff",
            ".keras max abs diff vs Keras",
            "",
            pair(from_exports("keras", "max_abs_diff"), ratio=False),
        ),
        (
            "tflite_max_abs_diff",
            ".tflite max abs diff vs Keras",
            "",
            pair(from_exports("tflite", "max_abs_diff"), ratio=False),
        ),
    ]
    rows = [
        {"metric": key, "label": label, "unit": unit, **values}
        for key, label, unit, values in measured
    ]
    settings = {
        "num_threads": num_threads,
        "runs": runs,
        "warmup": warmup,
        "batch_size": batch_size,
        "quantization": quantization,
        "interleave": interleave,
        "original": original.name,
        "pruned": pruned.name,
    }
    return ComparisonReport(rows, settings, exports, latency)
