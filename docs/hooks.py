"""MkDocs hooks of the documentation site (`hooks:` in mkdocs.yml).

- `docs/index.md` is a link to the repository's README.md, the landing page of
  both the repository and the site. The README links to the guides as
  `docs/guides/...` (paths from the repository root); in the site those pages are
  at `guides/...`.
- The line `<!-- cli-help -->` of a page becomes the `--help` of the command line
  and of each of its commands, as the installed version prints them (the
  arguments are parsed before TensorFlow is imported, so this takes a second).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

_DOCS_LINK = re.compile(r"\]\(docs/")
_CLI_MARKER = "<!-- cli-help -->"
_COMMAND_LINE = re.compile(r"^    ([a-z][\w-]*)", re.MULTILINE)


def _help(*args: str) -> str:
    env = dict(os.environ, COLUMNS="88")
    result = subprocess.run(
        [sys.executable, "-m", "keras_filterprune", *args, "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    return result.stdout.rstrip()


def _cli_help() -> str:
    top = _help()
    listed = top.split("positional arguments:", 1)[1].split("options:", 1)[0]
    parts = [f"```text\n{top}\n```"]
    for command in _COMMAND_LINE.findall(listed):
        parts.append(f"### `{command}`\n\n```text\n{_help(command)}\n```")
    return "\n\n".join(parts)


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri == "index.md":
        markdown = _DOCS_LINK.sub("](", markdown)
    if _CLI_MARKER in markdown:
        markdown = markdown.replace(_CLI_MARKER, _cli_help())
    return markdown
