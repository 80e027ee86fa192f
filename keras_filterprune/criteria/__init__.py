"""Filter importance criteria and their registry.

Passive criteria are functions of a layer's kernel, `fn(kernel) -> (N,)`, the kernel
in Keras' channels-last layout `(*spatial, C_in, N)`. Active criteria are per-batch
statistics of a layer's output, `fn(activations, gradients=None) -> (C,)`, gathered
over data by `gather_active_scores`. Both return float64 scores, one per filter
(output channel); a higher score means a more important filter.

Criteria are looked up by name with `get`; users add their own with `register`.

Example:

>>> import numpy as np
>>> from keras_filterprune import criteria
>>> criteria.names()
['apoz', 'geometric_median', 'hrank', 'l1_norm', 'l2_norm', 'mean_activation',
 'operator_norm', 'random', 'taylor']
>>> kernel = np.arange(12.0).reshape(1, 1, 3, 4) - 5.0  # Conv2D 1x1, 3 -> 4
>>> criteria.get("l1_norm")(kernel)
array([ 9.,  8.,  9., 10.])
"""

from __future__ import annotations

from keras_filterprune.criteria._registry import (
    REGISTRY,
    Entry,
    get,
    is_active,
    names,
    needs_gradients,
    register,
    unregister,
)
from keras_filterprune.criteria.active import (
    apoz,
    gather_active_scores,
    hrank,
    mean_activation,
    taylor,
)
from keras_filterprune.criteria.passive import (
    geometric_median,
    l1_norm,
    l2_norm,
    operator_norm,
    random,
)

__all__ = [
    "apoz",
    "gather_active_scores",
    "geometric_median",
    "get",
    "hrank",
    "is_active",
    "l1_norm",
    "l2_norm",
    "mean_activation",
    "names",
    "needs_gradients",
    "operator_norm",
    "random",
    "register",
    "taylor",
    "unregister",
]


REGISTRY.update(
    {
        "l1_norm": Entry(l1_norm, active=False, needs_gradients=False),
        "l2_norm": Entry(l2_norm, active=False, needs_gradients=False),
        "operator_norm": Entry(operator_norm, active=False, needs_gradients=False),
        "geometric_median": Entry(
            geometric_median, active=False, needs_gradients=False
        ),
        "random": Entry(random, active=False, needs_gradients=False),
        "mean_activation": Entry(mean_activation, active=True, needs_gradients=False),
        "apoz": Entry(apoz, active=True, needs_gradients=False),
        "hrank": Entry(hrank, active=True, needs_gradients=False),
        "taylor": Entry(taylor, active=True, needs_gradients=True),
    }
)
