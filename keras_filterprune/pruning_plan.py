"""`PruningPlan`: which channels of each group to keep, as plain data.

A plan is JSON: it can be saved, inspected and replayed on a fresh copy of the same
model. A plan made by `plan_pruning` also remembers (in memory only) the traced
graph it was made from, so that `apply_plan`, `weight_masks` and `mask_model` on
the same model do not trace it again.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping

import numpy as np

__all__ = ["GroupPlan", "PruningPlan", "keep_mask"]

_FORMAT = "keras_filterprune.PruningPlan/1"


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
        self._graph = None  # the ChannelGraph it was planned on (not serialised)

    # -- the traced graph -------------------------------------------------------
    def with_graph(self, graph) -> PruningPlan:
        """Remembers the `ChannelGraph` this plan was made on; returns `self`."""
        self._graph = graph
        return self

    def graph_for(self, model):
        """The remembered graph if it was traced from `model`, else `None`."""
        graph = self._graph
        return graph if graph is not None and graph.is_graph_of(model) else None

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
        """A readable table of the groups (kept/original width, frozen reasons)."""
        head = f"PruningPlan for '{self.model_name}'"
        if self.meta:
            head += " (" + ", ".join(f"{k}={v}" for k, v in self.meta.items()) + ")"
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
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"<PruningPlan model='{self.model_name}' groups={len(self.groups)} "
            f"removed={self.num_removed}>"
        )

    # -- serialisation --------------------------------------------------------
    def get_config(self) -> dict:
        return {
            "format": _FORMAT,
            "model_name": self.model_name,
            "meta": self.meta,
            "groups": [dataclasses.asdict(g) for g in self.groups],
        }

    @classmethod
    def from_config(cls, config: Mapping) -> PruningPlan:
        if not isinstance(config, Mapping) or config.get("format") != _FORMAT:
            raise ValueError(
                "Not a keras-filterprune pruning plan: expected a mapping with "
                f"`format` == '{_FORMAT}'."
            )
        try:
            groups = [
                GroupPlan(
                    id=int(g["id"]),
                    width=int(g["width"]),
                    producers={
                        p: [int(c) for c in v] for p, v in g["producers"].items()
                    },
                    members=list(g["members"]),
                    keep=sorted(int(c) for c in g["keep"]),
                    scores=None if g.get("scores") is None else list(g["scores"]),
                    frozen=g.get("frozen"),
                )
                for g in config["groups"]
            ]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"Corrupt pruning plan: {e!r}") from e
        for g in groups:
            if any(c < 0 or c >= g.width for c in g.keep):
                raise ValueError(
                    f"Corrupt pruning plan: group {g.id} keeps channels outside "
                    f"[0, {g.width})."
                )
        return cls(groups, config.get("model_name", ""), config.get("meta"))

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.get_config(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> PruningPlan:
        try:
            config = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"A pruning plan must be JSON: {e}") from e
        return cls.from_config(config)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the plan as JSON (atomically)."""
        path = os.fspath(path)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(self.to_json(indent=1))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PruningPlan:
        with open(os.fspath(path), encoding="utf-8") as f:
            return cls.from_json(f.read())


def _match(graph, plan: PruningPlan) -> dict[int, np.ndarray]:
    """Checks that `plan` fits the traced model; returns keep masks by group id."""
    by_producers = {frozenset(g.producers): g for g in plan.groups}
    plan_paths = {p for g in plan.groups for p in g.producers}
    for path in sorted(plan_paths):
        if path not in graph.walk.layers:
            raise ValueError(
                f"The plan does not match the model: it names layer '{path}', which "
                f"model '{graph.model_name}' does not have. Plans only apply to the "
                "model they were made for (or an identical copy)."
            )
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
            if list(channels) != list(pg.producers[path]):
                raise ValueError(
                    f"The plan does not match the model: layer '{path}' has "
                    f"{len(channels)} filters in the model but "
                    f"{len(pg.producers[path])} in the plan (or another channel "
                    "layout). Make a new plan for this model."
                )
        mask = keep_mask(group.width, pg.keep)
        if group.frozen and not mask.all():
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
    return masks


def check_plan(plan) -> PruningPlan:
    """Raises a TypeError unless `plan` is a `PruningPlan`."""
    if not isinstance(plan, PruningPlan):
        raise TypeError(
            "`plan` must be a keras_filterprune.PruningPlan (see plan_pruning or "
            f"PruningPlan.load). Received: plan of type {type(plan).__name__}."
        )
    return plan
