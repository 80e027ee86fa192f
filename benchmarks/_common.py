"""Helpers shared by the accuracy, scoring and callback benchmarks.

Not part of the package: the benchmark scripts import it as a sibling module
(`python benchmarks/bench_x.py` puts `benchmarks/` first on `sys.path`).

- `configure(threads)`: quiet TensorFlow and cap its thread pools (call before any
  TensorFlow op runs).
- `add_common_args(parser, ...)`: `--quick`, `--seeds`, `--ratios`, `--criteria`,
  `--output`, `--threads`.
- `report_header(...)`: machine, load, versions, git commit, seeds, the exact
  command and the wall time, as Markdown.
- `timing(args, ...)`: LiteRT timing options (short under `--quick`).
- `freeze_heap()`: cheaper TFLite conversions for `--quick` runs (`gc.freeze`).
- `table(...)`, `mean_std(...)`, `Stopwatch`, `write_report(...)`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
REPO = os.path.dirname(HERE)
CACHE = os.path.join(HERE, ".cache")


def configure(threads: int = 2) -> None:
    """Caps TensorFlow's thread pools; must run before the first TF op."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
    except RuntimeError:  # already initialised (e.g. imported by a caller)
        pass


def cache_dir(*parts: str) -> str:
    """A directory under `benchmarks/.cache` (which ignores itself in git)."""
    os.makedirs(CACHE, exist_ok=True)
    ignore = os.path.join(CACHE, ".gitignore")
    if not os.path.exists(ignore):
        with open(ignore, "w", encoding="utf-8") as f:
            f.write("# Generated data of the benchmarks; never committed.\n*\n")
    path = os.path.join(CACHE, *parts)
    os.makedirs(path, exist_ok=True)
    return path


def _floats(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"ratios must be in [0, 1): {text}")
    return value


def add_common_args(
    parser: argparse.ArgumentParser,
    *,
    name: str,
    seeds: Sequence[int] | None = None,
    ratios: Sequence[float] | None = None,
    criteria: Sequence[str] | None = None,
) -> None:
    """Adds the options every benchmark script shares."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny smoke run (used by tests/test_benchmarks.py); results are "
        "written to a temporary file unless --output is given",
    )
    if seeds is not None:
        parser.add_argument(
            "--seeds", type=int, nargs="+", default=None, help=f"default {seeds}"
        )
    if ratios is not None:
        parser.add_argument(
            "--ratios", type=_floats, nargs="+", default=None, help=f"default {ratios}"
        )
    if criteria is not None:
        parser.add_argument(
            "--criteria", nargs="+", default=None, help=f"default {criteria}"
        )
    parser.add_argument(
        "--output",
        default=None,
        help=f"Markdown file to write (default benchmarks/results/{name}.md)",
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="TensorFlow intra-op threads (2)"
    )


QUICK_TIMING = {"min_round_ms": 2.0, "target_ci": None, "max_seconds": 2.0}
"""LiteRT timing options of a `--quick` run: it checks the machinery, not the
numbers, so a few short rounds (the time cap ends adaptive timing early)."""


def timing(args: argparse.Namespace, **full) -> dict:
    """The adaptive-timing keyword arguments of a run: `full` (the real run's,
    e.g. `max_seconds=600`), or `QUICK_TIMING` under `--quick`."""
    return dict(QUICK_TIMING) if args.quick else full


def freeze_heap() -> None:
    """Takes the objects alive now (TensorFlow's modules, data, models) out of
    the garbage collector's reach (`gc.freeze()`), after one collection.

    TensorFlow's TFLite converter runs a full `gc.collect()` per conversion,
    which walks every object TensorFlow and Keras made (~0.2 s a conversion, as
    long as converting a one-layer model); `--quick` runs of the latency
    benchmarks convert dozens of small models. Objects frozen are never freed:
    call it once a phase's long-lived objects exist, not in a loop."""
    import gc

    gc.collect()
    gc.freeze()


def resolve_output(args: argparse.Namespace, name: str) -> str:
    if args.output:
        return args.output
    if args.quick:  # never overwrite the real results with a smoke run
        return os.path.join(tempfile.gettempdir(), f"{name}.quick.md")
    return os.path.join(RESULTS, f"{name}.md")


def check_criteria(names: Iterable[str]) -> list[str]:
    from keras_filterprune import criteria

    names = list(names)
    unknown = [n for n in names if n not in criteria.names()]
    if unknown:
        raise SystemExit(f"unknown criteria {unknown}; choose from {criteria.names()}")
    return names


def command_line() -> str:
    """The command that is running, relative to the repository root."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), REPO)
    return " ".join(["python", shlex.quote(script), *map(shlex.quote, sys.argv[1:])])


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        return out + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _load() -> str:
    try:
        return "/".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


class Stopwatch:
    """Wall time since creation; `.lap()` returns seconds since the last lap."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self._last = self.start
        self.started_at = datetime.datetime.now(datetime.timezone.utc)
        self.load_at_start = _load()

    def lap(self) -> float:
        now = time.perf_counter()
        seconds, self._last = now - self._last, now
        return seconds

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def fmt_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def mean_std(values: Sequence[float], scale: float = 100.0, digits: int = 1) -> str:
    """`"m ± s"` (sample std, n-1) of `values * scale`; just `m` for one value."""
    values = [v * scale for v in values]
    if not values:
        return "–"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def report_header(
    title: str,
    watch: Stopwatch,
    *,
    seeds: Sequence[int] | None = None,
    notes: Sequence[str] = (),
) -> str:
    """Markdown header: what ran where, with which versions, for how long."""
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_filterprune

    threads = tf.config.threading.get_intra_op_parallelism_threads()
    lines = [
        f"# {title}",
        "",
        f"- Command: `{command_line()}`",
        f"- Started: {watch.started_at:%Y-%m-%d %H:%M} UTC; wall time "
        f"{fmt_seconds(watch.elapsed)}",
        f"- Machine: {platform.platform()}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs (TensorFlow intra-op threads: {threads or 'auto'}); "
        f"load average (1/5/15 min) at start {watch.load_at_start}, at end "
        f"{_load()} — the machine was shared, so times are noisy",
        f"- Versions: Python {platform.python_version()}, NumPy {np.__version__}, "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        f"keras-filterprune {keras_filterprune.__version__} (git {_git_commit()})",
    ]
    if seeds is not None:
        lines.append(
            f"- Seeds: {', '.join(map(str, seeds))} "
            "(`keras.utils.set_random_seed(seed)` before every run)"
        )
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def write_report(path: str, text: str) -> None:
    """Prints the report and writes it (atomically) to `path`."""
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text if text.endswith("\n") else text + "\n")
    os.replace(tmp, path)
    print(f"Written to {path}", file=sys.stderr)


def log(message: str) -> None:
    """Progress on stderr, flushed (the full runs are watched through a log)."""
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# The pruning grid shared by the accuracy benchmarks
# ---------------------------------------------------------------------------

CONTROL = "none (same fine-tune)"


class FitConfig:
    """Training budget: baseline epochs, fine-tune epochs, batch, learning rates."""

    def __init__(
        self,
        epochs: int,
        ft_epochs: int,
        batch_size: int = 128,
        lr: float = 1e-3,
        ft_lr: float = 1e-3,
        run_eagerly: bool = False,
        cosine: bool = False,
    ) -> None:
        self.run_eagerly = run_eagerly  # --quick: tiny fits, tracing would dominate
        self.epochs = epochs
        self.ft_epochs = ft_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.ft_lr = ft_lr
        self.cosine = cosine  # each phase decays its learning rate to 0

    def decay_steps(self, examples: int, epochs: int) -> int | None:
        """Optimizer steps of a training phase whose learning rate decays (a
        cosine to 0 over the phase), or None for a constant learning rate."""
        return -(-examples // self.batch_size) * epochs if self.cosine else None

    def describe(self) -> str:
        decay = " decayed to 0 by a cosine" if self.cosine else ""
        return (
            f"baseline: Adam lr {self.lr:g}{decay}, {self.epochs} epochs, batch "
            f"{self.batch_size}; fine-tune after pruning (same for every cell): Adam "
            f"lr {self.ft_lr:g}{decay}, {self.ft_epochs} epoch(s), same batch order "
            "for every cell of a seed"
        )


def add_lr_decay_arg(parser: argparse.ArgumentParser) -> None:
    """`--lr-decay constant|cosine`, for `FitConfig(cosine=...)`."""
    parser.add_argument(
        "--lr-decay",
        choices=("constant", "cosine"),
        default="constant",
        help="learning rate of each training phase: constant, or decayed to 0 "
        "by a cosine over the phase (default constant)",
    )


def adam(lr: float, decay_steps: int | None = None):
    """Adam at `lr`, or following a cosine from `lr` to 0 over `decay_steps`."""
    import keras

    if decay_steps:
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps)
    return keras.optimizers.Adam(lr)


def compile_model(
    model, lr: float, run_eagerly: bool = False, decay_steps: int | None = None
) -> None:
    """`adam(lr, decay_steps)`, cross-entropy on logits (the models end in a
    linear classifier)."""
    import keras

    model.compile(
        optimizer=adam(lr, decay_steps),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        run_eagerly=run_eagerly,
    )


def evaluate(model, x, y, batch_size: int = 256) -> float:
    result = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
    return float(result["accuracy"])


def train_baseline(build, train, test, fit: FitConfig, seed: int):
    """Builds and trains one baseline; returns `(model, test accuracy, seconds)`."""
    import keras

    keras.utils.set_random_seed(seed)
    model = build()
    decay = fit.decay_steps(len(train[1]), fit.epochs)
    compile_model(model, fit.lr, fit.run_eagerly, decay)
    start = time.perf_counter()
    model.fit(*train, epochs=fit.epochs, batch_size=fit.batch_size, verbose=0)
    seconds = time.perf_counter() - start
    return model, evaluate(model, *test), seconds


RECALIBRATION_EXAMPLES = 2048


def finetune(model, train, test, fit: FitConfig, seed: int) -> tuple[float, ...]:
    """Test accuracy of `model` as given, after recalibrating its BatchNorm
    statistics on training images, and after the fine-tune budget of `fit`."""
    import keras

    decay = fit.decay_steps(len(train[1]), fit.ft_epochs)
    compile_model(model, fit.ft_lr, fit.run_eagerly, decay)
    before = evaluate(model, *test)
    from keras_filterprune import recalibrate_batchnorm

    recalibrate_batchnorm(model, train[0][:RECALIBRATION_EXAMPLES], batch_size=128)
    recalibrated = evaluate(model, *test)
    keras.utils.set_random_seed(seed)  # the same batch order for every cell
    model.fit(*train, epochs=fit.ft_epochs, batch_size=fit.batch_size, verbose=0)
    return before, recalibrated, evaluate(model, *test)


def prune_grid(
    base,
    *,
    criteria: Sequence[str],
    ratios: Sequence[float],
    train,
    test,
    active_x,
    fit: FitConfig,
    seed: int,
    label: str = "",
) -> list[dict]:
    """Prunes `base` (never modified) for every criterion × ratio and fine-tunes.

    Every cell starts from the same trained weights. Scores are computed once per
    criterion (active criteria on `active_x`) and reused for every ratio. A
    control cell (criterion `CONTROL`, ratio 0) fine-tunes an unpruned copy with
    the same budget.
    """
    import keras

    from keras_filterprune import apply_plan, count_macs, plan_pruning, score_filters
    from keras_filterprune import criteria as criteria_lib
    from keras_filterprune.profile import count_params

    base_macs, base_params = count_macs(base), count_params(base)
    cells = []
    start = time.perf_counter()
    copy = keras.models.clone_model(base)
    copy.set_weights(base.get_weights())
    before, recal, after = finetune(copy, train, test, fit, seed)
    cells.append(
        dict(
            criterion=CONTROL,
            ratio=0.0,
            acc_pruned=before,
            acc_recal=recal,
            acc_ft=after,
            macs=1.0,
            params=1.0,
            score_s=0.0,
            seconds=time.perf_counter() - start,
        )
    )
    for criterion in criteria:
        start = time.perf_counter()
        active = criteria_lib.is_active(criterion)
        scores = score_filters(base, criterion, active_x if active else None)
        score_s = time.perf_counter() - start
        for ratio in ratios:
            start = time.perf_counter()
            plan = plan_pruning(base, ratio, criterion, scores=scores)
            pruned = apply_plan(base, plan)
            before, recal, after = finetune(pruned, train, test, fit, seed)
            cells.append(
                dict(
                    criterion=criterion,
                    ratio=ratio,
                    acc_pruned=before,
                    acc_recal=recal,
                    acc_ft=after,
                    macs=count_macs(pruned) / base_macs,
                    params=count_params(pruned) / base_params,
                    score_s=score_s,
                    seconds=time.perf_counter() - start,
                )
            )
            log(
                f"{label} seed {seed} {criterion} r={ratio}: pruned "
                f"{before:.4f}, recalibrated {recal:.4f}, fine-tuned {after:.4f} "
                f"(MACs {cells[-1]['macs']:.3f}, {cells[-1]['seconds']:.1f} s)"
            )
    return cells


def _cells(runs: list[list[dict]], criterion: str, ratio: float) -> list[dict]:
    return [
        c
        for cells in runs
        for c in cells
        if c["criterion"] == criterion and abs(c["ratio"] - ratio) < 1e-9
    ]


def grid_report(
    runs: list[list[dict]],
    baselines: list[float],
    criteria: Sequence[str],
    ratios: Sequence[float],
) -> str:
    """Markdown tables of one model's grid (`runs`: one cell list per seed)."""
    out = []
    control = _cells(runs, CONTROL, 0.0)
    out.append(
        f"Baseline test accuracy: **{mean_std(baselines)} %**; the unpruned "
        f"baseline after the same fine-tune (control): "
        f"**{mean_std([c['acc_ft'] for c in control])} %** (recalibrated only: "
        f"{mean_std([c['acc_recal'] for c in control])} %)."
    )
    first = {r: _cells(runs, criteria[0], r) for r in ratios}
    macs = {r: statistics.fmean(c["macs"] for c in first[r]) for r in ratios}
    params = {r: statistics.fmean(c["params"] for c in first[r]) for r in ratios}
    heads = [f"r={r:g} (MACs {100 * macs[r]:.0f} %)" for r in ratios]
    for key, title in (
        ("acc_ft", "Test accuracy (%) after pruning and fine-tuning"),
        (
            "acc_recal",
            "Test accuracy (%) after pruning and BatchNorm recalibration, no training",
        ),
        ("acc_pruned", "Test accuracy (%) right after pruning, nothing else"),
    ):
        rows = [
            [f"`{crit}`"]
            + [mean_std([c[key] for c in _cells(runs, crit, r)]) for r in ratios]
            for crit in criteria
        ]
        out += [
            "",
            f"**{title}** (mean ± std over seeds)",
            "",
            table(["criterion", *heads], rows),
        ]
    rows = [
        [
            f"{r:g}",
            f"{100 * macs[r]:.1f} %",
            f"{100 * params[r]:.1f} %",
            f"{100 * (1 - macs[r]):.1f} %",
        ]
        for r in ratios
    ]
    out += [
        "",
        "**Cost kept** (identical for every criterion: the planner removes the same "
        "number of channels per group)",
        "",
        table(["ratio", "MACs kept", "params kept", "MACs removed"], rows),
    ]
    score_rows = []
    for crit in criteria:
        cells = [c for r in ratios for c in _cells(runs, crit, r)]
        score_rows.append(
            [
                f"`{crit}`",
                fmt_seconds(statistics.median(c["score_s"] for c in cells)),
                fmt_seconds(statistics.median(c["seconds"] for c in cells)),
            ]
        )
    out += [
        "",
        "**Time** (median; scoring once per criterion and seed; a cell = plan + "
        "surgery + evaluation + fine-tune + evaluation)",
        "",
        table(["criterion", "scoring", "cell"], score_rows),
    ]
    return "\n".join(out)


def paired(runs, a: str, b: str, ratio: float, key: str = "acc_ft"):
    """Per-seed differences `a - b` (accuracy points): `(mean, std, n)`."""
    diffs = []
    for cells in runs:
        va = _cells([cells], a, ratio)
        vb = _cells([cells], b, ratio)
        if va and vb:
            diffs.append(100 * (va[0][key] - vb[0][key]))
    if not diffs:
        return float("nan"), float("nan"), 0
    sd = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
    return statistics.fmean(diffs), sd, len(diffs)


def verdict_row(label: str, diffs: Sequence[float]) -> list[str]:
    """`[label, "mean ± std pt (n)", verdict]` of paired differences (points)."""
    mean = statistics.fmean(diffs)
    sd = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
    n = len(diffs)
    return [label, fmt_diff(mean, sd, n), compare_verdict(mean, sd, n)]


# Two-sided 95 % critical values of Student's t, by degrees of freedom.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)

VERDICT_RULE = (
    "a verdict 'better'/'worse' is a paired two-sided t-test at 95 % over seeds "
    "(|mean| > t(n-1) · std / √n; with 2 seeds that needs |mean| > 9 std)"
)


def compare_verdict(mean: float, sd: float, n: int) -> str:
    """`better` / `worse` when a paired t-test over seeds rejects no difference."""
    if n < 2 or sd != sd:
        return "one seed: no verdict"
    t = _T95[n - 2] if n - 2 < len(_T95) else 1.96
    if sd == 0:
        margin = 0.0
    else:
        margin = t * sd / n**0.5
    if mean > margin and mean > 0:
        return "better"
    if mean < -margin and mean < 0:
        return "worse"
    return "no clear difference"


def fmt_diff(mean: float, sd: float, n: int) -> str:
    if n < 2 or sd != sd:
        return f"{mean:+.1f} pt"
    return f"{mean:+.1f} ± {sd:.1f} pt (n={n})"


def criteria_claims(
    runs, criteria: Sequence[str], ratios: Sequence[float]
) -> list[list[str]]:
    """Rows comparing operator_norm with every other criterion: paired
    differences after BatchNorm recalibration and after fine-tuning."""
    from keras_filterprune import criteria as criteria_lib

    if "operator_norm" not in criteria:
        return []
    rows = []
    for other in [c for c in criteria if c != "operator_norm"]:
        kind = "active" if criteria_lib.is_active(other) else "passive"
        for ratio in ratios:
            row = [f"`operator_norm` − `{other}` ({kind})", f"{ratio:g}"]
            for key in ("acc_recal", "acc_ft"):
                m, s, n = paired(runs, "operator_norm", other, ratio, key)
                row.append(f"{fmt_diff(m, s, n)}: {compare_verdict(m, s, n)}")
            rows.append(row)
    return rows


CRITERIA_CLAIM_HEADERS = (
    "comparison",
    "ratio",
    "after BN recalibration (no training)",
    "after fine-tuning",
)
