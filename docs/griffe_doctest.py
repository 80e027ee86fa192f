"""A griffe extension: Keras-style docstrings read well in the API reference.

The package's docstrings follow Keras: an `Example:` header, a blank line, then
`>>>` lines at the header's own indentation (as keras/src does). Google-style
parsers only read a section whose body is indented under its header, so Markdown
would see those lines as nested block quotes. This extension, run on every object
that mkdocstrings documents, indents the body of such an `Example:` or `Examples:`
section (up to the next section header) and names it `Examples:`, so that it is
parsed as an examples section (code blocks), and puts any other run of `>>>` lines
(a module docstring's example without a header) in a `pycon` code block. The
docstrings themselves are not changed; doctest keeps reading them as they are.

The reference loads objects by importing them (some docstrings are completed at
import time), and an imported constant has no docstring of its own: Python gives
it its type's (`tuple.__doc__`). For those, the extension reads the constant's
documentation from the source instead: the string under the assignment, or the
`#:` comment lines above it.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any

import griffe

_EXAMPLES_HEADER = re.compile(r"^(Example|Examples):\s*$")
_SECTION_HEADER = re.compile(r"^[A-Z][A-Za-z ]*:\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _indent_example_sections(lines: list[str]) -> list[str]:
    """Indents the unindented body of every `Example(s):` section by 4 spaces
    (without the blank lines between the header and the body: a Google-style
    section starts on the line after its header)."""
    out: list[str] = []
    in_body = False
    for i, line in enumerate(lines):
        if in_body:
            if _SECTION_HEADER.match(line):
                in_body = False
            elif not line.strip() and _EXAMPLES_HEADER.match(out[-1]):
                continue
            else:
                out.append("    " + line if line.strip() else line)
                continue
        if _EXAMPLES_HEADER.match(line):
            line = "Examples:"  # singular is an admonition to griffe, not examples
        out.append(line)
        if _EXAMPLES_HEADER.match(line):
            following = next((x for x in lines[i + 1 :] if x.strip()), "")
            in_body = bool(following) and not following.startswith((" ", "\t"))
    return out


def _fence_doctest_runs(lines: list[str]) -> list[str]:
    """Puts every `>>>` run outside an examples section in a ```pycon block."""
    out: list[str] = []
    in_fence = False
    in_examples = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            in_fence = not in_fence
        if _SECTION_HEADER.match(line):
            in_examples = bool(_EXAMPLES_HEADER.match(line))
        if in_fence or in_examples or not line.lstrip().startswith(">>>"):
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        run = []
        while i < len(lines):
            if lines[i].strip():
                run.append(lines[i])
                i += 1
                continue
            # A blank line ends the run unless another `>>>` line follows it.
            nxt = next((x for x in lines[i:] if x.strip()), "")
            if nxt.startswith(indent + ">>>"):
                run.append(lines[i])
                i += 1
                continue
            break
        out.append(f"{indent}```pycon")
        out.extend(run)
        out.append(f"{indent}```")
    return out


def convert(text: str) -> str:
    """The docstring text with its doctest examples made readable as Markdown."""
    lines = text.splitlines()
    return "\n".join(_fence_doctest_runs(_indent_example_sections(lines)))


def _source_doc(name: str, package_dir: Path) -> str | None:
    """The documentation of the module-level constant `name` in the source files
    of `package_dir`: the string under its assignment, or its `#:` comments."""
    for path in sorted(package_dir.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        if name not in source:
            continue
        tree = ast.parse(source)
        lines = source.splitlines()
        for i, stmt in enumerate(tree.body):
            targets = getattr(stmt, "targets", None) or [getattr(stmt, "target", None)]
            if not any(isinstance(t, ast.Name) and t.id == name for t in targets):
                continue
            following = tree.body[i + 1] if i + 1 < len(tree.body) else None
            if (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                return inspect.cleandoc(following.value.value)
            comments = []
            row = stmt.lineno - 2
            while row >= 0 and lines[row].startswith("#:"):
                comments.insert(0, lines[row][2:].strip())
                row -= 1
            return " ".join(comments) or None
    return None


class DoctestExamples(griffe.Extension):
    """Rewrites the doctest examples of every documented object's docstring, and
    gives imported constants the documentation their source has."""

    def on_attribute_instance(
        self, *, node: Any, attr: griffe.Attribute, **kwargs: Any
    ) -> None:
        value = getattr(node, "obj", None)
        type_doc = inspect.getdoc(type(value))
        if attr.docstring is None or attr.docstring.value != type_doc:
            return
        filepath = attr.parent.filepath if attr.parent is not None else None
        doc = None
        if isinstance(filepath, Path):
            doc = _source_doc(attr.name, filepath.parent)
        attr.docstring = griffe.Docstring(doc, parent=attr) if doc else None

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = convert(obj.docstring.value)
