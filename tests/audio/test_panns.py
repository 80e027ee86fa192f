"""Tests of keras_filterprune/audio/panns.py: PANNsLogMel against librosa."""

import keras
import numpy as np
import pytest

from keras_filterprune.audio import PANNsLogMel


def _reference(waveform):
    """torchlibrosa's Spectrogram + LogmelFilterBank (PANNs settings) in librosa."""
    librosa = pytest.importorskip("librosa")
    power = (
        np.abs(
            librosa.stft(
                waveform.astype(np.float64),
                n_fft=1024,
                hop_length=320,
                window="hann",
                center=True,
                pad_mode="reflect",
            )
        )
        ** 2
    )
    mel = librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000)
    return 10 * np.log10(np.maximum(mel.astype(np.float64) @ power, 1e-10)).T


@pytest.mark.parametrize("stft", ["rfft", "matmul"])
@pytest.mark.parametrize("samples", [32000, 5000, 1234])
def test_panns_log_mel_matches_librosa_to_1e4_db(stft, samples):
    rng = np.random.default_rng(samples)
    waveform = (rng.normal(size=(2, samples)) * 0.3).astype("float32")
    output = keras.ops.convert_to_numpy(PANNsLogMel(stft=stft)(waveform))
    assert output.shape == (2, 1 + samples // 320, 64, 1)
    for b in range(2):
        np.testing.assert_allclose(
            output[b, ..., 0], _reference(waveform[b]), atol=1e-4
        )


def test_panns_log_mel_floors_silence_at_minus_100_db():
    output = keras.ops.convert_to_numpy(PANNsLogMel()(np.zeros((1, 4000), "float32")))
    np.testing.assert_allclose(output, -100.0)


def test_panns_log_mel_config_shapes_and_errors():
    layer = PANNsLogMel(stft="matmul")
    assert (
        PANNsLogMel.from_config(layer.get_config()).get_config() == layer.get_config()
    )
    assert layer.compute_output_shape((None, 320000)) == (None, 1001, 64, 1)
    assert layer.compute_output_shape((None, None)) == (None, None, 64, 1)
    with pytest.raises(ValueError, match="`stft` must be one of"):
        PANNsLogMel(stft="fft")
    with pytest.raises(ValueError, match="at least 513 samples"):
        layer(np.zeros((1, 400), "float32"))
