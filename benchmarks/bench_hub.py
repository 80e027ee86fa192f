"""Prunes keras-hub CNN backbones and tasks at ratio 0.5 and tabulates the gain.

    python benchmarks/bench_hub.py            # tests/_hub_models + the four tasks
    python benchmarks/bench_hub.py --full     # + the presets' architectures at 224²
    python benchmarks/bench_hub.py --quick    # VGG and MobileNetV3 (a smoke run)

Backbones are built from constructor arguments (`tests/_hub_models.py`: small
widths, the structures of the presets; `--full`: the published ResNet50, VGG16
and DenseNet121 configurations), with random weights; nothing is downloaded. Each
is pruned with `plan_pruning(model, 0.5)` + `apply_plan` and checked against
`mask_model` (*err*: max |difference| / max |mask_model|). Blocks written as
composite layers (MobileNetV3, EfficientNetV2, HGNetV2, …) are traced inside.
Tasks (`tests/_hub_presets.HUB_TASKS`: classifiers, a detector, segmenters) are
pruned as a whole. *per-call check*: the convolution and dense MACs `count_macs`
reports (from the traced graph) over a count made while the model runs (every
call of those layer classes recorded with its real shapes and costed by a formula
of the benchmark's own): 1.000 means every convolution is counted once, with
its true shapes, inside composite layers too.
`--full` adds the published presets' architectures (`tests/_hub_presets.py`) at
224² (MobileNetV5 at 256²). A last table compares ConvNeXtTiny (keras.applications)
with and without `prune_norms=True`. Written to `benchmarks/results/bench_hub.md`.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import _common  # a sibling module: benchmarks/ is first on sys.path
from bench_zoo import _count, _frozen

sys.path.insert(0, _common.REPO)  # the backbone configurations live with the tests

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_filterprune import (  # noqa: E402
    FilterPruneWarning,
    apply_plan,
    count_macs,
    mask_model,
    plan_pruning,
)
from keras_filterprune.profile import call_macs  # noqa: E402
from keras_filterprune.walk import walk_model  # noqa: E402
from tests import oracle  # noqa: E402
from tests._hub_models import HUB_BACKBONES, hub_backbone, hub_inputs  # noqa: E402
from tests._hub_presets import (  # noqa: E402
    HUB_PRESETS,
    HUB_TASKS,
    build_preset,
    build_task,
)

_OUR_MAC_LAYERS = (
    "Conv1D Conv2D Conv3D DepthwiseConv1D DepthwiseConv2D SeparableConv1D "
    "SeparableConv2D Conv1DTranspose Conv2DTranspose Dense"
).split()

FULL = {
    "ResNet50 (224²)": (
        "ResNetBackbone",
        dict(
            input_conv_filters=[64],
            input_conv_kernel_sizes=[7],
            stackwise_num_filters=[64, 128, 256, 512],
            stackwise_num_blocks=[3, 4, 6, 3],
            stackwise_num_strides=[1, 2, 2, 2],
            block_type="bottleneck_block",
            image_shape=(224, 224, 3),
        ),
    ),
    "VGG16 (224²)": (
        "VGGBackbone",
        dict(
            stackwise_num_repeats=[2, 2, 3, 3, 3],
            stackwise_num_filters=[64, 128, 256, 512, 512],
            image_shape=(224, 224, 3),
        ),
    ),
    "DenseNet121 (224²)": (
        "DenseNetBackbone",
        dict(stackwise_num_repeats=[6, 12, 24, 16], image_shape=(224, 224, 3)),
    ),
}


def _err(model, plan, pruned, x) -> float:
    y = oracle.outputs(pruned, x)
    ref = oracle.outputs(mask_model(model, plan), x)
    return max(
        float(np.abs(a - b).max()) / max(1e-3, float(np.abs(b).max()))
        for a, b in zip(y, ref)
    )


def _runtime_check(model: keras.Model, x: np.ndarray) -> str:
    """`count_macs`' convolution and dense MACs over a count made while the model
    runs: every `call` of those layer classes, inside composite layers too, is
    recorded with its real input and output shapes and costed here by a formula of
    its own (no walk, no handler)."""
    L = keras.layers
    seen = []

    def recording(cls):
        original = cls.call

        def call(self, inputs, *args, **kwargs):
            outputs = original(self, inputs, *args, **kwargs)
            seen.append((self, tuple(inputs.shape), tuple(outputs.shape)))
            return outputs

        return original, call

    classes = [getattr(L, name) for name in _OUR_MAC_LAYERS if hasattr(L, name)]
    patched = {cls: recording(cls) for cls in classes}
    try:
        for cls, (_, call) in patched.items():
            cls.call = call
        model(x[:1], training=False)
    finally:
        for cls, (original, _) in patched.items():
            cls.call = original
    theirs = sum(_formula(layer, i, o) for layer, i, o in seen)
    walk = walk_model(model)
    ours = sum(
        call_macs(walk, call) or 0
        for call in walk.calls
        if type(call.layer).__name__ in _OUR_MAC_LAYERS
    )
    return f"{ours / theirs:.3f}" if theirs else "—"


def _formula(layer, in_shape: tuple, out_shape: tuple) -> int:
    """MACs of one call from its shapes (channels last, batch 1)."""
    out_positions = int(np.prod(out_shape[1:-1]))
    kernel = int(np.prod(getattr(layer, "kernel_size", (1,))))
    c_in = in_shape[-1]
    name = type(layer).__name__
    if name == "Dense":
        return int(np.prod(in_shape[1:-1])) * c_in * layer.units
    if name.startswith("Depthwise"):
        return out_positions * kernel * c_in * layer.depth_multiplier
    if name.startswith("Separable"):
        mid = c_in * layer.depth_multiplier
        return out_positions * (kernel * mid + mid * layer.filters)
    if name.endswith("Transpose"):
        return int(np.prod(in_shape[1:-1])) * kernel * c_in * layer.filters
    return out_positions * kernel * (c_in // layer.groups) * layer.filters


def _row(name: str, model: keras.Model, x: np.ndarray, **plan_kwargs) -> str:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FilterPruneWarning)
        plan = plan_pruning(model, 0.5, **plan_kwargs)
    pruned = apply_plan(model, plan)
    seconds = time.perf_counter() - start
    p0, p1 = model.count_params(), pruned.count_params()
    m0, m1 = count_macs(model), count_macs(pruned)
    macs = (
        f"{_count(m0)} → {_count(m1)} | {m1 / m0:.2f}"
        if m0
        else "0 (all in custom layers) | —"
    )
    frozen = [(g.id, next(iter(g.producers)), g.frozen) for g in plan.frozen_groups]
    unhandled = plan.meta.get("unhandled_layers", [])
    classes = sorted({u.rsplit("(", 1)[1].rstrip(")") for u in unhandled})
    reasons = _frozen(frozen) or "—"
    if classes:
        reasons += f"; no handler: {', '.join(classes)}"
    err = _err(model, plan, pruned, x[:2])
    tf_check = _runtime_check(model, x)
    kind = (
        "Functional" if type(pruned).__name__ == "Functional" else type(pruned).__name__
    )
    line = (
        f"| {name} | {_count(p0)} → {_count(p1)} | {p1 / p0:.2f} | {macs} | "
        f"{len(plan.frozen_groups)}/{len(plan.groups)} | {reasons} | {kind} | "
        f"{err:.1e} | {tf_check} | {seconds:.1f} |"
    )
    _common.log(line)
    keras.backend.clear_session()
    return line


def _build(cls: str, kwargs: dict) -> keras.Model:
    import keras_hub

    model = getattr(keras_hub.models, cls)(**kwargs)
    return oracle.randomize(model, 0)


def _classifier(name: str) -> tuple[keras.Model, np.ndarray]:
    import keras_hub

    task = keras_hub.models.ImageClassifier(backbone=hub_backbone(name), num_classes=10)
    return oracle.randomize(task, 1), hub_inputs(task)


def _convnext_rows() -> list[str]:
    from tests._models import zoo_inputs, zoo_model

    model = zoo_model("ConvNeXtTiny")
    x = zoo_inputs("ConvNeXtTiny")[:2]
    lines = []
    for prune_norms in (False, True):
        plan = plan_pruning(model, 0.5, prune_norms=prune_norms)
        pruned = apply_plan(model, plan)
        ratio = count_macs(pruned) / count_macs(model)
        gap = _err(model, plan, pruned, x)
        line = (
            f"| {prune_norms} | {ratio:.2f} | {len(plan.frozen_groups)}/"
            f"{len(plan.groups)} | {len(plan.meta.get('approximate_groups', []))} | "
            f"{gap:.1e} |"
        )
        _common.log(line)
        lines.append(line)
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="add 224² backbones")
    _common.add_common_args(parser, name="hub")
    args = parser.parse_args(argv)
    _common.configure(args.threads)
    watch = _common.Stopwatch()
    import keras_hub

    head = [
        f"## keras-hub {keras_hub.__version__} backbones pruned at ratio 0.5 "
        "(operator_norm)",
        "",
        "Built from constructor arguments, random weights, batch 2. *kind*: what "
        "`apply_plan` returns. *err*: max |pruned − mask_model| / max |mask_model| "
        "over all outputs. *s*: plan + apply.",
        "",
        "| model | params | ratio | MACs | ratio | frozen groups | frozen "
        "because | kind | err | per-call check | s |",
        "|---|---|---:|---|---:|---:|---|---|---:|---:|---:|",
    ]
    lines = []
    names = ["VGG", "MobileNetV3"] if args.quick else list(HUB_BACKBONES)
    for name in names:
        model = hub_backbone(name)
        lines.append(_row(name, model, hub_inputs(model)))
    if args.full and not args.quick:
        for name, (cls, kwargs) in FULL.items():
            model = _build(cls, kwargs)
            lines.append(_row(name, model, hub_inputs(model, batch=1)))
        for name in HUB_PRESETS:
            size = 256 if name.startswith("MobileNetV5") else 224
            model = oracle.randomize(build_preset(name, image_size=size), 0)
            lines.append(_row(f"{name} ({size}²)", model, hub_inputs(model, batch=1)))
    for name in ["VGG"] if args.quick else ["ResNet", "EfficientNet"]:
        task, x = _classifier(name)
        lines.append(_row(f"ImageClassifier({name})", task, x))
    for name in [] if args.quick else list(HUB_TASKS):
        task = oracle.randomize(build_task(name), 0)
        lines.append(_row(name, task, hub_inputs(task)))
    text = head + lines
    if not args.quick:
        text += [
            "",
            "## ConvNeXtTiny (keras.applications, 32²) at 0.5: `prune_norms`",
            "",
            "*gap*: max |pruned − mask_model| / max |mask_model|: 0 when exact; "
            "with `prune_norms=True` the LayerNorm statistics change (fine-tune).",
            "",
            "| prune_norms | MACs ratio | frozen groups | approximate groups | gap |",
            "|---|---:|---:|---:|---:|",
            *_convnext_rows(),
        ]
    header = _common.report_header("keras-hub backbones", watch)
    _common.write_report(
        _common.resolve_output(args, "bench_hub"), header + "\n" + "\n".join(text)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
