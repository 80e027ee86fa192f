"""CIFAR-10 networks of Li et al. (2017): VGG-16 with BN and He et al.'s ResNets."""

import keras
import numpy as np
from keras import layers, ops

from keras_filterprune.handlers import LayerHandler, register_handler
from keras_filterprune.models._checks import check_model_args

_RESNET_DEPTHS = "6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...)"


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@keras.saving.register_keras_serializable(package="keras_filterprune")
class ShortcutPad(keras.layers.Layer):
    """Parameter-free ("option A") residual shortcut of CIFAR ResNets.

    Subsamples the spatial axes by taking every `strides`-th position (as
    `x[:, ::2, ::2, :]`) and appends `pad_before` zero channels in front of and
    `pad_after` zero channels after the input channels (channels last), so a
    16-channel map becomes `pad_before + 16 + pad_after` channels. Input channel
    `c` lands at output channel `pad_before + c`. Li et al. (2017) pad
    `planes // 4` on both sides (8 + 16 + 8 = 32).

    It replaces the `Lambda` layer of common implementations, which is not safely
    serialisable and which a pruner must treat as opaque.

    Args:
        strides: Int or tuple of ints, one per spatial axis. Defaults to `2`.
        pad_before: Int. Zero channels in front of the input channels.
            Defaults to `0`.
        pad_after: Int. Zero channels after the input channels. Defaults to `0`.
        **kwargs: Base layer keyword arguments (`name`, ...).

    Example:

    >>> import numpy as np
    >>> layer = ShortcutPad(strides=2, pad_before=8, pad_after=8)
    >>> x = np.ones((1, 32, 32, 16), dtype="float32")
    >>> y = layer(x)
    >>> tuple(y.shape)
    (1, 16, 16, 32)
    >>> float(y[0, 0, 0, 7]), float(y[0, 0, 0, 8]), float(y[0, 0, 0, 24])
    (0.0, 1.0, 0.0)
    """

    def __init__(self, strides=2, pad_before=0, pad_after=0, **kwargs):
        super().__init__(**kwargs)
        errors = []
        strides_ok = (_is_int(strides) and strides > 0) or (
            isinstance(strides, (tuple, list))
            and len(strides) > 0
            and all(_is_int(s) and s > 0 for s in strides)
        )
        if not strides_ok:
            errors.append(
                "`strides` must be a positive int or a tuple of positive ints. "
                f"Received: strides={strides!r}"
            )
        for arg, value in (("pad_before", pad_before), ("pad_after", pad_after)):
            if not _is_int(value) or value < 0:
                errors.append(
                    f"`{arg}` must be a non-negative int. Received: {arg}={value!r}"
                )
        if errors:
            raise ValueError("\n".join(errors))
        self.strides = strides if _is_int(strides) else tuple(strides)
        self.pad_before = pad_before
        self.pad_after = pad_after

    def _spatial_strides(self, rank):
        spatial = rank - 2
        if _is_int(self.strides):
            return (self.strides,) * spatial
        if len(self.strides) != spatial:
            raise ValueError(
                f"`strides` has {len(self.strides)} entries but the input has "
                f"{spatial} spatial axes. Received: strides={self.strides}"
            )
        return self.strides

    def build(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(
                "ShortcutPad expects inputs of shape (batch, *spatial, channels). "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self._spatial_strides(len(input_shape))
        super().build(input_shape)

    def call(self, inputs):
        strides = self._spatial_strides(len(inputs.shape))
        index = (
            (slice(None),)
            + tuple(slice(None, None, s) for s in strides)
            + (slice(None),)
        )
        x = inputs[index]
        if self.pad_before or self.pad_after:
            pad = [[0, 0]] * (len(inputs.shape) - 1) + [
                [self.pad_before, self.pad_after]
            ]
            x = ops.pad(x, pad)
        return x

    def compute_output_shape(self, input_shape):
        strides = self._spatial_strides(len(input_shape))
        spatial = tuple(
            None if d is None else -(-d // s)
            for d, s in zip(input_shape[1:-1], strides, strict=True)
        )
        channels = input_shape[-1]
        if channels is not None:
            channels += self.pad_before + self.pad_after
        return (input_shape[0],) + spatial + (channels,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "strides": self.strides
                if _is_int(self.strides)
                else list(self.strides),
                "pad_before": self.pad_before,
                "pad_after": self.pad_after,
            }
        )
        return config


class ChannelPadHandler(LayerHandler):
    """`ShortcutPad`: zero channels padded on both sides of the (pruned) input
    channels; the padding channels are frozen (there is nothing to prune)."""

    def propagate(self, layer, call, inputs, tracer):
        reason = "zero padding channels"
        before = tracer.opaque(layer.pad_before, call.path, reason)
        after = tracer.opaque(layer.pad_after, call.path, reason)
        return [np.concatenate([before, inputs[0], after])]


register_handler(ShortcutPad, ChannelPadHandler())


def vgg16_cifar(
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    classifier_activation: str | None = "softmax",
    name: str = "vgg16_cifar",
) -> keras.Model:
    """VGG-16 with batch normalisation for CIFAR-10, as pruned by Li et al.

    Zagoruyko's (2015) CIFAR variant of VGG-16 with a BatchNormalization after
    every convolution and after the first linear layer, without dropout (Li et
    al. 2017, Table 2): 13 3×3 convolutions (64, 64, M, 128, 128, M, 256 ×3, M,
    512 ×3, M, 512 ×3, M; "M" = 2×2 max-pooling), each followed by BN and ReLU,
    then Flatten, Dense 512 + BN + ReLU and the classifier. About 1.50e7
    parameters and 3.13e8 multiply-accumulates for a 32×32 image.

    Layer names: `conv1` … `conv13` with `bn1`/`relu1` …, pools `pool1` …
    `pool5`, `flatten`, `fc1`, `fc1_bn`, `fc1_relu`, `predictions`.

    Args:
        num_classes: Int. Number of classes. Defaults to `10`.
        input_shape: Tuple `(height, width, channels)`. Defaults to `(32, 32, 3)`.
        classifier_activation: Activation of the last layer (`None` for logits).
            Defaults to `"softmax"`.
        name: String. Model name. Defaults to `"vgg16_cifar"`.

    Returns:
        A `keras.Model`.

    Example:

    >>> model = vgg16_cifar()
    >>> model.count_params()
    15001418

    References:
        - Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017.
        - Simonyan & Zisserman, "Very Deep Convolutional Networks for
          Large-Scale Image Recognition", ICLR 2015.
    """
    check_model_args(
        num_classes=num_classes,
        input_shape=input_shape,
        rank=3,
        classifier_activation=classifier_activation,
        name=name,
        min_size=(32, 32),  # five 2×2 max-poolings
        fixed_size=True,  # Flatten → Dense
    )
    num_classes, input_shape = int(num_classes), tuple(int(d) for d in input_shape)
    config = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M")
    config += (512, 512, 512, "M", 512, 512, 512, "M")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    conv_index = pool_index = 0
    for item in config:
        if item == "M":
            pool_index += 1
            x = layers.MaxPooling2D(2, name=f"pool{pool_index}")(x)
            continue
        conv_index += 1
        x = layers.Conv2D(
            item,
            3,
            padding="same",
            kernel_initializer="he_normal",
            name=f"conv{conv_index}",
        )(x)
        x = layers.BatchNormalization(name=f"bn{conv_index}")(x)
        x = layers.Activation("relu", name=f"relu{conv_index}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(512, name="fc1")(x)
    x = layers.BatchNormalization(name="fc1_bn")(x)
    x = layers.Activation("relu", name="fc1_relu")(x)
    outputs = layers.Dense(
        num_classes, activation=classifier_activation, name="predictions"
    )(x)
    return keras.Model(inputs, outputs, name=name)


def _basic_block(x, filters, strides, shortcut, prefix):
    in_channels = x.shape[-1]
    y = layers.Conv2D(
        filters,
        3,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{prefix}_conv1",
    )(x)
    y = layers.BatchNormalization(name=f"{prefix}_bn1")(y)
    y = layers.Activation("relu", name=f"{prefix}_relu1")(y)
    y = layers.Conv2D(
        filters,
        3,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{prefix}_conv2",
    )(y)
    y = layers.BatchNormalization(name=f"{prefix}_bn2")(y)
    if strides != 1 or in_channels != filters:
        if shortcut == "A":
            extra = filters - in_channels
            x = ShortcutPad(
                strides=strides,
                pad_before=extra // 2,
                pad_after=extra - extra // 2,
                name=f"{prefix}_shortcut",
            )(x)
        else:
            x = layers.Conv2D(
                filters,
                1,
                strides=strides,
                use_bias=False,
                kernel_initializer="he_normal",
                name=f"{prefix}_shortcut_conv",
            )(x)
            x = layers.BatchNormalization(name=f"{prefix}_shortcut_bn")(x)
    y = layers.Add(name=f"{prefix}_add")([x, y])
    return layers.Activation("relu", name=f"{prefix}_relu2")(y)


def resnet_cifar(
    depth: int = 56,
    num_classes: int = 10,
    shortcut: str = "A",
    input_shape: tuple[int, int, int] = (32, 32, 3),
    classifier_activation: str | None = "softmax",
    name: str | None = None,
) -> keras.Model:
    """He et al.'s CIFAR ResNet (ResNet-20/32/44/56/110), as pruned by Li et al.

    A 3×3 convolution with 16 filters, then three stages of `(depth - 2) / 6`
    basic blocks with 16, 32 and 64 filters (the first block of stages 2 and 3
    has stride 2), global average pooling and the classifier. A basic block is
    conv 3×3, BN, ReLU, conv 3×3, BN, add the shortcut, ReLU; convolutions have
    no bias. Where the shape changes, the shortcut is

    - `"A"`: identity with stride-2 subsampling and zero channels padded on both
      sides (`ShortcutPad`, no parameters), as in He et al. and Li et al.;
    - `"B"`: a 1×1 projection convolution with stride 2 and BN.

    ResNet-56 has about 8.5e5 parameters and 1.25e8 multiply-accumulates on
    32×32 images; ResNet-110 about 1.7e6 and 2.53e8 (Li et al., Table 1).

    Layer names: `conv1`, `bn1`, `relu1`; block `b` of stage `s` uses the prefix
    `stage{s}_block{b}` (`_conv1`, `_bn1`, `_relu1`, `_conv2`, `_bn2`,
    `_shortcut` or `_shortcut_conv`/`_shortcut_bn`, `_add`, `_relu2`);
    `avg_pool`, `predictions`.

    Args:
        depth: Int. `6n + 2` for `n >= 1`: 20, 32, 44, 56, 110, ... Defaults to
            `56`.
        num_classes: Int. Number of classes. Defaults to `10`.
        shortcut: `"A"` or `"B"`. Defaults to `"A"`.
        input_shape: Tuple `(height, width, channels)`. Defaults to `(32, 32, 3)`.
        classifier_activation: Activation of the last layer (`None` for logits).
            Defaults to `"softmax"`.
        name: Optional model name. Defaults to `f"resnet{depth}_cifar"`.

    Returns:
        A `keras.Model`.

    Example:

    >>> model = resnet_cifar(20)
    >>> model.name, len([l for l in model.layers if isinstance(l, ShortcutPad)])
    ('resnet20_cifar', 2)

    References:
        - He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
        - Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017.
    """
    extra = []
    if not _is_int(depth) or depth < 8 or (depth - 2) % 6:
        extra.append(f"`depth` must be {_RESNET_DEPTHS}. Received: depth={depth!r}")
    if shortcut not in ("A", "B"):
        extra.append(f"`shortcut` must be 'A' or 'B'. Received: shortcut={shortcut!r}")
    check_model_args(
        num_classes=num_classes,
        input_shape=input_shape,
        rank=3,
        extra_errors=extra,
        classifier_activation=classifier_activation,
        name="resnet_cifar" if name is None else name,
    )
    depth, num_classes = int(depth), int(num_classes)
    input_shape = tuple(None if d is None else int(d) for d in input_shape)
    blocks = (depth - 2) // 6
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = layers.Conv2D(
        16,
        3,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name="conv1",
    )(inputs)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.Activation("relu", name="relu1")(x)
    for stage, filters in enumerate((16, 32, 64), start=1):
        for block in range(1, blocks + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            x = _basic_block(
                x, filters, strides, shortcut, f"stage{stage}_block{block}"
            )
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(
        num_classes, activation=classifier_activation, name="predictions"
    )(x)
    return keras.Model(inputs, outputs, name=name or f"resnet{depth}_cifar")
