"""mkdocs hook: pages may link to files of the repository outside ``docs/``.

A page links to a file the way GitHub resolves it, relative to the page itself, e.g.
``../experiments/results/quickstart/isoflop.png`` or ``../experiments/quickstart.py``.  mkdocs
only knows the files inside ``docs/``, so this hook publishes each such file that exists under
``repo/`` in the site and points the link there.  A link to a file that does not exist is left
as written, so ``mkdocs build --strict`` still fails on it; so does a link to a Markdown file
outside ``docs/`` (it would need to be rendered as a page: move its content into ``docs/``).
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

# [text](target) and ![alt](target), target without a scheme; an optional title is kept
LINK = re.compile(r"(\]\()([^)\s#]+)(#[^)\s]*)?(\s+\"[^\"]*\")?\)")
PREFIX = "repo"


def _outside_target(page_src: str, target: str, docs: Path, root: Path) -> Path | None:
    if "://" in target or target.startswith(("/", "mailto:")):
        return None
    path = (docs / posixpath.dirname(page_src) / target).resolve()
    try:
        path.relative_to(docs)
        return None  # inside docs/: mkdocs validates it itself
    except ValueError:
        pass
    try:
        path.relative_to(root)
    except ValueError:
        return None
    return path if path.is_file() and path.suffix != ".md" else None


def on_page_markdown(markdown: str, page, config, files):
    docs = Path(config["docs_dir"]).resolve()
    root = docs.parent
    src = page.file.src_uri

    def repl(m: re.Match) -> str:
        target = _outside_target(src, m.group(2), docs, root)
        if target is None:
            return m.group(0)
        uri = f"{PREFIX}/{target.relative_to(root).as_posix()}"
        if files.get_file_from_path(uri) is None:
            files.append(File.generated(config, uri, abs_src_path=os.fspath(target)))
        new = posixpath.relpath(uri, posixpath.dirname(src) or ".")
        return f"{m.group(1)}{new}{m.group(3) or ''}{m.group(4) or ''})"

    return LINK.sub(repl, markdown)
