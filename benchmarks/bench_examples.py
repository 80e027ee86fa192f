"""Pruning inside `fit` on three of Keras' own examples, as a user would.

    python benchmarks/bench_examples.py            # full run (~45 min, 2 cores)
    python benchmarks/bench_examples.py --quick    # smoke run (< 1 min)
    python benchmarks/bench_examples.py --examples mnist --seeds 0 1

The model code is copied from keras.io (only the data differ; see each builder):

- `mnist`: "Simple MNIST convnet" (Conv 32, pool, Conv 64, pool, Flatten,
  Dropout 0.5, Dense softmax), on Fashion-MNIST (Debian's
  `dataset-fashion-mnist`), 5 seeds.
- `speaker`: "Speaker Recognition" (five residual Conv1D blocks 16-32-64-128-128
  over the FFT magnitude of 1 s of 16 kHz audio, Dense 256-128, softmax), on the
  spoken digits espeak-ng synthesises (`keras_filterprune.datasets.spoken_digits`,
  speaker-disjoint split; 2,400 training clips), 2 seeds.
- `xception`: "Image classification from scratch" (the small Xception-like net:
  Rescaling, Conv 128/2, three residual blocks of SeparableConv 256-512-728 with
  BatchNorm, SeparableConv 1024, one logit), on Fashion-MNIST's pullover vs
  shirt (its binary case, a single-logit head), 2 seeds.

Per example and seed, all with the example's optimizer, loss and batch size:

1. **unpruned**: trained `--epochs` epochs.
2. **PruningCallback**: the same training with one
   `PruningCallback(target_macs="50%", mode="hard", epochs=(1, 2, 3),
   calibration_data=x_train[:512])`: the MAC budget is spent over three events
   and met at the last one; `pruned_model()` is evaluated. Its MACs are counted
   on the pruned model (`count_macs`) and must land within ±3 % of half.
3. **+ fine-tune** vs **+ Distiller**: the pruned model trained `--finetune`
   more epochs, plainly or with `Distiller(student, teacher=unpruned)` at its
   defaults, then BatchNorm recalibrated (`recalibrate_batchnorm`).

Results: `benchmarks/results/bench_examples.md` (rewritten after each example,
so a long run keeps what it finished). `--stage train` runs steps 1–2 only and
keeps their models in `benchmarks/.cache/bench_examples/`, where a later full run
finds them (same seed and epochs) and only runs step 3.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys

import _common as common
import numpy as np

NAME = "bench_examples"
EXAMPLES = ("mnist", "speaker", "xception")
SEEDS = {"mnist": (0, 1, 2, 3, 4), "speaker": (0, 1), "xception": (0, 1)}
BATCH = {"mnist": 128, "speaker": 128, "xception": 128}
SPEAKER_RATE = 16000
SPEAKER_TRAIN = 2400
XCEPTION_CLASSES = (2, 6)  # pullover vs shirt
QUICK_VOICES = ["en-us+m1", "en-us+f1", "en-gb+m3", "en-gb+f2"]


# -- Keras' example models (keras.io, Keras 3 versions) -----------------------
def mnist_convnet(input_shape=(28, 28, 1), num_classes=10):
    """keras.io/examples/vision/mnist_convnet."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax"),
        ]
    )


def speaker_net(input_shape=(SPEAKER_RATE // 2, 1), num_classes=10):
    """keras.io/examples/audio/speaker_recognition_using_cnn."""
    import keras

    def residual_block(x, filters, conv_num=3, activation="relu"):
        s = keras.layers.Conv1D(filters, 1, padding="same")(x)
        for _ in range(conv_num - 1):
            x = keras.layers.Conv1D(filters, 3, padding="same")(x)
            x = keras.layers.Activation(activation)(x)
        x = keras.layers.Conv1D(filters, 3, padding="same")(x)
        x = keras.layers.Add()([x, s])
        x = keras.layers.Activation(activation)(x)
        return keras.layers.MaxPool1D(pool_size=2, strides=2)(x)

    inputs = keras.layers.Input(shape=input_shape, name="input")
    x = residual_block(inputs, 16, 2)
    x = residual_block(x, 32, 2)
    x = residual_block(x, 64, 3)
    x = residual_block(x, 128, 3)
    x = residual_block(x, 128, 3)
    x = keras.layers.AveragePooling1D(pool_size=3, strides=3)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(256, activation="relu")(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="output")(x)
    return keras.models.Model(inputs=inputs, outputs=outputs)


def xception_small(input_shape=(28, 28, 1), num_classes=2):
    """keras.io/examples/vision/image_classification_from_scratch."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(128, 3, strides=2, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    previous_block_activation = x  # Set aside residual
    for size in [256, 512, 728]:
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = layers.Conv2D(size, 1, strides=2, padding="same")(
            previous_block_activation
        )
        x = layers.add([x, residual])  # Add back residual
        previous_block_activation = x  # Set aside next residual
    x = layers.SeparableConv2D(1024, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    units = 1 if num_classes == 2 else num_classes
    x = layers.Dropout(0.25)(x)
    outputs = layers.Dense(units, activation=None)(x)
    return keras.Model(inputs, outputs)


def compile_as_example(model, name: str, eager: bool = False) -> None:
    """The example's optimizer and loss; `eager` (--quick): no tracing, which
    would dominate a fit of a few batches."""
    import keras

    if name == "xception":
        model.compile(
            keras.optimizers.Adam(3e-4),
            keras.losses.BinaryCrossentropy(from_logits=True),
            run_eagerly=eager,
        )
    else:
        model.compile("adam", "sparse_categorical_crossentropy", run_eagerly=eager)


# -- data ---------------------------------------------------------------------
def load(name: str, quick: bool):
    from keras_filterprune.datasets import fashion_mnist

    if name == "mnist":
        subset = (256, 128) if quick else None
        return fashion_mnist(subset=subset)
    if name == "xception":
        (x, y), (xt, yt) = fashion_mnist(normalize=False)
        pick, pick_t = np.isin(y, XCEPTION_CLASSES), np.isin(yt, XCEPTION_CLASSES)
        x, y = x[pick].astype("float32"), (y[pick] == XCEPTION_CLASSES[1])
        xt, yt = xt[pick_t].astype("float32"), (yt[pick_t] == XCEPTION_CLASSES[1])
        if quick:
            x, y, xt, yt = x[:32], y[:32], xt[:32], yt[:32]  # a costly net
        return (x, y.astype("float32")), (xt, yt.astype("float32"))
    return speaker_data(quick)


def speaker_data(quick: bool):
    """FFT magnitudes of 1 s of spoken digits at 16 kHz, as the example feeds."""
    from bench_accuracy_audio import load_split

    from keras_filterprune.datasets import spoken_digits

    if quick:
        paths = spoken_digits(
            common.cache_dir("spoken_digits_quick_16k"),
            voices=QUICK_VOICES,
            speeds=[160],
            pitches=[50],
            sample_rate=SPEAKER_RATE,
        )
    else:
        paths = spoken_digits(
            common.cache_dir("spoken_digits_16k"), sample_rate=SPEAKER_RATE
        )

    def fft(waveforms):
        spectrum = np.abs(np.fft.fft(waveforms, axis=1)[:, : SPEAKER_RATE // 2])
        return spectrum[..., None].astype("float32")

    x, y = load_split(paths["train"], SPEAKER_RATE, 1.0)
    xt, yt = load_split(paths["test"], SPEAKER_RATE, 1.0)
    order = np.random.default_rng(0).permutation(len(x))[:SPEAKER_TRAIN]
    return (fft(x[order]), y[order]), (fft(xt), yt)


# -- one seed -----------------------------------------------------------------
def accuracy(model, x, y) -> float:
    out = np.asarray(model.predict(x, batch_size=256, verbose=0))
    if out.shape[-1] == 1:
        predicted = (out[:, 0] > 0).astype("float32")
    else:
        predicted = np.argmax(out, axis=-1)
    return float(np.mean(predicted == y))


def copy_of(model):
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def trained(name, build, train, test, seed, epochs, cache, eager=False) -> tuple:
    """Steps 1 and 2 (the unpruned and the PruningCallback run): `(teacher,
    pruned, row)`, from `cache` when an earlier run of the same seed and epochs
    saved them there (`--stage train` makes them ahead of the recovery)."""
    import keras

    from keras_filterprune import PruningCallback, count_macs

    stem = os.path.join(cache, f"{name}_s{seed}_e{epochs}") if cache else None
    if stem and os.path.exists(stem + ".json"):
        with open(stem + ".json", encoding="utf-8") as f:
            row = json.load(f)
        load = keras.saving.load_model
        return load(stem + "_teacher.keras"), load(stem + "_pruned.keras"), row
    (x, y), (xt, yt) = train, test
    batch = BATCH[name]
    row: dict = {}
    keras.utils.set_random_seed(seed)
    teacher = build()
    compile_as_example(teacher, name, eager)
    teacher.fit(x, y, batch_size=batch, epochs=epochs, verbose=0)
    row["unpruned"] = accuracy(teacher, xt, yt)
    common.log(f"{name} seed {seed}: unpruned {row['unpruned']:.4f}")

    keras.utils.set_random_seed(seed)
    model = build()
    compile_as_example(model, name, eager)
    callback = PruningCallback(
        target_macs="50%",
        mode="hard",
        epochs=events(epochs),
        calibration_data=x[:512],
        verbose=0,
    )
    model.fit(x, y, batch_size=batch, epochs=epochs, callbacks=[callback], verbose=0)
    pruned = callback.pruned_model()
    row["macs"] = count_macs(pruned) / count_macs(teacher)
    row["pruned"] = accuracy(pruned, xt, yt)
    common.log(f"{name} seed {seed}: pruned {row['pruned']:.4f} MACs {row['macs']:.3f}")
    if stem:
        teacher.save(stem + "_teacher.keras")
        pruned.save(stem + "_pruned.keras")
        with open(stem + ".json", "w", encoding="utf-8") as f:
            json.dump(row, f)
    return teacher, pruned, row


def events(epochs: int) -> tuple[int, ...]:
    return tuple(e for e in (1, 2, 3) if e < epochs) or (epochs - 1,)


def run_seed(name, build, train, test, seed, args) -> dict | None:
    import keras

    from keras_filterprune import Distiller, recalibrate_batchnorm

    (x, y), (xt, yt) = train, test
    batch, calibration, finetune = BATCH[name], x[:512], args.finetune
    cache = common.cache_dir(NAME) if not args.quick else None
    eager = args.quick
    teacher, pruned, row = trained(
        name, build, train, test, seed, args.epochs, cache, eager
    )
    if args.stage == "train":
        return None
    # The fair baseline: the pruned model's statistics were recalibrated, so the
    # unpruned model's are too (a short training leaves them stale; see #27).
    baseline = copy_of(teacher)
    recalibrate_batchnorm(baseline, calibration)
    row["unpruned_recal"] = accuracy(baseline, xt, yt)
    # Trained as long as the students: `finetune` more epochs, recalibrated.
    compile_as_example(baseline, name, eager)
    keras.utils.set_random_seed(seed)
    baseline.fit(x, y, batch_size=batch, epochs=finetune, verbose=0)
    recalibrate_batchnorm(baseline, calibration)
    row["unpruned_longer"] = accuracy(baseline, xt, yt)
    student = copy_of(pruned)
    compile_as_example(student, name, eager)
    keras.utils.set_random_seed(seed)
    student.fit(x, y, batch_size=batch, epochs=finetune, verbose=0)
    recalibrate_batchnorm(student, calibration)
    row["finetune"] = accuracy(student, xt, yt)

    student = copy_of(pruned)
    distiller = Distiller(student, teacher)
    compile_as_example(distiller, name, eager)
    keras.utils.set_random_seed(seed)
    distiller.fit(x, y, batch_size=batch, epochs=finetune, verbose=0)
    recalibrate_batchnorm(student, calibration)
    row["distill"] = accuracy(student, xt, yt)
    common.log(
        f"{name} seed {seed}: fine-tune {row['finetune']:.4f} "
        f"distill {row['distill']:.4f}"
    )
    return row


BUILDERS = {"mnist": mnist_convnet, "speaker": speaker_net, "xception": xception_small}


def report(results: dict, watch, args) -> str:
    rows = []
    for name, seeds in results.items():
        rows_by = {k: [s[k] for s in seeds] for k in seeds[0]}
        gap = [s["pruned"] - s["unpruned_recal"] for s in seeds]
        gain = [s["distill"] - s["finetune"] for s in seeds]
        ft_gap = [s["finetune"] - s["unpruned_longer"] for s in seeds]
        kd_gap = [s["distill"] - s["unpruned_longer"] for s in seeds]
        macs_ok = all(abs(m - 0.5) <= 0.015 for m in rows_by["macs"])
        rows.append(
            (
                name,
                len(seeds),
                common.mean_std(rows_by["macs"], scale=1.0, digits=3)
                + (" ✓" if macs_ok else " ✗"),
                common.mean_std(rows_by["unpruned"]),
                common.mean_std(rows_by["unpruned_recal"]),
                common.mean_std(rows_by["pruned"]),
                common.mean_std(gap),
                common.mean_std(rows_by["unpruned_longer"]),
                common.mean_std(rows_by["finetune"]),
                common.mean_std(rows_by["distill"]),
                common.mean_std(ft_gap),
                common.mean_std(kd_gap),
                common.mean_std(gain),
            )
        )
    notes = [
        f"Each run: {args.epochs} epochs of the example's training; PruningCallback("
        f'target_macs="50%", mode="hard", epochs={events(args.epochs)}, '
        "calibration_data=x_train[:512]); then "
        f"{args.finetune} more epochs plain or with Distiller (defaults), "
        "BatchNorm recalibrated. 'unpruned, BN recalibrated': the unpruned model "
        "after the same `recalibrate_batchnorm(x_train[:512])` as the pruned one "
        "(the same as 'unpruned' for nets without BatchNorm); Δ is measured from "
        "it. 'unpruned +N ep': the unpruned model trained the same N more "
        "epochs as the students (fresh optimizer, recalibrated): 'Δ fine-tune' "
        "and 'Δ Distiller' are measured from it (equal training length). "
        "Accuracy in %, mean ± std over seeds; MACs "
        "counted on the pruned model (✓: every seed within ±3 % of 0.5).",
    ]
    if args.quick:
        notes.append(
            "--quick: tiny subsets (mnist: 256 training / 128 test images; "
            "xception: 32 / 32; speaker: 4 voices), eager training; the numbers "
            "are meaningless."
        )
    text = common.report_header(
        "Pruning inside fit on Keras' examples", watch, notes=notes
    )
    headers = (
        "example",
        "seeds",
        "MACs kept",
        "unpruned",
        "unpruned, BN recalibrated",
        "PruningCallback",
        "Δ vs recalibrated unpruned",
        f"unpruned +{args.finetune} ep",
        "+ fine-tune",
        "+ Distiller",
        "Δ fine-tune",
        "Δ Distiller",
        "Distiller − fine-tune",
    )
    return text + "\n" + common.table(headers, rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(parser, name=NAME, seeds=SEEDS["mnist"])
    parser.add_argument("--examples", nargs="+", choices=EXAMPLES, default=EXAMPLES)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--finetune", type=int, default=2)
    parser.add_argument(
        "--stage",
        choices=("train", "all"),
        default="all",
        help="'train': only the unpruned and PruningCallback runs, saved under "
        "benchmarks/.cache/bench_examples for a later 'all' run to reuse",
    )
    args = parser.parse_args(argv)
    common.configure(args.threads)
    if args.quick:
        args.epochs, args.finetune = 2, 1
    output = common.resolve_output(args, NAME)
    watch = common.Stopwatch()
    results: dict = {}
    for name in args.examples:
        if name == "speaker" and shutil.which("espeak-ng") is None:
            common.log("speaker: espeak-ng is not installed; skipped")
            continue
        seeds = args.seeds or ((0,) if args.quick else SEEDS[name])
        train, test = load(name, args.quick)
        build = BUILDERS[name]
        if name == "xception":
            build = functools.partial(xception_small, train[0].shape[1:])
        rows = [run_seed(name, build, train, test, seed, args) for seed in seeds]
        if args.stage == "all":
            results[name] = rows
            common.write_report(output, report(results, watch, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
