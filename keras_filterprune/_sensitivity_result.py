"""`SensitivityResult`: the curves of `sensitivity_analysis`, and what a
latency budget reads from them (`removal_costs`). Its own module so that the
planning options can recognise it without importing the analysis."""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from keras_filterprune._files import check_writable, read_json, write_text
from keras_filterprune._validation import check_int, check_number

__all__ = ["SensitivityResult"]

_WRITTEN_BY = "`SensitivityResult.save` or `keras-filterprune sensitivity --json`"


@dataclasses.dataclass
class SensitivityResult:
    """Score of the model with each channel group pruned alone, per ratio.

    Made by `sensitivity_analysis`. Groups are named by their first producer
    layer (the conv or dense layer that creates the channels).

    Attributes:
        baseline: `float`. Score of the unpruned model.
        curves: `dict[str, list[tuple[float, float]]]`. Group name → `(ratio,
            score)` points, starting with `(0.0, baseline)`.
        groups: `dict[str, list[str]]`. Group name → its producer layers (all of
            them are pruned together).
        widths: `dict[str, int]`. Group name → channels in the original model.
        metric: `str`. What the score is (e.g. `"accuracy"`).
        criterion: `str`. The importance criterion used to choose channels.
        kept: `dict[str, list[int]] | None`. Group name → the channels each
            point kept (rounding makes it differ from `1 - ratio` of the
            width); `None` when unknown.
    """

    baseline: float
    curves: dict[str, list[tuple[float, float]]]
    groups: dict[str, list[str]]
    widths: dict[str, int]
    metric: str = "score"
    criterion: str = "operator_norm"
    kept: dict[str, list[int]] | None = None

    @property
    def ratios(self) -> list[float]:
        """`list[float]`. The ratios evaluated (without the `0.0` baseline)."""
        first = next(iter(self.curves.values()), [])
        return [r for r, _ in first if r > 0]

    def drops(self) -> dict[str, list[tuple[float, float]]]:
        """`baseline - score` at each ratio, per group (positive = worse)."""
        return {
            name: [(r, self.baseline - s) for r, s in points]
            for name, points in self.curves.items()
        }

    def suggest_ratios(
        self, max_drop: float, *, relative: bool = False
    ) -> dict[str, float]:
        """Largest tested ratio per group whose score drop stays within `max_drop`.

        A ratio is accepted only if it and every smaller tested ratio keep the
        score within `max_drop` of the baseline, so a noisy bump past a cliff
        is never chosen. The drops were measured one group at a time; pruning
        several groups together usually costs more than the largest single
        drop, so fine-tune afterwards (as Li et al. do) or choose a smaller
        `max_drop`.

        Args:
            max_drop: `float` >= 0. Largest acceptable drop of the score, in the
                score's units (e.g. `0.01` = one accuracy point when the score
                is an accuracy in [0, 1]).
            relative: `bool`. Read `max_drop` as a fraction of the baseline
                instead. Defaults to `False`.

        Returns:
            `dict[str, float]`: every producer layer of the analysed groups →
            its ratio (`0.0` for groups that cannot lose anything), ready for
            `plan_pruning(model, ratio=0.0, per_layer=...)`.

        Raises:
            ValueError: `max_drop` is negative or not finite.
        """
        max_drop = check_number(max_drop, "max_drop", low=0.0)
        limit = max_drop * abs(self.baseline) if relative else max_drop
        result = {}
        for name, points in self.curves.items():
            chosen = 0.0
            for ratio, score in sorted(points):
                if self.baseline - score > limit + 1e-12:
                    break
                chosen = ratio
            for path in self.groups[name]:
                result[path] = chosen
        return result

    def removal_costs(self, producers: Iterable[str], width: int) -> np.ndarray:
        """What each channel of one group costs, read from its curve: entry `k`
        is the score lost when the group goes from `k + 1` kept channels to `k`
        (the channels in the criterion's order, best first), so that a sum over
        the removed channels is the curve's drop at that width. The curve is
        read at the widths the analysis kept (`kept`; else at `1 - ratio` of
        the width), linearly interpolated and made monotone (a noisy bump is
        not a gain); past the largest tested ratio the drop rises by the
        largest drop measured in any group (removing what was never tested is
        priced as costly); a flat stretch costs a millionth of that per group.
        This is how `plan_pruning(importance=result)` weighs one group's
        channels against another's.

        Args:
            producers: The producer layers of the group (any one analysed is
                enough).
            width: `int`. The group's channels in the model being planned.

        Returns:
            A float64 array of `width` non-negative costs.

        Raises:
            ValueError: the group was not analysed, was analysed with another
                width, or its curve is malformed.
        """
        producers = set(producers)
        names = [
            n for n in self.curves if producers & set(self.groups.get(n, ()) or (n,))
        ]
        if not names:
            raise ValueError(
                "The SensitivityResult given as `importance` has no curve for the "
                f"group of {sorted(producers)[:3]}: run `sensitivity_analysis` on "
                "every prunable group of this model (`groups=None`), with the "
                "same `exclude` and `prune_norms` as the plan."
            )
        name = names[0]
        if self.widths.get(name) != width:
            raise ValueError(
                "The SensitivityResult given as `importance` was measured with "
                f"{self.widths.get(name, 'no width for')} channels in group "
                f"'{name}', but the model has {width}: analyse the model you are "
                "planning."
            )
        fractions, drops = self._drops(name, width)
        largest = max(  # every curve checked, so the scale is offset-free
            [float(self._drops(n, self.widths.get(n))[1][-1]) for n in self.curves]
            + [1e-12]
        )
        fractions = np.append(fractions, 1.0)
        drops = np.append(drops, drops[-1] + largest)
        kept = np.arange(width + 1)
        drop_at = np.interp(1.0 - kept / width, fractions, drops)  # keeping k
        # A flat stretch still costs a little (by its share of the group), so
        # that groups whose curves are flat do not tie.
        return drop_at[:-1] - drop_at[1:] + 1e-6 * largest / width

    def _drops(self, name: str, width: Any) -> tuple[np.ndarray, np.ndarray]:
        """`(fraction removed, drop)` of one group's curve, from no cut on:
        sorted, monotone, >= 0; checked."""
        points, kept = self.curves[name], (self.kept or {}).get(name)
        try:
            points = [(float(r), float(v)) for r, v in points]
            removed = [r for r, _ in points]
            if kept is not None:  # the widths the analysis actually kept
                if len(kept) != len(points) or not width:
                    raise ValueError
                removed = [1.0 - float(k) / float(width) for k in kept]
            baseline = float(self.baseline)
        except (TypeError, ValueError):
            raise ValueError(
                "The SensitivityResult given as `importance` has a malformed curve "
                f"for group '{name}' (points must be `(ratio, score)` pairs of "
                f"numbers, one `kept` count per point): {self.curves[name]!r}. Use "
                "the result of `sensitivity_analysis`."
            ) from None
        removed, scores = np.array(removed), np.array([v for _, v in points])
        if not (
            np.all(np.isfinite(scores))
            and np.isfinite(baseline)
            and np.all((removed >= 0) & (removed < 1))
        ):
            raise ValueError(
                "The SensitivityResult given as `importance` has a non-finite "
                f"score or a ratio outside [0, 1) in group '{name}': "
                f"{self.curves[name]}. Use the result of `sensitivity_analysis`."
            )
        order = np.argsort(removed, kind="stable")
        removed = np.concatenate([[0.0], removed[order]])  # no cut: no drop
        drops = np.concatenate([[0.0], baseline - scores[order]])
        return removed, np.maximum.accumulate(np.maximum(drops, 0.0))

    def to_markdown(self, digits: int = 4) -> str:
        """The curves as a Markdown table: one row per group, one column per ratio.

        Args:
            digits: `int`. Decimals of the scores. Defaults to `4`.

        Returns:
            `str`.
        """
        check_int(digits, "digits", 0)
        ratios = self.ratios
        head = "| group | width | " + " | ".join(f"{r:g}" for r in ratios) + " |"
        rule = "|---|---:|" + "---:|" * len(ratios)
        lines = [
            f"{self.metric} after pruning one group alone "
            f"(criterion {self.criterion}, baseline {self.baseline:.{digits}f})",
            "",
            head,
            rule,
        ]
        for name, points in self.curves.items():
            by_ratio = dict(points)
            cells = " | ".join(f"{by_ratio[r]:.{digits}f}" for r in ratios)
            label = name
            if len(self.groups[name]) > 1:
                label += f" (+{len(self.groups[name]) - 1} tied)"
            lines.append(f"| {label} | {self.widths[name]} | {cells} |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable data."""
        return {
            "baseline": float(self.baseline),
            "metric": self.metric,
            "criterion": self.criterion,
            "curves": {
                k: [[float(r), float(s)] for r, s in v] for k, v in self.curves.items()
            },
            "groups": {k: list(v) for k, v in self.groups.items()},
            "widths": {k: int(n) for k, n in self.widths.items()},
            "kept": None
            if self.kept is None
            else {k: [int(n) for n in v] for k, v in self.kept.items()},
        }

    @classmethod
    def from_dict(cls, data: Any) -> SensitivityResult:
        """The inverse of `to_dict`.

        Raises:
            TypeError: `data` is not a dict with `to_dict`'s keys, or a field
                holds the wrong kind of value (the message names it).
        """
        keys = {f.name for f in dataclasses.fields(cls)}
        required = {"baseline", "curves", "groups", "widths"}
        if not isinstance(data, Mapping) or not required <= set(data) <= keys:
            raise TypeError(
                "`data` must be the dict of `SensitivityResult.to_dict()` (keys "
                f"{sorted(keys)}). Received: {type(data).__name__}"
                + (f" with keys {sorted(data)}" if isinstance(data, Mapping) else "")
            )
        data = dict(data)
        try:
            data["curves"] = {
                str(k): [(float(r), float(v)) for r, v in points]
                for k, points in dict(data["curves"]).items()
            }
        except (TypeError, ValueError, OverflowError):
            raise TypeError(
                "`data['curves']` must map each group name to `(ratio, score)` "
                f"pairs of numbers, as `to_dict()` writes. Received: {data['curves']!r}"
            ) from None
        _check_fields(data)
        result = cls(**data)
        for name, width in result.widths.items():
            if name not in result.curves:
                continue
            try:  # what planning reads: finite scores, ratios in [0, 1), kept
                result._drops(name, width)
            except ValueError:
                raise TypeError(
                    f"`data['curves']['{name}']` must hold finite scores at ratios "
                    "in [0, 1), with one `kept` count per point, as `to_dict()` "
                    f"writes. Received: {result.curves[name]!r}"
                ) from None
        return result

    def save(self, path: str | os.PathLike) -> None:
        """Writes the curves as JSON (`to_dict`), atomically: on any failure
        nothing is left behind. `keras-filterprune prune --importance
        curves.json` and `SensitivityResult.load` read it.

        Raises:
            TypeError: `path` is not a path.
            FileNotFoundError, PermissionError, IsADirectoryError: bad destination.
        """
        path = check_writable(path)
        write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> SensitivityResult:
        """Reads curves saved with `save` (or by `keras-filterprune sensitivity
        --json`), validated as an untrusted file.

        Raises:
            ValueError: the file is not UTF-8 JSON or not the curves of
                `to_dict`; the message names the file and what is wrong.
            FileNotFoundError: no such file.
        """
        data = read_json(path, "sensitivity curves", _WRITTEN_BY)
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError, OverflowError) as e:  # int too big for float
            raise ValueError(
                f"Cannot read sensitivity curves '{os.fspath(path)}': "
                f"{str(e) or type(e).__name__}. Write them with {_WRITTEN_BY}."
            ) from None

    def plot(self, **kwargs):
        """Score-vs-ratio curves, one per group (see `plot_sensitivity`).

        Returns:
            A `matplotlib.figure.Figure`.
        """
        from keras_filterprune.plots import plot_sensitivity

        return plot_sensitivity(self, **kwargs)

    def __str__(self) -> str:
        return self.to_markdown()


def _check_fields(data: dict[str, Any]) -> None:
    """The fields besides `curves` (already converted), as `to_dict` writes
    them: raises a TypeError naming the first one that is not."""

    def names(value: Any) -> bool:
        return isinstance(value, (list, tuple)) and all(
            isinstance(v, str) for v in value
        )

    def count(value: Any) -> bool:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)

    def counts(value: Any) -> bool:
        return isinstance(value, (list, tuple)) and all(count(v) for v in value)

    problems = {
        "baseline": not (
            isinstance(data["baseline"], numbers.Real)
            and not isinstance(data["baseline"], bool)
            and math.isfinite(data["baseline"])
        ),
        "groups": not (
            isinstance(data["groups"], Mapping)
            and all(names(v) for v in data["groups"].values())
            and set(data["curves"]) <= set(data["groups"])
        ),
        "widths": not (
            isinstance(data["widths"], Mapping)
            and all(count(v) and v > 0 for v in data["widths"].values())
            and set(data["curves"]) <= set(data["widths"])
        ),
        "metric": not isinstance(data.get("metric", ""), str),
        "criterion": not isinstance(data.get("criterion", ""), str),
        "kept": data.get("kept") is not None
        and not (
            isinstance(data["kept"], Mapping)
            and all(counts(v) for v in data["kept"].values())
        ),
    }
    wrong = [name for name, bad in problems.items() if bad]
    if wrong:
        expected = {
            "baseline": "a finite number",
            "groups": "group name -> list of its producer layers, for every curve",
            "widths": "group name -> its channel count (> 0), for every curve",
            "metric": "a string",
            "criterion": "a string",
            "kept": "None, or group name -> list of kept channel counts",
        }[wrong[0]]
        raise TypeError(
            f"`data[{wrong[0]!r}]` must be {expected}, as `to_dict()` writes. "
            f"Received: {data[wrong[0]]!r}"
        )
