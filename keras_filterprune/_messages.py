"""Progress messages, shown the way Keras shows its own (`fit` logs, `Progbar`),
and warnings that point at the user's line."""

from __future__ import annotations

import logging
import os
import sys
import warnings

import keras

logger = logging.getLogger("keras_filterprune")
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def say(message: str) -> None:
    """Writes `message` and a newline to stdout while Keras' interactive logging
    is on (the default, `keras.config.is_interactive_logging_enabled()`), else
    logs it at INFO level under `keras_filterprune`, as Keras does for servers
    and batch jobs (`keras.config.disable_interactive_logging()`)."""
    if keras.config.is_interactive_logging_enabled():
        sys.stdout.write(message + "\n")
        sys.stdout.flush()
    else:
        logger.info(message)


def warn(message: str | Warning, category: type[Warning]) -> None:
    """`warnings.warn` attributed to the first caller outside the package, so
    that the warning names the user's line however deep inside it is raised
    (what Python 3.12's `skip_file_prefixes` does); from a callback that is
    Keras' trainer, which calls it."""
    frame, level = sys._getframe(1), 2  # 1 is this function
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
