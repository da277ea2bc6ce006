"""How results show themselves in Jupyter: tables of named quantities with their intervals.

Fit, bootstrap, comparison and prediction results inherit :class:`Rich` and describe
themselves as a list of :class:`Table` (``tables()``); Jupyter then renders them through
``_repr_html_`` (or ``_repr_markdown_`` where HTML is not shown), the way a DataFrame renders
itself, instead of printing a dataclass repr.  The plain ``repr`` is left alone.  Numbers
are shown to 4 significant digits; the objects keep the full values.
"""

from __future__ import annotations

import dataclasses
import html
import math


def fmt(v) -> str:
    """A number to 4 significant digits ('-' for None or NaN); anything else as text."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,d}" if abs(v) < 10**7 else f"{v:.4g}"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "-" if not math.isfinite(f) else f"{f:.4g}"


def interval(lo, hi) -> str:
    """``[lo, hi]``, or '-' when either end is unknown."""
    if lo is None or hi is None or not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
        return "-"
    return f"[{fmt(lo)}, {fmt(hi)}]"


@dataclasses.dataclass(frozen=True)
class Table:
    """A titled table: ``rows`` are tuples of already formatted cells; ``notes`` follow it."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]
    notes: tuple[str, ...] = ()

    def to_markdown(self) -> str:
        esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
        out = [f"**{self.title}**", "", "| " + " | ".join(map(esc, self.columns)) + " |",
               "|" + "---|" * len(self.columns)]
        out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in self.rows]
        out += [""] + [f"- {n}" for n in self.notes] if self.notes else []
        return "\n".join(out) + "\n"

    def to_html(self) -> str:
        e = html.escape
        head = "".join(f"<th>{e(str(c))}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in self.rows)
        notes = "".join(f"<li>{e(n)}</li>" for n in self.notes)
        return (f"<div><p><b>{e(self.title)}</b></p><table><thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table>" + (f"<ul>{notes}</ul>" if notes else "") + "</div>")


class Rich:
    """Mixin: Jupyter renders ``self.tables()`` (a list of :class:`Table`) as HTML or Markdown."""

    def tables(self) -> list[Table]:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _repr_html_(self) -> str:
        return "".join(t.to_html() for t in self.tables())

    def _repr_markdown_(self) -> str:
        return "\n".join(t.to_markdown() for t in self.tables())


__all__ = ["Rich", "Table", "fmt", "interval"]
