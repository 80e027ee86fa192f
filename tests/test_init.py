"""Tests of keras_filterprune/__init__.py: the lazy public namespace."""

import keras_filterprune as kfp
from tests._timeouts import HANG_GUARD_S


def test_every_public_name_resolves():
    for name in kfp.__all__:
        assert getattr(kfp, name) is not None, name
    assert set(kfp.__all__) <= set(dir(kfp))
    assert kfp.recalibrate_batchnorm.__module__ == "keras_filterprune.recovery"
    assert kfp.Distiller.__module__ == "keras_filterprune.distillation"
    try:
        kfp.not_a_name  # noqa: B018
    except AttributeError as e:
        assert "not_a_name" in str(e)
    else:
        raise AssertionError("an unknown name must be an AttributeError")


def test_the_top_level_is_small_and_declared_once_in_the_stub():
    import ast
    import os

    import keras_filterprune

    assert len(kfp.__all__) <= 25, kfp.__all__
    stub = os.path.join(os.path.dirname(keras_filterprune.__file__), "__init__.pyi")
    with open(stub, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    declared = {}
    for node in tree.body:
        assert isinstance(node, ast.ImportFrom) and node.level == 1
        for alias in node.names:
            declared[alias.name] = node.module
    assert set(kfp.__all__) == set(declared) - {"__version__"}
    for name, module in declared.items():
        value = getattr(kfp, name)
        if module is None:  # a namespace
            assert value.__name__ == f"keras_filterprune.{name}"
        elif callable(value) and module != "exceptions":
            # Each name is exported from the module that defines it.
            assert value.__module__ == f"keras_filterprune.{module}", name


def test_moved_names_still_resolve_with_a_deprecation_warning():
    import importlib

    import pytest

    for name, home in kfp._MOVED.items():
        module = importlib.import_module(f"keras_filterprune.{home}")
        with pytest.deprecated_call(match=f"keras_filterprune.{home}.{name}"):
            assert getattr(kfp, name) is getattr(module, name)
        assert name not in kfp.__all__
    with pytest.deprecated_call():
        from keras_filterprune import trace_channels  # noqa: F401


def test_namespaces_declare_their_names_once():
    from keras_filterprune import latency, runtime

    assert sorted(runtime.__all__) == [
        "ComparisonReport",
        "LatencyStats",
        "benchmark_keras",
        "benchmark_tflite",
        "compare_models",
        "run_tflite",
    ]
    assert runtime.compare_models.__module__ == "keras_filterprune.runtime.compare"
    assert sorted(latency.__all__) == [
        "LatencyTable",
        "calibrate_latency_plan",
        "measure_latency_table",
    ]
    assert latency.LatencyTable.__module__ == "keras_filterprune.latency.table"


def test_a_namespace_loads_alone():
    """Laziness: a namespace does not load the whole package (the first
    top-level function does)."""
    import subprocess
    import sys

    code = (
        "import sys, keras_filterprune as k; k.schedules.ConstantRatio; "
        "assert 'keras_filterprune.plan' not in sys.modules, 'plan loaded'; "
        "k.apply_plan; assert 'keras_filterprune.plan' in sys.modules"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stderr[-2000:]
