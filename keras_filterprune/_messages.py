"""Progress messages, shown the way Keras shows its own (`fit` logs, `Progbar`)."""

from __future__ import annotations

import logging
import sys

import keras

logger = logging.getLogger("keras_filterprune")


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
