"""Per-layer channel rules: how each layer class moves, stores and costs channels.

Every channel of every tensor in a traced model is an *element id*. A handler says,
for one layer class, which element ids its outputs carry (`propagate`), which axes of
its weights follow its input or output channels (`weight_axes`), how its config
changes when its own output channels are pruned (`prune_config`), how many MACs a
call costs (`macs`) and whether it can be rebuilt (`rebuild_error`). The graph
tracer, the planner's cost model, the profile, the surgery and the masks all read
this one table, so teaching keras-filterprune a custom layer is one
`register_handler` call:

>>> import keras
>>> from keras_filterprune.handlers import register_handler
>>> from keras_filterprune.handlers import PassThroughHandler, unregister_handler
>>> @keras.saving.register_keras_serializable(package="doc_example")
... class Scale(keras.layers.Layer):  # a per-channel scale, like ConvNeXt's
...     def build(self, input_shape):
...         self.gamma = self.add_weight(shape=(input_shape[-1],), name="gamma")
...     def call(self, x):
...         return x * self.gamma
>>> register_handler(Scale, PassThroughHandler())
>>> _ = unregister_handler(Scale)  # back to "unknown layer: freeze"
"""

from __future__ import annotations

from typing import Any

import keras

from keras_filterprune.handlers.base import (
    AdaptivePoolingHandler,
    AxisRule,
    ElementwiseMacsHandler,
    FreezeHandler,
    GlobalPoolingHandler,
    LayerHandler,
    PassThroughHandler,
    PoolingHandler,
    UnknownShapeError,
)
from keras_filterprune.handlers.conv import (
    DenseHandler,
    DepthwiseHandler,
    ProducerHandler,
    SeparableConvHandler,
    TransposeConvHandler,
)
from keras_filterprune.handlers.structure import (
    ActivationHandler,
    BatchNormHandler,
    ConcatenateHandler,
    FlattenHandler,
    LayerScaleHandler,
    MergeHandler,
    NormHandler,
    PadOpHandler,
    ReduceOpHandler,
    RescalingHandler,
    ReshapeHandler,
    SoftmaxHandler,
    SplitOpHandler,
)

__all__ = [
    "AxisRule",
    "LayerHandler",
    "ElementwiseMacsHandler",
    "PoolingHandler",
    "GlobalPoolingHandler",
    "AdaptivePoolingHandler",
    "ActivationHandler",
    "BatchNormHandler",
    "LayerScaleHandler",
    "ReshapeHandler",
    "RescalingHandler",
    "SoftmaxHandler",
    "PassThroughHandler",
    "ProducerHandler",
    "DenseHandler",
    "TransposeConvHandler",
    "SeparableConvHandler",
    "DepthwiseHandler",
    "MergeHandler",
    "NormHandler",
    "PadOpHandler",
    "ReduceOpHandler",
    "SplitOpHandler",
    "ConcatenateHandler",
    "FlattenHandler",
    "FreezeHandler",
    "UnknownShapeError",
    "register_handler",
    "unregister_handler",
    "get_handler",
]

_REGISTRY: dict[type, LayerHandler] = {}
_CHANGES = [0]  # registrations so far (`registry_version`)
_BY_NAME: dict[str, LayerHandler] = {}
# Keras ops (operations that are not layers: `x + y`, `keras.ops.mean` in a
# Functional graph or a traced `call`), by class name; never matched to layers.
_OPS: dict[str, LayerHandler] = {}


def _names(text: str) -> list[type]:
    """The `keras.layers` classes named in `text` that this Keras has."""
    return [getattr(keras.layers, n) for n in text.split() if hasattr(keras.layers, n)]


def _defaults() -> tuple[dict, dict, dict]:
    passing, elementwise = PassThroughHandler(), PassThroughHandler(elementwise=True)
    reshape = FreezeHandler("reshapes the channel axis")
    by_class: dict[type, LayerHandler] = {}

    def add(classes: str, handler: LayerHandler) -> None:
        by_class.update({cls: handler for cls in _names(classes)})

    add("Conv1D Conv2D Conv3D", ProducerHandler())
    add("Conv1DTranspose Conv2DTranspose Conv3DTranspose", TransposeConvHandler())
    add("SeparableConv1D SeparableConv2D", SeparableConvHandler())
    add("Dense", DenseHandler())
    add("DepthwiseConv1D DepthwiseConv2D", DepthwiseHandler())
    add(
        "ReLU LeakyReLU ELU PReLU Dropout SpatialDropout1D SpatialDropout2D "
        "SpatialDropout3D GaussianDropout GaussianNoise AlphaDropout "
        "ActivityRegularization Identity",
        elementwise,
    )
    add(
        "ZeroPadding1D ZeroPadding2D ZeroPadding3D Cropping1D Cropping2D Cropping3D "
        "UpSampling1D UpSampling2D UpSampling3D Resizing",
        passing,
    )
    add(
        "MaxPooling1D MaxPooling2D MaxPooling3D AveragePooling1D AveragePooling2D "
        "AveragePooling3D",
        PoolingHandler(),
    )
    add(
        "GlobalMaxPooling1D GlobalMaxPooling2D GlobalMaxPooling3D "
        "GlobalAveragePooling1D GlobalAveragePooling2D GlobalAveragePooling3D",
        GlobalPoolingHandler(),
    )
    add(
        "AdaptiveMaxPooling1D AdaptiveMaxPooling2D AdaptiveMaxPooling3D "
        "AdaptiveAveragePooling1D AdaptiveAveragePooling2D AdaptiveAveragePooling3D",
        AdaptivePoolingHandler(),
    )
    add("Add Subtract Multiply Average Maximum Minimum", MergeHandler())
    add("Permute", FreezeHandler("permutes axes"))
    add("RepeatVector", reshape)
    add(
        "Lambda",
        FreezeHandler(
            "Lambda layers are opaque",
            rebuild_error="is a Lambda layer: Keras cannot rebuild it safely "
            "from its config (it holds Python bytecode). Replace it with a small "
            "registered custom layer (keras.saving.register_keras_serializable), "
            "then prune.",
        ),
    )
    add("LayerNormalization GroupNormalization UnitNormalization", NormHandler())
    add("Normalization", FreezeHandler("per-channel input normalisation"))
    add("BatchNormalization", BatchNormHandler(elementwise=True))
    add("Activation", ActivationHandler(elementwise=True))
    add("Softmax", SoftmaxHandler())
    add("Rescaling", RescalingHandler())
    add("Concatenate", ConcatenateHandler())
    add("Flatten", FlattenHandler())
    add("Reshape", ReshapeHandler())
    by_name: dict[str, LayerHandler] = {
        # keras.applications layers that are not exported as public classes.
        "LayerScale": LayerScaleHandler(),
        "StochasticDepth": passing,
    }
    # Keras ops used as operations of a Functional graph (`x + y`, `x * s`) or
    # inside a traced composite layer.
    ops: dict[str, LayerHandler] = {}
    merge = MergeHandler()
    for name in "Add Subtract Multiply Maximum Minimum Divide TrueDivide".split():
        ops[name] = merge
    ops["Pad"] = PadOpHandler()
    for name in (
        "Relu Relu6 Sigmoid HardSigmoid HardSilu Silu Gelu Tanh Elu Selu Softplus "
        "Softsign LeakyRelu Exp Log Sqrt Square Absolute Negative Cast "
        "ReLU Mish Celu Squareplus SoftShrink HardShrink HardTanh TanhShrink "
        "LogSigmoid SparsePlus SparseSigmoid Threshold ConvertToTensor"
    ).split():
        ops[name] = elementwise
    for name in "Mean Max Min Sum".split():
        ops[name] = ReduceOpHandler()
    for name in "Power Clip".split():  # a tensor exponent or bound merges
        ops[name] = merge
    ops["Resize"] = passing  # keras.ops.image.resize
    ops["Concatenate"] = ConcatenateHandler()  # keras.ops.concatenate
    ops["Split"] = SplitOpHandler()
    return by_class, by_name, ops


_DEFAULT_CLASSES, _DEFAULT_NAMES, _DEFAULT_OPS = _defaults()
_REGISTRY.update(_DEFAULT_CLASSES)
_BY_NAME.update(_DEFAULT_NAMES)
_OPS.update(_DEFAULT_OPS)


def _check_layer_cls(layer_cls) -> None:
    if isinstance(layer_cls, str):
        return
    if not (isinstance(layer_cls, type) and issubclass(layer_cls, keras.layers.Layer)):
        raise TypeError(
            "`layer_cls` must be a keras.layers.Layer subclass or a class name. "
            f"Received: layer_cls={layer_cls!r}."
        )


def register_handler(layer_cls: type | str, handler: LayerHandler) -> None:
    """Teaches keras-filterprune how a layer class moves, stores and costs channels.

    Args:
        layer_cls: A `keras.layers.Layer` subclass, or its class name as a string
            (for classes that are not importable). Subclasses inherit the handler.
        handler: A `LayerHandler` instance (e.g. `PassThroughHandler()` for a
            per-channel layer, `FreezeHandler("why")` to always freeze). Its
            `macs` method also teaches `profile_model` and `target_macs`.

    Raises:
        TypeError: if `handler` is not a `LayerHandler` or `layer_cls` is not a
            layer class or a string.

    Example:

    A custom layer with one weight per channel freezes the channels that reach
    it until its handler is registered:

    >>> import keras
    >>> from keras_filterprune.graph import trace_channels
    >>> from keras_filterprune.handlers import (
    ...     PassThroughHandler, register_handler, unregister_handler)
    >>> class Scale(keras.layers.Layer):
    ...     def build(self, input_shape):
    ...         self.gamma = self.add_weight(shape=(input_shape[-1],))
    ...     def call(self, x):
    ...         return x * self.gamma
    >>> model = keras.Sequential([
    ...     keras.Input((8,)), keras.layers.Dense(4, name="dense"),
    ...     Scale(name="scale"), keras.layers.Dense(2, name="head")])
    >>> print(trace_channels(model, warn=False).group_of("dense").frozen)
    Scale has no pruning handler ... (at layer 'scale')
    >>> register_handler(Scale, PassThroughHandler())
    >>> print(trace_channels(model).group_of("dense").frozen)
    None
    >>> _ = unregister_handler(Scale)
    """
    if not isinstance(handler, LayerHandler):
        raise TypeError(
            "`handler` must be a keras_filterprune.handlers.LayerHandler instance. "
            f"Received: handler of type {type(handler).__name__}."
        )
    _check_layer_cls(layer_cls)
    _CHANGES[0] += 1  # remembered traces made with the old handlers are stale
    if isinstance(layer_cls, str):
        _BY_NAME[layer_cls] = handler
    else:
        _REGISTRY[layer_cls] = handler


def registry_version() -> int:
    """A number that changes whenever a handler is registered or unregistered
    (a remembered trace is valid for the registry it was made with)."""
    return _CHANGES[0]


def unregister_handler(layer_cls: type | str) -> LayerHandler | None:
    """Forgets the handler registered for exactly this class (or class name).

    Args:
        layer_cls: What was passed to `register_handler`.

    Returns:
        The handler that was registered, or `None` if there was none.

    Raises:
        TypeError: `layer_cls` is not a layer class or a string.

    Example:

    >>> import keras
    >>> from keras_filterprune.handlers import (
    ...     FreezeHandler, get_handler, register_handler, unregister_handler)
    >>> class Custom(keras.layers.Layer):
    ...     pass
    >>> handler = FreezeHandler("not channel-aware")
    >>> register_handler(Custom, handler)
    >>> get_handler(Custom()) is handler
    True
    >>> unregister_handler(Custom) is handler
    True
    >>> print(get_handler(Custom()), unregister_handler(Custom))
    None None
    """
    _check_layer_cls(layer_cls)
    _CHANGES[0] += 1
    if isinstance(layer_cls, str):
        return _BY_NAME.pop(layer_cls, None)
    return _REGISTRY.pop(layer_cls, None)


def get_handler(layer: Any) -> LayerHandler | None:
    """Returns the handler of a layer (looked up along its MRO), or `None`.

    Args:
        layer: A layer, or a Keras operation of a Functional graph (`x + y`).

    Returns:
        The `LayerHandler` registered for the layer's class or its nearest base
        class (by class or by class name), or `None`: the layer is unknown and
        the channels that reach it are frozen.

    Example:

    >>> import keras
    >>> from keras_filterprune.handlers import get_handler
    >>> type(get_handler(keras.layers.Conv2D(8, 3))).__name__
    'ProducerHandler'
    >>> class MyConv(keras.layers.Conv2D):  # inherits the handler of Conv2D
    ...     pass
    >>> type(get_handler(MyConv(8, 3))).__name__
    'ProducerHandler'
    >>> class Custom(keras.layers.Layer):
    ...     pass
    >>> print(get_handler(Custom()))
    None
    """
    for cls in type(layer).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
        if cls.__name__ in _BY_NAME:
            return _BY_NAME[cls.__name__]
    if not isinstance(layer, keras.layers.Layer):
        return _OPS.get(type(layer).__name__)
    return None
