"""The end-to-end demo: `make demo`, `python -m keras_filterprune demo`.

Fashion-MNIST (from Debian's `dataset-fashion-mnist`; a synthetic stand-in when it
is missing, said clearly) → a small VGG-style CNN → sensitivity analysis → a plan
for half the MACs in which no group is pruned beyond what sensitivity found safe →
iterative hard pruning inside `model.fit` with `PruningCallback` and a
`PolynomialRatio` schedule → `pruned_model()` → BatchNorm recalibration →
distillation from the original (`Distiller`) → TFLite export →
a before/after table (accuracy, params, MACs, .tflite size, latency), plots and
the plan as JSON in the output directory.

This module prints: it is the demo, not library code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import keras
import numpy as np

__all__ = ["DemoResult", "build_model", "run_demo"]

_FULL = {
    "subset": (12000, 2000),
    "base_epochs": 4,
    "prune_epochs": 4,
    "finetune_epochs": 8,
    "ratios": (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    "sensitivity_samples": 1000,
    "latency_runs": 1000,
    "max_drop": 0.02,
}
_QUICK = {
    "subset": (512, 256),
    "base_epochs": 1,
    "prune_epochs": 2,
    "finetune_epochs": 1,
    "ratios": (0.5,),
    "sensitivity_samples": 256,
    "latency_runs": 20,
    "max_drop": 0.02,
}
_MACS_TARGET = 0.5  # of the original model's MACs
_CALIBRATION_EXAMPLES = 4096


@dataclasses.dataclass
class DemoResult:
    """What the demo measured and wrote.

    Attributes:
        report: `ComparisonReport`. Original vs pruned, accuracy rows first.
        files: `dict[str, str]`. What was written, by kind (`"plan"`,
            `"pruned.tflite"`, `"widths.png"`, …).
        synthetic: `bool`. Whether synthetic data replaced Fashion-MNIST.
        seconds: `float`. Wall time of the whole demo.
    """

    report: Any
    files: dict[str, str]
    synthetic: bool
    seconds: float

    def to_markdown(self) -> str:
        return self.report.to_markdown()


def build_model(
    input_shape: tuple[int, ...] = (28, 28, 1),
    num_classes: int = 10,
    widths: tuple[int, ...] = (16, 16, 32, 32, 64),
) -> keras.Model:
    """A small VGG-style CNN: (conv-BN-ReLU) ×2, pool, ×2, pool, ×1, GAP, dense.

    Args:
        input_shape: `tuple`. Image shape. Defaults to `(28, 28, 1)`.
        num_classes: `int`. Softmax outputs. Defaults to `10`.
        widths: `tuple[int, ...]`. Filters of the five convolutions. Defaults to
            `(16, 16, 32, 32, 64)`.

    Returns:
        An uncompiled functional `keras.Model`.

    Example:

    >>> build_model().count_params()
    35994
    """
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, filters in enumerate(widths):
        name = f"conv{i + 1}"
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=name)(
            x
        )
        # momentum 0.9: the moving statistics settle within a short demo run.
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
        if i in (1, 3):
            x = keras.layers.MaxPooling2D(name=f"pool{i // 2 + 1}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(
        x
    )
    return keras.Model(inputs, outputs, name="fashion_vgg")


def _synthetic(train_n: int, test_n: int, seed: int = 0):
    """Ten noisy 28×28 prototype images: a learnable stand-in for Fashion-MNIST."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((10, 7, 7)).astype("float32")
    prototypes = np.kron(coarse, np.ones((4, 4), dtype="float32"))
    splits = []
    for n in (train_n, test_n):
        y = rng.integers(0, 10, n).astype("uint8")
        noise = rng.normal(0.0, 0.35, (n, 28, 28)).astype("float32")
        x = np.clip(prototypes[y] + noise, 0.0, 1.0)[..., np.newaxis]
        splits.append((x, y))
    return splits[0], splits[1]


def _load_data(subset: tuple[int, int], data_dir: str | None):
    from keras_filterprune.datasets import fashion_mnist

    if data_dir is not None:  # asked for: never replaced by synthetic data
        return fashion_mnist(data_dir, subset=subset), False
    try:
        return fashion_mnist(data_dir, subset=subset), False
    except FileNotFoundError as e:
        print(f"!! Fashion-MNIST not found ({e})")
        print(
            "!! USING SYNTHETIC DATA instead (10 noisy prototype images): the "
            "accuracies below are NOT Fashion-MNIST results."
        )
        return _synthetic(*subset), True


def _accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(probabilities, axis=-1) == labels))


def _section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _guided_plan(model, sens, target_macs: float):
    """Per-layer ratios from sensitivity analysis that reach `target_macs`.

    Every group gets the largest tested ratio whose accuracy drop (pruned alone)
    stays within a tolerance `D`; `D` is the smallest of the measured drops for
    which the whole plan fits the MAC budget (Li et al. 2017, §3.2, with the
    budget choosing the tolerance). Returns `(plan, per_layer, D)`, or a
    uniform plan and `{}` when no tolerance reaches the budget.
    """
    from keras_filterprune import plan_pruning
    from keras_filterprune.plan import estimate_macs

    drops = sorted({max(d, 0.0) for pts in sens.drops().values() for _, d in pts})
    for tolerance in drops:
        per_layer = sens.suggest_ratios(max_drop=tolerance)
        plan = plan_pruning(model, 0.0, "operator_norm", per_layer=per_layer)
        if estimate_macs(model, plan) <= target_macs:
            return plan, per_layer, tolerance
    return plan_pruning(model, 0.0, target_macs=target_macs), {}, None


def run_demo(
    quick: bool = False,
    output_dir: str | os.PathLike = "demo_output",
    data_dir: str | os.PathLike | None = None,
    *,
    seed: int = 0,
) -> DemoResult:
    """Runs the demo and prints its progress and the before/after table.

    Args:
        quick: `bool`. Tiny data and one epoch per phase (seconds; for tests).
            Defaults to `False` (about 2-4 minutes on two CPU cores).
        output_dir: Where the models, plan, plots and report go (created).
            Defaults to `"demo_output"`.
        data_dir: Directory of the Fashion-MNIST idx files. Defaults to `None`
            (Debian's `/usr/share/datasets/fashion-mnist`; when it is missing,
            synthetic data, loudly labelled). A `data_dir` given must exist.
        seed: `int`. Random seed. Defaults to `0`.

    Returns:
        A `DemoResult`.
    """
    from keras_filterprune import (
        Distiller,
        PruningCallback,
        apply_plan,
        count_macs,
        plan_pruning,
        recalibrate_batchnorm,
        sensitivity_analysis,
    )
    from keras_filterprune.plan import estimate_macs
    from keras_filterprune.plots import plot_comparison, plot_sensitivity, plot_widths
    from keras_filterprune.runtime import ComparisonReport, compare_models, run_tflite
    from keras_filterprune.schedules import PolynomialRatio

    start = time.perf_counter()
    cfg = _QUICK if quick else _FULL
    if data_dir is not None and not os.path.isdir(data_dir):
        raise FileNotFoundError(
            f"`data_dir` {os.fspath(data_dir)!r} is not a directory: give the "
            "directory of the Fashion-MNIST idx files, or None for Debian's."
        )
    output_dir = os.fspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    keras.utils.set_random_seed(seed)
    fit_verbose = 0 if quick else 2

    _section("Data")
    ((x_train, y_train), (x_test, y_test)), synthetic = _load_data(
        cfg["subset"], None if data_dir is None else os.fspath(data_dir)
    )
    source = "synthetic" if synthetic else "Fashion-MNIST"
    print(f"{source}: {len(x_train)} training and {len(x_test)} test images 28x28")

    _section(f"Training the original model ({cfg['base_epochs']} epochs)")
    model = build_model()
    steps = -(-len(x_train) // 128) * cfg["base_epochs"]
    # A decaying learning rate ends the training at a stable point.
    learning_rate = keras.optimizers.schedules.CosineDecay(3e-3, steps, alpha=0.1)
    model.compile(
        keras.optimizers.Adam(learning_rate),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        x_train,
        y_train,
        batch_size=128,
        epochs=cfg["base_epochs"],
        validation_data=(x_test, y_test),
        verbose=fit_verbose,
    )
    original = keras.models.clone_model(model)
    original.set_weights(model.get_weights())
    base_acc = _accuracy(original.predict(x_test, verbose=0), y_test)
    print(f"original test accuracy: {base_acc:.4f}")

    _section("Sensitivity: each conv pruned alone, no retraining (Li et al. 2017)")
    n = cfg["sensitivity_samples"]
    sens = sensitivity_analysis(
        original,
        data=(x_test[:n], y_test[:n]),
        ratios=cfg["ratios"],
        verbose=0,
    )
    print(sens.to_markdown(digits=3))

    _section(f"Plan: sensitivity-guided widths for {_MACS_TARGET:.0%} of the MACs")
    base_macs = count_macs(original)
    budget = _MACS_TARGET * base_macs
    guided, per_layer, tolerance = _guided_plan(original, sens, budget)
    uniform = plan_pruning(original, 0.0, "operator_norm", target_macs=budget)
    # Judge both candidates as EagleEye does: pruned at once, BatchNorm
    # recalibrated on training images, scored on 4,096 other training images.
    held_out = x_train[-_CALIBRATION_EXAMPLES:], y_train[-_CALIBRATION_EXAMPLES:]
    candidates = {}
    for name, candidate in (("sensitivity-guided", guided), ("uniform", uniform)):
        if name == "sensitivity-guided" and not per_layer:
            continue
        trial = apply_plan(
            original, candidate, calibration_data=x_train[:_CALIBRATION_EXAMPLES]
        )
        candidates[name] = _accuracy(trial.predict(held_out[0], verbose=0), held_out[1])
        share = estimate_macs(original, candidate) / base_macs
        print(
            f"{name}: MACs {share:.1%} of the original, training-set accuracy after "
            f"pruning + recalibration {candidates[name]:.4f}"
        )
    if per_layer:
        ratios = ", ".join(f"{k} {r:g}" for k, r in per_layer.items())
        print(f"  (sensitivity-guided: drop <= {tolerance:.3f} per group: {ratios})")
    choice = max(candidates, key=candidates.get)
    print(f"chosen: {choice}")
    final_ratio = uniform.meta["ratio"]
    per_layer = per_layer if choice == "sensitivity-guided" else {}

    _section(
        f"Iterative hard pruning during training ({cfg['prune_epochs']} epochs, "
        "PolynomialRatio schedule)"
    )
    # Events at the ends of all pruning epochs but the last, which trains the
    # final architecture (masked) before it is cut out. Per-layer ratios (the
    # guided plan) apply at the first event.
    last = max(cfg["prune_epochs"] - 2, 0)
    schedule = PolynomialRatio(
        initial_ratio=final_ratio / 2 if last else final_ratio,
        final_ratio=final_ratio,
        begin_step=0,
        end_step=last,
        power=1,
        frequency=1,
    )
    model.compile(  # a fresh optimizer: pruning needs room to recover
        keras.optimizers.Adam(5e-4),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    callback = PruningCallback(
        "operator_norm",
        schedule=schedule,
        schedule_unit="epoch",
        mode="hard",
        per_layer=per_layer or None,
        verbose=0,
    )
    model.fit(
        x_train,
        y_train,
        batch_size=128,
        epochs=cfg["prune_epochs"],
        validation_data=(x_test, y_test),
        callbacks=[callback],
        verbose=fit_verbose,
    )
    for event in callback.history:
        share = event.get("macs_ratio")
        macs = "" if share is None else f", MACs {share:.1%} of the original"
        print(f"epoch {event['epoch']}: pruned ratio {event['ratio']:.3f}{macs}")

    _section(
        "Physical pruning, BatchNorm recalibration, distillation from the "
        f"original ({cfg['finetune_epochs']} epochs)"
    )
    pruned = callback.pruned_model(compile=False)
    masked_acc = _accuracy(pruned.predict(x_test, verbose=0), y_test)
    recalibrate_batchnorm(pruned, x_train[:_CALIBRATION_EXAMPLES], batch_size=128)
    recalibrated_acc = _accuracy(pruned.predict(x_test, verbose=0), y_test)
    print(
        f"pruned model: test accuracy {masked_acc:.4f}, after BatchNorm "
        f"recalibration {recalibrated_acc:.4f}"
    )
    steps = -(-len(x_train) // 128) * cfg["finetune_epochs"]
    distiller = Distiller(pruned, teacher=original, temperature=2.0, alpha=0.3)
    distiller.compile(
        keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(1e-3, steps, alpha=0.05)
        ),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    distiller.fit(
        x_train,
        y_train,
        batch_size=128,
        epochs=cfg["finetune_epochs"],
        validation_data=(x_test, y_test),
        verbose=fit_verbose,
    )
    pruned_acc = _accuracy(pruned.predict(x_test, verbose=0), y_test)
    print(f"pruned model after distillation: test accuracy {pruned_acc:.4f}")

    _section("Export to TFLite and benchmark (LiteRT, batch 1, 2 threads)")
    files: dict[str, str] = {}
    plan_path = os.path.join(output_dir, "plan.json")
    callback.plan.save(plan_path)
    files["plan"] = plan_path
    report = compare_models(
        original,
        pruned,
        tmpdir=output_dir,
        runs=cfg["latency_runs"],
        warmup=max(2, cfg["latency_runs"] // 20),
    )
    for kind, export in report.exports.items():
        files[kind] = export.path
    tflite_acc = [
        _accuracy(run_tflite(files[f"{k}.tflite"], x_test), y_test)
        for k in ("original", "pruned")
    ]

    def row(metric, label, unit, original, pruned, ratio=False):
        return {
            "metric": metric,
            "label": label,
            "unit": unit,
            "original": original,
            "pruned": pruned,
            "ratio": pruned / original if ratio and original else None,
        }

    fastest = [report.latency[f"{k}.tflite"].min_ms for k in ("original", "pruned")]
    rows = [
        row("accuracy", "test accuracy (Keras)", "", base_acc, pruned_acc),
        row("tflite_accuracy", "test accuracy (TFLite)", "", *tflite_acc),
        *(r for r in report.rows if not r["metric"].endswith("max_abs_diff")),
        row("tflite_latency_min", "TFLite latency, min", "ms", *fastest, ratio=True),
    ]
    report = ComparisonReport(
        rows, {**report.settings, "data": source}, report.exports, report.latency
    )
    figures = {
        "widths.png": plot_widths(original, pruned),
        "sensitivity.png": plot_sensitivity(sens),
        "comparison.png": plot_comparison(
            report, title=f"Original vs pruned ({source})"
        ),
    }
    for name, fig in figures.items():
        path = os.path.join(output_dir, name)
        fig.savefig(path, dpi=110)
        files[name] = path
    seconds = time.perf_counter() - start
    report_path = os.path.join(output_dir, "report.md")
    with open(report_path, "w", encoding="utf-8") as f:
        f.write(f"# keras-filterprune demo ({source})\n\n")
        f.write(report.to_markdown() + "\n\n")
        f.write(sens.to_markdown(digits=3) + "\n")
    files["report"] = report_path
    results_path = os.path.join(output_dir, "results.json")
    with open(results_path, "w", encoding="utf-8") as f:
        json.dump(
            {
                "data": source,
                "quick": quick,
                "seconds": seconds,
                "report": report.to_dict(),
                "sensitivity": sens.to_dict(),
                "pruning_events": callback.history,
                "recipe": {
                    "macs_target": _MACS_TARGET,
                    "candidates": candidates,
                    "chosen": choice,
                    "uniform_ratio": final_ratio,
                    "sensitivity_tolerance": tolerance,
                    "per_layer": per_layer,
                    "accuracy_after_pruning": masked_acc,
                    "accuracy_after_recalibration": recalibrated_acc,
                    "accuracy_after_distillation": pruned_acc,
                    "original_accuracy": base_acc,
                },
            },
            f,
            indent=1,
            default=str,
        )
    files["results"] = results_path

    _section(f"Original vs pruned ({source})")
    print(report.to_markdown())
    print(
        f"\noriginal: {cfg['base_epochs']} epochs; pruned: the same + "
        f"{cfg['prune_epochs']} epochs with pruning + {cfg['finetune_epochs']} "
        "of distillation from the original."
    )
    print(f"files in {output_dir}/: {', '.join(sorted(os.listdir(output_dir)))}")
    print(f"demo finished in {seconds:.0f} s")
    return DemoResult(report, files, synthetic, seconds)
