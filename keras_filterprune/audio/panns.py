"""The log-mel front-end of PANNs (Kong et al., 2020) as a Keras layer."""

from __future__ import annotations

import keras
from keras import ops

from keras_filterprune.audio.frontends import (
    LogMelFrontEnd,
    check_stft,
    raise_errors,
    slaney_mel_matrix,
)
from keras_filterprune.handlers import FreezeHandler, register_handler

__all__ = ["PANNsLogMel"]

SAMPLE_RATE = 32000
FFT_LENGTH = 1024
HOP = 320
MEL_BINS = 64


@keras.saving.register_keras_serializable(package="keras_filterprune")
class PANNsLogMel(LogMelFrontEnd):
    """The PANNs log-mel front-end (CNN14 and its family) as a Keras layer.

    Reproduces torchlibrosa's `Spectrogram` + `LogmelFilterBank` with the PANNs
    AudioSet settings (32 kHz mono; `n_fft=1024`, `hop_length=320`, periodic
    Hann window, `center=True`, `pad_mode="reflect"`, `power=2`; 64 Slaney mel
    bands 50–14,000 Hz; `ref=1.0`, `amin=1e-10`, `top_db=None`), i.e. in librosa
    terms:

        S = np.abs(librosa.stft(y, n_fft=1024, hop_length=320, window="hann",
                                center=True, pad_mode="reflect")) ** 2
        M = librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50,
                                fmax=14000) @ S
        features = 10 * np.log10(np.maximum(M, 1e-10))

    A clip of `n` samples gives `1 + n // 320` frames: 1001 for 10 s.

    Output shape: `(batch, frames, 64, 1)` (time, mel bands, one channel), the
    input of `keras_filterprune.models.cnn14()`.

    Args:
        stft: `"rfft"` (`keras.ops.rfft`; TFLite `RFFT2D`) or `"matmul"` (a
            windowed DFT matrix, only `FULLY_CONNECTED` ops). Defaults to
            `"rfft"`.
        **kwargs: Base layer keyword arguments (`name`, ...).

    Input shape:
        `(batch, samples)` or `(batch, samples, 1)`, float32, 32 kHz, at least
        513 samples (reflection padding needs more samples than it pads).

    Example:

    >>> import numpy as np
    >>> layer = PANNsLogMel()
    >>> waveform = np.random.default_rng(0).normal(size=(2, 32000))
    >>> tuple(layer(waveform.astype("float32")).shape)
    (2, 101, 64, 1)

    References:
        - Kong et al., "PANNs: Large-Scale Pretrained Audio Neural Networks for
          Audio Pattern Recognition", IEEE/ACM TASLP 2020.
    """

    _default_name = "panns_log_mel"

    def __init__(self, stft: str = "rfft", **kwargs):
        raise_errors([check_stft(stft)])
        super().__init__(
            frame_length=FFT_LENGTH,
            frame_step=HOP,
            fft_length=FFT_LENGTH,
            window="hann",
            mel_matrix=slaney_mel_matrix(
                SAMPLE_RATE, FFT_LENGTH, MEL_BINS, 50.0, 14000.0
            ),
            log_offset=1e-10,
            stft=stft,
            power=2,
            decibels=True,
            **kwargs,
        )

    def _min_samples(self) -> int:
        return FFT_LENGTH // 2 + 1  # reflect padding by 512 needs 513 samples

    def call(self, inputs):
        signal = self._squeeze_input(self._as_float(inputs))
        self._check_length(signal.shape[1])
        half = FFT_LENGTH // 2
        signal = ops.pad(signal, [[0, 0], [half, half]], mode="reflect")
        return ops.expand_dims(self._log_mel(signal), -1)

    def compute_output_shape(self, input_shape):
        self._check_input_shape(input_shape)
        n = input_shape[1]
        return (input_shape[0], None if n is None else 1 + n // HOP, MEL_BINS, 1)

    def get_config(self):
        config = super().get_config()
        config["stft"] = self.stft
        return config


register_handler(PANNsLogMel, FreezeHandler("audio front-end (fixed channels)"))
