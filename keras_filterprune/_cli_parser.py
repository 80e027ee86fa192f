"""The argument parser of the `keras-filterprune` command line.

It imports neither Keras nor TensorFlow, so `--help` and usage errors answer at
once; every value is checked here (argparse types) or, for criterion and layer
names, against the registry and the model when the command runs.
"""

from __future__ import annotations

import argparse
import math
import re

PROG = "keras-filterprune"
QUANTIZATIONS = ("float16", "dynamic", "int8")


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


def _max_ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1]: {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text}")
    return value


def _round_to(text: str) -> int | str:
    return "auto" if text == "auto" else _positive_int(text)


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


def _budget(text: str) -> float | str:
    """`_count`, or a percentage in (0%, 100%] (`50%`) passed on as the string
    it is."""
    if text.strip().endswith("%"):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*%\s*", text)
        if match is None:
            raise argparse.ArgumentTypeError(
                f"not a percentage: {text!r} (use e.g. 50%)"
            ) from None
        if not 0 < float(match.group(1)) <= 100:
            raise argparse.ArgumentTypeError(
                f"must be a percentage of the unpruned model in (0%, 100%]: {text}"
            )
        return text.strip()
    return _count(text)


def _latency(text: str) -> float | str:
    """`12.5ms` or `50%` (passed on as the string it is), or a bare number of
    milliseconds; positive and finite."""
    stripped = text.strip().lower()
    number, unit = stripped, None
    for suffix in ("ms", "%"):
        if stripped.endswith(suffix):
            number, unit = stripped[: -len(suffix)].strip(), suffix
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a latency: {text!r} (use e.g. 12.5ms, 12.5 or 50%)"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return value if unit is None else f"{number}{unit}"


def _importance(text: str) -> str:
    """`taylor`, or the path of a JSON file of sensitivity curves (read when
    the command runs)."""
    from keras_filterprune._options import IMPORTANCES

    if text in IMPORTANCES or text.lower().endswith(".json"):
        return text
    raise argparse.ArgumentTypeError(
        f"expected {' or '.join(map(repr, IMPORTANCES))}, or the .json of "
        f"`keras-filterprune sensitivity --json`: {text!r}"
    )


def _layer_ratio(text: str) -> tuple[str, float]:
    name, sep, value = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected LAYER=RATIO, got {text!r}")
    return name, _ratio(value)


def _criterion_help() -> str:
    # The registry is not imported here (it imports TensorFlow): names are
    # checked against it when the command runs.
    return (
        "importance criterion: a name from keras_filterprune.criteria.names() "
        "(default operator_norm); passive ones score kernels, active ones need "
        "--data (x, and y when the criterion needs gradients)"
    )


_TYPES = {
    "ratio": _ratio,
    "max_ratio": _max_ratio,
    "budget": _budget,
    "latency": _latency,
    "importance": _importance,
    "layer_ratio": _layer_ratio,
    "round_to": _round_to,
    "positive_int": _positive_int,
    "criterion": str,
}


def add_planning_flags(p: argparse.ArgumentParser, scope: str = "plan") -> None:
    """The planning options' flags, from their declaration (`PlanOptions`):
    `--target-macs` for `target_macs`, …; every default is `None` (the
    declaration's default applies), and the budgets exclude each other."""
    from keras_filterprune._options import BUDGETS, option_fields

    budgets = p.add_mutually_exclusive_group() if scope == "plan" else None
    for field in option_fields(scope):
        cli = dict(field.metadata["cli"])
        if "type" in cli:
            cli["type"] = _TYPES[cli["type"]]
        if cli.get("action") == "store_true":
            cli["default"] = None
        if field.name == "criterion":
            cli["help"] = _criterion_help()
        target = budgets if field.name in BUDGETS else p
        target.add_argument("--" + field.name.replace("_", "-"), **cli)


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
        "--data",
        metavar="DATA.npz",
        help="inputs for active criteria: an .npz with array `x` (and `y` for "
        "gradient criteria), or an .npy of `x`",
    )

    # prune
    p = command("prune", "Prune filters and save the smaller model.")
    p.add_argument("model", metavar="MODEL.keras")
    p.add_argument("-o", "--output", required=True, metavar="OUT.keras")
    add_planning_flags(p)
    p.add_argument(
        "--measure-latency",
        action="store_true",
        default=None,
        help="with --target-latency: time the planned model in LiteRT and re-plan "
        "with the target corrected by the measured error (calibrate_latency_plan; "
        "up to 3 conversions)",
    )
    p.add_argument(
        "--data",
        metavar="DATA.npz",
        help="inputs for active criteria: an .npz with array `x` (and `y` for "
        "gradient criteria), or an .npy of `x`",
    )
    p.add_argument(
        "--calibration-data",
        metavar="DATA.npz",
        help="inputs (an .npz with array `x`, or an .npy of `x`) to re-estimate "
        "the pruned model's BatchNorm statistics with (a few hundred examples)",
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
        choices=QUANTIZATIONS,
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

    # latency
    p = command(
        "latency",
        "Measure a latency table of a model's layers in LiteRT (for pruning to "
        "a latency target).",
    )
    p.add_argument("model", metavar="MODEL.keras")
    p.add_argument("-o", "--output", required=True, metavar="TABLE.json")
    p.add_argument("--threads", type=_positive_int, default=2, metavar="N")
    p.add_argument("--quantize", choices=QUANTIZATIONS, help="as in `export`")
    p.add_argument(
        "--widths",
        type=_positive_int,
        default=4,
        metavar="N",
        help="widths timed per layer and axis (default 4)",
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
    add_planning_flags(p, "sensitivity")
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
