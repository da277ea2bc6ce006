"""fits.md: the report summary (:func:`analysis.report.fit_all`) as Markdown a reader can scan.

Tables, not JSON: the exponents with their bootstrap intervals, the compute-optimal
allocation at the largest budget and at the extrapolation target (with intervals, and for
Approach 3 the residual-bootstrap prediction interval of one run's loss), the fitted law's
parameters, how the optimiser converged, the design's identifiability, the backtest.
"""

from __future__ import annotations

from pathlib import Path


def _num(v, fmt=".4g") -> str:
    return "-" if v is None else format(v, fmt)


def _ci(c, fmt=".4g") -> str:
    return f"[{c[0]:{fmt}}, {c[1]:{fmt}}]" if c and None not in c else ""


def _table(header, rows) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def _exponents(summary) -> list[str]:
    rows = []
    for appr in (1, 2, 3):
        d = summary.get(f"approach{appr}")
        if d is None:
            continue
        if "error" in d:
            rows.append((appr, "-", "-", f"error: {d['error']}"))
            continue
        note = ""
        if appr == 2:
            note = f"{sum(b['included'] for b in d['budgets'])}/{len(d['budgets'])} budgets included"
        elif appr == 1:
            note = f"{d['n_envelope_points']} runs on the envelope"
        else:
            note = f"{d.get('law', 'chinchilla')} law, objective {d['objective']:.6g}"
        ci = d.get("ci", {})
        rows.append((appr, f"{d['a']:.4f} {_ci(ci.get('a'), '.4f')}", f"{d['b']:.4f} {_ci(ci.get('b'), '.4f')}", note))
    return _table(("approach", "a (N_opt ∝ C^a), 95% CI", "b (D_opt ∝ C^b), 95% CI", "notes"), rows) if rows else []


def _allocation(summary) -> list[str]:
    out = []
    data = summary["data"]
    pred = summary.get("prediction") or {}
    for C_key in next((d.get("at_C", {}) for k in ("approach3", "approach2", "approach1")
                       if "at_C" in (d := summary.get(k) or {})), {}):
        C = float(C_key)
        kind = ("largest budget trained" if abs(C / data["largest_budget"] - 1) < 1e-3 else
                "extrapolation target" if abs(C / data["target_c"] - 1) < 1e-3 else "budget")
        rows = []
        for appr in (1, 2, 3):
            d = summary.get(f"approach{appr}") or {}
            if "at_C" not in d:
                continue
            v = d["at_C"][C_key]
            ci = (d.get("ci", {}).get("at_C") or {}).get(C_key, {})
            loss = "-"
            if "loss_opt" in v:
                p = (pred.get("at_C") or {}).get(C_key, {})
                loss = f"{v['loss_opt']:.4f} {_ci(ci.get('loss_opt'), '.4f')}"
                if p.get("loss_opt_pi"):
                    loss += f"; one run: {_ci(p['loss_opt_pi'], '.4f')}"
            rows.append((appr, f"{v['n_opt']:.4g} {_ci(ci.get('n_opt'))}", f"{v['d_opt']:.4g} {_ci(ci.get('d_opt'))}",
                         f"{v['tokens_per_param']:.3g} {_ci(ci.get('tokens_per_param'), '.3g')}", loss))
        out += ["", f"At C = {C:.4g} ({kind}):", ""]
        out += _table(("approach", "N_opt", "D_opt", "tokens/param", "compute-optimal loss"), rows)
    if out:
        K = (summary.get("approach3", {}).get("ci") or summary.get("approach2", {}).get("ci") or {}).get("K")
        head = ["", "## Compute-optimal allocation", "",
                "Brackets: 95% bootstrap intervals " + (f"(K={K} resamples of the runs within budgets)" if K else
                                                       "(none: run with bootstrap > 0)")
                + (f"; 'one run': residual-bootstrap prediction interval of a single run's loss at that "
                   f"allocation (K={pred['K']})" if pred.get("K") else "") + "."]
        out = head + out
    return out


def _law(summary) -> list[str]:
    d = summary.get("approach3") or {}
    if "error" in d or "convergence" not in d:
        return []
    ci = d.get("ci", {})
    skip = {"law", "objective", "a", "b", "n_points", "convergence", "at_C", "ci", "formula", "G"}
    names = [k for k in d if k not in skip]
    ident = summary.get("identifiability") or {}
    se = dict(zip(ident.get("params", []), ident.get("param_se_gauss_newton", [])))
    rows = [(k, f"{d[k]:.5g}", _ci(ci.get(k), ".4g") or "-") for k in names]
    out = ["", f"## Approach 3: {d.get('formula', '')}", ""]
    out += _table(("parameter", "value", "95% bootstrap CI"), rows)
    if se:
        out += ["", "Gauss-Newton standard errors in the solver's coordinates: "
                + ", ".join(f"{k} {v:.3g}" for k, v in se.items()) + "."]
    c = d["convergence"]
    out += ["", "Convergence:", ""]
    out += _table(("starts", "distinct problems solved", "starts at the best objective", "converged",
                   "|gradient| at optimum", "iterations (best start)", "median iterations", "method"),
                  [(c["n_starts"], c.get("n_distinct", c["n_starts"]), f"{c['n_at_best']} (rtol {c['rtol']:g})",
                    c["n_converged"], f"{c['grad_norm']:.2g}", c["iterations"], f"{c['median_iterations']:.0f}",
                    c["method"])])
    return out


def _identifiability(summary) -> list[str]:
    d = summary.get("identifiability")
    if not d:
        return []
    if "error" in d:
        return ["", "## Identifiability", "", f"error: {d['error']}"]
    out = ["", "## Identifiability", ""]
    out += _table(("points", "budgets", "log10 span of N", "log10 span of D", "corr(log N, log D)"),
                  [(d["n_points"], d["n_budgets"], f"{d['span_log10_N']:.2f}", f"{d['span_log10_D']:.2f}",
                    _num(d["corr_logN_logD"], ".3f"))])
    if "param_correlation" in d:
        p = d["params"]
        # None: the Gauss-Newton matrix is singular (an infinite condition number, stored as null)
        cond = d["condition_number"]
        out += ["", "Parameter correlations (Gauss-Newton), condition number "
                + (f"{cond:.3g}:" if cond is not None else "infinite (this design does not pin every parameter):"), ""]
        out += _table([""] + p, [[p[i]] + [f"{v:+.3f}" for v in row] for i, row in enumerate(d["param_correlation"])])
        tight = [(p[i], p[j], d["param_correlation"][i][j]) for i in range(len(p)) for j in range(i + 1, len(p))
                 if abs(d["param_correlation"][i][j]) > 0.95]
        if tight:
            out += ["", "Strongly traded off (|corr| > 0.95): " + "; ".join(f"{a} and {b} ({c:+.3f})" for a, b, c in tight)
                    + ". These parameters are not separately pinned down by this design; quantities that "
                      "depend on their ratio (a, b, N_opt) can still be."]
    return out


def _ladder(summary) -> list[str]:
    rungs = summary.get("ladder")
    if not rungs:
        return []
    L = ["", "## Pre-registered predictions (Ladder)", "",
         "Each loss below was predicted and written into the run directory before the run's first step.", "",
         "| run | N | D | C | predicted | prediction interval | measured | inside |", "|---|---|---|---|---|---|---|---|"]
    for r in rungs:
        L.append(f"| {r['run_id']} | {r.get('n_total', 0):.4g} | {r.get('tokens', 0):.4g} | {r.get('budget') or 0:.3g} | "
                 f"{r['predicted_loss']:.4f} | [{r['predicted_pi_lo']:.4f}, {r['predicted_pi_hi']:.4f}] | "
                 f"{r['eval_loss']:.4f} | {'yes' if r['prediction_inside'] else 'no'} |")
    return L


def _rollouts(summary) -> list[str]:
    ro = summary.get("rollouts")
    if not ro:
        return []
    L = ["", "## Rollouts: fit on the budgets below, predict every run above", ""]
    if "error" in ro:
        return L + [f"not run: {ro['error']}"]
    if ro["levels"]:
        L += ["| fitted on C <= | runs fitted | runs predicted | farthest (decades) | mean signed error | mean abs error |",
              "|---|---|---|---|---|---|"]
        L += [f"| {r['level']:.3g} | {r['n_fit']} | {r['n_predicted']} | {r['max_distance']:.2f} | "
              f"{100 * r['mean_signed_rel_error']:+.2f}% | {100 * r['mean_abs_rel_error']:.2f}% |" for r in ro["levels"]]
    cal = ro["calibration"]
    L += ["", f"Error growth {cal['growth_per_decade']:.4f} (log loss) per decade of extrapolation. "
              + (f"Cross-validated coverage of the 95% prediction interval (`scaling predict`): "
                 f"{100 * cal['coverage']:.0f}% of {cal['n_predictions']} rollout predictions."
                 if cal.get("coverage") is not None else cal.get("note", ""))]
    L += [f"- {n}" for n in cal.get("notes", [])]
    return L


def _backtest(summary) -> list[str]:
    bt = summary.get("backtest") or {}
    if "error" in bt:
        return ["", "## Backtest: predict the largest budget", "", f"not run: {bt['error']}"]
    a3 = bt.get("approach3") or {}
    if "loss_opt_pred" not in a3:
        return []
    out = ["", "## Backtest: predict the largest budget", "",
           f"Fitted on the budgets below {bt['held_out_budget']:.3g} ({bt['n_train']} runs), Approach 3 "
           f"predicts a compute-optimal loss of {a3['loss_opt_pred']:.4f} at {bt['held_out_budget']:.3g}; "
           + (f"that budget's parabola minimum is {bt['held_out_vertex_loss']:.4f} "
              f"(error {100 * a3['loss_opt_rel_error']:+.2f}%), " if a3.get("loss_opt_rel_error") is not None else "")
           + f"its best run {bt['held_out_best_loss']:.4f} (error {100 * a3['loss_best_rel_error']:+.2f}%). "
           f"Held-out runs' losses: mean |relative error| {100 * a3['mean_abs_rel_error']:.2f}%.", ""]
    rows = []
    for appr in (1, 2, 3):
        d = bt.get(f"approach{appr}") or {}
        if "n_opt_pred" in d:
            err = d.get("n_opt_rel_error")
            rows.append((appr, f"{d['n_opt_pred']:.4g}", _num(bt.get("held_out_vertex_n_opt")),
                         "-" if err is None else f"{100 * err:+.1f}%"))
    return out + _table(("approach", "N_opt predicted", "N_opt measured (parabola)", "error"), rows)


def _pts(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _tasks(summary) -> list[str]:
    """Per task: the accuracy law, the chained prediction per budget and at the targets, the backtest."""
    ts = summary.get("tasks")
    if not ts:
        return []
    L = ["", "## Downstream tasks", ""]
    for name, d in ts.items():
        if "error" in d:
            L += [f"### {name}", "", f"error: {d['error']}", ""]
            continue
        c = d["curve"]
        two = d["method"] == "two_step"
        L += [f"### {name} ({d['metric']}, {'two-step: task loss law + sigmoid' if two else 'Gadre: error vs LM loss'})",
              "", f"{d['n_runs']} runs at {d['n_budgets']} budget(s); chance {d['chance']:g}."]
        if two and d.get("task_law"):
            t = d["task_law"]
            L.append(f"Task loss (the correct choice's loss per byte, task/{name}/bpb): {t['formula']} with E = {t['E']:.4g}, A = {t['A']:.4g}, "
                     f"B = {t['B']:.4g}, alpha = {t['alpha']:.4g}, beta = {t['beta']:.4g}." if "E" in t else
                     f"Task loss law {t['law']}: " + ", ".join(f"{k} = {v:.4g}" for k, v in t.items()
                                                             if isinstance(v, float) and k != "objective") + ".")
        params = ", ".join(f"{k} = {c[k]:.4g}" for k in (("a", "b", "k", "L0") if two else ("epsilon", "k", "gamma")))
        L.append(f"Accuracy curve: {c['formula']} with {params}.")
        bs = d["bootstrap"]
        pct = int(round(100 * bs["level"]))
        L += ["", (f"Brackets: {pct}% intervals, bootstrap over runs within budgets (K={bs['K']}, {bs['failures']} failed), "
                   "every step refitted; 'one run': plus a resampled residual of the chain (a single run's measured "
                   "accuracy).") if bs["K"] else "No intervals (bootstrap off).", ""]
        rows = [(f"{r['C']:.3g}", f"{r['N_opt']:.3g}", f"{r['D_opt']:.3g}", f"{r['middle']:.4f}",
                 f"{r['acc']:.3f} {_ci(r['ci'], '.3f')}", _ci(r["pi"], ".3f") or "-",
                 _pts(r.get("best_acc"))) for r in d.get("at_budgets", []) + d.get("at_C", [])]
        L += _table(("budget C", "N_opt", "D_opt", "task loss" if two else "LM loss", "accuracy", "one run",
                     "best measured"), rows)
        if d.get("predictions"):
            L += [""] + _table(("N", "D", "C", "accuracy", "one run"),
                               [(f"{p['N']:.4g}", f"{p['D']:.4g}", f"{p['C']:.3g}", f"{p['acc']:.3f} {_ci(p['ci'], '.3f')}",
                                 _ci(p["pi"], ".3f") or "-") for p in d["predictions"]])
        bt = d.get("backtest") or {}
        if "error" in bt:
            L += ["", f"Backtest: not run: {bt['error']}"]
        elif bt:
            inside = {True: ", inside the one-run interval", False: ", outside the one-run interval", None: ""}[bt["inside_pi"]]
            bor = bt["best_of_runs"]
            L += ["", f"Backtest: fitted on the budgets below {bt['held_out_budget']:.3g} ({bt['n_train']} runs), the chain "
                      f"predicts {bt['pred']:.3f} {_ci(bt['ci'], '.3f')} at its compute-optimal point (one run: "
                      f"{_ci(bt['pi'], '.3f') or '-'}); the budget's best run measured {bt['best_acc']:.3f} "
                      f"(error {bt['error_points']:+.1f} points{inside}). Best of the "
                      f"held-out runs as predicted at their own N, D: {bor['pred']:.3f} {_ci(bor['pi'], '.3f')} "
                      f"({bor['error_points']:+.1f} points)."]
        for w in d.get("warnings", []):
            L.append(f"- {w}")
        L.append("")
    return L


def to_markdown(summary: dict) -> str:
    """A human-readable report of :func:`analysis.report.fit_all`'s summary."""
    data = summary["data"]
    rng = data.get("range", {})
    L = ["# Scaling-law fits", "",
         f"{data['n_points']} points, {data['n_budgets']} budget(s)"
         + (f"; N {rng['N'][0]:.3g}-{rng['N'][1]:.3g}, D {rng['D'][0]:.3g}-{rng['D'][1]:.3g}, "
            f"C {rng['C'][0]:.3g}-{rng['C'][1]:.3g} (C = {data['flops_per_param_token']:.3g} N D)" if rng else "")
         + ".", ""]
    L += _exponents(summary)
    L += _allocation(summary)
    L += _law(summary)
    if summary.get("known_truth"):
        t = summary["known_truth"]
        L += ["", "## Known truth", "",
              f"Fitted E = {t['E']:.4f} nats/token; the source's exact entropy rate is {t['entropy_rate']:.4f} "
              f"({100 * t['rel_error']:+.2f}%)."]
    if summary.get("allocation_md"):
        L += ["", "## Allocation rules at equal compute", "", summary["allocation_md"]]
    if summary.get("compare_md"):
        L += ["", "## Recipe comparison", "", summary["compare_md"]]
    elif (summary.get("compare") or {}).get("error"):
        L += ["", "## Recipe comparison", "", f"error: {summary['compare']['error']}"]
    L += _ladder(summary)
    L += _tasks(summary)
    L += _backtest(summary)
    L += _rollouts(summary)
    L += _identifiability(summary)
    if summary.get("warnings"):
        L += ["", "## Warnings and exclusions", ""] + [f"- {w}" for w in summary["warnings"]]
    if summary.get("excluded_runs"):
        L += ["", "## Runs excluded for their state", "", "| run | state | steps | eval loss |", "|---|---|---|---|"]
        L += [f"| {e['run_id']} | {e['state']} | {e.get('steps', '-')} | "
              f"{'-' if e.get('eval_loss') is None else format(e['eval_loss'], '.4g')} |"
              for e in summary["excluded_runs"]]
    if summary.get("plots"):
        L += ["", "## Figures", ""] + [f"![{Path(p).stem}]({Path(p).name})"
                                       for p in summary["plots"] if p.endswith(".png")]
    return "\n".join(L) + "\n"
