"""Choosing `Distiller`'s defaults: temperature × alpha against plain fine-tuning.

    python benchmarks/bench_distill.py            # full run (~30 min, 2 cores)
    python benchmarks/bench_distill.py --quick    # smoke run (seconds)
    python benchmarks/bench_distill.py --nets vgg --temperatures 2 4 --alphas 0.5

For every net (the VGG- and ResNet-20-style Fashion-MNIST CNNs and the
DCASE21-style spoken-digit CNN of `bench_recovery.py`) and every seed, a baseline
(the teacher) is trained, pruned to half its MACs (`plan_pruning(target_macs=
"50%")`, `operator_norm`, + `apply_plan`) and its BatchNorm statistics are
re-estimated (`recalibrate_batchnorm`). Every configuration then starts from that
same recalibrated model and trains for the same `F` epochs, with the same data,
optimizer and batch order: plain fine-tuning with the labels (`alpha = 0`, the
baseline) and `Distiller(pruned, teacher=baseline, temperature=T, alpha=a)` for
every `T` × `a` of the grid. The test accuracy of each is reported (mean ± std
over seeds) with its paired difference from plain fine-tuning, per net and
averaged over the nets. Results: `benchmarks/results/bench_distill.md`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import _common as common
from bench_recovery import load_net

NAME = "bench_distill"
NETS = ("vgg", "resnet", "dcase")
DEFAULT_SEEDS = (0, 1)
TEMPERATURES = (1.0, 2.0, 4.0)
ALPHAS = (0.1, 0.3, 0.5, 0.9)
TRAIN_EXAMPLES = 5000  # Fashion-MNIST nets; spoken digits use all 3,600 clips
FINE_TUNE = "fine-tune (alpha = 0)"


def _label(temperature: float, alpha: float) -> str:
    return f"T = {temperature:g}, alpha = {alpha:g}"


def recover(pruned, base, train, test, fit, seed, temperature, alpha) -> float:
    """Test accuracy of a copy of `pruned` after `fit.ft_epochs` of plain
    fine-tuning (`alpha == 0`) or of distillation from `base`."""
    import keras

    from keras_filterprune import Distiller

    student = keras.models.clone_model(pruned)
    student.set_weights(pruned.get_weights())
    keras.utils.set_random_seed(seed)  # the same batch order for every cell
    if alpha == 0:
        common.compile_model(student, fit.ft_lr, fit.run_eagerly)
        student.fit(*train, epochs=fit.ft_epochs, batch_size=fit.batch_size, verbose=0)
    else:
        distiller = Distiller(
            student, teacher=base, temperature=temperature, alpha=alpha
        )
        distiller.compile(
            common.adam(fit.ft_lr),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            run_eagerly=fit.run_eagerly,
        )
        distiller.fit(
            *train, epochs=fit.ft_epochs, batch_size=fit.batch_size, verbose=0
        )
        common.compile_model(student, fit.ft_lr, fit.run_eagerly)
    return common.evaluate(student, *test)


def run_net(net, args, seeds, configs, quick):
    """`{config label: [accuracy per seed]}` plus the teacher's, the recalibrated
    model's and the MACs kept, for one net."""
    from keras_filterprune import (
        apply_plan,
        count_macs,
        plan_pruning,
        recalibrate_batchnorm,
    )

    train_n = args.train or (None if quick or net == "dcase" else TRAIN_EXAMPLES)
    build, train, test, desc, batch, epochs = load_net(
        net, quick, train_n, args.cache_dir
    )
    fit = common.FitConfig(
        epochs=args.epochs or (1 if quick else epochs),
        ft_epochs=args.ft_epochs or (1 if quick else 2),
        batch_size=batch,
        run_eagerly=quick,
    )
    results = {"teacher": [], "recalibrated": [], "macs": []}
    for seed in seeds:
        base, base_acc, _ = common.train_baseline(build, train, test, fit, seed)
        plan = plan_pruning(base, target_macs="50%")
        pruned = apply_plan(base, plan)
        calibration = train[0][: common.RECALIBRATION_EXAMPLES]
        recalibrate_batchnorm(pruned, calibration, batch_size=fit.batch_size)
        common.compile_model(pruned, fit.ft_lr, fit.run_eagerly)
        results["teacher"].append(base_acc)
        results["recalibrated"].append(common.evaluate(pruned, *test))
        results["macs"].append(count_macs(pruned) / count_macs(base))
        common.log(
            f"{net} seed {seed}: teacher {base_acc:.4f}, pruned to "
            f"{results['macs'][-1]:.3f} MACs, recalibrated "
            f"{results['recalibrated'][-1]:.4f}"
        )
        for label, (temperature, alpha) in configs.items():
            start = time.perf_counter()
            acc = recover(pruned, base, train, test, fit, seed, temperature, alpha)
            results.setdefault(label, []).append(acc)
            common.log(
                f"{net} seed {seed} {label}: {acc:.4f} "
                f"({time.perf_counter() - start:.0f} s)"
            )
    return results, desc, fit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(parser, name=NAME, seeds=DEFAULT_SEEDS)
    parser.add_argument("--nets", nargs="+", choices=NETS, default=None)
    parser.add_argument(
        "--temperatures", type=float, nargs="+", default=None, help="T grid"
    )
    parser.add_argument("--alphas", type=float, nargs="+", default=None)
    parser.add_argument(
        "--train",
        type=int,
        default=None,
        help=f"training examples (Fashion-MNIST: {TRAIN_EXAMPLES})",
    )
    parser.add_argument("--epochs", type=int, default=None, help="teacher epochs")
    parser.add_argument("--ft-epochs", type=int, default=None, help="F (2)")
    parser.add_argument(
        "--cache-dir", default=None, help="where spoken digits are synthesised"
    )
    args = parser.parse_args(argv)
    for value in args.temperatures or ():
        if value <= 0:
            parser.error("--temperatures must be > 0")
    for value in args.alphas or ():
        if not 0 < value <= 1:
            parser.error("--alphas must be in (0, 1] (alpha = 0 is always run)")
    watch = common.Stopwatch()
    common.configure(args.threads)

    quick = args.quick
    seeds = args.seeds or ([0] if quick else list(DEFAULT_SEEDS))
    nets = args.nets or (["vgg"] if quick else list(NETS))
    temperatures = args.temperatures or ([2.0] if quick else list(TEMPERATURES))
    alphas = args.alphas or ([0.3] if quick else list(ALPHAS))
    configs = {FINE_TUNE: (1.0, 0.0)}
    for t in temperatures:
        for a in alphas:
            configs[_label(t, a)] = (t, a)

    per_net, notes_nets, fit = {}, [], None
    for net in nets:
        per_net[net], desc, fit = run_net(net, args, seeds, configs, quick)
        macs = statistics.fmean(per_net[net]["macs"])
        notes_nets.append(f"`{net}`: {desc}; {macs:.1%} of the MACs kept")

    def diffs(net, label):
        values = per_net[net]
        return [100 * (a - b) for a, b in zip(values[label], values[FINE_TUNE])]

    rows = [
        ["teacher (unpruned)", *(common.mean_std(per_net[n]["teacher"]) for n in nets)]
        + ["", ""],
        [
            "pruned + recalibrated (no training)",
            *(common.mean_std(per_net[n]["recalibrated"]) for n in nets),
        ]
        + ["", ""],
    ]
    mean_diffs = {}
    for label in configs:
        cells = [common.mean_std(per_net[n][label]) for n in nets]
        if label == FINE_TUNE:
            rows.append([f"**{label}**", *cells, "0", "0"])
            continue
        net_means = [statistics.fmean(diffs(n, label)) for n in nets]
        mean_diffs[label] = (statistics.fmean(net_means), min(net_means))
        rows.append(
            [
                label,
                *cells,
                f"{mean_diffs[label][0]:+.1f}",
                f"{mean_diffs[label][1]:+.1f}",
            ]
        )
    verdicts = [
        common.verdict_row(f"`{net}` {label}", diffs(net, label))
        for label in configs
        if label != FINE_TUNE
        for net in nets
    ]
    best_mean = max(mean_diffs, key=lambda k: mean_diffs[k][0])
    best_worst = max(mean_diffs, key=lambda k: mean_diffs[k][1])
    summary = [
        f"- Highest mean difference from plain fine-tuning over the nets: "
        f"{best_mean} ({mean_diffs[best_mean][0]:+.1f} pt; worst net "
        f"{mean_diffs[best_mean][1]:+.1f} pt).",
        f"- Highest worst-net difference: {best_worst} "
        f"({mean_diffs[best_worst][1]:+.1f} pt; mean "
        f"{mean_diffs[best_worst][0]:+.1f} pt).",
    ]
    notes = [
        "Nets: "
        + "; ".join(notes_nets)
        + (" (--quick: tiny subsets, numbers meaningless)" if quick else "")
        + ".",
        'Pruning: `plan_pruning(base, target_macs="50%")` (`operator_norm`), '
        "`apply_plan`, then `recalibrate_batchnorm` on "
        f"{common.RECALIBRATION_EXAMPLES} training examples; every configuration "
        "starts from that model.",
        f"Training: {fit.describe()}; distillation uses the same optimizer, "
        "epochs and batches, the loss `(1 - alpha) · CE + alpha · T² · KL`.",
        "Columns: test accuracy in % (mean ± sample std over seeds); Δ = paired "
        "difference from plain fine-tuning (same seed, same pruned model), in "
        "points, averaged over seeds then over nets ('mean Δ') or the lowest net "
        "mean ('worst-net Δ').",
        common.VERDICT_RULE + ".",
    ]
    text = "\n".join(
        [
            common.report_header(
                "Distillation after pruning: temperature × alpha against fine-tuning",
                watch,
                seeds=seeds,
                notes=notes,
            ),
            common.table(
                ["configuration", *(f"`{n}` (%)" for n in nets)]
                + ["mean Δ (pt)", "worst-net Δ (pt)"],
                rows,
            ),
            "",
            *summary,
            "",
            "Paired differences from plain fine-tuning (same seed):",
            "",
            common.table(["net, configuration", "difference", "verdict"], verdicts),
            "",
        ]
    )
    common.write_report(common.resolve_output(args, NAME), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
