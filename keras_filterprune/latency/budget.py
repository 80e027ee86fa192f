"""Spending a latency budget: how many channels each group keeps so that the
predicted latency meets a target while removing the least score.

Used by `plan_pruning(target_latency=...)`; the predictions come from a
`LatencyTable`. A greedy descent in the manner of NetAdapt: every group starts at
its full width, and the move that removes the least normalised score per
millisecond saved is taken until the target is met. A move goes down to the next
width that saves time, so widths land on the block boundaries of the kernels
(removing 8 of 64 filters where XNNPACK computes blocks of 32 saves nothing and is
never chosen for latency).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from keras_filterprune.latency.table import LatencyTable, parse_latency_target

__all__ = ["check_latency_args", "check_reachable", "latency_counts"]

MAX_MOVES_PER_GROUP = 64
_NO_SAVING = 1e-9


def check_latency_args(
    target_latency: Any, latency_table: Any, options, other_targets: Mapping
) -> tuple[LatencyTable | None, float | None]:
    """`plan_pruning`'s latency arguments, checked: the table (loaded when a
    path, validated when an object) and the target in ms (or None).

    Whether the target can be reached is `check_reachable`'s question, asked
    once the table is known to fit the model.

    Raises:
        ValueError: a corrupt table or a bad target.
        TypeError: `latency_table` is neither a table nor a path.
    """
    named = [k for k, v in other_targets.items() if v is not None]
    if target_latency is not None:
        named.append("target_latency")
    if len(named) > 1:
        raise ValueError(
            "Pass at most one of `target_macs`, `target_params` and "
            f"`target_latency`. Received: {', '.join(named)}"
        )
    table = latency_table
    if isinstance(latency_table, (str, os.PathLike)):
        table = LatencyTable.load(latency_table)
    elif isinstance(latency_table, LatencyTable):
        latency_table.check()  # its attributes may have changed since it was made
    elif latency_table is not None:
        raise TypeError(
            "`latency_table` must be a LatencyTable or the path of one saved as "
            f"JSON. Received: {type(latency_table).__name__}"
        )
    if target_latency is None:
        return table, None
    if table is None:
        raise ValueError(
            "`target_latency` needs `latency_table=`: a table measured with "
            "`measure_latency_table(model, ...)` (or the path of its JSON)."
        )
    if options.global_ranking or options.greedy:
        raise ValueError(
            "`target_latency` chooses each group's width itself: it cannot be "
            "combined with `global_ranking=True` or `greedy=True`."
        )
    return table, parse_latency_target(target_latency, table)


def check_reachable(
    table: LatencyTable, target_ms: float, min_filters: int, max_ratio: float = 1.0
) -> None:
    """Raises a ValueError saying the lowest latency the table predicts when
    `target_ms` is below it (every channel group down to `min_filters`, or to
    the fraction `max_ratio` leaves).

    A property of the table alone: where the model is known, check that the
    table fits it first (`LatencyTable.check_graph`), or a table of another
    model is reported as an unreachable target.
    """
    lowest = table.min_latency_ms(min_filters, max_ratio)
    if target_ms < lowest * (1 - 1e-9):
        raise ValueError(
            f"`target_latency`={target_ms:.4g} ms cannot be reached with this "
            "latency table: with every channel group down to `min_filters`="
            f"{min_filters} channels (and `max_ratio`={max_ratio:g} of it removed at "
            f"most), the model is predicted at "
            f"{lowest:.4g} ms at best ({lowest / table.model_ms:.1%} of the "
            f"unpruned {table.model_ms:.4g} ms)."
        )


def latency_counts(
    table: LatencyTable,
    target_ms: float,
    start: Mapping[int, int],
    movable: Mapping[int, np.ndarray],
    steps: Mapping[int, int],
    floors: Mapping[int, int],
    *,
    ranked: bool = False,
) -> dict[int, int]:
    """Channels to keep per group for a predicted latency <= `target_ms`.

    Args:
        table: The latency table of the model.
        target_ms: The latency target.
        start: Group id → channels kept before any move (every group).
        movable: Group id → the scores of the channels that group may lose
            (normalised per group; the highest are kept), or with `ranked`,
            each channel's cost of removal (e.g. its Taylor estimate of the loss
            increase) in the order channels are kept (the last goes first).
        steps: Group id → multiple of channels to keep.
        floors: Group id → never keep fewer channels (`min_filters` and
            `max_ratio`, rounded to the group's step).
        ranked: `movable` is in keeping order already (not sorted by value).

    Raises:
        ValueError: the target cannot be met (the message says the lowest
            latency reachable).
    """
    counts = {g: int(n) for g, n in start.items()}
    by_group = table.unit_groups()
    unit_ms = [table.unit_latency(u, counts) for u in table.units]
    total = sum(unit_ms)
    goal = target_ms / table.model_ms * table.full_units_ms
    # Kept scores, best first; cumulative sums price the channels a move removes.
    order = {
        g: np.asarray(s, np.float64)
        if ranked
        else np.sort(np.asarray(s, np.float64))[::-1]
        for g, s in movable.items()
    }
    prefix = {g: np.concatenate([[0.0], np.cumsum(s)]) for g, s in order.items()}
    stride = {  # a multiple of the step; at most ~64 moves per group
        g: steps[g] * _ceil(_ceil(table.groups[g], MAX_MOVES_PER_GROUP), steps[g])
        for g in movable
    }
    floor = {g: min(counts[g], floors[g]) for g in movable}

    def move(g: int) -> tuple[float, int, dict[int, float]] | None:
        """(score per ms saved, new width, new unit latencies) of group g's next
        move that saves time, or None."""
        n = counts[g]
        new = n
        while new > floor[g]:
            new = max(floor[g], (new - 1) // stride[g] * stride[g])
            trial = {**counts, g: new}
            changed = {
                i: table.unit_latency(table.units[i], trial) for i in by_group[g]
            }
            saved = sum(unit_ms[i] - ms for i, ms in changed.items())
            if saved > _NO_SAVING:
                cost = prefix[g][n] - prefix[g][new]
                return cost / saved, new, changed
        return None

    moves = {g: move(g) for g in movable}
    while total > goal * (1 + 1e-9):
        candidates = [(m[0], g) for g, m in moves.items() if m is not None]
        if not candidates:
            reached = table.model_ms * total / table.full_units_ms
            raise ValueError(
                f"`target_latency`={target_ms:.4g} ms cannot be reached: pruning "
                f"every prunable group down to its minimum is predicted at "
                f"{reached:.4g} ms (frozen and excluded groups, `per_layer` "
                "ratios, `min_filters`, `max_ratio` and the layers the table does "
                "not time keep the rest)."
            )
        _, g = min(candidates)
        _, counts[g], changed = moves[g]
        for i, ms in changed.items():
            total += ms - unit_ms[i]
            unit_ms[i] = ms
        neighbours = {h for i in changed for h in _groups_of(table.units[i])}
        for h in neighbours | {g}:
            if h in movable:
                moves[h] = move(h)
    return counts


def _groups_of(unit) -> set[int]:
    return {g for axis in ("in", "out") for g in unit[axis]["groups"]}


def _ceil(a: int, b: int) -> int:
    return -(-a // b)
