"""The timed calls ("units") of a traced model: its convolutions and Dense
layers, with how their input and output widths follow the channel groups.

What `measure_latency_table` times, and what `LatencyTable.check_graph` compares
a table with; it needs the graph only, not the runtime."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np

from keras_filterprune.handlers import get_handler
from keras_filterprune.handlers.base import channels_last

__all__ = ["unit_specs"]

_CONFIG_NOISE = ("name", "trainable")


def _kind(layer, handler) -> str | None:
    """How the layer is timed: the handler declares it (`latency_kind`)."""
    return None if handler is None else handler.latency_kind(layer)


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
    grouped), with how their input and output widths follow the groups.
    `numbered` is `{"call": i}` for the i-th call of a layer called more than
    once (a table's unit carries it), else `{}`."""
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
    # A shared layer is timed once per call: its units are numbered (`call`).
    calls = Counter(spec["path"] for spec in specs)
    numbered: Counter = Counter()
    for spec in specs:
        spec["numbered"] = {}
        if calls[spec["path"]] > 1:
            spec["numbered"] = {"call": numbered[spec["path"]]}
            numbered[spec["path"]] += 1
    return specs
