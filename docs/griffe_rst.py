"""Griffe extension: the few reStructuredText habits of our docstrings, read as Markdown.

The code's docstrings are written for readers of the source and use a little reST:
``:func:`scaling.train.train``` roles, simple tables framed by ``=====`` lines, and ``text::``
before a literal block.  mkdocstrings renders docstrings as Markdown, where roles print
literally and a table collapses into one paragraph (or a setext heading).  This extension
rewrites them at build time, leaving the source alone:

* ``:role:`target``` (also ``~target`` and ``text <target>``) -> ```target``` (code);
* a simple table (from a ``=== ===`` border to the border followed by a blank line) -> a
  ``text`` code block, so its columns stay aligned;
* a trailing ``::`` -> ``:`` (the indented block after it is already code in Markdown).
"""

from __future__ import annotations

import re

from griffe import Extension

ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?([^`<]*?)\s*(?:<([^`>]+)>)?`")
BORDER = re.compile(r"^\s*=+(?:\s+=+)+\s*$|^\s*={3,}\s*$")


def _role(m: re.Match) -> str:
    text, target = m.group(1), m.group(2)
    return f"`{(text or target).strip()}`" if not target or not text else f"{text} (`{target}`)"


def rst_to_markdown(doc: str) -> str:
    """``doc`` with roles, simple tables and ``::`` made Markdown (idempotent)."""
    lines = doc.splitlines()
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        if BORDER.match(line):
            j = i + 1
            while j < len(lines) and not (BORDER.match(lines[j]) and (j + 1 == len(lines) or not lines[j + 1].strip())):
                j += 1
            if j < len(lines):  # a closed table: keep it verbatim, as preformatted text
                if out and out[-1].strip():
                    out.append("")
                out += ["```text", *lines[i:j + 1], "```"]
                i = j + 1
                continue
        out.append(ROLE.sub(_role, line))
        i += 1
    text = "\n".join(out)
    text = re.sub(r"(?m)^(\s*)::\s*$", "", text)
    return re.sub(r"(?m)(\S)::\s*$", r"\1:", text)


class RstToMarkdown(Extension):
    """Applied to every object's docstring as griffe loads it."""

    def on_instance(self, *, obj, **kwargs) -> None:  # noqa: D102 - the griffe hook
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
