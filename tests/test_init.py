"""Tests of keras_filterprune/__init__.py: the lazy public namespace."""

import keras_filterprune as kfp


def test_every_public_name_resolves():
    for name in kfp.__all__:
        assert getattr(kfp, name) is not None, name
    assert set(kfp.__all__) <= set(dir(kfp))
    assert kfp.recalibrate_batchnorm.__module__ == "keras_filterprune.recovery"
    try:
        kfp.not_a_name  # noqa: B018
    except AttributeError as e:
        assert "not_a_name" in str(e)
    else:
        raise AssertionError("an unknown name must be an AttributeError")
