"""`PruningCallback`: filter pruning inside `model.fit`.

The callback only schedules: at the chosen epochs (or steps) it asks the planner
(`plan_pruning`, within the previous plan in hard mode) and the masks
(`keras_filterprune.masking`) to act on the model; `pruned_model()` runs the
surgery (`apply_plan`). The model is traced once per `fit`.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from keras_filterprune import _validation as check
from keras_filterprune import plan as planning
from keras_filterprune import schedules
from keras_filterprune._options import PlanOptions, document_options, option_names
from keras_filterprune._training import compile_like
from keras_filterprune.exceptions import FilterPruneWarning
from keras_filterprune.graph import graph_of
from keras_filterprune.masking import (
    VariableMasks,
    graph_masks,
    hold_masks,
    recover_plan,
)
from keras_filterprune.plan import PruningPlan, plan_with
from keras_filterprune.recovery import recalibrate_batchnorm
from keras_filterprune.surgery import apply_plan

if TYPE_CHECKING:
    from keras_filterprune._sensitivity_result import SensitivityResult

__all__ = ["PruningCallback"]

logger = logging.getLogger(__name__)

_CONFIG_KEYS = (
    "epochs schedule schedule_unit mode data calibration_data verbose".split()
)


@keras.saving.register_keras_serializable(package="keras_filterprune")
@document_options(skip=("criterion", "ratio"))
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

    **Budgets.** With `target_macs`, `target_params` or `target_latency` (as in
    `plan_pruning`, e.g. `target_macs="50%"`) each event solves for the widths
    that meet its share of the budget, so that the network shrinks gradually and
    the budget is met at the last event: the `k`-th of `n` events (`epochs`, or
    every epoch of the `fit`) goes `k / n` of the way from the unpruned model to
    the budget; with a `schedule`, its ratio divided by its final ratio (a
    callable schedule of your own: the whole budget at every event). `ratio` is
    then unused.

    **Recovery.** With `calibration_data`, the BatchNorm statistics are
    re-estimated (`recalibrate_batchnorm`) after every event that holds its
    masks (hard mode; soft mode's last event), at the end of training (a short
    fine-tune leaves them stale) and in `pruned_model()`.

    The state is reset in `on_train_begin`. In hard mode, a run that continues
    training (optimizer step > 0: `BackupAndRestore`, a second `fit`) first
    recovers the plan from the filters that are exactly zero. List the callback
    before `BackupAndRestore`, `CSVLogger` and `TensorBoard`: every epoch end
    writes `pruned_macs_ratio` (pruned / original MACs) into `logs`. With
    `verbose=1`, every event prints one line on stdout, like Keras' own
    callbacks (`Epoch 3: PruningCallback hard-pruned 12 of 14 groups, MACs
    0.50×`; through `absl` logging when Keras' interactive logging is off).

    Args:
        criterion: `str` or callable. Importance criterion (see
            `keras_filterprune.criteria`; active ones score `data`). Defaults to
            `"operator_norm"`.
        ratio: `float` in [0, 1). Fraction of each group's filters to remove at
            each event when neither `schedule` nor a budget is given. Defaults
            to `0.5`.
        epochs: Sequence of 0-based epoch indices at whose end to prune, or
            `None` (every epoch when `schedule` is `None`). Not combinable with
            `schedule`. Defaults to `None`.
        schedule: A ratio schedule (see above). Defaults to `None`.
        schedule_unit: `"step"` or `"epoch"`: what `schedule` is called with.
            Defaults to `"step"`.
        mode: `"soft"` or `"hard"`. Defaults to `"soft"`.
        {planning_options}
        data: Data for active criteria (see `score_filters`) and for
            `importance="taylor"` (`(x, y)`). Defaults to `None`.
        calibration_data: Unlabeled inputs to re-estimate BatchNorm statistics
            with (see above and `recalibrate_batchnorm`): arrays (a few hundred
            examples), a `tf.data.Dataset` or a `keras.utils.PyDataset` (read
            at every recalibration, so not a one-shot generator). Defaults to
            `None`.
        verbose: `int`. `0`: silent; `1`: one line per event; `2`: also
            progress bars of active criteria and recalibration. Defaults to `1`.

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
        target_macs: float | str | None = None,
        target_params: float | str | None = None,
        target_latency: float | str | None = None,
        latency_table: Any = None,
        group_reduction: str = "mean",
        round_to: int | str = 1,
        min_filters: int = 1,
        max_ratio: float = 1.0,
        global_ranking: bool = False,
        greedy: bool = False,
        prune_norms: bool = False,
        importance: str | SensitivityResult | None = None,
        data: Any = None,
        calibration_data: Any = None,
        verbose: int = 1,
    ) -> None:
        super().__init__()
        self._options = PlanOptions.from_kwargs(
            criterion=criterion,
            ratio=ratio,
            per_layer=per_layer,
            exclude=exclude,
            target_macs=target_macs,
            target_params=target_params,
            target_latency=target_latency,
            latency_table=latency_table,
            group_reduction=group_reduction,
            round_to=round_to,
            min_filters=min_filters,
            max_ratio=max_ratio,
            global_ranking=global_ranking,
            greedy=greedy,
            prune_norms=prune_norms,
            importance=importance,
        )
        self.__dict__.update(self._options.as_kwargs())  # criterion, exclude, …
        self.epochs = check.check_epochs(epochs)
        self.schedule = schedules.check_schedule(
            schedule, epochs=self.epochs, ratio=None if ratio == 0.5 else ratio
        )
        self.schedule_unit = check.check_choice(
            schedule_unit, "schedule_unit", ("step", "epoch")
        )
        self.mode = check.check_choice(mode, "mode", ("soft", "hard"))
        self.data = self._options.check_data(data)
        self.calibration_data = _check_calibration_data(calibration_data)
        if isinstance(verbose, (bool, np.bool_)):  # verbose=True, as Keras takes it
            verbose = int(verbose)
        self.verbose = check.check_int(verbose, "verbose", 0)
        if self.verbose > 2:
            raise ValueError(
                "`verbose` must be 0 (silent), 1 (one line per event) or 2 (also "
                f"progress bars). Received: verbose={verbose}"
            )
        self._reset()

    def _reset(self) -> None:
        hold_masks(None, getattr(self, "_held", None), None)  # a crashed fit's
        self.plan, self.history = None, []  # PruningPlan | None, list[dict]
        self._masks: VariableMasks | None = None
        self._held, self._release = None, False  # the masks held by constraints
        self._graph = self._macs_base = self._last_step = self._final = None
        self._epoch, self._macs_ratio = 0, 1.0
        self._epoch_seen: int | None = None
        self._started = self._trained_since_event = False

    def on_train_begin(self, logs=None) -> None:
        self._reset()
        self._graph = graph_of(self.model)  # traced once, remembered
        # Options that do not fit the model fail now, not at the first event.
        planning.groups_to_plan(self._graph, self._options)
        table, _ = self._options.latency
        if table is not None:
            table.check_graph(self._graph)  # a table of another model is said first
            self._options.check_reachable()  # then a target it cannot reach
        try:
            self._macs_base = self._graph.profile.total_macs
        except ValueError:  # unknown input size: MACs are not defined
            self._macs_base = None

    def on_epoch_begin(self, epoch, logs=None) -> None:
        if self._epoch_seen is None:  # the fit's first epoch (`initial_epoch`)
            self._epoch_seen = int(epoch)
            self._warn_if_no_event(int(epoch))
        self._epoch = int(epoch)

    def _warn_if_no_event(self, first: int) -> None:
        total = (self.params or {}).get("epochs")
        if self.schedule is not None or self.epochs is None:
            return
        if isinstance(total, int) and not any(first <= e < total for e in self.epochs):
            warnings.warn(
                f"PruningCallback(epochs={list(self.epochs)}) names no epoch of "
                f"this fit (epochs {first}-{total - 1}, 0-based): nothing will be "
                "pruned. Give epochs the fit runs.",
                FilterPruneWarning,
                stacklevel=2,
            )

    def on_train_batch_begin(self, batch, logs=None) -> None:
        if self._started:
            return
        # First batch: every on_train_begin (BackupAndRestore's too) has run.
        self._started = True
        step = self._global_step()
        if self.mode == "hard" and step > 0:
            plan = recover_plan(self.model, exclude=self.exclude)
            if plan is not None:
                self._adopt(plan)
                self._say(
                    f"Step {step}: PruningCallback recovered the pruning plan from "
                    f"the zeroed filters ({plan.num_removed} channels removed)."
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
                self._event(self.ratio, epoch, self._global_step(), self._share(epoch))
        elif self.schedule_unit == "epoch":
            should, ratio = schedules.ask(self.schedule, epoch, "epoch")
            if should:
                share = self._schedule_share(ratio)
                self._event(ratio, epoch, self._global_step(), share)
        if logs is not None and self._macs_ratio is not None:
            logs["pruned_macs_ratio"] = float(self._macs_ratio)

    def on_train_end(self, logs=None) -> None:
        if self._masks is not None:
            self._masks()
        self._held = hold_masks(None, self._held, None)
        if self.plan is not None and self.calibration_data is not None:
            n = self._recalibrate()
            self._say(f"PruningCallback: BatchNorm recalibrated on {n} batches.")

    def _say(self, message: str) -> None:
        """One line for a person, as Keras' callbacks print them."""
        if not self.verbose:
            return
        if keras.config.is_interactive_logging_enabled():
            sys.stdout.write(f"\n{message}\n")
            sys.stdout.flush()
        else:
            logger.info(message)

    def _recalibrate(self) -> int:
        return recalibrate_batchnorm(
            self.model, self.calibration_data, verbose=1 if self.verbose > 1 else 0
        )

    def _share(self, epoch: int) -> float:
        """The share of a budget an epoch-end event without a schedule spends:
        `k / n` at the `k`-th of the `fit`'s `n` events (1 when unknown)."""
        total = (self.params or {}).get("epochs")
        if self.epochs is None:
            return (epoch + 1) / total if isinstance(total, int) and total else 1.0
        due = [e for e in self.epochs if not isinstance(total, int) or e < total]
        return (sum(e <= epoch for e in due) / len(due)) if due else 1.0

    def _schedule_share(self, ratio: float) -> float:
        final = schedules.final_ratio(self.schedule)
        return 1.0 if not final else min(1.0, ratio / final)

    def _global_step(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _step_events(self, step: int) -> None:
        last = step - 1 if self._last_step is None else self._last_step
        todo = schedules.last_due_step(self.schedule, last, step)
        self._last_step = max(step, last)
        if todo is not None:
            share = self._schedule_share(todo[1])
            self._event(todo[1], self._epoch, todo[0], share)

    def _event(self, ratio: float, epoch: int, step: int, share: float) -> None:
        budgeted = self._options.budgeted
        if (share <= 0.0) if budgeted else (ratio <= 0.0 and not self.per_layer):
            return  # TFMOT: a zero sparsity skips the step
        prev = self.plan if self.mode == "hard" and self.plan else None
        plan = plan_with(
            self.model,
            self._options,
            data=self.data,
            within=prev if prev is not None and prev.num_removed else None,
            ratio=ratio,
            share=share,
            verbose=1 if self.verbose > 1 else 0,
            warn=False,
        )
        hold = self.mode == "hard" or self._is_final(epoch, step)
        macs = self._adopt(plan, hold)
        self._release = not hold  # soft: held for one step; the filters regrow
        self._trained_since_event = False
        batches = (
            self._recalibrate() if hold and self.calibration_data is not None else 0
        )
        kept = [len(g.keep) for g in plan.groups]
        if budgeted:
            ratio = float(plan.meta.get("ratio", ratio))
        else:  # the ratio applied: a schedule's, capped by `max_ratio`
            ratio = min(float(ratio), self.max_ratio)
        event = dict(epoch=int(epoch), step=int(step), ratio=ratio, kept=kept)
        self.history.append({**event, "macs": macs, "macs_ratio": self._macs_ratio})
        cut = sum(len(g.keep) < g.width for g in plan.groups)
        prunable = len(plan.groups) - len(plan.frozen_groups)
        line = (
            f"Epoch {epoch + 1}: PruningCallback {self.mode}-pruned {cut} of "
            f"{prunable} groups ({plan.num_removed} channels removed)"
        )
        if macs is not None:
            line += f", MACs {self._macs_ratio:.2f}×"
        params = plan.meta.get("params")
        if params and params[0]:
            line += f", params {params[1] / params[0]:.2f}×"
        if batches:
            line += f", BatchNorm recalibrated on {batches} batches"
        self._say(line + ".")

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
        pruned = apply_plan(model, self.plan, calibration_data=self.calibration_data)
        if compile and model.get_compile_config():
            compile_like(pruned, model)
        return pruned

    def get_config(self) -> dict:
        """The constructor arguments. JSON-serialisable when `criterion` is a
        name, `schedule` one of ours or TFMOT's, and `data` and
        `calibration_data` are `None` (a `LatencyTable` or `SensitivityResult`
        is written as its `to_dict()`)."""
        config = {k: getattr(self, k) for k in option_names()}
        config.update({k: getattr(self, k) for k in _CONFIG_KEYS})
        config["epochs"] = None if self.epochs is None else list(self.epochs)
        config["schedule"] = schedules._serialize_schedule(self.schedule)
        config["per_layer"] = None if self.per_layer is None else dict(self.per_layer)
        config["exclude"] = None if self.exclude is None else list(self.exclude)
        for key in ("latency_table", "importance"):  # LatencyTable, SensitivityResult
            if hasattr(config[key], "to_dict"):
                config[key] = config[key].to_dict()
        return config

    @classmethod
    def from_config(cls, config: Mapping) -> PruningCallback:
        if not isinstance(config, Mapping):
            raise TypeError(
                "`config` must be a dict from `PruningCallback.get_config()`. "
                f"Received: config of type {type(config).__name__}"
            )
        config = dict(config)
        config["schedule"] = schedules._deserialize_schedule(config.get("schedule"))
        if isinstance(config.get("latency_table"), Mapping):
            from keras_filterprune.latency.table import LatencyTable

            config["latency_table"] = LatencyTable.from_dict(config["latency_table"])
        if isinstance(config.get("importance"), Mapping):
            from keras_filterprune._sensitivity_result import SensitivityResult

            config["importance"] = SensitivityResult.from_dict(config["importance"])
        return cls(**config)


def _check_calibration_data(data: Any) -> Any:
    """`None`, or data that can be read again at every recalibration."""
    if data is None:
        return None
    if isinstance(data, (str, bytes)) or not (
        hasattr(data, "__iter__") or hasattr(data, "shape")
    ):
        raise TypeError(
            "`calibration_data` must be model inputs: arrays (or a tuple/dict of "
            "arrays), a tf.data.Dataset or a keras.utils.PyDataset. Received: "
            f"calibration_data of type {type(data).__name__}"
        )
    if iter(data) is data:  # a generator or iterator: read once, then empty
        raise TypeError(
            "`calibration_data` is read at every recalibration, so it cannot be a "
            "generator or iterator (it would be empty the second time): pass "
            "arrays, a tf.data.Dataset or a keras.utils.PyDataset. Received: "
            f"calibration_data of type {type(data).__name__}"
        )
    _check_calibration_arrays(data)
    return data


def _check_calibration_arrays(data: Any) -> None:
    """Arrays (or a tuple/list/dict of them) are checked now, not after the
    first training epoch: at least one example, numbers, no NaN or Inf."""
    x = data[0] if isinstance(data, tuple) and 1 <= len(data) <= 3 else data
    arrays = list(x.values()) if isinstance(x, Mapping) else x
    arrays = list(arrays) if isinstance(arrays, (list, tuple)) else [arrays]
    if not arrays or not all(isinstance(a, np.ndarray) for a in arrays):
        return  # datasets, tensors, PyDatasets: recalibrate_batchnorm checks them
    for array in arrays:
        if array.ndim == 0 or len(array) == 0:
            raise ValueError(
                "`calibration_data` holds no example (an array of shape "
                f"{array.shape}): pass a few hundred model inputs, or None."
            )
        if array.dtype.kind not in "biuf":
            raise ValueError(
                f"`calibration_data` must hold numbers (model inputs). Received: "
                f"an array of dtype {array.dtype}"
            )
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise ValueError(
                "`calibration_data` holds NaN or Inf values: BatchNorm statistics "
                "estimated from them would be NaN and every output with them. "
                "Clean the data (e.g. `np.nan_to_num`) or leave those examples out."
            )
