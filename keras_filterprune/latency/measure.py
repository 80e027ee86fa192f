"""`measure_latency_table`: timing layers in LiteRT. Which calls are timed (the
units, `keras_filterprune.latency.units`), one-layer models at given widths,
their conversion, rotating-round timing, and the probe that finds each kernel's
block size. Needs the TensorFlow backend (conversion) and LiteRT."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from keras_filterprune._deprecation import graph_argument_removed
from keras_filterprune._messages import say
from keras_filterprune._validation import check_int
from keras_filterprune.export import QUANTIZATIONS
from keras_filterprune.graph import graph_of
from keras_filterprune.handlers import get_handler
from keras_filterprune.latency.schema import RUNTIMES, STEP_AXES
from keras_filterprune.latency.table import LatencyTable
from keras_filterprune.latency.units import unit_specs
from keras_filterprune.runtime import feeds
from keras_filterprune.runtime.convert import convert_tflite
from keras_filterprune.runtime.litert import Runner, interpreter_class
from keras_filterprune.runtime.timing import (
    Timing,
    check_adaptive_args,
    time_rounds,
)

__all__ = [
    "convert",
    "detect_step",
    "measure_latency_table",
    "probe_models",
    "probe_widths",
    "sample_widths",
    "time_contents",
    "time_flatbuffers",
]

STEP_CANDIDATES = (1, 2, 4, 8, 16, 32)
PROBE_WIDTH = 64


@graph_argument_removed
def measure_latency_table(
    model,
    runtime: str = "litert",
    *,
    num_threads: int = 2,
    quantization: str | None = None,
    widths: int | Sequence[float] = 4,
    steps: Mapping[str, Mapping[str, int]] | None = None,
    rounds: int = 5,
    verbose: int = 1,
    min_round_ms: float = 20.0,
    target_ci: float | None = 0.02,
    max_seconds: float | None = 600.0,
) -> LatencyTable:
    """Measures how long each convolution and Dense layer of `model` takes in
    the target runtime, at several widths.

    Every timed layer is rebuilt alone (same config, same input shape, batch 1)
    at its full width and at `widths` block boundaries along each axis that
    pruning changes, converted to TFLite with `quantization` and timed in LiteRT
    with `num_threads` threads, less the cost of an empty invocation. Timing
    adapts to each model: rotating rounds in which each model is called back to
    back for at least `min_round_ms`, until the 95 % confidence interval of each
    model's median round is within `±target_ci` of it (a model that gets there
    stops; at least `rounds` and 6 rounds, at most 200 rounds or `max_seconds`).
    The table records each time's interval (`full_ms_ci`, each curve's `ms_ci`
    and `settings["model_ms_ci"]`: relative half-widths). Layers of identical
    class, config and input shape are measured once. The whole model is timed
    the same way.

    The block size of each kernel (XNNPACK computes output channels in blocks,
    e.g. 32 float32 channels) is found by a probe that times one 3x3 kernel at
    widths 1 to 64 (about 30 s per kind of kernel) unless `steps` gives it,
    e.g. `steps=other_table.steps` for a table measured with the same settings.

    Measuring needs the TensorFlow backend (for conversion) and the LiteRT
    runtime (`pip install keras-filterprune[litert]`). Run it on the device the
    model will run on, or on the same kind of CPU, with nothing else running.

    Args:
        model: A built Functional or Sequential `keras.Model` (only read).
        runtime: `"litert"` (the only runtime so far).
        num_threads: `int`. Interpreter threads. Defaults to `2`.
        quantization: `None` (float32), `"float16"`, `"dynamic"` or `"int8"`, as
            in `export_tflite`. Defaults to `None`.
        widths: `int` (that many evenly spaced fractions of each width) or a
            list of fractions in (0, 1]. Defaults to `4` (25 %, 50 %, 75 %, 100 %).
        steps: Block sizes `{"conv": {"in": int, "out": int}, "depthwise":
            {"in": int}}` to use instead of probing them.
        rounds: `int`. Timing rounds, at least. Defaults to `5`.
        verbose: `int`. `1` shows a progress bar. Defaults to `1`.
        min_round_ms: `float`. Each model's part of a round lasts at least this
            long (`0`: one call). Defaults to `20.0`.
        target_ci: `float` or `None`. Relative half-width of the 95 % interval
            of each median to reach (`None`: exactly `rounds` rounds). Defaults
            to `0.02`.
        max_seconds: `float` or `None`. Time limit of the layers' timing (the
            times then have wider intervals, which the table records). Defaults
            to `600.0`.

    Returns:
        A `LatencyTable`.

    Raises:
        ValueError: an unknown runtime or quantization, bad `widths`/`steps`, or
            a model with no layer to time.
        RuntimeError: a backend other than TensorFlow.
        ImportError: LiteRT is not installed.

    Example:

    Not run as a doctest: it converts and times every layer (a minute).

    >>> import keras
    >>> from keras_filterprune import plan_pruning
    >>> from keras_filterprune.latency import LatencyTable, measure_latency_table
    >>> model = keras.Sequential([
    ...     keras.Input((32, 32, 3)), keras.layers.Conv2D(64, 3),
    ...     keras.layers.Conv2D(10, 1)])
    >>> table = measure_latency_table(model, num_threads=4)  # doctest: +SKIP
    >>> table.save("latency.json")  # doctest: +SKIP
    >>> table = LatencyTable.load("latency.json")  # doctest: +SKIP
    >>> plan = plan_pruning(
    ...     model, target_latency="50%", latency_table=table)  # doctest: +SKIP
    """
    if runtime not in RUNTIMES:
        raise ValueError(
            f"`runtime` must be one of {RUNTIMES}: keras-filterprune measures "
            f"latency in LiteRT (TFLite). Received: runtime={runtime!r}"
        )
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"`quantization` must be one of {QUANTIZATIONS}. "
            f"Received: quantization={quantization!r}"
        )
    num_threads = check_int(num_threads, "num_threads", 1)
    rounds = check_int(rounds, "rounds", 1)
    check_adaptive_args(min_round_ms, target_ci, max_seconds)
    timing = {
        "min_round_ms": min_round_ms,
        "target_ci": target_ci,
        "max_seconds": max_seconds,
    }
    widths = check_widths(widths)
    steps = check_steps(steps)
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "measure_latency_table converts layers to TFLite with TensorFlow: run "
            "it with KERAS_BACKEND=tensorflow (the table it saves plans pruning "
            f"on any backend). Current backend: {keras.backend.backend()!r}"
        )
    interpreter_class()
    graph = graph_of(model)
    specs = unit_specs(graph)
    if not specs:
        raise ValueError(
            f"Model '{model.name}' has no convolution or Dense layer with known "
            "input shapes to time (channels_last, fixed spatial size)."
        )
    needed = sorted({(s["kind"], a) for s in specs for a in s["axes"]})
    unique = {s["key"]: s for s in specs}
    found = {k: dict(v) for k, v in (steps or {}).items()}
    probes = [(k, a) for k, a in needed if a not in found.get(k, {})]
    bars: list = []  # the progress bar of the current phase

    def tick() -> None:
        bars[-1].add(1)

    def converted(m) -> bytes:
        content = convert(m, quantization)
        tick()
        return content

    for kind, axis in probes:
        if verbose:
            say(f"Probing the block size of {kind} kernels along {axis}put channels")
        bars.append(keras.utils.Progbar(len(probe_widths()) + 3, verbose=verbose))
        probe = [converted(m) for m in probe_models(kind, axis)]
        ms = time_contents(probe, num_threads, 3, 5, tick, **timing)
        found.setdefault(kind, {})[axis] = detect_step(probe_widths(), ms)
    jobs = [  # (key, axis, width) of every curve point below full width
        (key, axis, w)
        for key, spec in unique.items()
        for axis in spec["axes"]
        for w in sample_widths(
            spec["widths"][axis], axis_step(found, spec, axis, widths), widths
        )[:-1]
    ]
    if verbose:
        say(f"Timing {len(specs)} layers ({len(unique)} distinct) of '{model.name}'")
    bars.append(
        keras.utils.Progbar(2 + len(unique) + len(jobs) + rounds, verbose=verbose)
    )
    contents = [converted(null_model()), converted(model)]
    index: dict[tuple, int] = {}
    for key, spec in unique.items():
        index[key, "full"] = len(contents)
        full = (spec["widths"]["in"], spec["widths"]["out"])
        contents.append(converted(unit_model(spec, *full)))
    for key, axis, w in jobs:
        spec = unique[key]
        c_in, c_out = (w, None) if axis == "in" else (spec["widths"]["in"], w)
        index[key, axis, w] = len(contents)
        contents.append(converted(unit_model(spec, c_in, c_out)))
    timed = time_flatbuffers(contents, num_threads, rounds, 5, tick, **timing)
    ms = [t.ci()[0] * 1e3 for t in timed]
    overhead = ms[0]

    def net(i: int) -> float:
        return max(ms[i] - overhead, 1e-6)

    def spread(i: int) -> float | None:
        """The relative half-width of the interval of `net(i)`."""
        rel = timed[i].relative_ci()
        return round(rel * ms[i] / net(i), 6) if math.isfinite(rel) else None

    units = []
    for spec in specs:
        key, full_ms = spec["key"], net(index[spec["key"], "full"])
        curves: dict[str, Any] = {"in": None, "out": None}
        for axis in spec["axes"]:
            step = axis_step(found, spec, axis, widths)
            points = sample_widths(spec["widths"][axis], step, widths)
            times = [net(index[key, axis, w]) for w in points[:-1]] + [full_ms]
            spreads = [spread(index[key, axis, w]) for w in points[:-1]]
            spreads.append(spread(index[key, "full"]))
            curves[axis] = {
                "step": step,
                "widths": points,
                "ms": times,
                "ms_ci": spreads,
            }
        units.append(
            {
                "path": spec["path"],
                "layer": spec["layer"],
                "kind": spec["kind"],
                "in": spec["in"],
                "out": spec["out"],
                "full_ms": full_ms,
                "full_ms_ci": spread(index[key, "full"]),
                "curves": curves,
                **spec["numbered"],  # which call of a shared layer
            }
        )
    settings = settings_of(runtime, num_threads, quantization, rounds, overhead)
    model_ci = timed[1].relative_ci()
    settings["model_ms_ci"] = round(model_ci, 6) if math.isfinite(model_ci) else None
    settings["timing"] = {
        **timing,
        "unconverged": sum(not t.converged for t in timed),
        "max_rounds_used": max(len(t.rounds) for t in timed),
    }
    return LatencyTable(
        model_name=graph.model_name,
        model_ms=ms[1],
        settings=settings,
        steps=found,
        groups={g.id: g.width for g in graph.groups},
        units=units,
    )


def sample_widths(full: int, step: int, widths: int | Sequence[float]) -> list[int]:
    """Block boundaries to time: `widths` fractions of `full` (or that many,
    evenly spread), each rounded up to a multiple of `step`, plus the smallest
    block and `full` itself."""
    if isinstance(widths, int):
        fractions = [(i + 1) / widths for i in range(widths)]
    else:
        fractions = list(widths)
    points = {min(full, math.ceil(f * full / step) * step) for f in fractions}
    points |= {min(step, full), full}
    return sorted(p for p in points if p >= 1)


def axis_step(steps, spec, axis: str, widths: Sequence[float]) -> int:
    """The block size a unit is sampled and costed at along `axis`: the probed
    block size of its kind, but at most a quarter of its width (the probe sweeps
    64 channels; narrower layers can have finer blocks, and a finer grid only
    measures more points, whose times then show any coarser block)."""
    full = spec["widths"][axis]
    return max(1, min(steps[spec["kind"]][axis], full // max(4, len(widths))))


def one_layer_model(layer, handler, shape: tuple, c_in: int, c_out: int | None):
    """A model of one fresh copy of `layer` with `c_in` input channels (and
    `c_out` filters when it produces channels)."""
    config = layer.get_config()
    if c_out is not None and handler.produces:
        config = handler.prune_config(layer, config, c_out)
    config.pop("name", None)
    inputs = keras.Input(batch_shape=(*shape[:-1], c_in))
    return keras.Model(inputs, type(layer).from_config(config)(inputs))


def convert(model, quantization: str | None) -> bytes:
    """TFLite flatbuffer of `model` (through a SavedModel, as `export_tflite`
    converts: weights become constants that XNNPACK packs; int8 is calibrated on
    random normal inputs)."""
    samples = None
    if quantization == "int8":
        rng = np.random.default_rng(0)
        batch = [
            rng.standard_normal((4, *tuple(i.shape)[1:])).astype("float32")
            for i in model.inputs
        ]
        samples = feeds.samples(batch if len(batch) > 1 else batch[0], model)
    return convert_tflite(model, quantization, samples, int8_io=False)


def time_flatbuffers(
    contents: Sequence[bytes],
    num_threads: int,
    rounds: int = 5,
    runs: int = 5,
    on_round: Callable[[], None] | None = None,
    *,
    min_round_ms: float = 20.0,
    target_ci: float | None = 0.02,
    max_seconds: float | None = 300.0,
    drop_converged: bool = True,
) -> list[Timing]:
    """How each flatbuffer was timed: rounds in alternating order (each model
    called back to back for at least `min_round_ms`; at least `rounds` rounds
    and `runs` calls), until each model's 95 % interval of its median round is
    within `±target_ci` (a model that gets there stops, unless
    `drop_converged=False`: models whose times are compared with each other
    are timed in the same rounds to the end), at most 200 rounds or
    `max_seconds`. `on_round` is called after each of the first `rounds`
    rounds (a progress bar's steps)."""
    calls = []
    for content in contents:
        runner = Runner(content, num_threads)
        runner.set_inputs(runner.random_feed(1))
        calls.append(runner.invoke)

    def tick(r: int) -> None:
        if on_round is not None and r < rounds:
            on_round()

    return time_rounds(
        calls,
        runs=runs,
        warmup=1,
        interleave=True,
        min_rounds=rounds,
        min_round_s=min_round_ms / 1e3,
        target_ci=target_ci,
        max_seconds=max_seconds,
        drop_converged=drop_converged,
        on_round=tick,
    )


def time_contents(
    contents: Sequence[bytes],
    num_threads: int,
    rounds: int = 5,
    runs: int = 5,
    on_round: Callable[[], None] | None = None,
    **timing,
) -> list[float]:
    """Latency in ms of each flatbuffer: the median round of
    `time_flatbuffers` (same arguments)."""
    timed = time_flatbuffers(contents, num_threads, rounds, runs, on_round, **timing)
    return [t.ci()[0] * 1e3 for t in timed]


def detect_step(widths: Sequence[int], ms: Sequence[float]) -> int:
    """The block size of a latency-against-width sweep (widths 1..N, N >= 64).

    Fits `a + b · ceil(c / s) · s` for each candidate `s` (least squares) and
    returns the smallest `s` whose residual is within 10 % of the best one: a
    staircase of 32-channel blocks fits with `s = 32` far better than a line,
    and a linear cost fits `s = 1` best.
    """
    c = np.asarray(widths, dtype=np.float64)
    t = np.asarray(ms, dtype=np.float64)
    residuals = {}
    for s in STEP_CANDIDATES:
        x = np.ceil(c / s) * s
        design = np.stack([np.ones_like(x), x], axis=1)
        _, res, *_ = np.linalg.lstsq(design, t, rcond=None)
        residuals[s] = float(res[0]) if res.size else 0.0
    best = min(residuals.values())
    return min(s for s, r in residuals.items() if r <= best * 1.1 + 1e-18)


def probe_widths() -> list[int]:
    """Widths a step probe times: 1, 4, 5, 8, 9, ..., 64 (pairs that one block
    of 4, 8, 16 or 32 channels costs alike and a linear cost does not)."""
    return sorted({w for k in range(PROBE_WIDTH // 4) for w in (4 * k + 1, 4 * k + 4)})


def probe_models(kind: str, axis: str, widths: Sequence[int] | None = None) -> list:
    """One-layer models at `widths` (default `probe_widths()`) along `axis` of a
    3x3 kernel of `kind` on a 28x28x64 (depthwise: 56x56x64) input."""
    widths = probe_widths() if widths is None else list(widths)
    if kind == "depthwise":  # a lighter kernel: a larger input
        shape = (1, 56, 56, PROBE_WIDTH)
        layer = keras.layers.DepthwiseConv2D(3, padding="same")
    else:
        shape = (1, 28, 28, PROBE_WIDTH)
        layer = keras.layers.Conv2D(PROBE_WIDTH, 3, padding="same")
    handler = get_handler(layer)
    if axis == "in":
        return [one_layer_model(layer, handler, shape, c, None) for c in widths]
    return [one_layer_model(layer, handler, shape, PROBE_WIDTH, c) for c in widths]


def null_model():
    """The smallest model: what one invocation costs with no work."""
    inputs = keras.Input(batch_shape=(1, 1))
    return keras.Model(inputs, keras.layers.Dense(1)(inputs))


def unit_model(spec, c_in: int, c_out: int | None):
    layer = spec["call"].layer
    return one_layer_model(layer, spec["handler"], spec["shape"], c_in, c_out)


def check_widths(widths: Any) -> list[float]:
    if isinstance(widths, int) and not isinstance(widths, bool) and widths >= 1:
        return [(i + 1) / widths for i in range(widths)]
    try:
        fractions = sorted({float(w) for w in widths})
    except (TypeError, ValueError):
        fractions = []
    if not fractions or not all(0 < f <= 1 for f in fractions):
        raise ValueError(
            "`widths` must be a number of widths (int >= 1) or a list of "
            f"fractions in (0, 1]. Received: widths={widths!r}"
        )
    return fractions if fractions[-1] == 1.0 else [*fractions, 1.0]


def check_steps(steps: Any) -> dict[str, dict[str, int]] | None:
    if steps is None:
        return None
    ok = isinstance(steps, Mapping) and all(
        k in STEP_AXES
        and isinstance(v, Mapping)
        and all(
            a in STEP_AXES[k]
            and isinstance(s, int)
            and not isinstance(s, bool)
            and s >= 1
            for a, s in v.items()
        )
        for k, v in steps.items()
    )
    if not ok:
        raise ValueError(
            "`steps` must map 'conv' to {'in': int, 'out': int} and 'depthwise' "
            "to {'in': int} (block sizes >= 1), e.g. another table's `.steps`. "
            f"Received: steps={steps!r}"
        )
    return {k: dict(v) for k, v in steps.items()}


def settings_of(runtime, num_threads, quantization, rounds, overhead) -> dict:
    import datetime
    import platform

    import keras
    import tensorflow as tf

    try:
        from importlib.metadata import version

        runtime_version = version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - a version we cannot read is recorded as such
        runtime_version = "unknown"
    cpu = platform.processor() or platform.machine()
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            names = [
                ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")
            ]
        cpu = names[0] if names else cpu
    return {
        "runtime": runtime,
        "runtime_version": runtime_version,
        "num_threads": num_threads,
        "quantization": quantization,
        "machine": {
            "cpu": cpu,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "converter": f"tensorflow {tf.__version__}, keras {keras.__version__}",
        "rounds": rounds,
        "invoke_overhead_ms": overhead,
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
    }
