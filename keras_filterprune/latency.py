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
import numbers
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
STEP_AXES = {"conv": ("in", "out"), "depthwise": ("in",)}
"""Kinds of timed kernel and the axes along which their block size counts."""


def _snap(curve: Mapping[str, Any], width: float) -> float:
    """`width` rounded up to the curve's step (at most the full width)."""
    step = curve["step"]
    return min(math.ceil(max(width, 1e-9) / step - 1e-9) * step, curve["widths"][-1])


def _interp_step(curve: Mapping[str, Any], width: float) -> float:
    """A curve's latency at `width`: rounded up to the curve's step, then
    interpolated between the measured block boundaries."""
    return float(np.interp(_snap(curve, width), curve["widths"], curve["ms"]))


def _axis_width(axis: Mapping[str, Any], counts: Mapping[int, float]) -> float:
    """Channels along one axis of a unit when group `g` keeps `counts[g]`."""
    return axis["fixed"] + sum(coeff * counts[g] for g, coeff in axis["groups"].items())


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

    Raises:
        ValueError: "Corrupt latency table: <field>: <problem>" for a field of
            the wrong type or range (see `from_dict`).
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
        fields = _checked(
            {
                "model_name": model_name,
                "model_ms": model_ms,
                "settings": settings,
                "steps": steps,
                "groups": groups,
                "units": units,
            },
            "",
        )
        self.model_name: str = fields["model_name"]
        self.model_ms: float = fields["model_ms"]
        self.settings: dict[str, Any] = fields["settings"]
        self.steps: dict[str, dict[str, int]] = fields["steps"]
        self.groups: dict[int, int] = fields["groups"]
        self.units: list[dict[str, Any]] = fields["units"]
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
            if curve is not None:
                width = _axis_width(unit[axis], counts)
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

    def min_latency_ms(self, min_filters: int = 1) -> float:
        """The lowest latency (ms) the table predicts at any widths that keep at
        least `min_filters` channels of each group (all of a narrower one).

        A bound: frozen and excluded groups and rounding keep more channels, so
        a plan may predict more; none predicts less (a measured curve that is
        not monotonic counts at its lowest point)."""
        least = {g: min(w, min_filters) for g, w in self.groups.items()}
        total = 0.0
        for unit in self.units:
            ms = unit["full_ms"]
            for axis in ("in", "out"):
                curve = unit["curves"].get(axis)
                if curve is None:
                    continue
                width = _axis_width(unit[axis], least)
                low = _snap(curve, width)
                reachable = [t for w, t in zip(curve["widths"], curve["ms"]) if w > low]
                ms *= min([_interp_step(curve, width), *reachable]) / curve["ms"][-1]
            total += ms
        return self.model_ms * total / self.full_units_ms

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
    def check(self) -> None:
        """Raises a ValueError naming the first field of the table that is
        wrong, as `from_dict` does (its attributes may have been changed since
        it was made)."""
        _checked({k: getattr(self, k) for k in _FIELDS}, "")

    def _mismatch(self, what: str, difference: str) -> ValueError:
        return ValueError(
            f"This latency table was measured on model '{self.model_name}' and "
            f"does not fit {what}: {difference}. Measure a table for this model "
            "with `measure_latency_table(model, ...)`."
        )

    def _group_difference(self, groups, other: str) -> str | None:
        """The first channel group that differs between the table and `groups`
        (with `.id`, `.width`, `.producers`), in words; None when they agree."""
        theirs = {g.id: g for g in groups}
        for gid in sorted(set(theirs) | set(self.groups)):
            group = theirs.get(gid)
            if group is None:
                return (
                    f"the table has channel group {gid} ({self.groups[gid]} "
                    f"channels), which {other} does not have"
                )
            layer = next(iter(group.producers), None)
            name = f"channel group {gid}" + (f" (layer '{layer}')" if layer else "")
            if gid not in self.groups:
                return (
                    f"{other} has {name} of {group.width} channels, which the "
                    "table does not have"
                )
            if group.width != self.groups[gid]:
                return (
                    f"{name} has {group.width} channels in {other} but "
                    f"{self.groups[gid]} in the table"
                )
        return None

    def check_plan(self, plan: PruningPlan) -> None:
        """Raises a ValueError saying which channel group differs when `plan`
        is not for the table's model."""
        other = f"the plan of model '{plan.model_name}'"
        difference = self._group_difference(plan.groups, other)
        if difference is not None:
            raise self._mismatch(other, difference)

    def check_graph(self, graph) -> None:
        """Raises a ValueError saying what differs when `graph` is not the
        table's model: a channel group (missing, extra, or of another width), a
        timed layer the model does not have, or the channels a timed layer
        reads or writes."""
        from keras_filterprune._latency_measure import unit_specs

        other = f"model '{graph.model_name}'"
        difference = self._group_difference(graph.groups, other)
        if difference is None:
            specs: dict[str, list] = {}
            for spec in unit_specs(graph):
                specs.setdefault(spec["path"], []).append(spec)
            for unit in self.units:
                difference = _unit_difference(unit, specs, self.groups, other)
                if difference is not None:
                    break
        if difference is not None:
            raise self._mismatch(other, difference)

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
        """Reads `to_dict()` output, validated as an untrusted document.

        Raises:
            ValueError: "Not a keras-filterprune latency table" (wrong
                `format`), another format version, or "Corrupt latency table:
                <field>: <problem>" for any field missing or of the wrong type or
                range: times must be finite positive numbers of ms (1e-9 to
                1e9), widths ints increasing to the full width of their
                layer's axis, every group a layer refers to one of `groups`,
                `settings.runtime` a known runtime, `settings.num_threads` an
                int >= 1 and `settings.quantization` one of `export_tflite`'s.
        """
        return cls._read(data, "")

    @classmethod
    def _read(cls, data: Any, where: str) -> LatencyTable:
        """`from_dict`; `where` (`" 'path'"` or `""`) names the source in errors."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ValueError(
                f"Not a keras-filterprune latency table{where}: expected a JSON "
                f"object with 'format': '{FORMAT}'. Make one with "
                "`measure_latency_table`."
            )
        if data.get("version") != VERSION:
            raise ValueError(
                f"Latency table{where} has format version "
                f"{_shown(data.get('version'))}; this keras-filterprune reads "
                f"version {VERSION}. Measure the table again with "
                "`measure_latency_table`."
            )
        return cls(**_checked(data, where))

    @classmethod
    def from_json(cls, text: str | bytes) -> LatencyTable:
        """Reads `to_json()` output (see `from_dict`).

        Raises:
            ValueError: the text is not JSON (or bytes not UTF-8), or not a valid
                latency table.
            TypeError: `text` is neither `str` nor bytes.
        """
        return cls._read(_parse(text, "the text"), "")

    def save(self, path: str | os.PathLike) -> None:
        """Writes the table as JSON (atomically: no partial file on failure)."""
        write_text(check_writable(path), self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatencyTable:
        """Reads a table saved with `save`, validated as an untrusted file.

        Raises:
            ValueError: the file is not UTF-8 JSON or not a valid latency table;
                the message names the file (and the offending field).
            FileNotFoundError: no such file.
            TypeError: `path` is not a path.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                "`path` must be a str or os.PathLike. Received: "
                f"path of type {type(path).__name__}"
            )
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No latency table at {path!r}.")
        with open(path, "rb") as f:
            data = f.read()
        return cls._read(_parse(data, f"'{path}'"), f" '{path}'")

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


# -- validation of tables (files are untrusted documents) ----------------------
_FIELDS = ("model_name", "model_ms", "settings", "steps", "groups", "units")
_AXES = ("in", "out")
_MS_RANGE = (1e-9, 1e9)  # a nanosecond to eleven days


class _Corrupt(ValueError):
    """`<field>: <problem>`; re-raised as a plain ValueError naming the table."""


def _parse(text: Any, source: str) -> Any:
    """JSON `text` (str or UTF-8 bytes) from `source` (a quoted path or "the
    text"), or a ValueError saying that it is not a latency table JSON."""
    if not isinstance(text, (str, bytes, bytearray)):
        raise TypeError(
            f"A latency table must be JSON text. Received: {type(text).__name__}"
        )
    try:
        if not isinstance(text, str):
            text = bytes(text).decode("utf-8")
        return json.loads(text)
    except UnicodeDecodeError:
        problem = "is not UTF-8 text"
    except (json.JSONDecodeError, RecursionError) as e:
        problem = f"is not valid JSON ({e})"
    raise ValueError(
        f"Not a latency table JSON: {source} {problem}. Latency tables are "
        "written by `measure_latency_table(...).save(path)`."
    )


def _checked(data: Mapping, where: str) -> dict[str, Any]:
    """The fields of a table, checked and normalised (group ids as ints, times
    as floats); else "Corrupt latency table{where}: <field>: <problem>."."""
    try:
        return _fields_of(data)
    except _Corrupt as e:
        raise ValueError(f"Corrupt latency table{where}: {e}.") from None


def _require(ok: bool, field: str, problem: str) -> None:
    if not ok:
        raise _Corrupt(f"{field}: {problem}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _keys(data: Mapping, keys: Sequence[str], field: str) -> None:
    for key in keys:
        _require(key in data, f"{field}.{key}" if field else key, "missing")


def _mapping(value: Any, field: str) -> Mapping:
    _require(
        isinstance(value, Mapping),
        field,
        f"must be an object. Received: {_shown(value)}",
    )
    return value


def _list(value: Any, field: str) -> list:
    ok = isinstance(value, (list, tuple)) or (
        isinstance(value, np.ndarray) and value.ndim == 1
    )
    _require(ok, field, f"must be a list. Received: {_shown(value)}")
    return list(value)


def _int(value: Any, field: str, low: int = 1, high: int | None = None) -> int:
    ok = _is_int(value) and value >= low and (high is None or value <= high)
    what = f"an int >= {low}" if high is None else f"an int in [{low}, {high}]"
    _require(ok, field, f"must be {what}. Received: {_shown(value)}")
    return int(value)


def _ms(value: Any, field: str) -> float:
    """A time in ms: finite, positive, and within `_MS_RANGE` so that the ratios
    and sums of predictions stay finite."""
    low, high = _MS_RANGE
    ok = _is_real(value) and math.isfinite(value) and low <= value <= high
    _require(
        ok,
        field,
        f"must be a finite positive number of ms ({low:g} to {high:g}). "
        f"Received: {_shown(value)}",
    )
    return float(value)


def _group_id(key: Any, field: str) -> int:
    if isinstance(key, str) and re.fullmatch(r"[0-9]+", key):
        return int(key)
    _require(
        _is_int(key) and key >= 0,
        field,
        f"keys must be channel group ids (ints >= 0). Received: {_shown(key)}",
    )
    return int(key)


def _whole(value: float) -> bool:
    return math.isfinite(value) and abs(value - round(value)) <= 1e-6 * max(
        1.0, abs(value)
    )


def _fields_of(data: Mapping) -> dict[str, Any]:
    _keys(data, _FIELDS, "")
    name = data["model_name"]
    _require(
        isinstance(name, str),
        "model_name",
        f"must be a string. Received: {_shown(name)}",
    )
    model_ms = _ms(data["model_ms"], "model_ms")
    settings = _settings(data["settings"])
    steps = _steps(data["steps"])
    groups = _groups(data["groups"])
    units = _list(data["units"], "units")
    _require(bool(units), "units", "must list at least one timed layer")
    units = [_unit(u, f"units[{i}]", groups) for i, u in enumerate(units)]
    _require(
        math.isfinite(sum(u["full_ms"] for u in units)),
        "units",
        "the sum of their full_ms is not a finite number",
    )
    return {
        "model_name": name,
        "model_ms": model_ms,
        "settings": settings,
        "steps": steps,
        "groups": groups,
        "units": units,
    }


def _settings(value: Any) -> dict[str, Any]:
    from keras_filterprune.export import QUANTIZATIONS

    settings = dict(_mapping(value, "settings"))
    _keys(settings, ("runtime", "num_threads", "quantization"), "settings")
    runtime = settings["runtime"]
    _require(
        isinstance(runtime, str) and runtime in RUNTIMES,
        "settings.runtime",
        f"keras-filterprune plans for {RUNTIMES}, not runtime {_shown(runtime)}",
    )
    settings["num_threads"] = _int(settings["num_threads"], "settings.num_threads")
    quantization = settings["quantization"]
    _require(
        (quantization is None or isinstance(quantization, str))
        and quantization in QUANTIZATIONS,
        "settings.quantization",
        f"must be one of {QUANTIZATIONS}. Received: {_shown(quantization)}",
    )
    for key in ("runtime_version", "converter", "measured_at"):
        text = settings.get(key, "")
        _require(
            isinstance(text, str),
            f"settings.{key}",
            f"must be a string. Received: {_shown(text)}",
        )
    if "rounds" in settings:
        settings["rounds"] = _int(settings["rounds"], "settings.rounds")
    if "invoke_overhead_ms" in settings:
        overhead = settings["invoke_overhead_ms"]
        _require(
            _is_real(overhead) and math.isfinite(overhead) and overhead >= 0,
            "settings.invoke_overhead_ms",
            f"must be a finite number >= 0. Received: {_shown(overhead)}",
        )
        settings["invoke_overhead_ms"] = float(overhead)
    if settings.get("machine") is not None:
        machine = dict(_mapping(settings["machine"], "settings.machine"))
        for key in ("cpu", "platform"):
            _require(
                machine.get(key) is None or isinstance(machine[key], str),
                f"settings.machine.{key}",
                f"must be a string or null. Received: {_shown(machine.get(key))}",
            )
        if machine.get("cpus") is not None:
            machine["cpus"] = _int(machine["cpus"], "settings.machine.cpus")
        settings["machine"] = machine
    return settings


def _steps(value: Any) -> dict[str, dict[str, int]]:
    steps = {}
    for kind, axes in _mapping(value, "steps").items():
        _require(
            kind in STEP_AXES,
            "steps",
            f"unknown kernel kind {_shown(kind)} (known: {', '.join(STEP_AXES)})",
        )
        steps[kind] = {}
        for axis, step in _mapping(axes, f"steps.{kind}").items():
            _require(
                axis in STEP_AXES[kind],
                f"steps.{kind}",
                f"unknown axis {_shown(axis)} (known: {', '.join(STEP_AXES[kind])})",
            )
            steps[kind][axis] = _int(step, f"steps.{kind}.{axis}")
    return steps


def _groups(value: Any) -> dict[int, int]:
    groups: dict[int, int] = {}
    for key, width in _mapping(value, "groups").items():
        gid = _group_id(key, "groups")
        _require(gid not in groups, "groups", f"repeat channel group {gid}")
        groups[gid] = _int(width, f"groups[{gid}]")
    return groups


def _unit(value: Any, field: str, groups: Mapping[int, int]) -> dict[str, Any]:
    unit = _mapping(value, field)
    _keys(unit, ("path", "layer", "kind", *_AXES, "full_ms", "curves"), field)
    for key in ("path", "layer"):
        text = unit[key]
        _require(
            isinstance(text, str) and bool(text),
            f"{field}.{key}",
            f"must be a layer name. Received: {_shown(text)}",
        )
    _require(
        isinstance(unit["kind"], str) and unit["kind"] in STEP_AXES,
        f"{field}.kind",
        f"must be one of {tuple(STEP_AXES)}. Received: {_shown(unit['kind'])}",
    )
    axes = {a: _axis(unit[a], f"{field}.{a}", groups) for a in _AXES}
    full_ms = _ms(unit["full_ms"], f"{field}.full_ms")
    curves = _mapping(unit["curves"], f"{field}.curves")
    extra = [k for k in curves if k not in _AXES]
    _require(
        not extra, f"{field}.curves", f"unknown axis {_shown(extra[:1])} (in, out)"
    )
    checked = {
        a: None
        if curves.get(a) is None
        else _curve(curves[a], f"{field}.curves.{a}", _axis_width(axes[a], groups))
        for a in _AXES
    }
    return {**unit, **axes, "full_ms": full_ms, "curves": checked}


def _axis(value: Any, field: str, groups: Mapping[int, int]) -> dict[str, Any]:
    axis = _mapping(value, field)
    _keys(axis, ("fixed", "groups"), field)
    fixed = axis["fixed"]
    _require(
        _is_real(fixed) and math.isfinite(fixed) and fixed >= 0 and _whole(fixed),
        f"{field}.fixed",
        f"must be a whole number of channels >= 0. Received: {_shown(fixed)}",
    )
    coeffs: dict[int, float] = {}
    for key, coeff in _mapping(axis["groups"], f"{field}.groups").items():
        gid = _group_id(key, f"{field}.groups")
        _require(
            gid in groups,
            f"{field}.groups",
            f"channel group {gid} is not one of the table's `groups` "
            f"({_shown(sorted(groups))})",
        )
        _require(
            _is_real(coeff)
            and math.isfinite(coeff)
            and coeff > 0
            and _whole(coeff * groups[gid]),
            f"{field}.groups[{gid}]",
            "must be a finite positive number that makes a whole number of "
            f"channels of the group's {groups[gid]}. Received: {_shown(coeff)}",
        )
        coeffs[gid] = float(coeff)
    result = {"fixed": float(fixed), "groups": coeffs}
    width = _axis_width(result, groups)
    _require(
        math.isfinite(width) and width >= 1 - 1e-6,
        field,
        "has no channels (`fixed` and `groups` are empty or zero)",
    )
    return result


def _curve(value: Any, field: str, full: float) -> dict[str, Any]:
    curve = _mapping(value, field)
    _keys(curve, ("step", "widths", "ms"), field)
    full = round(full)
    step = _int(curve["step"], f"{field}.step")
    widths = _list(curve["widths"], f"{field}.widths")
    _require(bool(widths), f"{field}.widths", "must not be empty")
    widths = [_int(w, f"{field}.widths[{j}]", 1, full) for j, w in enumerate(widths)]
    _require(
        all(a < b for a, b in zip(widths, widths[1:])),
        f"{field}.widths",
        f"must increase. Received: {_shown(widths)}",
    )
    _require(
        widths[-1] == full,
        f"{field}.widths",
        f"must end at the layer's full width along this axis, {full}. "
        f"Received: {_shown(widths)}",
    )
    times = _list(curve["ms"], f"{field}.ms")
    _require(
        len(times) == len(widths),
        f"{field}.ms",
        f"must hold one time per width ({len(widths)}). Received: {len(times)}",
    )
    times = [_ms(t, f"{field}.ms[{j}]") for j, t in enumerate(times)]
    return {**curve, "step": step, "widths": widths, "ms": times}


def _unit_difference(
    unit: Mapping[str, Any],
    specs: Mapping[str, list],
    widths: Mapping[int, int],
    other: str,
) -> str | None:
    """How a timed layer of the table differs from the calls of `other` at
    its path (`specs`: path → `unit_specs`), in words; None when one matches."""
    calls = specs.get(unit["path"])
    if not calls:
        return (
            f"the table times layer '{unit['path']}', which {other} does not "
            "have as a convolution or Dense layer of known input shape"
        )
    for spec in calls:
        if all(_same_axis(unit[a], spec[a]) for a in _AXES):
            return None
    spec = calls[0]
    axis = next(a for a in _AXES if not _same_axis(unit[a], spec[a]))
    return (
        f"layer '{unit['path']}' has {_axis_text(spec[axis], axis, widths)} in "
        f"{other} but {_axis_text(unit[axis], axis, widths)} in the table"
    )


def _same_axis(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return (
        abs(a["fixed"] - b["fixed"]) < 1e-6
        and set(a["groups"]) == set(b["groups"])
        and all(abs(c - b["groups"][g]) < 1e-9 for g, c in a["groups"].items())
    )


def _axis_text(axis: Mapping[str, Any], name: str, widths: Mapping[int, int]) -> str:
    parts = [
        f"{c * widths.get(g, 0):g} of group {g}" for g, c in axis["groups"].items()
    ]
    if axis["fixed"]:
        parts.append(f"{axis['fixed']:g} not pruned")
    total = _axis_width(axis, {g: widths.get(g, 0) for g in axis["groups"]})
    return f"{total:g} {name}put channels ({', '.join(parts)})"


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
