import logging

import keras

from keras_filterprune._messages import say


def test_say_writes_to_stdout_while_interactive(capsys, caplog):
    assert keras.config.is_interactive_logging_enabled()
    with caplog.at_level(logging.INFO, logger="keras_filterprune"):
        say("Timing 3 layers")
    assert capsys.readouterr().out == "Timing 3 layers\n"
    assert not caplog.records


def test_say_logs_when_interactive_logging_is_off(capsys, caplog):
    keras.config.disable_interactive_logging()
    try:
        with caplog.at_level(logging.INFO, logger="keras_filterprune"):
            say("Timing 3 layers")
    finally:
        keras.config.enable_interactive_logging()
    assert capsys.readouterr().out == ""
    assert [r.getMessage() for r in caplog.records] == ["Timing 3 layers"]
    assert caplog.records[0].levelno == logging.INFO
