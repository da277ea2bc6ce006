"""Chinchilla vs Kaplan allocation, measured: which way of spending a budget trains better.

Chinchilla's headline claim is about *allocation*: at a fixed compute budget C, a smaller
model trained on more tokens (``N_opt ∝ C^0.5``, about 20 tokens per parameter) beats the
larger, shorter-trained model Kaplan et al.'s rule (``N_opt ∝ C^0.73``) prescribes -- the
reason Chinchilla (70B, 1.4T tokens) beat Gopher (280B, 300B tokens) at the same compute.
:mod:`analysis.published` answers that question from published fits; this module answers
it from runs we trained ourselves: an ``Allocation`` sweep (``scaling.sweep.Allocation``)
trains both sizes at each budget, tagged by a group column (``chinchilla_rule`` /
``kaplan_rule``), and :func:`compare_allocations` lines them up per budget.

Like the rest of :mod:`analysis` it works on any DataFrame; the column names are arguments.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.data import ConfigError

RULES = ("chinchilla_rule", "kaplan_rule")


def has_allocation_pairs(df: pd.DataFrame, group_col: str = "group") -> bool:
    """True when ``df`` holds runs of both allocation rules (so a comparison makes sense)."""
    return group_col in df.columns and all((df[group_col] == g).any() for g in RULES)


def compare_allocations(df: pd.DataFrame, *, n_col: str, loss_col: str, budget_col: str = "budget",
                        d_col: str | None = "tokens", group_col: str = "group",
                        rules: tuple[str, str] = RULES) -> pd.DataFrame:
    """One row per budget: each rule's N, D and loss, the loss difference and the winner.

    Columns: ``budget``, ``n_<rule>``, ``d_<rule>``, ``loss_<rule>`` for both rules,
    ``delta_loss`` (second rule minus first: positive means the first rule -- Chinchilla's by
    default -- trained the better model), ``rel_delta`` (``delta_loss / loss_<first>``) and
    ``winner``.  A budget where either rule has no finite loss (diverged, missing) is kept
    with ``winner = "incomplete"``, never silently dropped.  If a rule has several runs at one
    budget (seeds), their losses are averaged and ``n_runs_<rule>`` says how many.
    """
    need = [n_col, loss_col, budget_col, group_col] + ([d_col] if d_col else [])
    for c in need:
        if c not in df.columns:
            raise ConfigError(f"{c}: column not in the table (columns: {', '.join(map(str, df.columns))}); "
                              f"pass the right name")
    sub = df[df[group_col].isin(rules)]
    if sub.empty:
        raise ConfigError(f"{group_col}: no rows of groups {rules}; train an Allocation sweep first")
    out = []
    for b, g in sub.groupby(budget_col, sort=True):
        row: dict = {"budget": float(b)}
        losses = {}
        for r in rules:
            gr = g[g[group_col] == r]
            fin = gr[np.isfinite(gr[loss_col].astype(float))]
            row[f"n_runs_{r}"] = int(len(fin))
            row[f"n_{r}"] = float(gr[n_col].iloc[0]) if len(gr) else math.nan
            row[f"d_{r}"] = float(gr[d_col].iloc[0]) if (d_col and len(gr)) else math.nan
            losses[r] = float(fin[loss_col].mean()) if len(fin) else math.nan
            row[f"loss_{r}"] = losses[r]
        a, k = losses[rules[0]], losses[rules[1]]
        if math.isfinite(a) and math.isfinite(k):
            row["delta_loss"] = k - a
            row["rel_delta"] = (k - a) / a
            row["winner"] = rules[0] if a < k else (rules[1] if k < a else "tie")
        else:
            row["delta_loss"] = row["rel_delta"] = math.nan
            row["winner"] = "incomplete"
        out.append(row)
    return pd.DataFrame(out)


def to_markdown(table: pd.DataFrame, rules: tuple[str, str] = RULES) -> str:
    """The comparison as a Markdown table (one line per budget) plus a one-line verdict."""
    a, k = rules
    lines = [f"| budget | N ({a}) | D ({a}) | loss ({a}) | N ({k}) | D ({k}) | loss ({k}) | "
             f"loss difference | winner |", "|---|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        lines.append(f"| {r['budget']:.3g} | {r[f'n_{a}']:,.0f} | {r[f'd_{a}']:,.0f} | {r[f'loss_{a}']:.4f} | "
                     f"{r[f'n_{k}']:,.0f} | {r[f'd_{k}']:,.0f} | {r[f'loss_{k}']:.4f} | "
                     f"{r['delta_loss']:+.4f} ({100 * r['rel_delta']:+.2f}%) | {r['winner']} |")
    wins = int((table["winner"] == a).sum())
    lines += ["", f"{a} wins at {wins} of {len(table)} budgets."]
    return "\n".join(lines)
