"""Warning category of keras-filterprune."""


class FilterPruneWarning(UserWarning):
    """Warning raised by keras-filterprune for recoverable problems.

    Examples are a layer the graph tracer does not know (its channel group is frozen
    and reported) or an export whose output differs more than expected. Filter
    them like any warning category, e.g.
    `warnings.filterwarnings("error", category=FilterPruneWarning)` in tests.

    Example:

    >>> import warnings, keras
    >>> from keras_filterprune import FilterPruneWarning, plan_pruning
    >>> class Scale(keras.layers.Layer):  # weights of its own and no handler
    ...     def build(self, input_shape):
    ...         self.gamma = self.add_weight(shape=(input_shape[-1],))
    ...     def call(self, x):
    ...         return x * self.gamma
    >>> model = keras.Sequential([
    ...     keras.Input((8,)), keras.layers.Dense(4), Scale(name="scale"),
    ...     keras.layers.Dense(4), keras.layers.Dense(2)])
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always", FilterPruneWarning)
    ...     plan = plan_pruning(model, ratio=0.5)
    >>> [w.category.__name__ for w in caught]
    ['FilterPruneWarning']
    >>> print(caught[0].message)
    Layer 'scale' (Scale) has no pruning handler ... The channel groups that
    reach it are frozen (never pruned). Teach keras-filterprune the layer with
    `keras_filterprune.handlers.register_handler`.
    """
