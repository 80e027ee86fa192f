"""Planning for a measured latency: is the requested LiteRT latency hit, and does a
latency-aware plan beat a uniform ratio of the same latency?

    python benchmarks/bench_latency_plan.py            # 3 models, fp32 + int8 (~1 h)
    python benchmarks/bench_latency_plan.py --quick    # smoke run (~25 s)
    python benchmarks/bench_latency_plan.py --models vgg16 --no-int8

For each model (VGG-16-CIFAR, ResNet-56, MobileNetV2 alpha 1.0 at 96x96; inputs
are Fashion-MNIST images resized and repeated to 3 channels):

1. a baseline is trained on the first `N` Fashion-MNIST training images;
2. `measure_latency_table` times its layers in LiteRT (XNNPACK, `--threads`
   threads), after one probe of the kernels' block sizes shared by all models;
3. for each requested latency ratio (0.7, 0.5) `plan_pruning(target_latency=...)`
   plans with `l1_norm` scores, and the uniform ratio whose *predicted* latency is
   the same is found by bisection (`prune_keras_model(ratio=r)`); unless
   `--no-calibrate`, `calibrate_latency_plan` also plans to the request and times
   up to 3 candidates, correcting the target by the measured error ("calibrated");
4. the original and all pruned models are converted to TFLite and timed again,
   in one interleaved run separate from the calibration's timings (rounds of at
   least 20 ms until each median round's 95 % interval is within ±2 %, or the
   time limit), so the measured ratios are comparable: the latency-aware and
   calibrated ratios are checked against the request (goal: within ±5 %), and
   against the uniform plan's; `--retimes N` repeats that run N times, each
   with new interpreters (median ratio and range: how much a separate run of
   the same models moves);
5. all pruned models get the same fine-tune (same epochs, same batch order) and
   are evaluated on the first `T` test images.

With `--int8` (default in full runs) steps 2-4 are repeated for full-integer
models (a separate probe and table; accuracy is not fine-tuned there). Results:
`benchmarks/results/bench_latency_plan.md` and `.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import _common as common
import numpy as np

NAME = "bench_latency_plan"
MODELS = ("vgg16", "resnet56", "mobilenetv2")
TARGETS = (0.7, 0.5)


def build(name: str, quick: bool):
    import keras

    from keras_filterprune.models import resnet_cifar, vgg16_cifar

    if name == "vgg16":
        return vgg16_cifar(classifier_activation=None)
    if name == "resnet56":
        return resnet_cifar(8 if quick else 56, classifier_activation=None)
    size = 32 if quick else 96
    return keras.applications.MobileNetV2(
        input_shape=(size, size, 3),
        alpha=1.0,
        weights=None,
        classes=10,
        classifier_activation=None,
        name="mobilenetv2",
    )


def load_data(train_n: int, test_n: int, size: int):
    import numpy as np
    import tensorflow as tf

    from keras_filterprune.datasets import fashion_mnist

    (x, y), (xt, yt) = fashion_mnist(subset=(train_n, test_n))

    def prep(images):
        out = []
        for i in range(0, len(images), 1024):
            batch = tf.image.resize(images[i : i + 1024], (size, size)).numpy()
            out.append(np.repeat(batch, 3, axis=-1))
        return np.concatenate(out).astype("float32")

    return (prep(x), y.astype("int32")), (prep(xt), yt.astype("int32"))


def uniform_of_same_latency(model, table, goal_ms: float) -> float:
    """The uniform ratio whose predicted latency is `goal_ms` (bisection)."""
    from keras_filterprune import plan_pruning

    lo, hi = 0.0, 0.95
    for _ in range(12):
        mid = (lo + hi) / 2
        plan = plan_pruning(model, mid, "l1_norm")
        if table.latency_ms(plan) > goal_ms:
            lo = mid
        else:
            hi = mid
    return hi


def measure(
    models, quantization, threads: int, rounds: int, args
) -> tuple[list[float], list[float]]:
    """Each model's latency in ms (median round) and the relative half-width of
    that median's 95 % interval, all timed in one interleaved run."""
    from keras_filterprune.latency import measure as lm

    contents = [lm.convert(m, quantization) for m in models]
    timed = lm.time_flatbuffers(
        contents,
        threads,
        rounds,
        10,
        drop_converged=False,
        **common.timing(args),
    )
    return [t.ci()[0] * 1e3 for t in timed], [t.relative_ci() for t in timed]


QUICK_SWEEP_WIDTHS = (8, 16, 17, 32, 33, 48, 64)
"""--quick sweeps only the widths the report's table shows (a conversion each)."""


def sweep_models(axis: str, quick: bool) -> tuple[list, list[int]]:
    """The probe's one-layer models along `axis` and their widths; under
    `--quick`, at `QUICK_SWEEP_WIDTHS` only."""
    from keras_filterprune.latency import measure as lm

    widths = list(QUICK_SWEEP_WIDTHS) if quick else lm.probe_widths()
    return lm.probe_models("conv", axis, widths), widths


def sweep(
    quantizations, threads: int, rounds: int, axes, timing: dict, quick: bool = False
) -> dict:
    """One 3x3 conv (28x28x64 input) at widths 1..64 along each axis: the probe
    `measure_latency_table` runs, kept for the plot and the report."""
    from keras_filterprune.latency import measure as lm

    curves = {}
    for quantization in quantizations:
        for axis in axes:
            models, widths = sweep_models(axis, quick)
            ms = lm.time_contents(
                [lm.convert(m, quantization) for m in models],
                threads,
                rounds,
                5,
                **timing,
            )
            label = f"{quantization or 'fp32'} {axis}put channels"
            curves[label] = {
                "widths": widths,
                "ms": ms,
                "step": lm.detect_step(widths, ms),
            }
            common.log(f"sweep {label}: block {curves[label]['step']}")
    return curves


def plot_sweep(curves: dict, path: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    for label, c in curves.items():
        ax.plot(c["widths"], [m / c["ms"][-1] for m in c["ms"]], ".-", label=label)
    ax.set_xlabel("channels (of 64)")
    ax.set_ylabel("latency / latency at 64")
    ax.set_title("One 3x3 conv, 28x28x64, LiteRT XNNPACK")
    ax.set_xticks(range(0, 65, 8))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run_model(name, args, fit, steps, quantizations, data) -> dict:
    import keras

    from keras_filterprune import apply_plan, count_macs, plan_pruning
    from keras_filterprune.latency import calibrate_latency_plan, measure_latency_table

    train, test = data
    watch = common.Stopwatch()
    if args.latency_only:  # untrained weights: the latency columns only
        keras.utils.set_random_seed(0)
        base, acc = build(name, args.quick), None
    else:
        base, acc, seconds = common.train_baseline(
            lambda: build(name, args.quick), train, test, fit, seed=0
        )
        common.log(f"{name}: baseline {acc:.4f} in {seconds:.0f} s")
    result = {"model": base.name, "baseline_acc": acc, "macs": count_macs(base)}
    for quantization in quantizations:
        label = quantization or "fp32"
        watch.lap()
        table = measure_latency_table(
            base,
            num_threads=args.threads,
            quantization=quantization,
            widths=1 if args.quick else 4,
            steps=steps[label],
            rounds=2 if args.quick else 5,
            verbose=0,
            **common.timing(args),
        )
        table_s = watch.lap()
        steps[label] = table.steps
        common.log(f"{name} {label}: table in {table_s:.0f} s, {table!r}")
        pruned, unreachable = {}, {}
        for target in TARGETS[:1] if args.quick else TARGETS:
            try:
                plan = plan_pruning(
                    base,
                    criterion="l1_norm",
                    target_latency=f"{target * 100:g}%",
                    latency_table=table,
                )
            except ValueError as e:  # below what the table says pruning can reach
                if "cannot be reached" not in str(e):
                    raise
                unreachable[target] = str(e).split(" (")[0]
                common.log(f"{name} {label} {target}: {unreachable[target]}")
                continue
            r = uniform_of_same_latency(base, table, plan.meta["predicted_latency_ms"])
            uniform = plan_pruning(base, r, "l1_norm")
            pruned[target] = {
                "latency-aware": (apply_plan(base, plan), plan),
                f"uniform {r:.3f}": (apply_plan(base, uniform), uniform),
            }
            if not args.no_calibrate:  # the same, checked by timing candidates
                watch.lap()
                timed = calibrate_latency_plan(
                    base,
                    f"{target * 100:g}%",
                    table,
                    criterion="l1_norm",
                    iterations=1 if args.quick else 3,
                    rounds=3 if args.quick else 7,
                    verbose=0,
                    **common.timing(args),
                )
                iterations = timed.meta["latency_iterations"]
                common.log(
                    f"{name} {label} {target}: calibrated in {watch.lap():.0f} s, "
                    + ", ".join(
                        f"{i['requested']:.3f}->{i['measured']:.3f}" for i in iterations
                    )
                )
                pruned[target]["calibrated"] = (apply_plan(base, timed), timed)
        models = [base] + [m for t in pruned for m, _ in pruned[t].values()]
        runs = [  # each re-time a fresh set of interpreters
            measure(models, quantization, args.threads, 3 if args.quick else 7, args)
            for _ in range(args.retimes)
        ]
        ratios = np.array([[m / ms[0] for m in ms] for ms, _ in runs])
        ms = np.median([ms for ms, _ in runs], axis=0)
        ci = np.max([ci for _, ci in runs], axis=0)
        rows, i = [], 1
        for target in pruned:
            for kind, (model, plan) in pruned[target].items():
                rows.append(
                    {
                        "target": target,
                        "plan": kind,
                        "predicted_ratio": table.latency_ms(plan) / table.model_ms,
                        "measured_ratio": float(np.median(ratios[:, i])),
                        "measured_ratios": ratios[:, i].tolist(),
                        "measured_ms": float(ms[i]),
                        "ci": float(max(ci[i], ci[0])),
                        "calibration_ratio": plan.meta.get("measured_latency_ratio"),
                        "mac_ratio": count_macs(model) / result["macs"],
                        "model": model,
                    }
                )
                i += 1
        if quantization is None and not args.latency_only:
            for row in rows:
                keras.utils.set_random_seed(0)
                row["acc_ft"] = common.finetune(row["model"], train, test, fit, 0)[-1]
                common.log(f"{name} {row['plan']} {row['target']}: {row['acc_ft']:.4f}")
        for row in rows:
            del row["model"]
        result[label] = {
            "table_seconds": table_s,
            "table_units": len(table.units),
            "steps": table.steps,
            "original_ms": float(ms[0]),
            "original_ci": float(ci[0]),
            "table_model_ms": table.model_ms,
            "rows": rows,
            "unreachable": unreachable,
        }
    return result


def report(results: list[dict], curves: dict, watch, args, fit) -> str:
    notes = [
        f"LiteRT {results[0].get('runtime_version', '')} XNNPACK, {args.threads} "
        f"threads, batch 1; the measured ratios come from {args.retimes} "
        "interleaved timing run(s) of all models per model and quantization (the "
        "median ratio, and the range over the runs), after and apart from the "
        "calibration's timings (`measured while calibrating`: the ratio "
        "`calibrate_latency_plan` measured for the plan it returned); rounds of "
        ">= 20 ms until each median round's 95 % interval is within ±2 %, or the "
        "time limit (`ci`: the largest relative half-width of the pruned and the "
        "original model's interval); goal: within ±5 % of the request",
        f"Fashion-MNIST: first {args.train} training and {args.test} test images, "
        f"resized; {fit.describe()}; criterion `l1_norm`; one seed (0)",
    ]
    if args.quick:
        notes.append(
            "--quick: ResNet-8, the first target only, block sizes given (no "
            "probe), tables at the smallest block and full width only, one timed "
            "plan per calibration, short timing; the numbers are meaningless"
        )
    text = common.report_header(
        "Latency-aware planning: requested vs measured LiteRT latency",
        watch,
        notes=notes,
    )
    if curves:
        swept = next(iter(curves.values()))["widths"]
        if len(swept) > len(QUICK_SWEEP_WIDTHS):
            at = "1, 4, 5, 8, ..., 64 channels (the block-size probe of "
        else:  # --quick
            at = f"{', '.join(map(str, swept))} channels (of the block-size probe of "
        text += (
            "\n## One layer's latency against its width\n\nA 3x3 conv on a 28x28x64 "
            f"input at {at}"
            "`measure_latency_table`), relative to 64 channels; plot: "
            "`bench_latency_plan_steps.png`.\n\n"
        )
        widths = (8, 16, 17, 32, 33, 48, 64)
        rows = []
        for label, c in curves.items():
            rel = {w: m / c["ms"][-1] for w, m in zip(c["widths"], c["ms"])}
            rows.append([label, c["step"], *(f"{rel[w]:.2f}" for w in widths)])
        text += common.table(["sweep", "detected block", *map(str, widths)], rows)
        text += "\n"
    for res in results:
        for label in ("fp32", "int8"):
            if label not in res:
                continue
            part = res[label]
            text += (
                f"\n## {res['model']} ({label})\n\n"
                f"Original: {part['original_ms']:.3f} ms measured here "
                f"({part['table_model_ms']:.3f} ms when the table was "
                f"measured); table: {part['table_units']} layers timed in "
                f"{common.fmt_seconds(part['table_seconds'])}, block sizes "
                f"{part['steps']}"
            )
            if label == "fp32" and res["baseline_acc"] is not None:
                text += f"; baseline accuracy {res['baseline_acc'] * 100:.2f} %"
            text += "\n\n"
            rows = []
            for row in part["rows"]:
                hit = ""
                if row["plan"] in ("latency-aware", "calibrated"):
                    miss = row["measured_ratio"] / row["target"] - 1
                    hit = f"{miss * 100:+.1f} %" + (" ✓" if abs(miss) <= 0.05 else " ✗")
                runs = row.get("measured_ratios", [row["measured_ratio"]])
                calibrating = row.get("calibration_ratio")
                rows.append(
                    [
                        f"{row['target']:.1f}",
                        row["plan"],
                        f"{row['predicted_ratio']:.3f}",
                        "–" if calibrating is None else f"{calibrating:.3f}",
                        f"{row['measured_ratio']:.3f}",
                        f"{min(runs):.3f}–{max(runs):.3f}" if len(runs) > 1 else "–",
                        f"±{row['ci'] * 100:.1f}%" if "ci" in row else "–",
                        hit,
                        f"{row['mac_ratio']:.3f}",
                        f"{row['acc_ft'] * 100:.2f}" if "acc_ft" in row else "–",
                    ]
                )
            for target, message in part.get("unreachable", {}).items():
                rows.append([f"{target:.1f}", "unreachable", message, *[""] * 7])
            text += common.table(
                [
                    "requested latency ratio",
                    "plan",
                    "predicted ratio",
                    "measured while calibrating",
                    "measured ratio",
                    "re-timed runs",
                    "ci",
                    "vs request",
                    "MAC ratio",
                    "accuracy after fine-tune (%)",
                ],
                rows,
            )
            text += "\n"
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_args(parser, name=NAME)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=None)
    parser.add_argument("--no-int8", action="store_true", help="skip int8 models")
    parser.add_argument("--train", type=int, default=None, help="training images")
    parser.add_argument("--test", type=int, default=None, help="test images")
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="no training: untrained models, latency columns only",
    )
    parser.add_argument("--no-sweep", action="store_true", help="skip the sweep")
    parser.add_argument(
        "--retimes",
        type=int,
        default=1,
        help="separate timing runs of all models after planning (each with new "
        "interpreters; the report gives their median ratio and range)",
    )
    parser.add_argument(
        "--no-calibrate",
        action="store_true",
        help="skip calibrate_latency_plan (latency-aware plans checked by timing)",
    )
    args = parser.parse_args(argv)
    if args.retimes < 1:
        parser.error(f"--retimes must be >= 1: {args.retimes}")
    common.configure(args.threads)
    watch = common.Stopwatch()
    quick = args.quick
    if quick:  # dozens of small conversions: each one's gc.collect() made cheap
        import keras_filterprune.latency  # noqa: F401

        common.freeze_heap()
    models = args.models or (("resnet56",) if quick else MODELS)
    args.train = args.train or (64 if quick else 6000)
    args.test = args.test or (64 if quick else 2000)
    fit = common.FitConfig(
        epochs=1 if quick else 3, ft_epochs=1, batch_size=64, run_eagerly=quick
    )
    quantizations = [None] if quick or args.no_int8 else [None, "int8"]
    # --quick gives the block sizes instead of probing them (the probe takes ~30 s
    # per kind of kernel).
    quick_steps = {"conv": {"in": 1, "out": 16}, "depthwise": {"in": 16}}
    steps = {"fp32": quick_steps if quick else None, "int8": None}
    axes = ("out",) if quick else ("out", "in")
    curves = (
        {}
        if args.no_sweep
        else sweep(
            quantizations,
            args.threads,
            1 if quick else 3,
            axes,
            common.timing(args),
            quick,
        )
    )
    output = common.resolve_output(args, NAME)
    if curves:
        plot_sweep(curves, os.path.splitext(output)[0] + "_steps.png")
    results_json = os.path.splitext(output)[0] + ".json"
    results, cache = [], {}
    for name in models:
        size = 96 if name == "mobilenetv2" and not quick else 32
        if size not in cache:
            cache[size] = (
                (None, None)
                if args.latency_only
                else load_data(args.train, args.test, size)
            )
        results.append(run_model(name, args, fit, steps, quantizations, cache[size]))
        if not quick:  # what is done survives an interrupted run
            with open(results_json, "w") as f:
                json.dump({"sweep": curves, "models": results}, f, indent=1)
    try:
        from importlib.metadata import version

        results[0]["runtime_version"] = version("ai-edge-litert")
    except Exception:  # noqa: BLE001
        pass
    common.write_report(output, report(results, curves, watch, args, fit))
    if not quick:
        with open(results_json, "w") as f:
            json.dump({"sweep": curves, "models": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
