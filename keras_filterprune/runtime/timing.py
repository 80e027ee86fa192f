"""Timing calls: warm-up, then timed runs with the garbage collector off,
one model after the other or interleaved (A B, B A, …) so that machine noise
hits every model alike. Shared by the benchmarks, `compare_models` and latency
measuring."""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence

__all__ = ["check_timing_args", "time_calls"]


def check_timing_args(runs: int, warmup: int, batch_size: int) -> None:
    """Raises a ValueError naming the first of the arguments that is not an int
    in range (`runs` and `batch_size` >= 1, `warmup` >= 0)."""
    for name, value, low in (
        ("runs", runs, 1),
        ("warmup", warmup, 0),
        ("batch_size", batch_size, 1),
    ):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"`{name}` must be an int >= {low}. Received: {value!r}")


def time_calls(calls: Sequence, runs: int, warmup: int, interleave: bool):
    """Times each call `runs` times; interleaved runs alternate A B, B A, …"""
    for call in calls:
        for _ in range(warmup):
            call()
    times: list[list[float]] = [[] for _ in calls]
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        if interleave:
            for i in range(runs):
                order = range(len(calls)) if i % 2 == 0 else reversed(range(len(calls)))
                for j in order:
                    t0 = time.perf_counter()
                    calls[j]()
                    times[j].append(time.perf_counter() - t0)
        else:
            for j, call in enumerate(calls):
                for _ in range(runs):
                    t0 = time.perf_counter()
                    call()
                    times[j].append(time.perf_counter() - t0)
    finally:
        if gc_was_enabled:
            gc.enable()
    return times
