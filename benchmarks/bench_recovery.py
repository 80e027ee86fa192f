"""Keeping the accuracy: right after pruning, after BN recalibration, after a
fine-tune, and after the same budget with distillation from the unpruned model.

    python benchmarks/bench_recovery.py            # VGG-style Fashion-MNIST (~15 min)
    python benchmarks/bench_recovery.py --quick    # smoke run (~20 s)
    python benchmarks/bench_recovery.py --net resnet --seeds 0 1 2 3 4

For every seed a baseline is trained for `E` epochs. Every criterion × ratio cell
starts from that baseline and is measured four times: as pruned
(`prune_keras_model`), after `recalibrate_batchnorm` on 2,048 training images,
after `F` epochs of fine-tuning with the labels (Adam, the same batch order in
every cell), and after the same `F` epochs with `Distiller(pruned,
teacher=baseline)`. The reference is the baseline trained `F` epochs more (the
equally long-trained original). Criteria differences are compared with the seed
spread: a difference counts only when a paired t-test over seeds says so.
Results: `benchmarks/results/bench_recovery.md`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import _common as common

NAME = "bench_recovery"
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_RATIOS = (0.3, 0.5, 0.75)
DEFAULT_CRITERIA = ("l1_norm", "operator_norm", "random")
STAGES = ("pruned", "recalibrated", "fine-tuned", "distilled")


def run_cell(base, criterion, ratio, train, test, fit, seed) -> dict:
    """One criterion × ratio cell from the trained `base` (never modified)."""
    import keras

    from keras_filterprune import (
        Distiller,
        count_macs,
        prune_keras_model,
        recalibrate_batchnorm,
    )

    start = time.perf_counter()
    pruned = prune_keras_model(base, ratio, criterion)
    common.compile_model(pruned, fit.ft_lr, fit.run_eagerly)
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
    distiller = Distiller(student, teacher=base)
    distiller.compile(
        keras.optimizers.Adam(fit.ft_lr),
        "sparse_categorical_crossentropy",
        run_eagerly=fit.run_eagerly,
    )
    distiller.fit(*train, epochs=fit.ft_epochs, batch_size=fit.batch_size, verbose=0)
    common.compile_model(student, fit.ft_lr, fit.run_eagerly)
    result["distilled"] = common.evaluate(student, *test)
    result["macs"] = count_macs(student) / count_macs(base)
    result["seconds"] = time.perf_counter() - start
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(
        parser,
        name=NAME,
        seeds=DEFAULT_SEEDS,
        ratios=DEFAULT_RATIOS,
        criteria=DEFAULT_CRITERIA,
    )
    parser.add_argument("--net", choices=("vgg", "resnet"), default="vgg")
    parser.add_argument("--train", type=int, default=None, help="images (10000)")
    parser.add_argument("--epochs", type=int, default=None, help="baseline E (6)")
    parser.add_argument("--ft-epochs", type=int, default=None, help="F (2)")
    args = parser.parse_args(argv)
    watch = common.Stopwatch()
    common.configure(args.threads)

    import keras
    from bench_accuracy_images import load_data, resnet_style, vgg_style

    quick = args.quick
    seeds = args.seeds or ([0] if quick else list(DEFAULT_SEEDS))
    ratios = args.ratios or ([0.5] if quick else list(DEFAULT_RATIOS))
    criteria = common.check_criteria(
        args.criteria or (["l1_norm"] if quick else list(DEFAULT_CRITERIA))
    )
    train_n = args.train or (512 if quick else 10000)
    fit = common.FitConfig(
        epochs=args.epochs or (1 if quick else 6),
        ft_epochs=args.ft_epochs or (1 if quick else 2),
        run_eagerly=quick,
    )
    build = vgg_style if args.net == "vgg" else resnet_style
    train, _, test = load_data(train_n, 0, 256 if quick else 2000)

    cells: dict[tuple, list[dict]] = {}
    references = []
    for seed in seeds:
        base, base_acc, _ = common.train_baseline(build, train, test, fit, seed)
        for criterion in criteria:
            for ratio in ratios:
                cell = run_cell(base, criterion, ratio, train, test, fit, seed)
                cells.setdefault((criterion, ratio), []).append(cell)
                common.log(
                    f"seed {seed} {criterion} r={ratio}: "
                    + ", ".join(f"{s} {cell[s]:.4f}" for s in STAGES)
                    + f" (MACs {cell['macs']:.3f}, {cell['seconds']:.0f} s)"
                )
        # The equally long-trained original: F more epochs of the baseline.
        keras.utils.set_random_seed(seed)
        base.fit(*train, epochs=fit.ft_epochs, batch_size=fit.batch_size, verbose=0)
        references.append(common.evaluate(base, *test))
        common.log(f"seed {seed}: original {base_acc:.4f} -> {references[-1]:.4f}")

    rows = [["original, E + F epochs", "–", "100 %", "", "", "", ""]]
    rows[0][3:] = ["", "", common.mean_std(references), ""]
    for (criterion, ratio), values in cells.items():
        rows.append(
            [
                f"`{criterion}`",
                f"{ratio:g}",
                f"{100 * statistics.fmean(c['macs'] for c in values):.1f} %",
                *(common.mean_std([c[s] for c in values]) for s in STAGES),
            ]
        )
    verdicts = []
    for (criterion, ratio), values in cells.items():
        for label, a, b in (
            ("distilled − fine-tuned", "distilled", "fine-tuned"),
            ("recalibrated − pruned", "recalibrated", "pruned"),
        ):
            diffs = [100 * (c[a] - c[b]) for c in values]
            verdicts.append(
                common.verdict_row(f"`{criterion}` r={ratio:g}: {label}", diffs)
            )
        gaps = [100 * (c["distilled"] - r) for c, r in zip(values, references)]
        verdicts.append(
            common.verdict_row(f"`{criterion}` r={ratio:g}: distilled − original", gaps)
        )
    for ratio in ratios:
        for i, a in enumerate(criteria):
            for b in criteria[i + 1 :]:
                diffs = [
                    100 * (x["distilled"] - y["distilled"])
                    for x, y in zip(cells[(a, ratio)], cells[(b, ratio)])
                ]
                verdicts.append(
                    common.verdict_row(f"r={ratio:g}: `{a}` − `{b}`", diffs)
                )
    notes = [
        f"Net: {args.net}-style CNN of bench_accuracy_images.py on the first "
        f"{train_n:,} Fashion-MNIST training images"
        + (" (--quick: tiny subsets, numbers meaningless)" if quick else "")
        + "; "
        + fit.describe()
        + ".",
        "Columns: test accuracy (mean ± sample std over seeds, in %) right after "
        "pruning, after BN recalibration on "
        f"{common.RECALIBRATION_EXAMPLES} training images, after the fine-tune, "
        "and after the same epochs of distillation (`Distiller`, T = 4, "
        "alpha = 0.9) from the baseline, both from the recalibrated model.",
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
                ["criterion", "ratio", "MACs kept", *(f"{s} (%)" for s in STAGES)],
                rows,
            ),
            "",
            "Paired differences (same seed):",
            "",
            common.table(["comparison", "difference", "verdict"], verdicts),
            "",
        ]
    )
    common.write_report(common.resolve_output(args, NAME), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
