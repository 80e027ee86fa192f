"""How fast are the importance criteria? Passive (kernels) against active (data).

    python benchmarks/bench_criteria.py              # full run (~1-5 min on 2 cores)
    python benchmarks/bench_criteria.py --quick      # a CI smoke run (~20 s)
    python benchmarks/bench_criteria.py --repeats 7

Passive criteria are timed on the 13 conv kernels of VGG-16
(`keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))`,
random Glorot weights; kernels 3x3, 3 -> 64 ... 512 -> 512). `operator_norm` is
compared with a per-channel Python loop straight from the definition, one full
`np.linalg.svd` per input channel as in the authors' code, and, for an honest
picture, with the same loop using thin SVDs. Active criteria are timed through
`gather_active_scores` on 256 CIFAR-sized inputs (32x32x3) and the same 13 conv
layers. Times are the median of `--repeats` runs (time.perf_counter; the CPU time
of the process, all threads, is shown too, as it is less sensitive to other load on
the machine); the reference loops run `--ref-repeats` times (default 1: the
full-SVD loop alone takes ~30 s on an idle 2-core machine). In `--quick` mode only
the first three conv layers are compared with the references, at most 3 repeats
are run, and 32 inputs are used.

One Markdown table (with the header the other benchmarks carry: command, machine,
load, versions) is printed and written to `benchmarks/results/bench_criteria.md`
(a `--quick` run writes to a temporary file unless `--output` is given).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import _common as common
import numpy as np

NAME = "bench_criteria"
GOAL_OPERATOR_NORM = 200.0  # speed-up over the per-channel full-SVD loop
GOAL_PASSIVE_VS_ACTIVE = 50.0  # passive operator_norm vs an active criterion


def reference_operator_norm(kernel: np.ndarray, full_matrices: bool = True):
    """The definition as a per-channel loop: one SVD per input channel."""
    w = np.asarray(kernel, dtype=np.float64)
    w = w.reshape(-1, w.shape[-2], w.shape[-1])
    total = np.zeros(w.shape[-1])
    for i in range(w.shape[1]):
        a = w[:, i, :].T
        m = a.mean(axis=0)
        u, _, vt = np.linalg.svd(a - m, full_matrices=full_matrices)
        total += (a - m) @ (np.sign(u[0, 0]) * vt[0])
    return total**2


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall-clock and CPU (all threads of this process) seconds of `fn()`."""
    walls, cpus = [], []
    for _ in range(repeats):
        cpu, start = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(parser, name=NAME)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (median)")
    parser.add_argument(
        "--ref-repeats", type=int, default=1, help="timed runs of the reference loops"
    )
    parser.add_argument(
        "--inputs", type=int, default=None, help="examples for active criteria (256)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.ref_repeats < 1:
        parser.error("--repeats and --ref-repeats must be >= 1")
    watch = common.Stopwatch()
    common.configure(args.threads)

    import keras

    from keras_filterprune import criteria

    repeats = min(args.repeats, 3) if args.quick else args.repeats
    n_inputs = args.inputs or (32 if args.quick else 256)

    keras.utils.set_random_seed(0)
    model = keras.applications.VGG16(
        weights=None, include_top=False, input_shape=(32, 32, 3)
    )
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    names = [layer.name for layer in convs]
    kernels = [keras.ops.convert_to_numpy(layer.kernel) for layer in convs]
    ref_kernels = kernels[:3] if args.quick else kernels
    subset = f"first {len(ref_kernels)} conv layers" if args.quick else "13 conv layers"

    def run_all(fn, ks):
        return lambda: [fn(k) for k in ks]

    for k in ref_kernels:  # correctness before speed
        ours, ref = criteria.operator_norm(k), reference_operator_norm(k)
        np.testing.assert_allclose(ours / ref.max(), ref / ref.max(), atol=1e-9)

    t_opnorm_all = median_time(run_all(criteria.operator_norm, kernels), repeats)
    t_opnorm_sub = median_time(run_all(criteria.operator_norm, ref_kernels), repeats)
    common.log(f"operator_norm: {t_opnorm_all[0]:.4f} s; reference loops next")
    t_ref_full = median_time(
        run_all(reference_operator_norm, ref_kernels), args.ref_repeats
    )
    t_ref_thin = median_time(
        run_all(lambda k: reference_operator_norm(k, False), ref_kernels),
        args.ref_repeats,
    )
    t_l1 = median_time(run_all(criteria.l1_norm, kernels), repeats)
    t_gm = median_time(run_all(criteria.geometric_median, kernels), repeats)
    common.log("passive criteria done; active criteria next")

    x = np.random.default_rng(0).random((n_inputs, 32, 32, 3), dtype=np.float32)
    # Warm-up (first eager execution of each op), not timed.
    criteria.gather_active_scores(model, names, x[:32], "mean_activation")
    t_active = {
        name: median_time(
            lambda name=name: criteria.gather_active_scores(model, names, x, name),
            repeats,
        )
        for name in ("mean_activation", "apoz")
    }

    def ratio(slow, fast):
        return f"{slow[0] / fast[0]:.0f}x (CPU {slow[1] / fast[1]:.0f}x)"

    def verdict(slow, fast, goal):
        if args.quick:  # smoke run: sizes too small for the goals to apply
            return f">= {goal:.0f}x: n/a (--quick)"
        return f">= {goal:.0f}x: " + ("met" if slow[0] / fast[0] >= goal else "NOT met")

    def cell(t):
        return f"{common.fmt_seconds(t[0])} (CPU {common.fmt_seconds(t[1])})"

    rows = [
        ("`operator_norm`, ours (13 conv layers)", cell(t_opnorm_all), "", ""),
        (
            f"`operator_norm`, per-channel loop, full SVD ({subset})",
            cell(t_ref_full),
            f"{ratio(t_ref_full, t_opnorm_sub)} ours "
            f"({common.fmt_seconds(t_opnorm_sub[0])})",
            verdict(t_ref_full, t_opnorm_sub, GOAL_OPERATOR_NORM),
        ),
        (
            f"`operator_norm`, per-channel loop, thin SVD ({subset})",
            cell(t_ref_thin),
            f"{ratio(t_ref_thin, t_opnorm_sub)} ours",
            "",
        ),
        ("`l1_norm` (13 conv layers)", cell(t_l1), "", ""),
        ("`geometric_median` (13 conv layers)", cell(t_gm), "", ""),
    ]
    for name, t in t_active.items():
        rows.append(
            (
                f"`{name}`, `gather_active_scores` ({n_inputs} inputs 32x32x3, "
                "13 layers)",
                cell(t),
                f"{ratio(t, t_opnorm_all)} `operator_norm`; {ratio(t, t_l1)} `l1_norm`",
                "`operator_norm` "
                + verdict(t, t_opnorm_all, GOAL_PASSIVE_VS_ACTIVE)
                + "; `l1_norm` "
                + verdict(t, t_l1, GOAL_PASSIVE_VS_ACTIVE),
            )
        )

    text = "\n".join(
        [
            common.report_header(
                "Criteria: passive vs active, VGG-16 (random weights)",
                watch,
                notes=[
                    f"Repeats: {repeats} (median; reference loops: "
                    f"{args.ref_repeats}); CPU = process CPU time, all threads",
                ],
            ),
            common.table(
                ("Measurement", "Median time", "Ratio (wall; CPU)", "Goal (wall)"),
                rows,
            ),
        ]
    )
    common.write_report(common.resolve_output(args, NAME), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
