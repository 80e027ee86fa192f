"""Timing calls until the estimate is stable. Shared by the benchmarks,
`compare_models` and latency measuring.

A *round* times each call back to back for at least `min_round_s` (how many
calls that takes is chosen from the warm-up calls: a 0.4 ms model is called 50
times per 20 ms round, so the clock's resolution and the cost of reading it do
not matter), and its sample is the mean time per call. Rounds alternate the
order of the calls (A B, B A, …) when interleaved, so that machine noise hits
every call alike. Timing stops when, for every call, at least `min_rounds` rounds
are done and the 95 % confidence interval of the median round sample lies within
`±target_ci` of that median (`median_ci`: a distribution-free interval from order
statistics, which a burst of noise in a few rounds does not widen); or when
`max_rounds` rounds are done or `max_seconds` have passed (then the estimate is
reported as not converged, with its interval). The garbage collector is off
while timing.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import time
from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "MIN_CI_ROUNDS",
    "Timing",
    "check_timing_args",
    "check_adaptive_args",
    "median_ci",
    "relative_halfwidth",
    "time_rounds",
]

MIN_CI_ROUNDS = 6
"""The fewest samples a 95 % interval of the median can be read from (below
that, even the smallest and largest sample do not cover it with 95 %)."""
MAX_ROUNDS = 200


def check_timing_args(runs: int, warmup: int, batch_size: int) -> None:
    """Raises a ValueError naming the first of the arguments that is not an int
    in range (`runs` and `batch_size` >= 1, `warmup` >= 0)."""
    for name, value, low in (
        ("runs", runs, 1),
        ("warmup", warmup, 0),
        ("batch_size", batch_size, 1),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"`{name}` must be an int >= {low}. Received: {value!r}")


def check_adaptive_args(
    min_round_ms: float, target_ci: float | None, max_seconds: float | None
) -> None:
    """Raises a ValueError naming the first adaptive-timing argument out of
    range: `min_round_ms` a number >= 0, `target_ci` `None` or in (0, 1),
    `max_seconds` `None` or > 0."""

    def number(value) -> bool:
        return (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
        )

    if not number(min_round_ms) or min_round_ms < 0:
        raise ValueError(
            "`min_round_ms` must be a number of milliseconds >= 0. "
            f"Received: min_round_ms={min_round_ms!r}"
        )
    if target_ci is not None and (not number(target_ci) or not 0 < target_ci < 1):
        raise ValueError(
            "`target_ci` must be None (a fixed number of runs) or a relative "
            "half-width in (0, 1), e.g. 0.02 for ±2 %. "
            f"Received: target_ci={target_ci!r}"
        )
    if max_seconds is not None and (not number(max_seconds) or max_seconds <= 0):
        raise ValueError(
            "`max_seconds` must be None (no time limit) or a number of seconds "
            f"> 0. Received: max_seconds={max_seconds!r}"
        )


def median_ci(
    samples: Sequence[float], confidence: float = 0.95
) -> tuple[float, float, float]:
    """`(median, low, high)`: the median of `samples` and a distribution-free
    `confidence` interval of the population median, from order statistics (the
    widest ranks `j`, `n + 1 - j` with P(Binomial(n, 1/2) < j) <= (1 - c) / 2).

    With fewer samples than that needs (6 at 95 %), the bounds are infinite.
    """
    x = np.sort(np.asarray(samples, dtype=np.float64))
    n = len(x)
    if n == 0:
        raise ValueError("`samples` must not be empty.")
    median = float(np.median(x))
    tail = (1 - confidence) / 2
    # j = the number of k with P(X <= k) <= tail, X ~ Binomial(n, 1/2): ranks
    # 1..j lie below the median with probability <= tail. Exact integers.
    j, below, total = 0, 0, 2**n
    while j < n:
        below += math.comb(n, j)
        if below / total > tail:
            break
        j += 1
    if j == 0:
        return median, -math.inf, math.inf
    return median, float(x[j - 1]), float(x[n - j])


def relative_halfwidth(median: float, low: float, high: float) -> float:
    """The larger distance from `median` to a bound of its interval, relative to
    `median` (infinite without an interval)."""
    if not (math.isfinite(low) and math.isfinite(high)) or median <= 0:
        return math.inf
    return max(median - low, high - median) / median


@dataclasses.dataclass
class Timing:
    """How one call was timed (times in seconds).

    Attributes:
        rounds: `list[float]`. Mean time per call of each round, in order.
        calls_per_round: `int`. Calls timed back to back in each round.
        converged: `bool`. The interval met `target_ci` (always `True` when
            timing a fixed number of runs).
    """

    rounds: list[float]
    calls_per_round: int
    converged: bool = True

    @property
    def runs(self) -> int:
        """Timed calls in all."""
        return len(self.rounds) * self.calls_per_round

    def ci(self) -> tuple[float, float, float]:
        """`median_ci` of the rounds."""
        return median_ci(self.rounds)

    def relative_ci(self) -> float:
        """The interval's half-width relative to the median (`inf` without
        one)."""
        return relative_halfwidth(*self.ci())


def _probe(call: Callable, warmup: int, clock: Callable[[], float]) -> float:
    """Seconds per call: the median of the warm-up calls after the first (which
    may compile or allocate), at least one of them."""
    call()
    times = []
    for _ in range(max(warmup - 1, 1)):
        t0 = clock()
        call()
        times.append(clock() - t0)
    return float(np.median(times))


def time_rounds(
    calls: Sequence[Callable],
    *,
    runs: int = 1,
    warmup: int = 1,
    interleave: bool = True,
    min_rounds: int = 1,
    min_round_s: float = 0.0,
    target_ci: float | None = None,
    max_rounds: int = MAX_ROUNDS,
    max_seconds: float | None = None,
    drop_converged: bool = False,
    on_round: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[Timing]:
    """Times each call in rounds (see the module's docstring) and returns one
    `Timing` per call.

    Args:
        calls: Callables without arguments.
        runs: Timed calls per callable, at least.
        warmup: Untimed calls per callable first (at least one when
            `min_round_s > 0`: they measure how many calls a round needs).
        interleave: Alternate the order of the calls round by round; `False`
            times all rounds of one call, then the next.
        min_rounds: Rounds, at least.
        min_round_s: Seconds each round of a call lasts, at least.
        target_ci: Stop once every call's 95 % interval of its median round is
            within `±target_ci` of it (and `MIN_CI_ROUNDS` rounds are done);
            `None`: stop after the minimum numbers of runs and rounds (at least
            `MIN_CI_ROUNDS` rounds when `min_round_s > 0`, so that the spread and
            interval mean something).
        max_rounds: Rounds at most.
        max_seconds: Stop starting new rounds after this many seconds.
        drop_converged: Stop timing a call once its own interval is met (the
            others go on).
        on_round: Called with the round's index after each round.
        clock: Seconds as a float (tests pass a fake one).
    """
    per_call = [1] * len(calls)
    for j, call in enumerate(calls):
        if min_round_s > 0:
            seconds = _probe(call, warmup, clock)
            per_call[j] = max(1, math.ceil(min_round_s / max(seconds, 1e-9)))
        else:
            for _ in range(warmup):
                call()
    wanted = [max(min_rounds, math.ceil(runs / n)) for n in per_call]
    if target_ci is not None or min_round_s > 0:  # a spread needs a few rounds
        wanted = [max(w, MIN_CI_ROUNDS) for w in wanted]
    wanted = [min(w, max_rounds) for w in wanted]
    timings = [Timing([], n, target_ci is None) for n in per_call]

    def done(j: int) -> bool:
        t = timings[j]
        if len(t.rounds) < wanted[j]:
            return False
        if target_ci is None:
            return True
        t.converged = t.relative_ci() <= target_ci
        return t.converged or len(t.rounds) >= max_rounds

    def timed(j: int) -> None:
        call, n = calls[j], per_call[j]
        t0 = clock()
        for _ in range(n):
            call()
        timings[j].rounds.append((clock() - t0) / n)

    # Interleaved calls share the time limit; one after the other, each gets
    # its part of it.
    share = 1 if interleave else max(1, len(calls))
    start = [clock()]

    def out_of_time() -> bool:
        return max_seconds is not None and clock() - start[0] >= max_seconds / share

    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        if interleave:
            r = 0
            active = list(range(len(calls)))
            while active:
                order = active if r % 2 == 0 else active[::-1]
                for j in order:
                    timed(j)
                if on_round is not None:
                    on_round(r)
                r += 1
                finished = [done(j) for j in range(len(calls))]
                if all(finished) or out_of_time():
                    break
                if drop_converged:
                    active = [j for j in active if not finished[j]]
        else:
            r = 0
            for j in range(len(calls)):
                start[0] = clock()
                while True:
                    timed(j)
                    if on_round is not None:
                        on_round(r)
                    r += 1
                    if done(j) or out_of_time():
                        break
    finally:
        if gc_was_enabled:
            gc.enable()
    if target_ci is not None:
        for t in timings:
            t.converged = len(t.rounds) >= MIN_CI_ROUNDS and (
                t.relative_ci() <= target_ci
            )
    return timings
