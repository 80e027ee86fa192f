"""Closing the loop on a latency target: plan with the table, then measure.

A `LatencyTable` predicts a pruned model's latency from layers timed alone, and the
planner spends that prediction where the table says time is saved: where the table
is wrong (a block size probed on a noisy machine, layers that run faster or slower
inside the whole model than alone), the plan misses its target, by 10–20 % on the
models of `benchmarks/bench_latency_plan.py`. `calibrate_latency_plan` does what
NetAdapt does with its proposals: it builds the planned model, times it next to the
unpruned one in the table's runtime and settings, and plans again with the target
corrected by the measured error, until the measured latency ratio is within a
tolerance of the request.
"""

from __future__ import annotations

import math
import os
from typing import Any

from keras_filterprune._deprecation import graph_argument_removed
from keras_filterprune._messages import say
from keras_filterprune._validation import check_int
from keras_filterprune.graph import graph_of
from keras_filterprune.latency.table import LatencyTable, parse_latency_target
from keras_filterprune.plan import plan_pruning
from keras_filterprune.pruning_plan import PruningPlan
from keras_filterprune.surgery import apply_plan

__all__ = ["calibrate_latency_plan"]


def _clip(factor: float) -> float:
    return min(2.0, max(0.5, factor))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _spread(timing) -> float | None:
    """The relative half-width of a timing's interval (None without one)."""
    rel = timing.relative_ci()
    return round(rel, 6) if math.isfinite(rel) else None


@graph_argument_removed
def calibrate_latency_plan(
    model,
    target_latency: float | str,
    latency_table: LatencyTable | str,
    *,
    iterations: int = 3,
    tolerance: float = 0.05,
    confirmations: int = 1,
    rounds: int = 7,
    verbose: int = 1,
    min_round_ms: float = 20.0,
    target_ci: float | None = 0.02,
    max_seconds: float | None = 120.0,
    **plan_options: Any,
) -> PruningPlan:
    """Plans pruning to a latency target, checked by timing the pruned model.

    Each iteration calls `plan_pruning(model, target_latency=t,
    latency_table=latency_table, **plan_options)`, builds the pruned model, and
    times it and the unpruned model in LiteRT with the table's settings
    (threads, quantization; interleaved rounds of at least `min_round_ms` each,
    until the 95 % interval of each median round is within `±target_ci` of it,
    as `benchmark_tflite` times). The measured
    ratio `pruned / unpruned` is compared with the requested ratio `r`; if it is
    off by more than `tolerance`, the next iteration asks the planner for
    `r · predicted / measured`: the table's error on the last plan is taken to
    hold near it (each factor limited to [0.5, 2], so one noisy timing cannot send
    the search away; a plan timed before is not timed again, and the correction
    is applied once more so that coarse tables still move). A plan measured
    within `tolerance` is timed `confirmations` more times, each with new
    interpreters, before it is accepted, and its ratio is the mean of its
    timings: of several noisy candidates, the one that measured closest to the
    request was likely measured too favourably, and a separate timing of it
    alone would miss. The plan whose mean measured ratio is closest to the
    request is returned. Run it where the table was measured, with nothing else
    running: it converts up to `iterations` pruned models and times them (seconds
    to a minute each).

    Args:
        model: A built Functional or Sequential `keras.Model` (only read).
        target_latency: As in `plan_pruning`: milliseconds, or `"12ms"`, or
            `"50%"` of the unpruned latency. The ratio to the unpruned latency is
            what is checked (both are timed in the same run).
        latency_table: The model's `LatencyTable` (or the path of its JSON).
        iterations: `int`. Pruned models to time at most. Defaults to `3`.
        tolerance: `float`. Accepted relative error of the measured ratio, e.g.
            `0.05` for ±5 %. Defaults to `0.05`.
        confirmations: `int`. Separate timings of a plan that measured within
            `tolerance`, before it is accepted (`0`: accept on one timing).
            Defaults to `1`.
        rounds: `int`. Timing rounds per iteration, at least. Defaults to `7`.
        verbose: `int`. `1` prints one line per iteration. Defaults to `1`.
        min_round_ms: `float`. Milliseconds each timing round lasts, at least
            (a sub-millisecond model is called many times per round). Defaults
            to `20.0`.
        target_ci: `float` or `None`. Relative half-width of the 95 % interval
            of each timed median to reach (`None`: exactly `rounds` rounds).
            Defaults to `0.02`.
        max_seconds: `float` or `None`. Time limit of each timing. Defaults to
            `120.0`.
        **plan_options: Other arguments of `plan_pruning` (`criterion`, `scores`,
            `data`, `exclude`, `per_layer`, `round_to`, …).

    Returns:
        A `PruningPlan`. Its `meta` adds `measured_latency_ratio` (the mean of
        `measured_latency_ratios`, one per timing of this plan),
        `measured_latency_ms` and `measured_base_ms` (the pruned and the
        unpruned model, means over those timings; their quotient need not equal
        the mean ratio), `measured_latency_ci` (the widest relative half-widths
        of the 95 % intervals of those medians, `[pruned, unpruned]`; `None`
        where a timing had no interval) and
        `latency_iterations` (requested, predicted and measured ratio of every
        planner call; `timed` is false when the plan repeated an earlier one,
        whose measurements are reused; `timings` counts them).

    Raises:
        ValueError: bad arguments, a corrupt `latency_table` ("Corrupt latency
            table: <field>: <problem>"), a table measured on another model (the
            message names the first channel group or layer that differs, before
            any target is judged), or any error of `plan_pruning`.
        TypeError: `latency_table` is neither a `LatencyTable` nor a path.
        RuntimeError: a backend other than TensorFlow.
        ImportError: LiteRT is not installed.

    Example:

    Not run as a doctest: it converts and times models (a minute or more).

    >>> import keras
    >>> from keras_filterprune import apply_plan
    >>> from keras_filterprune.latency import (
    ...     calibrate_latency_plan, measure_latency_table)
    >>> model = keras.Sequential([
    ...     keras.Input((32, 32, 3)), keras.layers.Conv2D(64, 3),
    ...     keras.layers.Conv2D(10, 1)])
    >>> table = measure_latency_table(model)  # doctest: +SKIP
    >>> plan = calibrate_latency_plan(
    ...     model, "50%", table, criterion="l1_norm")  # doctest: +SKIP
    >>> ratio = plan.meta["measured_latency_ratio"]  # doctest: +SKIP
    >>> pruned = apply_plan(model, plan)  # doctest: +SKIP

    `ratio`, the pruned model's measured latency over the unpruned one's, is
    within 5 % of 0.5, or the closest of the plans timed.
    """
    import keras

    from keras_filterprune.latency import measure as lm
    from keras_filterprune.runtime.litert import interpreter_class
    from keras_filterprune.runtime.timing import check_adaptive_args

    iterations = check_int(iterations, "iterations", 1)
    rounds = check_int(rounds, "rounds", 1)
    confirmations = check_int(confirmations, "confirmations", 0)
    check_adaptive_args(min_round_ms, target_ci, max_seconds)
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, (int, float))
        or not 0 < tolerance < 1
    ):
        raise ValueError(
            f"`tolerance` must be a number in (0, 1), e.g. 0.05 for ±5 %. "
            f"Received: tolerance={tolerance!r}"
        )
    if isinstance(latency_table, (str, os.PathLike)):
        latency_table = LatencyTable.load(latency_table)
    if not isinstance(latency_table, LatencyTable):
        raise TypeError(
            "`latency_table` must be a LatencyTable or the path of its JSON file "
            "(see `measure_latency_table`). Received: "
            f"latency_table={type(latency_table).__name__}"
        )
    latency_table.check()  # its attributes may have changed since it was made
    requested = parse_latency_target(target_latency, latency_table) / (
        latency_table.model_ms
    )
    # The table must describe this model before its predictions judge the
    # target: a table of another model would read as an unreachable target.
    latency_table.check_graph(graph_of(model))  # traced once, remembered
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "calibrate_latency_plan converts the pruned models to TFLite with "
            "TensorFlow: run it with KERAS_BACKEND=tensorflow, or plan with "
            "`plan_pruning(target_latency=..., latency_table=...)` alone. Current "
            f"backend: {keras.backend.backend()!r}"
        )
    interpreter_class()
    threads = int(latency_table.settings.get("num_threads", 1))
    quantization = latency_table.settings.get("quantization")
    base = None  # converted after the first plan: bad options fail fast

    def time_plan(entry: dict) -> float:
        """Times `entry`'s model next to the unpruned one with new interpreters;
        returns the mean of its measured ratios so far."""
        timed = lm.time_flatbuffers(
            [base, entry["flatbuffer"]],
            threads,
            rounds,
            10,
            min_round_ms=min_round_ms,
            target_ci=target_ci,
            max_seconds=max_seconds,
            drop_converged=False,  # a ratio: both timed in the same rounds
        )
        base_ms, pruned_ms = (t.ci()[0] * 1e3 for t in timed)
        entry["ratios"].append(pruned_ms / base_ms)
        entry["pruned_ms"].append(pruned_ms)
        entry["base_ms"].append(base_ms)
        spreads = [_spread(timed[1]), _spread(timed[0])]
        entry["spreads"] = [  # the widest of its timings
            None if a is None or b is None else max(a, b)
            for a, b in zip(entry.get("spreads", spreads), spreads)
        ]
        return _mean(entry["ratios"])

    def within(ratio: float) -> bool:
        return abs(ratio / requested - 1) <= tolerance

    ask, tried, seen = requested, [], {}
    asked = {round(ask, 6)}
    for _ in range(4 * iterations):  # planner calls; a repeated plan is not timed
        try:
            plan = plan_pruning(
                model,
                target_latency=ask * latency_table.model_ms,
                latency_table=latency_table,
                **plan_options,
            )
        except ValueError:
            if not seen:  # the request itself (or an option) is the problem
                raise
            break  # a corrected target below what the table can reach
        widths = tuple(len(g.keep) for g in plan.groups)
        repeat = widths in seen
        if not repeat:
            pruned = apply_plan(model, plan)
            if base is None:
                base = lm.convert(model, quantization)
            seen[widths] = {
                "plan": plan,
                "flatbuffer": lm.convert(pruned, quantization),
                "ratios": [],
                "pruned_ms": [],
                "base_ms": [],
            }
            time_plan(seen[widths])
        entry = seen[widths]
        measured = _mean(entry["ratios"])
        # A plan is accepted on more than the timing that made it look right: of
        # several noisy candidates, the one measured closest to the target is
        # likely measured too favourably (NetAdapt's proposals meet the same).
        while within(measured) and len(entry["ratios"]) <= confirmations:
            measured = time_plan(entry)
        predicted = latency_table.latency_ms(plan) / latency_table.model_ms
        tried.append(
            {
                "requested": round(ask, 6),
                "predicted": round(predicted, 6),
                "measured": round(measured, 6),
                "timed": not repeat,
                "timings": len(entry["ratios"]),
            }
        )
        if verbose and not repeat:
            say(
                f"calibrate_latency_plan: asked {ask:.3f}, predicted "
                f"{predicted:.3f}, measured {measured:.3f} of the unpruned "
                f"latency (target {requested:.3f}; "
                f"{len(entry['ratios'])} timing(s))"
            )
        if within(measured) or len(seen) >= iterations:
            break
        # The table's error on this plan, `measured / predicted`, is assumed to
        # hold near it; a plan seen before means the correction did not move the
        # planner past a step of the table, so it is applied once more. Factors
        # are limited to [0.5, 2]: one noisy timing cannot send the search away.
        if repeat:
            new_ask = ask * _clip(requested / measured)
        else:
            new_ask = requested * _clip(predicted / measured)
        new_ask = round(min(1.0, new_ask), 6)
        if new_ask in asked or not math.isfinite(new_ask) or new_ask <= 0:
            break  # a cycle: nothing new to learn
        ask = new_ask
        asked.add(ask)
    best = min(seen.values(), key=lambda e: abs(_mean(e["ratios"]) / requested - 1))
    plan = best["plan"]
    plan.meta.update(
        measured_latency_ratio=round(_mean(best["ratios"]), 6),
        measured_latency_ratios=[round(r, 6) for r in best["ratios"]],
        measured_latency_ms=round(_mean(best["pruned_ms"]), 6),
        measured_base_ms=round(_mean(best["base_ms"]), 6),
        measured_latency_ci=best["spreads"],
        latency_iterations=tried,
    )
    return plan
