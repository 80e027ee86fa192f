"""Shared fixtures. TensorFlow logging is quietened before anything imports it."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# No test may fail because the machine is slow: hypothesis' deadline and its
# "too slow" health check are off everywhere (a loaded 2-core machine runs the
# suite several times slower than a quiet one).
settings.register_profile(
    "filterprune", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("filterprune")


@pytest.fixture(autouse=True)
def _handler_registry():
    """Every test leaves the handler registry as it found it."""
    from keras_filterprune import handlers

    saved = dict(handlers._REGISTRY), dict(handlers._BY_NAME)
    yield
    handlers._REGISTRY.clear()
    handlers._REGISTRY.update(saved[0])
    handlers._BY_NAME.clear()
    handlers._BY_NAME.update(saved[1])


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)
