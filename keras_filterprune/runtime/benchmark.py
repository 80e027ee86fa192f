"""Latency of Keras models and TFLite files, in milliseconds per call.

Keras models are timed with `model.predict_on_batch` (compiled with `tf.function`
by Keras; eager `model(x)` adds ~5 ms of Python overhead per call on small CNNs,
which would hide the effect of pruning), TFLite files in the LiteRT interpreter.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from keras_filterprune.runtime.feeds import input_names, keras_inputs, random_feed
from keras_filterprune.runtime.litert import Runner
from keras_filterprune.runtime.timing import check_timing_args, time_calls

__all__ = [
    "LatencyStats",
    "benchmark_keras",
    "benchmark_tflite",
    "keras_call",
    "tflite_call",
]


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


def _batch_of(inputs: Any) -> int:
    return len(keras.tree.flatten(inputs)[0])


def tflite_call(model, num_threads, batch_size, inputs):
    """Returns `(invoke, batch size)` with the inputs set once."""
    runner = Runner(model, num_threads)
    feed = runner.random_feed(batch_size) if inputs is None else runner.as_feed(inputs)
    runner.set_inputs(feed)
    return runner.invoke, _batch_of(feed)


def keras_call(model, batch_size, inputs):
    """Returns `(predict_on_batch closure, batch size)`."""
    if inputs is None:
        inputs = keras_inputs(model, random_feed(model, batch_size))
    elif isinstance(inputs, dict) and set(inputs) == set(input_names(model)):
        inputs = keras_inputs(model, inputs)
    return (lambda: model.predict_on_batch(inputs)), _batch_of(inputs)


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
    >>> from keras_filterprune import export_tflite
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = export_tflite(model, os.path.join(d, "m.tflite"), verbose=0).path
    ...     stats = benchmark_tflite(path, runs=5)
    >>> stats.runs, stats.median_ms > 0
    (5, True)
    """
    check_timing_args(runs, warmup, batch_size)
    call, batch = tflite_call(path_or_bytes, num_threads, batch_size, inputs)
    (times,) = time_calls([call], runs, warmup, interleave=False)
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
        runs: int. Timed calls. Defaults to `50`.
        warmup: int. Untimed calls first. Defaults to `5`.
        batch_size: int. Batch of the random inputs. Defaults to `1`.
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
    check_timing_args(runs, warmup, batch_size)
    call, batch = keras_call(model, batch_size, inputs)
    (times,) = time_calls([call], runs, max(warmup, 1), interleave=False)
    return LatencyStats.from_times(
        times, batch_size=batch, num_threads=None, runtime="keras"
    )
