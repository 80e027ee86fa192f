"""Keeping the accuracy: right after pruning, after BN recalibration, after a
fine-tune, and after the same budget with distillation from the unpruned model.

    python benchmarks/bench_recovery.py               # VGG-style Fashion-MNIST
    python benchmarks/bench_recovery.py --net resnet  # ResNet-20-style
    python benchmarks/bench_recovery.py --net dcase   # DCASE21_Net, spoken digits
    python benchmarks/bench_recovery.py --quick       # smoke run (~15 s)
    python benchmarks/bench_recovery.py --target-macs 0.5 \
        --output benchmarks/results/bench_recovery_macs50.md  # a MAC budget

For every seed (default 5) a baseline is trained for `E` epochs. Every criterion ×
ratio cell (default: six criteria, passive and active, × ratios 0.3/0.5/0.75)
starts from that baseline and is measured four times: as pruned (scores of the
baseline, `plan_pruning` + `apply_plan`), after `recalibrate_batchnorm` on 2,048
training examples,
after `F` epochs of fine-tuning with the labels (Adam, the same batch order in
every cell), and after the same `F` epochs with `Distiller(pruned,
teacher=baseline)`. The reference is the baseline trained `F` epochs more (the
equally long-trained original). Criteria differences are compared with the seed
spread: a difference counts only when a paired t-test over seeds says so.
With `--target-macs`, each cell is a MAC budget instead of a ratio: the planner
solves the uniform ratio whose pruned model keeps at most that fraction of the
baseline's MACs. Results: `benchmarks/results/bench_recovery.md` (vgg) and
`bench_recovery_<net>.md`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import _common as common

NAME = "bench_recovery"
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
DEFAULT_RATIOS = (0.3, 0.5, 0.75)
DEFAULT_CRITERIA = (
    "l1_norm",
    "operator_norm",
    "geometric_median",
    "random",
    "mean_activation",
    "taylor",
)
STAGES = ("pruned", "recalibrated", "fine-tuned", "distilled")


def run_cell(base, plan, train, test, fit, seed, distill) -> dict:
    """One criterion × ratio cell: `plan` applied to the trained `base` (never
    modified), then recalibrated, fine-tuned and, separately, distilled."""
    import keras

    from keras_filterprune import (
        Distiller,
        apply_plan,
        count_macs,
        recalibrate_batchnorm,
    )

    start = time.perf_counter()
    decay = fit.decay_steps(len(train[1]), fit.ft_epochs)
    pruned = apply_plan(base, plan)
    common.compile_model(pruned, fit.ft_lr, fit.run_eagerly, decay)
    result = {"pruned": common.evaluate(pruned, *test)}
    calibration = train[0][: common.RECALIBRATION_EXAMPLES]
    recalibrate_batchnorm(pruned, calibration, batch_size=fit.batch_size)
    result["recalibrated"] = common.evaluate(pruned, *test)
    student = keras.models.clone_model(pruned)
    student.set_weights(pruned.get_weights())
    keras.utils.set_random_seed(seed)
    pruned.fit(*train, epochs=fit.ft_epochs, batch_size=fit.batch_size, verbose=0)
    result["fine-tuned"] = common.evaluate(pruned, *test)
    keras.utils.set_random_seed(seed)
    distiller = Distiller(student, teacher=base, **distill)
    distiller.compile(
        common.adam(fit.ft_lr, decay),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=fit.run_eagerly,
    )
    distiller.fit(*train, epochs=fit.ft_epochs, batch_size=fit.batch_size, verbose=0)
    common.compile_model(student, fit.ft_lr, fit.run_eagerly)
    result["distilled"] = common.evaluate(student, *test)
    result["macs"] = count_macs(student) / count_macs(base)
    result["seconds"] = time.perf_counter() - start
    return result


def load_net(net: str, quick: bool, train_n: int | None, cache: str | None):
    """`(build, train, test, description, batch size, baseline epochs)`."""
    if net == "dcase":
        from bench_accuracy_audio import prepare, synthesise

        build, train, test, desc = prepare("dcase", synthesise(quick, cache))
        if train_n:
            train = (train[0][:train_n], train[1][:train_n])
        return (
            build,
            train,
            test,
            f"DCASE21_Net-style CNN of bench_accuracy_audio.py on spoken digits "
            f"synthesised by espeak-ng ({len(train[1]):,} training clips, "
            f"{len(test[1]):,} test clips of unseen voice variants; {desc})",
            32 if quick else 64,
            10,
        )
    from bench_accuracy_images import load_data, resnet_style, vgg_style

    train_n = train_n or (256 if quick else 10000)
    train, _, test = load_data(train_n, 0, 128 if quick else 2000)
    build = vgg_style if net == "vgg" else resnet_style
    return (
        build,
        train,
        test,
        f"{net}-style CNN of bench_accuracy_images.py on the first {train_n:,} "
        "Fashion-MNIST training images",
        128,
        6,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(
        parser,
        name=NAME,
        seeds=DEFAULT_SEEDS,
        ratios=DEFAULT_RATIOS,
        criteria=DEFAULT_CRITERIA,
    )
    parser.add_argument("--net", choices=("vgg", "resnet", "dcase"), default="vgg")
    parser.add_argument("--train", type=int, default=None, help="training examples")
    parser.add_argument("--epochs", type=int, default=None, help="baseline E")
    parser.add_argument("--ft-epochs", type=int, default=None, help="F (2)")
    parser.add_argument("--temperature", type=float, default=2.0, help="T (2)")
    parser.add_argument("--alpha", type=float, default=0.3, help="alpha (0.3)")
    parser.add_argument(
        "--active-examples", type=int, default=512, help="data for active criteria"
    )
    parser.add_argument(
        "--cache-dir", default=None, help="where spoken digits are synthesised"
    )
    common.add_lr_decay_arg(parser)
    parser.add_argument(
        "--target-macs",
        type=float,
        nargs="+",
        default=None,
        help="MAC budgets (fractions of the baseline) instead of --ratios: "
        "plan_pruning(target_macs=...) solves each one's uniform ratio",
    )
    args = parser.parse_args(argv)
    if args.target_macs and args.ratios:
        parser.error("give --ratios or --target-macs, not both")
    if args.target_macs and not all(0 < m < 1 for m in args.target_macs):
        parser.error("--target-macs: fractions in (0, 1), e.g. 0.5")
    watch = common.Stopwatch()
    common.configure(args.threads)

    import keras

    from keras_filterprune import count_macs, plan_pruning, score_filters
    from keras_filterprune import criteria as criteria_lib

    quick = args.quick
    seeds = args.seeds or ([0] if quick else list(DEFAULT_SEEDS))
    ratios = args.ratios or ([0.5] if quick else list(DEFAULT_RATIOS))
    # Each cell's budget: its label → the plan_pruning argument (a MAC budget is
    # a fraction of each baseline's MACs).
    if args.target_macs:
        budgets = {f"MACs ≤ {m:g}": ("target_macs", m) for m in args.target_macs}
    else:
        budgets = {f"r={r:g}": ("ratio", r) for r in ratios}
    criteria = common.check_criteria(
        args.criteria or (["l1_norm", "taylor"] if quick else list(DEFAULT_CRITERIA))
    )
    build, train, test, net_desc, batch, epochs = load_net(
        args.net, quick, args.train, args.cache_dir
    )
    fit = common.FitConfig(
        epochs=args.epochs or (1 if quick else epochs),
        ft_epochs=args.ft_epochs or (1 if quick else 2),
        batch_size=batch,
        run_eagerly=quick,
        cosine=args.lr_decay == "cosine",
    )
    distill = {"temperature": args.temperature, "alpha": args.alpha}
    active_x = train[0][: args.active_examples]
    active_y = train[1][: args.active_examples]

    cells: dict[tuple, list[dict]] = {}
    references = []
    for seed in seeds:
        base, base_acc, _ = common.train_baseline(build, train, test, fit, seed)
        common.log(f"seed {seed}: baseline {base_acc:.4f}")
        for criterion in criteria:
            data = None
            if criteria_lib.needs_gradients(criterion):
                data = (active_x, active_y)
            elif criteria_lib.is_active(criterion):
                data = active_x
            keras.utils.set_random_seed(seed)
            scores = score_filters(base, criterion, data)
            for budget, (key, value) in budgets.items():
                if key == "target_macs":
                    value *= count_macs(base)
                plan = plan_pruning(
                    base, criterion=criterion, scores=scores, **{key: value}
                )
                cell = run_cell(base, plan, train, test, fit, seed, distill)
                cells.setdefault((criterion, budget), []).append(cell)
                common.log(
                    f"seed {seed} {criterion} {budget}: "
                    + ", ".join(f"{s} {cell[s]:.4f}" for s in STAGES)
                    + f" (MACs {cell['macs']:.3f}, {cell['seconds']:.0f} s)"
                )
        # The equally long-trained original: F more epochs of the baseline (with
        # a decaying learning rate, the fine-tune's schedule from its start).
        if fit.cosine:
            decay = fit.decay_steps(len(train[1]), fit.ft_epochs)
            common.compile_model(base, fit.ft_lr, fit.run_eagerly, decay)
        keras.utils.set_random_seed(seed)
        base.fit(*train, epochs=fit.ft_epochs, batch_size=fit.batch_size, verbose=0)
        references.append(common.evaluate(base, *test))
        common.log(f"seed {seed}: original {base_acc:.4f} -> {references[-1]:.4f}")

    rows = [["original, E + F epochs", "–", "100 %", "", "", "", ""]]
    rows[0][3:] = ["", "", common.mean_std(references), ""]
    for (criterion, budget), values in cells.items():
        rows.append(
            [
                f"`{criterion}`",
                budget,
                f"{100 * statistics.fmean(c['macs'] for c in values):.1f} %",
                *(common.mean_std([c[s] for c in values]) for s in STAGES),
            ]
        )
    verdicts = []
    for (criterion, budget), values in cells.items():
        for label, a, b in (
            ("distilled − fine-tuned", "distilled", "fine-tuned"),
            ("recalibrated − pruned", "recalibrated", "pruned"),
        ):
            diffs = [100 * (c[a] - c[b]) for c in values]
            verdicts.append(
                common.verdict_row(f"`{criterion}` {budget}: {label}", diffs)
            )
        gaps = [100 * (c["distilled"] - r) for c, r in zip(values, references)]
        verdicts.append(
            common.verdict_row(f"`{criterion}` {budget}: distilled − original", gaps)
        )
    for budget in budgets:
        for i, a in enumerate(criteria):
            for b in criteria[i + 1 :]:
                diffs = [
                    100 * (x["distilled"] - y["distilled"])
                    for x, y in zip(cells[(a, budget)], cells[(b, budget)])
                ]
                verdicts.append(common.verdict_row(f"{budget}: `{a}` − `{b}`", diffs))
    notes = [
        f"Net: {net_desc}"
        + (" (--quick: tiny subsets, numbers meaningless)" if quick else "")
        + "; "
        + fit.describe()
        + ".",
        "Columns: test accuracy (mean ± sample std over seeds, in %) right after "
        "pruning, after BN recalibration on "
        f"{common.RECALIBRATION_EXAMPLES} training examples, after the fine-tune, "
        "and after the same epochs of distillation (`Distiller`, "
        f"T = {args.temperature:g}, alpha = {args.alpha:g}) from the baseline, "
        "both from the recalibrated "
        f"model. Active criteria score on {len(active_x)} training examples "
        "(`taylor` with their labels and the compiled loss).",
        common.VERDICT_RULE + ".",
    ]
    text = "\n".join(
        [
            common.report_header(
                "Keeping the accuracy: recalibration, fine-tuning, distillation",
                watch,
                seeds=seeds,
                notes=notes,
            ),
            common.table(
                ["criterion", "budget", "MACs kept", *(f"{s} (%)" for s in STAGES)],
                rows,
            ),
            "",
            "Paired differences (same seed):",
            "",
            common.table(["comparison", "difference", "verdict"], verdicts),
            "",
        ]
    )
    name = NAME if args.net == "vgg" else f"{NAME}_{args.net}"
    common.write_report(common.resolve_output(args, name), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
