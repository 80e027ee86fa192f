"""`PruningPlan`: which channels of each group to keep, as plain data.

A plan is JSON: it can be saved, inspected and replayed on a fresh copy of the same
model. It holds no reference to a model or a trace (the package remembers traces
itself, `keras_filterprune.graph.graph_of`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from keras_filterprune._files import check_writable, parse_json, read_json, write_text

__all__ = ["GroupPlan", "PruningPlan", "keep_mask"]

_FORMAT = "keras_filterprune.PruningPlan/1"
_FIELDS = ("format", "model_name", "meta", "groups")
_WRITTEN_BY = "`PruningPlan.save`"


def keep_mask(width: int, keep) -> np.ndarray:
    """A boolean mask of `width` channels, `True` at the indices in `keep`."""
    mask = np.zeros(width, dtype=bool)
    mask[np.asarray(keep, dtype=np.int64)] = True
    return mask


@dataclasses.dataclass
class GroupPlan:
    """The decision for one channel group.

    Attributes:
        id: `int`. Group index (topological order).
        width: `int`. Channels in the original model.
        producers: `dict[str, list[int]]`. Producer layer path → the group channel
            of each of its filters.
        members: `list[str]`. Every layer whose tensors carry the channels.
        keep: `list[int]`. Kept group channels, sorted.
        scores: `list[float] | None`. Group score of each channel.
        frozen: `str | None`. Why the group is not pruned.
    """

    id: int
    width: int
    producers: dict[str, list[int]]
    members: list[str]
    keep: list[int]
    scores: list[float] | None = None
    frozen: str | None = None

    @property
    def removed(self) -> int:
        return self.width - len(self.keep)

    def kept_filters(self, path: str) -> list[int]:
        """Indices of the kept filters of producer `path`."""
        keep = set(self.keep)
        return [j for j, c in enumerate(self.producers[path]) if c in keep]


class PruningPlan:
    """Which channels of each group of a model to keep.

    Build one with `plan_pruning`, apply it with `apply_plan`. Plans are plain data:
    `to_json()`/`from_json()`, `save(path)`/`load(path)`, `get_config()`.

    Args:
        groups: `list[GroupPlan]`.
        model_name: `str`. Name of the planned model.
        meta: `dict`. How the plan was made (criterion, ratio, …).

    Example:

    >>> import keras
    >>> from keras_filterprune import plan_pruning
    >>> model = keras.Sequential([keras.Input((8, 8, 3)),
    ...     keras.layers.Conv2D(8, 3, name="conv"), keras.layers.Flatten(),
    ...     keras.layers.Dense(2, name="head")])
    >>> plan = plan_pruning(model, ratio=0.5, criterion="l1_norm")
    >>> len(plan.kept_filters("conv"))
    4
    >>> PruningPlan.from_json(plan.to_json()).kept_filters("conv") == (
    ...     plan.kept_filters("conv"))
    True
    """

    def __init__(
        self, groups: list[GroupPlan], model_name: str = "", meta: dict | None = None
    ) -> None:
        self.groups = list(groups)
        self.model_name = model_name
        self.meta = dict(meta or {})

    def keep_flags(self, graph) -> np.ndarray:
        """Boolean keep flag per element id of `graph` (a `ChannelGraph`).

        Raises:
            ValueError: the plan does not fit the traced model (the message names
                the first mismatching layer).
        """
        return graph.element_keep(_match(graph, self))

    # -- queries ------------------------------------------------------------
    def group_of(self, path: str) -> GroupPlan:
        for group in self.groups:
            if path in group.producers:
                return group
        raise KeyError(f"Layer '{path}' produces no channel group of this plan.")

    def kept_filters(self, path: str) -> list[int]:
        """Indices of the kept filters of a producer layer."""
        return self.group_of(path).kept_filters(path)

    @property
    def frozen_groups(self) -> list[GroupPlan]:
        return [g for g in self.groups if g.frozen]

    @property
    def num_removed(self) -> int:
        return sum(g.removed for g in self.groups)

    def keep_masks(self) -> dict[int, np.ndarray]:
        """Group id → boolean keep mask of its channels."""
        return {g.id: keep_mask(g.width, g.keep) for g in self.groups}

    def summary(self) -> str:
        """A readable table of the groups (kept/original width, frozen reasons),
        ending with the predicted MACs and parameters (before → after)."""
        head = f"PruningPlan for '{self.model_name}'"
        shown = {k: v for k, v in self.meta.items() if k not in _PREDICTED}
        if shown:
            head += " (" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")"
        lines = [head, f"{'group':>5}  {'kept':>11}  producers"]
        for g in self.groups:
            names = ", ".join(g.producers)
            if len(names) > 60:
                names = names[:57] + "..."
            state = f"  [frozen: {g.frozen}]" if g.frozen else ""
            lines.append(f"{g.id:>5}  {len(g.keep):>5}/{g.width:<5}  {names}{state}")
        total = sum(g.width for g in self.groups)
        kept = sum(len(g.keep) for g in self.groups)
        lines.append(
            f"total: {kept}/{total} channels kept, {len(self.frozen_groups)} frozen "
            f"of {len(self.groups)} groups"
        )
        predicted = [
            f"{label} {_count(pair[0])} → {_count(pair[1])} ({pair[1] / pair[0]:.2f}×)"
            for key, label in _PREDICTED.items()
            if _is_pair(pair := self.meta.get(key))
        ]
        if predicted:
            lines.append("predicted: " + ", ".join(predicted))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"<PruningPlan model='{self.model_name}' groups={len(self.groups)} "
            f"removed={self.num_removed}>"
        )

    # -- serialisation --------------------------------------------------------
    def get_config(self) -> dict:
        return {  # keys: _FIELDS
            "format": _FORMAT,
            "model_name": self.model_name,
            "meta": self.meta,
            "groups": [dataclasses.asdict(g) for g in self.groups],
        }

    @classmethod
    def from_config(cls, config: Mapping) -> PruningPlan:
        """A plan from `get_config()` output, validated as an untrusted document.

        Raises:
            ValueError: "Not a keras-filterprune pruning plan" (wrong `format`) or
                "Corrupt pruning plan: <field>: <problem>" for any field of the
                wrong type or range (indices must be unique, sorted ints in
                `[0, width)`, every group must keep a channel, frozen groups keep
                all, scores must be finite, one per channel).
        """
        if not isinstance(config, Mapping) or config.get("format") != _FORMAT:
            raise ValueError(
                "Not a keras-filterprune pruning plan: expected a mapping with "
                f"`format` == '{_FORMAT}'."
            )
        extra = [key for key in config if key not in _FIELDS]
        _require(
            not extra,
            str(extra[0]) if extra else "",
            f"unknown field (a plan holds {', '.join(_FIELDS)}; keep your own "
            "data in `meta`)",
        )
        model_name = config.get("model_name", "")
        meta = config.get("meta") or {}
        _require(isinstance(model_name, str), "model_name", "must be a string")
        _require(isinstance(meta, Mapping), "meta", "must be an object")
        groups = config.get("groups")
        _require(isinstance(groups, list), "groups", "must be a list of groups")
        plans = [_group_from_config(g, f"groups[{i}]") for i, g in enumerate(groups)]
        ids = [g.id for g in plans]
        _require(len(set(ids)) == len(ids), "groups", f"repeat an id: {ids}")
        seen: dict[str, int] = {}
        for g in plans:
            for path in g.producers:
                _require(
                    path not in seen,
                    f"groups[id={g.id}].producers",
                    f"layer '{path}' is also a producer of group {seen.get(path)}",
                )
                seen[path] = g.id
        return cls(plans, model_name, dict(meta))

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.get_config(), **kwargs)

    @classmethod
    def from_json(cls, text: str | bytes) -> PruningPlan:
        return cls.from_config(parse_json(text, "pruning plan", _WRITTEN_BY))

    def save(self, path: str | os.PathLike) -> None:
        """Writes the plan as JSON, atomically: on any failure (a destination
        that cannot be written, a meta value JSON cannot hold) nothing is left
        behind, neither the file nor a temporary.

        Raises:
            TypeError: `path` is not a path, or `meta` holds a value JSON cannot
                serialise.
            FileNotFoundError, PermissionError, IsADirectoryError: bad destination.
        """
        path = check_writable(path)
        try:
            text = self.to_json(indent=1, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise TypeError(
                f"The plan cannot be written as JSON ({e}); keep `meta` to "
                "JSON-serialisable values. Nothing was written."
            ) from e
        write_text(path, text)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PruningPlan:
        """Reads a plan saved with `save`, validated as an untrusted file.

        Raises:
            ValueError: the file is not UTF-8 JSON or not a valid plan; the message
                names the file and the offending field.
            FileNotFoundError: no such file.
        """
        config = read_json(path, "pruning plan", _WRITTEN_BY)
        try:
            return cls.from_config(config)
        except ValueError as e:
            path = os.fspath(path)
            raise ValueError(f"Cannot read pruning plan '{path}': {e}") from e


def _match(graph, plan: PruningPlan) -> dict[int, np.ndarray]:
    """Checks that `plan` fits the traced model; returns keep masks by group id."""
    by_producers = {frozenset(g.producers): g for g in plan.groups}
    plan_paths = {p for g in plan.groups for p in g.producers}
    _check_named(graph, sorted(plan_paths))
    masks = {}
    for group in graph.groups:
        pg = by_producers.get(frozenset(group.producers))
        first = next(iter(group.producers))
        if pg is None:
            raise ValueError(
                f"The plan does not match the model: layer '{first}' of model "
                f"'{graph.model_name}' has no group in the plan (or its group has "
                "other members). Make a new plan for this model."
            )
        for path, channels in group.producers.items():
            planned = list(pg.producers[path])
            if list(channels) != planned:
                what = (
                    f"{len(channels)} filters in the model but {len(planned)} in "
                    "the plan"
                    if len(channels) != len(planned)
                    else f"{len(channels)} filters in both, but they map to other "
                    f"channels of its group (model: {_span(channels)}, plan: "
                    f"{_span(planned)}; e.g. another `groups` of a grouped "
                    "convolution or another concatenation order)"
                )
                raise ValueError(
                    f"The plan does not match the model: layer '{path}' has "
                    f"{what}. Make a new plan for this model."
                )
        if pg.width != group.width:
            raise ValueError(
                f"The plan does not match the model: the group of layer '{first}' "
                f"has {group.width} channels in model '{graph.model_name}' but "
                f"{pg.width} in the plan. Make a new plan for this model."
            )
        mask = keep_mask(group.width, pg.keep)
        opted_in = group.approximate and plan.meta.get("prune_norms") is True
        if group.frozen and not mask.all() and not opted_in:
            raise ValueError(
                f"The plan removes channels of the group of layer '{first}', which "
                f"cannot be pruned in this model: {group.frozen}."
            )
        masks[group.id] = mask
    if len(masks) != len(plan.groups):
        raise ValueError(
            "The plan does not match the model: it has "
            f"{len(plan.groups)} groups, the model {len(masks)}."
        )
    # Members (BatchNorm, ReLU, Add ...) are not matched by name: their
    # automatic names change when the same model is built again in one session,
    # and the groups (producers, widths, channel maps) already say it is the same.
    return masks


def _check_named(graph, paths) -> None:
    for path in paths:
        if path not in graph.walk.layers:
            raise ValueError(
                f"The plan does not match the model: it names layer '{path}', which "
                f"model '{graph.model_name}' does not have. Plans only apply to the "
                "model they were made for (or an identical copy)."
            )


def check_plan(plan) -> PruningPlan:
    """Raises a TypeError unless `plan` is a `PruningPlan`."""
    if not isinstance(plan, PruningPlan):
        raise TypeError(
            "`plan` must be a keras_filterprune.PruningPlan (see plan_pruning or "
            f"PruningPlan.load). Received: plan of type {type(plan).__name__}."
        )
    return plan


def _require(ok: bool, field: str, problem: str) -> None:
    if not ok:
        raise ValueError(f"Corrupt pruning plan: {field}: {problem}.")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _indices(value, field: str, width: int, *, unique: bool) -> list[int]:
    _require(isinstance(value, list), field, "must be a list of channel indices")
    _require(all(_is_int(c) for c in value), field, f"must hold ints: {value[:8]}")
    bad = [c for c in value if not 0 <= c < width]
    _require(not bad, field, f"keeps channels outside [0, {width}): {bad[:8]}")
    if unique:
        _require(
            value == sorted(set(value)),
            field,
            f"must be sorted and without repeats: {value[:8]}",
        )
    return list(value)


def _group_from_config(g, field: str) -> GroupPlan:
    _require(isinstance(g, Mapping), field, "must be an object")
    for key in ("id", "width", "producers", "members", "keep"):
        _require(key in g, field, f"misses '{key}'")
    gid, width = g["id"], g["width"]
    _require(_is_int(gid) and gid >= 0, f"{field}.id", f"must be an int >= 0: {gid!r}")
    _require(
        _is_int(width) and width >= 1,
        f"{field}.width",
        f"must be an int >= 1: {width!r}",
    )
    producers = g["producers"]
    _require(isinstance(producers, Mapping), f"{field}.producers", "must be an object")
    for path, channels in producers.items():
        _require(isinstance(path, str), f"{field}.producers", "keys must be strings")
        _indices(channels, f"{field}.producers['{path}']", width, unique=False)
    members = g["members"]
    _require(
        isinstance(members, list) and all(isinstance(m, str) for m in members),
        f"{field}.members",
        "must be a list of layer names",
    )
    keep = _indices(g["keep"], f"{field}.keep", width, unique=True)
    _require(bool(keep), f"{field}.keep", "must keep at least one channel")
    frozen = g.get("frozen")
    _require(frozen is None or isinstance(frozen, str), f"{field}.frozen", "str/null")
    _require(
        not frozen or len(keep) == width,
        f"{field}.keep",
        f"a frozen group keeps all its channels (frozen: {frozen!r}; keeps "
        f"{len(keep)} of {width})",
    )
    scores = g.get("scores")
    if scores is not None:
        ok = isinstance(scores, list) and len(scores) == width
        ok = ok and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in scores
        )
        _require(ok, f"{field}.scores", f"must be {width} finite numbers or null")
    return GroupPlan(
        id=gid,
        width=width,
        producers={p: list(c) for p, c in producers.items()},
        members=list(members),
        keep=keep,
        scores=None if scores is None else [float(v) for v in scores],
        frozen=frozen,
    )


_PREDICTED = {"macs": "MACs", "params": "params"}


def _is_pair(value: Any) -> bool:
    """Two positive counts `[before, after]` (meta read from a file may hold
    anything: a summary never fails on it)."""
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        and value[0] > 0
        and all(math.isfinite(v) for v in value)
    )


def _count(n: float) -> str:
    """`1234567` → `'1.23M'`."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def _span(channels) -> str:
    """`[0..7]` for a contiguous run of channels, else the first few."""
    channels = [int(c) for c in channels]
    if channels and channels == list(range(channels[0], channels[0] + len(channels))):
        return f"channels {channels[0]}..{channels[-1]}"
    more = ", …" if len(channels) > 6 else ""
    return f"channels [{', '.join(map(str, channels[:6]))}{more}]"
