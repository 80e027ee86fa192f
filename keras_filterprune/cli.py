"""The `keras-filterprune` command line: a thin layer over the public API.

Subcommands: `score`, `prune`, `profile`, `export`, `sensitivity`, `demo`.
Run `keras-filterprune COMMAND --help` (or `python -m keras_filterprune …`).

Exit codes: `0` success, `2` bad usage (argparse), `1` failure, reported as one
line on stderr (`--debug` shows the traceback instead). Models are loaded with
`keras.saving.load_model(path, safe_mode=True)`. This module is the only place
that formats tables; the library returns data.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["build_parser", "main"]

PROG = "keras-filterprune"
_QUANTIZATIONS = ("float16", "dynamic", "int8")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


class CommandError(Exception):
    """A failure to report as one line (exit code 1)."""


# ---------------------------------------------------------------------------
# Argument parsing
# ---------------------------------------------------------------------------


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1): {text}")
    return value


def _open_ratio(text: str) -> float:
    value = _ratio(text)
    if value == 0.0:
        raise argparse.ArgumentTypeError("must be in (0, 1): 0")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text}")
    return value


def _count(text: str) -> float:
    """`2500000`, `2.5e6`, `2.5M`, `300k`, `1.2G` → a positive number."""
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(text[-1:].lower(), 1.0)
    digits = text[:-1] if scale != 1.0 else text
    try:
        value = float(digits) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a count: {text!r} (use e.g. 2500000, 2.5e6, 2.5M or 300k)"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return value


def _layer_ratio(text: str) -> tuple[str, float]:
    name, sep, value = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected LAYER=RATIO, got {text!r}")
    return name, _ratio(value)


def _criterion_help() -> str:
    return (
        "importance criterion: operator_norm (default), l1_norm, l2_norm, "
        "geometric_median, random; active (need --data): mean_activation, apoz, "
        "hrank, taylor"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `keras-filterprune` (all subcommands)."""
    from keras_filterprune._version import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Structured (filter) pruning of Keras CNNs: score, plan, prune, "
        "profile and export smaller models.",
        epilog="Exit codes: 0 ok, 1 failure (one line on stderr), 2 usage error.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show tracebacks and TensorFlow's native log output",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
        )
        return p

    # score
    p = command("score", "Print per-layer statistics of the filter scores.")
    p.add_argument("model", metavar="MODEL.keras")
    p.add_argument("--criterion", default="operator_norm", help=_criterion_help())
    p.add_argument(
        "--data", metavar="DATA.npz", help="inputs for active criteria (array `x`)"
    )

    # prune
    p = command("prune", "Prune filters and save the smaller model.")
    p.add_argument("model", metavar="MODEL.keras")
    p.add_argument("-o", "--output", required=True, metavar="OUT.keras")
    p.add_argument(
        "--ratio",
        type=_ratio,
        help="fraction of each group's channels to remove (default 0.5)",
    )
    p.add_argument("--criterion", help=_criterion_help())
    p.add_argument(
        "--per-layer",
        nargs="+",
        action="extend",
        type=_layer_ratio,
        metavar="LAYER=RATIO",
        help="ratio for one layer's group",
    )
    p.add_argument(
        "--exclude",
        nargs="+",
        action="extend",
        metavar="LAYER",
        help="layers never to prune",
    )
    target = p.add_mutually_exclusive_group()
    target.add_argument(
        "--target-macs",
        type=_count,
        metavar="N",
        help="solve for the ratio reaching at most N MACs (e.g. 2.5M)",
    )
    target.add_argument(
        "--target-params", type=_count, metavar="N", help="same with parameters"
    )
    p.add_argument(
        "--round-to",
        type=_positive_int,
        metavar="N",
        help="keep a multiple of N channels per group",
    )
    p.add_argument(
        "--min-filters",
        type=_positive_int,
        metavar="N",
        help="never keep fewer than N channels in a group",
    )
    p.add_argument(
        "--global-ranking",
        action="store_true",
        default=None,
        help="rank channels of all groups together",
    )
    p.add_argument(
        "--data",
        metavar="DATA.npz",
        help="inputs (x, and y for taylor) for active criteria",
    )
    plans = p.add_mutually_exclusive_group()
    plans.add_argument(
        "--plan-out", metavar="PLAN.json", help="also save the pruning plan as JSON"
    )
    plans.add_argument(
        "--plan", metavar="PLAN.json", help="apply a saved plan instead of planning"
    )

    # profile
    p = command("profile", "Print parameters and MACs per layer.")
    p.add_argument("model", metavar="MODEL.keras")
    p.add_argument(
        "--human", action="store_true", help="show 1.2M instead of 1,234,567"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead")

    # export
    p = command("export", "Export a model to TFLite (and check it in LiteRT).")
    p.add_argument("model", metavar="MODEL.keras")
    p.add_argument("--tflite", required=True, metavar="OUT.tflite")
    p.add_argument(
        "--quantize",
        choices=_QUANTIZATIONS,
        help="weights float16, dynamic-range int8, or full int8",
    )
    p.add_argument(
        "--representative",
        metavar="DIR|FILE.npy",
        help="typical inputs: a .npy/.npz array or a directory of "
        "images (scaled to [0, 1]); required by --quantize int8",
    )
    p.add_argument(
        "--benchmark", action="store_true", help="also measure the LiteRT latency"
    )

    # sensitivity
    p = command(
        "sensitivity",
        "Prune each group alone at several ratios and evaluate (Li et al. 2017).",
    )
    p.add_argument("model", metavar="MODEL.keras")
    p.add_argument(
        "--data",
        required=True,
        metavar="DATA.npz",
        help="evaluation arrays `x` and `y`",
    )
    p.add_argument(
        "--ratios",
        nargs="+",
        type=_open_ratio,
        metavar="R",
        help="ratios in (0, 1) (default 0.1 ... 0.9)",
    )
    p.add_argument("--criterion", default="operator_norm", help=_criterion_help())
    p.add_argument(
        "--max-drop",
        type=float,
        metavar="D",
        help="print the per-layer ratios whose score drop stays within D",
    )
    p.add_argument("--plot", metavar="OUT.png", help="save the curves")
    p.add_argument("--json", metavar="OUT.json", help="save the curves as JSON")
    p.add_argument("--batch-size", type=_positive_int, default=128)

    # demo
    p = command("demo", "Train, prune, fine-tune and export a Fashion-MNIST CNN.")
    p.add_argument(
        "--quick", action="store_true", help="a few seconds on tiny data (for tests)"
    )
    p.add_argument("--output-dir", default="demo_output", metavar="DIR")
    p.add_argument(
        "--data-dir", metavar="DIR", help="Fashion-MNIST idx files (default: Debian's)"
    )
    return parser


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    """A fixed-width table; the first `left` columns are left-aligned."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths))
        ).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    return "\n".join([line(cells[0]), rule, *map(line, cells[1:])])


def _existing(path: str, what: str) -> str:
    if not os.path.exists(path):
        raise CommandError(f"{what} '{path}' does not exist")
    return path


def _load_model(path: str):
    import keras

    # Registers the package's custom layers (front-ends, shortcut pads, …).
    import keras_filterprune.audio  # noqa: F401
    import keras_filterprune.models  # noqa: F401

    _existing(path, "model file")
    if os.path.isdir(path) or not path.endswith((".keras", ".h5", ".hdf5")):
        raise CommandError(
            f"'{path}' is not a Keras model file (expected MODEL.keras; convert "
            "SavedModels with keras.layers.TFSMLayer first)"
        )
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as e:
        raise CommandError(
            f"cannot load model '{path}': {type(e).__name__}: {e}"
        ) from e


def _load_arrays(path: str, need_y: bool = False):
    import numpy as np

    _existing(path, "data file")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as e:
        raise CommandError(f"cannot read data '{path}': {e}") from e
    if "x" in arrays:
        x, y = arrays["x"], arrays.get("y")
    elif set(arrays) == {"arr_0", "arr_1"}:
        x, y = arrays["arr_0"], arrays["arr_1"]
    elif set(arrays) == {"arr_0"}:
        x, y = arrays["arr_0"], None
    else:
        raise CommandError(
            f"'{path}' must hold arrays 'x' and 'y' (np.savez(path, x=..., y=...)); "
            f"found {sorted(arrays)}"
        )
    if need_y and y is None:
        raise CommandError(f"'{path}' has no 'y' array (labels)")
    if y is not None and len(x) != len(y):
        raise CommandError(f"'{path}': x has {len(x)} samples but y has {len(y)}")
    return x, y


def _load_representative(path: str, model):
    import numpy as np

    _existing(path, "representative data")
    if os.path.isdir(path):
        import keras

        shape = model.inputs[0].shape
        if len(shape) != 4:
            raise CommandError(
                "a directory of images only suits image models (input (H, W, C)); "
                f"this model's input is {tuple(shape)}. Pass a .npy array instead"
            )
        files = [f for f in os.listdir(path) if f.lower().endswith(_IMAGE_SUFFIXES)]
        if not files:
            raise CommandError(f"no images ({', '.join(_IMAGE_SUFFIXES)}) in '{path}'")
        color = {1: "grayscale", 3: "rgb", 4: "rgba"}.get(shape[-1])
        if color is None:
            raise CommandError(f"images cannot feed an input with {shape[-1]} channels")
        images = [
            keras.utils.img_to_array(
                keras.utils.load_img(
                    os.path.join(path, f),
                    color_mode=color,
                    target_size=(shape[1], shape[2]),
                )
            )
            for f in sorted(files)[:500]
        ]
        return np.stack(images).astype("float32") / 255.0
    if path.endswith(".npz"):
        return _load_arrays(path)[0]
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:
        raise CommandError(f"cannot read representative data '{path}': {e}") from e


def _fmt_count(n: float) -> str:
    return f"{int(n):,}"


def _change(a: float, b: float) -> str:
    return f"{_fmt_count(a)} -> {_fmt_count(b)} ({b / a:.1%})" if a else "-"


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Sends native (C++) writes to fd 2 to a sink; Python's stderr stays visible.

    TensorFlow and the TFLite converter log from C++ straight to file
    descriptor 2, whatever `TF_CPP_MIN_LOG_LEVEL` says. Python-level output
    (warnings, our error line) goes to a duplicate of the real stderr. Does
    nothing when `sys.stderr` is not the process's fd 2 (e.g. under pytest).
    """
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        fd = -1
    if fd != 2:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    python_stderr = os.fdopen(os.dup(saved), "w", buffering=1)
    previous = sys.stderr
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        sys.stderr = python_stderr
        try:
            yield
        finally:
            python_stderr.flush()
            sys.stderr = previous
            os.dup2(saved, 2)
            os.close(saved)
            python_stderr.close()


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------


def _cmd_score(args) -> int:
    import numpy as np

    from keras_filterprune import score_filters, trace_channels

    model = _load_model(args.model)
    data = _load_arrays(args.data)[0] if args.data else None
    graph = trace_channels(model, warn=False)
    scores = score_filters(model, args.criterion, data, graph=graph)
    rows = []
    for group in graph.groups:
        status = f"frozen: {group.frozen}" if group.frozen else "prunable"
        for path in group.producers:
            s = np.asarray(scores[path])
            rows.append(
                (
                    path,
                    group.id,
                    len(s),
                    *(
                        f"{v:.4g}"
                        for v in (s.min(), np.median(s), s.mean(), s.max(), s.std())
                    ),
                    status,
                )
            )
    print(f"Filter scores of '{model.name}' (criterion: {args.criterion})")
    header = ("layer", "group", "filters", "min", "median", "mean", "max", "std")
    print(_table((*header, "status"), rows))
    return 0


def _cmd_prune(args) -> int:
    from keras_filterprune import (
        PruningPlan,
        apply_plan,
        count_macs,
        plan_pruning,
        save_keras,
    )

    if not args.output.endswith(".keras"):
        raise CommandError(f"-o/--output must end with .keras: '{args.output}'")
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        raise CommandError(f"output directory '{out_dir}' does not exist")
    model = _load_model(args.model)
    if args.plan:
        _existing(args.plan, "plan file")
        try:
            plan = PruningPlan.load(args.plan)
        except (OSError, ValueError) as e:
            raise CommandError(f"cannot read plan '{args.plan}': {e}") from e
    else:
        kwargs: dict[str, Any] = {}
        if args.per_layer:
            kwargs["per_layer"] = dict(args.per_layer)
        for name in (
            "exclude",
            "target_macs",
            "target_params",
            "round_to",
            "min_filters",
            "global_ranking",
        ):
            value = getattr(args, name)
            if value is not None:
                kwargs[name] = value
        if args.data:
            x, y = _load_arrays(args.data)
            kwargs["data"] = (x, y) if args.criterion == "taylor" else x
        ratio = 0.5 if args.ratio is None else args.ratio
        plan = plan_pruning(model, ratio, args.criterion or "operator_norm", **kwargs)
    pruned = apply_plan(model, plan)
    if getattr(model, "compiled", False):
        pruned.compile_from_config(model.get_compile_config())
    report = save_keras(pruned, args.output)
    if args.plan_out:
        plan.save(args.plan_out)
    print(plan.summary())
    print()
    print(f"params: {_change(model.count_params(), pruned.count_params())}")
    print(f"MACs:   {_change(count_macs(model), count_macs(pruned))}")
    print(f"saved {report}")
    if args.plan_out:
        print(f"plan saved to {args.plan_out}")
    return 0


def _cmd_profile(args) -> int:
    from keras_filterprune import profile_model

    model = _load_model(args.model)
    prof = profile_model(model)
    if args.json:
        print(json.dumps(prof.to_dict(), indent=1))
    else:
        print(f"Model '{model.name}'")
        print(prof.table(human=args.human))
    return 0


def _cmd_export(args) -> int:
    from keras_filterprune import benchmark_tflite, export_tflite

    if args.quantize == "int8" and not args.representative:
        raise CommandError(
            "--quantize int8 calibrates activations and needs --representative "
            "(a .npy array or a directory of images); or use --quantize dynamic"
        )
    model = _load_model(args.model)
    data = (
        _load_representative(args.representative, model)
        if args.representative
        else None
    )
    report = export_tflite(model, args.tflite, args.quantize, data)
    print(f"exported {report}")
    if args.benchmark:
        print(benchmark_tflite(report.path))
    return 0


def _cmd_sensitivity(args) -> int:
    from keras_filterprune.sensitivity import sensitivity_analysis

    if args.max_drop is not None and not args.max_drop >= 0:
        raise CommandError(f"--max-drop must be >= 0: {args.max_drop}")
    for path, what in ((args.plot, "--plot"), (args.json, "--json")):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise CommandError(f"{what}: the directory of '{path}' does not exist")
    model = _load_model(args.model)
    x, y = _load_arrays(args.data, need_y=True)
    result = sensitivity_analysis(
        model,
        data=(x, y),
        ratios=args.ratios,
        criterion=args.criterion,
        batch_size=args.batch_size,
        verbose=1 if sys.stdout.isatty() else 0,
    )
    print(result.to_markdown())
    if args.max_drop is not None:
        suggested = result.suggest_ratios(args.max_drop)
        print()
        print(f"Ratios keeping each group's drop within {args.max_drop:g}:")
        print(_table(("layer", "ratio"), sorted(suggested.items())))
        cli_args = " ".join(f"{k}={v:g}" for k, v in suggested.items() if v > 0)
        if cli_args:
            print(f"\nprune with: --ratio 0 --per-layer {cli_args}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result.to_dict(), f, indent=1)
        print(f"curves saved to {args.json}")
    if args.plot:
        result.plot(max_drop=args.max_drop).savefig(args.plot, dpi=120)
        print(f"plot saved to {args.plot}")
    return 0


def _cmd_demo(args) -> int:
    from keras_filterprune.demo import run_demo

    run_demo(quick=args.quick, output_dir=args.output_dir, data_dir=args.data_dir)
    return 0


_COMMANDS = {
    "score": _cmd_score,
    "prune": _cmd_prune,
    "profile": _cmd_profile,
    "export": _cmd_export,
    "sensitivity": _cmd_sensitivity,
    "demo": _cmd_demo,
}


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if not isinstance(error, CommandError):
        text = f"{type(error).__name__}: {text}"
    return text if len(text) <= 400 else text[:397] + "..."


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code.

    Args:
        argv: Arguments without the program name. Defaults to `None`
            (`sys.argv[1:]`).

    Returns:
        `0` on success, `1` on failure (one line on stderr), `2` on bad usage.

    Example:

    >>> main(["--version"])
    keras-filterprune ...
    0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors
        return e.code if isinstance(e.code, int) else 2
    debug = bool(getattr(args, "debug", False))
    if args.command == "prune" and args.plan:
        shaping = [
            opt
            for opt, value in (
                ("--ratio", args.ratio),
                ("--criterion", args.criterion),
                ("--per-layer", args.per_layer),
                ("--exclude", args.exclude),
                ("--target-macs", args.target_macs),
                ("--target-params", args.target_params),
                ("--round-to", args.round_to),
                ("--min-filters", args.min_filters),
                ("--global-ranking", args.global_ranking),
                ("--data", args.data),
            )
            if value is not None
        ]
        if shaping:
            parser.print_usage(sys.stderr)
            print(
                f"{PROG} prune: error: --plan replays a saved plan; it cannot be "
                f"combined with {', '.join(shaping)}",
                file=sys.stderr,
            )
            return 2
    quiet = contextlib.nullcontext() if debug else _quiet_native_stderr()
    try:
        with quiet:
            return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            raise
        print(f"{PROG} {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 1
