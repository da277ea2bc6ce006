"""Write the reference pages that mirror the code, so they cannot drift from it.

* ``docs/reference/cli.md``: every ``scaling`` sub-command with its usage and options, rendered
  from the argparse parser (:func:`scaling.cli.build_parser`, which also mounts the sub-commands
  of :mod:`scaling.launch.commands`, :mod:`scaling.data.cli` and :mod:`analysis.cli`);
* ``docs/api/<package>/<module>.md``: one mkdocstrings page per public module of ``scaling``
  and ``analysis`` (a public module is a ``.py`` file of a package whose name does not start
  with ``_``; a package's ``__init__.py`` gets ``index.md``);
* the ``API reference`` block of ``mkdocs.yml``'s nav, between the two ``# generated`` markers.

    python3 docs/gen_reference.py          # rewrite whatever is stale
    python3 docs/gen_reference.py --check  # exit 1 naming the stale files (tests/test_docs.py)

Run it after adding a module, a sub-command or an option; commit what it writes.  It imports
only the light parts of the package (argparse wiring, no JAX), in well under a second.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PACKAGES = ("scaling", "analysis")
CLI_PAGE = DOCS / "reference" / "cli.md"
API_DIR = DOCS / "api"
MKDOCS_YML = ROOT / "mkdocs.yml"
NAV_BEGIN = "  # generated: API reference (python3 docs/gen_reference.py)"
NAV_END = "  # end generated"
WIDTH = 100  # usage lines are wrapped at a fixed width so the page does not depend on the terminal


# ------------------------------------------------------------------------------ modules
def public_modules(root: Path = ROOT) -> list[str]:
    """Dotted names of every public module of ``scaling`` and ``analysis``, packages first, sorted.

    Walks the file system (importing nothing): a directory is a package when it holds an
    ``__init__.py``; files and directories whose name starts with ``_`` (other than
    ``__init__.py``) are private.
    """
    found = []
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root)
            parts = list(rel.with_suffix("").parts)
            if not all((root.joinpath(*rel.parts[:i]) / "__init__.py").exists() for i in range(1, len(rel.parts))):
                continue  # a folder of scripts (analysis/notebooks), not a subpackage
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if any(p.startswith("_") for p in parts):
                continue
            found.append(".".join(parts))
    return sorted(set(found), key=lambda m: m.split("."))


def api_page_path(module: str, root: Path = ROOT) -> Path:
    """Where the API page of ``module`` lives: packages get ``index.md`` in their folder."""
    parts = module.split(".")
    if (root.joinpath(*parts) / "__init__.py").exists():
        return root / "docs" / "api" / Path(*parts) / "index.md"
    return root / "docs" / "api" / Path(*parts[:-1]) / f"{parts[-1]}.md"


def api_page(module: str) -> str:
    return f"# `{module}`\n\n::: {module}\n"


def api_nav(modules: list[str]) -> str:
    """The nav block: one entry per module, under its package's section."""
    lines = [NAV_BEGIN, "  - API reference:", "      - api/index.md"]
    section = None
    for m in modules:
        pkg = m if api_page_path(m).name == "index.md" else m.rpartition(".")[0]
        if pkg != section:
            section = pkg
            lines.append(f"      - {pkg}:")
        rel = api_page_path(m).relative_to(DOCS).as_posix()
        lines.append(f"          - {m}: {rel}")
    lines.append(NAV_END)
    return "\n".join(lines)


def api_index(modules: list[str]) -> str:
    out = ["# API reference", "",
           "One page per public module of `scaling` and `analysis`, rendered from the docstrings",
           "(mkdocstrings). The pages by job (training, data, sweeps, fitting) say which module does",
           "what; the [module table](../index.md#where-things-live) maps the folders to them.", ""]
    for m in modules:
        rel = api_page_path(m).relative_to(API_DIR).as_posix()
        out.append(f"- [`{m}`]({rel})")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------ CLI
def _cell(text: str) -> str:
    """One table cell: whitespace collapsed; outside `code`, Markdown/HTML specials escaped."""
    parts = " ".join(str(text).split()).split("`")
    for i in range(0, len(parts), 2):  # even parts are outside code spans
        for ch in "\\[]*_<>":
            parts[i] = parts[i].replace(ch, "\\" + ch)
    return "`".join(parts).replace("|", "\\|")


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each sub-command, in the order ``scaling --help`` lists them."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help or "" for a in action._choices_actions}
    return [(name, helps.get(name, ""), p) for name, p in action.choices.items()]


def _option_rows(p: argparse.ArgumentParser) -> list[tuple[str, list[str]]]:
    fmt = argparse.HelpFormatter(p.prog, width=WIDTH)
    groups = []
    for g in p._action_groups:
        rows = []
        for a in g._group_actions:
            if isinstance(a, argparse._HelpAction):
                continue
            if a.option_strings:
                name = ", ".join(f"`{s}`" for s in a.option_strings)
                if a.nargs != 0:
                    name += f" `{fmt._format_args(a, a.dest.upper())}`"
            else:
                name = f"`{fmt._format_args(a, a.dest)}`"
            default = ""
            if a.required:
                default = "required"
            elif a.default not in (None, argparse.SUPPRESS, False) and a.nargs != 0:
                default = f"`{a.default}`"
            text = fmt._expand_help(a) if a.help else ""
            rows.append(f"| {name} | {default} | {_cell(text)} |")
        if rows:
            groups.append((g.title or "options", rows))
    return groups


def cli_page() -> str:
    from scaling.cli import build_parser

    parser = build_parser()
    subs = _subcommands(parser)
    out = ["# CLI reference", "",
           "<!-- generated by python3 docs/gen_reference.py from the argparse parsers: do not edit -->", "",
           "`scaling` is one console script with one sub-command per job. Configuration mistakes are",
           "one line (`error: <field>: <fix>`) with exit status 2, before any compute. The pages by job",
           "show these commands in use; this page lists every option.", "",
           "| command | what it does |", "|---|---|"]
    out += [f"| [`scaling {n}`](#scaling-{n}) | {_cell(h)} |" for n, h, _ in subs]
    for name, help_, p in subs:
        p.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=WIDTH)
        out += ["", f"## scaling {name}", "", _cell(help_) + ("." if help_ and not help_.endswith(".") else "")]
        if p.description and _cell(p.description) != _cell(help_):
            out += ["", _cell(p.description)]
        out += ["", "```text", p.format_usage().strip(), "```"]
        for title, rows in _option_rows(p):
            out += ["", f"**{title}**", "", "| option | default | meaning |", "|---|---|---|"] + rows
    return "\n".join(out) + "\n"


def subcommand_names() -> list[str]:
    from scaling.cli import build_parser

    return [n for n, _, _ in _subcommands(build_parser())]


# ------------------------------------------------------------------------------ all
def expected() -> dict[Path, str]:
    """Every generated file and its content (``mkdocs.yml`` with its nav block replaced)."""
    modules = public_modules()
    files = {CLI_PAGE: cli_page(), API_DIR / "index.md": api_index(modules)}
    for m in modules:
        files[api_page_path(m)] = api_page(m)
    yml = MKDOCS_YML.read_text()
    head, sep, rest = yml.partition(NAV_BEGIN)
    _, sep2, tail = rest.partition(NAV_END)
    if not (sep and sep2):
        raise SystemExit(f"{MKDOCS_YML}: the nav markers {NAV_BEGIN.strip()!r} / {NAV_END.strip()!r} are missing")
    files[MKDOCS_YML] = head + api_nav(modules) + tail
    return files


def stale() -> list[Path]:
    """Generated files whose content differs, plus API pages of modules that no longer exist."""
    want = expected()
    out = [p for p, text in want.items() if not p.exists() or p.read_text() != text]
    out += [p for p in sorted(API_DIR.rglob("*.md")) if p not in want]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only list stale files; exit 1 if any")
    args = ap.parse_args(argv)
    bad = stale()
    if args.check:
        for p in bad:
            print(f"stale: {p.relative_to(ROOT)}")
        return 1 if bad else 0
    want = expected()
    for p in bad:
        if p in want:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(want[p])
        else:
            p.unlink()
        print(f"wrote {p.relative_to(ROOT)}" if p in want else f"removed {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
