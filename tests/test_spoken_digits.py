"""Tests of keras_filterprune/datasets/spoken_digits.py (needs espeak-ng)."""

import os
import shutil

import numpy as np
import pytest

from keras_filterprune.audio import audio_dataset
from keras_filterprune.datasets import spoken_digits
from keras_filterprune.datasets.spoken_digits import (
    _DEFAULT_ACCENTS,
    _DEFAULT_VARIANTS,
    _default_test_voices,
    _speaker,
)

sf = pytest.importorskip("soundfile")
pytest.importorskip("soxr")

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (apt-get install espeak-ng)",
)

VOICES = ["en-us+m1", "en-gb+f3"]


def _wavs(root):
    found = []
    for folder, _, files in os.walk(root):
        found += [os.path.join(folder, f) for f in files if f.endswith(".wav")]
    return sorted(found)


@needs_espeak
def test_tiny_set_is_speaker_disjoint_and_idempotent(tmp_path):
    result = spoken_digits(
        tmp_path, voices=VOICES, speeds=[175], pitches=[50], sample_rate=8000
    )
    assert result["class_names"] == [str(d) for d in range(10)]
    assert result["train_voices"] == ["en-gb+f3"]
    assert result["test_voices"] == ["en-us+m1"]
    assert result["num_files"] == {"train": 10, "test": 10}
    assert result["generated"] == 20

    train, test = _wavs(result["train"]), _wavs(result["test"])
    assert len(train) == len(test) == 10
    assert all(os.path.basename(p).startswith("en-gb_f3_") for p in train)
    assert all(os.path.basename(p).startswith("en-us_m1_") for p in test)
    assert sorted(os.listdir(result["test"])) == result["class_names"]
    for path in train + test:
        audio, rate = sf.read(path)
        assert rate == 8000
        assert 0.2 < len(audio) / rate < 1.0  # one word, without the final pause
        assert np.abs(audio).max() > 0.05

    mtimes = [os.path.getmtime(p) for p in train]
    again = spoken_digits(
        tmp_path, voices=VOICES, speeds=[175], pitches=[50], sample_rate=8000
    )
    assert again["generated"] == 0
    assert [os.path.getmtime(p) for p in train] == mtimes
    rewritten = spoken_digits(
        tmp_path,
        voices=VOICES,
        speeds=[175],
        pitches=[50],
        sample_rate=8000,
        overwrite=True,
    )
    assert rewritten["generated"] == 20

    dataset = audio_dataset(
        result["train"], sample_rate=8000, clip_seconds=1.0, shuffle=False
    )
    waveforms, labels = next(iter(dataset))
    assert tuple(waveforms.shape) == (10, 8000)
    assert labels.numpy().tolist() == list(range(10))
    assert dataset.class_names == result["class_names"]


@needs_espeak
def test_split_conflicts_and_sample_rate_changes_raise(tmp_path):
    spoken_digits(tmp_path, voices=VOICES, speeds=[175], pitches=[50])
    with pytest.raises(ValueError, match="in the other split"):
        spoken_digits(
            tmp_path,
            voices=VOICES,
            speeds=[175],
            pitches=[50],
            test_voices=["en-gb+f3"],
        )
    with pytest.raises(ValueError, match="holds files at 16000 Hz"):
        spoken_digits(
            tmp_path, voices=VOICES, speeds=[175], pitches=[50], sample_rate=8000
        )


@needs_espeak
def test_unknown_voice_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="espeak-ng has no voice"):
        spoken_digits(tmp_path, voices=["en-us+m1", "xx-nowhere+q9"])


def test_missing_espeak_tells_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
        spoken_digits(tmp_path, voices=VOICES)


def test_default_split_holds_out_whole_speakers():
    voices = [f"{a}+{v}" for a in _DEFAULT_ACCENTS for v in _DEFAULT_VARIANTS]
    test = _default_test_voices(voices)
    test_speakers = {_speaker(v) for v in test}
    train_speakers = {_speaker(v) for v in voices if v not in test}
    assert test_speakers == {"f3", "m4"}  # one female, one male timbre
    assert not test_speakers & train_speakers
    assert len(test) == 2 * len(_DEFAULT_ACCENTS)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"voices": ["en-us+m1"]}, "`voices` must be a list of at least two"),
        ({"speeds": [10]}, "`speeds` must be a non-empty list of ints in"),
        ({"pitches": []}, "`pitches` must be a non-empty list"),
        ({"sample_rate": 0}, "`sample_rate` must be a positive int"),
        ({"test_voices": VOICES}, "`test_voices` must be a non-empty proper subset"),
        ({"test_voices": ["en+m9"]}, "`test_voices` must be a non-empty proper subset"),
    ],
)
def test_invalid_arguments(tmp_path, kwargs, match):
    arguments = {"voices": VOICES, **kwargs}
    with pytest.raises(ValueError, match=match):
        spoken_digits(tmp_path, **arguments)
