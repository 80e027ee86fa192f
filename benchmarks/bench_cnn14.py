"""PANNs CNN14 with its front-end, pruned at ratio 0.5: params, MACs, TFLite latency.

    python benchmarks/bench_cnn14.py           # 10 s clips, original vs pruned, LiteRT
    python benchmarks/bench_cnn14.py --quick   # 1 s clips, no TFLite (a smoke run)

`models.cnn14(include_frontend=True)` (raw 32 kHz waveform in, `PANNsLogMel` inside,
527 sigmoid outputs, random weights: nothing is downloaded) is pruned with
`plan_pruning(model, 0.5, "operator_norm")` + `apply_plan`, checked against
`mask_model`, and both models go through `compare_models`: `.keras` and TFLite
(float32, front-end included, each export verified in LiteRT), latencies of a 10 s
clip as medians of interleaved runs (batch 1, 2 threads). Written to
`benchmarks/results/bench_cnn14.md`.
"""

from __future__ import annotations

import argparse
import sys
import time

import _common  # a sibling module: benchmarks/ is first on sys.path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per model")
    _common.add_common_args(parser, name="cnn14")
    args = parser.parse_args(argv)
    _common.configure(args.threads)
    watch = _common.Stopwatch()
    import numpy as np

    from keras_filterprune import apply_plan, count_macs, mask_model, plan_pruning
    from keras_filterprune.models import cnn14
    from keras_filterprune.runtime import compare_models

    seconds = 1 if args.quick else 10
    samples = 32000 * seconds
    model = cnn14(include_frontend=True, clip_samples=samples)
    start = time.perf_counter()
    plan = plan_pruning(model, 0.5, "operator_norm")
    pruned = apply_plan(model, plan)
    took = time.perf_counter() - start
    wave = (0.1 * np.random.default_rng(0).standard_normal((1, samples))).astype(
        "float32"
    )
    y, y_mask = np.asarray(pruned(wave)), np.asarray(mask_model(model, plan)(wave))
    err = float(np.abs(y - y_mask).max() / max(1e-3, float(np.abs(y_mask).max())))
    _common.log(f"pruned in {took:.1f}s, oracle error {err:.1e}")
    text = [
        f"## CNN14 + PANNsLogMel, {seconds} s clip, pruned at 0.5 (operator_norm)",
        "",
        f"Plan + apply {took:.1f} s; max |pruned − mask_model| / max |mask_model| = "
        f"{err:.1e}; frozen groups {len(plan.frozen_groups)}/{len(plan.groups)} "
        "(the 527 outputs).",
        "",
    ]
    if args.quick:
        m0, m1 = count_macs(model), count_macs(pruned)
        p0, p1 = model.count_params(), pruned.count_params()
        text += [
            _common.table(
                ["metric", "original", "pruned", "ratio"],
                [
                    ("params", p0, p1, f"{p1 / p0:.3f}"),
                    ("MACs", m0, m1, f"{m1 / m0:.3f}"),
                ],
            ),
            "",
            "(`--quick`: no TFLite export)",
        ]
    else:
        report = compare_models(
            model,
            pruned,
            num_threads=args.threads,
            runs=args.runs,
            warmup=3,
            representative_data=wave,
        )
        text.append(report.to_markdown())
    header = _common.report_header("PANNs CNN14, pruned", watch)
    _common.write_report(
        _common.resolve_output(args, "bench_cnn14"), header + "\n" + "\n".join(text)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
