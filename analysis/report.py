"""One call from a results table to fits.json, fits.md and figures.

:func:`fit_all` runs every requested approach on one DataFrame and never lets one
approach's failure take the others down: a degenerate approach (too few budgets, no
interior minimum, ...) is recorded as ``{"error": "..."}`` in its slot.  Exclusions and
warnings are collected in ``warnings``.  :func:`write_report` is what a sweep calls at
its end; ``scaling fit`` (:mod:`analysis.cli`) prints the same dictionary.

Every report carries bootstrap intervals (a, b, N_opt, D_opt, tokens per parameter and
loss at the largest budget trained and at an extrapolation target, 100x that budget
unless given) and, for Approach 3, residual-bootstrap prediction intervals at the same
budgets.  Rows of group ``wsd_trunk`` (mid-schedule checkpoints of a WSD trunk) never
enter a fit.

Figures are drawn off-screen (:func:`draw`, :func:`analysis.plots.offscreen`): the report
chooses the Agg canvas for its own figures and never touches pyplot or the session's backend,
so it runs headless and leaves nothing behind in a notebook that calls it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import approaches as ap
from analysis import laws as lw
from analysis import uncertainty as unc
from analysis.data import done_runs, drop_groups, flops_per_param_token
from analysis.errors import ConfigError
from analysis.report_md import to_markdown  # noqa: F401  (the report's Markdown form)

EXCLUDED_GROUPS = ("wsd_trunk",)


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


def _default_u_col(df, law, u_col):
    if u_col is None and "U" in lw.get(law).inputs and "tokens_unique" in df.columns:
        return "tokens_unique"
    return u_col


def fit_all(df: pd.DataFrame, *, loss_col: str, n_col: str | None = None, d_col: str | None = None,
            c_col: str | None = None, budget_col: str | None = None, approaches=(1, 2, 3),
            bootstrap: int = 0, seed: int = 0, starts="full", Cs=None, target_c: float | None = None,
            diagnostics: bool = True, law="chinchilla", u_col: str | None = None,
            group_col: str = "group", exclude_groups=EXCLUDED_GROUPS, **columns) -> tuple[dict, dict]:
    """Fit the requested approaches; returns (JSON-ready summary, fitted objects).

    Summary keys: ``data``, ``warnings``, ``approach1`` / ``approach2`` (``a``, ``b``, ...),
    ``approach3`` (the law's parameters, ``objective``, ``a``, ``b``, ``convergence``,
    ``at_C``), each with ``ci`` when ``bootstrap`` > 0, ``prediction`` (residual
    bootstrap of Approach 3), plus ``identifiability`` and ``backtest`` (or their errors).
    ``Cs`` (default: the largest budget and ``target_c``) are the budgets of ``at_C``.
    """
    warns: list[str] = []
    law = lw.get(law)
    df, excluded = done_runs(df)
    if excluded:
        states = pd.Series([e["state"] for e in excluded]).value_counts()
        what = ", ".join(f"{n} {st}" for st, n in states.items())
        if not len(df):
            raise ConfigError(f"state: every run was excluded for its state ({what}); there is nothing to "
                              f"fit: finish (or relaunch) the sweep's runs, or fit a table of done runs")
        warns.append(f"excluded {len(excluded)} run(s) whose state is not done ({what}); listed under "
                     f"excluded_runs")
    df = drop_groups(df, group_col=group_col, groups=exclude_groups, warnings=warns)
    u_col = _default_u_col(df, law, u_col)
    cols = dict(n_col=n_col, loss_col=loss_col, d_col=d_col, c_col=c_col, budget_col=budget_col,
                u_col=u_col if "U" in law.inputs else None, **columns)
    frame = unc.canonical(df, **cols, warnings=warns)   # bad columns / values raise here
    c_max = float(frame["budget"].max())
    if target_c is not None and not (math.isfinite(float(target_c)) and float(target_c) > 0):
        raise ConfigError(f"target_c={target_c}: must be a positive number of FLOPs (default: 100x the largest budget)")
    target_c = float(target_c) if target_c else 100.0 * c_max
    Cs = tuple(Cs) if Cs is not None else (c_max, target_c)
    canon = unc.canon(frame)
    c12 = {k: v for k, v in canon.items() if k != "u_col"}
    out: dict = {"data": {"n_rows_in": int(len(df)), "n_points": int(len(frame)),
                          "n_budgets": int(frame["budget"].nunique()),
                          "columns": {k: v for k, v in cols.items() if v},
                          "flops_per_param_token": flops_per_param_token(frame),
                          "range": {q: [float(frame[q].min()), float(frame[q].max())] for q in ("N", "D", "C")},
                          "largest_budget": c_max, "target_c": target_c, "law": law.name,
                          "formula": law.formula}}
    if excluded:
        out["excluded_runs"] = _clean(excluded)
    objs: dict = {"frame": frame, "Cs": Cs, "target_c": target_c}
    fitters = {1: ap.fit_approach1, 2: ap.fit_approach2}
    for appr in (1, 2):
        if appr not in approaches:
            continue
        try:
            r = fitters[appr](frame, **c12)
            objs[appr] = r
            d = {"a": r.a, "b": r.b, "a_se_ols": r.a_se, "b_se_ols": r.b_se,
                 "n_opt_coef": math.exp(r.frontier.n0), "d_opt_coef": math.exp(r.frontier.d0),
                 "at_C": {f"{C:.4g}": {"n_opt": float(r.frontier.n_opt(C)), "d_opt": float(r.frontier.d_opt(C)),
                                       "tokens_per_param": float(r.frontier.tokens_per_param(C))} for C in Cs}}
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
            r3 = ap.fit_approach3(frame, **canon, law=law, starts=starts)
            objs[3] = r3
            d = r3.as_dict()
            d["formula"] = law.formula
            d["at_C"] = {f"{C:.4g}": {"n_opt": float(r3.n_opt(C)), "d_opt": float(r3.d_opt(C)),
                                      "loss_opt": float(r3.loss_opt(C)),
                                      "tokens_per_param": float(r3.tokens_per_param(C))} for C in Cs}
            warns.extend(r3.warnings)
            out["approach3"] = d
        except ValueError as e:
            out["approach3"] = {"error": str(e)}
            warns.append(f"approach3 failed: {e}")
    if bootstrap:
        _add_intervals(out, objs, frame, canon, approaches, int(bootstrap), seed, warns)
    if diagnostics:
        try:
            out["identifiability"] = unc.identifiability(frame, **canon, fit3=objs.get(3))
        except Exception as e:
            out["identifiability"] = {"error": f"{type(e).__name__}: {e}"}
        try:
            out["backtest"] = unc.backtest(frame, **canon, law=law, starts=starts)
        except Exception as e:
            out["backtest"] = {"error": f"{type(e).__name__}: {e}"}
        if "U" not in law.inputs:  # rollouts: the backtest at every level, and how the error grows
            from analysis import prediction

            try:
                roll, notes = prediction.rollouts(frame, law=law, starts="small")
                out["rollouts"] = _clean(prediction.rollout_summary(roll, notes))
                objs["rollouts"] = roll
                if 3 in objs:
                    objs["rollout_band"] = (out["rollouts"]["calibration"]["growth_per_decade"],
                                            prediction.residual_sd(objs[3], frame), out["rollouts"]["calibration"]["z"])
            except Exception as e:
                out["rollouts"] = {"error": f"{type(e).__name__}: {e}"}
    out["warnings"] = warns
    return _clean(out), objs


def _add_intervals(out, objs, frame, canon, approaches, K, seed, warns) -> None:
    """Pairs bootstrap of every approach that fitted, and the residual bootstrap of Approach 3."""
    ok = [a for a in approaches if f"approach{a}" in out and "error" not in out[f"approach{a}"]]
    try:
        boot = unc.bootstrap(frame, **canon, K=K, seed=seed, approaches=ok, fit3=objs.get(3))
        objs["boot"] = boot
        for key, v in boot.summary(objs["Cs"]).items():
            out[key]["ci"] = v
        warns.extend(boot.narrow_warnings())
        for appr, err in boot.errors.items():
            warns.append(f"bootstrap approach{appr}: {err}")
    except Exception as e:   # the report must survive; record what went wrong
        out["bootstrap_error"] = f"{type(e).__name__}: {e}"
    if 3 in objs:
        try:
            out["prediction"] = unc.prediction_intervals(frame, objs[3], objs["Cs"], **canon, K=K, seed=seed)
        except Exception as e:
            out["prediction"] = {"error": f"{type(e).__name__}: {e}"}


def draw(name: str, out_dir, plot, *args, **kwargs) -> list[str]:
    """``plot(*args, **kwargs)`` drawn off-screen (:func:`analysis.plots.offscreen`: an Agg
    figure of the report's own, whatever backend the session uses) and saved as
    ``out_dir/name.png`` and ``.svg``; returns the files, or ``["error: name: ..."]`` so that
    a figure that cannot be drawn never loses the fits."""
    from analysis import plots

    try:
        with plots.offscreen():
            return plots.save(plot(*args, **kwargs), Path(out_dir) / name)
    except Exception as e:
        return [f"error: {name}: {type(e).__name__}: {e}"]


def make_plots(objs: dict, out_dir) -> list[str]:
    """All figures that the fitted objects allow; failures are returned as 'error: ...'."""
    from analysis import plots

    files: list[str] = []
    frame = objs["frame"]
    target = objs.get("target_c")
    if 2 in objs:
        files += draw("isoflop", out_dir, plots.isoflop_curves, frame, objs[2])
    fits = {k: objs.get(k) for k in (1, 2, 3) if objs.get(k) is not None}
    if fits:
        minima = objs[2].table().query("included") if 2 in objs else None
        files += draw("allocation", out_dir, plots.optimal_allocation, fits, boot=objs.get("boot"),
                      minima=minima, frame=frame, target_c=target)
    if 3 in objs:
        files += draw("contour", out_dir, plots.loss_contour, objs[3], frame=frame, target_c=target)
        files += draw("residuals", out_dir, plots.residuals, frame, objs[3])
    if objs.get("rollouts") is not None and len(objs["rollouts"]):
        g, s0, z = objs.get("rollout_band", (None, None, 1.96))
        files += draw("rollouts", out_dir, plots.rollout_errors, objs["rollouts"], growth=g, sigma0=s0, z=z)
    return files


def plots_allocation(table, out_dir) -> list[str]:
    from analysis import plots

    return draw("allocation_rules", out_dir, plots.allocation_comparison, table)


def known_truth(df: pd.DataFrame, fit3_summary: dict, truth_col: str = "entropy_rate") -> dict | None:
    """Fitted irreducible loss E against a source's exact entropy rate, when the data has one.

    A synthetic source (``synthetic_markov``) knows the best achievable loss in nats per
    token; a fitted E far from it means the law is extrapolating badly.  Returns ``None`` when
    ``truth_col`` is absent or empty, or the fitted law has no E.
    """
    if truth_col not in df.columns or "E" not in (fit3_summary or {}):
        return None
    h = pd.to_numeric(df[truth_col], errors="coerce").dropna().unique()
    if h.size != 1 or not math.isfinite(float(h[0])) or float(h[0]) <= 0:
        return None
    h = float(h[0])
    return {"entropy_rate": h, "E": fit3_summary["E"], "rel_error": fit3_summary["E"] / h - 1}


def write_report(df: pd.DataFrame, out_dir, *, loss_col: str, n_col: str | None = None,
                 d_col: str | None = None, budget_col: str | None = None, c_col: str | None = None,
                 bootstrap: int = 200, seed: int = 0, starts="full", approaches=(1, 2, 3),
                 group_col: str = "group", law="chinchilla", target_c: float | None = None,
                 compare_to: pd.DataFrame | None = None, compare_labels=("A", "B"), tasks="auto",
                 task_metric: str = "acc", task_method: str = "two_step", chance: float | None = None,
                 **columns) -> dict:
    """Fit everything, write ``fits.json``, ``fits.md`` and PNG/SVG plots into ``out_dir``.

    Robust by design for the end of a sweep: bad columns or values still raise
    ``ConfigError`` (that is a caller bug), but a degenerate approach, plot or bootstrap is
    recorded in the report instead of raising.  Returns the summary dictionary.

    Extras when the table allows them: ``known_truth`` (fitted E against the source's
    exact entropy rate, :func:`known_truth`), ``allocation`` (Chinchilla-rule vs Kaplan-rule
    runs per budget, :mod:`analysis.allocation`, with its own figure) and, given
    ``compare_to`` (a second table, same columns), ``compare``: the compute-equivalent gain
    of that table's recipe over this one (:func:`analysis.recipes.compare`, with figure).
    ``approaches=()`` skips the law fits, e.g. for a sweep that only compares allocations.
    A table of WSD forks (group ``wsd_fork``) also gets ``wsd_forks.png``: loss vs tokens per
    size, one marker per fork, with the fitted law's curves.  A table with downstream-task columns
    (``task/<name>/acc``, ...) gets ``tasks`` (:func:`task_section`: each task's accuracy law,
    chained predictions, backtest and figures); ``tasks``: ``"auto"`` (every task in the table),
    a list of names, or ``()`` for none.
    """
    from analysis import allocation

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary, objs = fit_all(df, n_col=n_col, d_col=d_col, loss_col=loss_col, budget_col=budget_col,
                            c_col=c_col, bootstrap=bootstrap if approaches else 0, seed=seed,
                            starts=starts, approaches=tuple(approaches), diagnostics=bool(approaches),
                            law=law, target_c=target_c, group_col=group_col, **columns)
    if "predicted_loss" in df.columns and df["predicted_loss"].notna().any():  # Ladder rungs, pre-registered
        cols = [c for c in ("run_id", "n_total", "tokens", "budget", "eval_loss", "predicted_loss", "predicted_pi_lo",
                            "predicted_pi_hi", "prediction_inside") if c in df.columns]
        summary["ladder"] = _clean(df[df["predicted_loss"].notna()][cols].to_dict(orient="records"))
    truth = known_truth(df, summary.get("approach3"))
    if truth is not None:
        summary["known_truth"] = truth
    summary["plots"] = make_plots(objs, out_dir)
    if budget_col and allocation.has_allocation_pairs(df, group_col):
        try:
            table = allocation.compare_allocations(df, n_col=n_col, loss_col=loss_col, budget_col=budget_col,
                                                   d_col=d_col, group_col=group_col)
            summary["allocation"] = _clean(table.to_dict(orient="records"))
            summary["allocation_md"] = allocation.to_markdown(table)
            summary["plots"] += plots_allocation(table, out_dir)
        except Exception as e:
            summary["allocation"] = {"error": f"{type(e).__name__}: {e}"}
    if group_col in df and (df[group_col] == "wsd_fork").any() and n_col and d_col:
        from analysis import plots

        summary["plots"] += draw("wsd_forks", out_dir, plots.wsd_forks, df, n_col=n_col, d_col=d_col,
                                 loss_col=loss_col, group_col=group_col, law=objs.get(3))
    if tasks == "auto":
        from analysis.tasks import task_names

        tasks = task_names(df)
    if tasks and approaches:
        summary["tasks"] = task_section(df, list(tasks), out_dir, loss_col=loss_col, metric=task_metric,
                                        method=task_method, chance=chance, K=bootstrap, seed=seed, starts=starts,
                                        law=law, n_col=n_col, d_col=d_col, c_col=c_col, budget_col=budget_col,
                                        group_col=group_col, **columns)
        for t in summary["tasks"].values():
            summary["plots"] += t.get("plots", [])
    if compare_to is not None:
        summary.update(compare_section(df, compare_to, out_dir, labels=compare_labels, law=law,
                                       K=bootstrap or 200, seed=seed, n_col=n_col, d_col=d_col,
                                       c_col=c_col, loss_col=loss_col, budget_col=budget_col, **columns))
        summary["plots"] += summary.pop("plots_compare", [])
    (out_dir / "fits.json").write_text(json.dumps(summary, indent=2))
    (out_dir / "fits.md").write_text(to_markdown(summary))
    return summary


def task_section(df: pd.DataFrame, names, out_dir=None, *, loss_col: str, metric: str = "acc",
                 method: str = "two_step", chance: float | None = None, K: int = 200, seed: int = 0,
                 starts="full", law="chinchilla", at=(), at_c=(), backtest: bool = True, **cols) -> dict:
    """The ``tasks`` section of a report: per task name, :func:`analysis.tasks.fit_task`'s law
    (``as_dict``), ``at_budgets`` (the chained accuracy at each budget's compute-optimal point
    with ``ci``/``pi``, beside that budget's best measured accuracy), ``predictions`` at ``at``
    ((N, D) pairs), ``at_C`` at the budgets ``at_c``, ``backtest`` (:func:`analysis.tasks.backtest`)
    and, with ``out_dir``, the figures ``task_<name>_acc_vs_compute`` and ``task_<name>_acc_vs_loss``
    (their files under ``plots``).  A task that cannot be fitted gets ``{"error": ...}``; the
    others are kept.  With ``method="gadre"`` and several tasks, the pseudo-task ``average`` (their
    accuracy averaged per run, :func:`analysis.tasks.with_average`; ``averaged`` lists them) is
    fitted too, as Gadre et al. do."""
    from analysis import task_plots, tasks

    chance = tasks.CHANCE if chance is None else chance
    kw = dict(metric=metric, method=method, chance=chance, loss_col=loss_col, law=law, starts=starts, K=K,
              seed=seed, **cols)
    out: dict = {}
    jobs = [(name, df, None) for name in names]
    if method == "gadre" and len(names) > 1:
        avg, df_avg = tasks.with_average(df, names, metric)
        jobs.append((avg, df_avg, list(names)))
    for name, df, averaged in jobs:
        try:
            fit = tasks.fit_task(df, name, **kw)
        except ValueError as e:
            out[name] = {"error": str(e)}
            continue
        d = fit.as_dict()
        if averaged:
            d["averaged"] = averaged
        best = fit.frame.groupby("budget")["acc"].max()
        d["at_budgets"] = [{**fit.predict_c(b), "best_acc": float(best[b])} for b in best.index]
        d["predictions"] = [fit.predict(n, dd) for n, dd in at]
        d["at_C"] = [fit.predict_c(c) for c in at_c]
        bt = None
        if backtest:
            try:
                bt = tasks.backtest(df, name, **kw)
                d["backtest"] = bt
            except ValueError as e:
                d["backtest"] = {"error": str(e)}
        if out_dir is not None:
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
            d["plots"] = (draw(f"task_{safe}_acc_vs_compute", out_dir, task_plots.accuracy_vs_compute, fit,
                               at_c=tuple(at_c), backtest=bt)
                          + draw(f"task_{safe}_acc_vs_loss", out_dir, task_plots.accuracy_vs_loss, fit))
        out[name] = d
    return _clean(out)


def compare_section(df_a, df_b, out_dir=None, *, labels, law, K, seed, **cols) -> dict:
    """``compare`` (JSON), ``compare_md`` and, with ``out_dir``, the gain figure."""
    from analysis import plots, recipes

    try:
        cmp = recipes.compare(drop_groups(df_a), drop_groups(df_b), labels=tuple(labels), law=law,
                              K=K, seed=seed, **cols)
    except ValueError as e:
        return {"compare": {"error": str(e)}}
    out = {"compare": _clean(cmp.as_dict()), "compare_md": cmp.to_markdown()}
    if out_dir is not None:
        out["plots_compare"] = draw("compare", out_dir, plots.compare_gain, cmp)
    return out
