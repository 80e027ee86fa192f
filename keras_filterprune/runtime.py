"""Run TFLite files in LiteRT, time models, compare a model with its pruned copy.

`run_tflite` runs a `.tflite` file (path or bytes) in the LiteRT interpreter
(`ai_edge_litert`, an optional extra), quantising float inputs and dequantising
int8 outputs so results compare directly with Keras.

Latency is measured with the LiteRT interpreter and, for Keras, with
`model.predict_on_batch` (compiled with `tf.function` by Keras; eager `model(x)`
adds ~5 ms of Python overhead per call on small CNNs, which would hide the effect of
pruning). `compare_models` exports both models with `keras_filterprune.export` and
times them with interleaved A/B runs so that machine noise hits both alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import re
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from keras_filterprune.export import (
    ExportReport,
    _input_names,
    _keras_inputs,
    _random_feed,
    _sorted_outputs,
    export_tflite,
    save_keras,
)

__all__ = [
    "ComparisonReport",
    "LatencyStats",
    "benchmark_keras",
    "benchmark_tflite",
    "compare_models",
    "run_tflite",
]

_LITERT_HINT = (
    "Benchmarking and checking TFLite files needs the LiteRT runtime: "
    "pip install keras-filterprune[litert]"
)


# ----------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Latency of one model, in milliseconds per call.

    Attributes:
        median_ms, mean_ms, p90_ms, min_ms, std_ms: `float`. Statistics over runs.
        runs: `int`. Timed calls (after `warmup` untimed ones).
        batch_size: `int`. Samples per call.
        num_threads: `int` or `None`. Interpreter threads (`None` for Keras, which
            uses TensorFlow's thread pool).
        runtime: `str`. `"tflite"` or `"keras"`.
        times_ms: `tuple[float, ...]`. Every timed call, in order.
    """

    median_ms: float
    mean_ms: float
    p90_ms: float
    min_ms: float
    std_ms: float
    runs: int
    batch_size: int
    num_threads: int | None
    runtime: str
    times_ms: tuple[float, ...] = dataclasses.field(repr=False, default=())

    @classmethod
    def from_times(cls, seconds: Sequence[float], **info: Any) -> LatencyStats:
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        return cls(
            median_ms=float(np.median(ms)),
            mean_ms=float(ms.mean()),
            p90_ms=float(np.percentile(ms, 90)),
            min_ms=float(ms.min()),
            std_ms=float(ms.std()),
            runs=len(ms),
            times_ms=tuple(float(t) for t in ms),
            **info,
        )

    def __str__(self) -> str:
        return (
            f"{self.runtime}: median {self.median_ms:.3f} ms, mean {self.mean_ms:.3f}, "
            f"p90 {self.p90_ms:.3f} ({self.runs} runs, batch {self.batch_size})"
        )


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


# ----------------------------------------------------------------------------------
# LiteRT interpreter
# ----------------------------------------------------------------------------------
def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise ImportError(_LITERT_HINT) from e
    return Interpreter


class _Runner:
    """A LiteRT interpreter on one signature, inputs set by name."""

    def __init__(self, model: str | os.PathLike | bytes, num_threads: int) -> None:
        if isinstance(model, (bytes, bytearray)):
            content = bytes(model)
        elif isinstance(model, (str, os.PathLike)):
            if not os.path.isfile(model):
                raise FileNotFoundError(f"No TFLite file at {os.fspath(model)!r}.")
            with open(model, "rb") as f:
                content = f.read()
        else:
            raise TypeError(
                "Expected a .tflite path or its bytes. "
                f"Received: {type(model).__name__}"
            )
        if not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"`num_threads` must be >= 1. Received: {num_threads!r}")
        self.interpreter = _interpreter_class()(
            model_content=content, num_threads=num_threads
        )
        signatures = self.interpreter.get_signature_list()
        if signatures:
            runner = self.interpreter.get_signature_runner(next(iter(signatures)))
            self.input_details = runner.get_input_details()
            self.output_details = runner.get_output_details()
        else:  # a flatbuffer without signature: name tensors by position
            self.input_details = {
                f"input_{i}": d
                for i, d in enumerate(self.interpreter.get_input_details())
            }
            self.output_details = {
                f"output_{i}": d
                for i, d in enumerate(self.interpreter.get_output_details())
            }

    def set_inputs(self, feed: dict[str, np.ndarray]) -> None:
        if set(feed) != set(self.input_details):
            raise ValueError(
                f"The TFLite model takes inputs {sorted(self.input_details)}. "
                f"Received: {sorted(feed)}"
            )
        for name, value in feed.items():
            detail = self.input_details[name]
            self.interpreter.resize_tensor_input(detail["index"], value.shape)
        self.interpreter.allocate_tensors()
        for name, value in feed.items():
            detail = self.input_details[name]
            self.interpreter.set_tensor(detail["index"], _to_tensor(value, detail))

    def invoke(self) -> None:
        self.interpreter.invoke()

    def as_feed(self, inputs: Any) -> dict[str, np.ndarray]:
        """`{name: array}` from a dict, or from an array for a one-input model."""
        if not isinstance(inputs, dict):
            if len(self.input_details) != 1:
                raise ValueError(
                    f"The TFLite model has {len(self.input_details)} inputs "
                    f"{sorted(self.input_details)}: pass a dict {{name: array}}."
                )
            inputs = {next(iter(self.input_details)): inputs}
        return {k: np.asarray(v) for k, v in inputs.items()}

    def run(self, feed: dict[str, np.ndarray], dequantize: bool = True) -> dict:
        """Runs `feed`, in chunks when the file has a fixed batch size."""
        first = next(iter(self.input_details.values()))
        fixed = (
            int(first["shape_signature"][0]) if len(first["shape_signature"]) else -1
        )
        batch = len(next(iter(feed.values())))
        if fixed < 1 or fixed == batch:
            self.set_inputs(feed)
            self.invoke()
            return self.outputs(dequantize)
        if batch % fixed:
            raise ValueError(
                f"The TFLite model has a fixed batch size {fixed}; the batch of "
                f"{batch} is not a multiple of it."
            )
        chunks = []
        for i in range(0, batch, fixed):
            self.set_inputs({k: v[i : i + fixed] for k, v in feed.items()})
            self.invoke()
            chunks.append(self.outputs(dequantize))
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

    def outputs(self, dequantize: bool) -> dict[str, np.ndarray]:
        result = {}
        for name, detail in self.output_details.items():
            value = self.interpreter.get_tensor(detail["index"])
            scale, zero = detail["quantization"]
            if dequantize and scale and np.issubdtype(value.dtype, np.integer):
                value = (value.astype(np.float32) - zero) * scale
            result[name] = value
        return result

    def random_feed(self, batch_size: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(0)
        feed = {}
        for name, d in self.input_details.items():
            shape = [
                batch_size if i == 0 else s for i, s in enumerate(d["shape_signature"])
            ]
            if any(s < 0 for s in shape):
                raise ValueError(
                    f"Input {name!r} has unknown dimensions {d['shape_signature']}; "
                    "pass `inputs=`."
                )
            if np.issubdtype(d["dtype"], np.integer):
                info = np.iinfo(d["dtype"])
                feed[name] = rng.integers(
                    max(info.min, -128), min(info.max, 127), size=shape
                ).astype(d["dtype"])
            else:
                feed[name] = rng.standard_normal(shape).astype(d["dtype"])
        return feed


def _to_tensor(value: Any, detail: dict) -> np.ndarray:
    value = np.asarray(value)
    dtype = detail["dtype"]
    scale, zero = detail["quantization"]
    if scale and np.issubdtype(dtype, np.integer) and value.dtype.kind == "f":
        info = np.iinfo(dtype)
        value = np.clip(np.round(value / scale + zero), info.min, info.max)
    return value.astype(dtype)


def run_tflite(
    path_or_bytes: str | os.PathLike | bytes,
    inputs: Any,
    *,
    num_threads: int = 2,
    dequantize: bool = True,
) -> Any:
    """Runs a TFLite model in LiteRT on a batch of inputs.

    Float inputs are quantised for int8-input models, and int8 outputs are
    dequantised (unless `dequantize=False`), so the results compare directly with
    the Keras model's.

    Args:
        path_or_bytes: a `.tflite` path or the flatbuffer bytes.
        inputs: an array (one-input model) or a dict `{input name: array}` (the
            names are the `keras.Input` names). The batch size may differ from the
            one the file was converted with when its batch dimension is dynamic.
        num_threads: int. Interpreter threads. Defaults to `2`.
        dequantize: bool. Return int8 outputs as floats. Defaults to `True`.

    Returns:
        One array for a one-output model; a list for the outputs of a model with
        list outputs (in Keras order); a dict for a model with dict outputs.

    Raises:
        ValueError: the inputs do not match the model's.
        ImportError: `ai-edge-litert` is not installed.

    Example:

    >>> import os, tempfile, keras, numpy as np
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = export_tflite(model, os.path.join(d, "m.tflite")).path
    ...     y = run_tflite(path, np.ones((3, 4), "float32"))
    >>> y.shape
    (3, 2)
    """
    runner = _Runner(path_or_bytes, num_threads)
    outputs = runner.run(runner.as_feed(inputs), dequantize)
    ordered = _sorted_outputs(outputs)
    if len(ordered) == 1:
        return ordered[0]
    if all(re.fullmatch(r"output_\d+", k) for k in outputs):
        return ordered
    return outputs


# ----------------------------------------------------------------------------------
# Latency
# ----------------------------------------------------------------------------------
def _check_timing_args(runs: int, warmup: int, batch_size: int) -> None:
    for name, value, low in (
        ("runs", runs, 1),
        ("warmup", warmup, 0),
        ("batch_size", batch_size, 1),
    ):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"`{name}` must be an int >= {low}. Received: {value!r}")


def _batch_of(inputs: Any) -> int:
    return len(keras.tree.flatten(inputs)[0])


def _tflite_call(model, num_threads, batch_size, inputs):
    """Returns `(invoke, batch size)` with the inputs set once."""
    runner = _Runner(model, num_threads)
    feed = runner.random_feed(batch_size) if inputs is None else runner.as_feed(inputs)
    runner.set_inputs(feed)
    return runner.invoke, _batch_of(feed)


def _keras_call(model, batch_size, inputs):
    """Returns `(predict_on_batch closure, batch size)`."""
    if inputs is None:
        inputs = _keras_inputs(model, _random_feed(model, batch_size))
    elif isinstance(inputs, dict) and set(inputs) == set(_input_names(model)):
        inputs = _keras_inputs(model, inputs)
    return (lambda: model.predict_on_batch(inputs)), _batch_of(inputs)


def _time_calls(calls: Sequence, runs: int, warmup: int, interleave: bool):
    """Times each call `runs` times; interleaved runs alternate A B, B A, …"""
    for call in calls:
        for _ in range(warmup):
            call()
    times: list[list[float]] = [[] for _ in calls]
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        if interleave:
            for i in range(runs):
                order = range(len(calls)) if i % 2 == 0 else reversed(range(len(calls)))
                for j in order:
                    t0 = time.perf_counter()
                    calls[j]()
                    times[j].append(time.perf_counter() - t0)
        else:
            for j, call in enumerate(calls):
                for _ in range(runs):
                    t0 = time.perf_counter()
                    call()
                    times[j].append(time.perf_counter() - t0)
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def benchmark_tflite(
    path_or_bytes: str | os.PathLike | bytes,
    *,
    num_threads: int = 2,
    runs: int = 50,
    warmup: int = 5,
    batch_size: int = 1,
    inputs: Any = None,
) -> LatencyStats:
    """Measures the latency of a TFLite model in the LiteRT interpreter.

    Inputs are set once; each timed run is one `interpreter.invoke()` (XNNPACK
    delegate, as on device), the way TFLite's `benchmark_model` measures.

    Args:
        path_or_bytes: a `.tflite` path or the flatbuffer bytes.
        num_threads: int. Interpreter threads. Defaults to `2`.
        runs: int. Timed runs. Defaults to `50`.
        warmup: int. Untimed runs first. Defaults to `5`.
        batch_size: int. Batch of the random inputs. Defaults to `1`.
        inputs: array, dict `{name: array}` or `None` (random normal inputs).

    Returns:
        `LatencyStats` (median, mean, p90, ... in milliseconds).

    Raises:
        ImportError: `ai-edge-litert` is not installed.

    Example:

    >>> import os, tempfile, keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = export_tflite(model, os.path.join(d, "m.tflite")).path
    ...     stats = benchmark_tflite(path, runs=5)
    >>> stats.runs, stats.median_ms > 0
    (5, True)
    """
    _check_timing_args(runs, warmup, batch_size)
    call, batch = _tflite_call(path_or_bytes, num_threads, batch_size, inputs)
    (times,) = _time_calls([call], runs, warmup, interleave=False)
    return LatencyStats.from_times(
        times, batch_size=batch, num_threads=num_threads, runtime="tflite"
    )


def benchmark_keras(
    model: keras.Model,
    *,
    runs: int = 50,
    warmup: int = 5,
    batch_size: int = 1,
    inputs: Any = None,
) -> LatencyStats:
    """Measures the latency of `model.predict_on_batch` (compiled, low overhead).

    `predict_on_batch` runs Keras' compiled predict function (a `tf.function` on
    TensorFlow) in inference mode; it costs ~0.1 ms more than a bare
    `tf.function` call, whereas eager `model(x, training=False)` adds several ms of
    per-layer Python overhead. Threads: TensorFlow's intra-op pool.

    Args:
        model: `keras.Model`.
        runs, warmup, batch_size: as in `benchmark_tflite`.
        inputs: what `model` is called with, a dict `{input name: array}`, or
            `None` (random normal inputs).

    Returns:
        `LatencyStats`.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> benchmark_keras(model, runs=3).runs
    3
    """
    _check_timing_args(runs, warmup, batch_size)
    call, batch = _keras_call(model, batch_size, inputs)
    (times,) = _time_calls([call], runs, max(warmup, 1), interleave=False)
    return LatencyStats.from_times(
        times, batch_size=batch, num_threads=None, runtime="keras"
    )


# ----------------------------------------------------------------------------------
# Original vs pruned
# ----------------------------------------------------------------------------------
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
