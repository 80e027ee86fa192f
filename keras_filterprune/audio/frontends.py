"""Log-mel front-ends of VGGish and of the DCASE 2021 Task 1A baseline.

Both are Keras layers without weights that map a batch of mono waveforms
`(batch, samples)` to log-mel features, so that a model can take raw audio and be
exported to TFLite with its front-end. The STFT is computed either with
`keras.ops.rfft` (TFLite builtins `RFFT2D`, `REAL`, `IMAG`) or as one matrix
product with a windowed DFT matrix (TFLite `FULLY_CONNECTED`, which every delegate
and full-integer quantisation support). Framing uses reshapes and strided slices,
so no gather indices are stored in the model.

The mel matrices are computed once with NumPy when the layer is created and
embedded as constants; librosa is not needed at runtime.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_filterprune._validation import check_bool
from keras_filterprune.handlers import FreezeHandler, register_handler

_STFT_MODES = ("rfft", "matmul")


def _hertz_to_mel_htk(frequencies):
    return 1127.0 * np.log1p(np.asarray(frequencies, dtype=np.float64) / 700.0)


def _hertz_to_mel_slaney(frequencies):
    f = np.asarray(frequencies, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    linear = f / f_sp
    log = min_log_mel + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep
    return np.where(f >= min_log_hz, log, linear)


def _mel_to_hertz_slaney(mels):
    m = np.asarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    linear = f_sp * m
    log = min_log_hz * np.exp(logstep * (np.maximum(m, min_log_mel) - min_log_mel))
    return np.where(m >= min_log_mel, log, linear)


def vggish_mel_matrix(
    num_spectrogram_bins: int = 257,
    sample_rate: int = 16000,
    num_mel_bins: int = 64,
    lower_edge_hertz: float = 125.0,
    upper_edge_hertz: float = 7500.0,
) -> np.ndarray:
    """HTK mel matrix of VGGish's `mel_features.spectrogram_to_mel_matrix`.

    Triangles are linear in HTK mel (`1127 ln(1 + f / 700)`) between band edges
    spaced uniformly in mel; the DC bin gets weight 0.

    Returns:
        Float64 array of shape `(num_spectrogram_bins, num_mel_bins)`.

    Example:

    >>> vggish_mel_matrix().shape
    (257, 64)
    """
    _check_mel_args(
        sample_rate,
        num_mel_bins,
        lower_edge_hertz,
        upper_edge_hertz,
        ("num_spectrogram_bins", num_spectrogram_bins, 2),
    )
    bin_hertz = np.linspace(0.0, sample_rate / 2.0, num_spectrogram_bins)
    bins_mel = _hertz_to_mel_htk(bin_hertz)
    edges = np.linspace(
        _hertz_to_mel_htk(lower_edge_hertz),
        _hertz_to_mel_htk(upper_edge_hertz),
        num_mel_bins + 2,
    )
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    lower_slope = (bins_mel[:, None] - lower) / (center - lower)
    upper_slope = (upper - bins_mel[:, None]) / (upper - center)
    matrix = np.maximum(0.0, np.minimum(lower_slope, upper_slope))
    matrix[0, :] = 0.0
    _check_bands(matrix, num_mel_bins, ("num_spectrogram_bins", num_spectrogram_bins))
    return matrix


def slaney_mel_matrix(
    sample_rate: int = 44100,
    fft_length: int = 2048,
    num_mel_bins: int = 40,
    lower_edge_hertz: float = 0.0,
    upper_edge_hertz: float | None = None,
) -> np.ndarray:
    """Slaney-style, area-normalised mel matrix (librosa's default filterbank).

    Equals `librosa.filters.mel(sr=sample_rate, n_fft=fft_length, n_mels=...,
    fmin=..., fmax=...).T` (`htk=False`, `norm="slaney"`), computed with NumPy.

    Returns:
        Float64 array of shape `(fft_length // 2 + 1, num_mel_bins)`.

    Example:

    >>> slaney_mel_matrix().shape
    (1025, 40)
    """
    _check_mel_args(
        sample_rate,
        num_mel_bins,
        lower_edge_hertz,
        upper_edge_hertz,
        ("fft_length", fft_length, 2),
    )
    if upper_edge_hertz is None:
        upper_edge_hertz = sample_rate / 2.0
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, fft_length // 2 + 1)
    mel_edges = np.linspace(
        _hertz_to_mel_slaney(lower_edge_hertz),
        _hertz_to_mel_slaney(upper_edge_hertz),
        num_mel_bins + 2,
    )
    hz_edges = _mel_to_hertz_slaney(mel_edges)
    fdiff = np.diff(hz_edges)
    ramps = hz_edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (hz_edges[2:] - hz_edges[:-2]))[:, None]
    _check_bands(weights.T, num_mel_bins, ("fft_length", fft_length))
    return weights.T


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not (
        isinstance(value, bool)
    )


def _check_mel_args(sample_rate, num_mel_bins, lower, upper, bins) -> None:
    """Raises one ValueError listing every bad argument of a mel matrix."""
    errors = []
    name, value, minimum = bins
    if not _is_int(value) or value < minimum:
        errors.append(f"`{name}` must be an int >= {minimum}. Received: {value!r}")
    if not _is_real(sample_rate) or not 0 < sample_rate < math.inf:
        errors.append(
            f"`sample_rate` must be a positive number of Hz. Received: {sample_rate!r}"
        )
    if not _is_int(num_mel_bins) or num_mel_bins < 1:
        errors.append(
            f"`num_mel_bins` must be a positive int. Received: {num_mel_bins!r}"
        )
    if not _is_real(lower) or not 0 <= lower < math.inf:
        errors.append(
            f"`lower_edge_hertz` must be a finite number >= 0. Received: {lower!r}"
        )
    if upper is not None and (not _is_real(upper) or not 0 < upper < math.inf):
        errors.append(
            f"`upper_edge_hertz` must be a finite positive number. Received: {upper!r}"
        )
    if not errors:
        nyquist = sample_rate / 2.0
        top = nyquist if upper is None else upper
        if upper is not None and upper > nyquist:
            errors.append(
                f"`upper_edge_hertz` must be at most the Nyquist frequency "
                f"`sample_rate` / 2 = {nyquist:g} Hz. Received: {upper!r}"
            )
        elif not lower < top:
            errors.append(
                f"`lower_edge_hertz` must be below `upper_edge_hertz` ({top:g} Hz). "
                f"Received: {lower!r}"
            )
    raise_errors(errors)


def _check_bands(matrix, num_mel_bins, bins) -> None:
    """Mel bands narrower than the FFT bins spacing get no bin: features that
    are constant whatever the audio. An error, naming the empty bands."""
    empty = np.flatnonzero(~np.any(matrix > 0, axis=0))
    if empty.size:
        name, value = bins
        raise ValueError(
            f"`num_mel_bins`={num_mel_bins} is too many for `{name}`={value}: "
            f"{empty.size} mel bands (e.g. {empty[:5].tolist()}) fall between two "
            "FFT bins and would always be empty. Use fewer mel bins, a longer FFT "
            "or a wider frequency range."
        )


def _periodic_window(name, length):
    n = np.arange(length, dtype=np.float64)
    if name == "hann":
        return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)
    if name == "hamming":
        return 0.54 - 0.46 * np.cos(2.0 * np.pi * n / length)
    raise ValueError(f"`window` must be 'hann' or 'hamming'. Received: window={name!r}")


def _frame(signal, frame_length, frame_step):
    """Frames axis 1 of `(batch, n, *rest)`; incomplete frames are dropped.

    The signal is cut into chunks of `gcd(frame_length, frame_step)` samples and each
    frame is assembled from strided slices of the chunks (as `tf.signal.frame`
    does, but without a gather).
    """
    n = ops.shape(signal)[1]
    rest = tuple(ops.shape(signal)[2:])
    g = math.gcd(frame_length, frame_step)
    per_frame, per_step = frame_length // g, frame_step // g
    if isinstance(n, int):
        num = max(0, 1 + (n - frame_length) // frame_step)
        used = (num - 1) * frame_step + frame_length if num else 0
    else:
        num = ops.maximum(0, 1 + (n - frame_length) // frame_step)
        used = ops.where(num > 0, (num - 1) * frame_step + frame_length, 0)
    chunks = ops.reshape(signal[:, :used], (-1, used // g, g) + rest)
    if per_frame == 1 and per_step == 1:
        return ops.reshape(chunks, (-1, num, frame_length) + rest)
    stop = (num - 1) * per_step + 1
    pieces = [chunks[:, j : j + stop : per_step] for j in range(per_frame)]
    frames = ops.stack(pieces, axis=2)
    return ops.reshape(frames, (-1, num, frame_length) + rest)


def _auto_name(prefix):
    """A unique layer name, numbered as Keras numbers its automatic names."""
    uid = keras.backend.get_uid(prefix)
    return prefix if uid == 1 else f"{prefix}_{uid - 1}"


class LogMelFrontEnd(keras.layers.Layer):
    """Shared STFT → mel → log computation of the front-ends."""

    _default_name = "log_mel"

    def __init__(
        self,
        *,
        frame_length,
        frame_step,
        fft_length,
        window,
        mel_matrix,
        log_offset,
        stft,
        window_offset=0,
        power=1,
        decibels=False,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        if kwargs.get("name") is None:
            kwargs["name"] = _auto_name(self._default_name)
        super().__init__(**kwargs)
        self._frame_length = frame_length
        self._frame_step = frame_step
        self._fft_length = fft_length
        self._window_offset = window_offset
        self._log_offset = float(log_offset)
        self._power = power  # 1: |STFT|, 2: |STFT|²
        self._decibels = decibels  # 10·log10(max(mel, log_offset)), else log(mel + eps)
        self.stft = stft
        self.window = _periodic_window(window, frame_length)
        self.mel_matrix = mel_matrix
        self._window32 = self.window.astype("float32")
        self._mel32 = mel_matrix.astype("float32")
        if stft == "matmul":
            # Only the `frame_length` non-zero samples of the zero-padded FFT input
            # contribute; the magnitude does not depend on where the frame starts.
            k = np.arange(fft_length // 2 + 1)[None, :]
            t = np.arange(frame_length)[:, None]
            angle = 2.0 * np.pi * ((t * k) % fft_length) / fft_length
            self._dft_real = (self.window[:, None] * np.cos(angle)).astype("float32")
            self._dft_imag = (-self.window[:, None] * np.sin(angle)).astype("float32")

    def _as_float(self, inputs):
        """The waveform as float32; integer PCM is refused (its samples are
        counts, not the [-1, 1] amplitudes the log-mel scale assumes)."""
        dtype = getattr(inputs, "dtype", None)
        if dtype is not None:
            dtype = keras.backend.standardize_dtype(dtype)
            if dtype.startswith(("int", "uint")):
                raise TypeError(
                    f"{type(self).__name__} takes float waveforms in [-1, 1]. "
                    f"Received: inputs of dtype {dtype}; scale integer PCM first "
                    "(e.g. int16 samples / 32768)."
                )
        return ops.convert_to_tensor(inputs, dtype="float32")

    def _squeeze_input(self, inputs):
        if len(inputs.shape) == 3 and inputs.shape[-1] == 1:
            inputs = ops.squeeze(inputs, axis=-1)
        return inputs

    def _check_input_shape(self, input_shape):
        rank_ok = len(input_shape) == 2 or (
            len(input_shape) == 3 and input_shape[-1] == 1
        )
        if not rank_ok:
            raise ValueError(
                f"{type(self).__name__} expects mono waveforms of shape "
                f"(batch, samples) or (batch, samples, 1). "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self._check_length(input_shape[1])

    def _min_samples(self) -> int:
        """The fewest samples a clip needs (one analysis frame)."""
        return self._frame_length

    def _check_length(self, n) -> None:
        """Clips shorter than one frame are an error, not an empty or
        backend-specific failure (static lengths: at build and in eager calls)."""
        if isinstance(n, int) and n < self._min_samples():
            raise ValueError(
                f"{type(self).__name__} needs clips of at least "
                f"{self._min_samples()} samples (one analysis frame). Received: "
                f"clips of {n} samples. Pad short clips (e.g. `clip_seconds=` of "
                "audio_dataset) or use a longer crop."
            )

    def build(self, input_shape):
        self._check_input_shape(input_shape)
        super().build(input_shape)

    def _log_mel(self, signal):
        """`(batch, n)` waveform → `(batch, frames, mel bins)` log-mel."""
        frames = _frame(signal, self._frame_length, self._frame_step)
        if self.stft == "rfft":
            frames = frames * ops.convert_to_tensor(self._window32)
            real, imag = ops.rfft(frames, fft_length=self._fft_length)
        else:
            real = ops.matmul(frames, ops.convert_to_tensor(self._dft_real))
            imag = ops.matmul(frames, ops.convert_to_tensor(self._dft_imag))
        spectrum = real * real + imag * imag
        if self._power == 1:
            spectrum = ops.sqrt(spectrum)
        mel = ops.matmul(spectrum, ops.convert_to_tensor(self._mel32))
        if self._decibels:
            scale = 10.0 / math.log(10.0)
            return scale * ops.log(ops.maximum(mel, self._log_offset))
        return ops.log(mel + self._log_offset)

    def _num_frames(self, num_samples):
        if num_samples is None:
            return None
        return max(0, 1 + (num_samples - self._frame_length) // self._frame_step)


def check_stft(stft):
    if stft not in _STFT_MODES:
        return f"`stft` must be one of {_STFT_MODES}. Received: stft={stft!r}"
    return None


def raise_errors(errors):
    errors = [e for e in errors if e]
    if errors:
        raise ValueError("\n".join(errors))


def _is_positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@keras.saving.register_keras_serializable(package="keras_filterprune")
class VGGishLogMel(LogMelFrontEnd):
    """The VGGish log-mel front-end as a Keras layer.

    Implements `vggish_input.waveform_to_examples` of
    tensorflow/models research/audioset/vggish for 16 kHz mono audio in
    `[-1, 1]`: frames of 400 samples (25 ms) with a hop of 160 (10 ms), no padding
    (incomplete frames are dropped), periodic Hann window, `|rfft|` of length 512
    (257 magnitude bins, not power), 64 HTK-mel bands from 125 to 7500 Hz with
    the DC bin weighted 0, `log(mel + 0.01)`, then examples of 96 frames × 64 bands
    with a hop of `example_hop` frames.

    Output shapes, for `n` input samples, `F = 1 + (n - 400) // 160` frames and
    `E = 1 + (F - 96) // example_hop` examples:

    - `return_examples=True`: `(batch, E, 96, 64, 1)`; wrap a VGGish model in
      `keras.layers.TimeDistributed` to get one embedding per example.
    - `return_examples=False`: `(batch, F, 64, 1)`, the whole log-mel spectrogram.
      Clips of 15600 samples (0.975 s) give `F = 96`, exactly one VGGish input
      `(96, 64, 1)`, so `keras_filterprune.models.vggish()` can follow directly.

    Args:
        return_examples: Bool. Whether to cut the spectrogram into 96-frame
            examples. Defaults to `True`.
        example_hop: Int. Hop between examples, in frames. Defaults to `96`
            (0.96 s, no overlap, as the official code).
        stft: `"rfft"` (`keras.ops.rfft`; TFLite `RFFT2D`) or `"matmul"` (a
            windowed DFT matrix of shape `(400, 257)` for the real and imaginary
            parts; TFLite `FULLY_CONNECTED`, supported by every delegate and by
            int8 quantisation). Both give the same values up to float32 rounding.
            Defaults to `"rfft"`.
        **kwargs: Base layer keyword arguments (`name`, ...).

    Input shape:
        `(batch, samples)` or `(batch, samples, 1)`, float32, 16 kHz.

    Example:

    >>> layer = VGGishLogMel()
    >>> waveform = np.zeros((2, 15600), dtype="float32")
    >>> tuple(layer(waveform).shape)
    (2, 1, 96, 64, 1)
    >>> tuple(VGGishLogMel(return_examples=False)(waveform).shape)
    (2, 96, 64, 1)

    References:
        - Hershey et al., "CNN Architectures for Large-Scale Audio
          Classification", ICASSP 2017.
    """

    _default_name = "vggish_log_mel"

    def __init__(
        self,
        return_examples: bool = True,
        example_hop: int = 96,
        stft: str = "rfft",
        **kwargs,
    ):
        return_examples = check_bool(return_examples, "return_examples")
        errors = [check_stft(stft)]
        if not _is_positive_int(example_hop):
            errors.append(
                "`example_hop` must be a positive int. "
                f"Received: example_hop={example_hop!r}"
            )
        raise_errors(errors)
        super().__init__(
            frame_length=400,
            frame_step=160,
            fft_length=512,
            window="hann",
            mel_matrix=vggish_mel_matrix(),
            log_offset=0.01,
            stft=stft,
            **kwargs,
        )
        self.return_examples = return_examples
        self.example_hop = example_hop
        self.example_length = 96

    def call(self, inputs):
        signal = self._squeeze_input(self._as_float(inputs))
        self._check_length(signal.shape[1])
        log_mel = self._log_mel(signal)
        if self.return_examples:
            log_mel = _frame(log_mel, self.example_length, self.example_hop)
        return ops.expand_dims(log_mel, -1)

    def compute_output_shape(self, input_shape):
        self._check_input_shape(input_shape)
        frames = self._num_frames(input_shape[1])
        if not self.return_examples:
            return (input_shape[0], frames, 64, 1)
        examples = None
        if frames is not None:
            examples = max(0, 1 + (frames - self.example_length) // self.example_hop)
        return (input_shape[0], examples, self.example_length, 64, 1)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "return_examples": self.return_examples,
                "example_hop": self.example_hop,
                "stft": self.stft,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_filterprune")
class DCASELogMel(LogMelFrontEnd):
    """The log-mel front-end of the DCASE 2021 Task 1A baseline as a Keras layer.

    Reproduces `dcase_util.features.MelExtractor` with the baseline's settings
    (44.1 kHz mono; `win_length_seconds=0.04`, `hop_length_seconds=0.02`,
    `n_fft=2048`, `window_type="hamming_asymmetric"`,
    `spectrogram_type="magnitude"`, 40 mel bands 0–22050 Hz, `htk=False`,
    `logarithmic=True`), i.e. in librosa terms:

        S = |librosa.stft(y, n_fft=2048, hop_length=882, win_length=1764,
                          window=periodic_hamming(1764), center=True,
                          pad_mode="reflect")|
        features = log(librosa.filters.mel(sr=44100, n_fft=2048, n_mels=40,
                                           fmin=0, fmax=22050) @ S + eps)

    with `eps = np.spacing(1)`. `center=True` pads 1024 samples on both sides
    (reflection, the default of the librosa 0.8 the baseline used; librosa >= 0.10
    defaults to zeros, `pad_mode="constant"`), and the 1764-sample window sits in
    the middle of each 2048-sample frame. A clip of `n` samples gives
    `1 + n // 882` frames: 501 for 10 s; the baseline's sequencer keeps the first
    500, which `num_frames=500` reproduces.

    The baseline then standardises every mel band with statistics of the
    training set; add `keras.layers.Normalization(axis=1)` after this layer and
    `adapt()` it on training features to do the same.

    Output shape: `(batch, 40, frames, 1)`, ready for a `40×500×1` network such
    as `keras_filterprune.models.dcase21_net()`.

    Args:
        num_frames: Optional int. If set, the waveform is zero-padded at the end
            when too short and the output is cropped to exactly `num_frames`
            frames. Defaults to `None` (all `1 + n // 882` frames).
        pad_mode: `"reflect"` or `"constant"` (zeros): how the signal is padded
            by `n_fft // 2` at both ends. Defaults to `"reflect"`.
        stft: `"rfft"` (`keras.ops.rfft`; TFLite `RFFT2D`) or `"matmul"` (a
            windowed DFT matrix of shape `(1764, 1025)` for each of the real and
            imaginary parts: 14 MB of constants and about 3.6 M multiply-adds per
            frame, but only `FULLY_CONNECTED` ops). Defaults to `"rfft"`.
        **kwargs: Base layer keyword arguments (`name`, ...).

    Input shape:
        `(batch, samples)` or `(batch, samples, 1)`, float32, 44.1 kHz, at least
        1025 samples (reflection padding needs more samples than it pads).

    Example:

    >>> layer = DCASELogMel(num_frames=50)
    >>> waveform = np.random.default_rng(0).normal(size=(2, 44100))
    >>> tuple(layer(waveform.astype("float32")).shape)
    (2, 40, 50, 1)
    >>> layer.mel_matrix.shape
    (1025, 40)

    References:
        - Martín-Morató et al., "Low-complexity acoustic scene classification
          for multi-device audio: analysis of DCASE 2021 Challenge systems",
          DCASE 2021.
    """

    _default_name = "dcase_log_mel"

    def __init__(
        self,
        num_frames: int | None = None,
        pad_mode: str = "reflect",
        stft: str = "rfft",
        **kwargs,
    ):
        errors = [check_stft(stft)]
        if num_frames is not None and not _is_positive_int(num_frames):
            errors.append(
                "`num_frames` must be None or a positive int. "
                f"Received: num_frames={num_frames!r}"
            )
        if pad_mode not in ("reflect", "constant"):
            errors.append(
                "`pad_mode` must be 'reflect' or 'constant'. "
                f"Received: pad_mode={pad_mode!r}"
            )
        raise_errors(errors)
        fft_length = 2048
        super().__init__(
            frame_length=1764,
            frame_step=882,
            fft_length=fft_length,
            window="hamming",
            mel_matrix=slaney_mel_matrix(44100, fft_length, 40, 0.0, 22050.0),
            log_offset=float(np.spacing(1)),
            stft=stft,
            window_offset=(fft_length - 1764) // 2,
            **kwargs,
        )
        self.num_frames = num_frames
        self.pad_mode = pad_mode

    def _min_samples(self) -> int:
        if self.pad_mode != "reflect":
            return 1
        # Reflect padding by n_fft // 2 needs more samples than it pads.
        padded = 0 if self.num_frames is None else (self.num_frames - 1) * 882
        return 1 if padded > self._fft_length // 2 else self._fft_length // 2 + 1

    def call(self, inputs):
        signal = self._squeeze_input(self._as_float(inputs))
        self._check_length(signal.shape[1])
        half = self._fft_length // 2
        if self.num_frames is not None:
            needed = (self.num_frames - 1) * self._frame_step
            n = ops.shape(signal)[1]
            missing = max(0, needed - n) if isinstance(n, int) else None
            if missing is None:
                missing = ops.maximum(0, needed - n)
            if not isinstance(missing, int) or missing > 0:
                signal = ops.pad(signal, [[0, 0], [0, missing]])
        # librosa's centring: pad n_fft // 2 on both sides, then frame with the
        # (shorter) window centred in each n_fft-sample frame.
        signal = ops.pad(signal, [[0, 0], [half, half]], mode=self.pad_mode)
        offset = self._window_offset
        signal = signal[:, offset : ops.shape(signal)[1] - offset]
        log_mel = self._log_mel(signal)
        if self.num_frames is not None:
            log_mel = log_mel[:, : self.num_frames]
        return ops.expand_dims(ops.transpose(log_mel, (0, 2, 1)), -1)

    def compute_output_shape(self, input_shape):
        self._check_input_shape(input_shape)
        frames = self.num_frames
        if frames is None and input_shape[1] is not None:
            frames = 1 + input_shape[1] // self._frame_step
        return (input_shape[0], 40, frames, 1)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_frames": self.num_frames,
                "pad_mode": self.pad_mode,
                "stft": self.stft,
            }
        )
        return config


# The front-ends have no prunable channels: they turn waveforms into a fixed
# one-channel log-mel image, so the surgery copies them as they are.
register_handler(VGGishLogMel, FreezeHandler("audio front-end (fixed channels)"))
register_handler(DCASELogMel, FreezeHandler("audio front-end (fixed channels)"))
