"""A spoken-digit benchmark synthesised locally with espeak-ng (no download)."""

import io
import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

import numpy as np

#: The words spoken for the classes "0" … "9".
DIGIT_WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
)

_DEFAULT_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029")
_DEFAULT_VARIANTS = ("f1", "f2", "f3", "f4", "m1", "m2", "m3", "m4", "m5", "m7")
_DEFAULT_SPEEDS = (130, 160, 190)
_DEFAULT_PITCHES = (35, 50, 65)
_TEST_FRACTION = 0.2
_METADATA = "spoken_digits.json"
_ESPEAK = "espeak-ng"


def _espeak_path():
    path = shutil.which(_ESPEAK)
    if path is None:
        raise RuntimeError(
            "spoken_digits() synthesises speech with espeak-ng, which was not found "
            "on PATH. Install it, e.g. `sudo apt-get install espeak-ng` on "
            "Debian/Ubuntu (`brew install espeak-ng` on macOS)."
        )
    return path


def _known_voices(espeak):
    """Languages/voice names and variant names this espeak-ng installation has."""

    def columns(args):
        result = subprocess.run(
            [espeak, *args], capture_output=True, text=True, check=False
        )
        rows = [line.split() for line in result.stdout.splitlines()[1:]]
        return [row for row in rows if len(row) >= 5]

    bases = set()
    for row in columns(["--voices"]):
        bases.update((row[1], row[3], row[4]))
    variants = set()
    for row in columns(["--voices=variant"]):
        variants.update((row[3], row[4].split("/")[-1]))
    return bases, variants


def _speaker(voice):
    """The speaker identity of a voice: its variant (`en-us+f3` → `f3`)."""
    return voice.split("+", 1)[1] if "+" in voice else voice


def _default_test_voices(voices):
    """Holds out about 20% of the speakers (variants), spread over the sorted list."""
    speakers = sorted({_speaker(v) for v in voices})
    n_test = max(1, round(_TEST_FRACTION * len(speakers)))
    chosen = {speakers[int((j + 0.5) * len(speakers) / n_test)] for j in range(n_test)}
    return [v for v in voices if _speaker(v) in chosen]


def _file_stem(voice, speed, pitch):
    safe = re.sub(r"[^A-Za-z0-9-]+", "_", voice)
    return f"{safe}_s{speed}_p{pitch}"


def _synthesise(espeak, voice, speed, pitch, word, sample_rate, path):
    import soundfile as sf

    from keras_filterprune.audio.io import resample

    result = subprocess.run(
        [espeak, "-z", "-v", voice, "-s", str(speed), "-p", str(pitch)]
        + ["--stdout", word],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0 or len(result.stdout) <= 44:
        message = result.stderr.decode(errors="replace").strip()
        raise RuntimeError(
            f"espeak-ng failed for voice={voice!r}, speed={speed}, pitch={pitch}, "
            f"word={word!r}: {message or 'no audio produced'}"
        )
    audio, rate = sf.read(io.BytesIO(result.stdout), dtype="float32")
    audio = resample(audio, rate, sample_rate)
    audio = np.clip(audio, -1.0, 1.0)
    tmp = f"{path}.tmp.wav"
    sf.write(tmp, audio, sample_rate, subtype="PCM_16")
    os.replace(tmp, path)


def _check_ints(name, values, low, high, errors):
    ok = (
        isinstance(values, (list, tuple))
        and len(values) > 0
        and all(
            isinstance(v, int) and not isinstance(v, bool) and low <= v <= high
            for v in values
        )
    )
    if not ok:
        errors.append(
            f"`{name}` must be a non-empty list of ints in [{low}, {high}]. "
            f"Received: {name}={values!r}"
        )


def spoken_digits(
    directory: str | os.PathLike,
    *,
    voices: Sequence[str] | None = None,
    speeds: Sequence[int] | None = None,
    pitches: Sequence[int] | None = None,
    sample_rate: int = 16000,
    test_voices: Sequence[str] | None = None,
    overwrite: bool = False,
    num_workers: int | None = None,
    verbose: int = 0,
) -> dict:
    """Synthesises a spoken-digit data set (real speech signals) with espeak-ng.

    Every digit word ("zero" … "nine") is spoken by every voice at every speed
    and pitch, resampled to `sample_rate` with soxr and written as 16-bit WAV to
    `directory/{train,test}/{0..9}/<voice>_s<speed>_p<pitch>.wav`, the layout
    `keras_filterprune.audio.audio_dataset` reads. Clips last 0.4–0.7 s at the
    default speeds (espeak-ng's final pause is switched off with `-z`), so
    `clip_seconds=1.0` holds every word.

    The split is speaker-disjoint: a voice is in `train` or in `test`, never
    both. By default about 20% of the *speakers* are held out, where the speaker
    of a voice `"<accent>+<variant>"` is its variant (the voice timbre): all
    accents of a held-out variant go to `test`, so no test timbre is heard in
    training. With the defaults (5 English accents × 10 variants, 3 speeds,
    3 pitches) that is 4,500 files, about 30 s on two cores.

    Generation is idempotent: existing files are kept unless `overwrite=True`.
    The voices of each split are recorded in `directory/spoken_digits.json`; a
    later call that would move a voice to the other split raises instead of
    mixing speakers.

    Args:
        directory: Output directory (created if needed).
        voices: Optional list of espeak-ng voices, e.g. `["en-us+m1",
            "en-gb+f3"]` (see `espeak-ng --voices=en` and
            `espeak-ng --voices=variant`). Defaults to `None`: the accents
            en-us, en-gb, en-gb-scotland, en-gb-x-rp, en-029 with the variants
            f1–f4, m1–m5, m7 (50 voices).
        speeds: Optional list of speaking rates in words per minute, each in
            [80, 450]. Defaults to `None`: `(130, 160, 190)`.
        pitches: Optional list of pitches in [0, 99]. Defaults to `None`:
            `(35, 50, 65)`.
        sample_rate: Int. Sample rate of the WAV files, in Hz. Defaults to
            `16000`.
        test_voices: Optional list of the voices (a subset of `voices`) that form
            the test split. Defaults to `None` (hold out ~20% of the speakers as
            described above; at least one).
        overwrite: Bool. Synthesise files that already exist again. Defaults to
            `False`.
        num_workers: Optional int. Parallel espeak-ng processes. Defaults to
            `None` (the number of CPUs).
        verbose: Int. 1 shows a progress bar. Defaults to `0`.

    Returns:
        A dict with `"train"` and `"test"` (the split directories, as strings),
        `"class_names"` (`["0", …, "9"]`), `"train_voices"`, `"test_voices"`,
        `"num_files"` (`{"train": int, "test": int}`) and `"generated"` (files
        written by this call).

    Raises:
        RuntimeError: If espeak-ng is not installed or fails.
        ValueError: For invalid arguments, voices this espeak-ng does not have,
            or a split that conflicts with the one already in `directory`.
        ImportError: If soundfile or soxr is not installed.

    Example:

    The synthesis calls are skipped as doctests: they need espeak-ng (a Debian
    package) and take seconds.

    >>> from keras_filterprune.audio import audio_dataset
    >>> from keras_filterprune.datasets import DIGIT_WORDS, spoken_digits
    >>> DIGIT_WORDS[7]  # the word spoken for class "7"
    'seven'
    >>> paths = spoken_digits("digits", voices=["en-us+m1", "en-gb+f3"],
    ...                       speeds=[160], pitches=[50])  # doctest: +SKIP
    >>> paths["train_voices"], paths["test_voices"]  # doctest: +SKIP
    (['en-gb+f3'], ['en-us+m1'])
    >>> paths["num_files"]  # doctest: +SKIP
    {'train': 10, 'test': 10}
    >>> train = audio_dataset(paths["train"], sample_rate=16000,
    ...                       clip_seconds=1.0)  # doctest: +SKIP
    """
    from keras_filterprune.audio.io import import_soundfile, import_soxr

    voices = (
        [f"{a}+{v}" for a in _DEFAULT_ACCENTS for v in _DEFAULT_VARIANTS]
        if (voices is None)
        else voices
    )
    speeds = list(_DEFAULT_SPEEDS) if speeds is None else speeds
    pitches = list(_DEFAULT_PITCHES) if pitches is None else pitches
    errors = []
    voices_ok = (
        isinstance(voices, (list, tuple))
        and len(voices) > 1
        and all(isinstance(v, str) and v for v in voices)
        and len(set(voices)) == len(voices)
    )
    if not voices_ok:
        errors.append(
            "`voices` must be a list of at least two distinct voice names. "
            f"Received: voices={voices!r}"
        )
    _check_ints("speeds", speeds, 80, 450, errors)
    _check_ints("pitches", pitches, 0, 99, errors)
    if (
        not isinstance(sample_rate, int)
        or isinstance(sample_rate, bool)
        or (sample_rate <= 0)
    ):
        errors.append(
            "`sample_rate` must be a positive int. "
            f"Received: sample_rate={sample_rate!r}"
        )
    if num_workers is not None and (
        not isinstance(num_workers, int)
        or isinstance(num_workers, bool)
        or (num_workers < 1)
    ):
        errors.append(
            "`num_workers` must be None or a positive int. "
            f"Received: num_workers={num_workers!r}"
        )
    if not isinstance(directory, (str, os.PathLike)):
        errors.append(
            "`directory` must be a path (str or os.PathLike). "
            f"Received: directory={directory!r}"
        )
    elif os.path.exists(directory) and not os.path.isdir(directory):
        errors.append(
            f"`directory` '{os.fspath(directory)}' is a file; pass a directory "
            "(created if needed)."
        )
    if not isinstance(overwrite, (bool, np.bool_)):
        errors.append(f"`overwrite` must be a bool. Received: overwrite={overwrite!r}")
    if isinstance(verbose, bool) or verbose not in (0, 1):
        errors.append(f"`verbose` must be 0 or 1. Received: verbose={verbose!r}")
    if voices_ok and test_voices is not None:
        test_ok = (
            isinstance(test_voices, (list, tuple))
            and len(test_voices) > 0
            and set(test_voices) <= set(voices)
            and len(set(test_voices)) < len(set(voices))
        )
        if not test_ok:
            errors.append(
                "`test_voices` must be a non-empty proper subset of `voices`. "
                f"Received: test_voices={test_voices!r}"
            )
    if errors:
        raise ValueError("\n".join(errors))

    espeak = _espeak_path()
    import_soundfile()
    import_soxr()
    bases, variants = _known_voices(espeak)
    unknown = []
    for voice in voices:
        base, _, variant = voice.partition("+")
        if base not in bases or (variant and variant not in variants):
            unknown.append(voice)
    if unknown:
        raise ValueError(
            f"espeak-ng has no voice {unknown} (voices are '<language>' or "
            "'<language>+<variant>', see `espeak-ng --voices=en` and "
            f"`espeak-ng --voices=variant`). Received: voices={voices!r}"
        )

    if test_voices is None:
        test_voices = _default_test_voices(voices)
    test_set = set(test_voices)
    split_of = {v: ("test" if v in test_set else "train") for v in voices}
    train_voices = [v for v in voices if split_of[v] == "train"]
    test_voices = [v for v in voices if split_of[v] == "test"]

    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    metadata_path = os.path.join(directory, _METADATA)
    recorded = {}
    if os.path.isfile(metadata_path):
        try:
            with open(metadata_path, encoding="utf-8") as f:
                metadata = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError included
            raise ValueError(
                f"'{metadata_path}' (the record of which voice is in which split) "
                f"is not valid JSON ({e}). Delete the directory '{directory}' and "
                "generate the data set again."
            ) from e
        if not isinstance(metadata, dict) or not isinstance(
            metadata.get("split_of_voice", {}), dict
        ):
            raise ValueError(
                f"'{metadata_path}' is not a spoken_digits record (a JSON object "
                f"with 'split_of_voice'). Delete the directory '{directory}' and "
                "generate the data set again."
            )
        recorded = metadata.get("split_of_voice", {})
        if metadata.get("sample_rate", sample_rate) != sample_rate and not overwrite:
            raise ValueError(
                f"'{directory}' holds files at {metadata['sample_rate']} Hz; pass "
                "overwrite=True to synthesise them again at "
                f"sample_rate={sample_rate}, or use another directory."
            )
    moved = sorted(v for v in voices if v in recorded and recorded[v] != split_of[v])
    if moved:
        raise ValueError(
            f"'{directory}' already holds the voices {moved} in the other split; "
            "generating them again would put one speaker in both splits. Use "
            "another directory, or delete this one."
        )
    recorded.update(split_of)

    jobs, num_files = [], {"train": 0, "test": 0}
    stems = {}
    for voice in voices:
        split = split_of[voice]
        for speed in speeds:
            for pitch in pitches:
                stem = _file_stem(voice, speed, pitch)
                if stems.setdefault(stem, voice) != voice:
                    raise ValueError(
                        f"The voices {stems[stem]!r} and {voice!r} map to the same "
                        f"file name '{stem}'. Received: voices={voices!r}"
                    )
                for digit, word in enumerate(DIGIT_WORDS):
                    path = os.path.join(directory, split, str(digit), f"{stem}.wav")
                    num_files[split] += 1
                    if overwrite or not os.path.isfile(path):
                        jobs.append((voice, speed, pitch, word, path))

    for split in ("train", "test"):
        for digit in range(10):
            os.makedirs(os.path.join(directory, split, str(digit)), exist_ok=True)
    progbar = None
    if verbose and jobs:
        import keras

        progbar = keras.utils.Progbar(len(jobs), unit_name="file")
    workers = num_workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(
                _synthesise, espeak, voice, speed, pitch, word, sample_rate, path
            )
            for voice, speed, pitch, word, path in jobs
        ]
        try:
            for done, future in enumerate(as_completed(futures), start=1):
                future.result()
                if progbar is not None:
                    progbar.update(done)
        except BaseException:
            for future in futures:
                future.cancel()
            raise

    with open(metadata_path, "w", encoding="utf-8") as f:
        json.dump(
            {"sample_rate": sample_rate, "split_of_voice": recorded},
            f,
            indent=1,
            sort_keys=True,
        )
    return {
        "train": os.path.join(directory, "train"),
        "test": os.path.join(directory, "test"),
        "class_names": [str(d) for d in range(10)],
        "train_voices": train_voices,
        "test_voices": test_voices,
        "num_files": num_files,
        "generated": len(jobs),
    }
