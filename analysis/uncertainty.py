"""How much to believe a fit: bootstrap intervals, identifiability, and a backtest.

Chinchilla's Approach 3 interval for a, [0.454, 0.455], is far narrower than ~400 noisy
runs can support (Besiroglu et al. 2024 found about ±0.02).  This module makes the
honest version cheap:

* :func:`bootstrap` resamples *runs* with replacement (within each budget when budgets
  are known, so every IsoFLOP curve keeps its points) K times with a fixed seed, refits
  every approach on each resample and keeps the samples.  Approach 3 resamples are solved
  all at once: a resample is a row of multiplicity weights, so the batched Newton solver of
  :mod:`analysis.approaches` runs (resample x start) rows in one go, each resample from a
  few starts (the full-data optima plus random Hoffmann grid points).
* :class:`BootstrapResult` turns samples into intervals for a, b, N_opt(C), D_opt(C),
  tokens per parameter and (Approach 3) the predicted loss at any C, and warns when an
  interval is implausibly narrow compared with the asymptotic standard error the same
  data imply.
* :func:`identifiability` reports how well the design pins the law down: spans of log N
  and log D, their correlation, the parameter correlation matrix and condition number.
* :func:`backtest` fits on the smaller budgets and predicts the largest.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from analysis import approaches as ap
from analysis.data import ConfigError, budgets_of, prepare

_CANON = dict(n_col="N", d_col="D", c_col="C", loss_col="loss", budget_col="budget")
PARAMS3 = ("logA", "logB", "logE", "alpha", "beta")


def resample_counts(groups: np.ndarray, K: int, seed: int) -> np.ndarray:
    """(K, n) multiplicities: each row resamples runs with replacement within each group."""
    rng = np.random.default_rng(seed)
    n = len(groups)
    counts = np.zeros((K, n), dtype=np.float64)
    for gval in np.unique(groups):
        idx = np.flatnonzero(groups == gval)
        draws = rng.integers(0, idx.size, size=(K, idx.size))
        for k in range(K):
            np.add.at(counts[k], idx[draws[k]], 1.0)
    return counts


def _canonical(df, **cols) -> pd.DataFrame:
    """prepare() plus a filled budget column (binned C when the table has none)."""
    frame = prepare(df, **cols)
    return frame.assign(budget=budgets_of(frame))


def _frame_from_counts(frame: pd.DataFrame, counts: np.ndarray) -> pd.DataFrame:
    return frame.iloc[np.repeat(np.arange(len(frame)), counts.astype(int))].reset_index(drop=True)


@dataclasses.dataclass(frozen=True)
class BootstrapResult:
    """Bootstrap samples of every approach (NaN rows where a resample could not be fitted).

    ``powerlaw[k]`` has columns a, b, n0, d0 (Approaches 1 and 2: N_opt = e^n0 C^a);
    ``law`` has columns log A, log B, log E, alpha, beta (Approach 3).
    """

    K: int
    seed: int
    n_points: int
    powerlaw: dict            # {1: (K, 4) array, 2: (K, 4) array}
    law: np.ndarray | None    # (K, 5) or None
    failures: dict            # approach -> number of failed resamples
    point: dict               # approach -> point estimate used for the narrow-interval check
    asymptotic_se: dict       # approach -> asymptotic SE of a (nan when unknown)
    errors: dict              # approach -> error message if the approach failed altogether

    def samples(self, approach: int, quantity: str, C=None) -> np.ndarray:
        """Samples of ``quantity`` (a, b, n_opt, d_opt, tokens_per_param, loss_opt, E, A, B,
        alpha, beta, G) for ``approach`` (1, 2 or 3); C for the C-dependent ones."""
        if approach in (1, 2):
            s = self.powerlaw.get(approach)
            if s is None:
                raise ConfigError(f"approach: approach {approach} was not bootstrapped")
            a, b, n0, d0 = s.T
            if quantity in ("a", "b"):
                return a if quantity == "a" else b
            if C is None:
                raise ConfigError(f"C: {quantity} needs a compute budget C")
            lc = math.log(C)
            n, d = np.exp(n0 + a * lc), np.exp(d0 + b * lc)
            table = {"n_opt": n, "d_opt": d, "tokens_per_param": d / n}
            if quantity not in table:
                raise ConfigError(f"quantity: {quantity!r} not available for approach "
                                  f"{approach}; use a, b, n_opt, d_opt, tokens_per_param")
            return table[quantity]
        if approach != 3 or self.law is None:
            raise ConfigError(f"approach: approach {approach} was not bootstrapped")
        la, lb, le, al, be = self.law.T
        A, B, E = np.exp(la), np.exp(lb), np.exp(le)
        with np.errstate(all="ignore"):
            G = (al * A / (be * B)) ** (1.0 / (al + be))
            a, b = be / (al + be), al / (al + be)
            direct = {"E": E, "A": A, "B": B, "alpha": al, "beta": be, "G": G, "a": a, "b": b}
            if quantity in direct:
                return direct[quantity]
            if C is None:
                raise ConfigError(f"C: {quantity} needs a compute budget C")
            n, d = G * (C / 6.0) ** a, (C / 6.0) ** b / G
            table = {"n_opt": n, "d_opt": d, "tokens_per_param": d / n,
                     "loss_opt": E + A / n ** al + B / d ** be}
        if quantity not in table:
            raise ConfigError(f"quantity: unknown {quantity!r}")
        return table[quantity]

    def interval(self, approach: int, quantity: str, C=None, level: float = 0.95):
        """Percentile interval (lo, hi) over the successful resamples."""
        s = self.samples(approach, quantity, C)
        s = s[np.isfinite(s)]
        if s.size == 0:
            return (float("nan"), float("nan"))
        q = (1 - level) / 2
        return (float(np.quantile(s, q)), float(np.quantile(s, 1 - q)))

    def se(self, approach: int, quantity: str, C=None) -> float:
        s = self.samples(approach, quantity, C)
        s = s[np.isfinite(s)]
        return float(s.std(ddof=1)) if s.size > 1 else float("nan")

    def narrow_warnings(self, ratio: float = 0.25) -> list[str]:
        """Warn where the 95% interval of a is implausibly narrow for the data.

        The yardstick is the asymptotic standard error of a implied by the residual
        scatter (OLS for the power laws, Gauss-Newton for Approach 3): an interval much
        narrower than that, or of zero width, says the resampling did not vary the fit
        (too few runs, a stuck optimiser) rather than that a is known that well.
        """
        out = []
        for appr in sorted(set(self.powerlaw) | ({3} if self.law is not None else set())):
            lo, hi = self.interval(appr, "a")
            if not np.isfinite(lo):
                continue
            width = hi - lo
            se = self.asymptotic_se.get(appr, float("nan"))
            if width <= 1e-12:
                out.append(f"approach{appr}: bootstrap interval of a has zero width; with "
                           f"{self.n_points} points this is not a real uncertainty estimate")
            elif np.isfinite(se) and width < ratio * 2 * 1.96 * se:
                out.append(f"approach{appr}: bootstrap 95% interval of a [{lo:.4f}, {hi:.4f}] "
                           f"is implausibly narrow: width {width:.2g} < {ratio} x the "
                           f"asymptotic 95% width {2 * 1.96 * se:.2g} for {self.n_points} points")
        return out

    def summary(self, Cs=(5.76e23,)) -> dict:
        """Intervals of every quantity per approach, at the budgets ``Cs``."""
        out: dict = {}
        apprs = sorted(set(self.powerlaw) | ({3} if self.law is not None else set()))
        for appr in apprs:
            d: dict = {"failures": int(self.failures.get(appr, 0)), "K": self.K}
            for q in ("a", "b"):
                d[q] = list(self.interval(appr, q))
            if appr == 3:
                for q in ("E", "A", "B", "alpha", "beta", "G"):
                    d[q] = list(self.interval(appr, q))
            at = {}
            for C in Cs:
                qs = ["n_opt", "d_opt", "tokens_per_param"] + (["loss_opt"] if appr == 3 else [])
                at[f"{C:.4g}"] = {q: list(self.interval(appr, q, C)) for q in qs}
            d["at_C"] = at
            out[f"approach{appr}"] = d
        return out


def _law_se_a(fit: ap.Approach3Result, logN, logD, logL) -> float:
    cov = law_covariance(fit, logN, logD, logL)
    al, be = fit.alpha, fit.beta
    grad = np.array([0, 0, 0, -be, al]) / (al + be) ** 2
    v = grad @ cov @ grad
    return float(math.sqrt(v)) if v >= 0 else float("nan")


def law_covariance(fit: ap.Approach3Result, logN, logD, logL) -> np.ndarray:
    """Gauss-Newton covariance s^2 (J^T J)^-1 of (log A, log B, log E, alpha, beta)."""
    X = np.array(fit.x)[None]
    x1, x2 = logN[None], logD[None]
    lse, w1, w2 = ap._terms(X, x1, x2)
    r = (lse - logL[None])[0]
    w1, w2 = w1[0], w2[0]
    J = np.stack([w1, w2, 1 - w1 - w2, -w1 * logN, -w2 * logD], axis=1)
    n = len(r)
    s2 = r @ r / max(n - 5, 1)
    return s2 * np.linalg.pinv(J.T @ J)


def bootstrap(df: pd.DataFrame, *, n_col: str, loss_col: str, d_col: str | None = None,
              c_col: str | None = None, budget_col: str | None = None, K: int = 200,
              seed: int = 0, approaches=(1, 2, 3), fit3: ap.Approach3Result | None = None,
              grid_starts: int = 4, stratify: bool = True, delta: float = ap.HUBER_DELTA,
              approach2_kwargs: dict | None = None) -> BootstrapResult:
    """Seeded bootstrap over runs for the requested approaches.

    ``fit3`` (the full-data Approach 3 fit) supplies the starts of every resample: its
    distinct local optima plus ``grid_starts`` random points of Hoffmann's grid; without
    it the 432-start grid is fitted first.
    """
    if K < 2:
        raise ConfigError(f"bootstrap: K={K}; use K >= 2 resamples (e.g. 200)")
    frame = _canonical(df, n_col=n_col, loss_col=loss_col, d_col=d_col, c_col=c_col,
                       budget_col=budget_col)
    groups = budgets_of(frame) if stratify else np.zeros(len(frame))
    counts = resample_counts(groups, K, seed)
    pl, fails, point, se, errors = {}, {}, {}, {}, {}
    for appr in (1, 2):
        if appr not in approaches:
            continue
        fitter = ap.fit_approach1 if appr == 1 else ap.fit_approach2
        kw = dict(approach2_kwargs or {}) if appr == 2 else {}
        try:
            full = fitter(frame, **_CANON, **kw)
        except ValueError as e:
            errors[appr] = str(e)
            continue
        point[appr], se[appr] = full.a, full.a_se
        out = np.full((K, 4), np.nan)
        nf = 0
        for k in range(K):
            try:
                r = fitter(_frame_from_counts(frame, counts[k]), **_CANON, **kw)
                out[k] = (r.a, r.b, r.frontier.n0, r.frontier.d0)
            except ValueError:
                nf += 1
        pl[appr], fails[appr] = out, nf
    law = None
    if 3 in approaches:
        logN, logD, logL = (np.log(frame[c].to_numpy()) for c in ("N", "D", "loss"))
        try:
            if fit3 is None:
                fit3 = ap.fit_law(logN, logD, logL, delta=delta, starts="small")
            starts = np.array([o[:5] for o in fit3.local_optima[:4]])
            rng = np.random.default_rng(seed + 1)
            grid = ap.hoffmann_grid("full")
            S = len(starts) + grid_starts
            X0 = np.empty((K * S, 5))
            for k in range(K):
                X0[k * S:k * S + len(starts)] = starts
                X0[k * S + len(starts):(k + 1) * S] = grid[rng.choice(len(grid), grid_starts,
                                                                       replace=False)]
            W = np.repeat(counts, S, axis=0)
            res = ap.newton_multistart(X0, logN, logD, logL, delta=delta, weights=W)
            f = np.where(np.isfinite(res.f), res.f, np.inf).reshape(K, S)
            best = f.argmin(axis=1)
            law = res.x.reshape(K, S, 5)[np.arange(K), best]
            bad = ~np.isfinite(f.min(axis=1))
            law[bad] = np.nan
            fails[3] = int(bad.sum())
            point[3] = fit3.a
            se[3] = _law_se_a(fit3, logN, logD, logL)
        except ValueError as e:
            errors[3] = str(e)
    return BootstrapResult(K=K, seed=seed, n_points=len(frame), powerlaw=pl, law=law,
                           failures=fails, point=point, asymptotic_se=se, errors=errors)


def identifiability(df: pd.DataFrame, *, n_col: str, loss_col: str, d_col: str | None = None,
                    c_col: str | None = None, budget_col: str | None = None,
                    fit3: ap.Approach3Result | None = None) -> dict:
    """Design diagnostics: can these runs separate the N term from the D term?

    Spans are in decades (log10 max/min).  A high |corr(log N, log D)| (IsoFLOP designs
    trade N against D) or a large condition number means A, B, alpha and beta trade off
    against each other: expect wide intervals on B and beta in particular.
    """
    frame = prepare(df, n_col=n_col, loss_col=loss_col, d_col=d_col, c_col=c_col,
                    budget_col=budget_col)
    lN, lD = np.log(frame["N"].to_numpy()), np.log(frame["D"].to_numpy())
    out = {"n_points": len(frame), "n_budgets": int(np.unique(budgets_of(frame)).size),
           "span_log10_N": float((lN.max() - lN.min()) / math.log(10)),
           "span_log10_D": float((lD.max() - lD.min()) / math.log(10)),
           "corr_logN_logD": float(np.corrcoef(lN, lD)[0, 1]) if len(frame) > 2 else float("nan")}
    if fit3 is not None:
        cov = law_covariance(fit3, lN, lD, np.log(frame["loss"].to_numpy()))
        sd = np.sqrt(np.clip(np.diag(cov), 0, None))
        with np.errstate(all="ignore"):
            corr = cov / np.outer(sd, sd)
        ev = np.linalg.eigvalsh(cov)
        out.update({"params": list(PARAMS3),
                    "param_se_gauss_newton": sd.tolist(),
                    "param_correlation": np.round(corr, 4).tolist(),
                    "condition_number": float(ev.max() / ev.min()) if ev.min() > 0 else float("inf"),
                    "condition_number_correlation": float(np.linalg.cond(corr))})
    return out


def backtest(df: pd.DataFrame, *, n_col: str, loss_col: str, d_col: str | None = None,
             c_col: str | None = None, budget_col: str | None = None, starts="small",
             approach2_kwargs: dict | None = None) -> dict:
    """Fit on all but the largest budget, predict the largest.

    Approach 3: the held-out runs' losses (mean absolute relative error, RMSE of log loss),
    and the *compute-optimal loss* it predicts at the held-out budget, ``L(N_opt(C), D_opt(C))``,
    against what that budget achieved: its parabola vertex (``loss_opt_rel_error``) and its
    best run (``loss_best_rel_error``).  This is the number a researcher extrapolating a law
    cares about: "how good will the next budget be".
    Approaches 1 and 2: N_opt at the held-out budget against that budget's own parabola
    vertex (relative error), when the held-out budget has an interior minimum.
    """
    frame = _canonical(df, n_col=n_col, loss_col=loss_col, d_col=d_col, c_col=c_col,
                       budget_col=budget_col)
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
        p_all = ap.fit_approach2(frame, **_CANON, **kw, min_budgets=1)
        tb = [p for p in p_all.budgets if p.budget == test_b or abs(math.log(p.budget / test_b)) < 1e-9]
        if tb and tb[0].included:
            target, target_loss = tb[0].n_opt, tb[0].loss_opt
    except ValueError:
        pass
    out["held_out_vertex_n_opt"] = target
    out["held_out_vertex_loss"] = target_loss
    out["held_out_best_loss"] = float(test["loss"].min())
    try:
        f3 = ap.fit_approach3(train, **_CANON, starts=starts)
        pred = f3.params.loss(test["N"].to_numpy(), test["D"].to_numpy())
        obs = test["loss"].to_numpy()
        out["approach3"] = {
            "mean_abs_rel_error": float(np.mean(np.abs(pred / obs - 1))),
            "max_abs_rel_error": float(np.max(np.abs(pred / obs - 1))),
            "rmse_log_loss": float(np.sqrt(np.mean((np.log(pred) - np.log(obs)) ** 2))),
            "n_opt_pred": float(f3.params.n_opt(test_b)),
            "loss_opt_pred": float(f3.params.loss_opt(test_b)),
            "loss_best_rel_error": float(f3.params.loss_opt(test_b) / out["held_out_best_loss"] - 1)}
        if target:
            out["approach3"]["n_opt_rel_error"] = float(f3.params.n_opt(test_b) / target - 1)
            out["approach3"]["loss_opt_rel_error"] = float(f3.params.loss_opt(test_b) / target_loss - 1)
    except ValueError as e:
        out["approach3"] = {"error": str(e)}
    for appr, fitter in ((1, ap.fit_approach1), (2, ap.fit_approach2)):
        try:
            r = fitter(train, **_CANON, **(kw if appr == 2 else {}))
            d = {"n_opt_pred": float(r.frontier.n_opt(test_b))}
            if target:
                d["n_opt_rel_error"] = float(r.frontier.n_opt(test_b) / target - 1)
            out[f"approach{appr}"] = d
        except ValueError as e:
            out[f"approach{appr}"] = {"error": str(e)}
    return out
