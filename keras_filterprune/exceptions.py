"""Warning category of keras-filterprune."""


class FilterPruneWarning(UserWarning):
    """Warning raised by keras-filterprune for recoverable problems.

    Examples are a layer the graph tracer does not know (its channel group is frozen
    and reported) or an export whose output differs more than expected.
    """
