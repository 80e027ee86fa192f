"""Recovering accuracy after pruning: BatchNorm recalibration and distillation.

Removing filters changes what every later BatchNormalization sees, so the moving
statistics stored during training no longer match and a pruned model can collapse
to one class until they are re-estimated. `recalibrate_batchnorm` re-estimates them
from a few unlabeled batches (no training); `Distiller` fine-tunes the pruned model
against the unpruned one (Hinton et al., 2015).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from keras_filterprune._paths import all_layers
from keras_filterprune._validation import check_int, check_number

__all__ = ["Distiller", "recalibrate_batchnorm"]

_NOISE_ATTRIBUTES = ("rate", "stddev")  # Dropout family, GaussianNoise


def _first_input(element: Any) -> Any:
    """`x` of an element that may be `(x,)`, `(x, y)` or `(x, y, sample_weight)`."""
    if isinstance(element, tuple) and 1 <= len(element) <= 3:
        return element[0]
    return element


def _batches(data: Any, batch_size: int) -> Iterator[Any]:
    """Input batches of an array, a dict of arrays, `(x, y)` arrays, a
    `tf.data.Dataset`, a `keras.utils.PyDataset`, an iterable or a generator."""
    data = _first_input(data)
    arrays = keras.tree.flatten(data) if isinstance(data, (dict, list)) else [data]
    if arrays and all(hasattr(a, "shape") and hasattr(a, "dtype") for a in arrays):
        n = len(arrays[0])
        for start in range(0, n, batch_size):
            yield keras.tree.map_structure(
                lambda a, start=start: np.asarray(a[start : start + batch_size]), data
            )
        return
    if isinstance(data, (str, bytes)) or not hasattr(data, "__iter__"):
        raise TypeError(
            "`data` must be an array (or a dict/list of arrays, or (x, y) arrays), "
            "a tf.data.Dataset, a keras.utils.PyDataset or an iterable of batches. "
            f"Received: data of type {type(data).__name__}"
        )
    for element in data:
        yield _first_input(element)


def recalibrate_batchnorm(
    model: keras.Model, data: Any, *, steps: int | None = None, batch_size: int = 32
) -> int:
    """Re-estimates the moving statistics of every BatchNormalization layer.

    The model runs on `data` in training mode with no weight update; the momentum
    of batch `k` (0-based) is set to `k / (k + 1)`, so each moving mean and
    variance becomes the plain average of the batch statistics. Nested models are
    included. Dropout and noise layers are silenced meanwhile (their training-mode
    noise would bias the statistics of the layers after them), and every momentum
    and rate is restored afterwards, also on failure. No other weight changes.

    Args:
        model: A `keras.Model`. Modified in place (its moving statistics only).
        data: Unlabeled inputs: an array (or dict/list of arrays, or `(x, y)`
            arrays, of which `x` is used) cut into batches of `batch_size`, or a
            `tf.data.Dataset`, `keras.utils.PyDataset`, iterable or generator of
            batches (elements `x`, `(x, y)` or `(x, y, w)`). A few hundred
            examples are enough.
        steps: `int`. Use at most this many batches. Defaults to `None` (all).
        batch_size: `int`. Batch size for array data. Defaults to `32`.

    Returns:
        `int`: the number of batches used (0 when the model has no
        BatchNormalization; then nothing runs).

    Raises:
        TypeError: `model` is not a Keras model, or `data` is not data.
        ValueError: `data` yields no batch, or bad `steps`/`batch_size`.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
    ...                           keras.layers.BatchNormalization()])
    >>> x = np.random.default_rng(0).normal(2.0, 1.0, (64, 4)).astype("float32")
    >>> recalibrate_batchnorm(model, x, batch_size=16)
    4
    >>> bn = model.layers[-1]
    >>> means = [np.mean(model.layers[0](x[i:i + 16]).numpy(), axis=0)
    ...          for i in range(0, 64, 16)]
    >>> bool(np.allclose(bn.moving_mean.numpy(), np.mean(means, axis=0), atol=1e-5))
    True

    References:
        - Li et al., "Revisiting Batch Normalization For Practical Domain
          Adaptation" (AdaBN), 2016; Li et al., "EagleEye: Fast Sub-net
          Evaluation for Efficient Neural Network Pruning", ECCV 2020.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`model` must be a keras.Model. Received: {type(model).__name__}"
        )
    if steps is not None:
        check_int(steps, "steps", 1)
    check_int(batch_size, "batch_size", 1)
    layers = list(all_layers(model))
    norms = [
        layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    if not norms:
        return 0
    noisy = [
        (layer, name, getattr(layer, name))
        for layer in layers
        if not isinstance(layer, keras.layers.BatchNormalization)
        for name in _NOISE_ATTRIBUTES
        if isinstance(getattr(layer, name, None), (int, float))
    ]
    momenta = [layer.momentum for layer in norms]
    used = 0
    try:
        for layer, name, _ in noisy:
            setattr(layer, name, 0.0)
        batches = _batches(data, batch_size)
        for k, x in enumerate(itertools.islice(batches, steps)):
            for layer in norms:
                layer.momentum = k / (k + 1)
            model(x, training=True)
            used = k + 1
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
        for layer, name, value in noisy:
            setattr(layer, name, value)
    if not used:
        raise ValueError("`data` yielded no batch: pass at least one example.")
    return used


def _is_probabilities(model: keras.Model) -> bool:
    """Whether the model's (first) output ends in a softmax."""
    try:
        layer = model.get_layer(model.output_names[0])
    except (AttributeError, ValueError, IndexError):
        layer = model.layers[-1] if getattr(model, "layers", None) else None
    activation = getattr(layer, "activation", None)
    if isinstance(layer, keras.layers.Softmax):
        return True
    return getattr(activation, "__name__", "") == "softmax"


@keras.saving.register_keras_serializable(package="keras_filterprune")
class Distiller(keras.Model):
    """Trains a (pruned) student to match a frozen teacher and the labels.

    The loss is `(1 - alpha) * loss(y, student) + alpha * T² · KL(softmax(teacher
    / T) ‖ softmax(student / T))` (Hinton et al., 2015; the `T²` keeps the soft
    term's gradients on the scale of the hard one). The teacher runs in inference
    mode and is never updated; it is not changed either (its `trainable` flag is
    left alone: its weights are simply not among the Distiller's trainable ones).

    Heads that end in a softmax (probabilities) are handled: their log is used as
    logits (softmax of a log-probability is the same distribution). Heads without
    one are read as logits. Set `from_logits` to override the detection.

    Args:
        student: The `keras.Model` to train (e.g. `apply_plan(...)` output).
        teacher: The unpruned `keras.Model`; same inputs, same number of classes.
        temperature: `float` > 0. Softening temperature `T`. Defaults to `4.0`.
        alpha: `float` in [0, 1]. Weight of the distillation term. Defaults to
            `0.9`.
        from_logits: `bool` or `None`. Whether the two models output logits;
            `None` detects a final softmax per model. Defaults to `None`.

    Example:

    >>> import keras, numpy as np
    >>> def net(width):
    ...     inputs = keras.Input((8,))
    ...     x = keras.layers.Dense(width, activation="relu")(inputs)
    ...     return keras.Model(inputs, keras.layers.Dense(3)(x))
    >>> teacher, student = net(16), net(4)
    >>> distiller = Distiller(student, teacher)
    >>> distiller.compile("adam", loss=keras.losses.SparseCategoricalCrossentropy(
    ...     from_logits=True), metrics=["accuracy"])
    >>> x, y = np.random.rand(32, 8), np.random.randint(0, 3, 32)
    >>> history = distiller.fit(x, y, epochs=1, verbose=0)
    >>> sorted(history.history)
    ['accuracy', 'loss']

    References:
        - Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural
          Network", 2015.
    """

    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model,
        temperature: float = 4.0,
        alpha: float = 0.9,
        from_logits: bool | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        for name, value in (("student", student), ("teacher", teacher)):
            if not isinstance(value, keras.Model):
                raise TypeError(
                    f"`{name}` must be a keras.Model. Received: {type(value).__name__}"
                )
        if student is teacher:
            raise ValueError("`student` and `teacher` must be different models.")
        self.temperature = check_number(
            temperature, "temperature", low=0.0, low_open=True
        )
        self.alpha = check_number(alpha, "alpha", low=0.0, high=1.0)
        if from_logits is not None and not isinstance(from_logits, bool):
            raise TypeError(
                f"`from_logits` must be None or a bool. Received: {from_logits!r}"
            )
        self.from_logits = from_logits
        self.student = student
        self.teacher = teacher
        self._student_probs = (
            _is_probabilities(student) if from_logits is None else not from_logits
        )
        self._teacher_probs = (
            _is_probabilities(teacher) if from_logits is None else not from_logits
        )

    # The teacher's weights are tracked (saved with the Distiller) but never
    # trained: they are moved from the trainable to the non-trainable lists.
    def _teacher_ids(self) -> set[int]:
        return {id(v) for v in self.teacher.variables}

    @property
    def trainable_weights(self) -> list:
        ids = self._teacher_ids()
        return [v for v in super().trainable_weights if id(v) not in ids]

    @property
    def trainable_variables(self) -> list:
        return self.trainable_weights

    @property
    def non_trainable_weights(self) -> list:
        ids = self._teacher_ids()
        extra = [v for v in super().trainable_weights if id(v) in ids]
        return super().non_trainable_weights + extra

    @property
    def non_trainable_variables(self) -> list:
        return self.non_trainable_weights

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def _logits(self, outputs, probabilities: bool):
        outputs = keras.ops.cast(outputs, "float32")
        if probabilities:
            return keras.ops.log(keras.ops.clip(outputs, 1e-7, 1.0))
        return outputs

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        hard = super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )
        if y_pred is None:
            y_pred = self(x, training=training)
        teacher = self.teacher(x, training=False)
        t = self.temperature
        soft_teacher = keras.ops.softmax(
            self._logits(teacher, self._teacher_probs) / t, axis=-1
        )
        log_student = keras.ops.log_softmax(
            self._logits(y_pred, self._student_probs) / t, axis=-1
        )
        log_teacher = keras.ops.log(keras.ops.clip(soft_teacher, 1e-12, 1.0))
        kl = keras.ops.sum(soft_teacher * (log_teacher - log_student), axis=-1)
        soft = keras.ops.mean(kl) * (t * t)
        hard = keras.ops.cast(hard, "float32")
        return (1.0 - self.alpha) * hard + self.alpha * soft

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "student": keras.saving.serialize_keras_object(self.student),
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "temperature": self.temperature,
            "alpha": self.alpha,
            "from_logits": self.from_logits,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("student", "teacher"):
            config[key] = keras.saving.deserialize_keras_object(
                config[key], custom_objects=custom_objects
            )
        return cls(**config)
