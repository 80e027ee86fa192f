"""`PruningCallback`: filter pruning inside `model.fit`.

The callback only schedules: at the chosen epochs (or steps) it asks the planner
(`plan_pruning`, within the previous plan in hard mode) and the masks
(`keras_filterprune.masking`) to act on the model; `pruned_model()` runs the
surgery (`apply_plan`). The model is traced once per `fit`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import keras

from keras_filterprune._cost import pruned_macs
from keras_filterprune._training import compile_like
from keras_filterprune._validation import (
    PlanOptions,
    check_choice,
    check_epochs,
    check_int,
    check_ratio,
)
from keras_filterprune.exceptions import FilterPruneWarning
from keras_filterprune.graph import trace_channels
from keras_filterprune.masking import VariableMasks, graph_masks
from keras_filterprune.plan import PruningPlan, plan_pruning, recover_plan
from keras_filterprune.schedules import (
    _deserialize_schedule,
    _serialize_schedule,
    ask,
    check_schedule,
)
from keras_filterprune.surgery import apply_plan

__all__ = ["PruningCallback"]

logger = logging.getLogger(__name__)

_DEFAULT_RATIO = 0.5


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
      those weights are masked too (`keras_filterprune.masking.VariableMasks`),
      so they do not push the weights back. Each event scores the live filters
      as the physically pruned model would (`plan_pruning(..., within=plan)`,
      no surgery during `fit`) and removes more filters only among those still
      kept: widths never grow back (Li et al. 2017, §3.3, iterative pruning). A
      schedule whose ratio decreases keeps the previous widths.

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
        criterion: str | Any = "operator_norm",
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
        self._options = PlanOptions.from_kwargs(
            criterion,
            per_layer=per_layer,
            exclude=exclude,
            group_reduction=group_reduction,
            round_to=round_to,
            min_filters=min_filters,
        )
        self.ratio = check_ratio(ratio, "ratio")
        self.epochs = check_epochs(epochs)
        self.schedule = check_schedule(schedule)
        if schedule is not None and self.epochs is not None:
            raise ValueError(
                "Pass either `epochs` (prune at these epoch ends with `ratio`) or "
                "`schedule` (it decides when and how much), not both. Received: "
                f"epochs={self.epochs}, schedule={schedule!r}"
            )
        if schedule is not None and self.ratio != _DEFAULT_RATIO:
            raise ValueError(
                "`ratio` is unused when `schedule` is given (the schedule gives "
                f"the ratios): leave it out. Received: ratio={ratio}, "
                f"schedule={schedule!r}"
            )
        self.schedule_unit = check_choice(
            schedule_unit, "schedule_unit", ("step", "epoch")
        )
        self.mode = check_choice(mode, "mode", ("soft", "hard"))
        if self._options.active and data is None:
            raise ValueError(
                f"`criterion='{criterion}'` is an active criterion: it scores "
                "activations and needs `data` (a few batches of model inputs, or "
                "(x, y) for 'taylor'). Pass `data=...` or choose a passive "
                "criterion such as 'operator_norm'."
            )
        self.data = data
        self.verbose = check_int(verbose, "verbose")
        self._reset()

    # The planner options, as the constructor received them.
    criterion = property(lambda self: self._options.criterion)
    per_layer = property(lambda self: self._options.per_layer)
    exclude = property(lambda self: self._options.exclude)
    group_reduction = property(lambda self: self._options.group_reduction)
    round_to = property(lambda self: self._options.round_to)
    min_filters = property(lambda self: self._options.min_filters)

    # -- state --------------------------------------------------------------
    def _reset(self) -> None:
        self.plan: PruningPlan | None = None
        self.history: list[dict] = []
        self._graph = None
        self._masks: VariableMasks | None = None
        self._macs_base: int | None = None
        self._macs_ratio = 1.0
        self._epoch = 0
        self._last_step: int | None = None
        self._started = False
        self._trained_since_event = False

    # -- Keras hooks ----------------------------------------------------------
    def on_train_begin(self, logs=None) -> None:
        self._reset()
        self._graph = trace_channels(self.model, warn=False)  # once per fit
        self._graph.resolve(self.per_layer, "per_layer")
        self._graph.exclusions(self.exclude)
        try:
            self._macs_base = self._graph.profile.total_macs
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
            plan = recover_plan(self.model, exclude=self.exclude, graph=self._graph)
            if plan is not None:
                self._adopt(plan)
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
        if self.mode == "hard" and self._masks is not None:
            if not self._masks.complete:  # the optimizer was built since
                self._masks = self._variable_masks(self.plan)
            self._masks()
        if self.plan is not None:
            self._trained_since_event = True

    def on_epoch_end(self, epoch, logs=None) -> None:
        self._epoch = epoch = int(epoch)
        if self.schedule is None:
            if self.epochs is None or epoch in self.epochs:
                self._event(self.ratio, epoch, self._global_step())
        elif self.schedule_unit == "epoch":
            should, ratio = ask(self.schedule, epoch, "epoch")
            if should:
                self._event(ratio, epoch, self._global_step())
        if logs is not None and self._macs_ratio is not None:
            logs["pruned_macs_ratio"] = float(self._macs_ratio)

    def on_train_end(self, logs=None) -> None:
        if self.mode == "hard" and self._masks is not None:
            self._masks()

    # -- events ---------------------------------------------------------------
    def _global_step(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _step_events(self, step: int) -> None:
        last = self._last_step if self._last_step is not None else step - 1
        if step <= last:
            return
        todo = None
        for s in range(last + 1, step + 1):
            should, ratio = ask(self.schedule, s, "step")
            if should:
                todo = (s, ratio)
        self._last_step = step
        if todo is not None:
            self._event(todo[1], self._epoch, todo[0])

    def _event(self, ratio: float, epoch: int, step: int) -> None:
        if ratio <= 0.0:
            return  # TFMOT: a zero sparsity skips the step
        prev = self.plan if self.mode == "hard" and self.plan else None
        o = self._options
        plan = plan_pruning(
            self.model,
            ratio,
            o.criterion,
            per_layer=o.per_layer,
            exclude=o.exclude,
            group_reduction=o.group_reduction,
            round_to=o.round_to,
            min_filters=o.min_filters,
            data=self.data,
            within=prev if prev is not None and prev.num_removed else None,
            graph=self._graph,
            verbose=1 if self.verbose > 1 else 0,
        )
        macs = self._adopt(plan)
        self._masks()
        if self.mode == "soft":  # zeroed once; the filters may regrow
            self._masks = None
        self._trained_since_event = False
        self.history.append(
            {
                "epoch": int(epoch),
                "step": int(step),
                "ratio": float(ratio),
                "kept": [len(g.keep) for g in plan.groups],
                "macs": macs,
                "macs_ratio": self._macs_ratio,
            }
        )
        share = "" if macs is None else f", {self._macs_ratio:.1%} of the MACs"
        self._log(
            f"Epoch {epoch + 1}, step {step}: {self.mode}-pruned {ratio:.1%} of the "
            f"filters ({plan.num_removed} channels removed{share})."
        )

    def _adopt(self, plan: PruningPlan) -> int | None:
        """Makes `plan` current: its masks and its MACs (returned)."""
        self.plan = plan
        self._masks = self._variable_masks(plan)
        if self._macs_base is None:
            self._macs_ratio = None
            return None
        macs = pruned_macs(self._graph, plan.keep_flags(self._graph))
        self._macs_ratio = macs / self._macs_base if self._macs_base else 1.0
        return macs

    def _variable_masks(self, plan: PruningPlan) -> VariableMasks:
        masks = graph_masks(self._graph, plan.keep_flags(self._graph))
        return VariableMasks(self.model, masks, slots=self.mode == "hard")

    def _log(self, message: str) -> None:
        if self.verbose:
            logger.info(message)

    # -- results --------------------------------------------------------------
    def pruned_model(self, compile: bool = True) -> keras.Model:
        """The trained model with the last plan's filters physically removed.

        `apply_plan` on the current weights. With `compile=True` the new model is
        compiled like the trained one (same loss, metrics and options, a fresh
        optimizer of the same config), ready to fine-tune; if the compile config
        cannot be rebuilt (a lambda, an unregistered custom metric), with the
        same loss and a fresh optimizer only, and a `FilterPruneWarning`.

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
        pruned = apply_plan(model, self.plan, graph=self._graph)
        if compile and model.get_compile_config():
            compile_like(pruned, model)
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
