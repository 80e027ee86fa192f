"""Does a latency budget buy accuracy? Uniform ratio vs MAC budget vs latency
budget (priced by L1 scores, Taylor estimates or sensitivity curves) at the same
LiteRT latency.

    python benchmarks/bench_latency_accuracy.py            # 3 nets x 3 seeds (hours)
    python benchmarks/bench_latency_accuracy.py --quick    # smoke run (~20 s)
    python benchmarks/bench_latency_accuracy.py --models vgg --seeds 0 1

For each net (the VGG-style and ResNet-style CNNs of `bench_accuracy_images.py`
on Fashion-MNIST; the spoken-digits net: the DCASE21_Net conv stack of
`bench_accuracy_audio.py` on precomputed log-mel features of espeak-ng digits, so
that the timed model is the CNN alone), and each seed:

1. a baseline is trained (`_common.train_baseline`);
2. its latency table is measured once per net (`measure_latency_table`, LiteRT,
   `--threads` threads, adaptive timing: each time's 95 % interval recorded);
3. for each target (0.5x and 0.3x of the unpruned latency) eight plans (or those
   of `--plans`), all with
   `l1_norm` ranking the filters within each group:
   - `uniform`: the uniform ratio whose latency meets the target: bisection on
     the table's prediction, re-solved for the table's error on the last plan
     timed (at most `--calibrate` timed plans, as the latency plans); of the
     plans timed, the slowest that meets the target (measured <= 1.05 x target
     in step 4's timing; the closest one if none does);
   - `uniform-above`: the fastest of them above 1.05 x target, when there is
     one (a uniform cut moves every group at once, so its latency jumps over
     block steps: the two bracket the target);
   - `macs`: `target_macs` = the target fraction of the MACs (what one would ask
     without a latency table; the planner solves for a uniform ratio);
   - `latency`: `target_latency` = the target (per-group widths from the table,
     priced by per-group-normalised L1 scores);
   - `latency+floor`: the same with `max_ratio=0.75` (no group loses more than
     three quarters of its channels);
   - `latency+taylor`: the same with `importance="taylor"` (the groups' widths
     priced by a first-order Taylor estimate of the loss from
     `--importance-examples` training examples);
   - `latency+sensitivity`: the same with `importance=` the seed's
     `sensitivity_analysis` (each group pruned alone at 10 %, 20 %, ..., 90 %,
     BatchNorm recalibrated, accuracy on `--importance-examples` training
     examples): a group is thinned only as far as its own curve allows;
   - `latency+sensitivity+floor`: the curves with `max_ratio=0.75`;
   the latency plans are checked by timing (`calibrate_latency_plan`, at
   most `--calibrate` timed plans, ±5 %), so that they meet the target as
   measured rather than as the table predicts it (the table's additive model
   is optimistic for the uneven widths a latency budget chooses); unlike
   `uniform`, each is the plan closest to the target, which may be slower
   than 1.05 x target when no plan timed was within ±5 %;
4. the unpruned model and every pruned model of the seed are converted to TFLite
   and timed in one interleaved run (adaptive timing: rounds of >= 20 ms until each
   median's 95 % interval is within ±2 %, or the time limit): the measured latency
   ratio of each plan, with the interval of its median;
5. every pruned model is fine-tuned identically (`_common.finetune`: BatchNorm
   statistics recalibrated on training data, then the same epochs and batch order).

The report gives, per net, target and plan, the measured latency ratio and the
test accuracy after fine-tuning (mean ± sd over seeds), each plan's accuracy
difference to `uniform` paired by seed, and the channels each plan keeps per
group (first seed): the reason a plan wins or loses is usually there. Results:
`benchmarks/results/bench_latency_accuracy.md` (`--quick` writes to a temporary
file).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys

import _common as common
import numpy as np

NAME = "bench_latency_accuracy"
MODELS = ("vgg", "resnet", "digits")
DEFAULT_SEEDS = (0, 1, 2)
TARGETS = (0.5, 0.3)
PLANS = (
    "uniform",
    "uniform-above",  # timed while calibrating `uniform`, above the target
    "macs",
    "latency",
    "latency+floor",
    "latency+taylor",
    "latency+sensitivity",
    "latency+sensitivity+floor",
)
FLOOR = 0.75  # the +floor plans' `max_ratio`: no group loses more than 3/4
BASELINE_EPOCHS = {"vgg": 6, "resnet": 6, "digits": 10}  # as the accuracy benchmarks
CRITERION = "l1_norm"
QUICK_STEPS = {"conv": {"in": 1, "out": 8}}  # --quick: no block-size probe


# -- nets and data --------------------------------------------------------------
def digits_net(input_shape, num_classes=10):
    """The DCASE21_Net conv stack of `bench_accuracy_audio.dcase_style` (7x7
    convs 16-16-32 with BN, 5x5 and 4x10 max-pools, Dense 100) on precomputed,
    standardised log-mel features `(bands, frames, 1)`."""
    import keras
    from keras import layers

    inputs = keras.Input(input_shape, name="log_mel")
    x = inputs
    for index, filters in enumerate((16, 16, 32), start=1):
        x = layers.Conv2D(filters, 7, padding="same", name=f"conv{index}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"bn{index}")(x)
        x = layers.Activation("relu", name=f"relu{index}")(x)
        if index == 2:
            x = layers.MaxPooling2D((5, 5), name="pool1")(x)
            x = layers.Dropout(0.3, name="dropout1")(x)
        elif index == 3:
            x = layers.MaxPooling2D((4, max(1, input_shape[1] // 5)), name="pool2")(x)
            x = layers.Dropout(0.3, name="dropout2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(100, activation="relu", name="dense1")(x)
    x = layers.Dropout(0.3, name="dropout3")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="digits_dcase_style")


def digits_data(quick: bool, cache: str | None):
    """`(train, test, description)`: log-mel features `(N, 40, 50, 1)` of the
    spoken digits (DCASELogMel at 44.1 kHz, 1 s), standardised per band with
    the training statistics."""
    import bench_accuracy_audio as audio

    from keras_filterprune.audio import DCASELogMel

    paths = audio.synthesise(quick, cache)
    frames = audio.DCASE_FRAMES
    rate, samples = 44100, (frames - 1) * 882 + 1
    frontend = DCASELogMel(num_frames=frames)

    def features(split):
        x, y = audio.load_split(paths[split], rate, samples / rate)
        x = x[:, :samples]
        feats = np.concatenate(
            [np.asarray(frontend(x[i : i + 256])) for i in range(0, len(x), 256)]
        )
        return feats.astype("float32"), y

    train, test = features("train"), features("test")
    mean = train[0].mean(axis=(0, 2, 3), keepdims=True)
    std = train[0].std(axis=(0, 2, 3), keepdims=True) + 1e-6
    train = ((train[0] - mean) / std, train[1])
    test = ((test[0] - mean) / std, test[1])
    return train, test, f"espeak-ng spoken digits, {len(train[1])} train clips"


def nets(models, quick: bool, args):
    """`{name: (build, train, test, data description)}`."""
    import bench_accuracy_images as images

    result = {}
    if {"vgg", "resnet"} & set(models):
        train_n = args.train or (128 if quick else 10000)
        test_n = args.test or (128 if quick else 2000)
        train, _, test = images.load_data(train_n, 0, test_n)
        what = f"Fashion-MNIST, {train_n} train / {test_n} test images"
        depth = args.resnet_depth or (8 if quick else 14)
        if "vgg" in models:  # --quick: one stage (fewer layers to convert and time)
            widths = (16,) if quick else (16, 32, 64)
            build = functools.partial(images.vgg_style, widths=widths)
            vgg_what = what + ("; --quick: one VGG stage (16 filters)" if quick else "")
            result["vgg"] = (build, train, test, vgg_what)
        if "resnet" in models:
            result["resnet"] = (lambda: images.resnet_style(depth), train, test, what)
    if "digits" in models:
        train, test, what = digits_data(quick, args.cache_dir)
        shape = train[0].shape[1:]
        result["digits"] = (lambda: digits_net(shape), train, test, what)
    return result


# -- plans and timing -----------------------------------------------------------
def uniform_ratio(model, table, goal_ms: float) -> float:
    """The smallest uniform ratio whose predicted latency is <= `goal_ms`."""
    from keras_filterprune import plan_pruning

    lo, hi = 0.0, 0.97
    for _ in range(12):
        mid = (lo + hi) / 2
        if table.latency_ms(plan_pruning(model, mid, CRITERION)) > goal_ms:
            lo = mid
        else:
            hi = mid
    return hi


def uniform_candidates(model, table, target: float, args) -> list:
    """The uniform plans timed while searching for `target` (of the unpruned
    latency), the first one first: the uniform ratio whose predicted latency
    meets the target, re-solved for the table's error on the last plan timed
    (`target · predicted / measured`, each factor limited to [0.5, 2], as
    `calibrate_latency_plan` corrects; a plan timed before moves the request
    once more), at most `args.calibrate` timed plans, until one is within ±5 %
    or two bracket the target (one at most 1.05 x target, one above). Without
    `--calibrate` the first plan alone, untimed.

    A uniform cut moves every group at once, so on a table with block steps its
    latency jumps (on the VGG-style net from 0.40 to 0.63 of the unpruned
    latency): `run_seed` times these plans again with all the others and keeps
    the slowest one that meets the target (`uniform`) and the fastest one above
    it (`uniform-above`), so that the choice rests on the timing the report
    shows."""
    from keras_filterprune import apply_plan, plan_pruning

    def plan_for(goal: float):
        ratio = uniform_ratio(model, table, goal * table.model_ms)
        return plan_pruning(model, ratio, CRITERION, latency_table=table)

    def clip(factor: float) -> float:
        return min(2.0, max(0.5, factor))

    goal, seen, asked = target, {}, {round(target, 6)}
    for _ in range(4 * max(1, args.calibrate)):  # planner calls
        plan = plan_for(goal)
        if not args.calibrate:
            return [plan]
        widths = tuple(len(g.keep) for g in plan.groups)
        if widths in seen:  # the correction did not move past a table step
            new_goal = goal * clip(target / seen[widths][1])
        else:
            (base_ms, _), (ms, _) = time_models(
                [model, apply_plan(model, plan)],
                args.threads,
                common.timing(args, max_seconds=120),
            )
            measured = ms / base_ms
            seen[widths] = (plan, measured)
            predicted = table.latency_ms(plan) / table.model_ms
            common.log(
                f"  uniform {target:g}: asked {goal:.3f}, predicted "
                f"{predicted:.3f}, measured {measured:.3f}"
            )
            ratios = [m for _, m in seen.values()]
            bracketed = min(ratios) <= 1.05 * target < max(ratios)
            if (
                abs(measured / target - 1) <= 0.05
                or bracketed
                or len(seen) >= args.calibrate
            ):
                break
            new_goal = target * clip(predicted / measured)
        new_goal = round(min(1.0, new_goal), 6)
        if new_goal in asked:  # a cycle: nothing new to learn
            break
        goal = new_goal
        asked.add(goal)
    return [plan for plan, _ in seen.values()]


def choose_uniform(cells: list[dict], target: float) -> list[dict]:
    """`cells` of one target's uniform candidates (measured) -> the slowest that
    meets the target (<= 1.05 x target; the closest one if none does) as
    `uniform`, and the fastest above it as `uniform-above`."""
    by_ratio = sorted(cells, key=lambda c: c["measured_ratio"])
    meets = [c for c in by_ratio if c["measured_ratio"] <= 1.05 * target]
    above = [c for c in by_ratio if c["measured_ratio"] > 1.05 * target]
    if meets:
        chosen = [meets[-1]] + above[:1]
    else:
        chosen = [min(by_ratio, key=lambda c: abs(c["measured_ratio"] / target - 1))]
    for cell, name in zip(chosen, ("uniform", "uniform-above"), strict=False):
        cell["plan"] = name
    return chosen


def plans_for(base, table, target: float, importance_data, curves, args):
    """`{plan name: PruningPlan}` of one target (a plan the table cannot reach
    is left out, with its reason logged); the uniform candidates are
    `uniform?0`, `uniform?1`, ... (`run_seed` chooses among them by the final
    timing: `choose_uniform`). With `args.calibrate` the latency
    plans are checked by timing (`calibrate_latency_plan`), so that they are
    compared with `uniform` at the measured latency rather than the table's
    prediction of it."""
    from keras_filterprune import plan_pruning
    from keras_filterprune.latency import calibrate_latency_plan

    percent = f"{target * 100:g}%"

    def latency_plan(**options):
        if not args.calibrate:
            return plan_pruning(
                base, target_latency=percent, latency_table=table, **options
            )
        return calibrate_latency_plan(
            base,
            percent,
            table,
            iterations=args.calibrate,
            tolerance=0.05,
            verbose=0,
            **common.timing(args, max_seconds=120),
            **options,
        )

    makers = {
        "macs": lambda: plan_pruning(
            base, criterion=CRITERION, target_macs=percent, latency_table=table
        ),
        "latency": lambda: latency_plan(criterion=CRITERION),
        "latency+floor": lambda: latency_plan(criterion=CRITERION, max_ratio=FLOOR),
        "latency+taylor": lambda: latency_plan(
            criterion=CRITERION, importance="taylor", data=importance_data
        ),
        "latency+sensitivity": lambda: latency_plan(
            criterion=CRITERION, importance=curves
        ),
        "latency+sensitivity+floor": lambda: latency_plan(
            criterion=CRITERION, importance=curves, max_ratio=FLOOR
        ),
    }
    plans = {
        f"uniform?{i}": plan
        for i, plan in enumerate(uniform_candidates(base, table, target, args))
    }
    for name, make in makers.items():
        if name not in args.plans:
            continue
        try:
            plan = make()
        except ValueError as e:
            common.log(f"  {name} {target}: not planned: {e}")
            continue
        if plan is not None:
            plans[name] = plan
    return plans


def time_models(models, threads: int, timing: dict):
    """`[(median ms, relative 95 % half-width or None)]` of each model, timed in
    one interleaved run."""
    import math

    from keras_filterprune.latency import measure as lm

    contents = [lm.convert(m, None) for m in models]
    timed = lm.time_flatbuffers(
        contents, threads, 6, 10, drop_converged=False, **timing
    )
    result = []
    for t in timed:
        median, _, _ = t.ci()
        rel = t.relative_ci()
        result.append((median * 1e3, rel if math.isfinite(rel) else None))
    return result


def run_seed(name, build, train, test, table_cache, fit, seed, args) -> list[dict]:
    from keras_filterprune import apply_plan, count_macs, sensitivity_analysis
    from keras_filterprune.latency import measure_latency_table

    watch = common.Stopwatch()
    base, acc, seconds = common.train_baseline(build, train, test, fit, seed)
    common.log(f"{name} seed {seed}: baseline {acc:.4f} in {seconds:.0f} s")
    if name not in table_cache:  # the same layers every seed: one table per net
        table_cache[name] = measure_latency_table(
            base,
            num_threads=args.threads,
            widths=1 if args.quick else 4,
            steps=table_cache.get("steps", QUICK_STEPS if args.quick else None),
            rounds=2 if args.quick else 5,
            verbose=0,
            **common.timing(args, max_seconds=600),
        )
        table_cache["steps"] = table_cache[name].steps
        common.log(f"{name}: table in {watch.lap():.0f} s, {table_cache[name]!r}")
    table = table_cache[name]
    n = args.importance_examples
    importance_data = (train[0][:n], train[1][:n])
    curves = None
    if any(p.startswith("latency+sensitivity") for p in args.plans):
        curves = sensitivity_analysis(
            base,
            data=importance_data,
            criterion=CRITERION,
            ratios=(0.25, 0.5, 0.75) if args.quick else None,
            verbose=0,
        )
        common.log(f"{name} seed {seed}: sensitivity curves in {watch.lap():.0f} s")
    cells = []
    for target in args.targets:
        plans = plans_for(base, table, target, importance_data, curves, args)
        for plan_name, plan in plans.items():
            widths = "/".join(str(len(g.keep)) for g in plan.groups if not g.frozen)
            cells.append(
                {
                    "target": target,
                    "plan": plan_name,
                    "plan_obj": plan,
                    "widths": widths,
                }
            )
    common.log(f"{name} seed {seed}: {len(cells)} plans in {watch.lap():.0f} s")
    pruned = [apply_plan(base, c["plan_obj"]) for c in cells]
    timed = time_models(
        [base, *pruned], args.threads, common.timing(args, max_seconds=300)
    )
    base_ms, base_ci = timed[0]
    base_macs = count_macs(base)
    for cell, model, (ms, ci) in zip(cells, pruned, timed[1:], strict=True):
        plan = cell.pop("plan_obj")
        cell.update(
            seed=seed,
            baseline_acc=acc,
            measured_ratio=ms / base_ms,
            measured_ms=ms,
            ci=ci,
            base_ci=base_ci,
            predicted_ratio=table.latency_ms(plan) / table.model_ms,
            mac_ratio=count_macs(model) / base_macs,
            model=model,
        )
    kept = []
    for target in args.targets:  # the uniform candidates: chosen by this timing
        here = [c for c in cells if c["target"] == target]
        candidates = [c for c in here if c["plan"].startswith("uniform?")]
        others = [c for c in here if not c["plan"].startswith("uniform?")]
        kept += (choose_uniform(candidates, target) if candidates else []) + others
    cells = kept
    for cell in cells:
        model = cell.pop("model")
        before, recal, after = common.finetune(model, train, test, fit, seed)
        cell.update(acc_pruned=before, acc_recal=recal, acc_ft=after)
        common.log(
            f"{name} seed {seed} {cell['plan']} {cell['target']}: latency "
            f"{cell['measured_ratio']:.3f} (predicted {cell['predicted_ratio']:.3f}), "
            f"accuracy {after:.4f}"
        )
    common.log(f"{name} seed {seed}: timed and fine-tuned in {watch.lap():.0f} s")
    return cells


# -- report ---------------------------------------------------------------------
def _mean_sd(values, scale=1.0, digits=3) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values) * scale
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def report(results: dict, descriptions: dict, seeds, fit: dict, watch, args) -> str:
    notes = [
        f"Nets: {', '.join(results)}; targets: "
        + ", ".join(f"{t:g}x" for t in args.targets)
        + f" of the unpruned measured latency; filters ranked by `{CRITERION}`; "
        f"Taylor importance and sensitivity curves from {args.importance_examples} "
        "training examples",
        "Training: "
        + "; ".join(f"{name}: {f.describe()}" for name, f in fit.items())
        + f"; BatchNorm recalibrated on {common.RECALIBRATION_EXAMPLES} training "
        "examples before fine-tuning",
        f"Timing: LiteRT (XNNPACK), {args.threads} threads; all models of a seed "
        "in one interleaved run, rounds of >= 20 ms until each median's 95 % "
        "interval is within ±2 % (or the time limit); `ci` is the larger "
        "relative half-width of that interval, over the seeds' runs",
        f"Plans: {', '.join(args.plans)}"
        + (
            f" (`+floor`: `max_ratio={FLOOR}`)"
            if any(p.endswith("+floor") for p in args.plans)
            else ""
        ),
        "Latency plans: "
        + (
            f"`calibrate_latency_plan` (at most {args.calibrate} timed plans, "
            "±5 %; each the plan timed closest to the target), and `uniform` "
            "re-solved the same way: of the uniform plans timed, the slowest "
            "that meets the target (<= 1.05 x) in the seed's final timing, and "
            "`uniform-above` the fastest above it, so that they are compared at "
            "the measured latency"
            if args.calibrate
            else "the table's prediction only (`--calibrate 0`)"
        ),
    ]
    notes += [f"Data ({k}): {v}" for k, v in descriptions.items()]
    text = common.report_header(
        "Latency budgets and accuracy", watch, seeds=seeds, notes=notes
    )
    for name, cells in results.items():
        baselines = sorted({c["seed"]: c["baseline_acc"] for c in cells}.items())
        text += (
            f"\n## {name}\n\nBaseline accuracy: "
            f"{_mean_sd([a for _, a in baselines], 100, 2)} %\n\n"
        )
        rows = []
        for target in args.targets:
            uniform = {
                c["seed"]: c["acc_ft"]
                for c in cells
                if c["target"] == target and c["plan"] == "uniform"
            }
            for plan in args.plans:
                sel = [c for c in cells if c["target"] == target and c["plan"] == plan]
                if not sel and plan == "uniform-above":
                    continue  # `uniform` met the target: nothing above it
                if not sel:
                    rows.append([f"{target:g}x", plan, "not reachable", *["-"] * 7])
                    continue
                label = plan
                if len(sel) < len(seeds):  # e.g. uniform-above: not every seed
                    label = f"{plan} ({len(sel)} of {len(seeds)} seeds)"
                paired = [c for c in sel if c["seed"] in uniform]
                diffs = [c["acc_ft"] - uniform[c["seed"]] for c in paired]
                cis = [c["ci"] for c in sel if c["ci"] is not None]
                rows.append(
                    [
                        f"{target:g}x",
                        label,
                        _mean_sd([c["measured_ratio"] for c in sel]),
                        f"±{max(cis):.1%}" if cis else "-",
                        _mean_sd([c["predicted_ratio"] for c in sel]),
                        _mean_sd([c["mac_ratio"] for c in sel]),
                        _mean_sd([c["acc_recal"] for c in sel], 100, 2),
                        _mean_sd([c["acc_ft"] for c in sel], 100, 2),
                        "-" if plan == "uniform" else _mean_sd(diffs, 100, 2),
                        min(sel, key=lambda c: c["seed"])["widths"],
                    ]
                )
        text += common.table(
            [
                "target",
                "plan",
                "measured latency ratio",
                "ci (max)",
                "predicted ratio",
                "MAC ratio",
                "acc. recalibrated %",
                "acc. fine-tuned %",
                "vs uniform (pp, paired)",
                "kept per group (first seed)",
            ],
            rows,
        )
        text += "\n"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(parser, name=NAME, seeds=DEFAULT_SEEDS)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=None)
    parser.add_argument(
        "--targets", type=float, nargs="+", default=None, help=f"default {TARGETS}"
    )
    parser.add_argument("--train", type=int, default=None, help="train images (10000)")
    parser.add_argument("--test", type=int, default=None, help="test images (2000)")
    parser.add_argument(
        "--epochs", type=int, default=None, help="baseline (6; digits: 10)"
    )
    parser.add_argument("--ft-epochs", type=int, default=None, help="fine-tune (2)")
    parser.add_argument(
        "--resnet-depth", type=int, default=None, help="6n+2 (14; --quick: 8)"
    )
    parser.add_argument(
        "--importance-examples",
        type=int,
        default=1024,
        help="labelled training examples for importance='taylor' and the "
        "sensitivity curves (1024)",
    )
    parser.add_argument(
        "--plans",
        nargs="+",
        choices=PLANS,
        default=list(PLANS),
        help="the plans to compare ('uniform' and 'uniform-above' are always "
        "included: the others are reported against 'uniform')",
    )
    parser.add_argument(
        "--cache-dir", default=None, help="where the spoken digits are synthesised"
    )
    parser.add_argument(
        "--calibrate",
        type=int,
        default=None,
        help="timed plans per latency plan (calibrate_latency_plan; 3, --quick: 1; "
        "0: the table's prediction only)",
    )
    args = parser.parse_args(argv)
    args.plans = [p for p in PLANS if p.startswith("uniform") or p in args.plans]
    watch = common.Stopwatch()
    common.configure(args.threads)

    quick = args.quick
    if quick:  # dozens of small conversions: each one's gc.collect() made cheap
        import keras_filterprune.latency  # noqa: F401

        common.freeze_heap()
    seeds = args.seeds or ([0] if quick else list(DEFAULT_SEEDS))
    args.targets = args.targets or ([0.5] if quick else list(TARGETS))
    if quick:
        args.importance_examples = min(args.importance_examples, 128)
    if args.calibrate is None:
        args.calibrate = 1 if quick else 3
    models = args.models or (["vgg"] if quick else list(MODELS))
    fit = {
        name: common.FitConfig(
            epochs=args.epochs or (1 if quick else BASELINE_EPOCHS[name]),
            ft_epochs=args.ft_epochs or (1 if quick else 2),
            run_eagerly=quick,
        )
        for name in models
    }
    results, descriptions, tables = {}, {}, {}
    for name, (build, train, test, what) in nets(models, quick, args).items():
        descriptions[name] = what
        results[name] = []
        for seed in seeds:
            results[name] += run_seed(
                name, build, train, test, tables, fit[name], seed, args
            )
    common.write_report(
        common.resolve_output(args, NAME),
        report(results, descriptions, seeds, fit, watch, args),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
