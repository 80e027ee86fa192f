"""Figures: kept filters per layer, sensitivity curves, before/after bars.

matplotlib is the optional `plot` extra and is imported only when a figure is
made. Figures are built with the object-oriented API (`matplotlib.figure.Figure`,
rendered by Agg on `savefig`), never through `pyplot`: nothing needs a display,
no global figure state is kept alive, and in Jupyter a returned figure displays
itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import keras

from keras_filterprune._validation import check_number
from keras_filterprune.graph import graph_of
from keras_filterprune.plan import PruningPlan

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from keras_filterprune._sensitivity_result import SensitivityResult
    from keras_filterprune.runtime.compare import ComparisonReport

__all__ = ["plot_comparison", "plot_sensitivity", "plot_widths"]

_ORIGINAL = "#8c8c8c"
_PRUNED = "#1f77b4"
# Metrics (row keys) drawn by `plot_comparison` from a ComparisonReport, in order.
_COMPARED = ("accuracy", "params", "macs", "tflite_size", "tflite_latency")


def _figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "Plots need matplotlib: pip install keras-filterprune[plot]"
        ) from e
    return Figure(figsize=(width, height), layout="constrained")


def _producer_widths(model: keras.Model) -> dict[str, int]:
    graph = graph_of(model)
    return {
        path: len(channels)
        for group in graph.groups
        for path, channels in group.producers.items()
    }


def plot_widths(
    original: keras.Model,
    pruned: keras.Model | PruningPlan,
    *,
    title: str | None = None,
) -> Figure:
    """Bars of the filters of every layer, before and after pruning.

    Args:
        original: The unpruned `keras.Model`.
        pruned: The pruned `keras.Model` (e.g. from `apply_plan`), or the
            `PruningPlan` made for `original`.
        title: `str`. Figure title. Defaults to `None` (a summary of the kept
            share).

    Returns:
        A `matplotlib.figure.Figure`.

    Raises:
        ImportError: matplotlib is not installed.
        TypeError: `pruned` is neither a model nor a plan.
        ValueError: `pruned` is not a pruned copy of `original`, or the plan was
            made for another model.

    Example:

    >>> import keras
    >>> from keras_filterprune import prune_keras_model
    >>> model = keras.Sequential([keras.Input((8, 8, 3)),
    ...     keras.layers.Conv2D(8, 3, name="conv"), keras.layers.Flatten(),
    ...     keras.layers.Dense(2, name="head")])
    >>> fig = plot_widths(model, prune_keras_model(model, ratio=0.5))
    >>> [t.get_text() for t in fig.axes[0].get_xticklabels()]
    ['conv', 'head']
    """
    if not isinstance(original, keras.Model):
        raise TypeError(
            f"`original` must be a keras.Model. Received: {type(original).__name__}"
        )
    before = _producer_widths(original)
    if isinstance(pruned, PruningPlan):
        pruned.keep_flags(graph_of(original))  # a plan made for another model fails
        after = {path: len(pruned.kept_filters(path)) for path in before}
    elif isinstance(pruned, keras.Model):
        after = _producer_widths(pruned)
    else:
        raise TypeError(
            "`pruned` must be a keras.Model or a PruningPlan. Received: "
            f"{type(pruned).__name__}"
        )
    names = [p for p in before if p in after]
    wider = [n for n in names if after[n] > before[n]]
    if not names or wider:
        problem = (
            f"layer '{wider[0]}' has {after[wider[0]]} filters there and "
            f"{before[wider[0]]} in `original`"
            if wider
            else "they share no convolution or Dense layer name"
        )
        raise ValueError(
            f"`pruned` is not a pruned copy of `original`: {problem}. Pass the "
            "model `apply_plan(original, plan)` returned, or the plan."
        )
    fig = _figure(max(5.0, 0.45 * len(names) + 2.0), 3.8)
    ax = fig.add_subplot()
    xs = range(len(names))
    ax.bar(xs, [before[n] for n in names], color=_ORIGINAL, label="original")
    ax.bar(xs, [after[n] for n in names], color=_PRUNED, width=0.6, label="kept")
    ax.set_xticks(list(xs), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("filters")
    kept, total = sum(after[n] for n in names), sum(before[n] for n in names)
    share = kept / total if total else 1.0
    ax.set_title(title or f"Filters kept per layer: {kept}/{total} ({share:.0%})")
    ax.legend(frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_sensitivity(
    result: SensitivityResult,
    *,
    max_drop: float | None = None,
    title: str | None = None,
) -> Figure:
    """Score-vs-pruned-ratio curves, one per channel group (Li et al., Fig. 2).

    Args:
        result: A `SensitivityResult` from `sensitivity_analysis`.
        max_drop: `float`. Draw the `baseline - max_drop` line of
            `result.suggest_ratios(max_drop)`. Defaults to `None`.
        title: `str`. Defaults to `None` (names the criterion).

    Returns:
        A `matplotlib.figure.Figure`.

    Raises:
        TypeError: `result` is not a `SensitivityResult`.
        ValueError: `max_drop` is negative.
        ImportError: matplotlib is not installed.

    Example:

    >>> from keras_filterprune.sensitivity import SensitivityResult
    >>> result = SensitivityResult(
    ...     0.9, {"conv": [(0.0, 0.9), (0.5, 0.8)]}, {"conv": ["conv"]}, {"conv": 8})
    >>> fig = plot_sensitivity(result, max_drop=0.05)
    >>> fig.axes[0].get_xlabel()
    'pruned ratio of the group'
    """
    from keras_filterprune._sensitivity_result import SensitivityResult

    if not isinstance(result, SensitivityResult):
        raise TypeError(
            "`result` must be the SensitivityResult `sensitivity_analysis` returns. "
            f"Received: {type(result).__name__}"
        )
    if max_drop is not None:
        check_number(max_drop, "max_drop", low=0.0)
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot()
    markers = "os^vD<>ph*"
    for i, (name, points) in enumerate(result.curves.items()):
        xs, ys = zip(*points) if points else ((), ())
        label = f"{name} ({result.widths.get(name, '?')})"
        ax.plot(xs, ys, marker=markers[i % len(markers)], markersize=4, label=label)
    if max_drop is not None:
        ax.axhline(
            result.baseline - max_drop,
            color="k",
            linestyle="--",
            linewidth=1,
            label=f"baseline - {max_drop:g}",
        )
    ax.set_xlabel("pruned ratio of the group")
    ax.set_ylabel(result.metric)
    ax.set_title(
        title or f"Sensitivity to pruning each group alone ({result.criterion})"
    )
    ax.grid(alpha=0.3)
    if result.curves:
        ax.legend(
            fontsize=7,
            frameon=False,
            ncol=1 + len(result.curves) // 12,
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
        )
    return fig


def _comparison_rows(report: Any) -> list[tuple[str, float, float]]:
    """(label, original, pruned) rows from a report, its dict, or a mapping."""
    rows = getattr(report, "rows", None)
    if rows is None and isinstance(report, Mapping) and "rows" in report:
        rows = report["rows"]
    if rows is not None:
        out = []
        by_key = {row["metric"]: row for row in rows}
        for key in _COMPARED:
            row = by_key.get(key)
            if row is not None:
                label = row.get("label") or row["metric"]
                if row.get("unit"):
                    label += f" ({row['unit']})"
                out.append((label, row["original"], row["pruned"]))
        return out
    if isinstance(report, Mapping):
        out = []
        for label, pair in report.items():
            try:
                a, b = pair
            except (TypeError, ValueError):
                raise ValueError(
                    "A comparison mapping must map each metric to an "
                    f"(original, pruned) pair. Received: {label!r}: {pair!r}"
                ) from None
            out.append((str(label), a, b))
        return out
    raise TypeError(
        "`report` must be a ComparisonReport, its to_dict(), or a mapping "
        f"metric -> (original, pruned). Received: {type(report).__name__}"
    )


def plot_comparison(
    report: ComparisonReport | Mapping[str, Any],
    *,
    title: str | None = None,
) -> Figure:
    """Before/after bars of params, MACs, .tflite size, latency (and accuracy).

    Args:
        report: A `ComparisonReport` from `compare_models` (or its
            `to_dict()`): its rows `"accuracy"` (if added), `"params"`,
            `"macs"`, `"tflite_size"` and `"tflite_latency"` are drawn. Or a
            mapping `label -> (original, pruned)`, all drawn.
        title: `str`. Defaults to `None` ("Original vs pruned").

    Returns:
        A `matplotlib.figure.Figure` with one panel per metric.

    Raises:
        ImportError: matplotlib is not installed.
        TypeError, ValueError: `report` has another form.

    Example:

    >>> fig = plot_comparison({"params": (1000, 400), "MACs": (5e6, 2e6)})
    >>> [ax.get_title() for ax in fig.axes]
    ['params', 'MACs']
    """
    rows = [(label, a, b) for label, a, b in _comparison_rows(report) if a is not None]
    if not rows:
        raise ValueError("`report` has no metric to plot.")
    cols = min(len(rows), 3)
    lines = math.ceil(len(rows) / cols)
    fig = _figure(3.2 * cols, 3.0 * lines)
    fig.suptitle(title or "Original vs pruned")
    for i, (label, a, b) in enumerate(rows):
        ax = fig.add_subplot(lines, cols, i + 1)
        bars = ax.bar([0, 1], [a, b], color=[_ORIGINAL, _PRUNED])
        ax.set_xticks([0, 1], ["original", "pruned"])
        ax.set_title(label, fontsize=9)
        ax.bar_label(bars, labels=[_short(a), _short(b)], fontsize=8)
        ax.margins(y=0.15)
        ax.tick_params(axis="y", labelsize=7)
        if a and b is not None:
            ax.set_xlabel(f"pruned/original: {b / a:.2f}", fontsize=8)
    return fig


def _short(value: float | None) -> str:
    if value is None:
        return "-"
    value = float(value)
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"
