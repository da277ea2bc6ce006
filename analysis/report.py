"""One call from a results table to fits.json, fits.md and figures.

:func:`fit_all` runs every requested approach on one DataFrame and never lets one
approach's failure take the others down: a degenerate approach (too few budgets, no
interior minimum, ...) is recorded as ``{"error": "..."}`` in its slot.  Exclusions and
warnings are collected in ``warnings``.  :func:`write_report` is what a sweep calls at
its end; ``scaling fit`` (:mod:`analysis.cli`) prints the same dictionary.
"""

from __future__ import annotations

import json
import math
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import approaches as ap
from analysis import uncertainty as unc
from analysis.data import ConfigError, budgets_of, prepare


def _clean(o):
    """JSON-safe copy: numpy scalars to Python, NaN/inf to None."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (np.floating, float)):
        return float(o) if math.isfinite(float(o)) else None
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return _clean(o.tolist())
    return o


def fit_all(df: pd.DataFrame, *, n_col: str, loss_col: str, d_col: str | None = None,
            c_col: str | None = None, budget_col: str | None = None, approaches=(1, 2, 3),
            bootstrap: int = 0, seed: int = 0, starts="full", Cs=(5.76e23,),
            diagnostics: bool = True) -> tuple[dict, dict]:
    """Fit the requested approaches; returns (JSON-ready summary, fitted objects).

    Summary keys: ``data``, ``warnings``, ``approach1`` / ``approach2`` (``a``, ``b``, ...),
    ``approach3`` (``E``, ``A``, ``B``, ``alpha``, ``beta``, ``objective``, ``a``, ``b``,
    ``G``, ``convergence``), each with ``ci`` when ``bootstrap`` > 0, plus
    ``identifiability`` and ``backtest`` (or their errors).
    """
    warns: list[str] = []
    cols = dict(n_col=n_col, loss_col=loss_col, d_col=d_col, c_col=c_col, budget_col=budget_col)
    frame = prepare(df, **cols, warnings=warns)    # bad columns / values raise here
    frame = frame.assign(budget=budgets_of(frame))
    canon = unc._CANON
    out: dict = {"data": {"n_rows_in": int(len(df)), "n_points": int(len(frame)),
                          "n_budgets": int(frame["budget"].nunique()),
                          "columns": {k: v for k, v in cols.items() if v}}}
    objs: dict = {"frame": frame}
    fitters = {1: ap.fit_approach1, 2: ap.fit_approach2}
    for appr in (1, 2):
        if appr not in approaches:
            continue
        try:
            r = fitters[appr](frame, **canon)
            objs[appr] = r
            d = {"a": r.a, "b": r.b, "a_se_ols": r.a_se, "b_se_ols": r.b_se,
                 "n_opt_coef": math.exp(r.frontier.n0), "d_opt_coef": math.exp(r.frontier.d0)}
            if appr == 2:
                d["budgets"] = [{"budget": p.budget, "n_points": p.n_points, "n_opt": p.n_opt,
                                 "d_opt": p.d_opt, "loss_opt": p.loss_opt,
                                 "included": p.included, "reason": p.reason} for p in r.budgets]
            else:
                d["n_envelope_points"] = len(r.envelope)
            warns.extend(r.warnings)
            out[f"approach{appr}"] = d
        except ValueError as e:
            out[f"approach{appr}"] = {"error": str(e)}
            warns.append(f"approach{appr} failed: {e}")
    if 3 in approaches:
        try:
            r3 = ap.fit_approach3(frame, **canon, starts=starts)
            objs[3] = r3
            d = r3.as_dict()
            d["at_C"] = {f"{C:.4g}": {"n_opt": float(r3.params.n_opt(C)),
                                      "d_opt": float(r3.params.d_opt(C)),
                                      "loss_opt": float(r3.params.loss_opt(C)),
                                      "tokens_per_param": float(r3.params.tokens_per_param(C))}
                         for C in Cs}
            warns.extend(r3.warnings)
            out["approach3"] = d
        except ValueError as e:
            out["approach3"] = {"error": str(e)}
            warns.append(f"approach3 failed: {e}")
    if bootstrap:
        try:
            boot = unc.bootstrap(frame, **canon, K=int(bootstrap), seed=seed,
                                 approaches=[a for a in approaches if f"approach{a}" in out
                                             and "error" not in out[f"approach{a}"]],
                                 fit3=objs.get(3))
            objs["boot"] = boot
            summ = boot.summary(Cs)
            for key, v in summ.items():
                out[key]["ci"] = v
            warns.extend(boot.narrow_warnings())
            for appr, err in boot.errors.items():
                warns.append(f"bootstrap approach{appr}: {err}")
        except Exception as e:   # the report must survive; record what went wrong
            out["bootstrap_error"] = f"{type(e).__name__}: {e}"
    if diagnostics:
        try:
            out["identifiability"] = unc.identifiability(frame, **canon, fit3=objs.get(3))
        except Exception as e:
            out["identifiability"] = {"error": f"{type(e).__name__}: {e}"}
        try:
            out["backtest"] = unc.backtest(frame, **canon)
        except Exception as e:
            out["backtest"] = {"error": f"{type(e).__name__}: {e}"}
    out["warnings"] = warns
    return _clean(out), objs


def make_plots(objs: dict, out_dir) -> list[str]:
    """All figures that the fitted objects allow; failures are returned as 'error: ...'."""
    from analysis import plots

    out_dir = Path(out_dir)
    files: list[str] = []
    frame = objs["frame"]
    jobs = []
    if 2 in objs:
        jobs.append(("isoflop", lambda p: plots.isoflop_curves(frame, objs[2], p)))
    fits = {k: objs.get(k) for k in (1, 2, 3) if objs.get(k) is not None}
    if fits:
        lo, hi = frame["C"].min() / 10, max(frame["C"].max() * 10, 1e25)
        minima = objs[2].table().query("included") if 2 in objs else None
        jobs.append(("allocation", lambda p: plots.optimal_allocation(
            fits, p, boot=objs.get("boot"), C_range=(lo, hi), minima=minima)))
    if 3 in objs:
        jobs.append(("contour", lambda p: plots.loss_contour(objs[3], p, frame=frame)))
        jobs.append(("residuals", lambda p: plots.residuals(frame, objs[3], p)))
    for name, job in jobs:
        try:
            files.extend(job(out_dir / name))
        except Exception as e:
            files.append(f"error: {name}: {type(e).__name__}: {e}")
    return files


def plots_allocation(table, out_dir) -> list[str]:
    from analysis import plots

    try:
        return plots.allocation_comparison(table, Path(out_dir) / "allocation_rules")
    except Exception as e:
        return [f"error: allocation_rules: {type(e).__name__}: {e}"]


def to_markdown(summary: dict) -> str:
    """A short human-readable report of :func:`fit_all`'s summary."""
    L = ["# Scaling-law fits", "",
         f"{summary['data']['n_points']} points, {summary['data']['n_budgets']} budget(s).", ""]

    def ci(d, k):
        c = d.get("ci", {}).get(k)
        return f" [{c[0]:.4g}, {c[1]:.4g}]" if c and None not in c else ""

    if any(f"approach{k}" in summary for k in (1, 2, 3)):
        L += ["| approach | a | b | notes |", "|---|---|---|---|"]
    for appr in (1, 2, 3):
        d = summary.get(f"approach{appr}")
        if d is None:
            continue
        if "error" in d:
            L.append(f"| {appr} | - | - | error: {d['error']} |")
            continue
        note = ""
        if appr == 3:
            note = (f"E={d['E']:.4g} A={d['A']:.4g} B={d['B']:.4g} alpha={d['alpha']:.4g} "
                    f"beta={d['beta']:.4g} G={d['G']:.4g} objective={d['objective']:.6g}; "
                    f"{d['convergence']['n_at_best']}/{d['convergence']['n_starts']} starts at best, "
                    f"|grad|={d['convergence']['grad_norm']:.2g}")
        elif appr == 2:
            inc = sum(b["included"] for b in d["budgets"])
            note = f"{inc}/{len(d['budgets'])} budgets included"
        L.append(f"| {appr} | {d['a']:.4f}{ci(d, 'a')} | {d['b']:.4f}{ci(d, 'b')} | {note} |")
    if summary.get("known_truth"):
        t = summary["known_truth"]
        L += ["", "## Known truth", "",
              f"Fitted E = {t['E']:.4f} nats/token; the source's exact entropy rate is {t['entropy_rate']:.4f} "
              f"({100 * t['rel_error']:+.2f}%)."]
    if summary.get("allocation_md"):
        L += ["", "## Allocation rules at equal compute", "", summary["allocation_md"]]
    bt = summary.get("backtest") or {}
    a3 = bt.get("approach3") or {}
    if "loss_opt_pred" in a3:
        L += ["", "## Backtest: predict the largest budget", "",
              f"Fitted on the budgets below {bt['held_out_budget']:.3g} ({bt['n_train']} runs), Approach 3 "
              f"predicts a compute-optimal loss of {a3['loss_opt_pred']:.4f} at {bt['held_out_budget']:.3g}; "
              + (f"that budget's parabola minimum is {bt['held_out_vertex_loss']:.4f} "
                 f"(error {100 * a3['loss_opt_rel_error']:+.2f}%), " if a3.get("loss_opt_rel_error") is not None
                 else "")
              + f"its best run {bt['held_out_best_loss']:.4f} (error {100 * a3['loss_best_rel_error']:+.2f}%). "
              f"Held-out runs' losses: mean |relative error| {100 * a3['mean_abs_rel_error']:.2f}%."]
    if summary.get("warnings"):
        L += ["", "## Warnings and exclusions", ""] + [f"- {w}" for w in summary["warnings"]]
    for key in ("identifiability", "backtest"):
        if key in summary:
            L += ["", f"## {key.capitalize()}", "", "```", json.dumps(summary[key], indent=1), "```"]
    if summary.get("plots"):
        L += ["", "## Figures", ""] + [f"![{Path(p).stem}]({Path(p).name})"
                                       for p in summary["plots"] if p.endswith(".png")]
    return "\n".join(L) + "\n"


def known_truth(df: pd.DataFrame, fit3_summary: dict, truth_col: str = "entropy_rate") -> dict | None:
    """Fitted irreducible loss E against a source's exact entropy rate, when the data has one.

    A synthetic source (``synthetic_markov``) knows the best achievable loss in nats per
    token; a fitted E far from it means the law is extrapolating badly.  Returns ``None`` when
    ``truth_col`` is absent or empty, or Approach 3 did not fit.
    """
    if truth_col not in df.columns or "E" not in (fit3_summary or {}):
        return None
    h = pd.to_numeric(df[truth_col], errors="coerce").dropna().unique()
    if h.size != 1 or not math.isfinite(float(h[0])) or float(h[0]) <= 0:
        return None
    h = float(h[0])
    return {"entropy_rate": h, "E": fit3_summary["E"], "rel_error": fit3_summary["E"] / h - 1}


def write_report(df: pd.DataFrame, out_dir, *, n_col: str, d_col: str | None, loss_col: str,
                 budget_col: str | None, c_col: str | None = None, bootstrap: int = 0,
                 seed: int = 0, starts="full", approaches=(1, 2, 3), group_col: str = "group") -> dict:
    """Fit everything, write ``fits.json``, ``fits.md`` and PNG/SVG plots into ``out_dir``.

    Robust by design for the end of a sweep: bad columns or values still raise
    ``ConfigError`` (that is a caller bug), but a degenerate approach, plot or bootstrap is
    recorded in the report instead of raising.  Returns the summary dictionary.

    Two extras appear when the table allows them: ``known_truth`` (fitted E against the
    source's exact entropy rate, :func:`known_truth`) and ``allocation`` (Chinchilla-rule vs
    Kaplan-rule runs per budget, :mod:`analysis.allocation`, with its own figure).
    ``approaches=()`` skips the law fits, e.g. for a sweep that only compares allocations.
    """
    from analysis import allocation

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary, objs = fit_all(df, n_col=n_col, d_col=d_col, loss_col=loss_col,
                            budget_col=budget_col, c_col=c_col, bootstrap=bootstrap, seed=seed,
                            starts=starts, approaches=tuple(approaches), diagnostics=bool(approaches))
    truth = known_truth(df, summary.get("approach3"))
    if truth is not None:
        summary["known_truth"] = truth
    try:
        summary["plots"] = make_plots(objs, out_dir)
    except Exception as e:  # pragma: no cover - make_plots already catches per figure
        summary["plots"] = [f"error: {type(e).__name__}: {e}"]
    if budget_col and allocation.has_allocation_pairs(df, group_col):
        try:
            table = allocation.compare_allocations(df, n_col=n_col, loss_col=loss_col, budget_col=budget_col,
                                                   d_col=d_col, group_col=group_col)
            summary["allocation"] = _clean(table.to_dict(orient="records"))
            summary["allocation_md"] = allocation.to_markdown(table)
            summary["plots"] += plots_allocation(table, out_dir)
        except Exception as e:
            summary["allocation"] = {"error": f"{type(e).__name__}: {e}"}
    (out_dir / "fits.json").write_text(json.dumps(summary, indent=2))
    (out_dir / "fits.md").write_text(to_markdown(summary))
    return summary
