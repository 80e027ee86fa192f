"""Latency tables: how long each layer takes in the target runtime at each width.

A `LatencyTable` is plain data, made by `measure_latency_table`
(`keras_filterprune.latency.measure`) and saved as JSON: importing this module
imports neither TensorFlow nor LiteRT. The planner spends a latency budget with
it (`plan_pruning(target_latency=..., latency_table=...)`) the way it spends a
MAC budget; `LatencyTable.latency_ms(plan)` predicts the latency of a plan
without building or converting the pruned model.

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
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keras_filterprune._files import check_writable, parse_json, read_json, write_text
from keras_filterprune._validation import (
    check_int,
    check_latency_target,
    check_number,
)
from keras_filterprune.latency.schema import (
    FIELDS,
    FORMAT,
    VERSION,
    axis_width,
    checked_fields,
    read_fields,
    unit_count_difference,
    unit_difference,
)
from keras_filterprune.pruning_plan import PruningPlan, check_plan

__all__ = ["LatencyTable", "parse_latency_target"]

_WRITTEN_BY = "`measure_latency_table(...).save(path)`"


def _snap(curve: Mapping[str, Any], width: float) -> float:
    """`width` rounded up to the curve's step (at most the full width)."""
    step = curve["step"]
    return min(math.ceil(max(width, 1e-9) / step - 1e-9) * step, curve["widths"][-1])


def _interp_step(curve: Mapping[str, Any], width: float) -> float:
    """A curve's latency at `width`: rounded up to the curve's step, then
    interpolated between the measured block boundaries."""
    return float(np.interp(_snap(curve, width), curve["widths"], curve["ms"]))


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

    Example:

    Tables are measured (`measure_latency_table`); this one is written by hand
    for a model of two convolutions, the first computing its filters in blocks
    of 4, and plans the model to 70 % of its latency:

    >>> import keras
    >>> from keras_filterprune import plan_pruning
    >>> from keras_filterprune.latency import LatencyTable
    >>> model = keras.Sequential([
    ...     keras.Input((8, 8, 3)), keras.layers.Conv2D(8, 3, name="conv"),
    ...     keras.layers.Conv2D(2, 1, name="head")], name="net")
    >>> table = LatencyTable(
    ...     model_name="net", model_ms=1.5,
    ...     settings={"runtime": "litert", "num_threads": 2, "quantization": None},
    ...     steps={"conv": {"in": 1, "out": 4}},
    ...     groups={0: 8, 1: 2},  # channel group id -> width
    ...     units=[
    ...         {"path": "conv", "layer": "Conv2D", "kind": "conv", "full_ms": 1.0,
    ...          "in": {"fixed": 3, "groups": {}},  # 3 input channels, fixed
    ...          "out": {"fixed": 0, "groups": {0: 1.0}},  # group 0's channels
    ...          "curves": {"out": {"step": 4, "widths": [4, 8], "ms": [0.6, 1.0]}}},
    ...         {"path": "head", "layer": "Conv2D", "kind": "conv", "full_ms": 0.2,
    ...          "in": {"fixed": 0, "groups": {0: 1.0}},
    ...          "out": {"fixed": 2, "groups": {}},
    ...          "curves": {"in": {"step": 1, "widths": [4, 8], "ms": [0.1, 0.2]}}},
    ...     ])
    >>> table.predict({0: 4}), table.predict({0: 5})  # 5 channels cost 8
    (0.875, 1.406)
    >>> plan = plan_pruning(model, target_latency="70%", latency_table=table)
    >>> len(plan.kept_filters("conv")), table.latency_ms(plan)
    (4, 0.875)
    >>> LatencyTable.from_json(table.to_json()).latency_ms(plan)  # saved as JSON
    0.875
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
        fields = checked_fields(
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
                width = axis_width(unit[axis], counts)
                ms *= _interp_step(curve, width) / curve["ms"][-1]
        return ms

    def _sum(self, counts: Mapping[int, float]) -> float:
        return sum(self.unit_latency(u, counts) for u in self.units)

    def predict(self, counts: Mapping[int, int]) -> float:
        """Predicted latency (ms) when group `g` keeps `counts[g]` channels.

        Args:
            counts: Channel group id → channels kept, a whole number in
                [1, the group's width]. Groups left out keep all their channels.

        Raises:
            TypeError: `counts` is not a mapping, a key is not an int group id or
                a count is not a number.
            ValueError: a key is not a channel group of the table, or a count is
                not a whole number in [1, the group's width].
        """
        full = dict(self.groups)
        full.update(self.check_counts(counts))
        if self.full_units_ms <= 0:
            return self.model_ms
        return self.model_ms * self._sum(full) / self.full_units_ms

    def min_latency_ms(self, min_filters: int = 1, max_ratio: float = 1.0) -> float:
        """The lowest latency (ms) the table predicts at any widths that keep at
        least `min_filters` channels of each group (all of a narrower one), and
        remove at most `max_ratio` of it.

        A bound: frozen and excluded groups and rounding keep more channels, so
        a plan may predict more; none predicts less (a measured curve that is
        not monotonic counts at its lowest point).

        Raises:
            TypeError, ValueError: `min_filters` is not an int >= 1, or
                `max_ratio` not a number in (0, 1] (as in `plan_pruning`).
        """
        min_filters = check_int(min_filters, "min_filters", 1)
        max_ratio = check_number(
            max_ratio, "max_ratio", low=0.0, high=1.0, low_open=True
        )
        least = {
            g: min(w, max(min_filters, math.ceil((1.0 - max_ratio) * w - 1e-9)))
            for g, w in self.groups.items()
        }
        total = 0.0
        for unit in self.units:
            ms = unit["full_ms"]
            for axis in ("in", "out"):
                curve = unit["curves"].get(axis)
                if curve is None:
                    continue
                width = axis_width(unit[axis], least)
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
    def check_counts(self, counts: Mapping[int, int]) -> dict[int, int]:
        """`counts` (channel group id → channels kept) checked against the
        table's groups, as ints: the argument of `predict`."""
        name = "counts"
        if not isinstance(counts, Mapping):
            raise TypeError(
                f"`{name}` must be a dict of channel group id -> channels kept. "
                f"Received: {name}={counts!r}"
            )
        known = sorted(self.groups)
        result = {}
        for key, count in counts.items():
            if isinstance(key, bool) or not isinstance(key, numbers.Integral):
                hint = ""
                if isinstance(key, str) and key.strip().isdigit():
                    hint = f" Write {int(key)}, not {key!r}."
                raise TypeError(
                    f"`{name}` keys must be channel group ids (ints) of the latency "
                    f"table, one of {known}. Received key {key!r} in {name}." + hint
                )
            gid = int(key)
            if gid not in self.groups:
                raise ValueError(
                    f"`{name}` has channel group {gid}, which the latency table of "
                    f"model '{self.model_name}' does not have (its groups: "
                    f"{known}). Received: {name}={dict(counts)!r}"
                )
            width = self.groups[gid]
            if isinstance(count, bool) or not isinstance(count, numbers.Real):
                raise TypeError(
                    f"`{name}[{gid}]` must be a number of channels. Received: "
                    f"{name}[{gid}]={count!r}"
                )
            whole = math.isfinite(count) and float(count).is_integer()
            if not whole or not 1 <= count <= width:
                raise ValueError(
                    f"`{name}[{gid}]` must be a whole number of channels in [1, "
                    f"{width}] (channel group {gid} has {width}). Received: "
                    f"{name}[{gid}]={count!r}"
                )
            result[gid] = int(count)
        return result

    def check(self) -> None:
        """Raises a ValueError naming the first field of the table that is
        wrong, as `from_dict` does (its attributes may have been changed since
        it was made)."""
        checked_fields({k: getattr(self, k) for k in FIELDS}, "")

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
        reads or writes, or how many times the model calls a timed layer (a
        table lists a layer once per call: twice for a layer shared by two
        branches)."""
        from keras_filterprune.latency.units import unit_specs  # imports Keras

        other = f"model '{graph.model_name}'"
        difference = self._group_difference(graph.groups, other)
        if difference is None:
            specs: dict[str, list] = {}
            for spec in unit_specs(graph):
                specs.setdefault(spec["path"], []).append(spec)
            listed = Counter(unit["path"] for unit in self.units)
            for unit in self.units:
                difference = unit_difference(
                    unit, specs, self.groups, other
                ) or unit_count_difference(unit["path"], listed, specs, other)
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
        return cls(**read_fields(data, where))

    @classmethod
    def from_json(cls, text: str | bytes) -> LatencyTable:
        """Reads `to_json()` output (see `from_dict`).

        Raises:
            ValueError: the text is not JSON (or bytes not UTF-8), or not a valid
                latency table.
            TypeError: `text` is neither `str` nor bytes.
        """
        return cls._read(parse_json(text, "latency table", _WRITTEN_BY), "")

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
        data = read_json(path, "latency table", _WRITTEN_BY)
        return cls._read(data, f" '{os.fspath(path)}'")

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


def parse_latency_target(value: Any, table: LatencyTable) -> float:
    """`target_latency` in milliseconds: a number of ms, or a string `"12ms"` or
    `"50%"` (a percentage of the table's unpruned latency).

    Raises:
        ValueError: another string, a target that is not positive, a percentage
            outside (0%, 100%].
        TypeError: neither a number nor a string.
    """
    target = check_latency_target(value)
    if isinstance(target, float):
        return target
    number, unit = target
    return number if unit == "ms" else table.model_ms * number / 100
