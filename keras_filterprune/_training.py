"""Compiling a pruned model like the model it came from (the callback's
`pruned_model()` and the command line share this)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import keras

from keras_filterprune.exceptions import FilterPruneWarning

__all__ = ["compile_like"]


def _named_callables(obj) -> dict[str, Any]:
    """Plain functions in a loss argument (a function, list or dict of them)."""
    if isinstance(obj, Mapping):
        obj = list(obj.values())
    items = obj if isinstance(obj, (list, tuple)) else [obj]
    return {
        f.__name__: f
        for f in items
        if callable(f) and getattr(f, "__name__", "<lambda>") != "<lambda>"
    }


def compile_like(new: keras.Model, model: keras.Model) -> None:
    """Compiles `new` as `model` was compiled, with a fresh optimizer."""
    try:
        # The user's own loss functions, so that unregistered ones rebuild too.
        with keras.saving.custom_object_scope(_named_callables(model.loss)):
            new.compile_from_config(model.get_compile_config())
        return
    except Exception as e:  # a lambda or unregistered custom loss/metric
        error = e
    optimizer = model.optimizer
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer  # compile wraps it again
    try:
        new.compile(
            optimizer=type(optimizer).from_config(optimizer.get_config()),
            loss=model.loss,
        )
        done = "compiled with the same loss and a fresh optimizer only (no metrics)"
    except Exception as fallback_error:  # reported in the warning below
        done = f"returned uncompiled ({type(fallback_error).__name__})"
    warnings.warn(
        f"The pruned model could not be compiled like the trained model "
        f"({error!r}); it is {done}. Compile it yourself before fine-tuning.",
        FilterPruneWarning,
        stacklevel=3,
    )
