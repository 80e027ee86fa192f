"""Tests of keras_filterprune/_files.py: reading untrusted JSON files."""

import re

import pytest

from keras_filterprune._files import read_json


def _read(path):
    return read_json(path, "pruning plan", "`PruningPlan.save`")


def test_read_json_returns_the_document(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"groups": [1, 2.5, null], "name": "\\u00e9"}', "utf-8")
    assert _read(path) == {"groups": [1, 2.5, None], "name": "é"}
    assert _read(str(path)) == _read(path)


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"\xff\xfe{}", "not UTF-8 text (invalid start byte at byte 0)"),
        (b"{not json", "not valid JSON (Expecting property name"),
        (b"", "not valid JSON (Expecting value"),
        (b"[" * 100_000, "not valid JSON (nested too deeply to parse)"),
        (b"[" + b"1" * 5000 + b"]", "not valid JSON (Exceeds the limit"),
    ],
    ids=["binary", "garbage", "empty", "deep", "long_integer"],
)
def test_bad_content_is_a_value_error_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "p.json"
    path.write_bytes(content)
    start = re.escape(f"Cannot read pruning plan '{path}': {problem}")
    end = re.escape("; it must be JSON, as written by `PruningPlan.save`.")
    with pytest.raises(ValueError, match=f"^{start}.*{end}$") as info:
        _read(path)
    assert type(info.value) is ValueError


def test_files_that_cannot_be_opened(tmp_path):
    missing = tmp_path / "none.json"
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"No pruning plan at '{missing}'.")
    ):
        _read(missing)
    with pytest.raises(
        IsADirectoryError, match=re.escape(f"pruning plan '{tmp_path}'")
    ):
        _read(tmp_path)
    with pytest.raises(TypeError, match="`path` must be a str or os.PathLike"):
        _read(3)
