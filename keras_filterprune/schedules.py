"""Pruning-ratio schedules: when to prune, and how many filters.

A schedule is called with a step (the global training step, or the epoch index,
as `PruningCallback(schedule_unit=...)` decides) and returns
`(should_prune, ratio)`. The semantics mirror TFMOT's
`tfmot.sparsity.keras.ConstantSparsity` and `PolynomialDecay`, so that those
schedules (and any object with the same call contract) work with
`PruningCallback` too, but ours round-trip through `get_config()`/`from_config()`
and are registered Keras serializables.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from keras_filterprune._validation import check_int, check_ratio

__all__ = ["RatioSchedule", "ConstantRatio", "PolynomialRatio"]

_TFMOT_PREFIX = "tensorflow_model_optimization"


def _check_steps(begin_step, end_step, frequency, allow_no_end: bool):
    begin_step = check_int(begin_step, "begin_step", 0)
    end_step = check_int(end_step, "end_step", -1 if allow_no_end else 0)
    if end_step != -1 and end_step < begin_step:
        raise ValueError(
            "`end_step` must be >= `begin_step`"
            + (" (or -1: no end)" if allow_no_end else "")
            + f". Received: begin_step={begin_step}, end_step={end_step}"
        )
    frequency = check_int(frequency, "frequency", 1)
    return begin_step, end_step, frequency


def _is_pruning_step(step: int, begin_step: int, end_step: int, frequency: int):
    """TFMOT's rule: `begin_step <= step <= end_step` (no end when `end_step` is
    -1) and `(step - begin_step) % frequency == 0`."""
    in_range = step >= begin_step and (end_step < 0 or step <= end_step)
    return bool(in_range and (step - begin_step) % frequency == 0)


def _as_step(step) -> int:
    """The step as a Python int (accepts ints, NumPy and TensorFlow scalars)."""
    return int(np.asarray(step))


class RatioSchedule:
    """Base class of pruning-ratio schedules.

    Subclasses implement `__call__(step) -> (should_prune, ratio)` and
    `get_config()`; `from_config(config)` calls the constructor with the config.

    Example:

    A schedule that prunes every epoch, 10 % more each time, up to `final_ratio`
    (for `PruningCallback(schedule=..., schedule_unit="epoch")`):

    >>> from keras_filterprune.schedules import RatioSchedule
    >>> class LinearRatio(RatioSchedule):
    ...     def __init__(self, final_ratio=0.5):
    ...         self.final_ratio = final_ratio
    ...     def __call__(self, step):
    ...         return True, min(self.final_ratio, 0.1 * (int(step) + 1))
    ...     def get_config(self):
    ...         return {"final_ratio": self.final_ratio}
    >>> schedule = LinearRatio(0.25)
    >>> [schedule(epoch) for epoch in range(4)]
    [(True, 0.1), (True, 0.2), (True, 0.25), (True, 0.25)]
    >>> schedule
    LinearRatio(final_ratio=0.25)
    >>> LinearRatio.from_config(schedule.get_config()) == schedule
    True
    """

    def __call__(self, step) -> tuple[bool, float]:
        raise NotImplementedError(
            f"{type(self).__name__} must implement `__call__(step)`."
        )

    def get_config(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must implement get_config.")

    @classmethod
    def from_config(cls, config: dict) -> RatioSchedule:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))


@keras.saving.register_keras_serializable(package="keras_filterprune")
class ConstantRatio(RatioSchedule):
    """The same pruning ratio every `frequency` steps (TFMOT's `ConstantSparsity`).

    Args:
        ratio: `float` in [0, 1). Fraction of the filters of each channel group
            to remove.
        begin_step: `int`. First step (or epoch) to prune at. Defaults to `0`.
        end_step: `int`. Last step to prune at; `-1` prunes until training ends.
            Defaults to `-1`.
        frequency: `int`. Prune every `frequency` steps from `begin_step`.
            Defaults to `100` (TFMOT's default, for step-driven schedules; use
            `1` with `PruningCallback(schedule_unit="epoch")`).

    Example:

    >>> schedule = ConstantRatio(0.5, begin_step=2, frequency=2)
    >>> [schedule(step) for step in (1, 2, 3, 4)]
    [(False, 0.5), (True, 0.5), (False, 0.5), (True, 0.5)]
    >>> ConstantRatio.from_config(schedule.get_config()) == schedule
    True
    """

    def __init__(
        self,
        ratio: float,
        begin_step: int = 0,
        end_step: int = -1,
        frequency: int = 100,
    ) -> None:
        self.ratio = check_ratio(ratio, "ratio")
        self.begin_step, self.end_step, self.frequency = _check_steps(
            begin_step, end_step, frequency, allow_no_end=True
        )

    def __call__(self, step) -> tuple[bool, float]:
        step = _as_step(step)
        prune = _is_pruning_step(step, self.begin_step, self.end_step, self.frequency)
        return prune, self.ratio

    def get_config(self) -> dict:
        return {
            "ratio": self.ratio,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }


@keras.saving.register_keras_serializable(package="keras_filterprune")
class PolynomialRatio(RatioSchedule):
    """A ratio that grows polynomially from `initial_ratio` to `final_ratio`.

    The ratio at step `t` is (TFMOT's `PolynomialDecay`, Zhu & Gupta 2017)::

        p = clip((t - begin_step) / (end_step - begin_step), 0, 1)
        ratio = final_ratio + (initial_ratio - final_ratio) * (1 - p) ** power

    and pruning happens at `begin_step, begin_step + frequency, …` up to
    `end_step` inclusive. As in TFMOT, `final_ratio` is only reached at a pruning
    step if `end_step - begin_step` is a multiple of `frequency`. Growing ratios
    over successive pruning events is iterative pruning (Li et al. 2017, §3.3).

    Args:
        initial_ratio: `float` in [0, 1). Ratio at `begin_step`.
        final_ratio: `float` in [0, 1). Ratio from `end_step` on.
        begin_step: `int`. First step (or epoch) to prune at.
        end_step: `int`. Last step to prune at (`>= begin_step`).
        power: `float`. Exponent of the polynomial; `1` is linear, the default
            `3` grows fast at first, then slowly. Defaults to `3`.
        frequency: `int`. Prune every `frequency` steps. Defaults to `100`
            (TFMOT's default; use `1` with `PruningCallback(schedule_unit="epoch")`).

    Example:

    >>> schedule = PolynomialRatio(0.0, 0.5, begin_step=0, end_step=2, power=1,
    ...                            frequency=1)
    >>> [schedule(epoch) for epoch in range(4)]
    [(True, 0.0), (True, 0.25), (True, 0.5), (False, 0.5)]

    References:
        - Zhu & Gupta, "To prune, or not to prune: exploring the efficacy of
          pruning for model compression", 2017.
        - Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017.
    """

    def __init__(
        self,
        initial_ratio: float,
        final_ratio: float,
        begin_step: int,
        end_step: int,
        power: float = 3,
        frequency: int = 100,
    ) -> None:
        self.initial_ratio = check_ratio(initial_ratio, "initial_ratio")
        self.final_ratio = check_ratio(final_ratio, "final_ratio")
        self.begin_step, self.end_step, self.frequency = _check_steps(
            begin_step, end_step, frequency, allow_no_end=False
        )
        if (
            isinstance(power, bool)
            or not isinstance(power, numbers.Real)
            or not power > 0
        ):
            raise ValueError(f"`power` must be a number > 0. Received: power={power!r}")
        self.power = power

    def ratio_at(self, step) -> float:
        """The ratio at `step`, whether or not it is a pruning step."""
        step = _as_step(step)
        span = self.end_step - self.begin_step
        p = 1.0 if span == 0 else (step - self.begin_step) / span
        p = min(1.0, max(0.0, p))
        ratio = self.final_ratio + (self.initial_ratio - self.final_ratio) * (
            1.0 - p
        ) ** float(self.power)
        return float(ratio)

    def __call__(self, step) -> tuple[bool, float]:
        step = _as_step(step)
        prune = _is_pruning_step(step, self.begin_step, self.end_step, self.frequency)
        return prune, self.ratio_at(step)

    def get_config(self) -> dict:
        return {
            "initial_ratio": self.initial_ratio,
            "final_ratio": self.final_ratio,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }


# ---------------------------------------------------------------------------
# (De)serialising any schedule a PruningCallback accepts
# ---------------------------------------------------------------------------


def _serialize_schedule(schedule: Any) -> Any:
    """A config for our schedules and TFMOT's; other callables are returned as
    they are (a Python round trip, not JSON)."""
    if schedule is None:
        return None
    if isinstance(schedule, RatioSchedule):
        return keras.saving.serialize_keras_object(schedule)
    module = type(schedule).__module__
    if module.startswith(_TFMOT_PREFIX) and hasattr(schedule, "get_config"):
        config = schedule.get_config()  # {"class_name": ..., "config": {...}}
        return {"tfmot_schedule": config["class_name"], "config": config["config"]}
    return schedule


def _deserialize_schedule(config: Any) -> Any:
    """Inverse of `_serialize_schedule`; imports TFMOT only for its schedules."""
    if isinstance(config, Mapping) and "tfmot_schedule" in config:
        try:
            import tensorflow_model_optimization as tfmot
        except ImportError as e:
            raise ImportError(
                "This config holds a TFMOT pruning schedule, which needs "
                "tensorflow-model-optimization: pip install "
                "'keras-filterprune[tfmot]'"
            ) from e
        try:
            cls = getattr(tfmot.sparsity.keras, config["tfmot_schedule"])
            return cls(**config["config"])
        except (AttributeError, KeyError, TypeError) as e:
            raise _unreadable(config, e) from e
    if isinstance(config, Mapping):
        try:
            return keras.saving.deserialize_keras_object(dict(config))
        except (AttributeError, KeyError, TypeError) as e:
            raise _unreadable(config, e) from e
    return config


def _unreadable(config: Any, error: Exception) -> TypeError:
    text = " ".join(str(error).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    return TypeError(
        "`schedule` in the config is not a schedule this installation can rebuild "
        "(a keras_filterprune schedule or a TFMOT PruningSchedule, as "
        f"`get_config()` wrote it). Received: schedule={dict(config)!r:.200} "
        f"({type(error).__name__}: {text})"
    )


def check_schedule(schedule: Any, *, epochs=None, ratio=None) -> Any:
    """Checks a callback's `schedule` argument and that `epochs` and a
    non-default `ratio` (which a schedule replaces) are not given with it.

    Raises:
        TypeError: `schedule` is not a callable ratio schedule.
        ValueError: `epochs` or `ratio` given with a schedule.
    """
    if schedule is None:
        return None
    if not callable(schedule):
        raise TypeError(
            "`schedule` must be a ratio schedule (e.g. keras_filterprune."
            "PolynomialRatio or a tfmot.sparsity.keras.PruningSchedule): a "
            "callable `schedule(step) -> (should_prune, ratio)`. Received: "
            f"schedule={schedule!r}"
        )
    if epochs is not None:
        raise ValueError(
            "Pass either `epochs` (prune at these epoch ends with `ratio`) or "
            "`schedule` (it decides when and how much), not both. Received: "
            f"epochs={epochs}, schedule={schedule!r}"
        )
    if ratio is not None:
        raise ValueError(
            "`ratio` is unused when `schedule` is given (the schedule gives "
            f"the ratios): leave it out. Received: ratio={ratio}, "
            f"schedule={schedule!r}"
        )
    return schedule


def last_due_step(schedule: Any, last: int, step: int) -> tuple[int, float] | None:
    """The last step in `(last, step]` at which `schedule` prunes, with its
    ratio, or `None` (every step of a `steps_per_execution` block is asked)."""
    due = None
    for s in range(last + 1, step + 1):
        should, ratio = ask(schedule, s, "step")
        if should:
            due = (s, ratio)
    return due


def ask(schedule: Any, step: int, unit: str = "step") -> tuple[bool, float]:
    """Calls a schedule and checks its answer (tensors allowed).

    Raises:
        ValueError: it asks to prune with a ratio outside [0, 1) (NaN included);
            the message names the step (or epoch) and the schedule.
    """
    answer = schedule(step)
    try:
        should, ratio = answer
        should = bool(np.asarray(should))
        ratio = float(np.asarray(ratio))
    except (TypeError, ValueError):
        raise TypeError(
            f"A pruning schedule must return `(should_prune, ratio)`; at {unit} "
            f"{step} {schedule!r} returned {answer!r}."
        ) from None
    if should and not 0.0 <= ratio < 1.0:  # NaN fails too
        raise ValueError(
            f"The pruning schedule returned ratio={ratio} at {unit} {step}; "
            f"ratios must be in [0, 1). Schedule: {schedule!r}"
        )
    return should, ratio


def final_ratio(schedule: Any) -> float | None:
    """The ratio a schedule ends at: ours (`final_ratio`, `ratio`) and TFMOT's
    (`final_sparsity`, `target_sparsity`); `None` for other callables."""
    for name in ("final_ratio", "final_sparsity", "ratio", "target_sparsity"):
        value = getattr(schedule, name, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def final_event(
    schedule: Any, unit: str, epochs, params: dict, epoch: int, step: int
) -> float:
    """The epoch (epoch events) or global step (step schedules) of the last
    pruning event of this `fit`, looking ahead from `epoch`/`step`; `math.inf`
    when `params` (Keras' `callback.params`) does not say how long it runs.

    A soft-pruning callback holds its masks from that event on, so that the
    network adapts to the final architecture instead of losing regrown filters.
    """
    total, steps = params.get("epochs"), params.get("steps")
    if not isinstance(total, int):
        return math.inf
    if schedule is None or unit == "epoch":
        due = [
            e
            for e in (range(epoch, total) if epochs is None else epochs)
            if epoch <= e < total and (schedule is None or ask(schedule, e, unit)[0])
        ]
        return max(due, default=math.inf)
    if not isinstance(steps, int) or steps < 1:
        return math.inf
    end = step + (total - epoch) * steps  # at most this many steps remain
    due = last_due_step(schedule, step - 1, end)
    return math.inf if due is None else due[0]
