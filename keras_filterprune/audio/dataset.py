"""`audio_dataset`: a `tf.data.Dataset` of clips from audio files, streamed.

Files are indexed and their headers scanned up front (cheap: the last block of
every file is read, which also finds truncated files); the waveforms are decoded
inside the `tf.data` pipeline, in parallel and in a deterministic order, so that
memory stays bounded by the batch, shuffle and prefetch sizes whatever the size of
the dataset. Decoded clips or front-end features can be cached in memory or on
disk with `tf.data`'s own `cache`; a disk cache's file name holds a hash of all it
depends on, so a changed file, list or setting never reads an old cache.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from keras_filterprune._validation import check_bool
from keras_filterprune.audio._cache import cache_key, cache_prefix
from keras_filterprune.audio.io import (
    AUDIO_EXTENSIONS,
    import_soundfile,
    import_soxr,
    is_positive_int,
    load_audio,
    non_finite_message,
)
from keras_filterprune.exceptions import FilterPruneWarning

__all__ = ["audio_dataset"]

logger = logging.getLogger(__name__)


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


def _workers(num_workers):
    return max(1, num_workers or min(32, (os.cpu_count() or 1) + 4))


#: Subtypes stored as floating point: the only ones that can hold NaN or Inf.
_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")


def _scan_one(path):
    """`(seconds, None)` from the header, or `(None, reason)`. Reads the last
    block too, which finds truncated files without decoding the rest, and every
    sample of floating-point files, which finds NaN and Inf before training."""
    sf = import_soundfile()
    try:
        with sf.SoundFile(path) as f:
            frames, rate = f.frames, f.samplerate
            if frames <= 0:
                return None, f"Audio file '{path}' holds no samples."
            start = 0 if f.subtype in _FLOAT_SUBTYPES else max(0, frames - 1024)
            f.seek(start)
            read = 0
            for block in f.blocks(1 << 16, dtype="float32", always_2d=True):
                finite = np.isfinite(block).all(axis=1)
                if not finite.all():
                    first = start + read + int(np.argmin(finite))
                    return None, non_finite_message(path, first, rate)
                read += block.shape[0]
    except (sf.SoundFileError, RuntimeError, OSError, ValueError) as e:
        return None, f"Could not decode audio file '{path}': {e}"
    if read == 0:
        return None, f"Audio file '{path}' ends before its header says."
    return frames / rate, None


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

    with ThreadPoolExecutor(max_workers=_workers(num_workers)) as pool:
        list(pool.map(work, range(len(paths))))
    return clips, errors


def _check_arguments(**a) -> None:
    errors = []
    if not is_positive_int(a["sample_rate"]):
        errors.append(
            "`sample_rate` must be a positive int. "
            f"Received: sample_rate={a['sample_rate']!r}"
        )
    clip_seconds = a["clip_seconds"]
    if (
        not isinstance(clip_seconds, numbers.Real)
        or isinstance(clip_seconds, (bool, np.bool_))
        or not 0 < clip_seconds < math.inf
    ):
        errors.append(
            "`clip_seconds` must be a positive number (finite). "
            f"Received: clip_seconds={clip_seconds!r}"
        )
    elif (
        is_positive_int(a["sample_rate"]) and round(clip_seconds * a["sample_rate"]) < 1
    ):
        errors.append(
            "`clip_seconds` must hold at least one sample at `sample_rate`="
            f"{a['sample_rate']}. Received: clip_seconds={clip_seconds!r}"
        )
    seed = a["seed"]
    if seed is not None and (
        isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral)
    ):
        errors.append(f"`seed` must be None or an int. Received: seed={seed!r}")
    for name in ("batch_size", "num_workers", "shuffle_buffer"):
        if a[name] is not None and not is_positive_int(a[name]):
            errors.append(
                f"`{name}` must be None or a positive int. Received: {name}={a[name]!r}"
            )
    if a["on_error"] not in ("raise", "skip"):
        errors.append(
            "`on_error` must be 'raise' or 'skip'. "
            f"Received: on_error={a['on_error']!r}"
        )
    if a["crop"] not in ("start", "random"):
        errors.append(
            f"`crop` must be 'start' or 'random'. Received: crop={a['crop']!r}"
        )
    if not is_positive_int(a["clips_per_file"]):
        errors.append(
            "`clips_per_file` must be a positive int. "
            f"Received: clips_per_file={a['clips_per_file']!r}"
        )
    elif a["clips_per_file"] > 1 and a["crop"] == "random":
        errors.append(
            "`clips_per_file` > 1 takes consecutive clips; with crop='random' each "
            "file gives one random clip per epoch. Received: clips_per_file="
            f"{a['clips_per_file']}, crop='random'"
        )
    cache = a["cache"]
    if cache is not None and not (
        cache == "memory" or isinstance(cache, (str, os.PathLike))
    ):
        errors.append(
            "`cache` must be None, 'memory' or a file path prefix. "
            f"Received: cache={cache!r}"
        )
    elif isinstance(cache, str) and (
        not cache.strip() or (cache != "memory" and cache.strip().lower() == "memory")
    ):
        errors.append(
            "`cache` must be None, 'memory' (lower case) or a file path prefix; "
            f"{cache!r} would write cache files named after it in the current "
            f"directory. Received: cache={cache!r}"
        )
    elif cache is not None and a["crop"] == "random":
        errors.append(
            "`cache` keeps what the first epoch decoded; random crops change every "
            "epoch. Use crop='start' with a cache. Received: crop='random'"
        )
    elif cache not in (None, "memory"):
        cache = os.fspath(cache)
        directory = (
            cache
            if cache.endswith(("/", os.sep))
            else os.path.dirname(os.path.abspath(cache))
        )
        if not os.path.isdir(directory):
            errors.append(
                f"`cache`: the directory '{directory}' of cache='{cache}' does not "
                "exist. Create it first (`os.makedirs`), or pass cache='memory'."
            )
    if a["features"] is not None and not callable(a["features"]):
        errors.append(
            "`features` must be None or a callable (a Keras layer such as "
            f"DCASELogMel). Received: features={a['features']!r}"
        )
    if not a["streaming"] and (
        a["crop"] != "start" or a["clips_per_file"] != 1 or cache is not None
    ):
        errors.append(
            "`streaming=False` loads one clip per file into memory: crop, "
            "clips_per_file and cache need the streaming pipeline."
        )
    if errors:
        raise ValueError("\n".join(errors))


def _collect(paths_or_dir, labels, class_names, follow_links):
    """The files, their labels and the class names, checked."""
    _check_paths(paths_or_dir)
    if class_names is not None:
        class_names = _check_class_names(class_names)
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
            _check_paths(paths)
        paths = [os.fspath(p) for p in paths]
        if not paths:
            raise ValueError("`paths_or_dir` must name at least one file. Received: []")
        class_names = None if class_names is None else list(class_names)
    if labels is not None:
        if isinstance(labels, (str, bytes, Mapping, Set)) or not hasattr(
            labels, "__len__"
        ):
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
    return paths, labels, class_names


def _check_paths(paths_or_dir):
    """A path, or a list of paths (str or os.PathLike), else a TypeError."""
    if isinstance(paths_or_dir, (str, os.PathLike)):
        return
    if isinstance(paths_or_dir, (bytes, Mapping)) or not isinstance(
        paths_or_dir, Iterable
    ):
        raise TypeError(
            "`paths_or_dir` must be a directory, an audio file or a list of audio "
            f"files (str or os.PathLike). Received: {paths_or_dir!r}"
        )
    if isinstance(paths_or_dir, Iterator):
        return  # read once by `_collect`; its items are checked there
    bad = [p for p in paths_or_dir if not isinstance(p, (str, os.PathLike))]
    if bad:
        raise TypeError(
            "`paths_or_dir` must list audio file paths (str or os.PathLike). "
            f"Received: items {bad[:5]!r}"
        )


def _check_class_names(class_names):
    if isinstance(class_names, (str, bytes)) or not isinstance(class_names, Iterable):
        raise TypeError(
            "`class_names` must be a list of class names (str). "
            f"Received: class_names={class_names!r}"
        )
    class_names = list(class_names)
    if not all(isinstance(name, str) for name in class_names):
        raise TypeError(
            f"`class_names` must hold str. Received: class_names={class_names!r}"
        )
    repeated = sorted({name for name in class_names if class_names.count(name) > 1})
    if repeated:
        raise ValueError(
            f"`class_names` names {repeated} more than once: each class is one "
            f"label. Received: class_names={class_names!r}"
        )
    return class_names


def _check_not_empty(dataset, clip_seconds, features):
    """A front-end that turns every clip into nothing (e.g. VGGish examples of
    0.96 s from shorter clips) is an error now, not at the first batch."""
    import tensorflow as tf

    spec = dataset.element_spec
    spec = spec[0] if isinstance(spec, tuple) else spec
    if isinstance(spec, tf.TensorSpec) and 0 in tuple(spec.shape):
        raise ValueError(
            f"`features` turns every clip of `clip_seconds`={clip_seconds} into an "
            f"empty tensor of shape {tuple(spec.shape)}: make the clips longer or "
            f"change the front-end's settings. Received: features={features!r}"
        )


def _report(bad, total, on_error):
    if not bad:
        return
    listing = "\n".join(f"  {reason}" for _, reason in bad[:10])
    more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
    if on_error == "raise":
        raise ValueError(
            f"{len(bad)} of {total} audio files could not be read "
            f"(pass on_error='skip' to leave them out):\n{listing}{more}"
        )
    if len(bad) == total:
        raise ValueError("None of the audio files could be read.")
    warnings.warn(
        f"Skipped {len(bad)} of {total} audio files that could not be read "
        f"or hold no samples:\n{listing}{more}",
        FilterPruneWarning,
        stacklevel=3,
    )


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
    crop: str = "start",
    clips_per_file: int = 1,
    features: Callable | None = None,
    cache: str | os.PathLike | None = None,
    shuffle_buffer: int | None = None,
    streaming: bool = True,
):
    """Builds a `tf.data.Dataset` of `(waveform, label)` from audio files.

    Like `keras.utils.audio_dataset_from_directory`, but for every format
    soundfile reads, with resampling, fixed-length clips and bounded memory. A
    directory must hold one subdirectory per class (`directory/<class>/.../*.wav`);
    the labels are the indices of the sorted subdirectory names (or of
    `class_names`). Files are found recursively by extension
    (`AUDIO_EXTENSIONS`).

    Every file's header is read up front, with its last block (which finds
    truncated files): unreadable and empty files are reported before the dataset
    is returned, never replaced by silence, without decoding everything. The
    waveforms are then decoded inside the pipeline (`num_workers` files at a time,
    in a deterministic order), converted to mono, resampled to `sample_rate` with
    soxr, and cropped (from the start, or at a random offset every epoch) or
    zero-padded at the end to `clip_seconds`. Shuffling draws a new permutation
    of the *files* every epoch (no waveform is held for it), so memory stays
    bounded by the batch and prefetch sizes whatever the dataset size. Files
    stored as floating point (e.g. WAV `FLOAT`), the only ones that can hold NaN
    or Inf, are read whole by the scan: a non-finite sample is a bad file. A
    compressed file damaged in its middle fails when the pipeline reaches it,
    naming it.

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
        shuffle: Bool. A new (seeded) order every epoch. Defaults to `True`.
        seed: Optional int seed of the shuffling and random crops. Defaults to
            `None`.
        on_error: `"raise"` (a `ValueError` naming the bad files) or `"skip"`
            (leave them out and warn with a `FilterPruneWarning` giving their
            count). Defaults to `"raise"`.
        class_names: Optional list of class names: for a directory, the
            subdirectories to use, in this label order; for a list of paths, just
            stored on the dataset. Defaults to `None`.
        follow_links: Bool. Follow symbolic links to directories. Defaults to
            `False`.
        num_workers: Optional int. Files decoded in parallel. Defaults to `None`
            (`min(32, cpu_count + 4)`).
        crop: `"start"` (keep the beginning) or `"random"` (a random window of
            every file that is longer than the clip, new every epoch: training
            augmentation). Defaults to `"start"`.
        clips_per_file: Int. Cut long files into up to this many consecutive
            clips (the last one zero-padded), each an example with the file's
            label. Defaults to `1`.
        features: Optional callable applied to each clip after decoding, e.g. a
            front-end layer (`DCASELogMel()`): the dataset then yields features,
            and `cache` stores them (so a second epoch skips decoding and the
            STFT). Defaults to `None` (waveforms).
        cache: `None`, `"memory"`, or a directory or file path prefix on disk:
            cache the decoded clips (or features) with `tf.data.Dataset.cache`
            during the first epoch; later epochs read them back. A disk cache's
            file name (`dataset.cache_path`: `<prefix>-<key>`, or
            `<directory>/audio_dataset-<key>`) holds a hash of all the cached
            tensors depend on: the files kept (path, size, modification time;
            the contents of files modified in the last seconds), labels, clips,
            `sample_rate`, `clip_seconds` and `features` (a layer's class, config
            and weights; a function's code, closure and the globals it reads), so
            a changed or added file or setting makes a new cache instead of
            reading an old one. Old caches stay on disk until deleted. Its
            directory must be writable (checked here) unless the cache is
            complete. With a cache, shuffling happens after it, over a buffer of
            `shuffle_buffer` examples. Needs `crop="start"`. Defaults to `None`.
        shuffle_buffer: Optional int. Examples in the shuffle buffer when a cache
            is used. Defaults to `None`: all of them for `"memory"`, 256 for a
            file cache.
        streaming: Bool. `False` decodes every clip into one in-memory array
            first (the behaviour of earlier releases: `files × samples × 4`
            bytes; fastest when the set fits). Defaults to `True`.

    Returns:
        A `tf.data.Dataset` yielding `(waveforms, labels)` (float32
        `(batch, samples)`, int32 `(batch,)`), features instead of waveforms with
        `features=`, or no labels when there are none. It has the attributes
        `class_names`, `file_paths` (the files kept, in index order),
        `examples` (`(path, clip index)` per example: the order of the examples
        when `shuffle=False`), `sample_rate`, `skipped_files`
        (`(path, reason)` pairs) and `cache_path` (the disk cache's file prefix,
        or `None`).

    Raises:
        TypeError: For a non-bool `shuffle`, `follow_links` or `streaming`,
            `labels` that are not a list, or paths, `class_names` or a `seed` of
            the wrong type.
        ValueError: For invalid arguments (also a `features` front-end that
            makes every clip empty), an empty collection, or unreadable, empty
            or non-finite files when `on_error="raise"`.
        PermissionError: If a disk `cache` must be written in a directory that
            is not writable.
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
    shuffle = check_bool(shuffle, "shuffle")
    follow_links = check_bool(follow_links, "follow_links")
    streaming = check_bool(streaming, "streaming")
    _check_arguments(
        sample_rate=sample_rate,
        clip_seconds=clip_seconds,
        batch_size=batch_size,
        num_workers=num_workers,
        shuffle_buffer=shuffle_buffer,
        on_error=on_error,
        crop=crop,
        clips_per_file=clips_per_file,
        cache=cache,
        features=features,
        streaming=streaming,
        seed=seed,
    )
    import_soundfile()
    import_soxr()
    paths, labels, class_names = _collect(
        paths_or_dir, labels, class_names, follow_links
    )
    clip_samples = int(round(clip_seconds * sample_rate))
    cache_path = None
    if streaming:
        with ThreadPoolExecutor(max_workers=_workers(num_workers)) as pool:
            scanned = list(pool.map(_scan_one, paths))
        errors = [reason for _, reason in scanned]
    else:
        clips, errors = _decode_all(paths, sample_rate, clip_samples, num_workers)
    bad = [(p, e) for p, e in zip(paths, errors, strict=True) if e is not None]
    _report(bad, len(paths), on_error)
    keep = [e is None for e in errors]
    kept_paths = [p for p, k in zip(paths, keep, strict=True) if k]
    if labels is not None:
        labels = [label for label, k in zip(labels, keep, strict=True) if k]
    logger.info(
        "Indexed %d audio files%s.",
        len(kept_paths),
        f" of {len(class_names)} classes" if class_names else "",
    )
    if streaming:
        seconds = [s for (s, _), k in zip(scanned, keep, strict=True) if k]
        examples = [
            (i, c)
            for i, s in enumerate(seconds)
            for c in range(min(clips_per_file, max(1, math.ceil(s / clip_seconds))))
        ]
        if cache not in (None, "memory"):
            key = cache_key(
                kept_paths, labels, examples, sample_rate, clip_samples, features
            )
            cache_path = cache_prefix(cache, key)
            cache = cache_path
        options = dict(
            crop=crop,
            cache=cache,
            shuffle=shuffle,
            seed=seed,
            features=features,
            num_workers=num_workers,
            shuffle_buffer=shuffle_buffer,
        )
        dataset = _streaming_pipeline(
            kept_paths, labels, examples, sample_rate, clip_samples, options
        )
    else:
        examples = [(i, 0) for i in range(len(kept_paths))]
        dataset = _memory_pipeline(clips[np.asarray(keep)], labels, shuffle, seed)
    if features is not None:
        _check_not_empty(dataset, clip_seconds, features)
    if batch_size is not None:
        dataset = dataset.batch(batch_size)
    dataset = dataset.prefetch(2)
    dataset.class_names = class_names
    dataset.file_paths = kept_paths
    dataset.examples = [(kept_paths[i], c) for i, c in examples]
    dataset.sample_rate = sample_rate
    dataset.skipped_files = bad
    dataset.cache_path = cache_path
    return dataset


def _memory_pipeline(clips, labels, shuffle, seed):
    """One tensor of clips; the dataset shuffles indices and gathers from it."""
    import tensorflow as tf

    clips_tensor = tf.convert_to_tensor(clips)
    dataset = tf.data.Dataset.range(len(clips))
    if shuffle:
        dataset = dataset.shuffle(len(clips), seed=seed, reshuffle_each_iteration=True)
    if labels is None:
        return dataset.map(lambda index: tf.gather(clips_tensor, index))
    label_tensor = tf.constant(labels, dtype=tf.int32)
    return dataset.map(
        lambda index: (tf.gather(clips_tensor, index), tf.gather(label_tensor, index))
    )


def _streaming_pipeline(paths, labels, examples, sample_rate, clip_samples, opts):
    import tensorflow as tf

    crop, cache, shuffle = opts["crop"], opts["cache"], opts["shuffle"]
    seed, features = opts["seed"], opts["features"]

    def decode(file_index, clip_index, u):
        path = paths[int(file_index)]
        audio, _ = load_audio(path, sample_rate=sample_rate, mono=True)
        start = int(clip_index) * clip_samples
        if crop == "random" and audio.shape[0] > clip_samples:
            start = int(float(u) * (audio.shape[0] - clip_samples + 1))
        return _fit_length(audio[start:], clip_samples).astype(np.float32)

    files = tf.constant([i for i, _ in examples], dtype=tf.int64)
    clip_ids = tf.constant([c for _, c in examples], dtype=tf.int64)
    label_tensor = None if labels is None else tf.constant(labels, dtype=tf.int32)
    dataset = tf.data.Dataset.range(len(examples))
    if shuffle and cache is None:  # a permutation of file indices: no waveforms
        dataset = dataset.shuffle(
            len(examples), seed=seed, reshuffle_each_iteration=True
        )
    randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    dataset = tf.data.Dataset.zip((dataset, randoms))

    def load(index, r):
        u = tf.cast(r % (2**31), tf.float64) / 2.0**31
        clip = tf.numpy_function(
            decode, [files[index], clip_ids[index], u], tf.float32, stateful=False
        )
        clip.set_shape((clip_samples,))
        if features is not None:
            clip = features(tf.expand_dims(clip, 0))[0]
            if clip.dtype.is_floating:  # audio is checked by the scan; features here
                clip = tf.debugging.check_numerics(
                    clip,
                    "audio_dataset: `features` returned NaN or Inf for a clip of "
                    "finite audio (e.g. the log of a zero power): fix the front-end "
                    "(add an epsilon before a log)",
                )
        if label_tensor is None:
            return clip
        return clip, label_tensor[files[index]]

    workers = opts["num_workers"] or tf.data.AUTOTUNE
    dataset = dataset.map(load, num_parallel_calls=workers, deterministic=True)
    if cache is not None:
        dataset = dataset.cache("" if cache == "memory" else os.fspath(cache))
        if shuffle:
            buffer = opts["shuffle_buffer"] or (
                len(examples) if cache == "memory" else 256
            )
            dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    return dataset
