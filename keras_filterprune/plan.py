"""The planner: how many channels of each group to keep, and which.

The graph finds the groups, the planner decides, and `keras_filterprune.surgery`
only executes a plan. Planning within a previous plan (iterative pruning) and MAC
estimates of a plan live here too, so the callback only schedules;
`recover_plan` (a plan found again from zeroed weights) is `masking`'s and is
re-exported here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

import keras
import numpy as np

from keras_filterprune._cost import cost_model, pruned_macs
from keras_filterprune._deprecation import graph_argument_removed
from keras_filterprune._options import (
    PlanOptions,
    check_not_both,
    document_options,
    importance_name,
)
from keras_filterprune._validation import check_int, check_scores
from keras_filterprune.exceptions import FilterPruneWarning
from keras_filterprune.graph import ChannelGraph, graph_of
from keras_filterprune.latency.budget import latency_counts
from keras_filterprune.latency.table import LatencyTable
from keras_filterprune.masking import recover_plan
from keras_filterprune.pruning_plan import (
    GroupPlan,
    PruningPlan,
    check_plan,
    keep_mask,
)
from keras_filterprune.scoring import score_filters, sliced_kernel

if TYPE_CHECKING:
    from keras_filterprune._sensitivity_result import SensitivityResult

__all__ = [
    "GroupPlan",
    "PruningPlan",
    "plan_pruning",
    "recover_plan",
    "estimate_macs",
]


@graph_argument_removed
@document_options()
def plan_pruning(
    model: keras.Model,
    ratio: float = 0.5,
    criterion: str | Callable = "operator_norm",
    *,
    per_layer: Mapping[str, float] | None = None,
    exclude: Iterable[str] | None = None,
    target_macs: float | str | None = None,
    target_params: float | str | None = None,
    target_latency: float | str | None = None,
    latency_table: LatencyTable | str | None = None,
    importance: str | SensitivityResult | None = None,
    group_reduction: str = "mean",
    round_to: int | str = 1,
    min_filters: int = 1,
    max_ratio: float = 1.0,
    global_ranking: bool = False,
    greedy: bool = False,
    prune_norms: bool = False,
    data=None,
    scores: Mapping[str, np.ndarray] | None = None,
    within: PruningPlan | None = None,
    verbose: int = 0,
) -> PruningPlan:
    """Decides which filters of each channel group to keep.

    Every group (a conv and the layers that must share its channel set: its
    BatchNorm, the residual `Add` partners, …) is scored by reducing its members'
    filter scores, and its lowest-scored channels are removed.

    Args:
        model: A built Functional or Sequential `keras.Model` (only read).
        {planning_options}
        data: Data for active criteria.
        scores: Precomputed `score_filters` output to reuse. Defaults to `None`.
        within: A previous `PruningPlan` of this model whose removed channels are
            zero in `model` (iterative pruning). Every group then keeps a subset
            of what `within` kept (never more: removed filters do not return),
            and filters are scored as the physically pruned model would score
            them. Defaults to `None`.
        verbose: `int` >= 0. Progress for active criteria. Defaults to `0`.

    Returns:
        A `PruningPlan` (plain data: `to_json`/`from_json`). `model` is traced
        once and the trace remembered, so `apply_plan(model, plan)` and the other
        functions given `model` do not trace it again.

    Raises:
        ValueError: ratio outside [0, 1), unknown criterion or reduction, unknown
            layer names, a layer both in `per_layer` and `exclude`, a positive
            `per_layer` ratio for a group that cannot be pruned (frozen or
            excluded), unreachable targets.
        TypeError: a subclassed model whose `call()` cannot be traced, or bad
            argument types.

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
    options = PlanOptions.from_kwargs(
        ratio=ratio,
        criterion=criterion,
        per_layer=per_layer,
        exclude=exclude,
        target_macs=target_macs,
        target_params=target_params,
        target_latency=target_latency,
        latency_table=latency_table,
        importance=importance,
        group_reduction=group_reduction,
        round_to=round_to,
        min_filters=min_filters,
        max_ratio=max_ratio,
        global_ranking=global_ranking,
        greedy=greedy,
        prune_norms=prune_norms,
    )
    if isinstance(verbose, (bool, np.bool_)):  # verbose=True, as Keras takes it
        verbose = int(verbose)
    verbose = check_int(verbose, "verbose", 0)
    return plan_with(
        model, options, data=data, scores=scores, within=within, verbose=verbose
    )


def plan_with(
    model: keras.Model,
    options: PlanOptions,
    *,
    data=None,
    scores=None,
    within: PruningPlan | None = None,
    ratio: float | None = None,
    share: float = 1.0,
    verbose: int = 0,
    warn: bool = True,
) -> PruningPlan:
    """`plan_pruning` with options already checked (`PlanOptions.from_kwargs`).

    `ratio` replaces `options.ratio` (a schedule's ratio at this event); a
    budget is spent for `share` in (0, 1] of the way from the unpruned model to
    it (a pruning event of a schedule that reaches it later). `warn=False` leaves
    out the warnings about the layers the trace freezes (a callback that plans at
    every event).
    """
    if within is not None:
        check_plan(within)
    if scores is None:
        options.check_data(data)
    options.check_importance_data(data)
    graph = graph_of(model, warn=warn)
    table, target_ms = options.latency
    target = None if target_ms is None else ("latency", "absolute", target_ms)
    if options.budget() is not None:
        target = options.budget()
    if table is not None:
        table.check_graph(graph)  # a table of another model is said first
        options.check_reachable()
    ratio = options.ratio if ratio is None else ratio
    return _Planner(model, graph, options, within, table).plan(
        ratio, target, share, data=data, scores=scores, verbose=verbose
    )


def groups_to_plan(
    graph, options: PlanOptions
) -> tuple[dict[int, str], dict[int, float]]:
    """`(frozen, per_group)` of `options` on a traced model: why each group that
    is not pruned is not (its structure, or `exclude`), and the `per_layer`
    ratio of each group named there. Raises a ValueError naming the layer when
    `per_layer` or `exclude` does not fit the model (an unknown name, a ratio
    for a group that cannot be pruned, a layer in both), or naming the group
    when the sensitivity curves given as `importance` lack it; no scores needed,
    so a callback can check its options when training begins."""
    frozen = {
        g.id: g.frozen
        for g in graph.groups
        if g.frozen and not (options.prune_norms and g.approximate)
    }
    for g, reason in graph.exclusions(options.exclude).items():
        frozen.setdefault(g, reason)
    per_layer = graph.resolve(options.per_layer, "per_layer")
    excluded = graph.resolve(options.exclude, "exclude")
    check_not_both(options.per_layer, options.exclude, {**per_layer, **excluded})
    per_group: dict[int, float] = {}
    for name, paths in per_layer.items():
        r = options.per_layer[name]
        for path in paths:
            try:
                g = graph.group_of(path).id
            except KeyError:
                raise ValueError(
                    f"`per_layer` names '{path}', which produces no prunable channels."
                ) from None
            if g in frozen and r > 0:
                raise ValueError(
                    f"`per_layer` names '{path}', whose channel group cannot be "
                    f"pruned: {frozen[g]}. Remove it from `per_layer` "
                    f"(or give it ratio 0). Received: per_layer['{name}']={r}"
                )
            per_group[g] = min(per_group.get(g, 1.0), r)
    curves = options.importance
    if curves is not None and not isinstance(curves, str):  # a SensitivityResult
        for g in graph.groups:  # every group a budget may move has its curve
            if g.id not in frozen and g.id not in per_group:
                curves.removal_costs(g.producers, g.width)
    return frozen, per_group


class _Planner:
    """One planning run on a traced graph (see `plan_pruning`)."""

    def __init__(self, model, graph: ChannelGraph, options: PlanOptions, within, table):
        self.model, self.graph, self.options = model, graph, options
        self.table = table
        self.rounds = {  # channels kept per group are a multiple of this
            g.id: table.group_step(g.id)
            if options.round_to == "auto"
            else options.round_to
            for g in graph.groups
        }
        self.frozen, self.per_group = groups_to_plan(graph, options)
        self.within = within
        self.prev_keep = None
        self.flags_within = None
        if within is not None:
            self.flags_within = within.keep_flags(graph)
            by_id = {g.id: g for g in within.groups}
            self.prev_keep = {g.id: list(by_id[g.id].keep) for g in graph.groups}

    # -- scores ---------------------------------------------------------------
    def group_scores(self, group, scores, flags=None) -> np.ndarray:
        contrib = []
        for path, channels in group.producers.items():
            if self.options.greedy:
                s = self._greedy_scores(path, flags)
            else:
                s = np.asarray(scores[path], dtype=np.float64)
            peak = np.max(np.abs(s)) if s.size else 0.0
            contrib.append((channels, s / peak if peak > 0 else s))
        return _reduce(contrib, group.width, self.options.group_reduction)

    def checked(self, scores, source: str) -> dict[str, np.ndarray]:
        """Every producer's scores, checked: present, one finite number per
        filter; shifted to >= 0 when signed (see `_non_negative`)."""
        if not isinstance(scores, Mapping):
            raise TypeError(
                "`scores` must be a dict of layer path -> one score per filter "
                f"(see score_filters). Received: {type(scores).__name__}"
            )
        result = {}
        for group in self.graph.groups:
            for path, channels in group.producers.items():
                if path not in scores:
                    raise ValueError(
                        f"{source} has no scores for layer '{path}': it needs one "
                        "array per producer of the model (see score_filters)."
                    )
                result[path] = _non_negative(
                    check_scores(scores[path], path, len(channels), source)
                )
        return result

    def _greedy_scores(self, path: str, flags) -> np.ndarray:
        if self.flags_within is not None:
            flags = flags & self.flags_within
        kept = None if self.within is None else self.within.kept_filters(path)
        fn = _criterion_fn(self.options.criterion)
        kernel = sliced_kernel(self.graph, path, flags, kept)
        source = f"Criterion '{self.options.criterion_name}'"
        s = check_scores(fn(kernel), path, kernel.shape[-1], source)
        s = _non_negative(s)
        if kept is None:
            return s
        width = len(self.graph.group_of(path).producers[path])
        full = np.full(width, float(s.min()) if s.size else 0.0)
        full[np.asarray(kept, dtype=np.int64)] = s
        return full

    # -- decisions ------------------------------------------------------------
    def decide(self, r: float, scores) -> tuple[dict, dict]:
        graph, o = self.graph, self.options
        keep, all_scores = {}, {}
        flags = np.ones(len(graph.elem_group), dtype=bool) if o.greedy else None
        for group in graph.groups:
            s = self.group_scores(group, scores, flags)
            all_scores[group.id] = s
            if group.id in self.frozen:
                keep[group.id] = list(range(group.width))
                continue
            gr = self.per_group.get(group.id, min(r, o.max_ratio))
            n = _n_keep(group.width, gr, self.rounds[group.id], o.min_filters)
            keep[group.id] = self._choose(group.id, s, n)
            if o.greedy:
                mask = keep_mask(group.width, keep[group.id])
                sel = graph.elem_group == group.id
                flags[sel] = mask[graph.elem_channel[sel]]
        if o.global_ranking and r > 0:
            keep = _global_keep(
                graph, self.frozen, all_scores, self.per_group, r, self.rounds,
                o.min_filters, o.max_ratio,
            )  # fmt: skip
            keep = {g: self._choose(g, all_scores[g], len(k)) for g, k in keep.items()}
        return keep, all_scores

    def _choose(self, group_id: int, s: np.ndarray, n: int) -> list[int]:
        """The `n` best channels, among those the previous plan kept."""
        if self.prev_keep is None:
            return _top(s, n)
        candidates = np.asarray(self.prev_keep[group_id], dtype=np.int64)
        n = min(n, len(candidates))
        order = np.argsort(-s[candidates], kind="stable")[:n]
        return sorted(int(c) for c in candidates[order])

    def plan(self, ratio, target, share, *, data, scores, verbose) -> PruningPlan:
        o = self.options
        if scores is not None:
            scores = self.checked(scores, "`scores`")
        elif not o.greedy:
            scores = score_filters(
                self.model, o.criterion, data, within=self.within, verbose=verbose
            )
            scores = self.checked(scores, f"Criterion '{o.criterion_name}'")
        if target is not None and target[0] == "latency":
            full = self.table.predict({g.id: g.width for g in self.graph.groups})
            target_ms = full - share * (full - target[2])
            importance = None
            if o.importance == "taylor":
                importance = self._importance(data, verbose)
            keep, all_scores = self._latency_keep(target_ms, scores, importance)
            prunable = [g for g in self.graph.groups if g.id not in self.frozen]
            kept = sum(len(keep[g.id]) for g in prunable)
            ratio = 1.0 - kept / max(1, sum(g.width for g in prunable))
        else:
            if target is not None:
                ratio = self._solve_ratio(*target, scores, share)
            elif ratio > 0:
                ratio = min(ratio, o.max_ratio)  # what every group loses
                self._check_removable()
            keep, all_scores = self.decide(ratio, scores)
        groups = [
            GroupPlan(
                id=g.id,
                width=g.width,
                producers={p: c.tolist() for p, c in g.producers.items()},
                members=list(g.members),
                keep=keep[g.id],
                scores=[float(v) for v in all_scores[g.id]],
                frozen=self.frozen.get(g.id),
            )
            for g in self.graph.groups
        ]
        meta = {
            "criterion": o.criterion_name,
            "ratio": round(ratio, 6),
            "group_reduction": o.group_reduction,
        }
        if o.global_ranking:
            meta["global_ranking"] = True
        if o.max_ratio < 1.0:
            meta["max_ratio"] = o.max_ratio
        if o.importance is not None and target is not None:
            meta["importance"] = importance_name(o.importance)
        if self.table is not None:
            if target is not None and target[0] == "latency":
                meta["target_latency_ms"] = round(target_ms, 6)
            predicted = self.table.predict({g: len(k) for g, k in keep.items()})
            meta["predicted_latency_ms"] = round(predicted, 6)
            meta["latency_table"] = self.table.describe()
        if o.greedy:
            meta["greedy"] = True
        approximate = [
            g.id
            for g in self.graph.groups
            if g.approximate and g.id not in self.frozen and len(keep[g.id]) < g.width
        ]
        if self.graph.unhandled:  # reported: their weights are never pruned
            meta["unhandled_layers"] = [
                f"{path} ({cls})" for path, cls in self.graph.unhandled.items()
            ]
        if approximate:  # the pruned model is not the masked one: say so
            meta["prune_norms"] = True
            meta["approximate_groups"] = approximate
        meta.update(self._predicted(keep))
        plan = PruningPlan(groups, self.model.name, meta)
        return plan

    def _check_removable(self) -> None:
        """A positive ratio that `round_to`/`min_filters` make a no-op is said
        (a warning), not a plan that silently removes nothing."""
        o = self.options
        prunable = [g for g in self.graph.groups if g.id not in self.frozen]
        if not prunable or any(
            _n_keep(g.width, 0.999, self.rounds[g.id], o.min_filters) < g.width
            for g in prunable
        ):
            return
        if all(_n_keep(g.width, 0.999, 1, 1) == g.width for g in prunable):
            return  # single-channel groups: nothing to remove whatever the options
        widest = max(g.width for g in prunable)
        warnings.warn(
            f"Nothing is removed: every prunable group has at most {widest} "
            f"channels, and `round_to={o.round_to!r}` / `min_filters="
            f"{o.min_filters}` keep all of them. Use a `round_to` and `min_filters` "
            f"below {widest}.",
            FilterPruneWarning,
            stacklevel=4,
        )

    def _predicted(self, keep) -> dict[str, list[int]]:
        """`{"macs": [before, after], "params": [before, after]}` of the plan,
        for its summary. Informational: what cannot be counted (an input size
        that is not fixed, a layer whose config cannot be written) is left out
        instead of failing the plan."""
        graph = self.graph
        masks = {g.id: keep_mask(g.width, keep[g.id]) for g in graph.groups}
        flags, full = graph.element_keep(masks), graph.element_keep({})
        result = {}
        try:
            params = cost_model(graph, "params")
            result["params"] = [round(params(full)), round(params(flags))]
            result["macs"] = [
                int(graph.profile.total_macs),
                int(pruned_macs(graph, flags)),
            ]
        except (ValueError, NotImplementedError, TypeError):
            pass
        return result

    def _latency_keep(
        self, target_ms: float, scores, importance=None
    ) -> tuple[dict, dict]:
        """Widths from the latency table's greedy descent (see
        `keras_filterprune.latency.budget`); frozen and `per_layer` groups are
        decided as usual and do not move. With `importance` (group id → one
        value per channel, comparable across groups), a move is priced by the
        importance of the channels the criterion's ranking removes; with a
        `SensitivityResult` as the option, by the drop of the group's curve."""
        curves = self.options.importance
        if isinstance(curves, str):
            curves = None
        elif curves is not None and curves.criterion != self.options.criterion_name:
            warnings.warn(
                f"The sensitivity curves given as `importance` were measured with "
                f"criterion '{curves.criterion}', and this plan ranks channels with "
                f"'{self.options.criterion_name}': the curves priced other "
                "channels. Analyse with the plan's criterion.",
                FilterPruneWarning,
                stacklevel=2,
            )
        keep, all_scores = self.decide(0.0, scores)
        movable = {}
        for g in self.graph.groups:
            if g.id not in self.frozen and g.id not in self.per_group:
                candidates = np.asarray(
                    keep[g.id] if self.prev_keep is None else self.prev_keep[g.id],
                    np.int64,
                )
                if curves is not None:  # costs by position in keeping order
                    costs = curves.removal_costs(g.producers, g.width)
                    movable[g.id] = costs[: len(candidates)]
                elif importance is None:
                    movable[g.id] = all_scores[g.id][candidates]
                else:  # in the criterion's order, best first
                    order = np.argsort(-all_scores[g.id][candidates], kind="stable")
                    movable[g.id] = importance[g.id][candidates[order]]
        counts = latency_counts(
            self.table, target_ms, {g: len(k) for g, k in keep.items()}, movable,
            self.rounds, {g: self._min_keep(g) for g in movable},
            ranked=importance is not None or curves is not None,
        )  # fmt: skip
        keep = {
            g: self._choose(g, all_scores[g], counts[g]) if g in movable else k
            for g, k in keep.items()
        }
        return keep, all_scores

    def _min_keep(self, group_id: int) -> int:
        """The fewest channels a budget may leave in a group (`min_filters`,
        `max_ratio`, rounded up to a multiple of `round_to`)."""
        o = self.options
        width = self.graph.groups[group_id].width
        return _n_keep(width, o.max_ratio, self.rounds[group_id], o.min_filters)

    def _importance(self, data, verbose) -> dict[int, np.ndarray]:
        """Group id → each channel's first-order Taylor estimate of the loss
        increase when it is removed: per producer, |Σ over positions of
        activation × ∂loss/∂activation| averaged over examples (the `taylor`
        criterion averages over positions: times the number of positions),
        summed over the group's producers."""
        taylor = score_filters(
            self.model, "taylor", data, within=self.within, verbose=verbose
        )
        walk = self.graph.walk
        outputs = {}
        for call in walk.calls:
            outputs.setdefault(call.path, call.outputs[0] if call.outputs else None)
        result = {}
        for group in self.graph.groups:
            total = np.zeros(group.width)
            for path, channels in group.producers.items():
                shape = walk.shapes.get(outputs.get(path)) or ()
                positions = math.prod(d or 1 for d in tuple(shape)[1:-1])
                total[np.asarray(channels, np.int64)] += (
                    np.asarray(taylor[path], np.float64) * positions
                )
            result[group.id] = total
        return result

    def _solve_ratio(self, target, kind, goal, scores, share=1.0) -> float:
        cost = cost_model(self.graph, target)
        full = cost(self.graph.element_keep({}))
        if kind == "fraction":  # of the unpruned model
            goal *= full
        if share < 1.0 and math.isfinite(goal):  # part of the way there
            goal = full - share * (full - goal)

        def cost_at(r: float) -> float:
            keep, _ = self.decide(r, scores)
            masks = {g.id: keep_mask(g.width, keep[g.id]) for g in self.graph.groups}
            return cost(self.graph.element_keep(masks))

        if cost_at(0.0) <= goal:
            return 0.0
        hi = 0.99
        if cost_at(hi) > goal:
            raise ValueError(
                f"`target_{target}`={goal:.4g} cannot be reached: pruning every "
                "prunable group as far as `min_filters` and `max_ratio` allow "
                f"(99% at most) leaves {cost_at(hi):.4g} {target} (frozen groups "
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


def _non_negative(s: np.ndarray) -> np.ndarray:
    """Scores shifted by their minimum when any is negative (the ranking is
    unchanged), so that no group reduction ('l2', 'sum') turns it around."""
    return s - s.min() if s.size and s.min() < 0 else s


def _criterion_fn(criterion):
    from keras_filterprune import criteria as criteria_lib

    return criteria_lib.get(criterion)


# ---------------------------------------------------------------------------
# MAC estimates
# ---------------------------------------------------------------------------


@graph_argument_removed
def estimate_macs(model: keras.Model, plan: PruningPlan) -> int:
    """MACs per example of the model `apply_plan(model, plan)` would build,
    counted from the traced graph without building it.

    Equals `count_macs(apply_plan(model, plan))`.

    Raises:
        ValueError: the plan does not fit the model, or its input size is not
            fixed (see `profile_model`).
    """
    check_plan(plan)
    graph = graph_of(model)
    return pruned_macs(graph, plan.keep_flags(graph))


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


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


def _global_keep(
    graph, frozen, all_scores, per_group_ratio, r, rounds, min_filters, max_ratio
):
    entries = []
    keep = {}
    for group in graph.groups:
        if group.id in frozen or group.id in per_group_ratio:
            n = group.width
            if group.id not in frozen:
                n = _n_keep(
                    group.width,
                    per_group_ratio[group.id],
                    rounds[group.id],
                    min_filters,
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
        ratio = min(1.0 - n / group.width, max_ratio)
        n = _n_keep(group.width, ratio, rounds[group.id], min_filters)
        keep[group.id] = _top(s, n)
    return keep
