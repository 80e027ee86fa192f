"""Channel groups: which channels of a model must be kept or removed together.

`trace_channels(model)` gives every channel of every tensor an element id and lets
the layer handlers (`keras_filterprune.handlers`) say how ids flow: producers (Conv,
Dense) create ids, pass-through layers carry them, merges (`Add`, `Multiply`, …) unite
them, `Concatenate` offsets them, `Flatten` tiles them and unknown layers freeze them.
Ids united by merges form a *channel*; the channels of producers that share any
channel form a *group*, the unit the planner prunes with one shared mask.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Iterable

import keras
import numpy as np

from keras_filterprune._messages import warn
from keras_filterprune._paths import resolve_layer_names
from keras_filterprune._traces import forget, remember, remembered
from keras_filterprune._validation import check_layer_names
from keras_filterprune.exceptions import FilterPruneWarning
from keras_filterprune.handlers import (
    FreezeHandler,
    LayerHandler,
    get_handler,
    registry_version,
)
from keras_filterprune.profile import ModelProfile, profile_walk
from keras_filterprune.walk import Call, ModelWalk, walk_model

__all__ = ["ChannelGroup", "ChannelGraph", "forget_trace", "graph_of", "trace_channels"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ChannelGroup:
    """Channels that share one keep/remove mask.

    Attributes:
        id: `int`. Position in `ChannelGraph.groups` (topological order).
        width: `int`. Number of channels in the group.
        producers: `dict[str, np.ndarray]`. For each producing layer path, the group
            channel index of each of its filters.
        members: `list[str]`. Every layer path whose inputs or outputs carry the
            group's channels.
        frozen: `str | None`. Why the group cannot be pruned, or `None`.
        approximate: `bool`. Whether only channel normalisations freeze it, so
            that `prune_norms=True` may prune it (approximately).

    Example:

    The two convolutions of a residual block are added, so filter `c` of both
    is one channel, kept or removed together:

    >>> import keras
    >>> from keras_filterprune.graph import graph_of
    >>> inputs = keras.Input((8, 8, 3))
    >>> x = keras.layers.Conv2D(4, 3, padding="same", name="a")(inputs)
    >>> y = keras.layers.Conv2D(4, 3, padding="same", name="b")(x)
    >>> z = keras.layers.Add(name="add")([x, y])
    >>> outputs = keras.layers.Conv2D(2, 1, name="head")(z)
    >>> group = graph_of(keras.Model(inputs, outputs)).groups[0]
    >>> group.id, group.width, group.frozen
    (0, 4, None)
    >>> group.producers
    {'a': array([0, 1, 2, 3]), 'b': array([0, 1, 2, 3])}
    >>> group.members
    ['a', 'b', 'add', 'head']
    """

    id: int
    width: int
    producers: dict[str, np.ndarray]
    members: list[str]
    frozen: str | None = None
    approximate: bool = False


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def add(self, n: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return np.arange(start, start + n, dtype=np.int64)

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


class _Builder:
    """The tracer handed to handlers (see `LayerHandler.propagate`)."""

    def __init__(self, walk: ModelWalk) -> None:
        self.walk = walk
        self.uf = _UnionFind()
        self.frozen: dict[int, tuple[str, str]] = {}
        self.approximate: dict[int, tuple[str, str]] = {}
        self.owner: list[str | None] = []
        self.producers: dict[str, np.ndarray] = {}

    # -- the API handlers use -------------------------------------------------
    def shape(self, key: int) -> tuple | None:
        return self.walk.shapes.get(key)

    def channels(self, key: int) -> int | None:
        return self.walk.channels(key)

    def producer_ids(self, path: str, n: int) -> np.ndarray:
        if path not in self.producers:
            ids = self.uf.add(n)
            self.owner.extend([path] * n)
            self.producers[path] = ids
        return self.producers[path]

    def opaque(self, n: int | None, path: str, reason: str) -> np.ndarray | None:
        if n is None:
            return None
        ids = self.uf.add(n)
        self.owner.extend([None] * n)
        self.freeze(ids, path, reason)
        return ids

    def freeze(
        self,
        ids: np.ndarray | None,
        path: str,
        reason: str,
        approximate: bool = False,
    ) -> None:
        """Freezes elements; `approximate=True` for a freeze that
        `prune_norms=True` lifts (a normalisation over the channels)."""
        if ids is None:
            return
        target = self.approximate if approximate else self.frozen
        for e in ids.tolist():
            target.setdefault(e, (path, reason))

    def tie(self, rows: np.ndarray) -> None:
        """Unites row 0 of a 2-D id array with every other row: slot `j` of every
        block becomes one channel (grouped convs, equal splits, GroupNorm)."""
        for row in rows[1:]:
            self.union(rows[0], row)

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        if a is b:
            return
        for x, y in zip(a.tolist(), b.tolist()):
            self.uf.union(x, y)


class ChannelGraph:
    """The traced channel structure of a model (see `trace_channels`).

    Attributes:
        model_name: `str`.
        walk: The `ModelWalk` (flattened call sites).
        groups: `list[ChannelGroup]`, topologically ordered.
        tensor_ids: `dict[int, np.ndarray | None]`. Element ids per tensor key.
        frozen_layers: `dict[str, list[str]]`. Layer path → reasons it froze channels.
        unhandled: `dict[str, str]`. Layer path → class name of every layer without
            a handler (its channels are frozen, its own weights never pruned).

    Example:

    >>> import keras
    >>> from keras_filterprune.graph import graph_of
    >>> inputs = keras.Input((8, 8, 3))
    >>> x = keras.layers.Conv2D(4, 3, padding="same", name="a")(inputs)
    >>> y = keras.layers.Conv2D(4, 3, padding="same", name="b")(x)
    >>> z = keras.layers.Add()([x, y])
    >>> outputs = keras.layers.Conv2D(2, 1, name="head")(z)
    >>> graph = graph_of(keras.Model(inputs, outputs, name="residual"))
    >>> print(graph.summary())
    ChannelGraph of 'residual': 2 groups
      group   0  width     4  producers a, b  [prunable]
      group   1  width     2  producers head  [frozen: model output
      (at layer '<output>')]
    >>> [group.id for group in graph.prunable_groups], graph.group_of("b").id
    ([0], 0)
    >>> graph.unhandled  # every layer has a handler
    {}
    """

    unhandled: dict[str, str]
    notes: tuple[str, ...] = ()

    def __init__(
        self,
        model: keras.Model,
        walk: ModelWalk,
        builder: _Builder,
        tensor_ids: dict,
        touched: dict[str, list[np.ndarray]],
    ) -> None:
        self.model_name = model.name
        self.unhandled = {}
        self.walk = walk
        self.tensor_ids = tensor_ids
        uf = builder.uf
        n = len(uf.parent)
        root = np.fromiter((uf.find(e) for e in range(n)), dtype=np.int64, count=n)
        # Channel classes that hold at least one producer filter form the groups.
        group_uf = _UnionFind()
        group_uf.add(n)
        for ids in builder.producers.values():
            roots = root[ids]
            for r in roots[1:].tolist():
                group_uf.union(int(roots[0]), r)
        self.elem_group = np.full(n, -1, dtype=np.int64)
        self.elem_channel = np.full(n, -1, dtype=np.int64)
        self.groups: list[ChannelGroup] = []
        group_of_root: dict[int, int] = {}
        channel_of_root: dict[int, int] = {}
        for path, ids in builder.producers.items():  # insertion = topological order
            g = group_of_root.setdefault(
                group_uf.find(int(root[ids[0]])), len(group_of_root)
            )
            if g == len(self.groups):
                self.groups.append(ChannelGroup(g, 0, {}, []))
            group = self.groups[g]
            local = []
            for r in root[ids].tolist():
                if r not in channel_of_root:
                    channel_of_root[r] = group.width
                    group.width += 1
                local.append(channel_of_root[r])
            group.producers[path] = np.asarray(local, dtype=np.int64)
        roots_with_channel = np.fromiter(channel_of_root.keys(), dtype=np.int64)
        if roots_with_channel.size:
            lookup_c = np.full(n, -1, dtype=np.int64)
            lookup_g = np.full(n, -1, dtype=np.int64)
            lookup_c[roots_with_channel] = np.fromiter(
                channel_of_root.values(), dtype=np.int64
            )
            lookup_g[roots_with_channel] = [
                group_of_root[group_uf.find(int(r))] for r in roots_with_channel
            ]
            self.elem_channel = lookup_c[root]
            self.elem_group = lookup_g[root]
        # Frozen groups: any frozen element in any of their channels.
        self.frozen_layers: dict[str, list[str]] = {}
        for approximate, frozen in (
            (False, builder.frozen),
            (True, builder.approximate),
        ):
            for e, (path, reason) in sorted(frozen.items()):
                g = int(self.elem_group[e])
                if g >= 0 and self.groups[g].frozen is None:
                    self.groups[g].frozen = f"{reason} (at layer '{path}')"
                    self.groups[g].approximate = approximate
                reasons = self.frozen_layers.setdefault(path, [])
                if reason not in reasons:
                    reasons.append(reason)
        # Members: layers whose inputs/outputs carry a group's elements.
        for path, arrays in touched.items():
            if not arrays:
                continue
            elems = np.unique(np.concatenate(arrays))
            for g in np.unique(self.elem_group[elems]).tolist():
                if g >= 0:
                    self.groups[g].members.append(path)

    # -- queries ----------------------------------------------------------------
    @property
    def prunable_groups(self) -> list[ChannelGroup]:
        return [g for g in self.groups if g.frozen is None]

    def group_of(self, path: str) -> ChannelGroup:
        """The group of a producer layer (by path)."""
        for group in self.groups:
            if path in group.producers:
                return group
        raise KeyError(path)

    def element_keep(self, keep: dict[int, np.ndarray]) -> np.ndarray:
        """Boolean keep flag per element id, from per-group channel keep masks."""
        flags = np.ones(len(self.elem_group), dtype=bool)
        for g, mask in keep.items():
            sel = self.elem_group == g
            flags[sel] = np.asarray(mask, dtype=bool)[self.elem_channel[sel]]
        return flags

    def input_ids(self, call: Call) -> list[np.ndarray | None]:
        return [self.tensor_ids.get(k) for k in call.inputs]

    @functools.cached_property
    def _first_calls(self) -> dict[str, Call]:
        calls: dict[str, Call] = {}
        for call in self.walk.calls:
            calls.setdefault(call.path, call)
        return calls

    def first_calls(self) -> dict[str, Call]:
        """The first call of every layer path."""
        return self._first_calls

    def resolve(self, names: Iterable[str] | None, arg: str) -> dict[str, list[str]]:
        """Layer names (short or full paths) → the layer paths they mean."""
        return resolve_layer_names(self.walk.layers, names, arg)

    def exclusions(self, names: Iterable[str] | None) -> dict[int, str]:
        """Group id → "excluded by the user" reason, for the groups that the
        outputs of the named layers carry (an excluded conv keeps its filters,
        while the layers feeding it may still be pruned).

        Raises:
            ValueError: a name is not a layer of the model.
        """
        names = check_layer_names(names, "exclude")
        paths = {p for ps in self.resolve(names, "exclude").values() for p in ps}
        result: dict[int, str] = {}
        for call in self.walk.calls:
            if call.path not in paths:
                continue
            for key in call.outputs:
                ids = self.tensor_ids.get(key)
                if ids is None or not len(ids):
                    continue
                for g in np.unique(self.elem_group[ids]).tolist():
                    if g >= 0:
                        reason = f"excluded by the user (at layer '{call.path}')"
                        result.setdefault(g, reason)
        return result

    def frozen_reason(self, group: ChannelGroup, excluded: dict[int, str]):
        """Why `group` is not pruned: its structural reason, else the exclusion."""
        return group.frozen or excluded.get(group.id)

    @functools.cached_property
    def profile(self) -> ModelProfile:
        """The `ModelProfile` of the traced model, from this graph's walk."""
        return profile_walk(self.walk)

    def warn(self) -> None:
        """Warns (`FilterPruneWarning`, at the user's line) about each layer the
        trace had to freeze for lack of a handler or of a config (`notes`)."""
        for note in self.notes:
            warn(note, FilterPruneWarning)

    def summary(self) -> str:
        lines = [f"ChannelGraph of '{self.model_name}': {len(self.groups)} groups"]
        for g in self.groups:
            state = f"frozen: {g.frozen}" if g.frozen else "prunable"
            lines.append(
                f"  group {g.id:3d}  width {g.width:5d}  "
                f"producers {', '.join(g.producers)}  [{state}]"
            )
        return "\n".join(lines)


def trace_channels(
    model: keras.Model, *, exclude: Iterable[str] | None = None, warn: bool = True
) -> ChannelGraph:
    """Traces the channel groups of a built Functional or Sequential model.

    Args:
        model: A built `keras.Model`. It is only read.
        exclude: Layer names (or nested paths like `"backbone/conv1"`) whose
            output channels must not be pruned: their groups are marked frozen
            in the returned graph. The planner applies `exclude` itself
            (`plan_pruning(..., exclude=...)`) without changing a graph, so a
            graph traced once serves every exclusion. Defaults to `None`.
        warn: `bool`. Warn (`FilterPruneWarning`) for each layer class without a
            handler. Defaults to `True`.

    Returns:
        A `ChannelGraph`.

    Raises:
        TypeError: not a model, or a subclassed model whose `call()` cannot be
            traced.
        ValueError: unbuilt model, or `exclude` names an unknown layer.

    Example:

    >>> import keras
    >>> inputs = keras.Input((16, 16, 3))
    >>> x = keras.layers.Conv2D(8, 3, padding="same", name="a")(inputs)
    >>> y = keras.layers.Conv2D(8, 3, padding="same", name="b")(x)
    >>> z = keras.layers.Add()([x, y])
    >>> outputs = keras.layers.Dense(2, name="head")(z)
    >>> graph = trace_channels(keras.Model(inputs, outputs))
    >>> [(sorted(g.producers), g.width, g.frozen is None) for g in graph.groups]
    [(['a', 'b'], 8, True), (['head'], 2, False)]
    """
    walk = walk_model(model)
    builder = _Builder(walk)
    tensor_ids: dict[int, np.ndarray | None] = {}
    for key in walk.inputs:
        tensor_ids[key] = builder.opaque(walk.channels(key), "<input>", "model input")
    first_inputs: dict[str, np.ndarray] = {}
    touched: dict[str, list[np.ndarray]] = {}
    unknown: dict[str, str] = {}
    unhandled: dict[str, str] = {}
    for call in walk.calls:
        handler: LayerHandler | None = get_handler(call.layer)
        if handler is None:
            cls = type(call.layer).__name__
            why = walk.untraced.get(call.path)
            unknown.setdefault(cls, (call.path, why))
            unhandled.setdefault(call.path, cls)
            detail = f" and cannot be traced inside ({why})" if why else ""
            handler = FreezeHandler(
                f"{cls} has no pruning handler{detail} (teach it with register_handler)"
            )
        inputs = [tensor_ids.get(k) for k in call.inputs]
        inputs = [
            builder.opaque(walk.channels(k), call.path, "unknown channels")
            if ids is None
            else ids
            for k, ids in zip(call.inputs, inputs)
        ]
        outputs = handler.propagate(call.layer, call, inputs, builder)
        inside = walk.unrebuildable_owner(call.path)
        if inside is not None:  # walked for its MACs, never pruned
            why = walk.unrebuildable[inside]
            reason = f"inside '{inside}', which cannot be rebuilt: {why}"
            for ids in [*inputs, *outputs]:
                builder.freeze(ids, call.path, reason)
        # A layer with input-sliced weights needs one input channel set per layer.
        if inputs and inputs[0] is not None and getattr(call.layer, "weights", ()):
            uses_input = any(
                src == "in" for rules in handler.weight_axes(call.layer)
                for _, src, _ in rules
            )  # fmt: skip
            if uses_input:
                first = first_inputs.setdefault(call.path, inputs[0])
                if len(first) == len(inputs[0]):
                    builder.union(first, inputs[0])
                else:
                    builder.freeze(first, call.path, "shared with other widths")
                    builder.freeze(inputs[0], call.path, "shared with other widths")
        for key, ids in zip(call.outputs, outputs):
            tensor_ids[key] = ids
        touched.setdefault(call.path, []).extend(
            ids for ids in [*inputs, *outputs] if ids is not None
        )
    for key in walk.outputs:
        builder.freeze(tensor_ids.get(key), "<output>", "model output")
    notes = [
        f"Layer '{path}' ({type(walk.composites[path]).__name__}) is traced "
        f"inside but cannot be rebuilt from a config: {why}. Its MACs are "
        "counted, its channels are frozen (never pruned)."
        for path, why in walk.unrebuildable.items()
    ]
    for cls, (path, why) in unknown.items():
        why = f" and cannot be traced inside: {why}" if why else ""
        notes.append(
            f"Layer '{path}' ({cls}) has no pruning handler{why}. The channel "
            "groups that reach it are frozen (never pruned). Teach "
            "keras-filterprune the layer with "
            "`keras_filterprune.handlers.register_handler`."
        )
    graph = ChannelGraph(model, walk, builder, tensor_ids, touched)
    graph.unhandled = unhandled
    graph.notes = tuple(notes)
    if warn:
        graph.warn()
    if exclude is not None:
        for g, reason in graph.exclusions(exclude).items():
            graph.groups[g].frozen = graph.groups[g].frozen or reason
            path = reason.split("'")[1]
            reasons = graph.frozen_layers.setdefault(path, [])
            if "excluded by the user" not in reasons:
                reasons.append("excluded by the user")
    return graph


def graph_of(model: keras.Model, *, warn: bool = False) -> ChannelGraph:
    """The `ChannelGraph` of `model`, traced on first use and remembered.

    The package's functions take a model, never a graph: they all ask here, so a
    model is traced once however many of them a workflow calls (a plan, its
    surgery, masks, sensitivity, latency tables). The graph is remembered weakly,
    with the layers and input shapes it was traced from; a model whose layers
    change (`Sequential.add`) is traced again.

    Args:
        model: The model (checked by the tracer).
        warn: `bool`. Warn (`FilterPruneWarning`) about the layers the trace
            freezes, also when the graph was remembered. Defaults to `False`.

    Returns:
        The `ChannelGraph` (shared: callers must not change it).

    Example:

    >>> import keras
    >>> from keras_filterprune.graph import graph_of
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> graph = graph_of(model)
    >>> graph_of(model) is graph  # remembered: traced once
    True
    >>> model.add(keras.layers.Dense(2))
    >>> graph_of(model) is graph  # the layers changed: traced again
    False
    >>> [group.width for group in graph_of(model).groups]
    [4, 2]
    """
    graph = remembered(model, registry_version())
    if graph is None:
        graph = trace_channels(model, warn=False)
        remember(model, graph, registry_version())
    if warn:
        graph.warn()
    return graph


def forget_trace(model: keras.Model) -> None:
    """Forgets the remembered trace of `model`: the next function given it traces
    it again.

    `graph_of` notices new or replaced layers (nested ones too), input shapes,
    activations and handlers; call this after any other in-place change of a
    built layer's configuration that changes how its channels flow.

    Args:
        model: A model (anything else is ignored).

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3)])
    >>> graph = graph_of(model)
    >>> graph_of(model) is graph
    True
    >>> forget_trace(model)
    >>> graph_of(model) is graph
    False
    """
    forget(model)
