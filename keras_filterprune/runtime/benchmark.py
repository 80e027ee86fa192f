"""Latency of Keras models and TFLite files, in milliseconds per call.

Keras models are timed with `model.predict_on_batch` (compiled with `tf.function`
by Keras; eager `model(x)` adds ~5 ms of Python overhead per call on small CNNs,
which would hide the effect of pruning), TFLite files in the LiteRT interpreter.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from keras_filterprune.runtime.feeds import input_names, keras_inputs, random_feed
from keras_filterprune.runtime.litert import Runner
from keras_filterprune.runtime.timing import (
    Timing,
    check_adaptive_args,
    check_timing_args,
    median_ci,
    relative_halfwidth,
    time_rounds,
)

__all__ = [
    "LatencyStats",
    "adaptive",
    "benchmark_keras",
    "benchmark_tflite",
    "keras_call",
    "tflite_call",
]


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Latency of one model, in milliseconds per call.

    Timing runs in rounds (see `keras_filterprune.runtime.timing`): each round
    calls the model back to back for at least `min_round_ms`, and its sample is
    the mean time per call. The statistics are over the rounds' samples.

    Attributes:
        median_ms, mean_ms, p90_ms, min_ms, std_ms: `float`. Statistics over the
            rounds' mean times per call (so `p90_ms` is not the tail of single
            calls: time with `min_round_ms=0, target_ci=None` for one call per
            round).
        runs: `int`. Timed calls in all (after `warmup` untimed ones).
        batch_size: `int`. Samples per call.
        num_threads: `int` or `None`. Interpreter threads (`None` for Keras, which
            uses TensorFlow's thread pool).
        runtime: `str`. `"tflite"` or `"keras"`.
        times_ms: `tuple[float, ...]`. Each round's time per call, in order (one
            call per round: every timed call).
        ci_low_ms, ci_high_ms: `float` or `None`. The 95 % confidence interval
            of the median (distribution-free, from the rounds; `None` with fewer
            than 6 rounds).
        ci_rel: `float` or `None`. Its larger half-width relative to the
            median, e.g. `0.02` for ±2 % (`None` without an interval).
        rounds: `int`. Timed rounds.
        calls_per_round: `int`. Calls timed back to back in each round.
        converged: `bool`. The interval met the requested `target_ci` before the
            limits on rounds or time (`True` when no `target_ci` was asked).

    Example:

    The statistics of eight rounds of 2.0 to 2.2 ms per call:

    >>> from keras_filterprune.runtime import LatencyStats, benchmark_keras
    >>> stats = LatencyStats.from_times(
    ...     [0.0020, 0.0021, 0.0020, 0.0022, 0.0021, 0.0020, 0.0021, 0.0020],
    ...     batch_size=1, num_threads=1, runtime="tflite")
    >>> print(stats)
    tflite: median 2.050 ms ±7.3% (95 % CI), mean 2.062, p90 2.130 (8 runs in 8
    rounds, batch 1)
    >>> stats.ci_low_ms, stats.ci_high_ms
    (2.0, 2.2)

    The benchmarks return one:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> stats = benchmark_keras(model, runs=3, target_ci=None)
    >>> stats.runtime, stats.runs >= 3, stats.median_ms > 0
    ('keras', True, True)
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
    ci_low_ms: float | None = None
    ci_high_ms: float | None = None
    ci_rel: float | None = None
    rounds: int = 0
    calls_per_round: int = 1
    converged: bool = True

    @classmethod
    def from_times(
        cls, seconds: Sequence[float], *, calls_per_round: int = 1, **info: Any
    ) -> LatencyStats:
        """Statistics of round samples in seconds per call (one call per round
        unless `calls_per_round` says otherwise)."""
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        median, low, high = median_ci(ms)
        bounded = math.isfinite(low) and math.isfinite(high)
        info.setdefault("converged", True)
        return cls(
            median_ms=median,
            mean_ms=float(ms.mean()),
            p90_ms=float(np.percentile(ms, 90)),
            min_ms=float(ms.min()),
            std_ms=float(ms.std()),
            runs=len(ms) * calls_per_round,
            times_ms=tuple(float(t) for t in ms),
            ci_low_ms=low if bounded else None,
            ci_high_ms=high if bounded else None,
            ci_rel=relative_halfwidth(median, low, high) if bounded else None,
            rounds=len(ms),
            calls_per_round=calls_per_round,
            **info,
        )

    @classmethod
    def from_timing(cls, timing: Timing, **info: Any) -> LatencyStats:
        """Statistics of a `Timing` (`keras_filterprune.runtime.timing`)."""
        return cls.from_times(
            timing.rounds,
            calls_per_round=timing.calls_per_round,
            converged=timing.converged,
            **info,
        )

    def __str__(self) -> str:
        spread = "" if self.ci_rel is None else f" ±{self.ci_rel:.1%} (95 % CI)"
        return (
            f"{self.runtime}: median {self.median_ms:.3f} ms{spread}, mean "
            f"{self.mean_ms:.3f}, p90 {self.p90_ms:.3f} ({self.runs} runs in "
            f"{self.rounds} rounds, batch {self.batch_size})"
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
    min_round_ms: float = 20.0,
    target_ci: float | None = 0.02,
    max_seconds: float | None = 30.0,
) -> LatencyStats:
    """Measures the latency of a TFLite model in the LiteRT interpreter.

    Inputs are set once; each timed call is one `interpreter.invoke()` (XNNPACK
    delegate, as on device), the way TFLite's `benchmark_model` measures.
    Timing adapts to the model: calls are timed in rounds of at least
    `min_round_ms` (a sub-millisecond model is called many times per round), and
    rounds go on until the 95 % confidence interval of the median is within
    `±target_ci` of it (at least 6 rounds and `runs` calls; at most 200 rounds or
    `max_seconds`). The stats report the interval and whether it converged.

    Args:
        path_or_bytes: a `.tflite` path or the flatbuffer bytes.
        num_threads: int. Interpreter threads. Defaults to `2`.
        runs: int. Timed calls, at least. Defaults to `50`.
        warmup: int. Untimed calls first. Defaults to `5`.
        batch_size: int. Batch of the random inputs. Defaults to `1`.
        inputs: array, dict `{name: array}` or `None` (random normal inputs).
        min_round_ms: float. Each round lasts at least this long. `0` times one
            call per round. Defaults to `20.0`.
        target_ci: float or `None`. Relative half-width of the 95 % interval of
            the median to reach, e.g. `0.02` for ±2 %; `None` stops after `runs`
            calls. Defaults to `0.02`.
        max_seconds: float or `None`. Stop timing after about this long even if
            the interval is wider (`converged=False`). Defaults to `30.0`.

    Returns:
        `LatencyStats` (median with its 95 % interval, mean, p90, ... in
        milliseconds).

    Raises:
        ImportError: `ai-edge-litert` is not installed.

    Example:

    >>> import os, tempfile, keras
    >>> from keras_filterprune import export_tflite
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = export_tflite(model, os.path.join(d, "m.tflite"), verbose=0).path
    ...     stats = benchmark_tflite(path, runs=5)
    >>> stats.runs >= 5, stats.ci_low_ms <= stats.median_ms <= stats.ci_high_ms
    (True, True)
    >>> stats.ci_rel is not None  # the interval's half-width / median
    True
    """
    check_timing_args(runs, warmup, batch_size)
    check_adaptive_args(min_round_ms, target_ci, max_seconds)
    call, batch = tflite_call(path_or_bytes, num_threads, batch_size, inputs)
    (timing,) = time_rounds(
        [call], **adaptive(runs, warmup, min_round_ms, target_ci, max_seconds)
    )
    return LatencyStats.from_timing(
        timing, batch_size=batch, num_threads=num_threads, runtime="tflite"
    )


def benchmark_keras(
    model: keras.Model,
    *,
    runs: int = 50,
    warmup: int = 5,
    batch_size: int = 1,
    inputs: Any = None,
    min_round_ms: float = 20.0,
    target_ci: float | None = 0.02,
    max_seconds: float | None = 30.0,
) -> LatencyStats:
    """Measures the latency of `model.predict_on_batch` (compiled, low overhead).

    `predict_on_batch` runs Keras' compiled predict function (a `tf.function` on
    TensorFlow) in inference mode; it costs ~0.1 ms more than a bare
    `tf.function` call, whereas eager `model(x, training=False)` adds several ms of
    per-layer Python overhead. Threads: TensorFlow's intra-op pool. Timing
    adapts to the model as in `benchmark_tflite`.

    Args:
        model: `keras.Model`.
        runs: int. Timed calls, at least. Defaults to `50`.
        warmup: int. Untimed calls first. Defaults to `5`.
        batch_size: int. Batch of the random inputs. Defaults to `1`.
        inputs: what `model` is called with, a dict `{input name: array}`, or
            `None` (random normal inputs).
        min_round_ms: float. As in `benchmark_tflite`. Defaults to `20.0`.
        target_ci: float or `None`. As in `benchmark_tflite`. Defaults to
            `0.02`.
        max_seconds: float or `None`. As in `benchmark_tflite`. Defaults to
            `30.0`.

    Returns:
        `LatencyStats`.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> benchmark_keras(model, runs=3, target_ci=None).runs >= 3
    True
    """
    check_timing_args(runs, warmup, batch_size)
    check_adaptive_args(min_round_ms, target_ci, max_seconds)
    call, batch = keras_call(model, batch_size, inputs)
    (timing,) = time_rounds(
        [call],
        **adaptive(runs, max(warmup, 1), min_round_ms, target_ci, max_seconds),
    )
    return LatencyStats.from_timing(
        timing, batch_size=batch, num_threads=None, runtime="keras"
    )


def adaptive(
    runs: int,
    warmup: int,
    min_round_ms: float,
    target_ci: float | None,
    max_seconds: float | None,
    interleave: bool = False,
) -> dict[str, Any]:
    """`time_rounds` keywords of the public timing arguments."""
    return {
        "runs": runs,
        "warmup": warmup,
        "interleave": interleave,
        "min_round_s": min_round_ms / 1e3,
        "target_ci": target_ci,
        "max_seconds": max_seconds,
    }
