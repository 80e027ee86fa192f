"""Pruning during training (`PruningCallback`) vs prune once after training.

    python benchmarks/bench_callback.py            # full run (~15 min, 2 cores)
    python benchmarks/bench_callback.py --quick    # smoke run (~20 s)
    python benchmarks/bench_callback.py --ratios 0.5 0.75 --seeds 0 1
    python benchmarks/bench_callback.py --lr-decay cosine \
        --output benchmarks/results/bench_callback_cosine.md

The VGG-style CNN of `bench_accuracy_images.py` on the same Fashion-MNIST
subsample, with the same total number of epochs `E` for every schedule:

- `no pruning`: `E` epochs, for reference.
- `one-shot`: train `E - F` epochs, prune once (`plan_pruning` + `apply_plan`),
  fine-tune the smaller model `F` epochs.
- `iterative (hard)`: `PruningCallback(mode="hard", schedule=PolynomialRatio(0,
  r, begin_step=0, end_step=E - F - 1, power=3, frequency=1),
  schedule_unit="epoch")`: a pruning event at the end of each of the first
  `E - F` epochs with a growing ratio (Li et al.'s iterative pruning with Zhu &
  Gupta's schedule), removed filters held at zero, then `F` epochs with the final
  masks; `callback.pruned_model()` at the end.
- `soft (SFP)`: `PruningCallback(mode="soft", schedule=ConstantRatio(r,
  begin_step=0, end_step=E - F - 1, frequency=1), schedule_unit="epoch")`: He et
  al.'s soft filter pruning, the lowest-scored filters zeroed at the end of each
  of the first `E - F` epochs (they may regrow in between); the callback holds
  the masks of the last event, so the last `F` epochs train the final
  architecture, as in the hard schedule; `pruned_model()` at the end.

Reported: test accuracy of the final (physically pruned) model, its MACs relative
to the unpruned model, and the wall time of the whole schedule (training, pruning
and fine-tuning). The learning rate is constant unless `--lr-decay cosine`: then
every training phase decays it to 0 (one-shot: the `E - F` epochs before pruning,
then the `F` after; iterative and soft: all `E`), the usual end of a training
run, which also shrinks the seed-to-seed spread of the final accuracy. Results:
`benchmarks/results/bench_callback.md` (constant) and `bench_callback_cosine.md`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import _common as common

NAME = "bench_callback"
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_RATIOS = (0.5,)
SCHEDULES = ("no pruning", "one-shot", "iterative (hard)", "soft (SFP)")


def run_schedule(kind, build, train, test, fit, seed, ratio, criterion, total, ft):
    """`(accuracy, recalibrated accuracy, MACs kept, seconds)` of one schedule
    (`fit.cosine`: every training phase decays its learning rate to 0)."""
    import keras

    from keras_filterprune import (
        PruningCallback,
        apply_plan,
        count_macs,
        plan_pruning,
        recalibrate_batchnorm,
    )
    from keras_filterprune.schedules import ConstantRatio, PolynomialRatio

    def compile_for(model, epochs):
        decay = fit.decay_steps(len(train[1]), epochs)
        common.compile_model(model, fit.lr, fit.run_eagerly, decay)

    keras.utils.set_random_seed(seed)
    model = build()
    base_macs = count_macs(model)
    compile_for(model, total - ft if kind == "one-shot" else total)
    kwargs = dict(batch_size=fit.batch_size, verbose=0)
    start = time.perf_counter()
    if kind == "no pruning":
        model.fit(*train, epochs=total, **kwargs)
        final = model
    elif kind == "one-shot":
        model.fit(*train, epochs=total - ft, **kwargs)
        final = apply_plan(model, plan_pruning(model, ratio, criterion))
        compile_for(final, ft)
        final.fit(*train, epochs=ft, **kwargs)
    else:
        if kind == "iterative (hard)":
            schedule = PolynomialRatio(
                0.0, ratio, begin_step=0, end_step=total - ft - 1, frequency=1
            )
            mode = "hard"
        else:
            # SFP's events at every epoch end, over the same epochs as the hard
            # schedule: the callback holds the masks after the last one.
            schedule = ConstantRatio(
                ratio, begin_step=0, end_step=total - ft - 1, frequency=1
            )
            mode = "soft"
        callback = PruningCallback(
            criterion,
            schedule=schedule,
            schedule_unit="epoch",
            mode=mode,
            verbose=0,
        )
        model.fit(*train, epochs=total, callbacks=[callback], **kwargs)
        final = callback.pruned_model()
    seconds = time.perf_counter() - start
    common.compile_model(final, fit.lr, fit.run_eagerly)
    accuracy = common.evaluate(final, *test)
    # The same model with its BatchNorm statistics re-estimated on training
    # images: soft pruning zeroes filters after the statistics were gathered.
    recalibrate_batchnorm(
        final, train[0][: common.RECALIBRATION_EXAMPLES], batch_size=128
    )
    recalibrated = common.evaluate(final, *test)
    return accuracy, recalibrated, count_macs(final) / base_macs, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(
        parser,
        name=NAME,
        seeds=DEFAULT_SEEDS,
        ratios=DEFAULT_RATIOS,
        criteria=("operator_norm",),
    )
    parser.add_argument("--train", type=int, default=None, help="train images (10000)")
    parser.add_argument("--test", type=int, default=None, help="test images (2000)")
    parser.add_argument("--epochs", type=int, default=None, help="total E (8)")
    parser.add_argument(
        "--ft-epochs", type=int, default=None, help="F, after the last event (2)"
    )
    common.add_lr_decay_arg(parser)
    args = parser.parse_args(argv)
    watch = common.Stopwatch()
    common.configure(args.threads)

    from bench_accuracy_images import load_data, vgg_style

    quick = args.quick
    seeds = args.seeds or ([0] if quick else list(DEFAULT_SEEDS))
    ratios = args.ratios or list(DEFAULT_RATIOS)
    criteria = common.check_criteria(args.criteria or ["operator_norm"])
    train_n = args.train or (256 if quick else 10000)
    test_n = args.test or (128 if quick else 2000)
    total = args.epochs or (2 if quick else 8)
    ft = args.ft_epochs or (1 if quick else 2)
    if not 0 < ft < total:
        parser.error("need 0 < --ft-epochs < --epochs")
    fit = common.FitConfig(
        epochs=total,
        ft_epochs=ft,
        run_eagerly=quick,
        cosine=args.lr_decay == "cosine",
    )
    train, _, test = load_data(train_n, 0, test_n)

    results: dict[tuple, list] = {}
    jobs = [("–", 0.0, "no pruning", seed) for seed in seeds]
    jobs += [
        (criterion, ratio, kind, seed)
        for criterion in criteria
        for ratio in ratios
        for seed in seeds
        for kind in SCHEDULES[1:]
    ]
    for criterion, ratio, kind, seed in jobs:
        acc, recal, macs, seconds = run_schedule(
            kind, vgg_style, train, test, fit, seed, ratio, criterion, total, ft
        )
        results.setdefault((criterion, ratio, kind), []).append(
            (acc, recal, macs, seconds)
        )
        common.log(
            f"{criterion} r={ratio} seed {seed} {kind}: acc {acc:.4f} "
            f"(recalibrated {recal:.4f}), MACs {macs:.3f}, {seconds:.0f} s"
        )

    rows = []
    for (criterion, ratio, kind), values in results.items():
        accs, recals, macs, secs = zip(*values)
        rows.append(
            [
                f"`{criterion}`" if criterion != "–" else "–",
                f"{ratio:g}",
                kind,
                common.mean_std(accs),
                common.mean_std(recals),
                f"{100 * statistics.fmean(macs):.1f} %",
                common.fmt_seconds(statistics.median(secs)),
            ]
        )
    verdicts = []
    for criterion in criteria:
        for ratio in ratios:
            one = results.get((criterion, ratio, "one-shot"), [])
            hard = results.get((criterion, ratio, "iterative (hard)"), [])
            soft = results.get((criterion, ratio, "soft (SFP)"), [])
            for label, a_side, b_side, ia, ib in (
                ("iterative (hard) − one-shot", hard, one, 0, 0),
                ("soft (SFP) − one-shot", soft, one, 0, 0),
                ("soft (SFP) recalibrated − iterative (hard)", soft, hard, 1, 0),
            ):
                diffs = [100 * (a[ia] - b[ib]) for a, b in zip(a_side, b_side)]
                if diffs:
                    name = f"`{criterion}` r={ratio:g}: {label}"
                    verdicts.append(common.verdict_row(name, diffs))
    notes = [
        f"Data: Fashion-MNIST subsample, the first {train_n:,} training and "
        f"{test_n:,} test images"
        + (" (--quick: tiny subsets, numbers meaningless)" if quick else "")
        + ".",
        f"Model: VGG-style CNN of bench_accuracy_images.py; Adam lr {fit.lr:g}"
        + (
            " decayed to 0 by a cosine over each training phase (one-shot: the "
            "E − F epochs before pruning, then the F after; iterative and soft: "
            "all E)"
            if args.lr_decay == "cosine"
            else " (constant)"
        )
        + f", batch "
        f"{fit.batch_size}, E = {total} epochs in total for every schedule, F = {ft} "
        "epoch(s) after the last pruning event (one-shot: fine-tuning the pruned "
        "model; iterative: training with the final masks).",
        "After BN recalibration: the same final model with its BatchNorm statistics "
        f"re-estimated on {common.RECALIBRATION_EXAMPLES} training images "
        "(`recalibrate_batchnorm`, no training).",
        "Accuracy: mean ± sample std over seeds, in %; time: median over seeds; "
        + common.VERDICT_RULE
        + ".",
    ]
    text = "\n".join(
        [
            common.report_header(
                "Pruning during training vs prune once (PruningCallback)",
                watch,
                seeds=seeds,
                notes=notes,
            ),
            common.table(
                [
                    "criterion",
                    "ratio",
                    "schedule",
                    "test accuracy (%)",
                    "after BN recalibration (%)",
                    "MACs kept",
                    "wall time",
                ],
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
