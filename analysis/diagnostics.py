"""Design diagnostics and a backtest: can these runs pin the law down, and does it extrapolate?

* :func:`identifiability` reports how well the design separates the terms of a law: spans
  of log N and log D, their correlation, the Gauss-Newton parameter correlation matrix and
  condition number.
* :func:`backtest` fits on the smaller budgets and predicts the largest.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis import approaches as ap
from analysis import laws as lw
from analysis.data import budgets_of, prepare
from analysis.errors import ConfigError


def canonical(df, **cols) -> pd.DataFrame:
    """prepare() plus a filled budget column (binned C when the table has none)."""
    frame = prepare(df, **cols)
    return frame.assign(budget=budgets_of(frame))


def canon(frame) -> dict:
    """Column arguments that address a prepared frame (N, D, C, loss, budget [, U])."""
    cols = dict(n_col="N", d_col="D", c_col="C", loss_col="loss", budget_col="budget")
    if "U" in frame.columns:
        cols["u_col"] = "U"
    return cols


def inputs_of(frame) -> dict:
    """Law inputs (N, D [, U]) of a prepared frame."""
    return lw.make_inputs(N=frame["N"].to_numpy(), D=frame["D"].to_numpy(),
                          U=frame["U"].to_numpy() if "U" in frame else None)


def law_covariance(fit: ap.LawFit, frame: pd.DataFrame) -> np.ndarray:
    """Gauss-Newton covariance s^2 (J^T J)^-1 of the law's coordinates at the fit."""
    X = np.array(fit.x)[None]
    x = inputs_of(frame)
    r = (fit.law.log_loss(X, x) - np.log(frame["loss"].to_numpy())[None])[0]
    J = fit.law.jac(X, x)[0]
    n, P = J.shape
    s2 = r @ r / max(n - P, 1)
    return s2 * np.linalg.pinv(J.T @ J)


def law_se_a(fit: ap.LawFit, frame: pd.DataFrame) -> float:
    """Delta-method standard error of the frontier exponent a (nan without a closed form)."""
    if fit.law.exponents is None:
        return float("nan")
    t = np.array(fit.x)
    h = 1e-6 * np.maximum(1.0, np.abs(t))
    grad = np.array([(fit.law.exponents(t + h[j] * e)[0] - fit.law.exponents(t - h[j] * e)[0]) / (2 * h[j])
                     for j, e in enumerate(np.eye(len(t)))])
    v = grad @ law_covariance(fit, frame) @ grad
    return float(math.sqrt(v)) if v >= 0 else float("nan")


def identifiability(df: pd.DataFrame, *, loss_col: str, n_col: str | None = None,
                    d_col: str | None = None, c_col: str | None = None,
                    budget_col: str | None = None, fit3: ap.LawFit | None = None,
                    **columns) -> dict:
    """Design diagnostics: can these runs separate the N term from the D term?

    Spans are in decades (log10 max/min).  A high |corr(log N, log D)| (IsoFLOP designs
    trade N against D) or a large condition number means the law's parameters trade off
    against each other (for Chinchilla: A, B, alpha, beta): expect wide intervals.
    """
    frame = prepare(df, n_col=n_col, loss_col=loss_col, d_col=d_col, c_col=c_col,
                    budget_col=budget_col, **columns)
    lN, lD = np.log(frame["N"].to_numpy()), np.log(frame["D"].to_numpy())
    out = {"n_points": len(frame), "n_budgets": int(np.unique(budgets_of(frame)).size),
           "span_log10_N": float((lN.max() - lN.min()) / math.log(10)),
           "span_log10_D": float((lD.max() - lD.min()) / math.log(10)),
           # undefined (NaN, not a numpy warning) when N or D takes a single value
           "corr_logN_logD": (float(np.corrcoef(lN, lD)[0, 1]) if len(frame) > 2 and np.ptp(lN) > 0 and np.ptp(lD) > 0
                              else float("nan"))}
    if fit3 is not None:
        cov = law_covariance(fit3, frame)
        sd = np.sqrt(np.clip(np.diag(cov), 0, None))
        with np.errstate(all="ignore"):
            corr = cov / np.outer(sd, sd)
        ev = np.linalg.eigvalsh(cov)
        out.update({"params": list(fit3.law.params),
                    "param_se_gauss_newton": sd.tolist(),
                    "param_correlation": np.round(corr, 4).tolist(),
                    "condition_number": float(ev.max() / ev.min()) if ev.min() > 0 else float("inf"),
                    "condition_number_correlation": float(np.linalg.cond(corr))})
    return out


def backtest(df: pd.DataFrame, *, loss_col: str, n_col: str | None = None,
             d_col: str | None = None, c_col: str | None = None, budget_col: str | None = None,
             starts="full", law=None, approach2_kwargs: dict | None = None, **columns) -> dict:
    """Fit on all but the largest budget, predict the largest.

    Approach 3 (any law): the held-out runs' losses (mean absolute relative error, RMSE of
    log loss), and the *compute-optimal loss* it predicts at the held-out budget,
    ``L(N_opt(C), D_opt(C))``, against what that budget achieved: its parabola vertex
    (``loss_opt_rel_error``) and its best run (``loss_best_rel_error``).  This is the
    number a researcher extrapolating a law cares about: "how good will the next budget be".
    Approaches 1 and 2: N_opt at the held-out budget against that budget's own parabola
    vertex (relative error), when the held-out budget has an interior minimum.
    """
    frame = canonical(df, n_col=n_col, loss_col=loss_col, d_col=d_col, c_col=c_col,
                       budget_col=budget_col, **columns)
    cols = canon(frame)
    c12 = {k: v for k, v in cols.items() if k != "u_col"}
    b = frame["budget"].to_numpy()
    ub = np.unique(b)
    if ub.size < 3:
        raise ConfigError(f"{budget_col or 'budget'}: backtest needs >= 3 budgets, found {ub.size}")
    test_b = ub[-1]
    train, test = frame[b < test_b], frame[b == test_b]
    out: dict = {"held_out_budget": float(test_b), "n_train": len(train), "n_test": len(test)}
    kw = dict(approach2_kwargs or {})
    target = target_loss = None
    try:
        p_all = ap.fit_approach2(frame, **c12, **kw, min_budgets=1)
        tb = [p for p in p_all.budgets if p.budget == test_b or abs(math.log(p.budget / test_b)) < 1e-9]
        if tb and tb[0].included:
            target, target_loss = tb[0].n_opt, tb[0].loss_opt
    except ValueError:
        pass
    out["held_out_vertex_n_opt"] = target
    out["held_out_vertex_loss"] = target_loss
    out["held_out_best_loss"] = float(test["loss"].min())
    try:
        f3 = ap.fit_approach3(train, **cols, law=law, starts=starts)
        U = test["U"].to_numpy() if "U" in test else None
        pred = f3.loss(test["N"].to_numpy(), test["D"].to_numpy(), U)
        obs = test["loss"].to_numpy()
        loss_opt = float(f3.loss_opt(test_b))
        out["approach3"] = {
            "law": f3.law.name,
            "mean_abs_rel_error": float(np.mean(np.abs(pred / obs - 1))),
            "max_abs_rel_error": float(np.max(np.abs(pred / obs - 1))),
            "rmse_log_loss": float(np.sqrt(np.mean((np.log(pred) - np.log(obs)) ** 2))),
            "n_opt_pred": float(f3.n_opt(test_b)),
            "loss_opt_pred": loss_opt,
            "loss_best_rel_error": float(loss_opt / out["held_out_best_loss"] - 1)}
        if target:
            out["approach3"]["n_opt_rel_error"] = float(f3.n_opt(test_b) / target - 1)
            out["approach3"]["loss_opt_rel_error"] = float(loss_opt / target_loss - 1)
    except ValueError as e:
        out["approach3"] = {"error": str(e)}
    for appr, fitter in ((1, ap.fit_approach1), (2, ap.fit_approach2)):
        try:
            r = fitter(train, **c12, **(kw if appr == 2 else {}))
            d = {"n_opt_pred": float(r.frontier.n_opt(test_b))}
            if target:
                d["n_opt_rel_error"] = float(r.frontier.n_opt(test_b) / target - 1)
            out[f"approach{appr}"] = d
        except ValueError as e:
            out[f"approach{appr}"] = {"error": str(e)}
    return out
