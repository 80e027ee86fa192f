"""`compare_models`: a model against its pruned copy, side by side: parameters,
MACs, file sizes (without optimizer state), interleaved A/B latency, so that
machine noise hits both alike, and accuracy on labelled data when given."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import warnings
from typing import Any

import keras
import numpy as np

from keras_filterprune._messages import say
from keras_filterprune._validation import check_int
from keras_filterprune.exceptions import FilterPruneWarning
from keras_filterprune.export import ExportReport, export_tflite, save_keras
from keras_filterprune.runtime.benchmark import (
    LatencyStats,
    adaptive,
    keras_call,
    tflite_call,
)
from keras_filterprune.runtime.feeds import (
    element_to_feed,
    input_tensors,
    keras_inputs,
    signature_names,
)
from keras_filterprune.runtime.litert import Runner, sorted_outputs
from keras_filterprune.runtime.timing import (
    check_adaptive_args,
    check_timing_args,
    time_rounds,
)

__all__ = ["ComparisonReport", "compare_models"]

_EVAL_BATCH = 256


@dataclasses.dataclass
class ComparisonReport:
    """Original vs pruned model: sizes, MACs, latencies, export checks, accuracy.

    Attributes:
        rows: `list[dict]`. One dict per metric with keys `metric` (a stable key:
            `"accuracy"` and `"tflite_accuracy"` (with `eval_data`), `"params"`,
            `"macs"`, `"keras_size"`, `"tflite_size"`, `"keras_latency"`,
            `"tflite_latency"`, `"keras_max_abs_diff"`, `"tflite_max_abs_diff"`),
            `label`, `unit`, `original`, `pruned` and `ratio` (pruned / original;
            `None` where a ratio means nothing).
        settings: `dict`. How it was measured (threads, runs, quantization, ...).
        exports: `dict[str, ExportReport]`. The exports the sizes come from, keys
            `"original.keras"`, `"pruned.tflite"`, …; each says how its file
            compared with its Keras model. Their files remain only when
            `compare_models` got a `tmpdir`; otherwise `path` is the file name.
        latency: `dict[str, LatencyStats]`. Full timing statistics (min, p90,
            every run), keys `"original.keras"`, `"pruned.tflite"`, ….

    Example:

    `compare_models` makes it (see there); a report is plain data:

    >>> from keras_filterprune.runtime import ComparisonReport
    >>> report = ComparisonReport(
    ...     rows=[
    ...         {"metric": "macs", "label": "MACs", "unit": "",
    ...          "original": 1_000_000, "pruned": 400_000, "ratio": 0.4},
    ...         {"metric": "tflite_latency", "label": "TFLite latency",
    ...          "unit": "ms", "original": 2.5, "pruned": 1.25, "ratio": 0.5},
    ...     ],
    ...     settings={"num_threads": 2},
    ... )
    >>> report.ratio("tflite_latency")
    0.5
    >>> print(report)
    | metric | original | pruned | pruned/original |
    |---|---:|---:|---:|
    | MACs | 1,000,000 | 400,000 | 0.400 |
    | TFLite latency (ms) | 2.500 | 1.250 | 0.500 |
    >>> report.to_dict()["settings"]  # JSON-serialisable
    {'num_threads': 2}
    """

    rows: list[dict[str, Any]]
    settings: dict[str, Any]
    exports: dict[str, ExportReport] = dataclasses.field(default_factory=dict)
    latency: dict[str, LatencyStats] = dataclasses.field(default_factory=dict)

    def ratio(self, metric: str) -> float | None:
        """Returns the pruned / original ratio of `metric` (e.g. `"macs"`)."""
        for row in self.rows:
            if row["metric"] == metric:
                return row["ratio"]
        raise KeyError(
            f"No metric {metric!r}; known: {[r['metric'] for r in self.rows]}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Returns plain data (JSON-serialisable)."""
        return {
            "rows": [dict(r) for r in self.rows],
            "settings": dict(self.settings),
            "exports": {k: dataclasses.asdict(v) for k, v in self.exports.items()},
            "latency": {k: dataclasses.asdict(v) for k, v in self.latency.items()},
        }

    def to_markdown(self) -> str:
        """Returns the table in Markdown, then one line per export check."""
        lines = [
            "| metric | original | pruned | pruned/original |",
            "|---|---:|---:|---:|",
        ]
        for r in self.rows:
            name = f"{r['label']} ({r['unit']})" if r["unit"] else r["label"]
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
            lines.append(
                f"| {name} | {_fmt(r['original'])} | {_fmt(r['pruned'])} | {ratio} |"
            )
        if self.exports:
            lines += ["", "Export checks:"]
            lines += [
                f"- {key}: {report.verification}"
                for key, report in self.exports.items()
            ]
        return "\n".join(lines)

    __str__ = to_markdown


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e6):
        return f"{value:.2e}"
    return f"{value:.3f}"


def _labels(eval_data: Any) -> tuple[Any, np.ndarray, int | None]:
    """`(x, class indices, one-hot width or None)` from `(x, y)`, y as ints or
    one-hot rows."""
    if not isinstance(eval_data, (tuple, list)) or len(eval_data) != 2:
        raise TypeError(
            "`eval_data` must be a tuple (x, y) of inputs and labels (class "
            f"indices or one-hot rows). Received: {type(eval_data).__name__}"
        )
    x, y = eval_data
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise TypeError(
            "The labels of `eval_data` must be numbers: class indices (N,) or "
            f"one-hot rows (N, classes). Received: dtype {y.dtype}"
        )
    if y.ndim == 2 and y.shape[1] > 1:
        return x, y.argmax(axis=1), y.shape[1]
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or not len(y) or np.any(y != np.round(y)) or np.any(y < 0):
        raise ValueError(
            "The labels of `eval_data` must be class indices (N,) or one-hot rows "
            f"(N, classes). Received: shape {y.shape}, dtype {y.dtype}"
        )
    return x, y.astype(np.int64), None


def _eval_feed(
    model: keras.Model, x: Any, labels: np.ndarray, width: int | None
) -> dict[str, np.ndarray]:
    size = len(labels)
    outputs = model.outputs
    classes = outputs[0].shape[-1] if len(outputs) == 1 else None
    if len(outputs[0].shape) != 2 or classes is None or classes < 2:
        raise ValueError(
            "`eval_data` accuracy needs models with one output of shape "
            f"(batch, classes), classes >= 2; {model.name!r} returns "
            f"{[tuple(o.shape) for o in outputs]}."
        )
    feed = element_to_feed(x, model, "eval_data")
    if width is not None and width != classes:
        raise ValueError(
            f"The one-hot labels of `eval_data` have {width} columns, but "
            f"{model.name!r} has {classes} classes."
        )
    if labels.max() >= classes:
        raise ValueError(
            f"The labels of `eval_data` go up to {int(labels.max())}, but "
            f"{model.name!r} has {classes} classes (0..{classes - 1})."
        )
    n = len(next(iter(feed.values())))
    if n != size:
        raise ValueError(
            f"`eval_data` has {n} inputs but {size} labels for {model.name!r}."
        )
    return feed


def _check_same_inputs(original, pruned) -> None:
    """Pruning keeps a model's inputs: two models that differ there are not an
    original and its pruned version."""
    shapes = [
        [tuple(t.shape[1:]) for t in input_tensors(m)] for m in (original, pruned)
    ]
    if shapes[0] != shapes[1]:
        raise ValueError(
            "`original` and `pruned` take different inputs "
            f"({shapes[0]} vs {shapes[1]}): compare a model with its own pruned "
            "version (pruning never changes the inputs)."
        )


def _keras_accuracy(model, feed, labels) -> float:
    scores = model.predict(keras_inputs(model, feed), batch_size=_EVAL_BATCH, verbose=0)
    return float(np.mean(np.asarray(scores).argmax(axis=-1) == labels))


def _tflite_accuracy(model, path, feed, labels, num_threads) -> float:
    runner = Runner(path, num_threads)
    names = signature_names(model, runner.input_details)
    hits = 0
    for i in range(0, len(labels), _EVAL_BATCH):
        chunk = {names[k]: v[i : i + _EVAL_BATCH] for k, v in feed.items()}
        (scores,) = sorted_outputs(runner.run(chunk))
        hits += int(np.sum(scores.argmax(axis=-1) == labels[i : i + _EVAL_BATCH]))
    return hits / len(labels)


def compare_models(
    original: keras.Model,
    pruned: keras.Model,
    *,
    tmpdir: str | os.PathLike | None = None,
    num_threads: int = 2,
    runs: int = 50,
    warmup: int = 5,
    batch_size: int = 1,
    quantization: str | None = None,
    representative_data: Any = None,
    interleave: bool = True,
    eval_data: Any = None,
    verbose: int = 1,
    min_round_ms: float = 20.0,
    target_ci: float | None = 0.02,
    max_seconds: float | None = 60.0,
) -> ComparisonReport:
    """Compares two models: params, MACs, file sizes, latencies, export checks.

    Both models are saved as `.keras` without optimizer state (an uncompiled
    copy: a trained original and a fresh pruned model compare like for like)
    and exported to TFLite, each file checked against its Keras model as
    `save_keras` and `export_tflite` do (a failed check warns, naming the model;
    the report keeps the numbers and says which check failed). Latencies are
    medians of rounds of at least `min_round_ms`, the rounds of the two models
    alternating (A B, B A, …) when `interleave=True`, so that machine noise hits
    both equally, until the 95 % interval of each median is within
    `±target_ci` of it (see `benchmark_tflite`); `report.latency` holds the
    intervals.

    Args:
        original: `keras.Model`, the reference.
        pruned: `keras.Model`, e.g. from `apply_plan`. Ratios are pruned/original.
        tmpdir: where to keep the files (`original.keras`, `pruned.tflite`, …);
            `None` writes them to a temporary directory that is removed.
        num_threads: int. LiteRT threads. Defaults to `2`.
        runs: int. Timed calls per model, at least. Defaults to `50`.
        warmup: int. Untimed calls first. Defaults to `5`.
        batch_size: int. Batch of the timed inputs. Defaults to `1`.
        quantization: TFLite quantization, as in `export_tflite`.
        representative_data: as in `export_tflite` (required for `"int8"`).
        interleave: bool. Alternate the two models' runs. Defaults to `True`.
        eval_data: `(x, y)` or `None`. Labelled data: adds the accuracy
            (argmax of the output against `y`, class indices or one-hot rows) of
            both models in Keras and of both TFLite files. The models need one
            `(batch, classes)` output. Defaults to `None`.
        verbose: int. `1` prints a line as each stage starts (saving,
            converting, timing, evaluating), as Keras prints its progress; `0`
            is silent. Defaults to `1`.
        min_round_ms: float. Each round of a model lasts at least this long
            (`0`: one call). Defaults to `20.0`.
        target_ci: float or `None`. Relative half-width of the 95 % interval of
            each median to reach (`None`: stop after `runs` calls). Defaults to
            `0.02`.
        max_seconds: float or `None`. Time limit of each of the two timings
            (Keras, TFLite). Defaults to `60.0`.

    Returns:
        `ComparisonReport`; `print(report)` shows a Markdown table and the
        export checks.

    Raises:
        TypeError: `eval_data` is not a pair `(x, y)`.
        ValueError: bad timing settings; with `eval_data`, labels that are not
            class indices or one-hot rows, a number of inputs other than of
            labels, or a model without one `(batch, classes)` output.
        FileNotFoundError: `tmpdir` is not a directory.

    Example (`max_seconds=2` keeps it short; by default each timing goes on
    until its interval is within ±2 %):

    >>> import keras, numpy as np
    >>> def net(width, name):
    ...     inp = keras.Input((8, 8, 3))
    ...     x = keras.layers.Conv2D(width, 3, activation="relu")(inp)
    ...     x = keras.layers.GlobalAveragePooling2D()(x)
    ...     return keras.Model(inp, keras.layers.Dense(3)(x), name=name)
    >>> report = compare_models(
    ...     net(8, "wide"), net(4, "narrow"), runs=3, warmup=1, max_seconds=2
    ... )
    compare_models: saving 'wide' as .keras (no optimizer state) and checking the
    reload...
    compare_models: converting 'wide' to TFLite (float32) and checking it...
    compare_models: saving 'narrow' as .keras (no optimizer state) and checking
    the reload...
    compare_models: converting 'narrow' to TFLite (float32) and checking it...
    compare_models: timing Keras, at least 3 runs per model, interleaved...
    compare_models: timing TFLite in LiteRT (2 threads), at least 3 runs per
    model, interleaved...
    >>> round(report.ratio("params"), 2)
    0.51

    With labelled data, the accuracy in Keras and in TFLite (`verbose=0`
    prints nothing):

    >>> x = np.random.default_rng(0).normal(size=(20, 8, 8, 3))
    >>> y = np.arange(20) % 3
    >>> report = compare_models(
    ...     net(8, "wide"), net(4, "narrow"), runs=3, eval_data=(x, y),
    ...     verbose=0, max_seconds=2,
    ... )
    >>> [row["metric"] for row in report.rows][:2]
    ['accuracy', 'tflite_accuracy']
    """
    from keras_filterprune.profile import count_macs

    check_timing_args(runs, warmup, batch_size)
    check_adaptive_args(min_round_ms, target_ci, max_seconds)
    verbose = check_int(verbose, "verbose", minimum=0)
    models = {"original": original, "pruned": pruned}
    _check_same_inputs(original, pruned)
    evaluation = None
    if eval_data is not None:
        x, labels, width = _labels(eval_data)
        evaluation = (
            {k: _eval_feed(m, x, labels, width) for k, m in models.items()},
            labels,
        )

    def stage(text: str) -> None:
        if verbose:
            say(f"compare_models: {text}...")

    with contextlib.ExitStack() as stack:
        keep = tmpdir is not None
        if tmpdir is None:
            tmpdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="kfp-"))
        elif not os.path.isdir(tmpdir):
            raise FileNotFoundError(
                f"`tmpdir` {os.fspath(tmpdir)!r} is not a directory."
            )
        exports: dict[str, ExportReport] = {}
        for key, model in models.items():
            q = quantization or "float32"
            stage(
                f"saving {model.name!r} as .keras (no optimizer state) and "
                "checking the reload"
            )
            with warnings.catch_warnings():  # warned below, naming the model
                warnings.simplefilter("ignore", FilterPruneWarning)
                exports[f"{key}.keras"] = save_keras(
                    model,
                    os.path.join(tmpdir, f"{key}.keras"),
                    strict=False,
                    include_optimizer=False,
                )
                stage(f"converting {model.name!r} to TFLite ({q}) and checking it")
                exports[f"{key}.tflite"] = export_tflite(
                    model,
                    os.path.join(tmpdir, f"{key}.tflite"),
                    quantization,
                    representative_data,
                    strict=False,
                    verbose=0,
                )
        timing = adaptive(
            runs, warmup, min_round_ms, target_ci, max_seconds, interleave
        )
        stage(f"timing Keras, at least {runs} runs per model{_order(interleave)}")
        keras_times = time_rounds(
            [keras_call(m, batch_size, None)[0] for m in models.values()],
            **{**timing, "warmup": max(warmup, 1)},
        )
        stage(
            f"timing TFLite in LiteRT ({num_threads} threads), at least {runs} "
            f"runs per model{_order(interleave)}"
        )
        tflite_times = time_rounds(
            [
                tflite_call(exports[f"{k}.tflite"].path, num_threads, batch_size, None)[
                    0
                ]
                for k in models
            ],
            **timing,
        )
        accuracy = {}
        if evaluation is not None:
            feeds, labels = evaluation
            stage(f"evaluating both models on {len(labels)} samples, Keras and TFLite")
            for k, m in models.items():
                accuracy[f"{k}.keras"] = _keras_accuracy(m, feeds[k], labels)
                accuracy[f"{k}.tflite"] = _tflite_accuracy(
                    m, exports[f"{k}.tflite"].path, feeds[k], labels, num_threads
                )
    for key, report in exports.items():
        model = models[key.split(".")[0]]
        if not keep:  # the files are gone: name them, not a temporary path
            exports[key] = report = dataclasses.replace(
                report, path=os.path.basename(report.path)
            )
        if report.passed is False:
            warnings.warn(
                f"compare_models: the {report.kind} export of the "
                f"{key.split('.')[0]} model {model.name!r} failed its check, so "
                "its numbers describe a file that does not match its Keras "
                f"model. {report.verification}.",
                FilterPruneWarning,
                stacklevel=2,
            )
    latency = {}
    for fmt, times, threads in (
        ("keras", keras_times, None),
        ("tflite", tflite_times, num_threads),
    ):
        for key, t in zip(models, times, strict=True):
            latency[f"{key}.{fmt}"] = LatencyStats.from_timing(
                t, batch_size=batch_size, num_threads=threads, runtime=fmt
            )

    def pair(values, ratio=True):
        a, b = values
        return {"original": a, "pruned": b, "ratio": b / a if ratio and a else None}

    def median(fmt):
        return [latency[f"{k}.{fmt}"].median_ms for k in models]

    def from_exports(fmt, field):
        return [getattr(exports[f"{k}.{fmt}"], field) for k in models]

    def kib(fmt):
        return [size / 1024 for size in from_exports(fmt, "size_bytes")]

    q = quantization or "float32"
    measured = []
    if accuracy:
        measured += [
            (
                "accuracy",
                "accuracy (Keras)",
                "",
                pair([accuracy[f"{k}.keras"] for k in models], ratio=False),
            ),
            (
                "tflite_accuracy",
                f"accuracy (TFLite, {q})",
                "",
                pair([accuracy[f"{k}.tflite"] for k in models], ratio=False),
            ),
        ]
    measured += [
        ("params", "params", "", pair([m.count_params() for m in models.values()])),
        ("macs", "MACs", "", pair([count_macs(m) for m in models.values()])),
        (
            "keras_size",
            ".keras size, no optimizer state",
            "KiB",
            pair(kib("keras")),
        ),
        ("tflite_size", f".tflite size ({q})", "KiB", pair(kib("tflite"))),
        ("keras_latency", "Keras latency, median", "ms", pair(median("keras"))),
        (
            "tflite_latency",
            f"TFLite latency, median, {num_threads} threads",
            "ms",
            pair(median("tflite")),
        ),
        (
            "keras_max_abs_diff",
            ".keras max abs diff vs Keras",
            "",
            pair(from_exports("keras", "max_abs_diff"), ratio=False),
        ),
        (
            "tflite_max_abs_diff",
            ".tflite max abs diff vs Keras",
            "",
            pair(from_exports("tflite", "max_abs_diff"), ratio=False),
        ),
    ]
    rows = [
        {"metric": key, "label": label, "unit": unit, **values}
        for key, label, unit, values in measured
    ]
    settings = {
        "num_threads": num_threads,
        "runs": runs,
        "warmup": warmup,
        "batch_size": batch_size,
        "quantization": quantization,
        "interleave": interleave,
        "min_round_ms": min_round_ms,
        "target_ci": target_ci,
        "max_seconds": max_seconds,
        "original": original.name,
        "pruned": pruned.name,
        "keras_size": "without optimizer state",
    }
    if evaluation is not None:
        settings["eval_samples"] = len(evaluation[1])
    return ComparisonReport(rows, settings, exports, latency)


def _order(interleave: bool) -> str:
    return ", interleaved" if interleave else ", one model after the other"
