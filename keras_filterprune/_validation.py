"""One checker per kind of argument, one message style, one exception type per
bad value: TypeError for a wrong type, ValueError for a wrong value, both naming
the argument and the value as Keras does (``Received: ratio=1.5``).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = [
    "check_bool",
    "check_budget",
    "check_choice",
    "check_int",
    "check_latency_target",
    "check_layer_names",
    "check_number",
    "check_ratio",
    "check_scores",
]


def check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be a bool. Received: {name}={value!r}")
    return bool(value)


def check_int(value: Any, name: str, minimum: int | None = None) -> int:
    """An int (not a bool), `>= minimum` when given."""
    what = "an int" if minimum is None else f"an int >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be {what}. Received: {name}={value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be {what}. Received: {name}={value}")
    return int(value)


def check_number(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    allow_inf: bool = False,
) -> float:
    """A real number (not a bool), finite unless `allow_inf`, within the bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a number. Received: {name}={value!r}")
    value = float(value)
    bounded = low is not None or high is not None
    bad = math.isnan(value) or (math.isinf(value) and not allow_inf)
    if bad and not bounded:
        raise ValueError(f"`{name}` must be a finite number. Received: {name}={value}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if bad or too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        if high is None:  # infinity is in the interval only on request
            right = "]" if allow_inf else ")"
        finite = "a finite number " if high is None and not allow_inf else ""
        raise ValueError(
            f"`{name}` must be {finite}in {left}{lo}, {hi}{right}. "
            f"Received: {name}={value}"
        )
    return value


def check_budget(value: Any, name: str) -> tuple[str, float]:
    """A MAC or parameter budget: an absolute count (`2.5e6`), or a percentage of
    the unpruned model (`"50%"`). Returns `("absolute", count)` or
    `("fraction", f)` with `f` in (0, 1]."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*%\s*", value)
        percent = float(match.group(1)) if match else None
        if percent is None or not 0 < percent <= 100:
            raise ValueError(
                f"`{name}` as a string must be a percentage of the unpruned model "
                f"in (0%, 100%], such as '50%'. Received: {name}={value!r}"
            )
        return "fraction", percent / 100
    count = check_number(value, name, low=0.0, low_open=True, allow_inf=True)
    if count < 1:
        raise ValueError(
            f"`{name}` is an absolute count; {name}={value!r} is below 1. For a "
            f"fraction of the unpruned model write a percentage, e.g. "
            f"{name}='{value * 100:g}%'."
        )
    return "absolute", count


def check_ratio(value: Any, name: str) -> float:
    """A pruning ratio: a finite number in [0, 1)."""
    return check_number(value, name, low=0.0, high=1.0, high_open=True)


def check_choice(value: Any, name: str, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"`{name}` must be one of {choices}. Received: {name}={value!r}"
        )
    return value


def check_layer_names(value: Any, name: str) -> list[str] | None:
    """`None`, one layer name, or an iterable of names (all `str`)."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, (bytes, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(
            f"`{name}` must be a layer name or a list of layer names (str). "
            f"Received: {name}={value!r}"
        )
    names = list(value)
    if not all(isinstance(n, str) for n in names):
        raise TypeError(
            f"`{name}` must hold layer names (str). Received: {name}={names!r}"
        )
    return names


def check_epochs(epochs: Any, name: str = "epochs") -> tuple[int, ...] | None:
    """`None`, or a non-empty sequence of 0-based epoch indices (sorted, unique)."""
    if epochs is None:
        return None
    if isinstance(epochs, (str, bytes, numbers.Number)) or not isinstance(
        epochs, Iterable
    ):
        raise TypeError(
            f"`{name}` must be a sequence of 0-based epoch indices, e.g. (0, 2, 4). "
            f"Received: {name}={epochs!r}"
        )
    epochs = list(epochs)
    for e in epochs:
        if isinstance(e, bool) or not isinstance(e, numbers.Integral):
            raise TypeError(
                f"`{name}` must hold ints (0-based epoch indices). Received: "
                f"{name}={epochs!r}"
            )
    if not epochs:
        raise ValueError(
            f"`{name}` must name at least one epoch (or be None: every epoch). "
            f"Received: {name}=[]"
        )
    if min(epochs) < 0:
        raise ValueError(
            f"`{name}` must be 0-based epoch indices >= 0. Received: {name}={epochs}"
        )
    return tuple(sorted({int(e) for e in epochs}))


def check_per_layer(value: Any, name: str = "per_layer") -> dict[str, float] | None:
    """`None` or a mapping of layer name → ratio in [0, 1)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(
            f"`{name}` must be a dict of layer name -> ratio. "
            f"Received: {name}={value!r}"
        )
    result = {}
    for key, ratio in value.items():
        if not isinstance(key, str):
            raise TypeError(
                f"`{name}` keys must be layer names (str). Received: key {key!r}"
            )
        result[key] = check_ratio(ratio, f"{name}['{key}']")
    return result


def check_scores(scores: Any, path: str, width: int, source: str) -> np.ndarray:
    """One finite real score per filter of layer `path`, as float64.

    Args:
        scores: What a criterion (or the user) gave for the layer.
        path: The layer path, named in errors.
        width: The layer's number of filters.
        source: Where the scores came from, named in errors (e.g.
            "criterion 'l1_norm'", "`scores`").

    Raises:
        TypeError: not numbers.
        ValueError: a shape other than `(width,)`, or NaN/Inf.
    """
    try:
        array = np.asarray(scores)
    except Exception as e:  # ragged lists and other objects numpy refuses
        raise TypeError(
            f"{source} gave scores for layer '{path}' that are not an array of "
            f"numbers: {e}"
        ) from None
    if array.dtype.kind not in "iuf" or array.dtype == bool:
        raise TypeError(
            f"{source} gave scores of dtype {array.dtype} for layer '{path}'; "
            "expected real numbers (one per filter)."
        )
    if array.shape != (width,):
        raise ValueError(
            f"{source} gave scores of shape {array.shape} for layer '{path}'; "
            f"expected ({width},), one per filter."
        )
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        bad = np.flatnonzero(~np.isfinite(array))[:5].tolist()
        raise ValueError(
            f"{source} gave NaN or Inf scores for layer '{path}' (filters {bad}): "
            "a plan made from them would keep arbitrary channels. Check the "
            "criterion and the weights or data it scored."
        )
    return array


def check_latency_target(value: Any) -> float | tuple[float, str]:
    """`target_latency` before a latency table reads it: milliseconds as a
    number (a NumPy scalar too) or a string `"12.5ms"`, or a percentage `"50%"`
    of the unpruned latency in (0%, 100%]. Returns the ms as a float, or
    `(number, unit)` for a string (`unit` "ms" or "%")."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|%)\s*", value.lower())
        number = float(match.group(1)) if match else None
        if match and match.group(2) == "%" and not 0 < number <= 100:
            raise ValueError(
                "`target_latency` as a percentage must be of the unpruned latency "
                "in (0%, 100%], such as '50%' (or a number of milliseconds). "
                f"Received: target_latency={value!r}"
            )
        if match and number > 0:
            return number, match.group(2)
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            "`target_latency` must be a number of milliseconds or a string such "
            f"as '12.5ms' or '50%'. Received: target_latency={value!r}"
        )
    elif math.isfinite(value) and value > 0:
        return float(value)
    raise ValueError(
        "`target_latency` must be a positive number of milliseconds, or a string "
        "such as '12.5ms' or '50%' (of the unpruned latency). Received: "
        f"target_latency={value!r}"
    )
