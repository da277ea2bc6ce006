"""The README and the documentation site stay short, linked and in step with the code.

Cheap checks on the Markdown sources (no mkdocs needed, under a second) plus one strict
mkdocs build into a temporary directory (about 10 s; `.ci/run` builds the site too):

* the README is at most 220 lines and its two quickstart commands are the ones CI relies on;
* every ``scaling`` sub-command and option is on the CLI page, and the generated reference
  pages (CLI, API, the API nav in mkdocs.yml) are what ``docs/gen_reference.py`` writes now;
* every public module of ``scaling`` and ``analysis`` has an API page in the nav;
* every settings field, results column, summary.json field, plan column and fits.json section
  is on its reference page;
* every relative link (and #anchor) in README.md and docs/ points at something that exists.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import unicodedata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README = REPO / "README.md"
PAGES = sorted(DOCS.rglob("*.md"))


def _gen():
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(info string, body) of every fenced code block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S)


def _prose(text: str) -> str:
    """The text outside fenced code blocks and inline code spans (where links are links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


# ------------------------------------------------------------------------------ README
def test_readme_is_short_and_its_two_commands_are_the_quickstart():
    text = README.read_text()
    assert len(text.splitlines()) <= 220, "README.md: at most 220 lines; move detail into docs/"
    lang, body = _fenced_blocks(text)[0]
    commands = [line for line in body.splitlines() if line.strip()]
    assert lang == "bash" and commands == [
        "pip install -e . && scaling sweep experiments/quickstart.py --out runs/quickstart",
        'pip install -e ".[test]" && python3 -m pytest -q tests',
    ]
    # CI runs the second command (pip told to be quiet: `pip install -q`), then builds the site
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if not line.lstrip().startswith("#")]
    assert commands[1] in [line.replace("pip install -q ", "pip install ") for line in ci]
    assert any("mkdocs build --strict" in line for line in ci)
    # the first one names an experiment that exists and parses as a `scaling` command line
    from scaling.cli import build_parser

    argv = shlex.split(commands[0].split("&&")[1])
    assert argv[0] == "scaling"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "sweep" and (REPO / args.experiment).is_file()


# ------------------------------------------------------------------------------ generated reference
def test_generated_reference_pages_are_current():
    stale = _gen().stale()
    assert not stale, ("stale generated docs (run `python3 docs/gen_reference.py` and commit): "
                       + ", ".join(str(p.relative_to(REPO)) for p in stale))


def test_cli_page_lists_every_subcommand_and_option():
    import argparse

    from scaling.cli import build_parser

    page = (DOCS / "reference" / "cli.md").read_text()
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) >= {"train", "count", "plan", "sweep", "status", "prepare", "fit"}
    for name, p in sub.choices.items():
        section = page.split(f"\n## scaling {name}\n", 1)
        assert len(section) == 2, f"docs/reference/cli.md: no section for `scaling {name}`"
        body = section[1].split("\n## ", 1)[0]
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for opt in action.option_strings:
                assert f"`{opt}`" in body, f"`scaling {name} {opt}` is not on the CLI page"


def _public_modules() -> list[str]:
    """Walk the packages on disk (independently of the generator): every non-underscore .py."""
    mods = []
    for pkg in ("scaling", "analysis"):
        for path in (REPO / pkg).rglob("*.py"):
            rel = path.relative_to(REPO)
            if not all((REPO.joinpath(*rel.parts[:i]) / "__init__.py").exists() for i in range(1, len(rel.parts))):
                continue
            parts = [p for p in rel.with_suffix("").parts if p != "__init__"]
            if not any(p.startswith("_") for p in parts):
                mods.append(".".join(parts))
    return sorted(set(mods))


def test_every_public_module_has_an_api_page_in_the_nav():
    modules = _public_modules()
    # at least the modules named by the module table on the home page, and the launch/data packages
    table = re.findall(r"`((?:scaling|analysis)/[\w/]+?)(?:\.py|/)`", (DOCS / "index.md").read_text())
    assert table
    for entry in table:
        assert entry.replace("/", ".") in modules, entry
    assert {"scaling.launch.worker", "scaling.data.store", "analysis.laws"} <= set(modules)
    nav = (REPO / "mkdocs.yml").read_text()
    for m in modules:
        pages = [p for p in (DOCS / "api").rglob("*.md") if f"\n::: {m}\n" in p.read_text()]
        assert len(pages) == 1, f"{m}: expected one API page with `::: {m}`, found {pages}"
        assert f" {pages[0].relative_to(DOCS).as_posix()}\n" in nav, f"{pages[0]} is not in the mkdocs.yml nav"


def test_every_page_is_in_the_nav():
    nav = (REPO / "mkdocs.yml").read_text()
    listed = set(re.findall(r"([\w./-]+\.md)\s*$", nav, flags=re.M))
    missing = [p.relative_to(DOCS).as_posix() for p in PAGES if p.relative_to(DOCS).as_posix() not in listed]
    assert not missing, f"pages missing from the mkdocs.yml nav: {missing}"


# ------------------------------------------------------------------------------ reference pages vs code
def test_settings_page_names_every_variable():
    import dataclasses

    from scaling.settings import Settings

    page = (DOCS / "reference" / "settings.md").read_text()
    for f in dataclasses.fields(Settings):
        assert f"SCALING_{f.name.upper()}" in page, f"SCALING_{f.name.upper()} is not on the settings page"


def test_results_page_names_every_column():
    from scaling.results import COLUMNS

    page = (DOCS / "reference" / "results.md").read_text()
    cells = {c.strip() for row in re.findall(r"^\| ([^|]+) \|", page, flags=re.M) for c in row.split(",")}
    missing = [c for c in COLUMNS if c not in cells]
    assert not missing, f"results columns not on docs/reference/results.md: {missing}"


def _summary_keys() -> list[str]:
    tree = ast.parse((REPO / "scaling" / "recorder.py").read_text())
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "_summary")
    ret = next(n for n in ast.walk(fn) if isinstance(n, ast.Return))
    assert isinstance(ret.value, ast.Dict)
    keys = [k.value for k in ret.value.keys if k is not None]
    if any(k is None for k in ret.value.keys):  # `**inputs.mfus(...)`: the two MFUs
        from scaling.inputs import RunInputs

        keys += list(RunInputs.mfus(None, None))
    return keys


def test_schemas_page_names_every_summary_field_plan_column_and_fit_section():
    page = (DOCS / "reference" / "schemas.md").read_text()
    keys = _summary_keys()
    assert {"run_id", "final_eval_loss", "params", "timing"} <= set(keys)
    summary = page.split("### `summary.json`", 1)[1].split("\n### ", 1)[0]
    assert not [k for k in keys if f"`{k}`" not in summary], "summary.json fields missing from schemas.md"

    from scaling import sweep

    rows = sweep.plan(sweep.load_sweep(str(REPO / "experiments" / "quickstart.py")), estimate=False).rows
    plan = page.split("## Plan output", 1)[1].split("\n## ", 1)[0]
    assert not [k for k in rows[0] if f"`{k}`" not in plan], "plan columns missing from schemas.md"

    fits = json.loads((REPO / "experiments" / "results" / "quickstart" / "fits.json").read_text())
    section = page.split("## Fit output", 1)[1]
    assert not [k for k in fits if f"| `{k}` |" not in section], "fits.json sections missing from schemas.md"


# ------------------------------------------------------------------------------ links
def _slug(heading: str) -> str:
    """Python-Markdown's toc slug (mkdocs' anchors): code/markup stripped, lowercase, dashes."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(page: Path) -> set[str]:
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+?)\s*$", _prose_keep_code(page.read_text()), flags=re.M)}


def _prose_keep_code(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def test_every_relative_link_resolves():
    bad = []
    for page in [README] + PAGES:
        for target in LINK.findall(_prose(page.read_text())):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                bad.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                bad.append(f"{page.relative_to(REPO)}: {target} (no heading #{anchor})")
    assert not bad, "broken links:\n" + "\n".join(bad)
    assert len(LINK.findall(_prose(README.read_text()))) >= 10  # the README does link into docs/


def test_link_checker_catches_a_broken_link(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# Title\n\n[ok](#title) [gone](missing.md) `[code](not-a-link.md)`\n")
    found = LINK.findall(_prose(page.read_text()))
    assert found == ["#title", "missing.md"]
    assert _anchors(page) == {"title"}
    assert _slug("Checking a plan: `scaling plan`") == "checking-a-plan-scaling-plan"


# ------------------------------------------------------------------------------ the site
def test_mkdocs_build_strict(tmp_path):
    """The whole site builds offline with no warning (broken link, missing anchor or page, bad docstring)."""
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:] + "\n(pip install -e '.[docs]' if mkdocs is missing)"
    assert (tmp_path / "site" / "api" / "scaling" / "train" / "index.html").exists()
    assert "train one cell" in (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()


def test_griffe_extension_reads_our_rst_as_markdown():
    spec = importlib.util.spec_from_file_location("griffe_rst", DOCS / "griffe_rst.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    doc = ("See :func:`scaling.train.train` and :class:`~scaling.config.Cell`, or :mod:`the CLI <scaling.cli>`::\n"
           "\n=====  =====\nname   job\n=====  =====\nx      y\n=====  =====\n\nafter")
    got = mod.rst_to_markdown(doc)
    assert got.splitlines()[0] == ("See `scaling.train.train` and `scaling.config.Cell`, or the CLI (`scaling.cli`):")
    assert "```text\n=====  =====\nname   job\n=====  =====\nx      y\n=====  =====\n```" in got
    assert got.endswith("after") and mod.rst_to_markdown(got) == got


def _shown_commands(text: str) -> list[str]:
    """Every `scaling ...` command line in the bash blocks of a page (continuations joined)."""
    found = []
    for lang, body in _fenced_blocks(text):
        if lang != "bash":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            for part in line.split("#", 1)[0].split("&&"):
                words = part.split()
                while words and re.match(r"^[A-Z_]+=", words[0]):  # VAR=value prefixes
                    words.pop(0)
                if words[:1] == ["scaling"]:
                    found.append(" ".join(words))
    return found


def test_every_command_shown_in_the_docs_parses():
    """Flags in the examples exist: each `scaling ...` line of README/docs parses with the real parser."""
    from scaling.cli import build_parser

    shown, bad = 0, []
    for page in [README] + PAGES:
        for cmd in _shown_commands(page.read_text()):
            if "..." in cmd:  # an elided example (`scaling train ... --task seqio:...`)
                continue
            shown += 1
            try:
                build_parser().parse_args(shlex.split(cmd)[1:])
            except SystemExit:
                bad.append(f"{page.relative_to(REPO)}: {cmd}")
    assert not bad, "commands that do not parse:\n" + "\n".join(bad)
    assert shown >= 20
