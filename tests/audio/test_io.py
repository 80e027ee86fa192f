"""Tests of keras_filterprune/audio/io.py (files written with soundfile here)."""

import os
import sys
import warnings

import numpy as np
import pytest

from keras_filterprune import FilterPruneWarning
from keras_filterprune.audio import audio_dataset, load_audio, resample

sf = pytest.importorskip("soundfile")
pytest.importorskip("soxr")


def _sine(freq, rate, seconds, amplitude=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype("float32")


def _peak_hz(audio, rate):
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return np.argmax(spectrum) * rate / len(audio)


@pytest.mark.parametrize(
    "ext, lossless", [("wav", True), ("flac", True), ("ogg", False), ("mp3", False)]
)
def test_load_audio_formats(tmp_path, ext, lossless):
    audio = _sine(440.0, 16000, 1.0)
    path = tmp_path / f"tone.{ext}"
    sf.write(path, audio, 16000)
    loaded, rate = load_audio(path)
    assert rate == 16000 and loaded.dtype == np.float32 and loaded.ndim == 1
    if lossless:
        assert loaded.shape == audio.shape
        np.testing.assert_allclose(loaded, audio, atol=1e-4)  # 16-bit PCM
    else:
        assert abs(len(loaded) - len(audio)) < 0.1 * 16000
        assert abs(_peak_hz(loaded, rate) - 440.0) < 2.0


@pytest.mark.parametrize("source_rate, target_rate", [(44100, 16000), (8000, 22050)])
def test_resampling_keeps_frequency_and_amplitude(tmp_path, source_rate, target_rate):
    path = tmp_path / "tone.wav"
    sf.write(path, _sine(1000.0, source_rate, 2.0), source_rate, subtype="FLOAT")
    loaded, rate = load_audio(path, sample_rate=target_rate)
    assert rate == target_rate
    assert len(loaded) == 2 * target_rate
    assert abs(_peak_hz(loaded, rate) - 1000.0) <= 0.5  # FFT bin width 0.5 Hz
    middle = loaded[target_rate // 2 : -target_rate // 2]
    np.testing.assert_allclose(np.abs(middle).max(), 0.5, atol=0.01)
    np.testing.assert_allclose(
        middle,
        _sine(1000.0, target_rate, 2.0)[target_rate // 2 : -target_rate // 2],
        atol=0.01,
    )


def test_stereo_to_mono(tmp_path):
    left, right = _sine(300.0, 8000, 0.5), np.zeros(4000, "float32") + 0.25
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, right], axis=1), 8000)
    mono, _ = load_audio(path)
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-4)
    both, _ = load_audio(path, mono=False)
    assert both.shape == (4000, 2)


def test_load_audio_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        load_audio(tmp_path / "missing.wav")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"this is not audio" * 10)
    with pytest.raises(ValueError, match="corrupt.wav"):
        load_audio(corrupt)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, "float32"), 8000)
    with pytest.raises(ValueError, match="empty.wav' holds no samples"):
        load_audio(empty)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(100, np.nan, "float32"), 8000, subtype="FLOAT")
    with pytest.raises(ValueError, match="nan.wav' holds non-finite"):
        load_audio(nan)
    inf = tmp_path / "inf.wav"
    samples = np.zeros((8000, 2), "float32")
    samples[4000, 1] = -np.inf
    sf.write(inf, samples, 8000, subtype="FLOAT")
    with pytest.raises(ValueError, match=r"inf.wav' .* at frame 4000 \(0.500 s\)"):
        load_audio(inf, mono=False)
    with pytest.raises(ValueError, match="`sample_rate` must be None or a positive"):
        load_audio(corrupt, sample_rate=0)


@pytest.mark.parametrize("value", ["no", 0, None])
def test_load_audio_mono_must_be_a_bool(tmp_path, value):
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros(100, "float32"), 8000)
    with pytest.raises(
        TypeError, match=f"`mono` must be a bool. Received: mono={value!r}"
    ):
        load_audio(path, mono=value)


def test_missing_backend_gives_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "soundfile", None)
    with pytest.raises(ImportError, match=r"pip install keras-filterprune\[audio\]"):
        load_audio(tmp_path / "x.wav")
    monkeypatch.setitem(sys.modules, "soundfile", sf)
    monkeypatch.setitem(sys.modules, "soxr", None)
    with pytest.raises(ImportError, match=r"pip install keras-filterprune\[audio\]"):
        resample(np.zeros(10, "float32"), 8000, 16000)


# --- audio_dataset -----------------------------------------------------------------


def _write_tree(root):
    """Three classes; each file is a constant level that identifies it."""
    files = {
        "cat/a.wav": (0.10, 8000, 0.5),
        "cat/b.flac": (0.15, 16000, 1.5),  # longer than the clip: cropped
        "dog/nested/c.ogg": (0.20, 16000, 1.0),
        "dog/d.WAV": (0.25, 22050, 0.25),  # resampled, padded with zeros
        "emu/e.mp3": (0.30, 16000, 1.0),
    }
    for name, (level, rate, seconds) in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, np.full(int(rate * seconds), level, "float32"), rate)
    (root / "cat" / "notes.txt").write_text("not audio")
    (root / ".hidden").mkdir()
    return files


def _batches(dataset):
    waveforms, labels = [], []
    for w, y in dataset:
        waveforms.append(w.numpy())
        labels.append(y.numpy())
    return np.concatenate(waveforms), np.concatenate(labels)


def test_audio_dataset_from_directory(tmp_path):
    _write_tree(tmp_path)
    dataset = audio_dataset(
        tmp_path, sample_rate=16000, clip_seconds=1.0, batch_size=2, shuffle=False
    )
    assert dataset.class_names == ["cat", "dog", "emu"]
    names = [os.path.relpath(p, tmp_path) for p in dataset.file_paths]
    assert names == [
        "cat/a.wav",
        "cat/b.flac",
        "dog/d.WAV",
        "dog/nested/c.ogg",
        "emu/e.mp3",
    ]
    waveforms, labels = _batches(dataset)
    assert waveforms.shape == (5, 16000) and waveforms.dtype == np.float32
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 2])
    assert labels.dtype == np.int32
    np.testing.assert_allclose(
        np.median(waveforms[:, 1000:3000], axis=1),
        [0.10, 0.15, 0.25, 0.20, 0.30],
        atol=0.02,
    )
    # cat/a.wav: 0.5 s at 8 kHz -> 8000 samples at 16 kHz, then zeros.
    np.testing.assert_allclose(waveforms[0, 12000:], 0.0, atol=1e-3)
    # dog/d.WAV: 0.25 s -> 4000 samples, then zeros.
    np.testing.assert_allclose(waveforms[2, 6000:], 0.0, atol=1e-3)
    assert np.abs(waveforms[1, 8000:15000] - 0.15).max() < 1e-3  # cropped, not padded


def test_audio_dataset_class_names_and_shuffle(tmp_path):
    _write_tree(tmp_path)
    dataset = audio_dataset(
        tmp_path,
        sample_rate=8000,
        clip_seconds=0.5,
        batch_size=None,
        class_names=["emu", "cat"],
        shuffle=False,
    )
    assert dataset.class_names == ["emu", "cat"]
    labels = [int(y) for _, y in dataset]
    assert labels == [0, 1, 1]
    with pytest.raises(ValueError, match="`class_names` must name subdirectories"):
        audio_dataset(tmp_path, sample_rate=8000, clip_seconds=0.5, class_names=["x"])

    shuffled = audio_dataset(tmp_path, sample_rate=8000, clip_seconds=0.5, seed=3)
    again = audio_dataset(tmp_path, sample_rate=8000, clip_seconds=0.5, seed=3)
    first, labels_first = _batches(shuffled)
    second, _ = _batches(again)
    np.testing.assert_array_equal(first, second)
    assert sorted(labels_first.tolist()) == [0, 0, 1, 1, 2]


def test_audio_dataset_from_paths(tmp_path):
    files = _write_tree(tmp_path)
    paths = [tmp_path / name for name in files]
    labeled = audio_dataset(
        paths,
        [4, 3, 2, 1, 0],
        sample_rate=8000,
        clip_seconds=0.5,
        shuffle=False,
        class_names=list("abcde"),
    )
    _, labels = _batches(labeled)
    np.testing.assert_array_equal(labels, [4, 3, 2, 1, 0])
    assert labeled.class_names == list("abcde")
    unlabeled = audio_dataset(paths, sample_rate=8000, clip_seconds=0.5, batch_size=5)
    assert tuple(next(iter(unlabeled)).shape) == (5, 4000)
    with pytest.raises(ValueError, match="one label per file"):
        audio_dataset(paths, [0], sample_rate=8000, clip_seconds=0.5)


def _add_bad_files(root):
    (root / "cat" / "corrupt.wav").write_bytes(b"garbage" * 100)
    sf.write(root / "dog" / "empty.flac", np.zeros(0, "float32"), 8000)
    # A FLAC cut in half: its header is fine, decoding it fails.
    good = root / "full.flac"
    sf.write(good, np.random.default_rng(0).uniform(-0.5, 0.5, 48000), 16000)
    data = good.read_bytes()
    (root / "emu" / "truncated.flac").write_bytes(data[: len(data) // 2])
    good.unlink()


def test_audio_dataset_bad_files_raise_naming_them(tmp_path):
    _write_tree(tmp_path)
    _add_bad_files(tmp_path)
    with pytest.raises(ValueError) as info:
        audio_dataset(tmp_path, sample_rate=8000, clip_seconds=0.5)
    message = str(info.value)
    assert "3 of 8 audio files could not be read" in message
    for name in ("corrupt.wav", "empty.flac", "truncated.flac"):
        assert name in message


def test_audio_dataset_skip_mode_counts_and_warns(tmp_path):
    _write_tree(tmp_path)
    _add_bad_files(tmp_path)
    with pytest.warns(FilterPruneWarning, match="Skipped 3 of 8 audio files"):
        dataset = audio_dataset(
            tmp_path,
            sample_rate=8000,
            clip_seconds=0.5,
            on_error="skip",
            shuffle=False,
        )
    assert len(dataset.skipped_files) == 3
    assert len(dataset.file_paths) == 5
    waveforms, labels = _batches(dataset)
    assert waveforms.shape == (5, 4000)
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 2])
    assert np.all(np.abs(waveforms[:, :1000]).max(axis=1) > 0.05)  # no silent clips


def test_audio_dataset_clean_data_does_not_warn(tmp_path):
    _write_tree(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        audio_dataset(tmp_path, sample_rate=8000, clip_seconds=0.5, on_error="skip")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sample_rate": 0}, "`sample_rate` must be a positive int"),
        ({"clip_seconds": -1.0}, "`clip_seconds` must be a positive number"),
        ({"batch_size": 0}, "`batch_size` must be None or a positive int"),
        ({"on_error": "ignore"}, "`on_error` must be 'raise' or 'skip'"),
    ],
)
def test_audio_dataset_invalid_arguments(tmp_path, kwargs, match):
    arguments = {"sample_rate": 8000, "clip_seconds": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        audio_dataset(tmp_path, **arguments)


def test_audio_dataset_empty_directory(tmp_path):
    (tmp_path / "cat").mkdir()
    with pytest.raises(ValueError, match="No audio files"):
        audio_dataset(tmp_path, sample_rate=8000, clip_seconds=1.0)


def test_audio_dataset_missing_path(tmp_path):
    with pytest.raises(ValueError, match="`paths_or_dir` must be a directory"):
        audio_dataset(tmp_path / "nowhere", sample_rate=8000, clip_seconds=1.0)
