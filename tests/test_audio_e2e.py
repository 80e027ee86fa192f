"""The whole audio path: espeak-ng speech → tf.data → log-mel model → prune → raw audio.

Needs espeak-ng (installed by `make test` when possible) and the `audio` extra.
"""

import shutil

import keras
import numpy as np
import pytest

from keras_filterprune import apply_plan, plan_pruning
from keras_filterprune.audio import DCASELogMel, VGGishLogMel, audio_dataset
from keras_filterprune.datasets import spoken_digits

pytest.importorskip("soundfile")
pytest.importorskip("soxr")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("espeak-ng") is None,
        reason="espeak-ng is not installed (apt-get install espeak-ng)",
    ),
]

VOICES = ["en-us+m1", "en-gb+f3", "en-us+m3"]


def _vggish_style(num_classes):
    inputs = keras.Input((15600,), name="waveform")
    x = VGGishLogMel(return_examples=False, name="logmel")(inputs)  # (B, 96, 64, 1)
    for i, filters in enumerate((16, 32)):
        x = keras.layers.Conv2D(filters, 3, padding="same", name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        x = keras.layers.MaxPooling2D(4, name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(32, activation="relu", name="fc")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs)


def _dcase_style(num_classes, samples):
    inputs = keras.Input((samples,), name="waveform")
    x = DCASELogMel(name="logmel")(inputs)  # (B, 40, frames, 1)
    x = keras.layers.Conv2D(8, 7, padding="same", name="conv0")(x)
    x = keras.layers.BatchNormalization(name="bn0")(x)
    x = keras.layers.ReLU(name="relu0")(x)
    x = keras.layers.MaxPooling2D((5, 5), name="pool0")(x)
    x = keras.layers.Conv2D(16, 7, padding="same", name="conv1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    return spoken_digits(root, voices=VOICES, speeds=[160], pitches=[50])


@pytest.mark.parametrize("kind", ["vggish", "dcase"])
def test_spoken_digits_to_pruned_raw_audio_model(digits, kind):
    sample_rate = 16000 if kind == "vggish" else 44100
    clip = 15600 / 16000 if kind == "vggish" else 0.5
    train = audio_dataset(
        digits["train"], sample_rate=sample_rate, clip_seconds=clip, batch_size=8
    )
    samples = int(round(clip * sample_rate))
    model = _vggish_style(10) if kind == "vggish" else _dcase_style(10, samples)
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(train, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])

    plan = plan_pruning(model, ratio=0.5, criterion="operator_norm")
    pruned = apply_plan(model, plan)
    assert pruned.get_layer("conv1").filters == model.get_layer("conv1").filters // 2
    assert pruned.count_params() < model.count_params()

    test = audio_dataset(
        digits["test"], sample_rate=sample_rate, clip_seconds=clip, batch_size=4
    )
    waveforms, labels = next(iter(test))
    assert waveforms.shape[1] == samples
    logits = np.asarray(pruned(waveforms))
    assert logits.shape == (waveforms.shape[0], 10)
    assert np.all(np.isfinite(logits))
    # The raw-audio model keeps working as a model: fine-tune one more step.
    pruned.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    pruned.fit(train.take(2), epochs=1, verbose=0)
