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

from keras_filterprune import _validation as check
from keras_filterprune import plan as planning
from keras_filterprune import schedules
from keras_filterprune._training import compile_like
from keras_filterprune.exceptions import FilterPruneWarning
from keras_filterprune.graph import trace_channels
from keras_filterprune.masking import VariableMasks, graph_masks, hold_masks
from keras_filterprune.plan import PruningPlan, plan_pruning, recover_plan
from keras_filterprune.surgery import apply_plan

__all__ = ["PruningCallback"]

logger = logging.getLogger(__name__)

_CONFIG_KEYS = (
    "criterion ratio epochs schedule schedule_unit mode per_layer exclude data "
    "group_reduction round_to min_filters verbose"
).split()


@keras.saving.register_keras_serializable(package="keras_filterprune")
class PruningCallback(keras.callbacks.Callback):
    """Prunes filters during `model.fit`: soft (SFP) or hard (iterative) pruning.

    At each pruning event the callback plans on the current weights
    (`plan_pruning`) and zeroes the removed filters of every group member
    (`keras_filterprune.masking`), so the model computes what the smaller model
    of `apply_plan` would.

    - `mode="soft"` (Soft Filter Pruning, He et al. 2018): filters are zeroed at
      each event (for one optimizer step) and may regrow; every event re-scores
      all filters. From the last event of the `fit` on (when Keras says how long
      it runs), the masks are held as in hard mode.
    - `mode="hard"`: removed filters stay exactly zero: the masks are held as
      variable constraints, applied by Keras' optimizers after every step on
      every backend. Each event scores the live filters as the physically
      pruned model would (`plan_pruning(..., within=plan)`) and removes more
      only among those still kept: widths never grow back (Li et al. 2017,
      §3.3). A schedule whose ratio decreases keeps the previous widths.

    Events happen at the end of each epoch in `epochs` (0-based; `None`: every
    epoch) with `ratio`, or when `schedule` says so: `ConstantRatio`,
    `PolynomialRatio`, any `tfmot.sparsity.keras.PruningSchedule` or a callable
    `schedule(step) -> (should_prune, ratio)`, called with the global step
    (`model.optimizer.iterations`: 0 before the first batch, then after every
    batch, every step of a `steps_per_execution` block checked) or, with
    `schedule_unit="epoch"`, the epoch index at each epoch end. Ratio 0 skips
    the event, as in TFMOT, unless `per_layer` ratios are set.

    The state is reset in `on_train_begin`. In hard mode, a run that continues
    training (optimizer step > 0: `BackupAndRestore`, a second `fit`) first
    recovers the plan from the filters that are exactly zero. List the callback
    before `BackupAndRestore`, `CSVLogger` and `TensorBoard`: every epoch end
    writes `pruned_macs_ratio` (pruned / original MACs) into `logs`. With
    `verbose`, events are logged at INFO level by `keras_filterprune.callbacks`.

    Args:
        criterion: `str` or callable. Importance criterion (see
            `keras_filterprune.criteria`; active ones score `data`). Defaults to
            `"operator_norm"`.
        ratio: `float` in [0, 1). Fraction of each group's filters to remove at
            each event when `schedule` is `None`. Defaults to `0.5`.
        epochs: Sequence of 0-based epoch indices at whose end to prune, or
            `None` (every epoch when `schedule` is `None`). Not combinable with
            `schedule`. Defaults to `None`.
        schedule: A ratio schedule (see above). Defaults to `None`.
        schedule_unit: `"step"` or `"epoch"`: what `schedule` is called with.
            Defaults to `"step"`.
        mode: `"soft"` or `"hard"`. Defaults to `"soft"`.
        per_layer, exclude, group_reduction, round_to, min_filters: As in
            `plan_pruning`, at every event (one validation for both).
        data: Data for active criteria (see `score_filters`). Defaults to `None`.
        verbose: `int`. `0`: silent; `1`: log each event at INFO level; `2`: also
            progress bars of active criteria. Defaults to `1`.

    Attributes:
        plan: The `PruningPlan` of the last event (or recovered), or `None`.
        history: `list[dict]`, one per event: `epoch`, `step`, `ratio`, `kept`
            (kept channels per group, by group id), `macs` and `macs_ratio` of the
            pruned architecture (`None` when the model's MACs are unknown).

    Raises:
        ValueError: bad values, `ratio` or `epochs` with `schedule`, an active
            criterion without `data`; in `fit`, a schedule ratio outside [0, 1)
            (naming the step) or unknown layer names (before the first batch).
        TypeError: arguments of the wrong type; in `fit`, a subclassed model
            whose `call()` cannot be traced.

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
        ratio: float = 0.5,
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
        self._options = check.PlanOptions.from_kwargs(
            criterion,
            per_layer=per_layer,
            exclude=exclude,
            group_reduction=group_reduction,
            round_to=round_to,
            min_filters=min_filters,
        )
        self.__dict__.update(self._options.as_kwargs())  # criterion, exclude, …
        self.ratio = check.check_ratio(ratio, "ratio")
        self.epochs = check.check_epochs(epochs)
        self.schedule = schedules.check_schedule(
            schedule, epochs=self.epochs, ratio=None if ratio == 0.5 else ratio
        )
        self.schedule_unit = check.check_choice(
            schedule_unit, "schedule_unit", ("step", "epoch")
        )
        self.mode = check.check_choice(mode, "mode", ("soft", "hard"))
        self.data = self._options.check_data(data)
        self.verbose = check.check_int(verbose, "verbose")
        self._reset()

    def _reset(self) -> None:
        hold_masks(None, getattr(self, "_held", None), None)  # a crashed fit's
        self.plan, self.history = None, []  # PruningPlan | None, list[dict]
        self._masks: VariableMasks | None = None
        self._held, self._release = None, False  # the masks held by constraints
        self._graph = self._macs_base = self._last_step = self._final = None
        self._epoch, self._macs_ratio = 0, 1.0
        self._started = self._trained_since_event = False

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
        # First batch: every on_train_begin (BackupAndRestore's too) has run.
        self._started = True
        step = self._global_step()
        if self.mode == "hard" and step > 0:
            plan = recover_plan(self.model, exclude=self.exclude, graph=self._graph)
            if plan is not None:
                self._adopt(plan)
                if self.verbose:
                    logger.info(
                        f"Recovered the pruning plan from the zeroed filters at "
                        f"step {step}: {plan.num_removed} channels removed."
                    )
        # A continued run's current step was checked by the run that made it.
        self._last_step = step if step > 0 else -1
        if self.schedule is not None and self.schedule_unit == "step":
            self._step_events(step)

    def on_train_batch_end(self, batch, logs=None) -> None:
        if self.schedule is not None and self.schedule_unit == "step":
            self._step_events(self._global_step())
        if self._release:  # soft: one step under the masks, then free to regrow
            self._held = hold_masks(self.model, self._held, None)
            self._masks, self._release = None, False
        elif self.plan is not None and self._masks is None:
            self._trained_since_event = True

    def on_epoch_end(self, epoch, logs=None) -> None:
        self._epoch = epoch = int(epoch)
        if self.schedule is None:
            if self.epochs is None or epoch in self.epochs:
                self._event(self.ratio, epoch, self._global_step())
        elif self.schedule_unit == "epoch":
            should, ratio = schedules.ask(self.schedule, epoch, "epoch")
            if should:
                self._event(ratio, epoch, self._global_step())
        if logs is not None and self._macs_ratio is not None:
            logs["pruned_macs_ratio"] = float(self._macs_ratio)

    def on_train_end(self, logs=None) -> None:
        if self._masks is not None:
            self._masks()
        self._held = hold_masks(None, self._held, None)

    def _global_step(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _step_events(self, step: int) -> None:
        last = step - 1 if self._last_step is None else self._last_step
        todo = schedules.last_due_step(self.schedule, last, step)
        self._last_step = max(step, last)
        if todo is not None:
            self._event(todo[1], self._epoch, todo[0])

    def _event(self, ratio: float, epoch: int, step: int) -> None:
        if ratio <= 0.0 and not self.per_layer:
            return  # TFMOT: a zero sparsity skips the step
        prev = self.plan if self.mode == "hard" and self.plan else None
        plan = plan_pruning(
            self.model,
            ratio,
            **self._options.as_kwargs(),
            data=self.data,
            within=prev if prev is not None and prev.num_removed else None,
            graph=self._graph,
            verbose=1 if self.verbose > 1 else 0,
        )
        hold = self.mode == "hard" or self._is_final(epoch, step)
        macs = self._adopt(plan, hold)
        self._release = not hold  # soft: held for one step; the filters regrow
        self._trained_since_event = False
        kept = [len(g.keep) for g in plan.groups]
        event = dict(epoch=int(epoch), step=int(step), ratio=float(ratio), kept=kept)
        self.history.append({**event, "macs": macs, "macs_ratio": self._macs_ratio})
        share = "" if macs is None else f", {self._macs_ratio:.1%} of the MACs"
        if self.verbose:
            logger.info(
                f"Epoch {epoch + 1}, step {step}: {self.mode}-pruned {ratio:.1%} of "
                f"the filters ({plan.num_removed} channels removed{share})."
            )

    def _is_final(self, epoch: int, step: int) -> bool:  # False when unknown
        unit = "epoch" if self.schedule is None else self.schedule_unit
        at = epoch if unit == "epoch" else step
        if self._final is None:  # math.inf when the fit's length is unknown
            self._final = schedules.final_event(
                self.schedule, unit, self.epochs, self.params or {}, epoch, step
            )
        return at >= self._final

    def _adopt(self, plan: PruningPlan, slots: bool = True) -> int | None:
        """Makes `plan` current: its masks and its MACs (returned)."""
        self.plan, self._masks = plan, self._variable_masks(plan, slots)
        self._masks()  # zeroed now (seen at once, except mid-epoch under JAX)
        # ...and after every optimizer step, on any backend (variable constraints)
        self._held = hold_masks(self.model, self._held, self._masks)
        base = self._macs_base
        macs = None if base is None else planning.estimate_macs(self.model, plan)
        self._macs_ratio = None if macs is None else macs / base if base else 1.0
        return macs

    def _variable_masks(self, plan: PruningPlan, slots: bool = True) -> VariableMasks:
        masks = graph_masks(self._graph, plan.keep_flags(self._graph))
        return VariableMasks(self.model, masks, slots=slots)

    def pruned_model(self, compile: bool = True) -> keras.Model:
        """The trained model with the last plan's filters physically removed.

        `apply_plan` on the current weights, compiled like the trained model
        when `compile` (a fresh optimizer; the loss only, with a warning, if the
        compile config cannot be rebuilt). Its outputs equal the trained model's
        unless soft-pruned filters regrew after the last event (warned).

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

    def get_config(self) -> dict:
        """The constructor arguments. JSON-serialisable when `criterion` is a
        name, `schedule` one of ours or TFMOT's and `data` is `None`."""
        config = {k: getattr(self, k) for k in _CONFIG_KEYS}
        config["epochs"] = None if self.epochs is None else list(self.epochs)
        config["schedule"] = schedules._serialize_schedule(self.schedule)
        config["per_layer"] = None if self.per_layer is None else dict(self.per_layer)
        config["exclude"] = None if self.exclude is None else list(self.exclude)
        return config

    @classmethod
    def from_config(cls, config: Mapping) -> PruningCallback:
        config = dict(config)
        config["schedule"] = schedules._deserialize_schedule(config.get("schedule"))
        return cls(**config)
