"""The keras.applications zoo: every model prunes at ratio 0.5 and passes the oracle.

Models are built with `weights=None` at small input sizes, a 10-class logits head
(`classifier_activation=None`: the comparison runs before any softmax), random
BatchNormalization gamma/beta and statistics calibrated on the test images (see
`tests/oracle.calibrate`, without which activations vanish or explode and no
tolerance means anything). `benchmarks/bench_zoo.py` writes the same numbers to
`benchmarks/results/zoo.md`.
"""

import keras
import numpy as np
import pytest

from keras_filterprune.pruning_plan import GroupPlan
from tests import oracle
from tests._models import ZOO, width, zoo_report

PARAMS = [
    pytest.param(name, marks=[pytest.mark.slow] if slow else [], id=name)
    for name, (_, slow) in ZOO.items()
]


@pytest.fixture(autouse=True)
def _free_memory():
    yield
    keras.backend.clear_session()


@pytest.mark.parametrize("name", PARAMS)
def test_zoo_prunes_and_matches_oracle(name):
    if not hasattr(keras.applications, name):
        pytest.skip(
            f"keras.applications.{name} does not exist in Keras {keras.__version__}"
        )
    r = zoo_report(name)
    model, plan, pruned = r["model"], r["plan"], r["pruned"]
    oracle.assert_close(r["y"], r["y_mask"], what=f"{name} pruned vs mask_model")
    oracle.assert_close(r["y"], r["y_dead"], what=f"{name} pruned vs dead channels")
    oracle.assert_differs(r["y"], r["y_orig"], what=name)
    assert r["y"][0].shape == (2, 10)
    assert np.abs(r["y_mask"][0]).max() > 1e-3, "calibration failed: outputs vanish"
    oracle.assert_untouched(model, r["snapshot"])

    # Every group is either frozen with a reason or has about half its channels.
    assert plan.groups and all(isinstance(g, GroupPlan) for g in plan.groups)
    for g in plan.groups:
        if g.frozen:
            assert len(g.keep) == g.width
        else:
            assert len(g.keep) == -(-g.width // 2), g
    prunable = [g for g in plan.groups if not g.frozen]
    assert len(prunable) >= len(plan.groups) // 2, plan.summary()
    # The rebuilt layers have the planned widths.
    layers = oracle.layers_by_path(pruned)
    for g in prunable:
        for path in g.producers:
            assert width(layers[path]) == len(plan.kept_filters(path)), path
    # Only the 10-unit head is frozen as a model output: the backbone is pruned.
    outputs_frozen = [g for g in plan.groups if g.frozen and "model output" in g.frozen]
    assert [g.width for g in outputs_frozen] == [10]

    params_before, params_after = r["params"]
    assert params_after < 0.6 * params_before
    macs = r["macs"]
    print(
        f"\n{name}: params {params_before:,} -> {params_after:,}, MACs "
        f"{macs if isinstance(macs, Exception) else f'{macs[0]:,} -> {macs[1]:,}'}, "
        f"frozen {len(plan.frozen_groups)}/{len(plan.groups)} groups, "
        f"plan+apply {r['seconds']:.1f}s"
    )
    if isinstance(macs, Exception):
        raise macs
    assert macs[1] < 0.6 * macs[0]


@pytest.mark.slow
def test_convnext_with_prune_norms_is_at_a_third_of_the_macs():
    """ConvNeXt's residual stream passes LayerNorms: frozen by default (0.53x
    MACs at 0.5), pruned with `prune_norms=True`, approximately."""
    from keras_filterprune import apply_plan, count_macs, plan_pruning
    from tests._models import zoo_inputs, zoo_model

    model = zoo_model("ConvNeXtTiny")
    plan = plan_pruning(model, 0.5, prune_norms=True)
    pruned = apply_plan(model, plan)
    ratio = count_macs(pruned) / count_macs(model)
    print(f"\nConvNeXtTiny prune_norms=True: {ratio:.3f}x MACs")
    assert ratio <= 0.35
    assert len(plan.meta["approximate_groups"]) >= 4
    y = pruned.predict(zoo_inputs("ConvNeXtTiny")[:2], verbose=0)
    assert y.shape == (2, 10) and np.isfinite(y).all()
