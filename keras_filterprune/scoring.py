"""Filter scores of a whole model: the glue between models and criteria.

Criteria see arrays only (`keras_filterprune.criteria`); this module finds the
producers of a model, hands their kernels (or their activations) to a criterion and
names the results.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from keras_filterprune import criteria as criteria_lib
from keras_filterprune._deprecation import graph_argument_removed
from keras_filterprune._validation import check_layer_names, check_scores
from keras_filterprune.graph import ChannelGraph, graph_of
from keras_filterprune.handlers import get_handler

__all__ = ["score_filters", "producer_kernel", "sliced_kernel"]


def producer_kernel(layer: keras.layers.Layer) -> np.ndarray:
    """The kernel of a producer layer in `(*spatial, C_in, N)` layout."""
    handler = get_handler(layer)
    if handler is None or not handler.produces:
        raise ValueError(
            f"Layer '{layer.name}' ({type(layer).__name__}) has no prunable filters."
        )
    return handler.kernel(layer)


def sliced_kernel(
    graph: ChannelGraph,
    path: str,
    flags: np.ndarray | None = None,
    keep_out: list[int] | None = None,
) -> np.ndarray:
    """A producer's kernel restricted to kept input channels (element keep
    `flags`, mapped to kernel rows by the handler's `kernel_input_keep`) and to
    its kept filters `keep_out`: the kernel the physically pruned model would
    have."""
    layer = graph.walk.layers[path]
    kernel = producer_kernel(layer)
    if flags is not None:
        call = graph.first_calls()[path]
        ids = graph.tensor_ids.get(call.inputs[0]) if call.inputs else None
        rows = None
        if ids is not None:  # the handler says which rows the kept inputs feed
            rows = get_handler(layer).kernel_input_keep(layer, flags[ids])
        if rows is not None and len(rows) == kernel.shape[-2]:
            kernel = kernel[..., rows, :]
    if keep_out is not None:
        kernel = kernel[..., np.asarray(keep_out, dtype=np.int64)]
    return kernel


def _expand(scores: np.ndarray, kept: list[int], width: int) -> np.ndarray:
    """Scores of the kept filters put back on all `width` filters; removed ones
    get the smallest kept score (a per-producer normalisation by the largest
    absolute score is then unchanged)."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) == width and len(kept) != width:
        scores = scores[np.asarray(kept, dtype=np.int64)]
    full = np.full(width, float(scores.min()) if scores.size else 0.0)
    full[np.asarray(kept, dtype=np.int64)] = scores
    return full


def _activation_layers(graph: ChannelGraph, producers: list[str]) -> dict[str, str]:
    """For each producer, the layer (a path, nested ones included) whose output
    is scored by active criteria: the producer itself, or the end of the chain of
    elementwise layers (BatchNorm, activation, dropout: `handler.elementwise`) in
    the same model that consume only its output."""
    consumers: dict[int, list] = {}
    for call in graph.walk.calls:
        for key in call.inputs:
            consumers.setdefault(key, []).append(call)
    producing_call = {}
    for call in graph.walk.calls:
        producing_call.setdefault(call.path, call)
    result = {}
    for path in producers:
        call = producing_call[path]
        scope = path.rpartition("/")[0]
        end = path
        key = call.outputs[0]
        while len(consumers.get(key, [])) == 1:
            nxt = consumers[key][0]
            handler = get_handler(nxt.layer)
            elementwise = handler is not None and handler.elementwise
            same_model = nxt.path.rpartition("/")[0] == scope
            if not same_model or len(nxt.inputs) != 1 or not elementwise:
                break
            end, key = nxt.path, nxt.outputs[0]
        result[path] = end
    return result


_ACTIVE_KWARGS = ("loss", "max_batches")


@graph_argument_removed
def score_filters(
    model: keras.Model,
    criterion: str | Callable = "operator_norm",
    data=None,
    *,
    within=None,
    layers: list[str] | None = None,
    batch_size: int = 32,
    verbose: int = 0,
    **criterion_kwargs,
) -> dict[str, np.ndarray]:
    """Scores every output filter of every prunable layer; higher = more important.

    Args:
        model: A built Functional or Sequential `keras.Model` (only read).
        criterion: `str` or callable. A registered criterion name (see
            `keras_filterprune.criteria.names()`) or a function of the kernel.
            Defaults to `"operator_norm"`.
        data: Inputs (or `(x, y)`) for active criteria; ignored by passive ones.
        within: A `PruningPlan` whose removed channels are zero in `model` (a
            masked model, as `PruningCallback` trains in hard mode). Each
            producer is then scored as the physically pruned model would score
            it (its kernel without the removed filters and input channels, or
            the live channels' activations), and its removed filters get its
            smallest kept score. Defaults to `None`.
        layers: Restrict to these producer paths. Defaults to all producers.
        batch_size: `int`. Batch size for active criteria. Defaults to `32`.
        verbose: `int`. Progress bar for active criteria when `> 0`.
        **criterion_kwargs: Extra arguments of an active criterion: `loss`,
            `max_batches` (`keras_filterprune.criteria.gather_active_scores`).

    Returns:
        `dict[str, np.ndarray]`: layer path → one score per filter.

    Raises:
        ValueError: unknown criterion, active criterion without `data`, or a kernel
            with NaN/Inf (the message names the layer).
        TypeError: a keyword argument the criterion does not take.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((8, 8, 3)),
    ...                           keras.layers.Conv2D(4, 3, name="conv")])
    >>> scores = score_filters(model, "l1_norm")
    >>> scores["conv"].shape
    (4,)
    """
    fn = criteria_lib.get(criterion)
    taken = _ACTIVE_KWARGS if criteria_lib.is_active(criterion) else ()
    unknown = sorted(set(criterion_kwargs) - set(taken))
    if unknown:
        shown = criterion if isinstance(criterion, str) else "this criterion"
        raise TypeError(
            f"Unexpected keyword arguments {unknown} for criterion {shown!r}: "
            + (
                f"an active criterion takes {', '.join(taken)}."
                if taken
                else "a passive criterion reads the kernels only and takes none."
            )
        )
    graph = graph_of(model)
    flags = within.keep_flags(graph) if within is not None else None
    widths = {p: len(c) for g in graph.groups for p, c in g.producers.items()}
    paths = list(widths)
    if layers is not None:
        wanted = {
            p
            for ps in graph.resolve(
                check_layer_names(layers, "layers"), "layers"
            ).values()
            for p in ps
        }
        not_producers = sorted(wanted - set(paths))
        if not_producers:
            raise ValueError(
                f"`layers` names {not_producers}, which have no prunable filters "
                "(only Conv and Dense layers are scored). Received: "
                f"layers={layers!r}"
            )
        paths = [p for p in paths if p in wanted]
    name = criterion if isinstance(criterion, str) else getattr(fn, "__name__", "")
    if criteria_lib.is_active(criterion):
        if data is None:
            raise ValueError(
                f"`criterion='{name}'` is an active criterion and needs `data` "
                "(a small dataset of model inputs, or (x, y) for 'taylor'). Pass "
                "`data=...` or choose a passive criterion such as 'operator_norm'."
            )
        walk = graph.walk
        blocked = [p for p in paths if walk.unrebuildable_owner(p) is not None]
        if blocked:
            owner = walk.unrebuildable_owner(blocked[0])
            raise ValueError(
                f"`criterion='{name}'` reads layer outputs from a rebuilt copy of "
                f"the model, but layer '{blocked[0]}' is inside '{owner}', which "
                f"cannot be rebuilt ({walk.unrebuildable[owner]}). Use a passive "
                "criterion such as 'operator_norm' or 'l1_norm', or teach that "
                "layer with `register_handler`."
            )
        points = _activation_layers(graph, paths)
        scores = criteria_lib.gather_active_scores(
            model,
            sorted(set(points.values())),
            data,
            criterion,
            batch_size=batch_size,
            verbose=verbose,
            **criterion_kwargs,
        )
        result = {
            p: check_scores(
                scores[points[p]], p, len(scores[points[p]]), f"Criterion '{name}'"
            )
            for p in paths
        }
        if within is not None:
            result = {
                p: _expand(s, within.kept_filters(p), len(s)) for p, s in result.items()
            }
        return result
    result = {}
    for path in paths:
        kept = None if within is None else within.kept_filters(path)
        kernel = sliced_kernel(graph, path, flags, kept)
        if not np.all(np.isfinite(kernel)):
            raise ValueError(
                f"Layer '{path}' has NaN or Inf in its kernel: it cannot be scored. "
                "Check the training run that produced these weights."
            )
        scores = check_scores(fn(kernel), path, kernel.shape[-1], f"Criterion '{name}'")
        if kept is not None:
            scores = _expand(scores, kept, widths[path])
        result[path] = scores
    return result
