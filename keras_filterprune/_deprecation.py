"""Deprecations: what moved or was removed keeps working for one release, with a
`DeprecationWarning` that says what to use instead."""

from __future__ import annotations

import functools
import warnings

__all__ = ["REMOVED_IN", "deprecated", "graph_argument_removed"]

REMOVED_IN = "0.3"


def deprecated(message: str, stacklevel: int = 3) -> None:
    """Warns `DeprecationWarning` with `message` and when it goes."""
    warnings.warn(
        f"{message} The old form will be removed in keras-filterprune {REMOVED_IN}.",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def graph_argument_removed(func):
    """Accepts and ignores `graph=` (the package now traces each model once and
    remembers it, `keras_filterprune.graph.graph_of`), with a `DeprecationWarning`.
    The signature shown by `help()` and the docs is the function's own."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if "graph" in kwargs:
            kwargs.pop("graph")
            deprecated(
                f"`{func.__name__}(graph=...)` is ignored: every function traces "
                "a model once and remembers the trace, so no graph needs passing."
            )
        return func(*args, **kwargs)

    return wrapper
