"""Latency tables: how long each layer takes in the target runtime at each width.

`measure_latency_table` times every convolution and Dense layer of a model in
small converted models (one layer each) at sampled widths, in LiteRT with the
settings the model will run with, and returns a `LatencyTable`. The planner spends
a latency budget with it (`plan_pruning(target_latency=..., latency_table=...)`)
the way it spends a MAC budget; `LatencyTable.latency_ms(plan)` predicts the
latency of a plan without building or converting the pruned model.

The cost model per layer is step-aware: XNNPACK computes output channels in
blocks (of 32 float32 channels on AVX-512 CPUs, for instance), so 40 filters cost
as much as 64. A probe measures the block size of each kind of kernel once per
runtime setting, every sampled width is a block boundary, and a width is costed at
the boundary it rounds up to.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keras_filterprune._files import check_writable, write_text
from keras_filterprune._messages import say
from keras_filterprune._validation import check_int
from keras_filterprune.pruning_plan import PruningPlan, check_plan

__all__ = ["LatencyTable", "measure_latency_table", "parse_latency_target"]

FORMAT = "keras-filterprune-latency-table"
VERSION = 1
RUNTIMES = ("litert",)


def _interp_step(curve: Mapping[str, Any], width: float) -> float:
    """A curve's latency at `width`: rounded up to the curve's step, then
    interpolated between the measured block boundaries."""
    widths, ms = curve["widths"], curve["ms"]
    step = curve["step"]
    snapped = min(math.ceil(max(width, 1e-9) / step - 1e-9) * step, widths[-1])
    return float(np.interp(snapped, widths, ms))


class LatencyTable:
    """Measured latency of every timed layer of one model against its widths.

    Made by `measure_latency_table`; saved and loaded as JSON
    (`save(path)` / `LatencyTable.load(path)`). A table belongs to one model (its
    name and channel groups are recorded and checked) and one runtime setting
    (runtime and its version, threads, quantization and the machine are recorded).

    Each timed layer ("unit") has a latency at full width and, along each axis
    that pruning changes (input and output channels), a curve of measured
    latencies at block boundaries. Its latency at `(c_in, c_out)` is
    `full_ms · out(c_out)/out(full) · in(c_in)/in(full)`. The model's predicted
    latency is its measured latency scaled by the sum of its units' latencies.

    Attributes:
        model_name: `str`. The model the table was measured on.
        model_ms: `float`. Median latency of the whole unpruned model.
        settings: `dict`. runtime, runtime_version, num_threads, quantization,
            machine.
        steps: `dict`. Block size per kernel kind and axis, e.g.
            `{"conv": {"out": 32, "in": 1}, "depthwise": {"in": 16}}`.
        groups: `dict[int, int]`. Channel group id → width.
        units: `list[dict]`. One per timed layer call.
    """

    def __init__(
        self,
        *,
        model_name: str,
        model_ms: float,
        settings: Mapping[str, Any],
        steps: Mapping[str, Mapping[str, int]],
        groups: Mapping[int, int],
        units: Sequence[Mapping[str, Any]],
    ) -> None:
        self.model_name = model_name
        self.model_ms = float(model_ms)
        self.settings = dict(settings)
        self.steps = {k: dict(v) for k, v in steps.items()}
        self.groups = {int(g): int(w) for g, w in groups.items()}
        self.units = [dict(u) for u in units]
        self.full_units_ms = self._sum(self.groups)

    # -- prediction -------------------------------------------------------------
    def unit_latency(
        self, unit: Mapping[str, Any], counts: Mapping[int, float]
    ) -> float:
        """Predicted latency (ms) of one unit when group `g` keeps `counts[g]`
        channels (every group of the unit must be in `counts`)."""
        ms = unit["full_ms"]
        for axis in ("in", "out"):
            curve = unit["curves"].get(axis)
            if curve is None:
                continue
            width = unit[axis]["fixed"] + sum(
                coeff * counts[g] for g, coeff in unit[axis]["groups"].items()
            )
            ms *= _interp_step(curve, width) / curve["ms"][-1]
        return ms

    def _sum(self, counts: Mapping[int, float]) -> float:
        return sum(self.unit_latency(u, counts) for u in self.units)

    def predict(self, counts: Mapping[int, float]) -> float:
        """Predicted latency (ms) when group `g` keeps `counts[g]` channels."""
        full = dict(self.groups)
        full.update(counts)
        if self.full_units_ms <= 0:
            return self.model_ms
        return self.model_ms * self._sum(full) / self.full_units_ms

    def unit_groups(self) -> dict[int, list[int]]:
        """Group id → indices of the units whose latency depends on it."""
        result: dict[int, list[int]] = {g: [] for g in self.groups}
        for i, unit in enumerate(self.units):
            for axis in ("in", "out"):
                if unit["curves"].get(axis) is not None:
                    for g in unit[axis]["groups"]:
                        if i not in result[g]:
                            result[g].append(i)
        return result

    def group_step(self, group_id: int) -> int:
        """The block size that matters for a group's width: the largest output
        block of the layers producing it that is below the group's width, or the
        input block of the layers reading it (1 when nothing steps)."""
        width = self.groups[group_id]
        steps = [1]
        for unit in self.units:
            for axis in ("in", "out"):
                curve = unit["curves"].get(axis)
                if curve is not None and group_id in unit[axis]["groups"]:
                    steps.append(curve["step"])
        below = [s for s in steps if s < width]
        return max(below) if below else 1

    def latency_ms(self, plan: PruningPlan | None = None) -> float:
        """Predicted latency in ms of the unpruned model (`plan=None`) or of
        `apply_plan(model, plan)`.

        Raises:
            ValueError: the plan is for another model than the table.
        """
        if plan is None:
            return self.model_ms
        check_plan(plan)
        self.check_plan(plan)
        return self.predict({g.id: len(g.keep) for g in plan.groups})

    # -- checks -----------------------------------------------------------------
    def _mismatch(self, what: str) -> ValueError:
        return ValueError(
            f"This latency table was measured on model '{self.model_name}' and "
            f"does not fit {what}. Measure a table for this model with "
            "`measure_latency_table(model, ...)`."
        )

    def check_plan(self, plan: PruningPlan) -> None:
        widths = {g.id: g.width for g in plan.groups}
        if widths != self.groups:
            raise self._mismatch(f"the plan of model '{plan.model_name}'")

    def check_graph(self, graph) -> None:
        """Raises a ValueError when `graph` is not the table's model."""
        widths = {g.id: g.width for g in graph.groups}
        paths = {c.path for c in graph.walk.calls}
        missing = [u["path"] for u in self.units if u["path"] not in paths]
        if widths != self.groups or missing:
            raise self._mismatch(f"model '{graph.model_name}'")

    def check_settings(self, **expected: Any) -> None:
        """Raises a ValueError naming the first recorded setting (`runtime`,
        `num_threads`, `quantization`) that differs from `expected`."""
        for key, value in expected.items():
            if key not in ("runtime", "num_threads", "quantization"):
                raise TypeError(f"Unknown latency table setting: {key!r}")
            if self.settings.get(key) != value:
                raise ValueError(
                    f"This latency table was measured with {key}="
                    f"{self.settings.get(key)!r}, not {key}={value!r}. Measure one "
                    f"with `measure_latency_table(model, {key}={value!r})`."
                )

    # -- serialisation ----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "model_name": self.model_name,
            "model_ms": self.model_ms,
            "settings": self.settings,
            "steps": self.steps,
            "groups": {str(g): w for g, w in self.groups.items()},
            "units": [
                {**u, **{a: _json_axis(u[a]) for a in ("in", "out")}}
                for u in self.units
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data: Any) -> LatencyTable:
        """Checks and reads `to_dict()` output.

        Raises:
            ValueError: not a latency table, another format version, an unknown
                runtime, or malformed entries.
        """
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ValueError(
                "Not a keras-filterprune latency table (no "
                f"'format': '{FORMAT}'). Make one with `measure_latency_table`."
            )
        if data.get("version") != VERSION:
            raise ValueError(
                f"Latency table format version {data.get('version')!r} is not "
                f"supported (this version reads {VERSION}); measure it again."
            )
        runtime = (data.get("settings") or {}).get("runtime")
        if runtime not in RUNTIMES:
            raise ValueError(
                f"The latency table was measured in runtime {runtime!r}; "
                f"keras-filterprune plans for {RUNTIMES}."
            )
        try:
            units = [
                {**u, **{a: _read_axis(u[a]) for a in ("in", "out")}}
                for u in data["units"]
            ]
            for u in units:
                for curve in u["curves"].values():
                    if curve is not None:
                        _check_curve(curve)
                if not float(u["full_ms"]) >= 0:
                    raise ValueError("negative latency")
            table = cls(
                model_name=str(data["model_name"]),
                model_ms=float(data["model_ms"]),
                settings=data["settings"],
                steps=data["steps"],
                groups={int(g): int(w) for g, w in data["groups"].items()},
                units=units,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"Malformed latency table: {e!r}") from None
        if not table.model_ms > 0:
            raise ValueError("Malformed latency table: model_ms must be > 0.")
        return table

    @classmethod
    def from_json(cls, text: str) -> LatencyTable:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"The latency table is not valid JSON: {e}") from None
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the table as JSON (atomically: no partial file on failure)."""
        write_text(check_writable(path), self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatencyTable:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No latency table at {os.fspath(path)!r}.")
        with open(path, encoding="utf-8") as f:
            return cls.from_json(f.read())

    def describe(self) -> dict[str, Any]:
        """The table's model latency and runtime settings (recorded in plans)."""
        keys = ("runtime", "runtime_version", "num_threads", "quantization")
        return {
            "model_ms": round(self.model_ms, 6),
            **{k: self.settings.get(k) for k in keys},
            "cpu": (self.settings.get("machine") or {}).get("cpu"),
        }

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"<LatencyTable model={self.model_name!r} {self.model_ms:.3f} ms "
            f"runtime={s.get('runtime')} threads={s.get('num_threads')} "
            f"quantization={s.get('quantization')} units={len(self.units)}>"
        )

    def summary(self) -> str:
        """One line per timed layer: full latency and the widths it was timed at."""
        lines = [repr(self), f"steps: {self.steps}"]
        for u in self.units:
            axes = ", ".join(
                f"{a}: {c['widths'][0]}..{c['widths'][-1]} step {c['step']}"
                for a, c in u["curves"].items()
                if c is not None
            )
            lines.append(f"  {u['path']:<32} {u['full_ms']:8.4f} ms  {axes}")
        return "\n".join(lines)


def _json_axis(axis: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "fixed": axis["fixed"],
        "groups": {str(g): c for g, c in axis["groups"].items()},
    }


def _read_axis(axis: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "fixed": float(axis["fixed"]),
        "groups": {int(g): float(c) for g, c in axis["groups"].items()},
    }


def _check_curve(curve: Mapping[str, Any]) -> None:
    widths, ms = curve["widths"], curve["ms"]
    if (
        len(widths) != len(ms)
        or not widths
        or list(widths) != sorted(set(widths))
        or int(curve["step"]) < 1
        or not all(np.isfinite(ms))
        or ms[-1] <= 0
    ):
        raise ValueError(f"bad curve {dict(curve)}")


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
    graph=None,
) -> LatencyTable:
    """Measures how long each convolution and Dense layer of `model` takes in
    the target runtime, at several widths.

    Every timed layer is rebuilt alone (same config, same input shape, batch 1)
    at its full width and at `widths` block boundaries along each axis that
    pruning changes, converted to TFLite with `quantization` and timed in LiteRT
    with `num_threads` threads (rotating rounds, one warm-up call and 5 timed
    calls per model per round; a model's time is its lowest round median, less
    the cost of an empty invocation). Layers of identical class, config and
    input shape are measured once. The whole model is timed the same way.

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
        rounds: `int`. Timing rounds. Defaults to `5`.
        verbose: `int`. `1` shows a progress bar. Defaults to `1`.
        graph: The model's `ChannelGraph`, if already traced.

    Returns:
        A `LatencyTable`.

    Raises:
        ValueError: an unknown runtime or quantization, bad `widths`/`steps`, or
            a model with no layer to time.
        RuntimeError: a backend other than TensorFlow.
        ImportError: LiteRT is not installed.

    Example (takes a minute, so it is not run here):

    ```python
    table = kfp.measure_latency_table(model, num_threads=4)
    table.save("latency.json")
    plan = kfp.plan_pruning(model, target_latency="50%", latency_table=table)
    ```
    """
    import keras

    from keras_filterprune import _latency_measure as lm
    from keras_filterprune.export import QUANTIZATIONS
    from keras_filterprune.graph import graph_of
    from keras_filterprune.litert import _interpreter_class

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
    widths = lm.check_widths(widths)
    steps = lm.check_steps(steps)
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "measure_latency_table converts layers to TFLite with TensorFlow: run "
            "it with KERAS_BACKEND=tensorflow (the table it saves plans pruning "
            f"on any backend). Current backend: {keras.backend.backend()!r}"
        )
    _interpreter_class()
    graph = graph_of(model, graph)
    specs = lm.unit_specs(graph)
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
        content = lm.convert(m, quantization)
        tick()
        return content

    for kind, axis in probes:
        if verbose:
            say(f"Probing the block size of {kind} kernels along {axis}put channels")
        bars.append(keras.utils.Progbar(len(lm.probe_widths()) + 3, verbose=verbose))
        probe = [converted(m) for m in lm.probe_models(kind, axis)]
        ms = lm.time_contents(probe, num_threads, 3, 5, tick)
        found.setdefault(kind, {})[axis] = lm.detect_step(lm.probe_widths(), ms)
    jobs = [  # (key, axis, width) of every curve point below full width
        (key, axis, w)
        for key, spec in unique.items()
        for axis in spec["axes"]
        for w in lm.sample_widths(
            spec["widths"][axis], lm.axis_step(found, spec, axis, widths), widths
        )[:-1]
    ]
    if verbose:
        say(f"Timing {len(specs)} layers ({len(unique)} distinct) of '{model.name}'")
    bars.append(
        keras.utils.Progbar(2 + len(unique) + len(jobs) + rounds, verbose=verbose)
    )
    contents = [converted(lm.null_model()), converted(model)]
    index: dict[tuple, int] = {}
    for key, spec in unique.items():
        index[key, "full"] = len(contents)
        full = (spec["widths"]["in"], spec["widths"]["out"])
        contents.append(converted(lm.unit_model(spec, *full)))
    for key, axis, w in jobs:
        spec = unique[key]
        c_in, c_out = (w, None) if axis == "in" else (spec["widths"]["in"], w)
        index[key, axis, w] = len(contents)
        contents.append(converted(lm.unit_model(spec, c_in, c_out)))
    ms = lm.time_contents(contents, num_threads, rounds, 5, tick)
    overhead = ms[0]

    def net(i: int) -> float:
        return max(ms[i] - overhead, 1e-6)

    units = []
    for spec in specs:
        key, full_ms = spec["key"], net(index[spec["key"], "full"])
        curves: dict[str, Any] = {"in": None, "out": None}
        for axis in spec["axes"]:
            step = lm.axis_step(found, spec, axis, widths)
            points = lm.sample_widths(spec["widths"][axis], step, widths)
            times = [net(index[key, axis, w]) for w in points[:-1]] + [full_ms]
            curves[axis] = {"step": step, "widths": points, "ms": times}
        units.append(
            {
                "path": spec["path"],
                "layer": spec["layer"],
                "kind": spec["kind"],
                "in": spec["in"],
                "out": spec["out"],
                "full_ms": full_ms,
                "curves": curves,
            }
        )
    return LatencyTable(
        model_name=graph.model_name,
        model_ms=ms[1],
        settings=lm.settings_of(runtime, num_threads, quantization, rounds, overhead),
        steps=found,
        groups={g.id: g.width for g in graph.groups},
        units=units,
    )


def parse_latency_target(value: Any, table: LatencyTable) -> float:
    """`target_latency` in milliseconds: a number of ms, or a string `"12ms"` or
    `"50%"` (a percentage of the table's unpruned latency).

    Raises:
        ValueError: anything else, or a target that is not positive.
    """
    text = value.strip().lower() if isinstance(value, str) else None
    ms = None
    if text is not None:
        match = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(ms|%)", text)
        if match:
            number = float(match.group(1))
            ms = number if match.group(2) == "ms" else table.model_ms * number / 100
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        ms = float(value)
    if ms is None or not math.isfinite(ms) or ms <= 0:
        raise ValueError(
            "`target_latency` must be a positive number of milliseconds, or a "
            "string such as '12.5ms' or '50%' (of the unpruned latency, "
            f"{table.model_ms:.3f} ms in the table). Received: "
            f"target_latency={value!r}"
        )
    return ms
