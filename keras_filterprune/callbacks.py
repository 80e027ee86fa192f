"""`PruningCallback`: filter pruning inside `model.fit`.

The callback only schedules: at the chosen epochs (or steps) it plans on the current
weights (`plan_pruning`), zeroes the removed filters with `weight_masks` and, in
hard mode, keeps them at zero; `pruned_model()` runs the surgery (`apply_plan`).
"""

from __future__ import annotations

import dataclasses
import logging
import numbers
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import keras
import numpy as np

from keras_filterprune import criteria as criteria_lib
from keras_filterprune.exceptions import FilterPruneWarning
from keras_filterprune.graph import trace_channels
from keras_filterprune.plan import GroupPlan, PruningPlan, plan_pruning
from keras_filterprune.profile import count_macs
from keras_filterprune.schedules import (
    _check_ratio,
    _deserialize_schedule,
    _serialize_schedule,
)
from keras_filterprune.scoring import producer_kernel, score_filters
from keras_filterprune.surgery import apply_plan, weight_masks
from keras_filterprune.walk import check_model

__all__ = ["PruningCallback"]

logger = logging.getLogger(__name__)

_MODES = ("soft", "hard")
_UNITS = ("step", "epoch")
_REDUCTIONS = ("mean", "sum", "max", "l2")
_DEFAULT_RATIO = 0.5


def _check_epochs(epochs) -> tuple[int, ...] | None:
    if epochs is None:
        return None
    if isinstance(epochs, (str, bytes, numbers.Number)) or not isinstance(
        epochs, Iterable
    ):
        raise TypeError(
            "`epochs` must be a sequence of 0-based epoch indices, e.g. (0, 2, 4). "
            f"Received: epochs={epochs!r}"
        )
    epochs = list(epochs)
    for e in epochs:
        if isinstance(e, bool) or not isinstance(e, numbers.Integral):
            raise TypeError(
                f"`epochs` must hold ints (0-based epoch indices). Received: "
                f"epochs={epochs!r}"
            )
    if not epochs:
        raise ValueError(
            "`epochs` must name at least one epoch (or be None: every epoch). "
            "Received: epochs=[]"
        )
    if min(epochs) < 0:
        raise ValueError(
            f"`epochs` must be 0-based epoch indices >= 0. Received: epochs={epochs}"
        )
    return tuple(sorted({int(e) for e in epochs}))


def _layer_by_path(model: keras.Model, path: str):
    obj = model
    for part in path.split("/"):
        obj = obj.get_layer(part)
    return obj


def _to_bool(value) -> bool:
    return bool(np.asarray(value))


def _to_float(value) -> float:
    return float(np.asarray(value))


# ---------------------------------------------------------------------------
# Plans kept within a previous plan (hard mode), plans recovered from zeros
# ---------------------------------------------------------------------------


def _expand_scores(small: Mapping[str, np.ndarray], prev: PruningPlan) -> dict:
    """Scores of the physically pruned model, put back on the original filters.

    Removed filters get the smallest kept score, so the planner's per-producer
    normalisation (by the largest absolute score) is unchanged."""
    result = {}
    for path, scores in small.items():
        group = prev.group_of(path)
        kept = group.kept_filters(path)
        scores = np.asarray(scores, dtype=np.float64)
        fill = float(scores.min()) if scores.size else 0.0
        full = np.full(len(group.producers[path]), fill)
        full[np.asarray(kept, dtype=np.int64)] = scores
        result[path] = full
    return result


def _within(plan: PruningPlan, prev: PruningPlan) -> PruningPlan:
    """`plan`, with every group keeping a subset of what `prev` kept.

    Each group keeps its best-scored channels among those `prev` kept, as many as
    `plan` decided (never more than `prev` kept: removed filters do not return)."""
    by_id = {g.id: g for g in prev.groups}
    groups = []
    for g in plan.groups:
        p = by_id.get(g.id)
        if p is None or p.width != g.width:
            raise RuntimeError(
                "Internal error: a new pruning plan does not match the previous one. "
                "Please report this with the model."
            )
        n = min(len(g.keep), len(p.keep))
        candidates = np.asarray(p.keep, dtype=np.int64)
        if g.scores is not None and n < len(candidates):
            s = np.asarray(g.scores, dtype=np.float64)[candidates]
            order = np.argsort(-s, kind="stable")[:n]
            keep = sorted(int(c) for c in candidates[order])
        else:
            keep = [int(c) for c in candidates[:n]]
        groups.append(dataclasses.replace(g, keep=keep))
    return PruningPlan(groups, plan.model_name, plan.meta)


def _recover_plan(model: keras.Model, exclude) -> PruningPlan | None:
    """The plan whose removed filters are exactly zero in `model` (hard mode
    resumed from a checkpoint), or `None` when no filter is zero."""
    graph = trace_channels(model, exclude=exclude, warn=False)
    groups, removed = [], 0
    for g in graph.groups:
        keep = list(range(g.width))
        if not g.frozen:
            zero = np.ones(g.width, dtype=bool)
            for path, channels in g.producers.items():
                kernel = producer_kernel(graph.walk.layers[path])
                flat = kernel.reshape(-1, kernel.shape[-1])
                alive = np.any(flat != 0, axis=0)
                zero[np.asarray(channels)[alive]] = False
            keep = [c for c in range(g.width) if not zero[c]] or [0]
        removed += g.width - len(keep)
        groups.append(
            GroupPlan(
                id=g.id,
                width=g.width,
                producers={p: c.tolist() for p, c in g.producers.items()},
                members=list(g.members),
                keep=keep,
                frozen=g.frozen,
            )
        )
    if not removed:
        return None
    plan = PruningPlan(groups, model.name, {"recovered": True})
    # Only trust it if every masked weight is zero (bias, BN beta, … included).
    for path, masks in weight_masks(model, plan).items():
        layer = _layer_by_path(model, path)
        for variable, mask in zip(layer.weights, masks):
            if mask is None:
                continue
            value = keras.ops.convert_to_numpy(variable)
            if np.any(value * (1 - mask) != 0):
                return None
    return plan


# ---------------------------------------------------------------------------
# Optimizer slots
# ---------------------------------------------------------------------------


def _slot_variables(model: keras.Model) -> tuple[dict[int, list], list[str]]:
    """Model variable id → the optimizer variables that track it elementwise.

    Keras 3 optimizers name the variables they create for a model variable
    `{variable.path with "/" → "_"}_{slot}` (`add_variable_from_reference`), and
    `optimizer.variables` (public) lists them all, those of a wrapped optimizer
    (`LossScaleOptimizer`) included. A slot is matched to the model variable with
    the longest such prefix and the same shape. Returns the map and the paths
    whose prefix is ambiguous (their slots are left alone).
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return {}, []
    by_key: dict[str, list] = {}
    for v in model.trainable_variables:
        by_key.setdefault(v.path.replace("/", "_"), []).append(v)
    ambiguous = sorted(k for k, vs in by_key.items() if len(vs) > 1)
    result: dict[int, list] = {}
    for slot in optimizer.variables:
        name = str(slot.name)
        parts = name.split("_")
        for cut in range(len(parts) - 1, 0, -1):
            owners = by_key.get("_".join(parts[:cut]))
            if owners is None:
                continue
            if len(owners) == 1 and tuple(owners[0].shape) == tuple(slot.shape):
                result.setdefault(id(owners[0]), []).append(slot)
            break
    return result, ambiguous


def _masker(pairs: tuple) -> Callable[[], None]:
    """A function multiplying each variable by its mask: one compiled call on the
    TensorFlow backend (one op per variable per batch would cost more than a
    small model's training step), a plain loop elsewhere."""

    def apply() -> None:
        for variable, mask in pairs:
            variable.assign(variable * mask)

    if not pairs:
        return lambda: None
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(apply, autograph=False)
    return apply


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


def _compile_like(new: keras.Model, model: keras.Model) -> None:
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
    except Exception:
        done = "returned uncompiled"
    warnings.warn(
        f"The pruned model could not be compiled like the trained model "
        f"({error!r}); it is {done}. Compile it yourself before fine-tuning.",
        FilterPruneWarning,
        stacklevel=3,
    )


# ---------------------------------------------------------------------------
# The callback
# ---------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="keras_filterprune")
class PruningCallback(keras.callbacks.Callback):
    """Prunes filters during `model.fit`: soft (SFP) or hard (iterative) pruning.

    At each pruning event the callback plans on the current weights
    (`plan_pruning`: the channel groups' lowest-scored filters) and zeroes the
    removed filters of every group member with `weight_masks` (kernels, biases,
    BatchNorm gamma/beta, depthwise slices and the consumers' input rows), so the
    model computes what the smaller model of `apply_plan` would.

    - `mode="soft"` (Soft Filter Pruning, He et al. 2018): filters are zeroed once
      per event and may regrow; every event re-scores all filters.
    - `mode="hard"`: removed filters stay exactly zero for the rest of training.
      The masks are re-applied after every batch, and the optimizer's slots for
      those weights (Adam moments, SGD momentum, EMA averages, gradient
      accumulators: the variables `optimizer.variables` names after a model
      variable, see Keras' `add_variable_from_reference`) are multiplied by the
      masks too, so they do not push the weights back. Each event scores the
      physically pruned model (`apply_plan` of the previous plan) and removes
      more filters only among those still kept: widths never grow back (Li et
      al. 2017, §3.3, iterative pruning). A schedule whose ratio decreases keeps
      the previous widths.

    When events happen:

    - `schedule=None`: at the end of each epoch listed in `epochs` (0-based
      indices, as Keras passes them to `on_epoch_end`; `None`: every epoch),
      removing `ratio` of each group.
    - `schedule` given (`ConstantRatio`, `PolynomialRatio`, any
      `tfmot.sparsity.keras.PruningSchedule` or a callable with the same
      contract: `schedule(step) -> (should_prune, ratio)`, tensors allowed): with
      `schedule_unit="step"` (the default, TFMOT's convention) it is called with
      the global step, `model.optimizer.iterations`, i.e. the number of
      optimizer updates done: step 0 before the first batch, then after every
      batch (all steps of a `steps_per_execution` block are checked; the last
      one that prunes wins). With `schedule_unit="epoch"` it is called with the
      0-based epoch index at each epoch end. Events with ratio 0 are skipped, as
      in TFMOT.

    The global step survives `BackupAndRestore` and later `fit` calls. The state
    (`plan`, `history`) is reset in `on_train_begin`; in hard mode, a run that
    continues training (optimizer step > 0, e.g. resumed by `BackupAndRestore`
    or a second `fit`) first recovers the plan from the filters that are exactly
    zero, so its masks are kept. List the callback *before* `BackupAndRestore`
    (so a backup taken at an epoch end holds that epoch's masks) and before
    `CSVLogger`/`TensorBoard` (so they see `pruned_macs_ratio`).

    At every epoch end the callback writes `pruned_macs_ratio` (MACs of the
    pruned architecture / original MACs; 1.0 before the first event) into `logs`,
    so `History`, `CSVLogger` and `TensorBoard` record it. With `verbose`, each
    event is reported by the `keras_filterprune.callbacks` logger at INFO level
    (library code never prints; enable it with `logging.basicConfig(level="INFO")`).

    Args:
        criterion: `str` or callable. Importance criterion (see
            `keras_filterprune.criteria`). Active criteria (`"apoz"`, …) score
            activations of `data` at each event; passive ones need no data.
            Defaults to `"operator_norm"`.
        ratio: `float` in [0, 1). Fraction of each group's filters to remove at
            each event when `schedule` is `None`. Defaults to `0.5`.
        epochs: Sequence of 0-based epoch indices at whose end to prune, or
            `None` (every epoch when `schedule` is `None`). Not combinable with
            `schedule`. Defaults to `None`.
        schedule: A ratio schedule (see above), or `None`. Defaults to `None`.
        schedule_unit: `"step"` or `"epoch"`: what `schedule` is called with.
            Defaults to `"step"`.
        mode: `"soft"` or `"hard"`. Defaults to `"soft"`.
        per_layer: `dict` layer name → ratio, overriding the scheduled ratio for
            the groups of those layers at every event. Defaults to `None`.
        exclude: Layer names never to prune. Defaults to `None`.
        data: Data for active criteria (see `score_filters`). Defaults to `None`.
        group_reduction: `"mean"`, `"sum"`, `"max"` or `"l2"`. Defaults to
            `"mean"`.
        round_to: `int`. Keep a multiple of this many channels per group.
            Defaults to `1`.
        min_filters: `int`. Never keep fewer channels in a group. Defaults to `1`.
        verbose: `int`. `0`: silent; `1`: log each event at INFO level; `2`: also
            progress bars of active criteria. Defaults to `1`.

    Attributes:
        plan: The `PruningPlan` of the last event (or recovered), or `None`.
        history: `list[dict]`, one per event: `epoch`, `step`, `ratio`, `kept`
            (kept channels per group, by group id), `macs` and `macs_ratio` of the
            pruned architecture (`None` when the model's MACs are unknown).

    Raises:
        ValueError: bad ratios, epochs, mode, unit, reduction, `ratio` together
            with `schedule`, or an active criterion without `data`; during `fit`,
            a schedule ratio outside [0, 1) (naming the step or epoch) or unknown
            layer names in `per_layer`/`exclude` (before the first batch).
        TypeError: arguments of the wrong type; at the start of `fit`, a
            subclassed model.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> model = keras.Sequential([keras.Input((8, 8, 1)),
    ...     keras.layers.Conv2D(8, 3, name="conv"),
    ...     keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    >>> model.compile("adam", "sparse_categorical_crossentropy")
    >>> callback = PruningCallback("l1_norm", ratio=0.5, epochs=(0,), mode="hard",
    ...                            verbose=0)
    >>> x, y = np.random.rand(16, 8, 8, 1), np.random.randint(0, 2, 16)
    >>> _ = model.fit(x, y, epochs=2, callbacks=[callback], verbose=0)
    >>> callback.pruned_model().get_layer("conv").filters
    4

    References:
        - He et al., "Soft Filter Pruning for Accelerating Deep Convolutional
          Neural Networks", IJCAI 2018.
        - Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017.
        - Zhu & Gupta, "To prune, or not to prune", 2017 (TFMOT's schedules).
    """

    def __init__(
        self,
        criterion: str | Callable = "operator_norm",
        ratio: float = _DEFAULT_RATIO,
        epochs: Iterable[int] | None = None,
        *,
        schedule: Any = None,
        schedule_unit: str = "step",
        mode: str = "soft",
        per_layer: Mapping[str, float] | None = None,
        exclude: Iterable[str] | None = None,
        data: Any = None,
        group_reduction: str = "mean",
        round_to: int = 1,
        min_filters: int = 1,
        verbose: int = 1,
    ) -> None:
        super().__init__()
        criteria_lib.get(criterion)  # unknown names: ValueError; non-callables: Type
        self.criterion = criterion
        self.ratio = _check_ratio(ratio, "ratio")
        self.epochs = _check_epochs(epochs)
        if schedule is not None:
            if not callable(schedule):
                raise TypeError(
                    "`schedule` must be a ratio schedule (e.g. keras_filterprune."
                    "PolynomialRatio or a tfmot.sparsity.keras.PruningSchedule): a "
                    "callable `schedule(step) -> (should_prune, ratio)`. Received: "
                    f"schedule={schedule!r}"
                )
            if self.epochs is not None:
                raise ValueError(
                    "Pass either `epochs` (prune at these epoch ends with `ratio`) or "
                    "`schedule` (it decides when and how much), not both. Received: "
                    f"epochs={self.epochs}, schedule={schedule!r}"
                )
            if self.ratio != _DEFAULT_RATIO:
                raise ValueError(
                    "`ratio` is unused when `schedule` is given (the schedule gives "
                    f"the ratios): leave it out. Received: ratio={ratio}, "
                    f"schedule={schedule!r}"
                )
        self.schedule = schedule
        if schedule_unit not in _UNITS:
            raise ValueError(
                f"`schedule_unit` must be one of {_UNITS}. "
                f"Received: schedule_unit={schedule_unit!r}"
            )
        self.schedule_unit = schedule_unit
        if mode not in _MODES:
            raise ValueError(f"`mode` must be one of {_MODES}. Received: mode={mode!r}")
        self.mode = mode
        if per_layer is not None:
            if not isinstance(per_layer, Mapping):
                raise TypeError(
                    "`per_layer` must be a dict of layer name -> ratio. "
                    f"Received: per_layer={per_layer!r}"
                )
            per_layer = {
                str(k): _check_ratio(v, f"per_layer['{k}']")
                for k, v in per_layer.items()
            }
        self.per_layer = per_layer
        if isinstance(exclude, str):
            exclude = [exclude]
        if exclude is not None:
            exclude = list(exclude)
            if not all(isinstance(n, str) for n in exclude):
                raise TypeError(
                    "`exclude` must be layer names (str). "
                    f"Received: exclude={exclude!r}"
                )
        self.exclude = exclude
        if (
            isinstance(criterion, str)
            and criteria_lib.is_active(criterion)
            and data is None
        ):
            raise ValueError(
                f"`criterion='{criterion}'` is an active criterion: it scores "
                "activations and needs `data` (a few batches of model inputs, or "
                "(x, y) for 'taylor'). Pass `data=...` or choose a passive "
                "criterion such as 'operator_norm'."
            )
        self.data = data
        if group_reduction not in _REDUCTIONS:
            raise ValueError(
                f"`group_reduction` must be one of {_REDUCTIONS}. "
                f"Received: group_reduction={group_reduction!r}"
            )
        self.group_reduction = group_reduction
        for name, value in (("round_to", round_to), ("min_filters", min_filters)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"`{name}` must be an int. Received: {name}={value!r}")
            if value < 1:
                raise ValueError(f"`{name}` must be >= 1. Received: {name}={value}")
        self.round_to = int(round_to)
        self.min_filters = int(min_filters)
        if isinstance(verbose, bool) or not isinstance(verbose, numbers.Integral):
            raise TypeError(f"`verbose` must be an int. Received: verbose={verbose!r}")
        self.verbose = int(verbose)
        self._reset()

    # -- state --------------------------------------------------------------
    def _reset(self) -> None:
        self.plan: PruningPlan | None = None
        self.history: list[dict] = []
        self._mask_fn: Callable[[], None] = _masker(())
        self._slots_resolved = True
        self._macs_base: int | None = None
        self._macs_ratio = 1.0
        self._epoch = 0
        self._last_step: int | None = None
        self._started = False
        self._trained_since_event = False

    # -- Keras hooks ----------------------------------------------------------
    def on_train_begin(self, logs=None) -> None:
        self._reset()
        check_model(self.model)
        graph = trace_channels(self.model, exclude=self.exclude, warn=False)
        for name in self.per_layer or {}:
            paths = [
                p
                for p in graph.walk.layers
                if p == name or p.rsplit("/", 1)[-1] == name
            ]
            if not paths:
                raise ValueError(
                    f"`per_layer` names layer '{name}', which is not in model "
                    f"'{self.model.name}'."
                )
        try:
            self._macs_base = count_macs(self.model)
        except ValueError:  # unknown input size: MACs are not defined
            self._macs_base = None

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._epoch = int(epoch)

    def on_train_batch_begin(self, batch, logs=None) -> None:
        if self._started:
            return
        # First batch of this fit: every on_train_begin (BackupAndRestore's
        # restore included) has run.
        self._started = True
        step = self._global_step()
        if self.mode == "hard" and step > 0:
            plan = _recover_plan(self.model, self.exclude)
            if plan is not None:
                self.plan = plan
                self._set_masks(plan)
                self._macs_ratio = self._pruned_macs(plan)[1]
                self._log(
                    f"Recovered the pruning plan from the zeroed filters at step "
                    f"{step}: {plan.num_removed} channels removed."
                )
        # A continued run's current step was checked by the run that made it.
        self._last_step = step if step > 0 else -1
        if self.schedule is not None and self.schedule_unit == "step":
            self._step_events(step)

    def on_train_batch_end(self, batch, logs=None) -> None:
        if self.schedule is not None and self.schedule_unit == "step":
            self._step_events(self._global_step())
        if self.mode == "hard" and self.plan is not None:
            if not self._slots_resolved:
                self._set_masks(self.plan)
            self._mask_fn()
        if self.plan is not None:
            self._trained_since_event = True

    def on_epoch_end(self, epoch, logs=None) -> None:
        epoch = int(epoch)
        self._epoch = epoch
        if self.schedule is None:
            if self.epochs is None or epoch in self.epochs:
                self._event(self.ratio, epoch, self._global_step())
        elif self.schedule_unit == "epoch":
            should, ratio = self._ask(epoch)
            if should:
                self._event(ratio, epoch, self._global_step())
        if logs is not None and self._macs_ratio is not None:
            logs["pruned_macs_ratio"] = float(self._macs_ratio)

    def on_train_end(self, logs=None) -> None:
        if self.mode == "hard" and self.plan is not None:
            self._mask_fn()

    # -- events ---------------------------------------------------------------
    def _global_step(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _ask(self, step: int) -> tuple[bool, float]:
        should, ratio = self.schedule(step)
        should = _to_bool(should)
        ratio = _to_float(ratio)
        if should and not 0.0 <= ratio < 1.0:  # NaN fails too
            unit = self.schedule_unit
            raise ValueError(
                f"The pruning schedule returned ratio={ratio} at {unit} {step}; "
                f"ratios must be in [0, 1). Schedule: {self.schedule!r}"
            )
        return should, ratio

    def _step_events(self, step: int) -> None:
        last = self._last_step if self._last_step is not None else step - 1
        if step <= last:
            return
        todo = None
        for s in range(last + 1, step + 1):
            should, ratio = self._ask(s)
            if should:
                todo = (s, ratio)
        self._last_step = step
        if todo is not None:
            self._event(todo[1], self._epoch, todo[0])

    def _event(self, ratio: float, epoch: int, step: int) -> None:
        if ratio <= 0.0:
            return  # TFMOT: a zero sparsity skips the step
        plan = self._make_plan(ratio)
        self.plan = plan
        self._set_masks(plan)
        self._mask_fn()
        if self.mode == "soft":  # zeroed once; the filters may regrow
            self._mask_fn = _masker(())
        self._trained_since_event = False
        macs, macs_ratio = self._pruned_macs(plan)
        self._macs_ratio = macs_ratio
        self.history.append(
            {
                "epoch": int(epoch),
                "step": int(step),
                "ratio": float(ratio),
                "kept": [len(g.keep) for g in plan.groups],
                "macs": macs,
                "macs_ratio": macs_ratio,
            }
        )
        share = "" if macs_ratio is None else f", {macs_ratio:.1%} of the MACs"
        self._log(
            f"Epoch {epoch + 1}, step {step}: {self.mode}-pruned {ratio:.1%} of the "
            f"filters ({plan.num_removed} channels removed{share})."
        )

    def _plan_kwargs(self) -> dict:
        return {
            "per_layer": self.per_layer,
            "exclude": self.exclude,
            "group_reduction": self.group_reduction,
            "round_to": self.round_to,
            "min_filters": self.min_filters,
        }

    def _make_plan(self, ratio: float) -> PruningPlan:
        model = self.model
        prev = self.plan if self.mode == "hard" else None
        progress = 1 if self.verbose > 1 else 0
        if prev is None or prev.num_removed == 0:
            return plan_pruning(
                model,
                ratio,
                self.criterion,
                data=self.data,
                verbose=progress,
                **self._plan_kwargs(),
            )
        # Score the physically pruned model, as iterative pruning does; the zeroed
        # filters would otherwise bias relative criteria (operator norm, FPGM).
        small = apply_plan(model, prev)
        scores = score_filters(small, self.criterion, self.data, verbose=progress)
        plan = plan_pruning(
            model,
            ratio,
            self.criterion,
            scores=_expand_scores(scores, prev),
            **self._plan_kwargs(),
        )
        return _within(plan, prev)

    def _pruned_macs(self, plan: PruningPlan) -> tuple[int | None, float | None]:
        if self._macs_base is None:
            return None, None
        macs = count_macs(apply_plan(self.model, plan))
        return macs, macs / self._macs_base if self._macs_base else 1.0

    def _set_masks(self, plan: PruningPlan) -> None:
        """Pairs each masked variable (and, in hard mode, its optimizer slots)
        with its mask."""
        model = self.model
        pairs, unmatched = [], []
        slots: dict[int, list] = {}
        ambiguous: list[str] = []
        optimizer = getattr(model, "optimizer", None)
        if self.mode == "hard" and optimizer is not None:
            slots, ambiguous = _slot_variables(model)
            self._slots_resolved = bool(optimizer.built)
        for path, masks in weight_masks(model, plan).items():
            layer = _layer_by_path(model, path)
            for variable, mask in zip(layer.weights, masks):
                if mask is None:
                    continue
                tensor = keras.ops.convert_to_tensor(mask, dtype=variable.dtype)
                pairs.append((variable, tensor))
                for slot in slots.get(id(variable), ()):
                    pairs.append(
                        (slot, keras.ops.convert_to_tensor(mask, dtype=slot.dtype))
                    )
                if variable.path.replace("/", "_") in ambiguous:
                    unmatched.append(variable.path)
        if unmatched:
            warnings.warn(
                "The optimizer slots of these weights cannot be told apart by name "
                f"(their paths collide), so they are not masked: {unmatched[:5]}. "
                "The masked weights themselves are still zeroed after every batch.",
                FilterPruneWarning,
                stacklevel=2,
            )
        self._mask_fn = _masker(tuple(pairs))

    def _log(self, message: str) -> None:
        if self.verbose:
            logger.info(message)

    # -- results --------------------------------------------------------------
    def pruned_model(self, compile: bool = True) -> keras.Model:
        """The trained model with the last plan's filters physically removed.

        `apply_plan` on the current weights. With `compile=True` the new model is
        compiled like the trained one (`get_compile_config()` /
        `compile_from_config()`: same loss, metrics and options, and a fresh
        optimizer of the same config), ready to fine-tune. Loss functions
        passed to `compile` need no registration; if the compile config still
        cannot be rebuilt (a lambda, an unregistered custom metric), the model is
        compiled with the same loss and a fresh optimizer only, with a
        `FilterPruneWarning`.

        In hard mode, and in soft mode when the last event came at the end of
        training, its outputs equal the trained model's. In soft mode with
        training after the last event, the regrown filters are removed and a
        `FilterPruneWarning` says so: fine-tune the result.

        Args:
            compile: `bool`. Compile the pruned model. Defaults to `True`.

        Returns:
            A new, smaller `keras.Model`.

        Raises:
            ValueError: no pruning event has happened yet.
        """
        model = getattr(self, "model", None)
        if self.plan is None or model is None:
            raise ValueError(
                "No pruning event has happened yet, so there is no pruned model: "
                "call `model.fit(..., callbacks=[callback])` with an epoch or step "
                "that prunes (see `epochs` and `schedule`) first."
            )
        if self.mode == "soft" and self._trained_since_event:
            last = self.history[-1] if self.history else {}
            warnings.warn(
                "Soft pruning: the zeroed filters were trained again after the last "
                f"pruning event (epoch {last.get('epoch')}, step "
                f"{last.get('step')}), so the pruned model's outputs differ from the "
                "trained model's. Fine-tune it, prune at the last epoch, or use "
                "mode='hard'.",
                FilterPruneWarning,
                stacklevel=2,
            )
        pruned = apply_plan(model, self.plan)
        if compile and model.get_compile_config():
            _compile_like(pruned, model)
        return pruned

    # -- config ---------------------------------------------------------------
    def get_config(self) -> dict:
        """The constructor arguments. JSON-serialisable when `criterion` is a
        name, `schedule` one of ours or TFMOT's and `data` is `None`."""
        return {
            "criterion": self.criterion,
            "ratio": self.ratio,
            "epochs": None if self.epochs is None else list(self.epochs),
            "schedule": _serialize_schedule(self.schedule),
            "schedule_unit": self.schedule_unit,
            "mode": self.mode,
            "per_layer": None if self.per_layer is None else dict(self.per_layer),
            "exclude": None if self.exclude is None else list(self.exclude),
            "data": self.data,
            "group_reduction": self.group_reduction,
            "round_to": self.round_to,
            "min_filters": self.min_filters,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config: Mapping) -> PruningCallback:
        config = dict(config)
        config["schedule"] = _deserialize_schedule(config.get("schedule"))
        return cls(**config)
