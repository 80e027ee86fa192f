"""Accuracy of filter pruning on Fashion-MNIST: criteria × ratios, fine-tuned or not.

    python benchmarks/bench_accuracy_images.py          # full run (~1 h on 2 cores)
    python benchmarks/bench_accuracy_images.py --quick  # smoke run (~20 s)
    python benchmarks/bench_accuracy_images.py --seeds 0 --ratios 0.5 --models vgg

Evidence for two claims of the papers this package implements, on data nobody
here made (Fashion-MNIST, Xiao et al. 2017, from Debian's `dataset-fashion-mnist`):

- Li et al. (2017): L1-norm filter pruning removes ~34 % of VGG-16's FLOPs with no
  accuracy loss after retraining, and a per-layer sensitivity analysis tells which
  layers to spare.
- Singh & Plumbley: operator-norm pruning holds accuracy better than entry-wise
  norms at high pruning ratios and matches active (data-driven) criteria.

Two networks, each trained ONCE per seed on a subsample and then pruned from the
same trained weights for every criterion × ratio cell:

- `vgg`: a VGG-style CNN (3×3 conv + BN + ReLU, widths 16-16 | 32-32 | 64-64 with
  2×2 max-pooling after each pair, Flatten, Dense 64, Dense 10).
- `resnet`: He et al.'s CIFAR ResNet layout (3 stages of basic blocks, global
  average pooling), shrunk to fit the time budget on two cores: ResNet-14 depth
  (2 blocks per stage; `--resnet-depth 20` for 3) at half width (8/16/32 filters
  instead of 16/32/64), with option-B shortcuts (1×1 projection + BN where the
  shape changes). The `Add`s tie each stage's block
  outputs and shortcut into one channel group, which is pruned as a whole. (With
  option-A zero-padded shortcuts, as in `resnet_cifar()`, the library freezes the
  residual stream and only the first conv of each block is pruned, as Li et al.
  do for ResNets.)

Each cell is evaluated right after pruning and after a short fine-tune with the
same budget for every cell. A control cell fine-tunes the *unpruned* baseline with
the same budget, so gains from the extra epochs are not credited to pruning. The
sensitivity experiment (VGG only) prunes each layer alone with `l1_norm`
(`sensitivity_analysis` on a validation split taken from the training set), spares
the half of the layers whose accuracy drops most and prunes the others to keep 66 %
of the MACs (`plan_pruning(exclude=..., target_macs=...)`), and compares that plan
after fine-tuning with a uniform plan and with sparing the least sensitive half,
both with the same MACs.

Results are printed as Markdown and written to
`benchmarks/results/bench_accuracy_images.md`.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import _common as common

NAME = "bench_accuracy_images"
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_RATIOS = (0.25, 0.5, 0.75, 0.9)
DEFAULT_CRITERIA = (
    "operator_norm",
    "l1_norm",
    "geometric_median",
    "random",
    "mean_activation",
)
MODELS = ("vgg", "resnet")
SENSITIVITY_RATIOS = (0.25, 0.5, 0.75)


def vgg_style(input_shape=(28, 28, 1), num_classes=10, widths=(16, 32, 64)):
    """VGG-style CNN: two 3×3 conv+BN+ReLU per stage, max-pool, Flatten, 2 Dense."""
    import keras
    from keras import layers

    inputs = keras.Input(input_shape, name="image")
    x = inputs
    index = 0
    for stage, width in enumerate(widths, start=1):
        for _ in range(2):
            index += 1
            x = layers.Conv2D(
                width, 3, padding="same", use_bias=False, name=f"conv{index}"
            )(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"bn{index}")(x)
            x = layers.Activation("relu", name=f"relu{index}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{stage}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(64, activation="relu", name="fc1")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="vgg_style")


def resnet_style(depth=20, input_shape=(28, 28, 1), num_classes=10, widths=(8, 16, 32)):
    """He et al.'s CIFAR ResNet layout, projection shortcuts, given widths."""
    import keras
    from keras import layers

    def conv(filters, strides, name):
        return layers.Conv2D(
            filters,
            3,
            strides=strides,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            name=name,
        )

    inputs = keras.Input(input_shape, name="image")
    x = conv(widths[0], 1, "conv1")(inputs)
    x = layers.BatchNormalization(momentum=0.9, name="bn1")(x)
    x = layers.Activation("relu", name="relu1")(x)
    for stage, width in enumerate(widths, start=1):
        for block in range(1, (depth - 2) // 6 + 1):
            prefix = f"stage{stage}_block{block}"
            strides = 2 if stage > 1 and block == 1 else 1
            y = conv(width, strides, f"{prefix}_conv1")(x)
            y = layers.BatchNormalization(momentum=0.9, name=f"{prefix}_bn1")(y)
            y = layers.Activation("relu", name=f"{prefix}_relu1")(y)
            y = conv(width, 1, f"{prefix}_conv2")(y)
            y = layers.BatchNormalization(momentum=0.9, name=f"{prefix}_bn2")(y)
            if strides != 1 or x.shape[-1] != width:  # option B: projection
                x = layers.Conv2D(
                    width,
                    1,
                    strides=strides,
                    use_bias=False,
                    kernel_initializer="he_normal",
                    name=f"{prefix}_shortcut_conv",
                )(x)
                x = layers.BatchNormalization(
                    momentum=0.9, name=f"{prefix}_shortcut_bn"
                )(x)
            x = layers.Add(name=f"{prefix}_add")([x, y])
            x = layers.Activation("relu", name=f"{prefix}_relu2")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"resnet{depth}_style")


def load_data(train_n: int, val_n: int, test_n: int):
    """First `train_n` training images for training, the next `val_n` for the
    sensitivity analysis, the first `test_n` test images for testing."""
    from keras_filterprune.datasets import fashion_mnist

    (x, y), (xt, yt) = fashion_mnist(subset=(train_n + val_n, test_n))
    y, yt = y.astype("int32"), yt.astype("int32")
    return (x[:train_n], y[:train_n]), (x[train_n:], y[train_n:]), (xt, yt)


def sensitivity_experiment(base, train, val, test, fit, seed, ratios, target):
    """Spare the most sensitive layers (Li et al. §4.1) vs uniform vs the least.

    Every channel group is pruned alone with `l1_norm` at `ratios` and evaluated
    on the validation split; a group's sensitivity is its mean accuracy drop.
    Three plans then keep `target` of the MACs: `l1_norm` with the most sensitive
    half of the groups spared (`exclude`, the others pruned at the uniform ratio
    that meets the target), the same with the least sensitive half spared, and
    one uniform ratio for all groups. Each is fine-tuned with the same budget.
    """
    from keras_filterprune import (
        apply_plan,
        count_macs,
        plan_pruning,
        sensitivity_analysis,
    )

    result = sensitivity_analysis(
        base, data=val, ratios=ratios, criterion="l1_norm", verbose=0
    )
    drops = {
        name: statistics.fmean(d for r, d in points if r > 0)
        for name, points in result.drops().items()
    }
    order = sorted(drops, key=drops.get, reverse=True)
    k = len(order) // 2
    base_macs = count_macs(base)
    goal = target * base_macs
    out = dict(drops=drops, spared=order[:k], baseline_val=result.baseline)
    for key, spare in (
        ("guided", order[:k]),
        ("uniform", []),
        ("anti", order[-k:]),
    ):
        exclude = [p for name in spare for p in result.groups[name]]
        try:
            plan = plan_pruning(base, criterion="l1_norm", exclude=exclude,
                                target_macs=goal)  # fmt: skip
        except ValueError as e:  # the spared layers alone exceed the target
            out[key] = dict(error=str(e).splitlines()[0])
            continue
        model = apply_plan(base, plan)
        before, recal, after = common.finetune(model, train, test, fit, seed)
        out[key] = dict(
            ratio=plan.meta["ratio"],
            macs=count_macs(model) / base_macs,
            pruned=before,
            recal=recal,
            ft=after,
        )
    return out


def sensitivity_report(results: list[dict], target: float) -> str:
    lines = [
        "",
        "### Sensitivity analysis (Li et al. §4.1), VGG-style, `l1_norm`",
        "",
        f"Each channel group pruned alone at ratios {list(SENSITIVITY_RATIOS)}, "
        "evaluated on the validation split (`sensitivity_analysis`); sensitivity = "
        "mean accuracy drop. Three plans keep "
        f"{100 * target:.0f} % of the MACs (Li et al. remove 34 % of VGG-16's "
        "FLOPs): the most sensitive half of the groups spared and the others "
        "pruned at the ratio that meets the target, the least sensitive half "
        "spared instead, and one uniform ratio. Same fine-tune for all.",
        "",
    ]
    if not results:
        return "\n".join(lines + ["(not run)"])
    names = list(results[0]["drops"])
    rows = [
        [f"`{name}`"]
        + [
            f"{100 * r['drops'][name]:.1f}"
            + (" (spared)" if name in r["spared"] else "")
            for r in results
        ]
        for name in names
    ]
    heads = ["group"] + [f"seed {i}: mean drop (pt)" for i in range(len(results))]
    lines += [common.table(heads, rows), ""]
    rows = []
    labels = {
        "guided": "most sensitive half spared (sensitivity-guided)",
        "uniform": "uniform ratio",
        "anti": "least sensitive half spared (anti-guided)",
    }
    for key, label in labels.items():
        ok = [r[key] for r in results if "error" not in r[key]]
        if not ok:
            rows.append([label, results[0][key]["error"], "", "", "", ""])
            continue
        rows.append(
            [
                label,
                ", ".join(f"{v['ratio']:.2f}" for v in ok),
                common.mean_std([v["macs"] for v in ok]),
                common.mean_std([v["pruned"] for v in ok]),
                common.mean_std([v["recal"] for v in ok]),
                common.mean_std([v["ft"] for v in ok]),
            ]
        )
    lines.append(
        common.table(
            [
                "plan",
                "ratio of the pruned groups (per seed)",
                "MACs kept (%)",
                "acc. pruned (%)",
                "acc. BN-recalibrated (%)",
                "acc. fine-tuned (%)",
            ],
            rows,
        )
    )
    return "\n".join(lines)


def sensitivity_claim_rows(results: list[dict]) -> list[list[str]]:
    rows = []
    others = {"uniform": "a uniform ratio", "anti": "sparing the least sensitive"}
    for a, b in (("guided", "uniform"), ("guided", "anti")):
        for key, when in (
            ("ft", "after fine-tuning"),
            ("recal", "after BN recalibration, no training"),
        ):
            diffs = [
                100 * (r[a][key] - r[b][key])
                for r in results
                if "error" not in r[a] and "error" not in r[b]
            ]
            if not diffs:
                continue
            m = statistics.fmean(diffs)
            s = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
            rows.append(
                [
                    f"vgg_style: sparing the most sensitive layers beats {others[b]} "
                    f"at equal MACs ({when})",
                    common.fmt_diff(m, s, len(diffs)),
                    common.compare_verdict(m, s, len(diffs)),
                ]
            )
    return rows


def li_claim_rows(runs, ratios, name: str) -> list[list[str]]:
    """Does L1 pruning remove >= 34 % of MACs with no loss after fine-tuning?"""
    rows = []
    for ratio in ratios:
        cells = common._cells(runs, "l1_norm", ratio)
        if not cells:
            continue
        removed = 1 - statistics.fmean(c["macs"] for c in cells)
        if removed < 0.34:
            continue
        diffs = []  # per seed: l1_norm at `ratio` minus the control (ratio 0)
        for seed_cells in runs:
            a = common._cells([seed_cells], "l1_norm", ratio)
            b = common._cells([seed_cells], common.CONTROL, 0.0)
            if a and b:
                diffs.append(100 * (a[0]["acc_ft"] - b[0]["acc_ft"]))
        m = statistics.fmean(diffs)
        s = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
        n = len(diffs)
        verdict = common.compare_verdict(m, s, n)
        holds = "holds" if verdict != "worse" and m > -0.5 else "does not hold"
        if n < 2:
            holds = "one seed: no verdict"
        rows.append(
            [
                f"{name}: `l1_norm` r={ratio:g} removes {100 * removed:.0f} % of MACs "
                "with no loss after fine-tuning (vs. control)",
                common.fmt_diff(m, s, n),
                holds,
            ]
        )
        break  # the smallest ratio that removes >= 34 %
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(
        parser,
        name=NAME,
        seeds=DEFAULT_SEEDS,
        ratios=DEFAULT_RATIOS,
        criteria=DEFAULT_CRITERIA,
    )
    parser.add_argument("--models", nargs="+", choices=MODELS, default=None)
    parser.add_argument("--train", type=int, default=None, help="train images (10000)")
    parser.add_argument("--test", type=int, default=None, help="test images (2000)")
    parser.add_argument("--val", type=int, default=None, help="validation (1000)")
    parser.add_argument("--epochs", type=int, default=None, help="baseline (6)")
    parser.add_argument("--ft-epochs", type=int, default=None, help="fine-tune (2)")
    parser.add_argument(
        "--active-examples", type=int, default=512, help="data for active criteria"
    )
    parser.add_argument(
        "--resnet-depth", type=int, default=None, help="6n+2 (14; --quick: 8)"
    )
    parser.add_argument(
        "--sensitivity-macs",
        type=float,
        default=0.66,
        help="MACs kept by the sensitivity plans (0.66: Li et al.'s -34 %%)",
    )
    parser.add_argument(
        "--no-sensitivity", action="store_true", help="skip the sensitivity part"
    )
    args = parser.parse_args(argv)
    watch = common.Stopwatch()
    common.configure(args.threads)

    quick = args.quick
    seeds = args.seeds or ([0] if quick else list(DEFAULT_SEEDS))
    ratios = args.ratios or ([0.5] if quick else list(DEFAULT_RATIOS))
    criteria = common.check_criteria(
        args.criteria or (["l1_norm", "mean_activation"] if quick else DEFAULT_CRITERIA)
    )
    models = args.models or list(MODELS)
    train_n = args.train or (128 if quick else 10000)
    test_n = args.test or (128 if quick else 2000)
    val_n = args.val or (128 if quick else 1000)
    fit = common.FitConfig(
        epochs=args.epochs or (1 if quick else 6),
        ft_epochs=args.ft_epochs or (1 if quick else 2),
        run_eagerly=quick,
    )
    sens_ratios = (0.5,) if quick else SENSITIVITY_RATIOS

    train, val, test = load_data(train_n, val_n, test_n)
    active_x = train[0][: args.active_examples]
    depth = args.resnet_depth or (8 if quick else 14)
    builders = {"vgg": vgg_style, "resnet": lambda: resnet_style(depth)}

    sections = []
    claim_rows, criteria_rows = [], []
    for name in models:
        runs, baselines, sens = [], [], []
        for seed in seeds:
            base, acc, seconds = common.train_baseline(
                builders[name], train, test, fit, seed
            )
            common.log(f"{name} seed {seed}: baseline {acc:.4f} in {seconds:.0f} s")
            baselines.append(acc)
            runs.append(
                common.prune_grid(
                    base,
                    criteria=criteria,
                    ratios=ratios,
                    train=train,
                    test=test,
                    active_x=active_x,
                    fit=fit,
                    seed=seed,
                    label=name,
                )
            )
            if name == "vgg" and not args.no_sensitivity:
                sens.append(
                    sensitivity_experiment(
                        base,
                        train,
                        val,
                        test,
                        fit,
                        seed,
                        sens_ratios,
                        args.sensitivity_macs,
                    )
                )
                common.log(f"sensitivity seed {seed}: {sens[-1]}")
        base_model = builders[name]()
        from keras_filterprune import count_macs
        from keras_filterprune.profile import count_params

        title = (
            f"## {base_model.name}: {count_params(base_model):,} parameters, "
            f"{count_macs(base_model) / 1e6:.2f} M MACs per image"
        )
        sections += [title, "", common.grid_report(runs, baselines, criteria, ratios)]
        if sens:
            sections.append(sensitivity_report(sens, args.sensitivity_macs))
            claim_rows += sensitivity_claim_rows(sens)
        sections.append("")
        claim_rows += li_claim_rows(runs, ratios, base_model.name)
        for row in common.criteria_claims(runs, criteria, ratios):
            criteria_rows.append([f"{base_model.name}: {row[0]}", *row[1:]])

    notes = [
        f"Data: Fashion-MNIST subsample — the first {train_n:,} training images for "
        f"training, the next {val_n:,} as validation (sensitivity analysis only), "
        f"the first {test_n:,} test images for testing"
        + (" (--quick: tiny subsets, numbers meaningless)" if quick else "")
        + ".",
        "Training: " + fit.describe() + ".",
        f"Active criteria score {len(active_x)} training images.",
        f"Criteria: {', '.join(criteria)}; ratios {ratios} (fraction of the "
        "filters of every channel group removed; the classifier output is frozen).",
        "Accuracies are in %; ± is the sample standard deviation over seeds. "
        "Paired differences compare cells of the same seed (same baseline); "
        + common.VERDICT_RULE
        + ".",
    ]
    claims = [
        "## Claims",
        "",
        common.table(
            ["claim (measured here)", "paired difference", "verdict"], claim_rows
        ),
        "",
        "Li et al.'s claim counts as holding when the mean paired difference to the "
        "control is above −0.5 points and not 'worse'.",
        "",
        "### Operator norm vs the other criteria (paired differences, points)",
        "",
        common.table(common.CRITERIA_CLAIM_HEADERS, criteria_rows),
        "",
    ]
    text = "\n".join(
        [
            common.report_header(
                "Pruning accuracy on Fashion-MNIST (images)",
                watch,
                seeds=seeds,
                notes=notes,
            ),
            *claims,
            *sections,
        ]
    )
    common.write_report(common.resolve_output(args, NAME), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
