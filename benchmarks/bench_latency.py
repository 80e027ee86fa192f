"""Does pruning pay off in latency? MAC ratio vs TFLite latency ratio, side by side.

    python benchmarks/bench_latency.py            # VGG-16-CIFAR, ResNet-56 at 0.5
    python benchmarks/bench_latency.py --quick    # a smoke run (~1 min)
    python benchmarks/bench_latency.py --plain    # plain conv stacks of half width

For each (original, pruned) pair `measure()` exports both models to TFLite (float32,
verified against Keras) and times them in LiteRT (XNNPACK) with interleaved A/B runs
(`keras_filterprune.runtime.compare_models`), so that machine noise hits both alike.

Part 2 measures whether channel counts that are not multiples of 4 / 8 cost extra
latency in XNNPACK: one 3x3 conv with c output (or input) channels, c = 32 ... 65,
timed in interleaved rounds, latency relative to c = 64 next to the MAC ratio c/64
(fp32 and int8).

Results are printed as Markdown and written to `benchmarks/results/latency.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_filterprune import export_tflite
from keras_filterprune.runtime import benchmark_tflite, compare_models

CHANNELS = [32, 33, 40, 48, 56, 60, 61, 62, 63, 64, 65]
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def plain_cnn(width: int, depth: int = 4, name: str | None = None) -> keras.Model:
    """A VGG-like CIFAR conv stack: `depth` 3x3 convs of `width` filters."""
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(inp)
    for i in range(depth - 1):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
        if i % 2 == 1:
            x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(10)(x), name=name)


def model_pairs(quick: bool, zoo: bool = True) -> list[tuple]:
    """The (name, original, pruned) pairs measured.

    `zoo=True` measures the CIFAR zoo pruned at ratio 0.5 (operator norm, every
    group) instead of plain conv stacks of half the width.
    """
    if zoo:
        from keras_filterprune import prune_keras_model
        from keras_filterprune.models import resnet_cifar, vgg16_cifar

        pairs = []
        for make in (vgg16_cifar, lambda: resnet_cifar(56))[: 1 if quick else 2]:
            model = make()
            pairs.append((f"{model.name} 0.5", model, prune_keras_model(model, 0.5)))
        return pairs
    pairs = [
        ("plain CNN 64 -> 32", plain_cnn(64, name="w64"), plain_cnn(32, name="w32"))
    ]
    if not quick:
        pairs.append(
            (
                "plain CNN 128 -> 64",
                plain_cnn(128, name="w128"),
                plain_cnn(64, name="w64"),
            )
        )
    return pairs


def measure(
    original: keras.Model,
    pruned: keras.Model,
    name: str,
    *,
    runs: int = 100,
    num_threads: int = 2,
) -> dict:
    """One row: params / MAC / size ratios and TFLite latencies (interleaved A/B)."""
    report = compare_models(
        original, pruned, runs=runs, num_threads=num_threads, warmup=10
    )
    rows = {r["metric"]: r for r in report.rows}
    return {
        "name": name,
        "params_ratio": rows["params"]["ratio"],
        "mac_ratio": rows["macs"]["ratio"],
        "tflite_size_ratio": rows["tflite_size"]["ratio"],
        "tflite_ms_original": rows["tflite_latency"]["original"],
        "tflite_ms_pruned": rows["tflite_latency"]["pruned"],
        "tflite_latency_ratio": rows["tflite_latency"]["ratio"],
        # A second view when the machine is loaded (long calls are preempted
        # more often, which inflates their medians); read it with care.
        "tflite_min_ratio": report.latency["pruned.tflite"].min_ms
        / report.latency["original.tflite"].min_ms,
        "keras_latency_ratio": rows["keras_latency"]["ratio"],
        "tflite_max_abs_diff": max(
            rows["tflite_max_abs_diff"]["original"],
            rows["tflite_max_abs_diff"]["pruned"],
        ),
    }


def single_conv(c_in: int, c_out: int) -> keras.Model:
    """One 3x3 SAME conv on a 32x32 feature map."""
    inp = keras.Input((32, 32, c_in))
    return keras.Model(inp, keras.layers.Conv2D(c_out, 3, padding="same")(inp))


def channel_alignment(
    channels: list[int],
    *,
    reference: int = 64,
    quantizations: tuple = (None, "int8"),
    rounds: int = 10,
    runs: int = 20,
    num_threads: int = 2,
) -> list[dict]:
    """TFLite latency of one conv as its output or input channel count varies.

    For each `c` in `channels`, `reference -> c` (side "cout") and `c -> reference`
    (side "cin") convs are timed; latencies are given relative to
    `reference -> reference` next to the MAC ratio `c / reference`. All models of
    one quantization are timed in rounds of `runs` calls whose order rotates from
    round to round, so machine noise spreads evenly. Returns one row per
    (quantization, side, channels) with the median and the min over all rounds.
    """
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for q in quantizations:
            label = q or "fp32"
            paths = {}
            for side in ("cout", "cin"):
                for c in channels:
                    c_in, c_out = (reference, c) if side == "cout" else (c, reference)
                    data = rng.normal(size=(16, 32, 32, c_in)).astype("float32")
                    paths[side, c] = export_tflite(
                        single_conv(c_in, c_out),
                        os.path.join(d, f"{label}_{side}{c}.tflite"),
                        q,
                        data if q == "int8" else None,
                    ).path
            keys = list(paths)
            times: dict = {k: [] for k in keys}
            for r in range(rounds):
                for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
                    stats = benchmark_tflite(
                        paths[k], runs=runs, warmup=2, num_threads=num_threads
                    )
                    times[k].extend(stats.times_ms)
            for side, c in keys:
                t, ref = times[side, c], times.get((side, reference))
                rows.append(
                    {
                        "quantization": label,
                        "side": side,
                        "channels": c,
                        "mac_ratio": c / reference,
                        "median_ms": float(np.median(t)),
                        "min_ms": float(np.min(t)),
                        "median_vs_ref": float(np.median(t) / np.median(ref))
                        if ref
                        else None,
                        "min_vs_ref": float(np.min(t) / np.min(ref)) if ref else None,
                    }
                )
    return rows


def _alignment_table(rows: list[dict]) -> str:
    """One line per channel count; per (quantization, side): median vs c = 64.

    Medians only: on a loaded 2-CPU machine the min of a model can come from a
    window with both CPUs free and that of another from one without, so min
    ratios mislead (they are kept in the JSON).
    """
    groups = sorted({(r["quantization"], r["side"]) for r in rows}, reverse=True)
    by_key = {(r["quantization"], r["side"], r["channels"]): r for r in rows}
    table = []
    for c in sorted({r["channels"] for r in rows}):
        line = {"channels": c, "mac_ratio": c / 64}
        for q, side in groups:
            r = by_key[q, side, c]
            line[f"{q} {side}"] = r["median_vs_ref"]
        table.append(line)
    return _markdown(table, list(table[0]))


def _markdown(rows: list[dict], columns: list[str]) -> str:
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few runs, one pair")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=None, help="timed runs per model")
    parser.add_argument(
        "--plain",
        action="store_true",
        help="plain conv stacks of half the width instead of the CIFAR zoo",
    )
    parser.add_argument("--no-alignment", action="store_true")
    parser.add_argument("--out", default=os.path.join(RESULTS, "latency.json"))
    args = parser.parse_args(argv)
    runs = args.runs or (50 if args.quick else 100)
    keras.utils.set_random_seed(0)

    load = os.getloadavg()[0]
    if load > 0.5:
        print(
            f"Note: load average {load:.1f} on {os.cpu_count()} CPUs; medians of "
            "long calls suffer most, compare the min ratios too.\n"
        )
    pruning = [
        measure(original, pruned, name, runs=runs, num_threads=args.threads)
        for name, original, pruned in model_pairs(
            args.quick, zoo=not (args.plain or args.quick)
        )
    ]
    print(
        f"## Pruning: MAC ratio vs latency ratio ({args.threads} threads, batch 1, "
        f"median of {runs} interleaved runs)\n"
    )
    print(_markdown(pruning, list(pruning[0])))

    alignment = []
    if not args.no_alignment:
        channels = [32, 33, 60, 61, 64, 65] if args.quick else CHANNELS
        alignment = channel_alignment(
            channels,
            quantizations=(None,) if args.quick else (None, "int8"),
            rounds=4 if args.quick else 10,
            runs=10 if args.quick else 20,
            num_threads=args.threads,
        )
        print(
            "\n## XNNPACK channel alignment: one 3x3 conv on a 32x32 map, "
            "64 -> c (cout) or c -> 64 (cin); latency / latency(c=64)\n"
        )
        print(_alignment_table(alignment))

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(
            {
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "load_average": os.getloadavg(),
                },
                "threads": args.threads,
                "runs": runs,
                "pruning": pruning,
                "alignment": alignment,
            },
            f,
            indent=2,
        )
    print(f"\nWrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
