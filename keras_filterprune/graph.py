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
import logging
import warnings
from collections.abc import Iterable

import keras
import numpy as np

from keras_filterprune.exceptions import FilterPruneWarning
from keras_filterprune.handlers import FreezeHandler, LayerHandler, get_handler
from keras_filterprune.walk import Call, ModelWalk, walk_model

__all__ = ["ChannelGroup", "ChannelGraph", "trace_channels"]

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
    """

    id: int
    width: int
    producers: dict[str, np.ndarray]
    members: list[str]
    frozen: str | None = None


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

    def __init__(self, walk: ModelWalk, exclude: set[str]) -> None:
        self.walk = walk
        self.uf = _UnionFind()
        self.frozen: dict[int, tuple[str, str]] = {}
        self.owner: list[str | None] = []
        self.producers: dict[str, np.ndarray] = {}
        self.exclude = exclude

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

    def freeze(self, ids: np.ndarray | None, path: str, reason: str) -> None:
        if ids is None:
            return
        for e in ids.tolist():
            self.frozen.setdefault(e, (path, reason))

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
    """

    def __init__(
        self,
        model: keras.Model,
        walk: ModelWalk,
        builder: _Builder,
        tensor_ids: dict,
        touched: dict[str, list[np.ndarray]],
    ) -> None:
        self.model_name = model.name
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
        for e, (path, reason) in sorted(builder.frozen.items()):
            g = int(self.elem_group[e])
            if g >= 0 and self.groups[g].frozen is None:
                self.groups[g].frozen = f"{reason} (at layer '{path}')"
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

    def first_calls(self) -> dict[str, Call]:
        """The first call of every layer path."""
        calls: dict[str, Call] = {}
        for call in self.walk.calls:
            calls.setdefault(call.path, call)
        return calls

    def summary(self) -> str:
        lines = [f"ChannelGraph of '{self.model_name}': {len(self.groups)} groups"]
        for g in self.groups:
            state = f"frozen: {g.frozen}" if g.frozen else "prunable"
            lines.append(
                f"  group {g.id:3d}  width {g.width:5d}  "
                f"producers {', '.join(g.producers)}  [{state}]"
            )
        return "\n".join(lines)


def _resolve_names(walk: ModelWalk, names: Iterable[str] | None, arg: str) -> set:
    resolved: set[str] = set()
    for name in names or ():
        matches = [p for p in walk.layers if p == name or p.rsplit("/", 1)[-1] == name]
        if not matches:
            known = sorted(walk.layers)
            more = " …" if len(known) > 20 else ""
            raise ValueError(
                f"`{arg}` names layer '{name}', which is not in the model. Known "
                f"layers: {known[:20]}{more}"
            )
        resolved.update(matches)
    return resolved


def trace_channels(
    model: keras.Model, *, exclude: Iterable[str] | None = None, warn: bool = True
) -> ChannelGraph:
    """Traces the channel groups of a built Functional or Sequential model.

    Args:
        model: A built `keras.Model`. It is only read.
        exclude: Layer names (or nested paths like `"backbone/conv1"`) whose
            channels must not be pruned. Defaults to `None`.
        warn: `bool`. Warn (`FilterPruneWarning`) for each layer class without a
            handler. Defaults to `True`.

    Returns:
        A `ChannelGraph`.

    Raises:
        TypeError: subclassed model or not a model.
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
    builder = _Builder(walk, _resolve_names(walk, exclude, "exclude"))
    tensor_ids: dict[int, np.ndarray | None] = {}
    for key in walk.inputs:
        tensor_ids[key] = builder.opaque(walk.channels(key), "<input>", "model input")
    first_inputs: dict[str, np.ndarray] = {}
    touched: dict[str, list[np.ndarray]] = {}
    unknown: dict[str, str] = {}
    for call in walk.calls:
        handler: LayerHandler | None = get_handler(call.layer)
        if handler is None:
            cls = type(call.layer).__name__
            unknown.setdefault(cls, call.path)
            handler = FreezeHandler(
                f"{cls} has no pruning handler (teach it with register_handler)"
            )
        inputs = [tensor_ids.get(k) for k in call.inputs]
        inputs = [
            builder.opaque(walk.channels(k), call.path, "unknown channels")
            if ids is None
            else ids
            for k, ids in zip(call.inputs, inputs)
        ]
        outputs = handler.propagate(call.layer, call, inputs, builder)
        if call.path in builder.exclude:  # its outputs: an excluded conv keeps its
            # filters, while the layers feeding it may still be pruned
            for ids in outputs:
                builder.freeze(ids, call.path, "excluded by the user")
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
    if warn:
        for cls, path in unknown.items():
            warnings.warn(
                f"Layer '{path}' ({cls}) has no pruning handler: the channel groups "
                "that reach it are frozen (never pruned). Teach keras-filterprune "
                "the layer with `keras_filterprune.register_handler`.",
                FilterPruneWarning,
                stacklevel=2,
            )
    return ChannelGraph(model, walk, builder, tensor_ids, touched)
