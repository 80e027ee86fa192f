"""Prunes the keras.applications zoo at ratio 0.5 and tabulates what it gained.

    python benchmarks/bench_zoo.py                 # every model of tests/_models.ZOO
    python benchmarks/bench_zoo.py ResNet50 VGG16  # some of them
    python benchmarks/bench_zoo.py --quick         # MobileNet only (a smoke run)

Each model is built as in `tests/test_zoo.py` (`weights=None`, small input, a
10-class logits head, calibrated BatchNorm statistics), pruned with
`plan_pruning(model, 0.5, "operator_norm")` + `apply_plan`, and checked against
`mask_model` (max |difference| relative to the output scale). The table lists
parameters and MACs (`keras_filterprune.count_macs`) before and after, and the frozen
channel groups with their reasons. It is printed and written to
`benchmarks/results/zoo.md` (`--quick` writes to a temporary file unless `--output`
is given).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import time

import _common  # a sibling module: benchmarks/ is first on sys.path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, _common.REPO)  # the zoo builders live with the tests

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tests._models import ZOO, zoo_report  # noqa: E402


def _count(n: int) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.2f}{suffix}"
    return str(n)


def _frozen(frozen: list) -> str:
    """`3 x model output; 2 x LayerNormalization … (at 'ln1', 'ln2')`."""
    by_reason = collections.defaultdict(list)
    for _, _, reason in frozen:
        match = re.match(r"(.*) \(at layer '(.*)'\)$", reason)
        text, where = (match.group(1), match.group(2)) if match else (reason, "?")
        by_reason[text].append(where)
    parts = []
    for text, where in by_reason.items():
        places = sorted(set(where) - {"<output>"})
        shown = ", ".join(places[:2]) + (", …" if len(places) > 2 else "")
        parts.append(f"{len(where)} x {text}" + (f" (at {shown})" if shown else ""))
    return "; ".join(parts)


def row(name: str) -> tuple[str, dict]:
    if not hasattr(keras.applications, name):
        reason = f"not in keras.applications of Keras {keras.__version__}"
        return f"| {name} | — | — | — | — | — | — | skipped: {reason} |", {}
    start = time.perf_counter()
    r = zoo_report(name)
    total = time.perf_counter() - start
    plan = r["plan"]
    scale = max(1e-3, float(np.max(np.abs(r["y_mask"][0]))))
    err = float(np.max(np.abs(r["y"][0] - r["y_mask"][0]))) / scale
    (p0, p1), macs = r["params"], r["macs"]
    if isinstance(macs, Exception):
        mac_cells = f"error: {type(macs).__name__}: {str(macs)[:60]} | —"
    else:
        mac_cells = f"{_count(macs[0])} → {_count(macs[1])} | {macs[1] / macs[0]:.2f}"
    side = ZOO[name][0]
    line = (
        f"| {name} | {side}² | {_count(p0)} → {_count(p1)} | {p1 / p0:.2f} | "
        f"{mac_cells} | {len(plan.frozen_groups)}/{len(plan.groups)} | "
        f"{_frozen(r['frozen'])} | {err:.1e} | {r['seconds']:.1f} / {total:.1f} |"
    )
    keras.backend.clear_session()
    return line, r


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="*", help="default: every zoo model")
    _common.add_common_args(parser, name="zoo")
    args = parser.parse_args(argv)
    _common.configure(args.threads)
    watch = _common.Stopwatch()
    models = args.models or (["MobileNet"] if args.quick else list(ZOO))
    head = [
        "## keras.applications pruned at ratio 0.5 (operator_norm)",
        "",
        "`weights=None`, 10-class logits head, batch 2. MACs per example from "
        "`count_macs`. *err*: max |pruned − mask_model| / max |mask_model| on the "
        "logits. *s*: plan + apply / whole row (build, calibrate, plan, apply, "
        "mask, 3 forward passes, profile).",
        "",
        "| model | input | params | ratio | MACs | ratio | frozen groups | "
        "frozen because | err | s |",
        "|---|---|---|---:|---|---:|---:|---|---:|---|",
    ]
    lines = []
    for name in models:
        line, _ = row(name)
        _common.log(line)
        lines.append(line)
    header = _common.report_header("keras.applications zoo", watch)
    _common.write_report(
        _common.resolve_output(args, "zoo"), header + "\n" + "\n".join(head + lines)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
