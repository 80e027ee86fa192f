"""The `keras-filterprune` command line: a thin layer over the public API.

Subcommands: `score`, `prune`, `profile`, `export`, `latency`, `sensitivity`,
`demo`.
Run `keras-filterprune COMMAND --help` (or `python -m keras_filterprune …`).

Exit codes: `0` success, `2` bad usage (argparse), `1` failure, reported as one
line on stderr (`--debug` shows the traceback instead). Models are loaded with
`keras.saving.load_model(path, safe_mode=True)`. This module is the only place
that formats tables; the library returns data.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

from keras_filterprune._cli_io import (
    CommandError,
    check_fits,
    check_labels,
    existing_path,
    load_arrays,
    load_model_file,
    load_representative,
)
from keras_filterprune._cli_parser import PROG, build_parser
from keras_filterprune._options import IMPORTANCES, option_names

__all__ = ["build_parser", "main"]

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


def _writable(path: str, what: str) -> None:
    """Checks an output destination before any work (no model is loaded yet)."""
    from keras_filterprune._files import check_writable

    try:
        check_writable(path, what.lstrip("-").split("/")[-1].lstrip("-"))
    except (OSError, TypeError) as e:
        raise CommandError(f"{what}: {e}") from None


_PLOT_SUFFIXES = ("png", "pdf", "svg", "svgz", "jpg", "jpeg", "eps", "ps", "tif",
                  "tiff", "webp", "pgf", "raw", "rgba", "gif", "avif")  # fmt: skip


def _check_plot_suffix(path: str) -> None:
    """Checks `--plot`'s format before any work (matplotlib says it only when
    saving, after the whole analysis)."""
    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    try:
        from matplotlib.backend_bases import FigureCanvasBase

        formats = tuple(FigureCanvasBase.get_supported_filetypes())
    except ImportError:
        formats = _PLOT_SUFFIXES
    if suffix not in formats:
        raise CommandError(
            f"--plot '{path}': the image format comes from the file name; use one "
            f"of {', '.join('.' + f for f in sorted(formats))}"
        )


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

    from keras_filterprune import criteria, score_filters
    from keras_filterprune.graph import graph_of

    criteria.get(args.criterion)  # an unknown name fails before loading
    model = load_model_file(args.model)
    data = None
    if args.data:
        x, y = load_arrays(args.data, need_y=criteria.needs_gradients(args.criterion))
        check_fits(args.data, x, model, "--data")
        if criteria.needs_gradients(args.criterion):
            check_labels(args.data, y, model)
        data = (x, y) if criteria.needs_gradients(args.criterion) else x
    graph = graph_of(model)
    scores = score_filters(model, args.criterion, data)
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
        criteria,
        plan_pruning,
    )
    from keras_filterprune._files import write_text
    from keras_filterprune._training import compile_like
    from keras_filterprune.export import save_keras

    if not args.output.endswith(".keras"):
        raise CommandError(f"-o/--output must end with .keras: '{args.output}'")
    _writable(args.output, "-o/--output")
    if args.plan_out:
        _writable(args.plan_out, "--plan-out")
    criteria.get(args.criterion or "operator_norm")  # unknown names: before loading
    if args.measure_latency and None in (args.target_latency, args.latency_table):
        raise CommandError(
            "--measure-latency times plans made for --target-latency: give both "
            "--target-latency and --latency-table"
        )
    curves = None  # sensitivity curves: read before the (slower) model
    if not args.plan and args.importance not in (None, *IMPORTANCES):
        curves = _load_curves(args.importance)
    calibration = None
    if args.calibration_data:
        calibration = load_arrays(args.calibration_data)[0]
    model = load_model_file(args.model)
    if calibration is not None:
        check_fits(args.calibration_data, calibration, model, "--calibration-data")
    if args.plan:
        existing_path(args.plan, "plan file")
        try:
            plan = PruningPlan.load(args.plan)
        except (OSError, ValueError) as e:
            raise CommandError(str(e)) from e  # names the file
    else:
        kwargs: dict[str, Any] = {
            name: getattr(args, name)
            for name in option_names()
            if getattr(args, name) is not None
        }
        if args.per_layer:
            kwargs["per_layer"] = dict(args.per_layer)
        if curves is not None:
            kwargs["importance"] = curves
        if args.data:
            gradients = criteria.needs_gradients(args.criterion or "operator_norm") or (
                args.importance in IMPORTANCES
            )
            x, y = load_arrays(args.data, need_y=gradients)
            check_fits(args.data, x, model, "--data")
            if gradients:
                check_labels(args.data, y, model)
            kwargs["data"] = (x, y) if gradients else x
        if args.measure_latency:
            from keras_filterprune.latency import calibrate_latency_plan

            target, table = kwargs.pop("target_latency"), kwargs.pop("latency_table")
            plan = calibrate_latency_plan(model, target, table, **kwargs)
        else:
            plan = plan_pruning(model, **kwargs)
    pruned = apply_plan(model, plan, calibration_data=calibration)
    if model.get_compile_config():
        compile_like(pruned, model)
    plan_text = plan.to_json(indent=1, allow_nan=False)  # fails before any write
    report = save_keras(pruned, args.output)
    if args.plan_out:
        try:
            write_text(args.plan_out, plan_text)
        except BaseException:
            os.remove(report.path)  # all or nothing
            raise
    print(plan.summary())
    print()
    print(f"params: {_change(model.count_params(), pruned.count_params())}")
    print(f"MACs:   {_change(count_macs(model), count_macs(pruned))}")
    print(f"saved {report}")
    if args.plan_out:
        print(f"plan saved to {args.plan_out}")
    return 0


def _load_curves(path: str):
    """The `SensitivityResult` of `--importance CURVES.json`."""
    from keras_filterprune.sensitivity import SensitivityResult

    existing_path(path, "--importance curves file")
    try:
        return SensitivityResult.load(path)
    except (OSError, ValueError) as e:
        raise CommandError(f"--importance: {e}") from e


def _cmd_profile(args) -> int:
    from keras_filterprune import profile_model

    model = load_model_file(args.model)
    prof = profile_model(model)
    if args.json:
        print(json.dumps(prof.to_dict(), indent=1))
    else:
        print(f"Model '{model.name}'")
        print(prof.table(human=args.human))
    return 0


@contextlib.contextmanager
def _native_logs_for_export(debug: bool) -> Iterator[None]:
    """With `--debug`, lets the converter and LiteRT print their own logs (the
    library keeps them off the terminal otherwise)."""
    from keras_filterprune._files import NATIVE_LOGS_ENV

    if not debug:
        yield
        return
    previous = os.environ.get(NATIVE_LOGS_ENV)
    os.environ[NATIVE_LOGS_ENV] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(NATIVE_LOGS_ENV, None)
        else:
            os.environ[NATIVE_LOGS_ENV] = previous


def _cmd_export(args) -> int:
    from keras_filterprune import export_tflite
    from keras_filterprune.export import ExportCheckError
    from keras_filterprune.runtime import benchmark_tflite

    if args.quantize == "int8" and not args.representative:
        raise CommandError(
            "--quantize int8 calibrates activations and needs --representative "
            "(a .npy array or a directory of images); or use --quantize dynamic"
        )
    if not args.tflite.endswith(".tflite"):
        raise CommandError(f"--tflite must end with '.tflite': '{args.tflite}'")
    _writable(args.tflite, "--tflite")
    model = load_model_file(args.model)
    data = (
        load_representative(args.representative, model) if args.representative else None
    )
    with _native_logs_for_export(bool(getattr(args, "debug", False))):
        try:
            report = export_tflite(model, args.tflite, args.quantize, data)
        except ExportCheckError as e:
            hint = (
                " Check that --representative covers the inputs' real range."
                if args.quantize == "int8"
                else ""
            )
            raise CommandError(
                f"'{args.tflite}' was not written: the {e.report.kind} file does "
                f"not match the Keras model. {e.report.verification}.{hint}"
            ) from e
        print(
            f"exported {args.model} to {report.path}: {report.kind}, "
            f"{report.size_bytes / 1024:.1f} KiB, {report.seconds:.1f} s"
        )
        print(f"check: {report.verification}")
        if args.benchmark:
            print(benchmark_tflite(report.path))
    return 0


def _cmd_latency(args) -> int:
    from keras_filterprune.latency import measure_latency_table

    if not args.output.endswith(".json"):
        raise CommandError(f"-o/--output must end with '.json': '{args.output}'")
    _writable(args.output, "--output")
    model = load_model_file(args.model)
    table = measure_latency_table(
        model,
        num_threads=args.threads,
        quantization=args.quantize,
        widths=args.widths,
        verbose=1 if sys.stdout.isatty() else 0,
    )
    table.save(args.output)
    print(table.summary())
    print(f"latency table saved to {args.output}")
    return 0


def _cmd_sensitivity(args) -> int:
    from keras_filterprune._files import staged
    from keras_filterprune.sensitivity import sensitivity_analysis

    if args.max_drop is not None and not args.max_drop >= 0:
        raise CommandError(f"--max-drop must be >= 0: {args.max_drop}")
    if args.plot:
        _check_plot_suffix(args.plot)
    if args.json and not args.json.lower().endswith(".json"):
        raise CommandError(
            f"--json must end with .json (what `prune --importance` reads): "
            f"'{args.json}'"
        )
    for path, what in ((args.plot, "--plot"), (args.json, "--json")):
        if path:
            _writable(path, what)
    model = load_model_file(args.model)
    x, y = load_arrays(args.data, need_y=True)
    check_fits(args.data, x, model, "--data")
    check_labels(args.data, y, model)
    options = {
        name: getattr(args, name)
        for name in option_names("sensitivity")
        if getattr(args, name) is not None
    }
    result = sensitivity_analysis(
        model,
        data=(x, y),
        ratios=args.ratios,
        batch_size=args.batch_size,
        **options,
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
    figure = result.plot(max_drop=args.max_drop) if args.plot else None
    if args.json:
        result.save(args.json)
        print(f"curves saved to {args.json}")
    if figure is not None:
        with staged(args.plot) as tmp:
            figure.savefig(tmp, dpi=120)  # the staging name keeps the suffix
        print(f"plot saved to {args.plot}")
    return 0


def _cmd_demo(args) -> int:
    from keras_filterprune.demo import run_demo

    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise CommandError(
            f"--data-dir '{args.data_dir}' is not a directory (it must hold the "
            "Fashion-MNIST idx files; leave it out to use Debian's)"
        )
    if os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
        raise CommandError(
            f"--output-dir '{args.output_dir}' is a file, not a directory"
        )
    parent = os.path.dirname(os.path.abspath(args.output_dir))
    if not os.path.isdir(parent):
        raise CommandError(
            f"--output-dir: the directory '{parent}' of '{args.output_dir}' does not "
            "exist"
        )

    run_demo(quick=args.quick, output_dir=args.output_dir, data_dir=args.data_dir)
    return 0


_COMMANDS = {
    "score": _cmd_score,
    "prune": _cmd_prune,
    "profile": _cmd_profile,
    "export": _cmd_export,
    "latency": _cmd_latency,
    "sensitivity": _cmd_sensitivity,
    "demo": _cmd_demo,
}


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if not isinstance(error, CommandError):
        text = f"{type(error).__name__}: {text}"
    return text if len(text) <= 400 else text[:397] + "..."


# The paths each command reads and writes: (attribute, the argument as --help
# names it). An output that is an input, or another output, would destroy it.
_INPUTS: dict[str, tuple[tuple[str, str], ...]] = {
    "score": (("model", "MODEL.keras"), ("data", "--data")),
    "prune": (
        ("model", "MODEL.keras"),
        ("data", "--data"),
        ("calibration_data", "--calibration-data"),
        ("plan", "--plan"),
        ("latency_table", "--latency-table"),
        ("importance", "--importance"),
    ),
    "profile": (("model", "MODEL.keras"),),
    "export": (("model", "MODEL.keras"), ("representative", "--representative")),
    "latency": (("model", "MODEL.keras"),),
    "sensitivity": (("model", "MODEL.keras"), ("data", "--data")),
    "demo": (("data_dir", "--data-dir"),),
}
_OUTPUTS: dict[str, tuple[tuple[str, str], ...]] = {
    "prune": (("output", "-o/--output"), ("plan_out", "--plan-out")),
    "export": (("tflite", "--tflite"),),
    "latency": (("output", "-o/--output"),),
    "sensitivity": (("plot", "--plot"), ("json", "--json")),
    "demo": (("output_dir", "--output-dir"),),
}


def _path_clash(args) -> str | None:
    """An output path that is the same file as an input or as another output
    (resolved: symlinks, `./d/../x`, hard links), found before any work."""
    from keras_filterprune._files import same_file

    def given(table):
        return [
            (option, os.fspath(getattr(args, attr)))
            for attr, option in table.get(args.command, ())
            if getattr(args, attr, None) not in (None, *IMPORTANCES)  # 'taylor'
        ]

    inputs, outputs = given(_INPUTS), given(_OUTPUTS)
    for i, (option, path) in enumerate(outputs):
        kind = "directory" if os.path.isdir(path) else "file"
        for other, other_path in inputs:
            if same_file(path, other_path):
                return (
                    f"{option} '{path}' is the same {kind} as the input {other} "
                    f"'{other_path}': writing it would destroy the input. Choose a "
                    f"new path for {option}"
                )
        for other, other_path in outputs[i + 1 :]:
            if same_file(path, other_path):
                return (
                    f"{option} '{path}' and {other} '{other_path}' are the same "
                    f"{kind}; one would overwrite the other. Give them different paths"
                )
    return None


def _usage_problem(args) -> str | None:
    """Flags that only work together, and outputs that would overwrite an input
    or each other, checked before anything runs (exit 2)."""
    clash = _path_clash(args)
    if clash:
        return clash
    table = getattr(args, "latency_table", None)
    if args.command == "sensitivity" and getattr(args, "round_to", None) == "auto":
        return (
            "--round-to auto takes block sizes from a latency table, which "
            "sensitivity does not read; pass a number such as 8"
        )
    if (
        args.command == "prune"
        and getattr(args, "importance", None) is not None
        and args.target_latency is None
    ):
        return (
            "--importance decides each group's width under a latency budget: "
            "add --target-latency (and --latency-table)"
        )
    if args.command != "prune" or table is not None:
        return None
    if args.round_to == "auto":
        return (
            "--round-to auto takes each group's block size from a latency table: "
            "add --latency-table TABLE.json (see the `latency` command)"
        )
    if args.target_latency is not None:
        return (
            "--target-latency needs --latency-table TABLE.json (the model's "
            "latency table, see the `latency` command)"
        )
    return None


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
    usage = _usage_problem(args)
    if usage:
        parser.print_usage(sys.stderr)
        print(f"{PROG} {args.command}: error: {usage}", file=sys.stderr)
        return 2
    if args.command == "prune" and args.plan:
        shaping = [
            opt
            for opt, value in (
                *(
                    (f"--{n.replace('_', '-')}", getattr(args, n))
                    for n in option_names()
                ),
                ("--measure-latency", args.measure_latency),
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
    if not debug:  # TensorFlow reads it when first imported, by the command
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
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
