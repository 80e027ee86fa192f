"""Timing layers in LiteRT for `measure_latency_table`: which calls are timed
(the units), one-layer models at given widths, their conversion, interleaved
timing, and the probe that finds each kernel's block size."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from keras_filterprune._feeds import _samples
from keras_filterprune._tflite_convert import convert_tflite
from keras_filterprune.benchmark import _time_calls
from keras_filterprune.handlers import get_handler
from keras_filterprune.handlers.base import channels_last
from keras_filterprune.handlers.conv import DepthwiseHandler
from keras_filterprune.latency import STEP_AXES
from keras_filterprune.litert import _Runner

__all__ = ["detect_step", "unit_specs"]

STEP_CANDIDATES = (1, 2, 4, 8, 16, 32)
PROBE_WIDTH = 64
_CONFIG_NOISE = ("name", "trainable")


def _kind(layer, handler) -> str | None:
    if isinstance(handler, DepthwiseHandler):
        return "depthwise"
    if handler is not None and handler.produces and getattr(layer, "groups", 1) == 1:
        return "conv"
    return None


def _axis(graph, ids, shape, variable: set[int]) -> tuple[dict, int]:
    """`{"fixed", "groups"}`: channels on the last axis as a linear function of
    the kept channels of each group, and the full width."""
    if ids is None:
        width = int(shape[-1]) if shape is not None and shape[-1] else 0
        return {"fixed": float(width), "groups": {}}, width
    groups = graph.elem_group[ids]
    axis: dict[str, Any] = {"fixed": 0.0, "groups": {}}
    for g in np.unique(groups).tolist():
        count = int(np.sum(groups == g))
        if g in variable:
            axis["groups"][int(g)] = count / graph.groups[g].width
        else:
            axis["fixed"] += count
    return axis, len(ids)


def unit_specs(graph) -> list[dict[str, Any]]:
    """The timed calls of a traced model: convolutions and Dense layers (not
    grouped), with how their input and output widths follow the groups."""
    variable = {g.id for g in graph.groups if g.frozen is None or g.approximate}
    specs = []
    for call in graph.walk.calls:
        handler = get_handler(call.layer)
        kind = _kind(call.layer, handler)
        if kind is None or not call.inputs or not channels_last(call.layer):
            continue
        shape = graph.walk.shapes.get(call.inputs[0])
        if shape is None or any(d is None for d in shape[1:]):
            continue
        in_axis, w_in = _axis(
            graph, graph.tensor_ids.get(call.inputs[0]), shape, variable
        )
        out_shape = graph.walk.shapes.get(call.outputs[0])
        out_axis, w_out = _axis(
            graph, graph.tensor_ids.get(call.outputs[0]), out_shape, variable
        )
        axes = [a for a, ax in (("in", in_axis), ("out", out_axis)) if ax["groups"]]
        if kind == "depthwise":  # its outputs follow its inputs
            axes = [a for a in axes if a == "in"]
        config = {
            k: v for k, v in call.layer.get_config().items() if k not in _CONFIG_NOISE
        }
        key = json.dumps(
            [type(call.layer).__name__, config, list(shape[1:]), w_in, w_out, axes],
            sort_keys=True,
            default=str,
        )
        specs.append(
            {
                "path": call.path,
                "layer": type(call.layer).__name__,
                "kind": kind,
                "in": in_axis,
                "out": out_axis,
                "widths": {"in": w_in, "out": w_out},
                "axes": axes,
                "key": key,
                "call": call,
                "handler": handler,
                "shape": (1, *shape[1:]),
            }
        )
    return specs


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
        samples = _samples(batch if len(batch) > 1 else batch[0], model)
    return convert_tflite(model, quantization, samples, int8_io=False)


def time_contents(
    contents: Sequence[bytes],
    num_threads: int,
    rounds: int = 5,
    runs: int = 5,
    on_round: Callable[[], None] | None = None,
) -> list[float]:
    """Latency in ms of each flatbuffer: `rounds` rounds in rotating order, each
    one warm-up call then `runs` timed calls per model; a model's latency is its
    lowest round median (machine noise only ever adds time, and comes in bursts
    that a round median alone does not survive)."""
    calls = []
    for content in contents:
        runner = _Runner(content, num_threads)
        runner.set_inputs(runner.random_feed(1))
        calls.append(runner.invoke)
    best = [math.inf] * len(calls)
    for r in range(rounds):
        shift = r * len(calls) // rounds
        for j in list(range(shift, len(calls))) + list(range(shift)):
            (times,) = _time_calls([calls[j]], runs, 1, interleave=False)
            best[j] = min(best[j], float(np.median(times)) * 1e3)
        if on_round is not None:
            on_round()
    return best


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


def probe_models(kind: str, axis: str) -> list:
    """One-layer models at `probe_widths()` along `axis` of a 3x3 kernel of
    `kind` on a 28x28x64 (depthwise: 56x56x64) input."""
    if kind == "depthwise":  # a lighter kernel: a larger input
        shape = (1, 56, 56, PROBE_WIDTH)
        layer = keras.layers.DepthwiseConv2D(3, padding="same")
    else:
        shape = (1, 28, 28, PROBE_WIDTH)
        layer = keras.layers.Conv2D(PROBE_WIDTH, 3, padding="same")
    handler = get_handler(layer)
    if axis == "in":
        return [one_layer_model(layer, handler, shape, c, None) for c in probe_widths()]
    return [
        one_layer_model(layer, handler, shape, PROBE_WIDTH, c) for c in probe_widths()
    ]


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
