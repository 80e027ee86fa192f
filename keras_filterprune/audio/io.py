"""Audio loading: `load_audio` and `audio_dataset` (soundfile + soxr).

soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, Opus, MP3, AIFF, ...) decodes and
soxr resamples. Both are the optional extra `audio` and are imported only when a
function here runs.
"""

import logging
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from keras_filterprune.exceptions import FilterPruneWarning

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


def _import_soundfile():
    try:
        import soundfile
    except ImportError as e:  # pragma: no cover - exercised by monkeypatching
        raise ImportError(
            f"Reading audio files needs the `soundfile` package. {_INSTALL_HINT}"
        ) from e
    return soundfile


def _import_soxr():
    try:
        import soxr
    except ImportError as e:  # pragma: no cover - exercised by monkeypatching
        raise ImportError(
            f"Resampling audio needs the `soxr` package. {_INSTALL_HINT}"
        ) from e
    return soxr


def _is_positive_int(value):
    return (
        isinstance(value, (int, np.integer))
        and not isinstance(value, bool)
        and (value > 0)
    )


def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resamples `audio` (samples first) with soxr's high-quality filter.

    Args:
        audio: Array of shape `(samples,)` or `(samples, channels)`.
        orig_rate: Int. Sample rate of `audio` in Hz.
        target_rate: Int. Wanted sample rate in Hz.

    Returns:
        Float32 array with `round(samples * target_rate / orig_rate)` samples.

    Example:

    >>> resample(np.zeros(16000, dtype="float32"), 16000, 8000).shape
    (8000,)
    """
    audio = np.asarray(audio, dtype=np.float32)
    if orig_rate == target_rate:
        return audio
    soxr = _import_soxr()
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
        FileNotFoundError: If `path` does not exist.
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
    if sample_rate is not None and not _is_positive_int(sample_rate):
        raise ValueError(
            "`sample_rate` must be None or a positive int. "
            f"Received: sample_rate={sample_rate!r}"
        )
    sf = _import_soundfile()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Audio file '{path}' does not exist.")
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError, ValueError) as e:
        raise ValueError(f"Could not decode audio file '{path}': {e}") from e
    if audio.shape[0] == 0:
        raise ValueError(f"Audio file '{path}' holds no samples.")
    if not np.all(np.isfinite(audio)):
        raise ValueError(f"Audio file '{path}' holds non-finite samples (NaN/inf).")
    audio = audio.mean(axis=1) if mono else audio
    if sample_rate is not None and sample_rate != rate:
        audio = resample(audio, rate, sample_rate)
        rate = sample_rate
    return np.ascontiguousarray(audio, dtype=np.float32), int(rate)


def _fit_length(audio, length):
    if audio.shape[0] >= length:
        return audio[:length]
    return np.pad(audio, (0, length - audio.shape[0]))


def _index_directory(directory, class_names, follow_links):
    subdirs = sorted(
        entry
        for entry in os.listdir(directory)
        if os.path.isdir(os.path.join(directory, entry)) and not entry.startswith(".")
    )
    if class_names is not None:
        unknown = [name for name in class_names if name not in subdirs]
        if unknown:
            raise ValueError(
                "`class_names` must name subdirectories of "
                f"'{directory}' ({subdirs}). Received: class_names={class_names}"
            )
        subdirs = list(class_names)
    paths, labels = [], []
    for label, subdir in enumerate(subdirs):
        root_dir = os.path.join(directory, subdir)
        found = []
        for root, dirs, files in os.walk(root_dir, followlinks=follow_links):
            dirs.sort()
            for name in sorted(files):
                if name.lower().endswith(AUDIO_EXTENSIONS):
                    found.append(os.path.join(root, name))
        paths.extend(found)
        labels.extend([label] * len(found))
    return paths, labels, subdirs


def _decode_all(paths, sample_rate, clip_samples, num_workers):
    """Decodes every file into one `(n, clip_samples)` array, in parallel."""
    clips = np.zeros((len(paths), clip_samples), dtype=np.float32)
    errors = [None] * len(paths)

    def work(index):
        try:
            audio, _ = load_audio(paths[index], sample_rate=sample_rate, mono=True)
        except (ValueError, FileNotFoundError) as e:
            errors[index] = str(e)
            return
        clips[index] = _fit_length(audio, clip_samples)

    if num_workers is None:
        num_workers = min(32, (os.cpu_count() or 1) + 4)
    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        list(pool.map(work, range(len(paths))))
    return clips, errors


def audio_dataset(
    paths_or_dir: str | os.PathLike | Sequence[str | os.PathLike],
    labels: Sequence[int] | None = None,
    *,
    sample_rate: int,
    clip_seconds: float,
    batch_size: int | None = 32,
    shuffle: bool = True,
    seed: int | None = None,
    on_error: str = "raise",
    class_names: Sequence[str] | None = None,
    follow_links: bool = False,
    num_workers: int | None = None,
):
    """Builds a `tf.data.Dataset` of `(waveform, label)` from audio files.

    Like `keras.utils.audio_dataset_from_directory`, but for every format
    soundfile reads, with resampling, and with fixed-length clips. A directory
    must hold one subdirectory per class (`directory/<class>/.../*.wav`); the
    labels are the indices of the sorted subdirectory names (or of
    `class_names`). Files are found recursively by extension
    (`AUDIO_EXTENSIONS`).

    Every file is decoded once, in parallel threads, converted to mono,
    resampled to `sample_rate`, cropped (keeping the start) or zero-padded at the
    end to `clip_seconds`, and held in memory (`files × samples × 4` bytes); the
    dataset then shuffles (a new permutation every epoch), batches and
    prefetches. Unreadable files are found before the dataset is returned,
    never replaced by silence.

    Args:
        paths_or_dir: A directory with one subdirectory per class, or a list of
            audio file paths.
        labels: Optional list of int labels. For a list of paths: one label per
            path (`None`: the dataset yields waveforms only). For a directory:
            one label per file in sorted path order, instead of inferring them
            from subdirectories. Defaults to `None`.
        sample_rate: Int. Sample rate of the waveforms, in Hz.
        clip_seconds: Float. Length of every waveform, in seconds.
        batch_size: Optional int. Defaults to `32`; `None` gives single examples.
        shuffle: Bool. Draw a new (seeded) permutation of the examples every
            epoch. Defaults to `True`.
        seed: Optional int seed of the shuffling. Defaults to `None`.
        on_error: `"raise"` (a `ValueError` naming the bad files) or `"skip"`
            (leave them out and warn with a `FilterPruneWarning` giving their
            count). Defaults to `"raise"`.
        class_names: Optional list of class names: for a directory, the
            subdirectories to use, in this label order; for a list of paths, just
            stored on the dataset. Defaults to `None`.
        follow_links: Bool. Follow symbolic links to directories. Defaults to
            `False`.
        num_workers: Optional int. Decoding threads. Defaults to `None`
            (`min(32, cpu_count + 4)`).

    Returns:
        A `tf.data.Dataset` yielding `(waveforms, labels)` (float32
        `(batch, samples)`, int32 `(batch,)`), or waveforms only when there are
        no labels. It has the attributes `class_names`, `file_paths` (the files
        kept, in index order: the order of the examples when `shuffle=False`),
        `sample_rate` and `skipped_files` (`(path, reason)` pairs).

    Raises:
        ValueError: For invalid arguments, an empty collection, or unreadable or
            empty files when `on_error="raise"`.
        ImportError: If soundfile or soxr is not installed.

    Example:

    >>> import os, tempfile
    >>> import soundfile as sf
    >>> root = tempfile.mkdtemp()
    >>> for name in ("dog", "cat"):
    ...     os.makedirs(os.path.join(root, name))
    ...     sf.write(os.path.join(root, name, "a.flac"), np.zeros(4000), 8000)
    >>> ds = audio_dataset(root, sample_rate=16000, clip_seconds=1.0, batch_size=2)
    >>> ds.class_names
    ['cat', 'dog']
    >>> waveforms, labels = next(iter(ds))
    >>> tuple(waveforms.shape), sorted(labels.numpy().tolist())
    ((2, 16000), [0, 1])
    """
    import tensorflow as tf

    errors = []
    if not _is_positive_int(sample_rate):
        errors.append(
            "`sample_rate` must be a positive int. "
            f"Received: sample_rate={sample_rate!r}"
        )
    if (
        not isinstance(clip_seconds, (int, float))
        or isinstance(clip_seconds, bool)
        or not clip_seconds > 0
    ):
        errors.append(
            "`clip_seconds` must be a positive number. "
            f"Received: clip_seconds={clip_seconds!r}"
        )
    if batch_size is not None and not _is_positive_int(batch_size):
        errors.append(
            "`batch_size` must be None or a positive int. "
            f"Received: batch_size={batch_size!r}"
        )
    if on_error not in ("raise", "skip"):
        errors.append(
            f"`on_error` must be 'raise' or 'skip'. Received: on_error={on_error!r}"
        )
    if num_workers is not None and not _is_positive_int(num_workers):
        errors.append(
            "`num_workers` must be None or a positive int. "
            f"Received: num_workers={num_workers!r}"
        )
    if errors:
        raise ValueError("\n".join(errors))
    _import_soundfile()
    _import_soxr()

    if isinstance(paths_or_dir, (str, os.PathLike)) and os.path.isdir(paths_or_dir):
        directory = os.fspath(paths_or_dir)
        if labels is None:
            paths, labels, class_names = _index_directory(
                directory, class_names, follow_links
            )
        else:
            if class_names is not None:
                raise ValueError(
                    "`class_names` can only be given with inferred labels "
                    "(`labels=None`) for a directory. "
                    f"Received: class_names={class_names}"
                )
            paths, _, _ = _index_directory(directory, None, follow_links)
            paths = sorted(paths)
        if not paths:
            raise ValueError(
                f"No audio files (extensions {AUDIO_EXTENSIONS}) were found in "
                f"class subdirectories of '{directory}'."
            )
    else:
        if isinstance(paths_or_dir, (str, os.PathLike)):
            if not os.path.isfile(paths_or_dir):
                raise ValueError(
                    "`paths_or_dir` must be a directory, an audio file or a list of "
                    f"audio files. Received: paths_or_dir={os.fspath(paths_or_dir)!r}"
                    " (not found)"
                )
            paths = [paths_or_dir]
        else:
            paths = list(paths_or_dir)
        paths = [os.fspath(p) for p in paths]
        if not paths:
            raise ValueError("`paths_or_dir` must name at least one file. Received: []")
        class_names = None if class_names is None else list(class_names)
    if labels is not None:
        if isinstance(labels, (str, bytes)) or not hasattr(labels, "__len__"):
            raise TypeError(
                f"`labels` must be a list of ints, one per file. Received: {labels!r}"
            )
        bad_labels = [
            label
            for label in labels
            if isinstance(label, (bool, np.bool_))
            or not isinstance(label, (int, np.integer))
            or label < 0
        ]
        if bad_labels:
            raise ValueError(
                "`labels` must hold non-negative int class indices (one per file; "
                "or leave `labels=None` to infer them from class subdirectories). "
                f"Received: labels containing {bad_labels[:5]!r}"
            )
        labels = [int(label) for label in labels]
        if len(labels) != len(paths):
            raise ValueError(
                f"`labels` must have one label per file ({len(paths)} files). "
                f"Received: {len(labels)} labels"
            )

    clip_samples = int(round(clip_seconds * sample_rate))
    clips, decode_errors = _decode_all(paths, sample_rate, clip_samples, num_workers)
    bad = [(p, e) for p, e in zip(paths, decode_errors, strict=True) if e is not None]
    if bad:
        listing = "\n".join(f"  {reason}" for _, reason in bad[:10])
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        if on_error == "raise":
            raise ValueError(
                f"{len(bad)} of {len(paths)} audio files could not be read "
                f"(pass on_error='skip' to leave them out):\n{listing}{more}"
            )
        warnings.warn(
            f"Skipped {len(bad)} of {len(paths)} audio files that could not be read "
            f"or hold no samples:\n{listing}{more}",
            FilterPruneWarning,
            stacklevel=2,
        )
        keep = np.array([e is None for e in decode_errors])
        if not keep.any():
            raise ValueError("None of the audio files could be read.")
        clips = clips[keep]
        paths = [p for p, k in zip(paths, keep, strict=True) if k]
        if labels is not None:
            labels = [label for label, k in zip(labels, keep, strict=True) if k]

    logger.info(
        "Loaded %d audio files%s.",
        len(paths),
        f" of {len(class_names)} classes" if class_names else "",
    )

    # The clips stay in one tensor; the dataset shuffles indices (a full
    # permutation every epoch) and gathers whole batches from it.
    clips_tensor = tf.convert_to_tensor(clips)
    dataset = tf.data.Dataset.range(len(paths))
    if shuffle:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if batch_size is not None:
        dataset = dataset.batch(batch_size)
    if labels is None:
        dataset = dataset.map(
            lambda index: tf.gather(clips_tensor, index),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        label_tensor = tf.constant(labels, dtype=tf.int32)
        dataset = dataset.map(
            lambda index: (
                tf.gather(clips_tensor, index),
                tf.gather(label_tensor, index),
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    dataset.class_names = class_names
    dataset.file_paths = paths
    dataset.sample_rate = sample_rate
    dataset.skipped_files = bad
    return dataset
