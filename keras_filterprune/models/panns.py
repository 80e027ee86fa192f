"""PANNs CNN14: the AudioSet tagging network of Kong et al. (2020)."""

from __future__ import annotations

import numbers
import os

import keras
import numpy as np  # noqa: F401 - used by the docstring example
from keras import layers

from keras_filterprune._validation import check_bool
from keras_filterprune.models._checks import (
    check_model_args,
    check_weights_file,
    load_weights_file,
)

__all__ = ["cnn14"]

_WIDTHS = (64, 128, 256, 512, 1024, 2048)


def cnn14(
    num_classes: int = 527,
    include_frontend: bool = False,
    clip_samples: int | None = None,
    weights: str | os.PathLike | None = None,
    classifier_activation: str | None = "sigmoid",
    dropout: float = 0.2,
    name: str = "cnn14",
) -> keras.Model:
    """PANNs CNN14 (about 80 M parameters), as in the PANNs paper and code.

    Input: a log-mel image `(frames, 64, 1)` (time, mel bands, one channel) from
    `keras_filterprune.audio.PANNsLogMel`, or, with `include_frontend=True`, the
    32 kHz mono waveform itself (the front-end is then part of the model and of
    its TFLite export). The mel bands are batch-normalised (`bn0`: one statistic
    per band, as PANNs' `BatchNorm2d(64)` on transposed input). Six blocks of two
    3×3 convolutions (no bias) + BatchNorm + ReLU (64, 128, 256, 512, 1024, 2048
    filters), each followed by 2×2 average pooling (1×1 for the last block) and
    dropout; then the mean over frequency (an average pooling over the remaining
    2 bands), max + mean over time, dropout 0.5, `fc1` (2048, ReLU: the
    embedding), dropout 0.5 and the classifier `fc_audioset`.

    Every layer is a standard Keras layer, so every convolution is prunable and
    the pruned model stays exact. Layer names: `bn0`, `block{i}_conv{1,2}`,
    `block{i}_bn{1,2}`, `block{i}_relu{1,2}`, `block{i}_pool`,
    `block{i}_dropout`, `freq_mean`, `time_max`, `time_mean`, `time_pool`,
    `fc1`, `fc_audioset`.

    Args:
        num_classes: Int. Outputs of the classifier. Defaults to `527`
            (AudioSet).
        include_frontend: Bool. Take waveforms and compute `PANNsLogMel` in the
            model. Defaults to `False` (log-mel input).
        clip_samples: Optional int. Fixed clip length in samples (with the
            front-end) or, without it, `1 + clip_samples // 320` frames; `None`
            accepts any length. Defaults to `None`.
        weights: `None` (random initialisation) or the local path of a Keras
            weights file (`.weights.h5`; or `.h5`, `.hdf5`, `.keras`,
            `.weights.json`: what `keras.Model.load_weights` reads) saved from
            this architecture, e.g. one converted from the PANNs checkpoint
            `Cnn14_mAP=0.431.pth`. The file is checked before the 80 M
            parameters are built. Weights are never downloaded. Defaults to
            `None`.
        classifier_activation: Activation of `fc_audioset`. Defaults to
            `"sigmoid"` (multi-label AudioSet tagging); `None` for logits.
        dropout: Float. Dropout after each block (0.2 in PANNs). Defaults to
            `0.2`.
        name: String. Model name. Defaults to `"cnn14"`.

    Returns:
        A functional `keras.Model`.

    Raises:
        TypeError: For a non-bool `include_frontend` or a `weights` that is not
            a path.
        ValueError: For invalid arguments, or a `weights` file that does not
            exist or that `load_weights` cannot read (wrong name ending, not
            HDF5 or zip, damaged).
        PermissionError: If the `weights` file cannot be read.

    Example:

    >>> model = cnn14()  # PANNs counts trainable parameters: 80,753,615
    >>> sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    80753615
    >>> tuple(model.output.shape)
    (None, 527)

    References:
        - Kong et al., "PANNs: Large-Scale Pretrained Audio Neural Networks for
          Audio Pattern Recognition", IEEE/ACM TASLP 2020
          (github.com/qiuqiangkong/audioset_tagging_cnn, `Cnn14`).
    """
    include_frontend = check_bool(include_frontend, "include_frontend")
    errors = []
    if clip_samples is not None and not (
        isinstance(clip_samples, numbers.Integral)
        and not isinstance(clip_samples, bool)
    ):
        errors.append(
            "`clip_samples` must be None or a positive int. "
            f"Received: clip_samples={clip_samples!r}"
        )
    elif clip_samples is not None and clip_samples < 32 * 320:
        errors.append(
            "`clip_samples` must be at least 10240 (32 frames: five 2×2 poolings "
            f"of the time axis). Received: clip_samples={clip_samples!r}"
        )
    if (
        isinstance(dropout, bool)
        or not isinstance(dropout, numbers.Real)
        or not 0 <= dropout < 1
    ):
        errors.append(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
    check_weights_file(weights, errors)
    frames = None if clip_samples is None else 1 + clip_samples // 320
    check_model_args(
        num_classes=num_classes,
        input_shape=(frames, 64, 1),
        rank=3,
        extra_errors=errors,
        classifier_activation=classifier_activation,
        name=name,
    )
    num_classes, dropout = int(num_classes), float(dropout)
    clip_samples = None if clip_samples is None else int(clip_samples)
    if include_frontend:
        from keras_filterprune.audio.panns import PANNsLogMel

        inputs = keras.Input((clip_samples,), name="waveform")
        x = PANNsLogMel(name="log_mel")(inputs)
    else:
        inputs = keras.Input((frames, 64, 1), name="log_mel")
        x = inputs
    x = layers.BatchNormalization(axis=2, name="bn0")(x)  # one statistic per band
    for i, filters in enumerate(_WIDTHS, start=1):
        for j in (1, 2):
            x = layers.Conv2D(
                filters,
                3,
                padding="same",
                use_bias=False,
                kernel_initializer="glorot_uniform",
                name=f"block{i}_conv{j}",
            )(x)
            x = layers.BatchNormalization(name=f"block{i}_bn{j}")(x)
            x = layers.ReLU(name=f"block{i}_relu{j}")(x)
        if i < len(_WIDTHS):
            x = layers.AveragePooling2D(2, name=f"block{i}_pool")(x)
        x = layers.Dropout(dropout, name=f"block{i}_dropout")(x)
    x = layers.AveragePooling2D((1, 2), name="freq_mean")(x)  # 2 bands left
    x = layers.Add(name="time_pool")(
        [
            layers.GlobalMaxPooling2D(name="time_max")(x),
            layers.GlobalAveragePooling2D(name="time_mean")(x),
        ]
    )
    x = layers.Dropout(0.5, name="fc1_dropout")(x)
    x = layers.Dense(2048, activation="relu", name="fc1")(x)
    x = layers.Dropout(0.5, name="embedding_dropout")(x)
    outputs = layers.Dense(
        num_classes, activation=classifier_activation, name="fc_audioset"
    )(x)
    model = keras.Model(inputs, outputs, name=name)
    if weights is not None:
        load_weights_file(model, weights)
    return model
