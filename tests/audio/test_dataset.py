"""Tests of keras_filterprune/audio/dataset.py: streaming, crops, clips, caches.

(The behaviour both pipelines share, labels, classes and bad files, is tested in
`test_io.py`.)
"""

import numpy as np
import pytest

import keras_filterprune.audio.dataset as dataset_module
from keras_filterprune.audio import PANNsLogMel, audio_dataset

sf = pytest.importorskip("soundfile")
pytest.importorskip("soxr")


def _write(root, spec):
    """Files whose samples count up (`level + n · 1e-5`): every clip shows
    where in which file it was cut."""
    for name, (level, rate, seconds) in spec.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        n = int(rate * seconds)
        samples = (level + np.arange(n) * 1e-5).astype("float32")
        subtype = "FLOAT" if name.endswith(".wav") else None  # exact samples
        sf.write(path, samples, rate, subtype=subtype)


SPEC = {
    "a/one.flac": (0.1, 8000, 1.5),
    "a/two.wav": (0.2, 8000, 0.25),
    "b/three.flac": (0.3, 8000, 1.0),
}


@pytest.fixture
def decodes(monkeypatch):
    """Counts the files the pipeline decodes."""
    calls = []
    original = dataset_module.load_audio

    def counting(path, *args, **kwargs):
        calls.append(str(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(dataset_module, "load_audio", counting)
    return calls


def _all(dataset):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(xs), np.concatenate(ys)


def test_streaming_equals_the_in_memory_path(tmp_path, decodes):
    _write(tmp_path, SPEC)
    kwargs = dict(sample_rate=8000, clip_seconds=0.5, batch_size=2, shuffle=False)
    streamed = audio_dataset(tmp_path, **kwargs)
    assert decodes == []  # nothing decoded before iterating
    x, y = _all(streamed)
    assert len(decodes) == 3
    x_mem, y_mem = _all(audio_dataset(tmp_path, streaming=False, **kwargs))
    np.testing.assert_array_equal(x, x_mem)
    np.testing.assert_array_equal(y, y_mem)
    np.testing.assert_array_equal(y, [0, 0, 1])


def test_shuffle_is_seeded_and_new_every_epoch(tmp_path):
    spec = {f"c{i % 2}/f{i}.wav": (i / 10, 8000, 0.1) for i in range(8)}
    _write(tmp_path, spec)
    kwargs = dict(sample_rate=8000, clip_seconds=0.1, batch_size=None, seed=4)
    dataset = audio_dataset(tmp_path, **kwargs)
    first = [round(float(x[0]), 3) for x, _ in dataset]
    second = [round(float(x[0]), 3) for x, _ in dataset]
    again = [round(float(x[0]), 3) for x, _ in audio_dataset(tmp_path, **kwargs)]
    assert sorted(first) == sorted(second) and first != second
    assert first == again


def test_bad_files_are_found_without_decoding_everything(tmp_path, decodes):
    _write(tmp_path, SPEC)
    good = tmp_path / "full.flac"
    sf.write(good, np.random.default_rng(0).uniform(-0.5, 0.5, 48000), 16000)
    data = good.read_bytes()
    (tmp_path / "b" / "truncated.flac").write_bytes(data[: len(data) // 2])
    good.unlink()
    with pytest.raises(ValueError, match="truncated.flac"):
        audio_dataset(tmp_path, sample_rate=8000, clip_seconds=0.5)
    assert decodes == []


def test_clips_per_file_cuts_long_files(tmp_path):
    _write(tmp_path, SPEC)
    dataset = audio_dataset(
        tmp_path,
        sample_rate=8000,
        clip_seconds=0.5,
        batch_size=None,
        shuffle=False,
        clips_per_file=4,
    )
    names = [(p.rsplit("/", 1)[1], c) for p, c in dataset.examples]
    assert names == [("one.flac", 0), ("one.flac", 1), ("one.flac", 2)] + [
        ("two.wav", 0),
        ("three.flac", 0),
        ("three.flac", 1),
    ]
    x, y = zip(*[(a.numpy(), int(b)) for a, b in dataset])
    assert y == (0, 0, 0, 0, 1, 1)
    # Consecutive clips of one.flac continue where the previous one stopped.
    np.testing.assert_allclose(x[1][0], 0.1 + 4000 * 1e-5, atol=1e-4)
    np.testing.assert_allclose(x[2][0], 0.1 + 8000 * 1e-5, atol=1e-4)
    assert np.all(x[3][2000:] == 0)  # two.wav: 0.25 s, zero-padded


def test_random_crops_change_every_epoch_inside_the_file(tmp_path):
    _write(tmp_path, {"a/long.wav": (0.0, 8000, 2.0)})
    kwargs = dict(sample_rate=8000, clip_seconds=0.25, batch_size=None, seed=1)
    dataset = audio_dataset(tmp_path, crop="random", **kwargs)
    starts = [float(x[0]) for _ in range(4) for x, _ in dataset]
    assert len(set(np.round(starts, 4))) == 4
    for x, _ in dataset:
        steps = np.diff(x.numpy())
        np.testing.assert_allclose(steps, 1e-5, atol=2e-6)  # contiguous, no padding
    again = audio_dataset(tmp_path, crop="random", **kwargs)
    assert float(next(iter(again))[0][0]) == starts[0]


@pytest.mark.parametrize("where", ["memory", "file"])
def test_cached_features_are_decoded_once(tmp_path, decodes, where):
    _write(
        tmp_path / "data", {"a/x.wav": (0.1, 32000, 0.2), "b/y.wav": (0.2, 32000, 0.2)}
    )
    cache = "memory" if where == "memory" else str(tmp_path / "features")
    dataset = audio_dataset(
        tmp_path / "data",
        sample_rate=32000,
        clip_seconds=0.2,
        batch_size=2,
        features=PANNsLogMel(),
        cache=cache,
        seed=0,
    )
    first = _all(dataset)
    second = _all(dataset)
    assert len(decodes) == 2
    assert first[0].shape == (2, 21, 64, 1)
    order = np.argsort(first[1])
    np.testing.assert_allclose(first[0][order], second[0][np.argsort(second[1])])
    expected = PANNsLogMel()(
        np.stack([np.full(6400, 0.1) + np.arange(6400) * 1e-5]).astype("float32")
    )
    np.testing.assert_allclose(first[0][order][0], np.asarray(expected)[0], atol=1e-3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"crop": "middle"}, "`crop` must be 'start' or 'random'"),
        ({"clips_per_file": 0}, "`clips_per_file` must be a positive int"),
        ({"crop": "random", "clips_per_file": 2}, "consecutive clips"),
        ({"crop": "random", "cache": "memory"}, "random crops change every epoch"),
        ({"cache": 3}, "`cache` must be None, 'memory' or a file path"),
        ({"cache": "/no/such/dir/cache"}, "does not exist"),
        ({"features": "logmel"}, "`features` must be None or a callable"),
        ({"streaming": False, "clips_per_file": 2}, "streaming=False"),
        ({"shuffle_buffer": 0}, "`shuffle_buffer` must be None or a positive int"),
    ],
)
def test_bad_streaming_options_are_value_errors(tmp_path, kwargs, match):
    _write(tmp_path, SPEC)
    with pytest.raises(ValueError, match=match):
        audio_dataset(tmp_path, sample_rate=8000, clip_seconds=0.5, **kwargs)


_MIRRORED_AUDIO = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from keras_filterprune import PruningCallback
from keras_filterprune.audio import PANNsLogMel, audio_dataset

data = audio_dataset(sys.argv[1], sample_rate=32000, clip_seconds=0.2, batch_size=4,
                     features=PANNsLogMel(), cache="memory", seed=0)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    inputs = keras.Input((21, 64, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
callback = PruningCallback("l1_norm", 0.5, epochs=(0,), mode="hard", verbose=0)
model.fit(data, epochs=2, verbose=0, callbacks=[callback])
print("conv filters", callback.pruned_model().get_layer("conv").filters)
"""


@pytest.mark.slow
def test_streaming_features_train_with_pruning_under_mirrored_strategy(tmp_path):
    import os
    import subprocess
    import sys

    spec = {f"{c}/f{i}.wav": (0.1 * i, 32000, 0.2) for c in "ab" for i in range(4)}
    _write(tmp_path / "data", spec)
    script = tmp_path / "run.py"
    script.write_text(_MIRRORED_AUDIO)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "data")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "conv filters 4" in result.stdout
