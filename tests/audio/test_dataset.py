"""Tests of keras_filterprune/audio/dataset.py: streaming, crops, clips, caches
(keyed by what they hold), NaN found by the scan, bool arguments.

(The behaviour both pipelines share, labels, classes and bad files, is tested in
`test_io.py`.)
"""

import os
import re
import sys
import time

import keras
import numpy as np
import pytest

import keras_filterprune.audio._cache as cache_module
import keras_filterprune.audio.dataset as dataset_module
from keras_filterprune import FilterPruneWarning
from keras_filterprune.audio import PANNsLogMel, audio_dataset
from tests._timeouts import HANG_GUARD_S

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
        timeout=HANG_GUARD_S,  # a hang, not a slow machine
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "conv filters 4" in result.stdout


# --- disk caches keyed by what they hold ----------------------------------------------


def _firsts(dataset):
    return [round(float(x[0]), 4) for x, _ in dataset]


def _set_mtime(path, ns):
    os.utime(path, ns=(ns, ns))


@pytest.fixture
def stat_only(monkeypatch):
    """Keys from size and modification time alone (no racy-file hashing)."""
    monkeypatch.setattr(cache_module, "_RACY_SECONDS", -1e9)


def test_disk_cache_is_reused_until_a_file_or_setting_changes(
    tmp_path, decodes, stat_only
):
    data = tmp_path / "data"
    _write(data, {"a/x.wav": (0.1, 8000, 0.2), "b/y.wav": (0.2, 8000, 0.2)})
    past = time.time_ns() - 10**11
    for path in data.rglob("*.wav"):
        _set_mtime(path, past)
    kwargs = dict(sample_rate=8000, clip_seconds=0.1, batch_size=None, shuffle=False)
    cache = tmp_path / "cache"
    first = audio_dataset(data, cache=cache, **kwargs)
    assert _firsts(first) == [0.1, 0.2] and len(decodes) == 2
    again = audio_dataset(data, cache=cache, **kwargs)
    assert again.cache_path == first.cache_path
    assert _firsts(again) == [0.1, 0.2] and len(decodes) == 2  # read back

    # The same size, a new modification time: new contents are served.
    _write(data, {"a/x.wav": (0.7, 8000, 0.2)})
    _set_mtime(data / "a" / "x.wav", past + 10**9)
    changed = audio_dataset(data, cache=cache, **kwargs)
    assert changed.cache_path != first.cache_path
    assert _firsts(changed) == [0.7, 0.2]

    # A file added: it is served too.
    _write(data, {"b/z.wav": (0.3, 8000, 0.2)})
    added = audio_dataset(data, cache=cache, **kwargs)
    assert _firsts(added) == [0.7, 0.2, 0.3]

    # Another clip length (or sample rate): its own cache, the right shape.
    longer = audio_dataset(data, cache=cache, **{**kwargs, "clip_seconds": 0.15})
    assert [x.shape[0] for x, _ in longer] == [1200] * 3
    resampled = audio_dataset(data, cache=cache, **{**kwargs, "sample_rate": 16000})
    assert [x.shape[0] for x, _ in resampled] == [1600] * 3
    assert len({d.cache_path for d in (added, longer, resampled)}) == 3


def test_a_rewrite_keeping_size_and_time_is_seen(tmp_path, monkeypatch):
    """A file rewritten within one tick of a coarse file-system clock keeps its
    size and modification time: recently modified files are hashed."""
    monkeypatch.setattr(cache_module, "_RACY_SECONDS", 1e12)
    _write(tmp_path / "data", {"a/x.wav": (0.1, 8000, 0.2)})
    path = tmp_path / "data" / "a" / "x.wav"
    stamp = path.stat().st_mtime_ns
    kwargs = dict(sample_rate=8000, clip_seconds=0.1, batch_size=None)
    assert _firsts(audio_dataset(tmp_path / "data", cache=tmp_path, **kwargs)) == [0.1]
    _write(tmp_path / "data", {"a/x.wav": (0.5, 8000, 0.2)})
    _set_mtime(path, stamp)
    assert _firsts(audio_dataset(tmp_path / "data", cache=tmp_path, **kwargs)) == [0.5]


def _scaled(factor):
    return lambda clip: clip * factor


OFFSET = 0.0


def _shifted(clip):
    return clip + OFFSET


def test_disk_cache_is_keyed_by_the_features(tmp_path, stat_only, monkeypatch):
    _write(tmp_path / "data", {"a/x.wav": (0.1, 8000, 0.2)})
    kwargs = dict(sample_rate=8000, clip_seconds=0.1, batch_size=None)

    def firsts(features):
        dataset = audio_dataset(
            tmp_path / "data", cache=tmp_path, features=features, **kwargs
        )
        return _firsts(dataset), dataset.cache_path

    twice, path = firsts(_scaled(2.0))
    assert twice == [0.2] and path.startswith(os.path.join(str(tmp_path), "audio_"))
    assert firsts(_scaled(2.0)) == ([0.2], path)  # an equal function: reused
    assert firsts(_scaled(3.0))[0] == [0.3]  # another closure value
    assert firsts(_shifted)[0] == [0.1]
    monkeypatch.setattr(sys.modules[__name__], "OFFSET", 1.0)
    assert firsts(_shifted)[0] == [1.1]  # a global the function reads
    assert firsts(keras.layers.Rescaling(4.0))[0] == [0.4]  # a layer's config
    assert firsts(keras.layers.Rescaling(5.0))[0] == [0.5]


class _Opaque:
    """A callable without config, attributes or repr: nothing to key it by."""

    __slots__ = ()

    def __call__(self, clip):
        return clip


def test_features_the_key_cannot_describe_are_never_reused(tmp_path):
    _write(tmp_path / "data", {"a/x.wav": (0.1, 8000, 0.2)})
    kwargs = dict(sample_rate=8000, clip_seconds=0.1, cache=tmp_path)
    paths = set()
    for _ in range(2):
        with pytest.warns(FilterPruneWarning, match="_Opaque.*will not reuse"):
            dataset = audio_dataset(tmp_path / "data", features=_Opaque(), **kwargs)
        paths.add(dataset.cache_path)
    assert len(paths) == 2


def test_unwritable_cache_directory_fails_at_construction(tmp_path, monkeypatch):
    _write(tmp_path / "data", {"a/x.wav": (0.1, 8000, 0.2)})
    locked = tmp_path / "locked"
    locked.mkdir()
    kwargs = dict(sample_rate=8000, clip_seconds=0.1, batch_size=None)
    real_access = os.access

    def no_write(path, mode, *args, **kw):
        if os.path.abspath(path) == str(locked) and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kw)

    monkeypatch.setattr(dataset_module.os, "access", no_write)
    with pytest.raises(
        PermissionError, match=re.escape(f"in '{locked}'") + ".*cache='memory'"
    ):
        audio_dataset(tmp_path / "data", cache=locked / "clips", **kwargs)
    monkeypatch.undo()
    # A complete cache is only read: a read-only directory is fine then.
    _firsts(audio_dataset(tmp_path / "data", cache=locked / "clips", **kwargs))
    monkeypatch.setattr(dataset_module.os, "access", no_write)
    again = audio_dataset(tmp_path / "data", cache=locked / "clips", **kwargs)
    assert _firsts(again) == [0.1]


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root writes in read-only directories",
)
def test_read_only_cache_directory_fails_at_construction(tmp_path):
    _write(tmp_path / "data", {"a/x.wav": (0.1, 8000, 0.2)})
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match=re.escape(f"in '{locked}'")):
            audio_dataset(
                tmp_path / "data", sample_rate=8000, clip_seconds=0.1, cache=locked
            )
    finally:
        locked.chmod(0o755)


# --- NaN and Inf ---------------------------------------------------------------------


@pytest.mark.parametrize("where", [10, 15000])  # inside the file, in its last block
def test_non_finite_samples_are_found_by_the_scan(tmp_path, decodes, where):
    _write(tmp_path, {"a/ok.wav": (0.1, 8000, 0.2), "b/ok.flac": (0.2, 8000, 0.2)})
    samples = np.full(16000, 0.1, "float32")
    samples[where] = np.nan if where < 100 else np.inf
    sf.write(tmp_path / "a" / "bad.wav", samples, 8000, subtype="FLOAT")
    with pytest.raises(ValueError, match=f"bad.wav' holds non-finite.*frame {where}"):
        audio_dataset(tmp_path, sample_rate=8000, clip_seconds=0.1)
    with pytest.warns(FilterPruneWarning, match="Skipped 1 of 3"):
        dataset = audio_dataset(
            tmp_path, sample_rate=8000, clip_seconds=0.1, on_error="skip"
        )
    assert [os.path.basename(p) for p in dataset.file_paths] == ["ok.wav", "ok.flac"]
    assert decodes == []  # found without decoding in the pipeline


# --- booleans ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["shuffle", "follow_links", "streaming"])
@pytest.mark.parametrize("value", ["yes", "no", 1, None])
def test_bool_arguments_must_be_bools(tmp_path, name, value):
    _write(tmp_path, SPEC)
    with pytest.raises(TypeError, match=f"`{name}` must be a bool. Received: {name}="):
        audio_dataset(tmp_path, sample_rate=8000, clip_seconds=0.5, **{name: value})


def test_cache_directory_must_exist(tmp_path):
    _write(tmp_path / "data", SPEC)
    for cache in (tmp_path / "no" / "prefix", f"{tmp_path}/nowhere/"):
        with pytest.raises(ValueError, match="does not exist. Create it first"):
            audio_dataset(
                tmp_path / "data", sample_rate=8000, clip_seconds=0.5, cache=cache
            )


def test_a_damaged_disk_cache_is_named_before_any_batch(tmp_path):
    _write(tmp_path / "data", {"a/x.wav": (0.1, 8000, 0.2)})
    kwargs = dict(sample_rate=8000, clip_seconds=0.1, batch_size=None)
    first = audio_dataset(tmp_path / "data", cache=tmp_path / "c", **kwargs)
    assert _firsts(first) == [0.1]
    index = first.cache_path + ".index"
    with open(index, "wb") as f:
        f.write(b"not an sstable" * 8)
    with pytest.raises(ValueError, match="cache files .* are damaged.*Delete them"):
        audio_dataset(tmp_path / "data", cache=tmp_path / "c", **kwargs)


def test_non_finite_features_stop_the_pipeline_with_a_named_cause(tmp_path):
    import tensorflow as tf

    _write(tmp_path / "data", {"a/x.wav": (0.0, 8000, 0.2)})
    dataset = audio_dataset(
        tmp_path / "data",
        sample_rate=8000,
        clip_seconds=0.1,
        batch_size=None,
        features=lambda w: tf.math.log(w * 0.0),  # log(0) = -inf
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="`features` returned"):
        next(iter(dataset))
