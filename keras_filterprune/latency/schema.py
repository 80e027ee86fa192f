"""The schema of latency tables: what a valid table holds, and whether it fits
a model.

A latency table is read from files, which are untrusted documents: every field
is checked (type, range, the groups it refers to) and normalised here, and a
wrong one is reported as "Corrupt latency table: <field>: <problem>". The
checks are shared by `LatencyTable()`, `from_dict`, `load` and `check`.
"""

from __future__ import annotations

import math
import numbers
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keras_filterprune._export_checks import QUANTIZATIONS

__all__ = [
    "FIELDS",
    "FORMAT",
    "RUNTIMES",
    "STEP_AXES",
    "VERSION",
    "axis_width",
    "checked_fields",
    "read_fields",
    "unit_count_difference",
    "unit_difference",
]

FORMAT = "keras-filterprune-latency-table"
VERSION = 1
RUNTIMES = ("litert",)
STEP_AXES = {"conv": ("in", "out"), "depthwise": ("in",)}
"""Kinds of timed kernel and the axes along which their block size counts."""


def axis_width(axis: Mapping[str, Any], counts: Mapping[int, float]) -> float:
    """Channels along one axis of a unit when group `g` keeps `counts[g]`."""
    return axis["fixed"] + sum(coeff * counts[g] for g, coeff in axis["groups"].items())


# -- validation of tables (files are untrusted documents) ----------------------
FIELDS = ("model_name", "model_ms", "settings", "steps", "groups", "units")
_AXES = ("in", "out")
_MS_RANGE = (1e-9, 1e9)  # a nanosecond to eleven days


class _Corrupt(ValueError):
    """`<field>: <problem>`; re-raised as a plain ValueError naming the table."""


def checked_fields(data: Mapping, where: str) -> dict[str, Any]:
    """The fields of a table, checked and normalised (group ids as ints, times
    as floats); else "Corrupt latency table{where}: <field>: <problem>."."""
    try:
        return _fields_of(data)
    except _Corrupt as e:
        raise ValueError(f"Corrupt latency table{where}: {e}.") from None


def read_fields(data: Any, where: str) -> dict[str, Any]:
    """The checked fields of a table document (`LatencyTable.from_dict`'s
    input); `where` (`" 'path'"` or `""`) names the source in errors."""
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
    return checked_fields(data, where)


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


def _spread(value: Any, field: str) -> float | None:
    """An optional recorded spread: the relative half-width of a time's 95 %
    confidence interval (`null`: no interval was computed)."""
    if value is None:
        return None
    _require(
        _is_real(value) and math.isfinite(value) and value >= 0,
        field,
        "must be null or a finite number >= 0 (the relative half-width of the "
        f"time's 95 % interval). Received: {_shown(value)}",
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
    _keys(data, FIELDS, "")
    extra = [key for key in data if key not in ("format", "version", *FIELDS)]
    _require(
        not extra,
        str(extra[0]) if extra else "",
        f"unknown field (a latency table holds {', '.join(FIELDS)}); a table "
        "written by `LatencyTable.save` has no other",
    )
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
    _distinct_calls(units)
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
    if "model_ms_ci" in settings:
        spread = _spread(settings["model_ms_ci"], "settings.model_ms_ci")
        settings["model_ms_ci"] = spread
    if settings.get("timing") is not None:
        settings["timing"] = dict(_mapping(settings["timing"], "settings.timing"))
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
    spread = {}
    if "call" in unit:  # which call of a shared layer; absent when called once
        spread["call"] = _int(unit["call"], f"{field}.call", low=0)
    if "full_ms_ci" in unit:  # optional: tables measured before #30 lack it
        spread["full_ms_ci"] = _spread(unit["full_ms_ci"], f"{field}.full_ms_ci")
    curves = _mapping(unit["curves"], f"{field}.curves")
    extra = [k for k in curves if k not in _AXES]
    _require(
        not extra, f"{field}.curves", f"unknown axis {_shown(extra[:1])} (in, out)"
    )
    checked = {
        a: None
        if curves.get(a) is None
        else _curve(curves[a], f"{field}.curves.{a}", axis_width(axes[a], groups))
        for a in _AXES
    }
    return {**unit, **axes, "full_ms": full_ms, **spread, "curves": checked}


def _distinct_calls(units: Sequence[Mapping[str, Any]]) -> None:
    """A layer is timed once per call: a layer listed twice must number its
    calls (`call`: 0, 1, ...), so that a copied unit is not counted twice."""
    seen: dict[tuple[str, Any], int] = {}
    for i, unit in enumerate(units):
        first = seen.setdefault((unit["path"], unit.get("call")), i)
        _require(
            first == i,
            f"units[{i}]",
            f"repeats layer '{unit['path']}' of units[{first}]"
            + ("" if "call" not in unit else f" (call {unit['call']})")
            + "; a table has one unit per call of a layer, and a layer called "
            "more than once numbers its units by `call` (0, 1, ...). Measure "
            "the table again with `measure_latency_table`",
        )
    paths = Counter(unit["path"] for unit in units)
    for i, unit in enumerate(units):
        _require(
            paths[unit["path"]] == 1 or "call" in unit,
            f"units[{i}]",
            f"layer '{unit['path']}' is listed {paths[unit['path']]} times, so "
            "each of its units needs `call` (0, 1, ...: which call of the "
            "shared layer it times). Measure the table again with "
            "`measure_latency_table`",
        )


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
    width = axis_width(result, groups)
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
    checked = {**curve, "step": step, "widths": widths, "ms": times}
    if "ms_ci" in curve:  # optional: tables measured before #30 lack it
        spreads = _list(curve["ms_ci"], f"{field}.ms_ci")
        _require(
            len(spreads) == len(widths),
            f"{field}.ms_ci",
            f"must hold one spread per width ({len(widths)}). Received: {len(spreads)}",
        )
        checked["ms_ci"] = [
            _spread(v, f"{field}.ms_ci[{j}]") for j, v in enumerate(spreads)
        ]
    return checked


# -- whether a table fits a model ------------------------------------------------
def unit_difference(
    unit: Mapping[str, Any],
    specs: Mapping[str, list],
    widths: Mapping[int, int],
    other: str,
) -> str | None:
    """How a timed layer of the table differs from the calls of `other` at
    its path (`specs`: path → the `unit_specs` of `other` there, see
    `keras_filterprune.latency.units`), in words; None when one matches."""
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


def unit_count_difference(
    path: str, listed: Mapping[str, int], specs: Mapping[str, list], other: str
) -> str | None:
    """How often the table times layer `path` (`listed`: path → units) against
    how often `other` calls it (`specs`, as in `unit_difference`), in words;
    None when they agree. A table has one unit per call, so a layer listed
    twice is a layer called twice (shared by two branches), or a hand-edited
    table."""
    n, calls = listed[path], len(specs.get(path, ()))
    if n == calls:
        return None
    return (
        f"the table times layer '{path}' {_times(n)}, but {other} calls it "
        f"{_times(calls)} (a table has one unit per call of a layer; a repeated "
        "unit is counted twice)"
    )


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


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
    total = axis_width(axis, {g: widths.get(g, 0) for g in axis["groups"]})
    return f"{total:g} {name}put channels ({', '.join(parts)})"
