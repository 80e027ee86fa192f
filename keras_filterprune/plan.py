"""Pruning plans: which channels of each group to keep, as plain data.

The graph finds the groups, the planner decides how many channels of each to keep,
and `keras_filterprune.surgery` only executes a plan. A plan is JSON: it can be
saved, inspected and replayed on a fresh copy of the same model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping

import keras
import numpy as np

from keras_filterprune import criteria as criteria_lib
from keras_filterprune.graph import ChannelGraph, trace_channels
from keras_filterprune.handlers import get_handler
from keras_filterprune.scoring import producer_kernel, score_filters

__all__ = ["GroupPlan", "PruningPlan", "plan_pruning"]

_FORMAT = "keras_filterprune.PruningPlan/1"
_REDUCTIONS = ("mean", "sum", "max", "l2")


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
        masks = {}
        for g in self.groups:
            mask = np.zeros(g.width, dtype=bool)
            mask[np.asarray(g.keep, dtype=np.int64)] = True
            masks[g.id] = mask
        return masks

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


# ---------------------------------------------------------------------------
# The planner
# ---------------------------------------------------------------------------


def _check_ratio(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise TypeError(f"`{name}` must be a number. Received: {name}={value!r}")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1). Received: {name}={value}")
    return float(value)


def _reduce(contrib: list[tuple[np.ndarray, np.ndarray]], width: int, how: str):
    total = np.zeros(width)
    count = np.zeros(width)
    peak = np.full(width, -np.inf)
    for channels, scores in contrib:
        if how == "l2":
            np.add.at(total, channels, scores**2)
        else:
            np.add.at(total, channels, scores)
        np.add.at(count, channels, 1)
        np.maximum.at(peak, channels, scores)
    if how == "max":
        return peak
    if how == "l2":
        return np.sqrt(total)
    if how == "sum":
        return total
    return total / np.maximum(count, 1)


def _n_keep(width: int, ratio: float, round_to: int, min_filters: int) -> int:
    n = max(min_filters, math.ceil((1.0 - ratio) * width - 1e-9))
    n = int(math.ceil(n / round_to) * round_to)
    return min(width, max(n, 1))


def _top(scores: np.ndarray, n: int) -> list[int]:
    order = np.argsort(-scores, kind="stable")
    return sorted(int(i) for i in order[:n])


def _resolve(graph: ChannelGraph, names: Mapping | None, arg: str) -> dict:
    out = {}
    for name, value in (names or {}).items():
        matches = [
            p for p in graph.walk.layers if p == name or p.split("/")[-1] == name
        ]
        if not matches:
            raise ValueError(
                f"`{arg}` names layer '{name}', which is not in the model."
            )
        for p in matches:
            out[p] = value
    return out


def _cost_model(model: keras.Model, graph: ChannelGraph, target: str):
    """Returns a function of element keep flags → estimated MACs or params.

    Each call site's cost is scaled by the kept fraction of its weights, taken
    from the handlers' weight rules (the axes surgery slices): exact for
    parameters, and for MACs exact up to the bias of a layer (which only makes
    the estimate a little high, so a target is never exceeded). A product
    `in × out` fraction alone would miss a separable conv's depthwise part and
    the biases, which only follow one side. Layers without weights scale with
    their output channels (pooling, BatchNorm-free activations).
    """
    from keras_filterprune.profile import profile_model

    profile = profile_model(model)
    calls = graph.walk.calls
    rows = []
    for i, lp in enumerate(profile.layers):
        call = calls[i] if i < len(calls) and calls[i].path == lp.path else None
        if call is None:
            continue
        base = lp.macs if target == "macs" else lp.params
        if not base:
            continue
        ins = graph.tensor_ids.get(call.inputs[0]) if call.inputs else None
        outs = graph.tensor_ids.get(call.outputs[0])
        handler = get_handler(call.layer)
        parts = []
        weights = list(getattr(call.layer, "weights", ()))
        if handler is not None and weights:
            for w, rules in zip(weights, handler.weight_axes(call.layer)):
                axes = []
                for axis, src, _ in rules:
                    ids = ins if src == "in" else outs
                    if ids is not None and len(ids) and w.shape[axis] != 1:
                        axes.append(ids)
                parts.append((math.prod(w.shape), axes))
        rows.append((base, parts, outs))
    fixed = profile.total_params - sum(r[0] for r in rows) if target == "params" else 0

    def cost(flags: np.ndarray) -> float:
        total = float(fixed)
        for base, parts, outs in rows:
            if parts:
                size = sum(n for n, _ in parts)
                kept = sum(
                    n * math.prod(float(flags[ids].mean()) for ids in axes)
                    for n, axes in parts
                )
                frac = kept / size if size else 1.0
            elif outs is not None and len(outs):
                frac = float(flags[outs].mean())
            else:
                frac = 1.0
            total += base * frac
        return total

    return cost


def plan_pruning(
    model: keras.Model,
    ratio: float = 0.5,
    criterion: str | Callable = "operator_norm",
    *,
    per_layer: Mapping[str, float] | None = None,
    exclude: Iterable[str] | None = None,
    target_macs: float | None = None,
    target_params: float | None = None,
    group_reduction: str = "mean",
    round_to: int = 1,
    min_filters: int = 1,
    global_ranking: bool = False,
    greedy: bool = False,
    data=None,
    scores: Mapping[str, np.ndarray] | None = None,
    verbose: int = 0,
) -> PruningPlan:
    """Decides which filters of each channel group to keep.

    Every group (a conv and the layers that must share its channel set: its
    BatchNorm, the residual `Add` partners, …) is scored by reducing its members'
    filter scores, and its lowest-scored channels are removed.

    Args:
        model: A built Functional or Sequential `keras.Model` (only read).
        ratio: `float` in [0, 1). Fraction of each group's channels to remove.
            Defaults to `0.5`.
        criterion: `str` or callable. Importance criterion (see
            `keras_filterprune.criteria`). Defaults to `"operator_norm"`.
        per_layer: `dict` layer name → ratio, overriding `ratio` for the groups of
            those producers (a group with several gets the smallest).
        exclude: Layer names whose output channels are never pruned (their groups
            are frozen; the layers feeding them may still lose filters).
        target_macs: Solve for the uniform ratio whose pruned model has at most
            this many MACs (estimated from the per-layer profile). Overrides
            `ratio`.
        target_params: Same with parameters.
        group_reduction: `"mean"`, `"sum"`, `"max"` or `"l2"` of the members'
            scores (each producer's scores are first divided by their maximum).
            Defaults to `"mean"`.
        round_to: `int`. Keep a multiple of this many channels per group (e.g. 8
            for fast kernels on XNNPACK). Defaults to `1`.
        min_filters: `int`. Never keep fewer channels in a group. Defaults to `1`.
        global_ranking: `bool`. Rank all channels of all prunable groups together
            (scores normalised per group) and remove `ratio` of them overall,
            instead of `ratio` of each group. Defaults to `False`.
        greedy: `bool`. Li et al.'s greedy scoring: when scoring a layer, ignore
            its input channels already removed upstream (passive criteria only).
            Defaults to `False`.
        data: Data for active criteria.
        scores: Precomputed `score_filters` output to reuse. Defaults to `None`.
        verbose: `int`. Progress for active criteria.

    Returns:
        A `PruningPlan`.

    Raises:
        ValueError: ratio outside [0, 1), unknown criterion or reduction, unknown
            layer names, unreachable targets.
        TypeError: subclassed model or bad argument types.

    Example:

    >>> import keras
    >>> inputs = keras.Input((16, 16, 3))
    >>> x = keras.layers.Conv2D(16, 3, padding="same", name="a")(inputs)
    >>> y = keras.layers.Conv2D(16, 3, padding="same", name="b")(x)
    >>> x = keras.layers.Add()([x, y])
    >>> outputs = keras.layers.Dense(2, name="head")(x)
    >>> plan = plan_pruning(keras.Model(inputs, outputs), ratio=0.25)
    >>> plan.kept_filters("a") == plan.kept_filters("b"), len(plan.kept_filters("a"))
    (True, 12)
    """
    ratio = _check_ratio(ratio, "ratio")
    if group_reduction not in _REDUCTIONS:
        raise ValueError(
            f"`group_reduction` must be one of {_REDUCTIONS}. "
            f"Received: group_reduction={group_reduction!r}"
        )
    for name, value in (("round_to", round_to), ("min_filters", min_filters)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"`{name}` must be an int >= 1. Received: {name}={value!r}"
            )
    if target_macs is not None and target_params is not None:
        raise ValueError("Pass at most one of `target_macs` and `target_params`.")
    fn = criteria_lib.get(criterion)  # unknown names fail before any work
    active = criteria_lib.is_active(criterion)
    if greedy and active:
        raise ValueError("`greedy=True` needs a passive criterion (kernel-based).")
    graph = trace_channels(model, exclude=exclude)
    per_group_ratio: dict[int, float] = {}
    for path, r in _resolve(graph, per_layer, "per_layer").items():
        r = _check_ratio(r, f"per_layer['{path}']")
        try:
            g = graph.group_of(path).id
        except KeyError:
            raise ValueError(
                f"`per_layer` names '{path}', which produces no prunable channels."
            ) from None
        per_group_ratio[g] = min(per_group_ratio.get(g, 1.0), r)
    if scores is None and not greedy:
        scores = score_filters(model, criterion, data, graph=graph, verbose=verbose)

    def group_scores(group, flags=None) -> np.ndarray:
        contrib = []
        for path, channels in group.producers.items():
            if greedy:
                s = _greedy_scores(graph, path, fn, flags)
            else:
                s = np.asarray(scores[path], dtype=np.float64)
            peak = np.max(np.abs(s)) if s.size else 0.0
            contrib.append((channels, s / peak if peak > 0 else s))
        return _reduce(contrib, group.width, group_reduction)

    def decide(r: float) -> tuple[dict[int, list[int]], dict[int, np.ndarray]]:
        keep, all_scores = {}, {}
        flags = np.ones(len(graph.elem_group), dtype=bool) if greedy else None
        for group in graph.groups:
            s = group_scores(group, flags)
            all_scores[group.id] = s
            if group.frozen:
                keep[group.id] = list(range(group.width))
                continue
            gr = per_group_ratio.get(group.id, r)
            keep[group.id] = _top(s, _n_keep(group.width, gr, round_to, min_filters))
            if greedy:
                mask = np.zeros(group.width, dtype=bool)
                mask[keep[group.id]] = True
                sel = graph.elem_group == group.id
                flags[sel] = mask[graph.elem_channel[sel]]
        if global_ranking and r > 0:
            keep = _global_keep(graph, all_scores, per_group_ratio, r, round_to,
                                min_filters)  # fmt: skip
        return keep, all_scores

    if target_macs is not None or target_params is not None:
        target = "macs" if target_macs is not None else "params"
        goal = float(target_macs if target_macs is not None else target_params)
        ratio = _solve_ratio(model, graph, decide, target, goal)
    keep, all_scores = decide(ratio)
    groups = [
        GroupPlan(
            id=g.id,
            width=g.width,
            producers={p: c.tolist() for p, c in g.producers.items()},
            members=list(g.members),
            keep=keep[g.id],
            scores=[float(v) for v in all_scores[g.id]],
            frozen=g.frozen,
        )
        for g in graph.groups
    ]
    meta = {
        "criterion": criterion if isinstance(criterion, str) else fn.__name__,
        "ratio": round(ratio, 6),
        "group_reduction": group_reduction,
    }
    if global_ranking:
        meta["global_ranking"] = True
    if greedy:
        meta["greedy"] = True
    return PruningPlan(groups, model.name, meta)


def _greedy_scores(graph: ChannelGraph, path: str, fn, flags) -> np.ndarray:
    kernel = producer_kernel(graph.walk.layers[path])
    call = graph.first_calls()[path]
    ids = graph.tensor_ids.get(call.inputs[0])
    if ids is not None and len(ids) * _repeat(graph, path) == kernel.shape[-2]:
        in_keep = np.repeat(flags[ids], _repeat(graph, path))
        kernel = kernel[..., in_keep, :]
    return np.asarray(fn(kernel), dtype=np.float64)


def _repeat(graph: ChannelGraph, path: str) -> int:
    return int(getattr(graph.walk.layers[path], "depth_multiplier", 1) or 1)


def _global_keep(graph, all_scores, per_group_ratio, r, round_to, min_filters):
    entries = []
    keep = {}
    for group in graph.groups:
        if group.frozen or group.id in per_group_ratio:
            n = group.width
            if not group.frozen:
                n = _n_keep(
                    group.width, per_group_ratio[group.id], round_to, min_filters
                )
            keep[group.id] = _top(all_scores[group.id], n)
            continue
        s = all_scores[group.id]
        peak = np.max(np.abs(s)) or 1.0
        entries.extend((v / peak, group.id, i) for i, v in enumerate(s))
    n_remove = int(r * len(entries))
    entries.sort()
    removed: dict[int, set[int]] = {}
    for _, g, i in entries[:n_remove]:
        removed.setdefault(g, set()).add(i)
    for group in graph.groups:
        if group.id in keep:
            continue
        s = all_scores[group.id]
        n = group.width - len(removed.get(group.id, ()))
        n = _n_keep(group.width, 1.0 - n / group.width, round_to, min_filters)
        keep[group.id] = _top(s, n)
    return keep


def _solve_ratio(model, graph, decide, target: str, goal: float) -> float:
    cost = _cost_model(model, graph, target)

    def cost_at(r: float) -> float:
        keep, _ = decide(r)
        masks = {}
        for g in graph.groups:
            mask = np.zeros(g.width, dtype=bool)
            mask[keep[g.id]] = True
            masks[g.id] = mask
        return cost(graph.element_keep(masks))

    if cost_at(0.0) <= goal:
        return 0.0
    hi = 0.99
    if cost_at(hi) > goal:
        raise ValueError(
            f"`target_{target}`={goal:.4g} cannot be reached: even pruning 99% of "
            f"every prunable group leaves {cost_at(hi):.4g} {target} (frozen groups "
            "and non-prunable layers keep the rest)."
        )
    lo = 0.0
    for _ in range(14):
        mid = (lo + hi) / 2
        if cost_at(mid) <= goal:
            hi = mid
        else:
            lo = mid
    return hi
