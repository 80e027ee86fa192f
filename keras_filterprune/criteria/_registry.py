"""The registry of criteria by name (a leaf module: the criteria modules and the
package's `__init__`, which registers the built-in ones, both import it)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Entry:
    fn: Callable
    active: bool
    needs_gradients: bool


REGISTRY: dict[str, Entry] = {}


def _entry(name_or_callable: str | Callable) -> Entry | None:
    """The registry entry of a name (unknown: ValueError) or callable (or None)."""
    if isinstance(name_or_callable, str):
        try:
            return REGISTRY[name_or_callable]
        except KeyError:
            raise ValueError(
                f"Unknown criterion: {name_or_callable!r}. Registered criteria: "
                f"{names()}. Add your own with `criteria.register(name, fn)`."
            ) from None
    if callable(name_or_callable):
        for entry in REGISTRY.values():
            if entry.fn is name_or_callable:
                return entry
        return None
    raise TypeError(
        "A criterion must be a registered name (str) or a callable. "
        f"Received: {name_or_callable!r} of type {type(name_or_callable).__name__}"
    )


def _is_registered(name_or_callable: str | Callable) -> bool:
    return _entry(name_or_callable) is not None


def get(name_or_callable: str | Callable) -> Callable:
    """Returns the criterion function registered under a name.

    Args:
        name_or_callable: A registered name (see `names()`), or a callable, which
            is returned unchanged (treated as passive, `fn(kernel) -> (N,)`,
            unless it was registered as active).

    Returns:
        The criterion function.

    Raises:
        ValueError: If the name is not registered (the message lists the
            registered names).
        TypeError: If `name_or_callable` is neither a str nor a callable.

    Example:

    >>> from keras_filterprune import criteria
    >>> criteria.get("operator_norm") is criteria.operator_norm
    True
    """
    if isinstance(name_or_callable, str):
        return _entry(name_or_callable).fn
    _entry(name_or_callable)  # TypeError for non-callables
    return name_or_callable


def register(
    name: str,
    fn: Callable,
    *,
    active: bool = False,
    needs_gradients: bool = False,
    overwrite: bool = False,
) -> Callable:
    """Registers a criterion under a name, so planners and the CLI can use it.

    Args:
        name: Str. The name to register.
        fn: A passive criterion `fn(kernel) -> (N,)`, or with `active=True` a
            per-batch statistic `fn(activations, gradients=None) -> (C,)` that
            returns the mean over the batch's examples (batches are combined by
            a mean weighted by batch size).
        active: Bool. Whether `fn` is a statistic of activations (needs data).
            Defaults to `False`.
        needs_gradients: Bool. Whether an active `fn` needs the loss gradients
            with respect to the activations. Defaults to `False`.
        overwrite: Bool. Whether to replace a criterion already registered under
            `name`. Defaults to `False`.

    Returns:
        `fn`, unchanged.

    Raises:
        ValueError: If `name` is empty or already registered and `overwrite` is
            `False`, or if `needs_gradients` is set without `active`.
        TypeError: If `name` is not a str or `fn` is not callable.

    Example:

    >>> import numpy as np
    >>> from keras_filterprune import criteria
    >>> def max_abs(kernel):
    ...     kernel = np.asarray(kernel, dtype="float64")
    ...     return np.abs(kernel.reshape(-1, kernel.shape[-1])).max(axis=0)
    >>> _ = criteria.register("max_abs", max_abs, overwrite=True)
    >>> criteria.get("max_abs")(np.array([[1.0, -3.0], [2.0, 0.5]]))
    array([2., 3.])
    >>> criteria.unregister("max_abs")
    """
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a str. Received: name={name!r}")
    if not name:
        raise ValueError("`name` must not be empty. Received: name=''")
    if not callable(fn):
        raise TypeError(f"`fn` must be callable. Received: fn={fn!r}")
    if needs_gradients and not active:
        raise ValueError(
            "`needs_gradients=True` only applies to active criteria; pass "
            f"`active=True` too. Received: name={name!r}, active={active}"
        )
    if name in REGISTRY and not overwrite:
        raise ValueError(
            f"A criterion named {name!r} is already registered; pass "
            "`overwrite=True` to replace it."
        )
    REGISTRY[name] = Entry(
        fn, active=bool(active), needs_gradients=bool(needs_gradients)
    )
    return fn


def unregister(name: str) -> None:
    """Removes the criterion registered under `name`.

    Args:
        name: Str. A registered name.

    Raises:
        ValueError: If `name` is not registered (the message lists the registered
            names).

    Example:

    >>> import numpy as np
    >>> from keras_filterprune import criteria
    >>> _ = criteria.register("ones", lambda kernel: np.ones(np.shape(kernel)[-1]))
    >>> "ones" in criteria.names()
    True
    >>> criteria.unregister("ones")
    >>> "ones" in criteria.names()
    False
    """
    _entry(name)  # ValueError listing the names if unknown
    del REGISTRY[name]


def is_active(name_or_callable: str | Callable) -> bool:
    """Whether a criterion needs data (activations) rather than kernels.

    Args:
        name_or_callable: A registered name, or a callable (unregistered callables
            are passive).

    Returns:
        Bool.

    Raises:
        ValueError: If the name is not registered.

    Example:

    >>> from keras_filterprune import criteria
    >>> criteria.is_active("apoz"), criteria.is_active("l1_norm")
    (True, False)
    """
    entry = _entry(name_or_callable)
    return entry is not None and entry.active


def needs_gradients(name_or_callable: str | Callable) -> bool:
    """Whether an active criterion needs loss gradients (labels and a loss).

    Args:
        name_or_callable: A registered name, or a callable (unregistered callables
            need no gradients).

    Returns:
        Bool.

    Raises:
        ValueError: If the name is not registered.

    Example:

    >>> from keras_filterprune import criteria
    >>> criteria.needs_gradients("taylor"), criteria.needs_gradients("hrank")
    (True, False)
    """
    entry = _entry(name_or_callable)
    return entry is not None and entry.needs_gradients


def names(active: bool | None = None) -> list[str]:
    """Sorted names of the registered criteria.

    Args:
        active: Bool or `None`. `True` lists only active criteria, `False` only
            passive ones, `None` all. Defaults to `None`.

    Returns:
        A sorted list of str.

    Example:

    >>> from keras_filterprune import criteria
    >>> criteria.names(active=True)
    ['apoz', 'hrank', 'mean_activation', 'taylor']
    """
    return sorted(
        name
        for name, entry in REGISTRY.items()
        if active is None or entry.active == bool(active)
    )
