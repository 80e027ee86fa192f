"""Audio at scale: streaming `audio_dataset` against the in-memory path, and the
front-end feature cache.

    python benchmarks/bench_audio_pipeline.py           # 2,500 ten-second clips
    python benchmarks/bench_audio_pipeline.py --quick   # 16 ten-second clips

The script writes a set of FLAC files (10 classes of noise and tones, 44.1 kHz,
16-bit; under `benchmarks/.cache`, kept between runs) whose decoded size as
float32 is ≥ 4 GB, then runs each measurement in a fresh process (so that its peak
RSS, `ru_maxrss`, is its own):

1. *streaming*: one epoch of `dcase21_net` on the whole set, decoded inside
   `tf.data`, with the `DCASELogMel` front-end in the pipeline (`features=`) and,
   second, inside the model (a waveform-input model);
2. *in memory* vs *streaming* on an eighth of the set (`streaming=False` decodes
   every clip up front), front-end in the model, two epochs, the second timed;
3. *feature cache*: `features=DCASELogMel(num_frames=500)`, `cache=<file>`: the
   input pipeline alone for two epochs (the first fills the cache, the second
   reads it), then a training epoch from the cache.

Goals (issue 16): peak RSS ≤ 1.5 GB on the full set; second cached epoch ≥ 3× faster
than the first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import _common  # a sibling module: benchmarks/ is first on sys.path

CLASSES = 10


def _generate(root: str, files: int, seconds: float, rate: int) -> None:
    import numpy as np
    import soundfile as sf

    done = os.path.join(root, f".complete-{files}-{seconds}-{rate}")
    if os.path.exists(done):
        return
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    start = time.perf_counter()
    for i in range(files):
        label = i % CLASSES
        path = os.path.join(root, f"class{label}", f"clip{i:05d}.flac")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tone = 0.2 * np.sin(2 * np.pi * (200 + 150 * label) * t)
        sf.write(path, tone + 0.05 * rng.standard_normal(t.size), rate)
        if i % 250 == 0:
            _common.log(f"wrote {i}/{files} files ({time.perf_counter() - start:.0f}s)")
    open(done, "w").close()


def _measure(args: argparse.Namespace) -> dict:
    """One measurement, in this (fresh) process."""
    import resource

    _common.configure(args.threads)
    import keras

    from keras_filterprune.audio import DCASELogMel, audio_dataset
    from keras_filterprune.models import dcase21_net

    files = None
    if args.subset:
        files = sorted(
            os.path.join(dirpath, name)
            for dirpath, _, names in os.walk(args.root)
            for name in names
            if name.endswith(".flac")
        )[: args.subset]
        labels = [int(os.path.basename(os.path.dirname(p))[5:]) for p in files]
    source = files if files else args.root
    kwargs = dict(
        labels=labels if files else None,
        sample_rate=44100,
        clip_seconds=args.seconds,
        batch_size=32,
        seed=0,
        num_workers=args.threads,
    )
    frames = 1 + int(args.seconds * 44100) // 882 - 1  # 500 for 10 s, as DCASE
    front_end = DCASELogMel(num_frames=frames)
    epochs = 2 if args.subset else 1  # a small set: the second epoch, warmed up
    pipeline = []
    if args.mode in ("waveform", "memory"):  # the front-end inside the model
        dataset = audio_dataset(source, streaming=args.mode == "waveform", **kwargs)
        inputs = keras.Input((int(args.seconds * 44100),))
        outputs = dcase21_net(input_shape=(40, frames, 1))(front_end(inputs))
        model = keras.Model(inputs, outputs)
    else:  # the front-end in the pipeline, its features cached or not
        cache = os.path.join(args.work, "features") if args.mode == "cache" else None
        dataset = audio_dataset(source, features=front_end, cache=cache, **kwargs)
        model = dcase21_net(input_shape=(40, frames, 1))
        if cache:  # the input pipeline alone: fill the cache, then read it
            for _ in range(2):
                start = time.perf_counter()
                for _ in dataset:
                    pass
                pipeline.append(time.perf_counter() - start)
    model.compile(
        "adam",
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
        run_eagerly=args.eager,  # --quick: a batch or two, tracing would dominate
    )
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.fit(dataset, epochs=1, verbose=0)
        times.append(time.perf_counter() - start)
    examples = len(dataset.examples)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "examples": examples,
        "seconds": times,
        "pipeline": pipeline,
        "peak_rss": rss,
    }


def _start(args, runs: list[tuple[str, int]]) -> subprocess.Popen:
    """Starts a fresh process that runs the measurements `runs` (`(mode,
    subset)`) in order; `_results` waits for it."""
    children = []
    for mode, subset in runs:
        work = _common.cache_dir(
            "audio_pipeline_work", f"{mode}-{subset}-{os.getpid()}"
        )
        for name in os.listdir(work):
            os.remove(os.path.join(work, name))
        children.append(
            {"mode": mode, "subset": subset, "work": work, "eager": args.quick}
        )
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        json.dumps(children),
        "--root",
        args.root,
        "--seconds",
        str(args.seconds),
        "--threads",
        str(args.threads),
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _results(process: subprocess.Popen, runs: list[tuple[str, int]]) -> list[dict]:
    """The results of the measurements `runs` that `process` made."""
    stdout, stderr = process.communicate()
    modes = ", ".join(mode for mode, _ in runs)
    if process.returncode != 0:
        raise RuntimeError(f"{modes} run failed:\n{stderr[-3000:]}")
    lines = stdout.strip().splitlines()[-len(runs) :]  # one JSON line per run
    results = [json.loads(line) for line in lines]
    for (mode, subset), result in zip(runs, results, strict=True):
        _common.log(f"{mode} (subset {subset or 'all'}): {result}")
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=2500)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--root", default=None, help=argparse.SUPPRESS)
    _common.add_common_args(parser, name="audio_pipeline")
    args = parser.parse_args(argv)
    if args.child:  # [{"mode", "subset", "work", "eager"}, ...]: measured here
        for child in json.loads(args.child):
            args.mode, args.subset, args.work, args.eager = (
                child["mode"],
                child["subset"],
                child["work"],
                child["eager"],
            )
            print(json.dumps(_measure(args)), flush=True)
        return 0
    if args.quick:
        args.files, args.seconds = 16, 10.0
    else:
        _common.configure(args.threads)
    watch = _common.Stopwatch()
    args.root = _common.cache_dir("audio_pipeline", f"{args.files}x{args.seconds:g}s")
    _generate(args.root, args.files, args.seconds, 44100)
    decoded = args.files * int(args.seconds * 44100) * 4
    subset = min(args.files, max(8, args.files // 8))
    runs = [
        ("features", 0),
        ("waveform", 0),
        ("waveform", subset),
        ("memory", subset),
        ("cache", 0),
    ]
    if args.quick:
        # All in one fresh process (its TensorFlow import is most of a quick
        # measurement; peak RSS is then the process's so far, meaningless as a
        # quick run's numbers are), while this one imports TensorFlow for the
        # report's header.
        child = _start(args, runs)
        _common.configure(args.threads)
        results = _results(child, runs)
    else:  # each measurement in a fresh process: its peak RSS is its own
        results = [_results(_start(args, [run]), [run])[0] for run in runs]
    features, waveform, small_stream, small_memory, cache = results

    def gib(n: float) -> str:
        return f"{n / 2**30:.2f} GiB"

    def rate(r: dict) -> str:
        return f"{r['examples'] / r['seconds'][-1]:.1f}"

    small = gib(decoded * subset / args.files)
    rows = [
        ("streaming, `features=DCASELogMel` in the pipeline", features["examples"],
         gib(decoded), rate(features), gib(features["peak_rss"])),
        ("streaming, `DCASELogMel` inside the model", waveform["examples"],
         gib(decoded), rate(waveform), gib(waveform["peak_rss"])),
        ("streaming, front-end in the model, subset (epoch 2)",
         small_stream["examples"], small, rate(small_stream),
         gib(small_stream["peak_rss"])),
        ("in memory (`streaming=False`), subset (epoch 2)", small_memory["examples"],
         small, rate(small_memory), gib(small_memory["peak_rss"])),
        ("training from the feature cache", cache["examples"], gib(decoded),
         rate(cache), gib(cache["peak_rss"])),
    ]  # fmt: skip
    fill, read = cache["pipeline"]
    speedup = fill / read
    training = float(rate(cache)) / float(rate(features))
    text = [
        f"## One epoch of DCASE21_Net on {args.files} × {args.seconds:g} s clips "
        "(44.1 kHz FLAC)",
        "",
        _common.table(
            ["pipeline", "clips", "decoded size", "clips/s (training)", "peak RSS"],
            rows,
        ),
        "",
        f"- Peak RSS streaming the whole set ({gib(decoded)} of decoded audio): "
        f"{gib(features['peak_rss'])} with the front-end in the pipeline (goal ≤ "
        f"1.5 GB: {'met' if features['peak_rss'] <= 1.5e9 else 'not met'}); "
        f"{gib(waveform['peak_rss'])} with it inside the model, where every training "
        "step holds a batch of waveforms and their STFT.",
        f"- Feature cache, input pipeline alone: epoch 1 (decode + STFT + write) "
        f"{fill:.1f} s, epoch 2 (read) {read:.1f} s: {speedup:.1f}× faster (goal "
        f"≥ 3×: {'met' if speedup >= 3 else 'not met'}). A training epoch from the "
        f"cache runs at {training:.2f}× the clips/s of one that decodes and computes "
        "the features"
        + (
            ": the network, not the input, bounds training here."
            if training < 1.5
            else "."
        ),
        f"- Streaming vs in memory on the subset: "
        f"{float(rate(small_stream)) / float(rate(small_memory)):.2f}× the "
        "throughput, at "
        f"{small_stream['peak_rss'] / small_memory['peak_rss']:.2f}× the peak RSS.",
    ]
    notes = (
        ["--quick: the five measurements in one process, one after the other (peak "
         "RSS is that process's so far), Keras run eagerly (no tracing); the numbers "
         "are meaningless"]
        if args.quick
        else []
    )  # fmt: skip
    header = _common.report_header("Audio pipeline at scale", watch, notes=notes)
    _common.write_report(
        _common.resolve_output(args, "bench_audio_pipeline"),
        header + "\n" + "\n".join(text),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
