"""How long does pruning a ResNet-50 take, next to a plain `keras.models.clone_model`?

    python benchmarks/bench_surgery.py            # 224 x 224, median of 5 runs
    python benchmarks/bench_surgery.py --quick    # 1 run at 64 x 64 (a smoke run)

End to end = `prune_keras_model(model, 0.5)` (default criterion `operator_norm`):
trace the channel groups, score every filter, plan, rebuild the model from its edited
config and copy the sliced weights. The goal (DESIGN.md §4) is at most 2.5x the time
of a plain clone of the same model, measured in the same process, interleaved
(clone, prune, clone, prune, ...) so that machine noise hits both alike.

Per-stage times come from timing wrappers around the library's own stage functions
during the same runs: `trace` (every `trace_channels` call), `score`
(`score_filters`), `plan` (the rest of `plan_pruning`), `rebuild`
(`surgery._rebuild`: config edit + `Model.from_config`) and `weights` (the rest of
`apply_plan`: slicing and `set_weights`). Peak RSS is `ru_maxrss` of the process.

The Markdown report is printed and written to `benchmarks/results/bench_surgery.md`
(`--quick` writes to a temporary file unless `--output` is given).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import resource
import statistics
import sys
import time

import _common  # a sibling module: benchmarks/ is first on sys.path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from keras_filterprune import graph as graph_mod  # noqa: E402
from keras_filterprune import plan as plan_mod  # noqa: E402
from keras_filterprune import prune_keras_model  # noqa: E402
from keras_filterprune import surgery as surgery_mod  # noqa: E402

STAGES = ("trace", "score", "plan", "rebuild", "weights")


class StageTimer:
    """Accumulates wall time spent in wrapped functions, per stage name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self._patches: list[tuple[object, str, object]] = []

    def wrap(self, module, attr: str, stage: str) -> None:
        original = getattr(module, attr)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start

        setattr(module, attr, timed)
        self._patches.append((module, attr, original))

    def restore(self) -> None:
        for module, attr, original in reversed(self._patches):
            setattr(module, attr, original)
        self._patches.clear()


@contextlib.contextmanager
def stage_timers():
    """Times trace/score/plan/rebuild/weights inside `prune_keras_model`."""
    timer = StageTimer()
    # Outer stages first: the inner ones are subtracted from them below.
    timer.wrap(surgery_mod, "plan_pruning", "_plan_total")
    timer.wrap(surgery_mod, "apply_plan", "_apply_total")
    timer.wrap(graph_mod, "trace_channels", "trace")  # once: the plan carries it
    timer.wrap(plan_mod, "score_filters", "score")
    timer.wrap(surgery_mod, "rebuild", "rebuild")
    try:
        yield timer.seconds
    finally:
        timer.restore()


def split_stages(raw: dict[str, float]) -> dict[str, float]:
    return {
        "trace": raw["trace"],
        "score": raw["score"],
        "plan": raw["_plan_total"] - raw["trace"] - raw["score"],
        "rebuild": raw["rebuild"],
        "weights": raw["_apply_total"] - raw["rebuild"],
    }


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def run(size: int, repeats: int, ratio: float) -> dict:
    model = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3))
    rss_model = peak_rss_mib()
    # Warm up both paths once (imports, first-call caches), outside the timings.
    keras.models.clone_model(model)
    prune_keras_model(model, ratio)
    clone_times, prune_times, stages = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        keras.models.clone_model(model)
        clone_times.append(time.perf_counter() - start)
        with stage_timers() as raw:
            start = time.perf_counter()
            pruned = prune_keras_model(model, ratio)
            prune_times.append(time.perf_counter() - start)
        stages.append(split_stages(raw))
    return {
        "size": size,
        "repeats": repeats,
        "ratio": ratio,
        "layers": len(model.layers),
        "params": (model.count_params(), pruned.count_params()),
        "clone": statistics.median(clone_times),
        "prune": statistics.median(prune_times),
        "clone_all": clone_times,
        "prune_all": prune_times,
        "stages": {s: statistics.median(st[s] for st in stages) for s in STAGES},
        "rss_after_model": rss_model,
        "rss_peak": peak_rss_mib(),
    }


def markdown(r: dict) -> str:
    ratio = r["prune"] / r["clone"]
    verdict = "within" if ratio <= 2.5 else "OVER"
    lines = [
        f"## ResNet-50 ({r['size']}x{r['size']}, weights=None) pruned at ratio "
        f"{r['ratio']}",
        "",
        f"Median of {r['repeats']} interleaved run(s). Params {r['params'][0]:,} -> "
        f"{r['params'][1]:,} ({r['layers']} layers).",
        "",
        "| what | seconds |",
        "|---|---:|",
        f"| `keras.models.clone_model` | {r['clone']:.3f} |",
        f"| `prune_keras_model` end to end | {r['prune']:.3f} |",
        f"| **ratio prune / clone** (goal <= 2.5) | **{ratio:.2f}** ({verdict}) |",
        "",
        "| stage | seconds | share |",
        "|---|---:|---:|",
    ]
    total = sum(r["stages"].values()) or 1.0
    for stage in STAGES:
        sec = r["stages"][stage]
        lines.append(f"| {stage} | {sec:.3f} | {100 * sec / total:.0f}% |")
    lines += [
        "",
        f"Peak RSS: {r['rss_peak']:.0f} MiB (after building the model: "
        f"{r['rss_after_model']:.0f} MiB).",
        "",
        "All runs (s): clone "
        + ", ".join(f"{t:.2f}" for t in r["clone_all"])
        + "; prune "
        + ", ".join(f"{t:.2f}" for t in r["prune_all"])
        + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _common.add_common_args(parser, name="bench_surgery")
    parser.add_argument("--repeats", type=int, default=None, help="default 5 (1)")
    parser.add_argument("--size", type=int, default=None, help="default 224 (64)")
    parser.add_argument("--ratio", type=float, default=0.5)
    args = parser.parse_args(argv)
    _common.configure(args.threads)
    watch = _common.Stopwatch()
    size = args.size or (64 if args.quick else 224)
    repeats = args.repeats or (1 if args.quick else 5)
    body = markdown(run(size, repeats, args.ratio))
    header = _common.report_header("Surgery speed: prune vs clone", watch)
    _common.write_report(
        _common.resolve_output(args, "bench_surgery"), header + "\n" + body
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
