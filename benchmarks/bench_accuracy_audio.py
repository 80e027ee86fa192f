"""Accuracy of filter pruning on spoken digits: DCASE21_Net- and VGGish-style CNNs.

    python benchmarks/bench_accuracy_audio.py            # full run (~30 min, 2 cores)
    python benchmarks/bench_accuracy_audio.py --quick    # smoke run (~20 s)
    python benchmarks/bench_accuracy_audio.py --models dcase --seeds 0

The audio half of the evidence for Singh & Plumbley's claims (operator-norm
pruning holds accuracy better than entry-wise norms at high ratios and matches
active criteria), on speech nobody here recorded: the ten digit words spoken by
espeak-ng (`keras_filterprune.datasets.spoken_digits`, default set: 5 English
accents × 10 voice variants × 3 speeds × 3 pitches = 4,500 clips), with a
speaker-disjoint split (2 of the 10 variants, all accents, held out for testing).
The clips are synthesised once into `benchmarks/.cache/` (ignored by git).

Both networks take raw waveforms: the log-mel front-end is a layer of the model
(`keras_filterprune.audio`), followed by a per-band `Normalization` with training
statistics (the DCASE baseline standardises its features), and pruning runs on the
whole model (front-ends have no prunable channels and are copied as they are).

- `dcase`: DCASE21_Net (the DCASE 2021 Task 1A baseline) on `DCASELogMel`
  (44.1 kHz, 40 mel bands, 20 ms hop). The digits last under a second, so the
  input is 1 s = 50 frames instead of 10 s = 500, and the second max-pool is 4×10
  instead of 4×100; everything else (7×7 convs 16-16-32 with BN, 5×5 pool,
  dropout 0.3, Dense 100) is the baseline's, with the same 46,246 parameters.
- `vggish`: `VGGishLogMel` (16 kHz, 96 frames × 64 bands = one 0.975 s example)
  and VGGish's conv stack at 1/8 width (8, pool, 16, pool, 32-32, pool, 64-64,
  pool; 3×3 ReLU, 2×2 pools), global average pooling and a linear classifier.

Each seed's baseline is trained once; every criterion × ratio cell prunes the same
trained weights, is evaluated, fine-tuned with the same budget and evaluated
again. Results: `benchmarks/results/bench_accuracy_audio.md`.
"""

from __future__ import annotations

import argparse
import sys

import _common as common
import numpy as np

NAME = "bench_accuracy_audio"
DEFAULT_SEEDS = (0, 1)
DEFAULT_RATIOS = (0.5, 0.75, 0.9)
DEFAULT_CRITERIA = (
    "operator_norm",
    "l1_norm",
    "geometric_median",
    "random",
    "mean_activation",
)
MODELS = ("dcase", "vggish")
SYNTH_RATE = 22050  # espeak-ng's own rate: both front-ends resample from it
QUICK_VOICES = ["en-us+m1", "en-us+f1", "en-gb+m3", "en-gb+f2"]
DCASE_FRAMES = 50
VGGISH_SAMPLES = 15600  # 96 frames of 10 ms + the 25 ms window


def synthesise(quick: bool, cache: str | None) -> dict:
    from keras_filterprune.datasets import spoken_digits

    if quick:
        directory = cache or common.cache_dir("spoken_digits_quick")
        return spoken_digits(
            directory,
            voices=QUICK_VOICES,
            speeds=[160],
            pitches=[50],
            sample_rate=SYNTH_RATE,
        )
    directory = cache or common.cache_dir("spoken_digits")
    return spoken_digits(directory, sample_rate=SYNTH_RATE, verbose=0)


def load_split(directory: str, sample_rate: int, clip_seconds: float):
    """All clips of a split as arrays `(waveforms, labels)`, in file order."""
    from keras_filterprune.audio import audio_dataset

    ds = audio_dataset(
        directory,
        sample_rate=sample_rate,
        clip_seconds=clip_seconds,
        batch_size=1024,
        shuffle=False,
    )
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys).astype("int32")


def band_statistics(frontend, waveforms, axis: int, batch: int = 256):
    """Mean and variance of every mel band of `frontend(waveforms)`."""
    total, total_sq, count = 0.0, 0.0, 0
    reduce = tuple(a for a in range(4) if a != axis)
    for start in range(0, len(waveforms), batch):
        feats = np.asarray(frontend(waveforms[start : start + batch]), np.float64)
        total = total + feats.sum(axis=reduce)
        total_sq = total_sq + (feats**2).sum(axis=reduce)
        count += feats.size // feats.shape[axis]
    mean = total / count
    return mean, np.maximum(total_sq / count - mean**2, 1e-6)


def dcase_style(mean, variance, num_classes=10, frames=DCASE_FRAMES):
    """DCASE21_Net on `DCASELogMel`, the time axis shrunk to `frames`."""
    import keras
    from keras import layers

    from keras_filterprune.audio import DCASELogMel

    samples = (frames - 1) * 882 + 1  # DCASELogMel gives 1 + n // 882 frames
    inputs = keras.Input((samples,), name="waveform")
    x = DCASELogMel(num_frames=frames, name="log_mel")(inputs)
    x = layers.Normalization(axis=1, mean=mean, variance=variance, name="norm")(x)
    for index, filters in enumerate((16, 16, 32), start=1):
        x = layers.Conv2D(filters, 7, padding="same", name=f"conv{index}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"bn{index}")(x)
        x = layers.Activation("relu", name=f"relu{index}")(x)
        if index == 2:
            x = layers.MaxPooling2D((5, 5), name="pool1")(x)
            x = layers.Dropout(0.3, name="dropout1")(x)
        elif index == 3:
            x = layers.MaxPooling2D((4, frames // 5), name="pool2")(x)
            x = layers.Dropout(0.3, name="dropout2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(100, activation="relu", name="dense1")(x)
    x = layers.Dropout(0.3, name="dropout3")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="dcase21_style")


def vggish_style(mean, variance, num_classes=10, widths=(8, 16, 32, 64)):
    """`VGGishLogMel` + VGGish's conv stack at reduced width, GAP, linear head."""
    import keras
    from keras import layers

    from keras_filterprune.audio import VGGishLogMel

    def conv(filters, name):
        return layers.Conv2D(filters, 3, padding="same", activation="relu", name=name)

    def pool(name):
        return layers.MaxPooling2D(2, strides=2, padding="same", name=name)

    inputs = keras.Input((VGGISH_SAMPLES,), name="waveform")
    x = VGGishLogMel(return_examples=False, name="log_mel")(inputs)
    x = layers.Normalization(axis=2, mean=mean, variance=variance, name="norm")(x)
    x = pool("pool1")(conv(widths[0], "conv1")(x))
    x = pool("pool2")(conv(widths[1], "conv2")(x))
    x = conv(widths[2], "conv3_2")(conv(widths[2], "conv3_1")(x))
    x = pool("pool3")(x)
    x = conv(widths[3], "conv4_2")(conv(widths[3], "conv4_1")(x))
    x = pool("pool4")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="vggish_style")


def prepare(name: str, paths: dict):
    """`(build, train, test, description)` of one model."""
    from keras_filterprune.audio import DCASELogMel, VGGishLogMel

    if name == "dcase":
        rate, samples = 44100, (DCASE_FRAMES - 1) * 882 + 1
        frontend, axis = DCASELogMel(num_frames=DCASE_FRAMES), 1
    else:
        rate, samples = 16000, VGGISH_SAMPLES
        frontend, axis = VGGishLogMel(return_examples=False), 2
    clip = samples / rate
    train = load_split(paths["train"], rate, clip)
    test = load_split(paths["test"], rate, clip)
    train = (train[0][:, :samples], train[1])
    test = (test[0][:, :samples], test[1])
    mean, var = band_statistics(frontend, train[0], axis)
    builder = dcase_style if name == "dcase" else vggish_style
    return (lambda: builder(mean, var)), train, test, f"{rate} Hz, {clip:.3f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(
        parser,
        name=NAME,
        seeds=DEFAULT_SEEDS,
        ratios=DEFAULT_RATIOS,
        criteria=DEFAULT_CRITERIA,
    )
    parser.add_argument("--models", nargs="+", choices=MODELS, default=None)
    parser.add_argument(
        "--cache-dir", default=None, help="where the clips are synthesised"
    )
    parser.add_argument("--epochs", type=int, default=None, help="baseline (10)")
    parser.add_argument("--ft-epochs", type=int, default=None, help="fine-tune (2)")
    parser.add_argument(
        "--active-examples", type=int, default=256, help="data for active criteria"
    )
    args = parser.parse_args(argv)
    watch = common.Stopwatch()
    common.configure(args.threads)

    quick = args.quick
    seeds = args.seeds or ([0] if quick else list(DEFAULT_SEEDS))
    ratios = args.ratios or ([0.5] if quick else list(DEFAULT_RATIOS))
    criteria = common.check_criteria(
        args.criteria or (["l1_norm", "mean_activation"] if quick else DEFAULT_CRITERIA)
    )
    models = args.models or list(MODELS)
    fit = common.FitConfig(
        epochs=args.epochs or (1 if quick else 10),
        ft_epochs=args.ft_epochs or (1 if quick else 2),
        batch_size=32 if quick else 64,
        run_eagerly=quick,
    )

    paths = synthesise(quick, args.cache_dir)
    common.log(
        f"spoken digits: {paths['num_files']} files "
        f"({paths['generated']} synthesised now) in {watch.lap():.0f} s"
    )

    sections, claim_rows, data_notes = [], [], []
    for name in models:
        build, train, test, desc = prepare(name, paths)
        active_x = train[0][: args.active_examples]
        data_notes.append(f"`{name}`: {desc} clips")
        runs, baselines = [], []
        for seed in seeds:
            base, acc, seconds = common.train_baseline(build, train, test, fit, seed)
            common.log(f"{name} seed {seed}: baseline {acc:.4f} in {seconds:.0f} s")
            baselines.append(acc)
            runs.append(
                common.prune_grid(
                    base,
                    criteria=criteria,
                    ratios=ratios,
                    train=train,
                    test=test,
                    active_x=active_x,
                    fit=fit,
                    seed=seed,
                    label=name,
                )
            )
        from keras_filterprune import count_macs
        from keras_filterprune.profile import count_params

        model = build()
        sections += [
            f"## {model.name}: {count_params(model):,} parameters, "
            f"{count_macs(model) / 1e6:.2f} M MACs per clip (front-end excluded)",
            "",
            common.grid_report(runs, baselines, criteria, ratios),
            "",
        ]
        for row in common.criteria_claims(runs, criteria, ratios):
            claim_rows.append([f"{model.name}: {row[0]}", *row[1:]])

    notes = [
        f"Data: espeak-ng spoken digits, {paths['num_files']['train']:,} training and "
        f"{paths['num_files']['test']:,} test clips; test speakers (held out): "
        + ", ".join(paths["test_voices"])
        + "; "
        + "; ".join(data_notes)
        + (" (--quick: 4 voices, numbers meaningless)" if quick else "")
        + ".",
        "Training: " + fit.describe() + ".",
        f"Active criteria score {args.active_examples} training clips.",
        f"Criteria: {', '.join(criteria)}; ratios {ratios} (fraction of the "
        "filters of every channel group removed; the classifier output is frozen).",
        "Accuracies are in %; ± is the sample standard deviation over seeds. "
        "Paired differences compare cells of the same seed (same baseline); "
        + common.VERDICT_RULE
        + ".",
    ]
    claims = [
        "## Claims: operator norm vs the other criteria (paired differences, points)",
        "",
        common.table(common.CRITERIA_CLAIM_HEADERS, claim_rows),
        "",
    ]
    text = "\n".join(
        [
            common.report_header(
                "Pruning accuracy on spoken digits (audio)",
                watch,
                seeds=seeds,
                notes=notes,
            ),
            *claims,
            *sections,
        ]
    )
    common.write_report(common.resolve_output(args, NAME), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
