"""DCASE21_Net: the DCASE 2021 Task 1A baseline CNN."""

import keras
from keras import layers

from keras_filterprune.models.cifar import check_model_args


def dcase21_net(
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (40, 500, 1),
    classifier_activation: str | None = "softmax",
    name: str = "dcase21_net",
) -> keras.Model:
    """The DCASE 2021 Task 1A baseline CNN ("DCASE21_Net", 46,246 parameters).

    Three 7×7 convolutions (16, 16, 32 filters, `"same"` padding, with bias),
    each followed by batch normalisation and ReLU; max-pooling 5×5 after the
    second and 4×100 after the third, each followed by dropout 0.3; then
    Flatten, Dense 100 + ReLU, dropout 0.3 and the classifier. On the
    40 mel bands × 500 frames × 1 input of `keras_filterprune.audio.DCASELogMel`
    the feature map before Flatten is 2×1×32.

    Layer names: `conv1`, `bn1`, `relu1`, `conv2`, `bn2`, `relu2`, `pool1`,
    `dropout1`, `conv3`, `bn3`, `relu3`, `pool2`, `dropout2`, `flatten`,
    `dense1`, `dropout3`, `predictions`.

    Args:
        num_classes: Int. Number of classes. Defaults to `10`.
        input_shape: Tuple `(bands, frames, channels)`. Defaults to `(40, 500, 1)`.
        classifier_activation: Activation of the last layer (`None` for logits).
            Defaults to `"softmax"`.
        name: String. Model name. Defaults to `"dcase21_net"`.

    Returns:
        A `keras.Model`.

    Example:

    >>> model = dcase21_net()
    >>> model.count_params()
    46246
    >>> tuple(model.output.shape)
    (None, 10)

    References:
        - Martín-Morató et al., "Low-complexity acoustic scene classification
          for multi-device audio: analysis of DCASE 2021 Challenge systems",
          DCASE 2021 (baseline of Task 1A).
    """
    check_model_args(
        num_classes=num_classes,
        input_shape=input_shape,
        rank=3,
        classifier_activation=classifier_activation,
        name=name,
        min_size=(20, 500),  # 5×5 then 4×100 max-pooling
        fixed_size=True,  # Flatten → Dense
    )
    num_classes, input_shape = int(num_classes), tuple(int(d) for d in input_shape)
    inputs = keras.Input(shape=tuple(input_shape), name="log_mel")
    x = inputs
    for index, filters in enumerate((16, 16, 32), start=1):
        x = layers.Conv2D(filters, 7, padding="same", name=f"conv{index}")(x)
        x = layers.BatchNormalization(name=f"bn{index}")(x)
        x = layers.Activation("relu", name=f"relu{index}")(x)
        if index == 2:
            x = layers.MaxPooling2D((5, 5), name="pool1")(x)
            x = layers.Dropout(0.3, name="dropout1")(x)
        elif index == 3:
            x = layers.MaxPooling2D((4, 100), name="pool2")(x)
            x = layers.Dropout(0.3, name="dropout2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(100, activation="relu", name="dense1")(x)
    x = layers.Dropout(0.3, name="dropout3")(x)
    outputs = layers.Dense(
        num_classes, activation=classifier_activation, name="predictions"
    )(x)
    return keras.Model(inputs, outputs, name=name)
