"""Sensitivity analysis: how much each channel group can lose on its own.

Li et al. (2017, §3.2 and Fig. 2) prune every layer *independently* at increasing
ratios and evaluate the network after each cut, without retraining. Layers whose
accuracy holds up are pruned harder; sensitive ones are spared. Here the unit is a
channel *group* (a conv with its BatchNorm, or a whole residual stage tied by its
`Add`s), because that is the smallest thing that can be pruned alone.

Evaluations run on one masked copy of the model: the removed channels are zeroed
(`weight_masks`), which computes exactly what `apply_plan` would build, without
rebuilding or retracing a model per point.

References:
    - Li, Kadav, Durdanovic, Samet and Graf, "Pruning Filters for Efficient
      ConvNets", ICLR 2017.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Iterable, Sequence

import keras
import numpy as np

from keras_filterprune import criteria as criteria_lib
from keras_filterprune._deprecation import graph_argument_removed
from keras_filterprune._messages import warn
from keras_filterprune._options import PlanOptions, option_names
from keras_filterprune._paths import all_layers, layer_by_path
from keras_filterprune._sensitivity_result import SensitivityResult
from keras_filterprune._validation import check_bool, check_int
from keras_filterprune.exceptions import FilterPruneWarning
from keras_filterprune.masking import weight_masks
from keras_filterprune.plan import GroupPlan, PruningPlan, plan_pruning
from keras_filterprune.recovery import has_statistics, recalibrate_batchnorm
from keras_filterprune.scoring import score_filters

__all__ = ["SensitivityResult", "sensitivity_analysis"]

_DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
_CALIBRATION_EXAMPLES = 1024


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------


def _copy(layer: keras.layers.Layer) -> keras.layers.Layer:
    """A layer of the evaluated copy: a new one from the config, or the layer
    itself when it has no weights and its config cannot be read back (a Python
    `Lambda`): masking changes weights only, so sharing it changes nothing."""
    try:
        return layer.__class__.from_config(layer.get_config())
    except Exception:
        if layer.weights:
            raise
        return layer


def _check_ratios(ratios) -> tuple[float, ...]:
    try:
        values = tuple(float(r) for r in ratios)
    except (TypeError, ValueError):
        raise TypeError(
            f"`ratios` must be a sequence of numbers. Received: ratios={ratios!r}"
        ) from None
    if not values or any(not 0.0 < r < 1.0 for r in values):
        raise ValueError(
            "`ratios` must be a non-empty sequence of numbers in (0, 1). "
            f"Received: ratios={ratios!r}"
        )
    return tuple(sorted(set(values)))


def _accuracy(outputs: np.ndarray, y: np.ndarray) -> float:
    outputs = np.asarray(outputs)
    y = np.asarray(y)
    if outputs.ndim >= 2 and outputs.shape[-1] > 1:
        pred = outputs.argmax(axis=-1)
        one_hot = y.ndim == outputs.ndim and y.shape[-1] > 1
        if (y.shape != outputs.shape) if one_hot else (y.size != pred.size):
            raise ValueError(
                f"`data`'s labels (shape {y.shape}) do not fit the model's "
                f"outputs (shape {outputs.shape}): pass one integer class per "
                f"example, or one-hot rows of width {outputs.shape[-1]}."
            )
        truth = y.argmax(axis=-1) if one_hot else y.reshape(pred.shape)
    else:  # one sigmoid unit
        pred = outputs.reshape(len(outputs), -1)[:, 0] > 0.5
        truth = y.reshape(len(y), -1)[:, 0] > 0.5
    return float(np.mean(pred == truth))


def _data_evaluator(model: keras.Model, clone: keras.Model, data, batch_size: int):
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(
            "`data` must be an `(x, y)` pair of arrays. Received: "
            f"{type(data).__name__}. For other data, pass `eval_fn`."
        )
    x, y = data
    if isinstance(x, np.ndarray) and len(x) != len(y):
        raise ValueError(
            f"`data` x and y differ in length: {len(x)} and {len(y)} samples."
        )
    metric_names = []
    if getattr(model, "compiled", False):
        clone.compile_from_config(model.get_compile_config())
        metric_names = [
            k
            for k in clone.evaluate(
                x[:1], y[:1], verbose=0, return_dict=True, batch_size=batch_size
            )
            if k != "loss"
        ]
    if metric_names:
        name = metric_names[0]

        def evaluate(m: keras.Model) -> float:
            logs = m.evaluate(x, y, verbose=0, return_dict=True, batch_size=batch_size)
            return float(logs[name])

        return evaluate, name

    def accuracy(m: keras.Model) -> float:
        return _accuracy(m.predict(x, verbose=0, batch_size=batch_size), y)

    return accuracy, "accuracy"


def _names(name: str, paths: Iterable[str]) -> bool:
    return any(name == p or name == p.split("/")[-1] for p in paths)


def _select_groups(plan: PruningPlan, groups) -> list[GroupPlan]:
    prunable = [g for g in plan.groups if not g.frozen and g.width > 1]
    if groups is None:
        return prunable
    if isinstance(groups, (str, int)):
        groups = [groups]
    chosen: dict[int, GroupPlan] = {}
    for item in groups:
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            match = [g for g in plan.groups if g.id == int(item)]
        elif isinstance(item, str):
            # A producer names its own group; any other layer, the groups it
            # carries (a BatchNorm, an activation, …).
            match = [g for g in plan.groups if _names(item, g.producers)]
            match = match or [g for g in plan.groups if _names(item, g.members)]
        else:
            raise TypeError(
                "`groups` must hold layer names or group ids. Received: "
                f"{item!r} of type {type(item).__name__}"
            )
        if not match:
            raise ValueError(f"`groups` names '{item}', which is not in the model.")
        for g in match:
            if g.frozen:
                raise ValueError(
                    f"`groups` names '{item}', whose channel group cannot be "
                    f"pruned: {g.frozen}."
                )
            if g.width > 1:
                chosen[g.id] = g
    return sorted(chosen.values(), key=lambda g: g.id)


def _one_group_plan(plan: PruningPlan, group_id: int) -> PruningPlan:
    groups = [
        g
        if g.id == group_id
        else dataclasses.replace(g, keep=list(range(g.width)), scores=None)
        for g in plan.groups
    ]
    return PruningPlan(groups, plan.model_name, plan.meta)


@graph_argument_removed
def sensitivity_analysis(
    model: keras.Model,
    eval_fn: Callable[[keras.Model], float] | None = None,
    data=None,
    *,
    ratios: Sequence[float] | None = None,
    criterion: str | Callable = "operator_norm",
    groups: Iterable[str | int] | None = None,
    batch_size: int = 128,
    verbose: int = 1,
    recalibrate: bool = True,
    calibration_data=None,
    **plan_kwargs,
) -> SensitivityResult:
    """Prunes each channel group alone at each ratio and evaluates the model.

    The model is traced once. For every ratio a plan is made once
    (`plan_pruning`); then, group by group,
    only that group's cut is applied (the others keep all their channels) to a
    masked copy of `model` and the copy is evaluated. Nothing is retrained and
    `model` is never modified.

    Args:
        model: A built Functional or Sequential `keras.Model`.
        eval_fn: Callable `eval_fn(model) -> float`, higher is better (negate a
            loss). It receives a copy of `model` with the same architecture,
            compiled like `model` when `model` is compiled. Either this or
            `data`.
        data: `(x, y)` arrays. The score is the first compiled metric of
            `model` (from `model.evaluate`) or, when `model` has none, the
            accuracy of `argmax` predictions (labels as ints or one-hot; a
            single output unit is thresholded at 0.5). With an active criterion
            `x` also feeds the scoring.
        ratios: Ratios in (0, 1) to evaluate. Defaults to `None`:
            `(0.1, 0.2, …, 0.9)`.
        criterion: `str` or callable. Which channels a cut removes. Defaults to
            `"operator_norm"`.
        groups: Layer names (any member of a group) or group ids to analyse.
            Defaults to `None`: every prunable group.
        batch_size: `int`. Batch size of the evaluations with `data`. Defaults
            to `128`.
        verbose: `int`. `1` shows a `keras.utils.Progbar`. Defaults to `1`.
        recalibrate: `bool`. Re-estimate the BatchNorm statistics of each
            pruned copy before evaluating it (`recalibrate_batchnorm`), so that
            the curves measure what the removed filters were worth rather than
            the mismatch of stale statistics. Defaults to `True`; it needs
            `calibration_data` or `data`.
        calibration_data: Unlabeled inputs for the recalibration. Defaults to
            `None`: the first 1024 examples of `data`'s `x` (with `eval_fn`
            alone and no `calibration_data`, nothing is recalibrated).
        **plan_kwargs: The planning options that shape one group's cut, as in
            `plan_pruning`: `exclude`, `group_reduction`, `round_to`,
            `min_filters`, `prune_norms` (budgets, `per_layer` and
            `global_ranking` concern the whole model, not one group).

    Returns:
        `SensitivityResult` with `.curves`, `.to_markdown()`,
        `.suggest_ratios(max_drop)` and `.plot()`.

    Raises:
        ValueError: neither or both of `eval_fn` and `data`, bad `ratios`,
            unknown or frozen `groups`, or a non-finite score.
        TypeError: `eval_fn` is not callable.

    Example:

    >>> import keras, numpy as np
    >>> inputs = keras.Input((8, 8, 1))
    >>> x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    >>> x = keras.layers.GlobalAveragePooling2D()(x)
    >>> model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    >>> rng = np.random.default_rng(0)
    >>> data = rng.normal(size=(32, 8, 8, 1)), rng.integers(0, 3, 32)
    >>> result = sensitivity_analysis(model, data=data, ratios=(0.5,), verbose=0)
    >>> [r for r, _ in result.curves["conv"]]
    [0.0, 0.5]
    >>> result.suggest_ratios(max_drop=1.0)
    {'conv': 0.5}

    References:
        - Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017, §3.2.
    """
    if (eval_fn is None) == (data is None):
        raise ValueError(
            "Pass exactly one of `eval_fn` (a function model -> score) and "
            "`data` (an (x, y) pair)."
        )
    if eval_fn is not None and not callable(eval_fn):
        raise TypeError(
            f"`eval_fn` must be callable. Received: {type(eval_fn).__name__}"
        )
    check_int(batch_size, "batch_size", 1)
    check_bool(recalibrate, "recalibrate")
    allowed = option_names("sensitivity")
    unknown = set(plan_kwargs) - set(allowed)
    if unknown:
        raise TypeError(
            f"Unexpected keyword arguments {sorted(unknown)}: besides its own, "
            "`sensitivity_analysis` takes these planning options of "
            f"`plan_pruning`: {', '.join(a for a in allowed if a != 'criterion')}."
        )
    PlanOptions.from_kwargs(criterion=criterion, **plan_kwargs)  # checked at once
    ratios = _check_ratios(_DEFAULT_RATIOS if ratios is None else ratios)
    criteria_lib.get(criterion)  # unknown names fail before any work
    active = isinstance(criterion, str) and criteria_lib.is_active(criterion)
    score_data = None
    if active:
        if data is None:
            raise ValueError(
                f"`criterion='{criterion}'` is active and scores activations: pass "
                "`data=(x, y)`, or use a passive criterion with `eval_fn`."
            )
        score_data = data if criteria_lib.needs_gradients(criterion) else data[0]
    # Traced once (graph_of remembers): every plan and every mask reuses it.
    scores = score_filters(model, criterion, score_data)
    plans, warned = {}, set()
    for r in ratios:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FilterPruneWarning)
            plans[r] = plan_pruning(model, r, criterion, scores=scores, **plan_kwargs)
        for w in caught:  # each fact once (a frozen layer), not once per ratio
            if not issubclass(w.category, FilterPruneWarning):
                warnings.warn_explicit(
                    w.message, w.category, w.filename, w.lineno, source=w.source
                )
            elif str(w.message) not in warned:
                warned.add(str(w.message))
                warn(w.message, w.category)
    selected = _select_groups(plans[ratios[0]], groups)

    clone = keras.models.clone_model(model, clone_function=_copy, recursive=True)
    clone.set_weights(model.get_weights())
    if eval_fn is not None:
        if getattr(model, "compiled", False):
            clone.compile_from_config(model.get_compile_config())
        evaluate = eval_fn
        metric = getattr(eval_fn, "__name__", "score")
        if metric == "<lambda>":
            metric = "score"
    else:
        evaluate, metric = _data_evaluator(model, clone, data, batch_size)

    def score_of(m: keras.Model) -> float:
        value = evaluate(m)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError(
                f"`eval_fn` must return a number. Received: {value!r}"
            ) from None
        if not math.isfinite(value):
            raise ValueError(f"The evaluation returned a non-finite score: {value}.")
        return value

    progbar = keras.utils.Progbar(
        1 + len(selected) * len(ratios), verbose=verbose, unit_name="evaluation"
    )
    baseline = score_of(clone)
    progbar.add(1)
    if recalibrate and calibration_data is None and data is not None:
        calibration_data = data[0][:_CALIBRATION_EXAMPLES]
    if not recalibrate:
        calibration_data = None
    statistics = {
        id(layer): (layer, layer.get_weights())
        for layer in all_layers(clone)
        if has_statistics(layer)
    }
    curves, members, widths, kept = {}, {}, {}, {}
    originals: dict[str, list[np.ndarray]] = {}
    for group in selected:
        name = next(iter(group.producers))
        members[name] = list(group.producers)
        widths[name] = group.width
        points, kept[name] = [(0.0, baseline)], [group.width]
        for r in ratios:
            kept[name].append(
                len(next(g for g in plans[r].groups if g.id == group.id).keep)
            )
            masks = weight_masks(model, _one_group_plan(plans[r], group.id))
            for path, layer_masks in masks.items():
                if path not in originals:
                    originals[path] = layer_by_path(model, path).get_weights()
                values = [
                    w if m is None else w * m
                    for w, m in zip(originals[path], layer_masks)
                ]
                layer_by_path(clone, path).set_weights(values)
            if calibration_data is not None:
                recalibrate_batchnorm(clone, calibration_data, batch_size=batch_size)
            points.append((r, score_of(clone)))
            for path in masks:
                layer_by_path(clone, path).set_weights(originals[path])
            if calibration_data is not None:
                for layer, values in statistics.values():
                    layer.set_weights(values)
            progbar.add(1)
        curves[name] = points
    meta_name = criterion if isinstance(criterion, str) else criterion.__name__
    return SensitivityResult(baseline, curves, members, widths, metric, meta_name, kept)
