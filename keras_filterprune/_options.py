"""The planning options, declared once: names, defaults, checks, docs and flags.

`PlanOptions` is the one declaration of what decides a plan (ratio, criterion,
budgets, rounding, …). `plan_pruning`, `PruningCallback`, `sensitivity_analysis`
and the command line take these options under these names with these defaults
(a test compares their signatures and flags with the fields here), validate them
with `PlanOptions.from_kwargs` (one message per bad value, wherever it comes
from), document them with `document_options` (the docstring text is each field's
`doc`), and the command line builds its flags from each field's `cli`.

Imports neither Keras nor TensorFlow (the command line's parser reads it).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from typing import Any

from keras_filterprune._sensitivity_result import SensitivityResult
from keras_filterprune._validation import (
    check_bool,
    check_budget,
    check_choice,
    check_int,
    check_latency_target,
    check_layer_names,
    check_number,
    check_per_layer,
    check_ratio,
)

__all__ = [
    "PlanOptions",
    "check_not_both",
    "document_options",
    "importance_name",
    "option_names",
]

REDUCTIONS = ("mean", "sum", "max", "l2")
BUDGETS = ("target_macs", "target_params", "target_latency")
IMPORTANCES = ("taylor",)


def _option(default: Any, doc: str, *, cli: dict | None = None, scope=("plan",)):
    """A dataclass field with its docstring text, its command-line flag
    (`argparse.add_argument` keywords; `type` names a parser of `_cli_parser`)
    and the functions that take it (`"plan"`: plan_pruning, the callback and the
    `prune` command; `"sensitivity"`: also `sensitivity_analysis`)."""
    return dataclasses.field(
        default=default, metadata={"doc": doc, "cli": cli, "scope": scope}
    )


_BOTH = ("plan", "sensitivity")


@dataclasses.dataclass(frozen=True)
class PlanOptions:
    """The validated planning options. Build with `PlanOptions.from_kwargs`."""

    ratio: float = _option(
        0.5,
        "`float` in [0, 1). Fraction of each group's channels to remove. "
        "Defaults to `0.5`.",
        cli=dict(type="ratio", metavar="R", help="fraction of each group's "
                 "channels to remove (default 0.5)"),
    )  # fmt: skip
    criterion: str | Callable = _option(
        "operator_norm",
        "`str` or callable. Importance criterion (see "
        "`keras_filterprune.criteria`; active ones score `data`). Defaults to "
        '`"operator_norm"`.',
        cli=dict(type="criterion", metavar="NAME", help="importance criterion: a "
                 "name from keras_filterprune.criteria.names() (default "
                 "operator_norm); active ones need --data"),
        scope=_BOTH,
    )  # fmt: skip
    per_layer: dict[str, float] | None = _option(
        None,
        "`dict` layer name → ratio, overriding `ratio` for the groups of those "
        "producers (a group with several gets the smallest). A group that cannot "
        "be pruned (frozen, or excluded) takes only ratio 0, and a layer cannot "
        "be both here and in `exclude` (a ValueError names it). Defaults to "
        "`None`.",
        cli=dict(type="layer_ratio", nargs="+", action="extend",
                 metavar="LAYER=RATIO", help="ratio for one layer's group"),
    )  # fmt: skip
    exclude: list[str] | None = _option(
        None,
        "Layer names whose output channels are never pruned (their groups are "
        "frozen; the layers feeding them may still lose filters). Defaults to "
        "`None`.",
        cli=dict(nargs="+", action="extend", metavar="LAYER",
                 help="layers never to prune"),
        scope=_BOTH,
    )  # fmt: skip
    target_macs: float | str | None = _option(
        None,
        "MAC budget: solve for the uniform ratio whose pruned model has at most "
        "this many MACs (estimated from the per-layer profile): a count "
        '(`2.5e6`), or a percentage of the unpruned model (`"50%"`: half the '
        'MACs). Overrides `ratio`. `float("inf")` means no limit. Defaults to '
        "`None`.",
        cli=dict(type="budget", metavar="N|PCT%", help="solve for the ratio "
                 "reaching at most N MACs (e.g. 2.5M), or a percentage of the "
                 "unpruned model's (e.g. 50%%)"),
    )  # fmt: skip
    target_params: float | str | None = _option(
        None,
        "Same as `target_macs`, with parameters. Defaults to `None`.",
        cli=dict(type="budget", metavar="N|PCT%", help="same with parameters"),
    )  # fmt: skip
    target_latency: float | str | None = _option(
        None,
        "Latency to reach, predicted by `latency_table`: a number of "
        'milliseconds, or a string such as `"12ms"` or `"50%"` (of the unpruned '
        "latency). Channels are removed where they save the most time per unit "
        "of score (widths land where the runtime's kernels actually save time, "
        "e.g. multiples of 32 filters), not at a uniform ratio; `ratio` is "
        "ignored. Not with `global_ranking` or `greedy`. Defaults to `None`.",
        cli=dict(type="latency", metavar="MS|PCT%", help="predicted latency to "
                 "reach (e.g. 12.5ms, or 50%% of the unpruned); needs "
                 "--latency-table"),
    )  # fmt: skip
    latency_table: Any = _option(
        None,
        "A `LatencyTable` of this model (or the path of its JSON, see "
        '`measure_latency_table`), for `target_latency` and `round_to="auto"`. '
        "With it, the plan's meta records the predicted latency. Defaults to "
        "`None`.",
        cli=dict(metavar="TABLE.json", help="the model's latency table (see the "
                 "`latency` command)"),
    )  # fmt: skip
    importance: Any = _option(
        None,
        '`None`, `"taylor"` or a `SensitivityResult`. How `target_latency` '
        "decides how many channels each group keeps. `None`: the criterion's "
        "scores, normalised per group (comparable within a group only, so a "
        "budget drains the groups where a channel saves the most time, down to "
        '`min_filters`; `max_ratio` bounds it). `"taylor"`: a first-order '
        "Taylor estimate of the loss increase when a channel is removed, |Σ "
        "activation × gradient| over its positions, averaged over the examples "
        "of `data` (a few batches of `(x, y)`; the model compiled with a loss)."
        " A `SensitivityResult` of this model (`sensitivity_analysis`, every "
        "prunable group; saved curves: `SensitivityResult.load(path)`): each "
        "group's measured score-vs-ratio curve, so a group is thinned only as "
        "far as its own curve allows (measured, where Taylor is first-order). "
        "The last two are comparable across groups, so time is saved where the "
        "model suffers least; the criterion still chooses which channels of a "
        "group go. Defaults to `None`.",
        cli=dict(type="importance", metavar="{taylor,CURVES.json}",
                 help="how a latency budget decides each group's width: "
                 "'taylor' (loss estimate from --data) or the curves of "
                 "`sensitivity --json` (measured); both comparable across "
                 "groups"),
    )  # fmt: skip
    group_reduction: str = _option(
        "mean",
        '`"mean"`, `"sum"`, `"max"` or `"l2"` of the members\' scores (each '
        "producer's scores are first divided by their maximum; signed scores are "
        "first shifted by their minimum, which keeps their ranking, so no "
        'reduction can turn it around). Defaults to `"mean"`.',
        cli=dict(choices=REDUCTIONS, help="how a group's members' scores combine "
                 "(default mean)"),
        scope=_BOTH,
    )  # fmt: skip
    round_to: int | str = _option(
        1,
        "`int`. Keep a multiple of this many channels per group (e.g. 8 for fast "
        'kernels on XNNPACK), or `"auto"`: each group\'s block size in '
        "`latency_table`. Defaults to `1`.",
        cli=dict(type="round_to", metavar="N", help="keep a multiple of N channels "
                 "per group ('auto': the latency table's block sizes)"),
        scope=_BOTH,
    )  # fmt: skip
    min_filters: int = _option(
        1,
        "`int`. Never keep fewer channels in a group. Defaults to `1`.",
        cli=dict(type="positive_int", metavar="N",
                 help="never keep fewer than N channels in a group"),
        scope=_BOTH,
    )  # fmt: skip
    max_ratio: float = _option(
        1.0,
        "`float` in (0, 1]. The largest fraction of a group's channels that may "
        "be removed, whatever decides the group's width (a budget, "
        "`global_ranking`, `ratio` or a schedule's ratio), as Torch-Pruning's "
        "`max_pruning_ratio`: a floor under each group's width, so that a "
        "budget cannot hollow out the layers where removing channels is "
        "cheapest (e.g. `0.75` keeps at least a quarter of every group). "
        "`per_layer` ratios are taken as given. Defaults to `1.0` (no floor "
        "but `min_filters`).",
        cli=dict(type="max_ratio", metavar="R", help="the largest fraction of a "
                 "group's channels that may be removed, whatever decides its "
                 "width (default 1.0: down to --min-filters)"),
    )  # fmt: skip
    global_ranking: bool = _option(
        False,
        "`bool`. Rank all channels of all prunable groups together (scores "
        "normalised per group) and remove `ratio` of them overall, instead of "
        "`ratio` of each group. Defaults to `False`.",
        cli=dict(action="store_true", help="rank channels of all groups together"),
    )  # fmt: skip
    greedy: bool = _option(
        False,
        "`bool`. Li et al.'s greedy scoring: when scoring a layer, ignore its "
        "input channels already removed upstream (passive criteria only). "
        "Defaults to `False`.",
        cli=dict(action="store_true", help="score each layer without the input "
                 "channels already removed upstream (passive criteria)"),
    )  # fmt: skip
    prune_norms: bool = _option(
        False,
        "`bool`. Also prune the groups that only a LayerNormalization, "
        "GroupNormalization (whole groups) or UnitNormalization over the "
        "channels freezes (ConvNeXt's residual stream): their gamma/beta are "
        "sliced. **Approximate**: the statistics these layers compute change "
        "with the channel count, so the pruned model is not the original with "
        "channels removed; fine-tune it (the plan's "
        '`meta["approximate_groups"]` lists the groups). Defaults to `False` '
        "(exact).",
        cli=dict(action="store_true", help="also prune groups only "
                 "LayerNorm/GroupNorm/UnitNorm freeze (approximate: fine-tune "
                 "afterwards)"),
        scope=_BOTH,
    )  # fmt: skip

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> PlanOptions:
        """Every option checked at once, with the same message wherever it comes
        from (`plan_pruning`, `PruningCallback`, `sensitivity_analysis`, the
        command line).

        Raises:
            TypeError: an unknown option, or a value of the wrong type.
            ValueError: a bad value or combination.
        """
        from keras_filterprune import criteria as criteria_lib

        unknown = set(kwargs) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(
                f"Unknown planning options {sorted(unknown)}. The options are: "
                f"{', '.join(option_names())}."
            )
        values = {**cls().as_kwargs(), **kwargs}
        criterion = values["criterion"]
        criteria_lib.get(criterion)  # unknown names fail before any work
        for name in ("target_macs", "target_params"):
            if values[name] is not None:
                check_budget(values[name], name)
        per_layer = check_per_layer(values["per_layer"])
        exclude = check_layer_names(values["exclude"], "exclude")
        check_not_both(per_layer, exclude)
        options = cls(
            ratio=check_ratio(values["ratio"], "ratio"),
            criterion=criterion,
            per_layer=per_layer,
            exclude=exclude,
            target_macs=values["target_macs"],
            target_params=values["target_params"],
            target_latency=_check_latency_target(values["target_latency"]),
            latency_table=values["latency_table"],
            importance=_check_importance(values["importance"], values),
            group_reduction=check_choice(
                values["group_reduction"], "group_reduction", REDUCTIONS
            ),
            round_to=_check_round_to(values["round_to"], values["latency_table"]),
            min_filters=check_int(values["min_filters"], "min_filters", 1),
            max_ratio=check_number(
                values["max_ratio"], "max_ratio", low=0.0, high=1.0, low_open=True
            ),
            global_ranking=check_bool(values["global_ranking"], "global_ranking"),
            greedy=check_bool(values["greedy"], "greedy"),
            prune_norms=check_bool(values["prune_norms"], "prune_norms"),
        )
        if options.greedy and criteria_lib.is_active(criterion):
            raise ValueError(
                "`greedy=True` needs a passive criterion (kernel-based). "
                f"Received: criterion={criterion!r}"
            )
        _ = options.latency  # the table loads and the target parses, or an error
        return options

    def as_kwargs(self) -> dict[str, Any]:
        """The options as keyword arguments (`plan_pruning(model, **...)`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def check_reachable(self) -> None:
        """Raises a ValueError when the latency target is below the lowest
        latency the table predicts (ask it once the table fits the model)."""
        from keras_filterprune.latency.budget import check_reachable

        table, target_ms = self.latency
        if target_ms is not None:
            check_reachable(table, target_ms, self.min_filters, self.max_ratio)

    @functools.cached_property
    def latency(self) -> tuple[Any, float | None]:
        """The latency table (loaded when a path; `None` without one) and the
        target in milliseconds (`None` without `target_latency`)."""
        from keras_filterprune.latency.budget import check_latency_args

        budgets = {k: getattr(self, k) for k in ("target_macs", "target_params")}
        return check_latency_args(
            self.target_latency, self.latency_table, self, budgets
        )

    def budget(self) -> tuple[str, str, float] | None:
        """`(cost, kind, goal)` of a MAC or parameter budget: cost `"macs"` or
        `"params"`, kind `"absolute"` or `"fraction"`; `None` without one."""
        for name in ("target_macs", "target_params"):
            value = getattr(self, name)
            if value is not None:
                return (name.split("_")[1], *check_budget(value, name))
        return None

    @property
    def budgeted(self) -> bool:
        """Whether a MAC, parameter or latency budget replaces `ratio`."""
        return any(getattr(self, name) is not None for name in BUDGETS)

    def check_importance_data(self, data: Any) -> Any:
        """Raises a ValueError when `importance` needs `data` and has none."""
        if self.importance == "taylor" and data is None:
            raise ValueError(
                f"`importance='{self.importance}'` estimates each channel's "
                "effect on the loss from labelled data: pass `data=(x, y)` (a few "
                "batches; the model compiled with a loss), or leave `importance` "
                "at None."
            )
        return data

    def check_data(self, data: Any) -> Any:
        """Raises a ValueError when an active criterion has no `data`."""
        if self.active and data is None:
            raise ValueError(
                f"`criterion='{self.criterion_name}'` is an active criterion: it "
                "scores activations and needs `data` (a few batches of model "
                "inputs, or (x, y) for 'taylor'). Pass `data=...` or choose a "
                "passive criterion such as 'operator_norm'."
            )
        return data

    @property
    def active(self) -> bool:
        from keras_filterprune import criteria as criteria_lib

        return criteria_lib.is_active(self.criterion)

    @property
    def criterion_name(self) -> str:
        if isinstance(self.criterion, str):
            return self.criterion
        return getattr(self.criterion, "__name__", type(self.criterion).__name__)


def _check_importance(value: Any, values: dict[str, Any]) -> Any:
    if value is None:
        return None
    if not isinstance(value, SensitivityResult):
        if not isinstance(value, str):
            raise TypeError(
                '`importance` must be None, "taylor" or the SensitivityResult of '
                "`sensitivity_analysis(model, ...)` (a dict of its `to_dict()`: "
                "`SensitivityResult.from_dict`). Received: "
                f"importance of type {type(value).__name__}"
            )
        value = check_choice(value, "importance", IMPORTANCES)
    if values["target_latency"] is None:
        raise ValueError(
            f"`importance={_shown(value)}` decides how many channels "
            "each group keeps under a latency budget: pass `target_latency=` "
            "(with `latency_table=`). Without it every group loses the same "
            "fraction, which `importance` cannot change."
        )
    return value


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else "<SensitivityResult>"


def importance_name(value: Any) -> str | None:
    """`None`, the importance's name, or `"sensitivity"` (for plan metadata)."""
    return value if value is None or isinstance(value, str) else "sensitivity"


def _check_latency_target(value: Any) -> float | str | None:
    """`target_latency` before the table is read (`check_latency_target`): a
    NumPy scalar becomes a float, a string is kept for the table to convert."""
    if value is None:
        return None
    target = check_latency_target(value)
    return value if isinstance(target, tuple) else target


def check_not_both(per_layer: Any, exclude: Any, paths: Any = None) -> None:
    """Raises a ValueError when a layer is both in `per_layer` (a ratio for its
    group) and in `exclude` (its group never pruned). `paths` (name → the layer
    paths it means, `ChannelGraph.resolve` of both) also catches a short name and
    a full path of the same layer.
    """
    if not per_layer or not exclude:
        return

    def layers(name: str) -> set[str]:
        return set(paths.get(name, ())) if paths is not None else {name}

    excluded = set().union(*(layers(name) for name in exclude))
    # A ratio of 0 asks nothing of the group, so it never contradicts `exclude`.
    both = [name for name in per_layer if per_layer[name] and layers(name) & excluded]
    if both:
        raise ValueError(
            f"Layer '{both[0]}' is both in `per_layer` (a ratio for its group) and "
            "in `exclude` (its group never pruned). Remove it from one of them. "
            f"Received: per_layer={dict(per_layer)!r}, exclude={list(exclude)!r}"
        )


def _check_round_to(value: Any, table: Any) -> int | str:
    if value == "auto":
        if table is None:
            raise ValueError(
                "`round_to='auto'` takes each group's block size from a latency "
                "table: pass `latency_table=` (see measure_latency_table), or an "
                "int such as 8."
            )
        return value
    return check_int(value, "round_to", 1)


def option_names(scope: str = "plan") -> tuple[str, ...]:
    """The options' names in declaration order: those every planning entry point
    takes (`"plan"`: `plan_pruning`, `PruningCallback`, the `prune` command)
    or those `sensitivity_analysis` takes (`"sensitivity"`)."""
    return tuple(
        f.name for f in dataclasses.fields(PlanOptions) if scope in f.metadata["scope"]
    )


def option_fields(scope: str = "plan") -> list[dataclasses.Field]:
    """The dataclass fields of `option_names(scope)` (doc, cli and default)."""
    names = option_names(scope)
    return [f for f in dataclasses.fields(PlanOptions) if f.name in names]


def document_options(*, skip: Iterable[str] = (), scope: str = "plan") -> Callable:
    """Decorator: replaces the line `{planning_options}` of a docstring's Args
    with the options' docs (8-space Google style), minus those in `skip`,
    which the function documents itself (as keras-hub's `format_docstring`)."""
    skip = set(skip)

    def decorate(obj):
        lines = []
        for f in option_fields(scope):
            if f.name in skip:
                continue
            lines.extend(_wrap(f"{f.name}: {f.metadata['doc']}", 8, 12))
        text = "\n".join(lines)
        marker = " " * 8 + "{planning_options}"
        if obj.__doc__ is not None:  # None under python -OO
            if marker not in obj.__doc__:
                raise AssertionError(f"{obj.__name__}: no {marker!r} line")
            obj.__doc__ = obj.__doc__.replace(marker, text)
        return obj

    return decorate


def _wrap(text: str, first: int, rest: int, width: int = 84) -> list[str]:
    words, lines, line = text.split(), [], " " * first
    for word in words:
        if len(line) + 1 + len(word) > width and line.strip():
            lines.append(line)
            line = " " * rest + word
        else:
            line = line + (" " if line.strip() else "") + word
    lines.append(line)
    return lines
