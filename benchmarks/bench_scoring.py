"""How long does scoring every filter of a model take, passive vs active criteria?

    python benchmarks/bench_scoring.py            # full run (~10-15 min, 2 cores)
    python benchmarks/bench_scoring.py --quick    # smoke run (~15 s)
    python benchmarks/bench_scoring.py --models dcase21_net --examples 256

Singh & Plumbley claim that operator-norm scoring is at least 4.5× faster than
active (data-driven) criteria. Here `score_filters(model, criterion, data)` — the
public call that planning makes — is timed for every criterion on the networks of
the papers, with the published input sizes and random weights (times do not
depend on the weights): `dcase21_net()` (40×500×1 log-mel), VGGish's conv body
(`vggish(include_top=False, pooling="avg", num_classes=10)`, 96×64×1) and
`vgg16_cifar()` (32×32×3), all with a linear classifier (logits). Active criteria
see the same 256 and 1,024 examples (standard normal inputs; `taylor` also gets
random labels and the compiled cross-entropy), batch size 64. Every call includes
what a user pays: tracing the graph, building the activation model, the forward
(and, for `taylor`, backward) passes and the statistics. Times are medians of
`--repeats` calls (a call longer than 10 s is not repeated).

Results: `benchmarks/results/bench_scoring.md`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import _common as common
import numpy as np

NAME = "bench_scoring"
MODELS = ("dcase21_net", "vggish", "vgg16_cifar")
DEFAULT_EXAMPLES = (256, 1024)
CLAIM = 4.5  # operator_norm vs active criteria, Singh & Plumbley


def build(name: str, quick: bool):
    from keras_filterprune import models

    if name == "dcase21_net":
        shape = (40, 100, 1) if quick else (40, 500, 1)
        if quick:  # the 4×100 pool needs 500 frames; a stand-in of the same layers
            return _small_dcase(shape), shape
        return models.dcase21_net(classifier_activation=None), shape
    if name == "vggish":
        body = models.vggish(
            include_top=False,
            pooling="avg",
            num_classes=10,
            classifier_activation=None,
        )
        return body, (96, 64, 1)
    return models.vgg16_cifar(classifier_activation=None), (32, 32, 3)


def _small_dcase(shape):
    import keras
    from keras import layers

    inputs = keras.Input(shape)
    x = inputs
    for index, filters in enumerate((16, 16, 32), start=1):
        x = layers.Conv2D(filters, 7, padding="same", name=f"conv{index}")(x)
        x = layers.BatchNormalization(name=f"bn{index}")(x)
        x = layers.Activation("relu", name=f"relu{index}")(x)
        if index >= 2:
            x = layers.MaxPooling2D(4, name=f"pool{index}")(x)
    x = layers.Flatten()(x)
    return keras.Model(inputs, layers.Dense(10, name="predictions")(x))


def timed(fn, repeats: int, long: float = 10.0) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if times[-1] > long:
            break
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    from keras_filterprune import criteria as criteria_lib

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(parser, name=NAME, criteria=criteria_lib.names())
    parser.add_argument("--models", nargs="+", choices=MODELS, default=None)
    parser.add_argument(
        "--examples", type=int, nargs="+", default=None, help="(256 1024)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    watch = common.Stopwatch()
    common.configure(args.threads)

    import keras

    from keras_filterprune import count_macs, score_filters

    quick = args.quick
    names = args.models or (["dcase21_net"] if quick else list(MODELS))
    sizes = args.examples or ([16] if quick else list(DEFAULT_EXAMPLES))
    criteria = common.check_criteria(
        args.criteria
        or (
            ["operator_norm", "l1_norm", "mean_activation", "taylor"]
            if quick
            else criteria_lib.names()
        )
    )
    if "operator_norm" not in criteria:
        criteria.insert(0, "operator_norm")
    passive = [c for c in criteria if not criteria_lib.is_active(c)]
    active = [c for c in criteria if criteria_lib.is_active(c)]
    repeats = 1 if quick else args.repeats

    rows, claim_rows = [], []
    for name in names:
        keras.utils.set_random_seed(0)
        model, shape = build(name, quick)
        # Logits: `taylor` cannot differentiate through a softmax head, whose
        # loss Keras computes from the cached logits.
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(loss=loss)
        rng = np.random.default_rng(0)
        x_all = rng.standard_normal((max(sizes), *shape), dtype=np.float32)
        y_all = rng.integers(0, 10, max(sizes)).astype("int32")
        n_layers = len(score_filters(model, "l1_norm"))
        label = f"`{name}` ({n_layers} layers, {count_macs(model) / 1e6:,.0f} M MACs)"
        times = {}
        for crit in passive:
            times[crit] = timed(
                lambda c=crit, m=model: score_filters(m, c), 5 * repeats
            )
            rows.append([label, f"`{crit}`", "passive", "–", fmt(times[crit])])
            common.log(f"{name} {crit}: {times[crit]:.4f} s")
        base = times["operator_norm"]
        slowest_passive = max(times[c] for c in passive)
        for n in sizes:
            x, y = x_all[:n], y_all[:n]
            active_times = {}
            for crit in active:
                data = (x, y) if criteria_lib.needs_gradients(crit) else x
                active_times[crit] = timed(
                    lambda c=crit, d=data, m=model: score_filters(
                        m, c, d, batch_size=args.batch_size
                    ),
                    repeats,
                )
                t = active_times[crit]
                rows.append(
                    [
                        label,
                        f"`{crit}`",
                        "active",
                        str(n),
                        fmt(t),
                        f"{t / base:,.0f}×",
                    ]
                )
                common.log(f"{name} {crit} n={n}: {t:.2f} s")
            if active_times:
                fastest = min(active_times, key=active_times.get)
                speedup = active_times[fastest] / base
                worst = active_times[fastest] / slowest_passive
                claim_rows.append(
                    [
                        f"`{name}`",
                        str(n),
                        f"`{fastest}` {fmt(active_times[fastest])}",
                        f"{speedup:,.0f}×",
                        f"{worst:,.0f}×",
                        "holds" if speedup >= CLAIM else "does not hold",
                    ]
                )
        for row in rows:
            if row[0] == label and len(row) == 5 and row[2] == "passive":
                row.append(f"{times[row[1].strip('`')] / base:.2f}×")
        del model

    notes = [
        f"Criteria: {', '.join(criteria)}; active ones on "
        f"{', '.join(map(str, sizes))} examples, batch size {args.batch_size}; "
        f"median of {repeats} call(s) for active, {5 * repeats} for passive "
        "criteria" + (" (--quick: a small stand-in model)" if quick else "") + ".",
        "The last column divides by the time of `operator_norm` on the same model.",
    ]
    text = "\n".join(
        [
            common.report_header(
                "Scoring time: passive vs active criteria", watch, notes=notes
            ),
            f"## Claim: `operator_norm` scores ≥ {CLAIM}× faster than active criteria",
            "",
            common.table(
                [
                    "model",
                    "examples",
                    "fastest active",
                    "÷ operator_norm",
                    "÷ slowest passive",
                    "verdict",
                ],
                claim_rows,
            ),
            "",
            "## All criteria",
            "",
            common.table(
                ["model", "criterion", "kind", "examples", "time", "÷ operator_norm"],
                rows,
            ),
            "",
        ]
    )
    common.write_report(common.resolve_output(args, NAME), text)
    return 0


def fmt(seconds: float) -> str:
    return common.fmt_seconds(seconds)


if __name__ == "__main__":
    sys.exit(main())
