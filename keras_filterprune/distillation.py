"""Knowledge distillation: fine-tuning a pruned model against the unpruned one.

`Distiller` is a `keras.Model` that trains a student (the pruned model) on the
labels and on the softened outputs of a frozen teacher (the original), so that
the student recovers the accuracy pruning cost it (Hinton et al., 2015). The KL
term follows each output's head: a softmax over the classes, or a Bernoulli per
unit for binary and multi-label heads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from keras_filterprune._validation import check_number
from keras_filterprune.recovery import input_structure

__all__ = ["Distiller"]

_SOFTMAX, _SIGMOID = "softmax", "sigmoid"
_CATEGORICAL, _BINARY = "categorical", "binary"
_EPSILON = 1e-7


def _head_layers(model: keras.Model) -> list:
    """The layer computing each (flattened) output; the last layer when unknown."""
    names = getattr(model, "output_names", None)
    if names:
        try:
            return [model.get_layer(name) for name in names]
        except ValueError:
            pass
    layers = getattr(model, "layers", None)
    return [layers[-1]] if layers else []


def _head_activation(layer: Any) -> str | None:
    """`"softmax"`, `"sigmoid"` or `None` (logits) of the layer of an output."""
    if isinstance(layer, keras.Model):  # a nested model: its own single head
        heads = _head_layers(layer)
        return _head_activation(heads[0]) if len(heads) == 1 else None
    if isinstance(layer, keras.layers.Softmax):
        return _SOFTMAX
    name = getattr(getattr(layer, "activation", None), "__name__", "")
    return name if name in (_SOFTMAX, _SIGMOID) else None


def _output_structure(model: keras.Model) -> Any:
    """The outputs (KerasTensors, in their structure) of a built model, or `None`
    when they are not known before a call (a subclassed model)."""
    try:
        return model.output  # Functional: a tensor, list or dict
    except (AttributeError, ValueError):
        pass
    try:
        outputs = model.outputs  # Sequential
    except (AttributeError, ValueError):
        return None
    if not outputs:
        return None
    return outputs[0] if len(outputs) == 1 else list(outputs)


def _unwrap(structure: Any) -> Any:
    """A one-element list/tuple of outputs is the same as its element."""
    if isinstance(structure, (list, tuple)) and len(structure) == 1:
        return structure[0]
    return structure


def _describe(structure: Any) -> str:
    def shape(t):
        return tuple(None if d is None else int(d) for d in t.shape)

    return str(keras.tree.map_structure(shape, structure))


def _same_structure(student: Any, teacher: Any) -> bool:
    """Whether two (unwrapped) structures of tensors match: the same kind (dict
    or not), keys and count, and shapes after the batch axis (`None` matches
    any size)."""
    s_flat, t_flat = keras.tree.flatten(student), keras.tree.flatten(teacher)
    if isinstance(student, dict) != isinstance(teacher, dict):
        return False
    if len(s_flat) != len(t_flat):
        return False
    if isinstance(student, dict) and sorted(student) != sorted(teacher):
        return False
    for s, t in zip(s_flat, t_flat):
        s_shape, t_shape = tuple(s.shape)[1:], tuple(t.shape)[1:]
        if len(s_shape) != len(t_shape) or not all(
            a is None or b is None or a == b for a, b in zip(s_shape, t_shape)
        ):
            return False
    return True


def _paired_outputs(student: Any, teacher: Any) -> list[tuple[str, Any, Any]]:
    """`(label, student output, teacher output)` per output, in flattened order.

    Raises a ValueError naming both structures when the number of outputs, their
    kind (dict or not), their keys or their shapes after the batch axis differ.
    """
    student, teacher = _unwrap(student), _unwrap(teacher)
    s_flat, t_flat = keras.tree.flatten(student), keras.tree.flatten(teacher)
    if not _same_structure(student, teacher):
        raise ValueError(
            "`student` and `teacher` must have the same outputs (structure, keys "
            "and shapes after the batch axis) to be distilled. Received: student "
            f"outputs {_describe(student)}, teacher outputs {_describe(teacher)}"
        )
    if isinstance(student, dict):
        labels = [f"output {key!r}" for key in sorted(student)]
    elif len(s_flat) == 1:
        labels = ["the output"]
    else:
        labels = [f"output {i}" for i in range(len(s_flat))]
    return list(zip(labels, s_flat, t_flat))


def _check_same_inputs(student: keras.Model, teacher: keras.Model) -> None:
    """Raises a ValueError naming both models when their inputs differ (count,
    dict keys, or shapes after the batch axis); unknown inputs pass."""
    s_in, t_in = input_structure(student), input_structure(teacher)
    if s_in is None or t_in is None:
        return
    s_in, t_in = _unwrap(s_in), _unwrap(t_in)
    if not _same_structure(s_in, t_in):
        raise ValueError(
            "`student` and `teacher` must take the same inputs (the teacher sees "
            "every batch the student trains on). Received: student inputs "
            f"{_describe(s_in)}, teacher inputs {_describe(t_in)}"
        )


def _check_finite_weights(model: keras.Model, name: str) -> None:
    """Raises a ValueError naming the first weight of `model` holding NaN or Inf:
    a distillation from (or of) it would train on a NaN loss without a word."""
    for variable in model.weights:
        value = keras.ops.convert_to_numpy(variable)
        if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
            path = getattr(variable, "path", None) or variable.name
            raise ValueError(
                f"`{name}` has NaN or Inf weights (`{path}`): the distillation "
                "loss would be NaN. Reload or retrain that model first."
            )


def _head_kind(
    label: str,
    width: int | None,
    student: str | None,
    teacher: str | None,
    multi_label: bool | None,
) -> str:
    """`"categorical"` (softmax over the last axis) or `"binary"` (a Bernoulli
    per unit) for one output, from its width and the detected activations."""
    found = {student, teacher} - {None}
    where = f"({label}: student {student or 'logits'}, teacher {teacher or 'logits'})"
    if found == {_SOFTMAX, _SIGMOID}:
        raise ValueError(
            f"`student` and `teacher` must end in the same kind of head {where}."
        )
    if width == 1:
        if _SOFTMAX in found:
            raise ValueError(
                "A softmax over one unit is always 1: there is nothing to distill "
                f"{where}. End a binary head in a sigmoid or in no activation."
            )
        return _BINARY
    if _SIGMOID in found:
        if multi_label is False:
            raise ValueError(f"`multi_label=False` but the head is a sigmoid {where}.")
        return _BINARY
    if _SOFTMAX in found:
        if multi_label is True:
            raise ValueError(f"`multi_label=True` but the head is a softmax {where}.")
        return _CATEGORICAL
    return _BINARY if multi_label else _CATEGORICAL


def _as_logits(outputs: Any, probabilities: bool, kind: str) -> Any:
    """Logits of an output (log-probabilities for a softmax, log-odds for a
    sigmoid), in float32."""
    outputs = keras.ops.cast(outputs, "float32")
    if not probabilities:
        return outputs
    if kind == _CATEGORICAL:  # softmax(log p) = p
        return keras.ops.log(keras.ops.clip(outputs, _EPSILON, 1.0))
    p = keras.ops.clip(outputs, _EPSILON, 1.0 - _EPSILON)
    return keras.ops.log(p) - keras.ops.log(1.0 - p)


def _soft_kl(student_logits: Any, teacher_logits: Any, kind: str, t: float) -> Any:
    """Mean KL(teacher ‖ student) at temperature `t`: over the last axis for a
    categorical head, per unit (Bernoulli) for a binary one; averaged over the
    batch (and, binary, the units)."""
    s, z = student_logits / t, teacher_logits / t
    ops = keras.ops
    if kind == _CATEGORICAL:
        log_p, log_q = ops.log_softmax(z, axis=-1), ops.log_softmax(s, axis=-1)
        return ops.mean(ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1))
    p = ops.sigmoid(z)
    kl = p * (ops.log_sigmoid(z) - ops.log_sigmoid(s)) + (1.0 - p) * (
        ops.log_sigmoid(-z) - ops.log_sigmoid(-s)
    )
    return ops.mean(kl)


@keras.saving.register_keras_serializable(package="keras_filterprune")
class Distiller(keras.Model):
    """Trains a (pruned) student to match a frozen teacher and the labels.

    The loss is `(1 - alpha) * loss(y, student) + alpha * T² · KL(teacher ‖
    student)` with both softened by the temperature `T` (Hinton et al., 2015; the
    `T²` keeps the soft term's gradients on the scale of the hard one). The
    teacher runs in inference mode and is never updated; it is not changed either
    (its `trainable` flag is left alone: its weights are simply not among the
    Distiller's trainable ones).

    The KL term follows the head of each output:

    - categorical (several units, softmax or logits): `KL(softmax(z_t / T) ‖
      softmax(z_s / T))` over the last axis;
    - binary (one unit, sigmoid or a single logit) and multi-label (several
      units with a sigmoid): the Bernoulli KL between `sigmoid(z_t / T)` and
      `sigmoid(z_s / T)`, per unit, averaged over the units. A softmax over one
      unit (always 1) is refused.

    Heads ending in a softmax or a sigmoid are detected (on the layer of each
    output, as `Dense(..., activation=...)`, `Activation` or `Softmax`) and
    their log-probabilities or log-odds are used as logits; other heads are read
    as logits. `from_logits` overrides the detection of probabilities, and
    `multi_label=True` reads several-unit logit heads as multi-label.

    Models with several outputs (a list or dict) are distilled output by output,
    the KL terms summed; the teacher's outputs must match the student's
    (structure, keys and shapes), else a ValueError names both. Subclassed models
    whose outputs are unknown before a call are checked on the first batch.

    The defaults (`T = 2`, `alpha = 0.1`) had the best mean over three pruned nets
    and were never below plain fine-tuning in `benchmarks/results/bench_distill.md`
    (2 seeds, no difference significant; `alpha = 0.9` was the worst alpha).

    Args:
        student: The `keras.Model` to train (e.g. `apply_plan(...)` output).
        teacher: The unpruned `keras.Model`: same inputs, same outputs.
        temperature: `float` > 0. Softening temperature `T`. Defaults to `2.0`.
        alpha: `float` in [0, 1]. Weight of the distillation term. Defaults to
            `0.1`.
        from_logits: `bool` or `None`. Whether the two models output logits;
            `None` detects a final softmax or sigmoid per model and output.
            Defaults to `None`.
        multi_label: `bool` or `None`. Whether outputs of several units are
            independent labels (Bernoulli KL per unit) rather than one
            categorical distribution; `None` reads a sigmoid head as multi-label
            and any other as categorical. One-unit outputs are always binary.
            Defaults to `None`.

    Raises:
        TypeError: `student` or `teacher` is not a Keras model, or a bad type.
        ValueError: The two models' outputs differ, their heads disagree (a
            softmax against a sigmoid), a softmax over one unit, or bad
            `temperature`/`alpha`.

    Example:

    >>> import keras, numpy as np
    >>> def net(width, units=3, activation=None):
    ...     inputs = keras.Input((8,))
    ...     x = keras.layers.Dense(width, activation="relu")(inputs)
    ...     outputs = keras.layers.Dense(units, activation=activation)(x)
    ...     return keras.Model(inputs, outputs)
    >>> teacher, student = net(16), net(4)
    >>> distiller = Distiller(student, teacher)
    >>> distiller.compile("adam", loss=keras.losses.SparseCategoricalCrossentropy(
    ...     from_logits=True), metrics=["accuracy"])
    >>> x, y = np.random.rand(32, 8), np.random.randint(0, 3, 32)
    >>> history = distiller.fit(x, y, epochs=1, verbose=0)
    >>> sorted(history.history)
    ['accuracy', 'loss']

    A binary head (one sigmoid unit) is distilled through the Bernoulli KL:

    >>> distiller = Distiller(net(4, 1, "sigmoid"), net(16, 1, "sigmoid"))
    >>> distiller.compile("adam", loss="binary_crossentropy")
    >>> history = distiller.fit(x, y % 2, epochs=1, verbose=0)

    A teacher whose outputs differ from the student's is refused:

    >>> Distiller(net(4), net(16, units=2))
    Traceback (most recent call last):
    ...
    ValueError: `student` and `teacher` must have the same outputs (structure, \
keys and shapes after the batch axis) to be distilled. Received: student outputs \
(None, 3), teacher outputs (None, 2)

    References:
        - Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural
          Network", 2015.
    """

    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model,
        temperature: float = 2.0,
        alpha: float = 0.1,
        from_logits: bool | None = None,
        multi_label: bool | None = None,
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
        for name, value in (("from_logits", from_logits), ("multi_label", multi_label)):
            if value is not None and not isinstance(value, bool):
                raise TypeError(
                    f"`{name}` must be None or a bool. Received: {name}={value!r}"
                )
        self.from_logits = from_logits
        self.multi_label = multi_label
        self.student = student
        self.teacher = teacher
        self._activations = [
            [_head_activation(layer) for layer in _head_layers(model)]
            for model in (student, teacher)
        ]
        _check_same_inputs(student, teacher)
        outputs = [_output_structure(model) for model in (student, teacher)]
        if all(o is not None for o in outputs):
            self._heads(*outputs)  # refuse mismatched models now, not in fit
        for name, model in (("teacher", teacher), ("student", student)):
            _check_finite_weights(model, name)

    def _heads(self, student: Any, teacher: Any) -> list[tuple]:
        """`(student output, teacher output, kind, student probabilities, teacher
        probabilities)` per output; raises when the models do not match."""
        pairs = _paired_outputs(student, teacher)
        activations = [
            acts if len(acts) == len(pairs) else [None] * len(pairs)
            for acts in self._activations
        ]
        heads = []
        for (label, s, t), s_act, t_act in zip(pairs, *activations):
            width = tuple(s.shape)[-1] if len(s.shape) else 1
            kind = _head_kind(label, width, s_act, t_act, self.multi_label)
            if self.from_logits is None:
                s_probs, t_probs = s_act is not None, t_act is not None
            else:
                s_probs = t_probs = not self.from_logits
            heads.append((s, t, kind, s_probs, t_probs))
        return heads

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

    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`, with NumPy `x` and `y` checked first (numbers, no
        NaN or Inf, class labels that fit the student and the loss), so that a
        bad array is named before a batch changes the student."""
        _check_fit_arrays(x, y, _output_structure(self.student), self.loss)
        return super().fit(x, y, *args, **kwargs)

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
        soft = 0.0
        for s, z, kind, s_probs, t_probs in self._heads(y_pred, teacher):
            soft = soft + _soft_kl(
                _as_logits(s, s_probs, kind), _as_logits(z, t_probs, kind), kind, t
            )
        total = self.alpha * (t * t) * soft
        if self.alpha < 1.0:  # alpha = 1: the labels' loss is left out (not 0 × it)
            total = total + (1.0 - self.alpha) * keras.ops.cast(hard, "float32")
        return total

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "student": keras.saving.serialize_keras_object(self.student),
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "temperature": self.temperature,
            "alpha": self.alpha,
            "from_logits": self.from_logits,
            "multi_label": self.multi_label,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        if not isinstance(config, Mapping):
            raise TypeError(
                "`config` must be a dict from `Distiller.get_config()`. Received: "
                f"config of type {type(config).__name__}"
            )
        missing = [key for key in ("student", "teacher") if config.get(key) is None]
        if missing:
            raise ValueError(
                f"A Distiller config needs the serialized `student` and `teacher` "
                f"models (from `Distiller.get_config()`); {missing} missing."
            )
        config = dict(config)
        for key in ("student", "teacher"):
            config[key] = keras.saving.deserialize_keras_object(
                config[key], custom_objects=custom_objects
            )
        return cls(**config)


def _is_sparse_loss(loss: Any) -> bool:
    if isinstance(loss, str):
        return "sparse_categorical" in loss
    name = getattr(loss, "name", None) or getattr(loss, "__name__", "")
    return isinstance(loss, keras.losses.SparseCategoricalCrossentropy) or (
        "sparse_categorical" in str(name)
    )


def _check_fit_arrays(x: Any, y: Any, outputs: Any, loss: Any) -> None:
    """Raises a TypeError or ValueError naming `x` or `y` of `Distiller.fit`
    when a NumPy array cannot train the student: not numbers, NaN or Inf (one
    turns every weight into NaN), or labels beyond the student's classes or of
    another form than the loss takes. Datasets and generators are left to Keras."""
    leaves = [("x", a) for a in keras.tree.flatten(x)] if x is not None else []
    if isinstance(y, np.ndarray):
        leaves.append(("y", y))
    for name, array in leaves:
        if not isinstance(array, np.ndarray):
            continue
        if array.dtype.kind not in "biuf":
            raise TypeError(
                f"`{name}` of Distiller.fit must hold numbers. Received: an array "
                f"of dtype {array.dtype}"
            )
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            first = int(np.argmin(np.isfinite(array).reshape(len(array), -1).all(1)))
            raise ValueError(
                f"`{name}` of Distiller.fit holds NaN or Inf (example {first}): one "
                "would turn every weight of the student into NaN. Clean the data "
                "first (e.g. np.nan_to_num)."
            )
    outputs = keras.tree.flatten(outputs) if outputs is not None else []
    if not isinstance(y, np.ndarray) or len(outputs) != 1:
        return
    classes = outputs[0].shape[-1]
    if classes is None or classes < 2 or not _is_sparse_loss(loss):
        return
    if y.ndim == 2 and y.shape[1] == classes:
        raise ValueError(
            f"`y` of Distiller.fit holds one-hot rows (shape {y.shape}) but the loss "
            f"({loss!r}) takes class indices: pass `y.argmax(-1)`, or compile with "
            "'categorical_crossentropy'."
        )
    labels = y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y
    if labels.ndim != 1 or not labels.size:
        return
    if labels.min() < 0 or labels.max() >= classes:
        bad = labels[(labels < 0) | (labels >= classes)][0].item()
        raise ValueError(
            f"`y` of Distiller.fit holds class {bad!r}, but the student has {classes} "
            f"classes (0 to {classes - 1})."
        )
