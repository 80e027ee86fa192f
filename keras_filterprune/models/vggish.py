"""VGGish (Hershey et al. 2017) in Keras 3, its TF1 checkpoint loader and PCA."""

import os

import keras
import numpy as np
from keras import layers, ops

from keras_filterprune._validation import check_bool
from keras_filterprune.models._checks import (
    KERAS_WEIGHTS_SUFFIXES,
    check_model_args,
    check_weights_file,
    load_weights_file,
)

#: Keras layer name → variable scope of the official TF-Slim checkpoint
#: (`vggish_model.ckpt`). Each scope holds `weights` and `biases`. Keras 3 forbids
#: "/" in layer names, so `vggish/conv3/conv3_1` becomes `conv3_1`.
VGGISH_NAME_MAP = {
    "conv1": "vggish/conv1",
    "conv2": "vggish/conv2",
    "conv3_1": "vggish/conv3/conv3_1",
    "conv3_2": "vggish/conv3/conv3_2",
    "conv4_1": "vggish/conv4/conv4_1",
    "conv4_2": "vggish/conv4/conv4_2",
    "fc1_1": "vggish/fc1/fc1_1",
    "fc1_2": "vggish/fc1/fc1_2",
    "fc2": "vggish/fc2",
}

_EMBEDDING_SIZE = 128
_QUANTIZE_MIN, _QUANTIZE_MAX = -2.0, 2.0


def vggish(
    include_top: bool = True,
    num_classes: int | None = None,
    weights: str | os.PathLike | None = None,
    input_shape: tuple[int, int, int] = (96, 64, 1),
    pooling: str | None = None,
    classifier_activation: str | None = "softmax",
    name: str = "vggish",
) -> keras.Model:
    """The VGGish audio embedding network.

    Input: a 96-frame × 64-band log-mel example with one channel (see
    `keras_filterprune.audio.VGGishLogMel`). Four VGG blocks of 3×3 `"same"`
    convolutions with ReLU (64; 128; 256 ×2; 512 ×2) each followed by 2×2
    max-pooling (stride 2, `"same"`), then Flatten and the fully connected
    layers 4096, 4096 (ReLU) and 128 (the embedding, no activation): 72.1 M
    parameters. Layer names follow the official TF-Slim scopes with "/" removed
    (`VGGISH_NAME_MAP`): `conv1`, `pool1`, `conv2`, `pool2`, `conv3_1`,
    `conv3_2`, `pool3`, `conv4_1`, `conv4_2`, `pool4`, `flatten`, `fc1_1`,
    `fc1_2`, `fc2`.

    Args:
        include_top: Bool. Include Flatten and the fully connected layers (the
            output is then the 128-d embedding). Defaults to `True`.
        num_classes: Optional int. Add a classifier: with `include_top`, a ReLU
            on the embedding (`embedding_relu`, as the official training demo)
            and a Dense layer `predictions`; without it, `pooling` must be set
            and `predictions` follows the pooled features. Defaults to `None`.
        weights: Optional local path of the official TF1 checkpoint
            (`vggish_model.ckpt`, loaded with `load_vggish_checkpoint`) or of a
            Keras weights file (`.weights.h5`, `.h5`, `.hdf5`, `.keras`,
            `.weights.json`: `keras.Model.load_weights`). Nothing is downloaded.
            The file is checked before the model is built. Layers absent from
            the model (e.g. the top) are skipped. Defaults to `None`.
        input_shape: Tuple `(frames, bands, channels)`. Defaults to
            `(96, 64, 1)`; another size changes the input width of `fc1_1`.
        pooling: With `include_top=False`: `None` (the 4-D output of `pool4`),
            `"avg"` or `"max"` (global pooling). Defaults to `None`.
        classifier_activation: Activation of `predictions`. Defaults to
            `"softmax"`.
        name: String. Model name. Defaults to `"vggish"`.

    Returns:
        A `keras.Model`.

    Raises:
        TypeError: For a non-bool `include_top` or a `weights` that is not a path.
        ValueError: For invalid arguments; a `weights` path that does not exist
            or is not a readable checkpoint or Keras weights file (checked before
            the model is built); or a checkpoint that does not fit (see
            `load_vggish_checkpoint`).
        PermissionError: If the `weights` file cannot be read.

    Example:

    >>> body = vggish(include_top=False, pooling="avg", num_classes=10)
    >>> tuple(body.output.shape), body.count_params()
    ((None, 10), 4504842)

    References:
        - Hershey et al., "CNN Architectures for Large-Scale Audio
          Classification", ICASSP 2017.
    """
    include_top = check_bool(include_top, "include_top")
    extra = []
    if pooling not in (None, "avg", "max"):
        extra.append(
            f"`pooling` must be None, 'avg' or 'max'. Received: pooling={pooling!r}"
        )
    if include_top is False and num_classes is not None and pooling is None:
        extra.append(
            "`pooling` must be 'avg' or 'max' when `include_top=False` and "
            f"`num_classes` is set. Received: pooling={pooling!r}"
        )
    check_weights_file(weights, extra, checkpoint=True)
    check_model_args(
        num_classes=1 if num_classes is None else num_classes,
        input_shape=input_shape,
        rank=3,
        extra_errors=extra,
        classifier_activation=classifier_activation,
        name=name,
        fixed_size=include_top,  # Flatten → Dense
    )
    num_classes = None if num_classes is None else int(num_classes)
    input_shape = tuple(None if d is None else int(d) for d in input_shape)

    init = keras.initializers.TruncatedNormal(stddev=0.01)

    def conv(filters, layer_name):
        return layers.Conv2D(
            filters,
            3,
            padding="same",
            activation="relu",
            kernel_initializer=init,
            name=layer_name,
        )

    def pool(layer_name):
        return layers.MaxPooling2D(2, strides=2, padding="same", name=layer_name)

    inputs = keras.Input(shape=tuple(input_shape), name="log_mel")
    x = conv(64, "conv1")(inputs)
    x = pool("pool1")(x)
    x = conv(128, "conv2")(x)
    x = pool("pool2")(x)
    x = conv(256, "conv3_1")(x)
    x = conv(256, "conv3_2")(x)
    x = pool("pool3")(x)
    x = conv(512, "conv4_1")(x)
    x = conv(512, "conv4_2")(x)
    x = pool("pool4")(x)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        for layer_name in ("fc1_1", "fc1_2"):
            x = layers.Dense(
                4096, activation="relu", kernel_initializer=init, name=layer_name
            )(x)
        x = layers.Dense(_EMBEDDING_SIZE, kernel_initializer=init, name="fc2")(x)
        if num_classes is not None:
            x = layers.Activation("relu", name="embedding_relu")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    if num_classes is not None:
        x = layers.Dense(
            num_classes, activation=classifier_activation, name="predictions"
        )(x)
    model = keras.Model(inputs, x, name=name)

    if weights is not None:
        weights = os.fspath(weights)
        if weights.endswith(KERAS_WEIGHTS_SUFFIXES):
            load_weights_file(model, weights)
        else:
            load_vggish_checkpoint(model, weights)
    return model


def _layers_by_name(model):
    """Maps layer names to layers, looking inside nested models."""
    found = {}
    stack = [model]
    while stack:
        current = stack.pop()
        for layer in getattr(current, "layers", []):
            found.setdefault(layer.name, []).append(layer)
            if hasattr(layer, "layers"):
                stack.append(layer)
    return found


def load_vggish_checkpoint(
    model: keras.Model,
    path: str | os.PathLike,
    name_map: dict[str, str] | None = None,
) -> list[str]:
    """Assigns the weights of the official VGGish TF1 checkpoint to a Keras model.

    Reads the checkpoint with `tf.train.load_checkpoint` (V1 or V2 format; no
    TF1 graph or session) and assigns `<scope>/weights` and `<scope>/biases` to
    the kernel and bias of every layer of `name_map` found in `model` (nested
    models are searched). Slim stores conv kernels as `(3, 3, in, out)` and
    fully connected weights as `(in, out)`, the Keras layouts. Nothing is
    assigned unless every variable is found with the right shape.

    Args:
        model: A Keras model with VGGish layer names, e.g. from `vggish()`.
        path: Local path of the checkpoint (e.g. `vggish_model.ckpt`).
        name_map: Optional dict of Keras layer name → checkpoint scope.
            Defaults to `VGGISH_NAME_MAP`.

    Returns:
        The names of the layers that were loaded.

    Raises:
        ValueError: If the checkpoint cannot be read, the model has none of the
            layers, or variables are missing or have another shape (every
            problem is named in the message).

    Example:

    >>> import os, tempfile
    >>> import tensorflow as tf
    >>> model = vggish(include_top=False)
    >>> prefix = os.path.join(tempfile.mkdtemp(), "vggish_model.ckpt")
    >>> names, values = [], []
    >>> for layer_name in ("conv1", "conv2", "conv3_1", "conv3_2", "conv4_1",
    ...                    "conv4_2"):
    ...     layer = model.get_layer(layer_name)
    ...     for suffix, weight in (("weights", layer.kernel), ("biases", layer.bias)):
    ...         names.append(f"{VGGISH_NAME_MAP[layer_name]}/{suffix}")
    ...         values.append(tf.ones(weight.shape))
    >>> tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names,
    ...                   shape_and_slices=[""] * len(names), tensors=values)
    >>> load_vggish_checkpoint(model, prefix)
    ['conv1', 'conv2', 'conv3_1', 'conv3_2', 'conv4_1', 'conv4_2']
    >>> float(model.get_layer("conv1").bias.numpy()[0])
    1.0
    """
    import tensorflow as tf

    path = os.fspath(path)
    name_map = VGGISH_NAME_MAP if name_map is None else dict(name_map)
    try:
        reader = tf.train.load_checkpoint(path)
    except (tf.errors.OpError, ValueError) as e:
        raise ValueError(f"Could not read the VGGish checkpoint '{path}': {e}") from e
    shapes = reader.get_variable_to_shape_map()
    by_name = _layers_by_name(model)

    problems, assignments, loaded = [], [], []
    for layer_name, scope in name_map.items():
        candidates = by_name.get(layer_name, [])
        if not candidates:
            continue
        if len(candidates) > 1:
            problems.append(f"several layers of the model are named '{layer_name}'")
            continue
        layer = candidates[0]
        pairs = (("weights", getattr(layer, "kernel", None)),)
        pairs += (("biases", getattr(layer, "bias", None)),)
        for suffix, weight in pairs:
            variable = f"{scope}/{suffix}"
            if weight is None:
                problems.append(f"layer '{layer_name}' has no weight for '{variable}'")
            elif variable not in shapes:
                problems.append(
                    f"variable '{variable}' (for layer '{layer_name}') is missing"
                )
            elif tuple(shapes[variable]) != tuple(weight.shape):
                problems.append(
                    f"variable '{variable}' has shape {tuple(shapes[variable])} but "
                    f"layer '{layer_name}' expects {tuple(weight.shape)}"
                )
            else:
                assignments.append((weight, variable))
        loaded.append(layer_name)
    if not loaded:
        raise ValueError(
            f"The model '{model.name}' has none of the VGGish layers "
            f"{list(name_map)}; nothing to load from '{path}'."
        )
    if problems:
        raise ValueError(
            f"Cannot load the VGGish checkpoint '{path}' into '{model.name}':\n"
            + "\n".join(f"  {p}" for p in problems)
        )
    for weight, variable in assignments:
        weight.assign(reader.get_tensor(variable))
    return loaded


def _read_pca_params(pca_params):
    if isinstance(pca_params, (str, os.PathLike)):
        with np.load(os.fspath(pca_params)) as data:
            pca_params = {key: data[key] for key in data.files}
    try:
        eigen = np.asarray(pca_params["pca_eigen_vectors"], dtype=np.float32)
        means = np.asarray(pca_params["pca_means"], dtype=np.float32).reshape(-1)
    except (KeyError, TypeError) as e:
        raise ValueError(
            "`pca_params` must be the path of `vggish_pca_params.npz` or a mapping "
            "with the keys 'pca_eigen_vectors' and 'pca_means'. "
            f"Received: pca_params={pca_params!r}"
        ) from e
    if (
        eigen.ndim != 2
        or eigen.shape[0] != eigen.shape[1]
        or means.shape != (eigen.shape[1],)
    ):
        raise ValueError(
            "`pca_eigen_vectors` must be square (d, d) and `pca_means` have d "
            f"values. Received: shapes {eigen.shape} and {means.shape}"
        )
    return eigen, means


@keras.saving.register_keras_serializable(package="keras_filterprune")
class VGGishPostprocessor(keras.layers.Layer):
    """The PCA whitening (and 8-bit quantisation) of VGGish embeddings.

    Implements `vggish_postprocess.Postprocessor`:
    `pca = (embedding - pca_means) @ pca_eigen_vectors.T`, clipped to `[-2, 2]`;
    with `quantize=True` mapped to `uint8` as `floor((pca + 2) * 255 / 4)`, the
    format of the released AudioSet embeddings. The PCA parameters are
    non-trainable weights, saved with the model.

    Args:
        pca_params: Optional path of `vggish_pca_params.npz`, or a mapping with
            `pca_eigen_vectors` `(d, d)` and `pca_means` `(d,)` or `(d, 1)`.
            `None` creates zero weights, to be loaded (this is how a saved model
            restores it). Defaults to `None`.
        quantize: Bool. Return `uint8` codes instead of the clipped float32 PCA
            values. Defaults to `True`.
        **kwargs: Base layer keyword arguments (`name`, ...).

    Example:

    >>> params = {"pca_eigen_vectors": np.eye(128), "pca_means": np.zeros(128)}
    >>> layer = VGGishPostprocessor(params)
    >>> codes = layer(np.full((1, 128), 0.5, dtype="float32"))
    >>> keras.backend.standardize_dtype(codes.dtype), int(codes[0, 0])
    ('uint8', 159)
    """

    def __init__(self, pca_params=None, quantize: bool = True, **kwargs):
        quantize = check_bool(quantize, "quantize")
        super().__init__(**kwargs)
        self.quantize = quantize
        self._initial = None if pca_params is None else _read_pca_params(pca_params)

    def build(self, input_shape):
        dim = input_shape[-1]
        if self._initial is not None and self._initial[0].shape[0] != dim:
            raise ValueError(
                f"The PCA parameters are {self._initial[0].shape[0]}-dimensional but "
                f"the embeddings have {dim} values. Received: input_shape="
                f"{tuple(input_shape)}"
            )
        self.pca_eigen_vectors = self.add_weight(
            shape=(dim, dim),
            initializer="zeros",
            trainable=False,
            name="pca_eigen_vectors",
        )
        self.pca_means = self.add_weight(
            shape=(dim,), initializer="zeros", trainable=False, name="pca_means"
        )
        if self._initial is not None:
            self.pca_eigen_vectors.assign(self._initial[0])
            self.pca_means.assign(self._initial[1])
            self._initial = None

    def call(self, inputs):
        centred = ops.cast(inputs, "float32") - self.pca_means
        pca = ops.matmul(centred, ops.transpose(self.pca_eigen_vectors))
        pca = ops.clip(pca, _QUANTIZE_MIN, _QUANTIZE_MAX)
        if not self.quantize:
            return pca
        scale = 255.0 / (_QUANTIZE_MAX - _QUANTIZE_MIN)
        return ops.cast(ops.floor((pca - _QUANTIZE_MIN) * scale), "uint8")

    def compute_output_spec(self, inputs):
        dtype = "uint8" if self.quantize else "float32"
        return keras.KerasTensor(inputs.shape, dtype=dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"quantize": self.quantize})
        return config
