"""Audio loading: `load_audio` and `resample` (soundfile + soxr).

soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, Opus, MP3, AIFF, ...) decodes and
soxr resamples. Both are the optional extra `audio` and are imported only when a
function here runs.
"""

import logging
import os

import numpy as np

from keras_filterprune._validation import check_bool

logger = logging.getLogger(__name__)

#: File extensions `audio_dataset` indexes in a directory (compared lower-case).
AUDIO_EXTENSIONS = (
    ".wav",
    ".wave",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".aif",
    ".aiff",
    ".aifc",
    ".au",
    ".snd",
    ".caf",
    ".w64",
    ".rf64",
)

_INSTALL_HINT = "Install the audio extra: `pip install keras-filterprune[audio]`."


def import_soundfile():
    try:
        import soundfile
    except ImportError as e:  # pragma: no cover - exercised by monkeypatching
        raise ImportError(
            f"Reading audio files needs the `soundfile` package. {_INSTALL_HINT}"
        ) from e
    return soundfile


def import_soxr():
    try:
        import soxr
    except ImportError as e:  # pragma: no cover - exercised by monkeypatching
        raise ImportError(
            f"Resampling audio needs the `soxr` package. {_INSTALL_HINT}"
        ) from e
    return soxr


def is_positive_int(value):
    return (
        isinstance(value, (int, np.integer))
        and not isinstance(value, bool)
        and (value > 0)
    )


def non_finite_message(path: str, first: int, rate: int) -> str:
    """The error for a file holding NaN or Inf, `first` the index of the first
    bad frame."""
    return (
        f"Audio file '{path}' holds non-finite samples (NaN/inf), the first at "
        f"frame {first} ({first / rate:.3f} s): a model fed them learns NaN. "
        "Repair or re-export the file, or remove it from the data."
    )


def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resamples `audio` (samples first) with soxr's high-quality filter.

    Args:
        audio: Array of shape `(samples,)` or `(samples, channels)`.
        orig_rate: Int. Sample rate of `audio` in Hz.
        target_rate: Int. Wanted sample rate in Hz.

    Returns:
        Float32 array with `round(samples * target_rate / orig_rate)` samples.

    Raises:
        ValueError: A rate that is not a positive int, an array that is not 1-D
            or 2-D, or samples that are NaN or Inf.

    Example:

    >>> resample(np.zeros(16000, dtype="float32"), 16000, 8000).shape
    (8000,)
    """
    errors = [
        f"`{name}` must be a positive int (Hz). Received: {name}={value!r}"
        for name, value in (("orig_rate", orig_rate), ("target_rate", target_rate))
        if not is_positive_int(value)
    ]
    if errors:
        raise ValueError("\n".join(errors))
    try:
        audio = np.asarray(audio, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"`audio` must be an array of samples. Received: {type(audio).__name__}"
        ) from e
    if audio.ndim not in (1, 2):
        raise ValueError(
            "`audio` must have shape (samples,) or (samples, channels). "
            f"Received: shape {audio.shape}"
        )
    if not np.all(np.isfinite(audio)):
        raise ValueError(
            "`audio` holds NaN or Inf samples: resampling would spread them over "
            "the whole clip. Clean the audio first (e.g. `np.nan_to_num`)."
        )
    if orig_rate == target_rate:
        return audio
    soxr = import_soxr()
    return np.asarray(soxr.resample(audio, orig_rate, target_rate), dtype=np.float32)


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    mono: bool = True,
) -> tuple[np.ndarray, int]:
    """Reads an audio file into a float32 array, optionally resampled.

    Any format libsndfile reads works (WAV, FLAC, OGG/Vorbis, Opus, MP3, AIFF,
    ...); integer PCM is scaled to `[-1, 1]`.

    Args:
        path: Path of the audio file.
        sample_rate: Optional int. Resample to this rate (Hz) with soxr. Defaults
            to `None` (keep the file's rate).
        mono: Bool. Average the channels into one. Defaults to `True`.

    Returns:
        Tuple `(audio, sample_rate)`: `audio` has shape `(samples,)` when
        `mono=True`, else `(samples, channels)`.

    Raises:
        TypeError: If `mono` is not a bool or `path` is not a path.
        FileNotFoundError: If `path` does not exist.
        IsADirectoryError: If `path` is a directory.
        ValueError: If the file cannot be decoded, holds no samples or holds
            non-finite samples; the message names the file.
        ImportError: If soundfile (or soxr, when resampling) is not installed.

    Example:

    >>> import os, tempfile
    >>> import soundfile as sf
    >>> path = os.path.join(tempfile.mkdtemp(), "tone.flac")
    >>> t = np.arange(8000) / 8000
    >>> sf.write(path, 0.5 * np.sin(2 * np.pi * 440 * t), 8000)
    >>> audio, rate = load_audio(path, sample_rate=16000)
    >>> audio.shape, audio.dtype, rate
    ((16000,), dtype('float32'), 16000)
    """
    if sample_rate is not None and not is_positive_int(sample_rate):
        raise ValueError(
            "`sample_rate` must be None or a positive int. "
            f"Received: sample_rate={sample_rate!r}"
        )
    mono = check_bool(mono, "mono")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            "`path` must be the path of an audio file (str or os.PathLike). "
            f"Received: path={path!r}"
        )
    sf = import_soundfile()
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"Audio file '{path}' is a directory: pass a file, or use "
            "`audio_dataset` for a directory of files."
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Audio file '{path}' does not exist.")
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError, ValueError) as e:
        raise ValueError(f"Could not decode audio file '{path}': {e}") from e
    if audio.shape[0] == 0:
        raise ValueError(f"Audio file '{path}' holds no samples.")
    finite = np.isfinite(audio).all(axis=1)
    if not finite.all():
        first = int(np.argmin(finite))
        raise ValueError(non_finite_message(path, first, rate))
    audio = audio.mean(axis=1) if mono else audio
    if sample_rate is not None and sample_rate != rate:
        audio = resample(audio, rate, sample_rate)
        rate = sample_rate
    return np.ascontiguousarray(audio, dtype=np.float32), int(rate)
