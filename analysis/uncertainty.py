"""How much to believe a fit: bootstrap intervals, prediction intervals, identifiability, backtest.

Chinchilla's Approach 3 interval for a, [0.454, 0.455], is far narrower than ~400 noisy
runs can support (Besiroglu et al. 2024 found about ±0.02).  This module makes the
honest version cheap:

* :func:`bootstrap` resamples *runs* with replacement (within each budget when budgets
  are known, so every IsoFLOP curve keeps its points) K times with a fixed seed, refits
  every approach on each resample and keeps the samples.  Approach 3 resamples are solved
  all at once: a resample is a row of multiplicity weights, so the batched Newton solver of
  :mod:`analysis.solver` runs (resample x start) rows in one go, each resample from a
  few starts (the full-data optima plus random grid points).  Any law works.
* :class:`BootstrapResult` turns samples into intervals for a, b, N_opt(C), D_opt(C),
  tokens per parameter and (Approach 3) the predicted loss at any C, and warns when an
  interval is implausibly narrow compared with the asymptotic standard error the same
  data imply.
* :func:`prediction_intervals` is the residual bootstrap: refits on the fitted curve plus
  resampled residuals give the uncertainty of N_opt and of the compute-optimal loss at a
  target C, and adding one more resampled residual gives the interval a single run trained
  at that allocation would fall in (parameter uncertainty *and* run-to-run noise).
* :mod:`analysis.diagnostics` (identifiability, backtest) is re-exported here.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from analysis import approaches as ap
from analysis import laws as lw
from analysis import solver
from analysis.data import budgets_of, flops_per_param_token
from analysis.diagnostics import (backtest, canon, canonical, identifiability, inputs_of,  # noqa: F401
                                  law_covariance, law_se_a)
from analysis.display import Rich, Table, fmt, interval
from analysis.errors import ConfigError

PARAMS3 = lw.CHINCHILLA.params


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


def _frame_from_counts(frame: pd.DataFrame, counts: np.ndarray) -> pd.DataFrame:
    return frame.iloc[np.repeat(np.arange(len(frame)), counts.astype(int))].reset_index(drop=True)


def law_samples(model: lw.Law, S: np.ndarray, quantity: str, C=None, k: float = 6.0,
                c_ref: float = 1e21) -> np.ndarray:
    """``quantity`` for every row of parameter samples S (K, P) of ``model``: a named
    parameter, ``a``/``b``/``G`` or, at budget C, ``n_opt``/``d_opt``/``tokens_per_param``/``loss_opt``.
    Laws without closed-form exponents get a and b as the local slopes of N_opt and D_opt
    between ``c_ref`` and 10 ``c_ref``."""
    S = np.asarray(S, dtype=np.float64)
    with np.errstate(all="ignore"):
        if model is lw.CHINCHILLA:   # closed forms, vectorised over samples
            la, lb, le, al, be = S.T
            A, B, E = np.exp(la), np.exp(lb), np.exp(le)
            G = (al * A / (be * B)) ** (1.0 / (al + be))
            a, b = be / (al + be), al / (al + be)
            direct = {"E": E, "A": A, "B": B, "alpha": al, "beta": be, "G": G, "a": a, "b": b}
            if quantity in direct:
                return direct[quantity]
            if C is None:
                raise ConfigError(f"C: {quantity} needs a compute budget C")
            n, d = G * (C / k) ** a, (C / k) ** b / G
            table = {"n_opt": n, "d_opt": d, "tokens_per_param": d / n,
                     "loss_opt": E + A / n ** al + B / d ** be}
            if quantity not in table:
                raise ConfigError(f"quantity: unknown {quantity!r}")
            return table[quantity]
        out = np.full(len(S), np.nan)
        for i, t in enumerate(S):
            if not np.isfinite(t).all():
                continue
            named = model.named(t)
            if quantity in named:
                out[i] = named[quantity]
                continue
            if quantity in ("a", "b"):
                if model.exponents is not None:
                    out[i] = model.exponents(t)[0 if quantity == "a" else 1]
                else:
                    nd = model.optimal(t, np.array([c_ref, 10 * c_ref]), k=k)[0 if quantity == "a" else 1]
                    out[i] = math.log(nd[1] / nd[0]) / math.log(10)
                continue
            if C is None:
                raise ConfigError(f"C: {quantity} needs a compute budget C for the {model.name} law")
            n, d = (v[0] for v in model.optimal(t, np.array([C], dtype=np.float64), k=k))
            kw = {"N": n, "D": d, **({"U": d} if "U" in model.inputs else {})}
            table = {"n_opt": n, "d_opt": d, "tokens_per_param": d / n}
            if quantity == "loss_opt":
                out[i] = float(model.predict(t, **kw))
            elif quantity in table:
                out[i] = table[quantity]
            else:
                raise ConfigError(f"quantity: unknown {quantity!r} for the {model.name} law")
        return out


def percentile_interval(s: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    s = np.asarray(s, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return (float("nan"), float("nan"))
    q = (1 - level) / 2
    return (float(np.quantile(s, q)), float(np.quantile(s, 1 - q)))


@dataclasses.dataclass(frozen=True)
class BootstrapResult(Rich):
    """Bootstrap samples of every approach (NaN rows where a resample could not be fitted).

    ``powerlaw[k]`` has columns a, b, n0, d0 (Approaches 1 and 2: N_opt = e^n0 C^a);
    ``law`` has one column per parameter of ``model`` (Approach 3; Chinchilla: log A,
    log B, log E, alpha, beta).
    """

    K: int
    seed: int
    n_points: int
    powerlaw: dict            # {1: (K, 4) array, 2: (K, 4) array}
    law: np.ndarray | None    # (K, P) or None
    failures: dict            # approach -> number of failed resamples
    point: dict               # approach -> point estimate used for the narrow-interval check
    asymptotic_se: dict       # approach -> asymptotic SE of a (nan when unknown)
    errors: dict              # approach -> error message if the approach failed altogether
    model: lw.Law = lw.CHINCHILLA
    k: float = 6.0
    c_ref: float = 1e21       # where laws without closed-form exponents read a and b

    def samples(self, approach: int, quantity: str, C=None) -> np.ndarray:
        """Samples of ``quantity`` (a, b, n_opt, d_opt, tokens_per_param, loss_opt, or a
        parameter of the law) for ``approach`` (1, 2 or 3); C for the C-dependent ones."""
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
        return law_samples(self.model, self.law, quantity, C, self.k, self.c_ref)

    def interval(self, approach: int, quantity: str, C=None, level: float = 0.95):
        """Percentile interval (lo, hi) over the successful resamples."""
        return percentile_interval(self.samples(approach, quantity, C), level)

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
        for appr in self._approaches():
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

    def tables(self, level: float = 0.95) -> list[Table]:
        """Per approach: median, ``level`` percentile interval and SE of a, b and (Approach 3)
        every named parameter of the law."""
        out = []
        for appr in self._approaches():
            qs = ["a", "b"]
            if appr == 3:
                qs += list(self.model.named(np.nan_to_num(self.law[0]))) + (["G"] if self.model is lw.CHINCHILLA else [])
            rows = []
            for q in qs:
                s = self.samples(appr, q)
                s = s[np.isfinite(s)]
                rows.append((q, fmt(np.median(s)) if s.size else "-", interval(*percentile_interval(s, level)),
                             fmt(s.std(ddof=1)) if s.size > 1 else "-"))
            what = {1: "lower envelope", 2: "IsoFLOP minima", 3: f"{self.model.name} law"}[appr]
            out.append(Table(f"Approach {appr} ({what}): bootstrap over runs, K={self.K} (seed {self.seed}), "
                             f"{self.failures.get(appr, 0)} failed resamples",
                             ("quantity", "median", f"{int(100 * level)}% interval", "SE"), tuple(rows),
                             tuple(self.narrow_warnings()) if appr == self._approaches()[-1] else ()))
        for appr, err in sorted(self.errors.items()):
            out.append(Table(f"Approach {appr}: not bootstrapped", ("error",), ((err,),)))
        return out

    def _approaches(self) -> list[int]:
        return sorted(set(self.powerlaw) | ({3} if self.law is not None else set()))

    def summary(self, Cs=(5.76e23,)) -> dict:
        """Intervals of every quantity per approach, at the budgets ``Cs``."""
        out: dict = {}
        for appr in self._approaches():
            d: dict = {"failures": int(self.failures.get(appr, 0)), "K": self.K}
            for q in ("a", "b"):
                d[q] = list(self.interval(appr, q))
            if appr == 3:
                named = self.model.named(np.nan_to_num(self.law[0]))
                for q in list(named) + (["G"] if self.model is lw.CHINCHILLA else []):
                    d[q] = list(self.interval(appr, q))
            at = {}
            for C in Cs:
                qs = ["n_opt", "d_opt", "tokens_per_param"] + (["loss_opt"] if appr == 3 else [])
                at[f"{C:.4g}"] = {q: list(self.interval(appr, q, C)) for q in qs}
            d["at_C"] = at
            out[f"approach{appr}"] = d
        return out


def law_starts(fit3: ap.LawFit, grid_starts: int, seed: int) -> np.ndarray:
    """Starts for refits: the fit's distinct optima plus ``grid_starts`` random grid rows."""
    starts = np.array([o[:-1] for o in fit3.local_optima[:4]])
    model = fit3.law
    if grid_starts and "full" in model.grid:
        grid = model.starts("full")
        rng = np.random.default_rng(seed + 1)
        pick = grid[rng.choice(len(grid), min(grid_starts, len(grid)), replace=False)]
        starts = np.concatenate([starts, pick])
    return starts


def refit_rows(fit3: ap.LawFit, x, Y, W, starts, delta) -> np.ndarray:
    """Best row per resample: Y (K, n) log losses, W (K, n) weights (either may be (1, n))."""
    K = max(Y.shape[0], 1 if W is None else W.shape[0])
    S = len(starts)
    X0 = np.tile(starts, (K, 1))
    rep = lambda a: None if a is None else (np.repeat(a, S, axis=0) if a.shape[0] > 1 else a)  # noqa: E731
    res = solver.newton_multistart(fit3.law, X0, x, rep(Y), delta=delta, weights=rep(W))
    f = np.where(np.isfinite(res.f), res.f, np.inf).reshape(K, S)
    best = f.argmin(axis=1)
    out = res.x.reshape(K, S, -1)[np.arange(K), best]
    out[~np.isfinite(f.min(axis=1))] = np.nan
    return out


def bootstrap(df: pd.DataFrame, *, loss_col: str, n_col: str | None = None,
              d_col: str | None = None, c_col: str | None = None, budget_col: str | None = None,
              K: int = 200, seed: int = 0, approaches=(1, 2, 3), fit3: ap.LawFit | None = None,
              law=None, grid_starts: int = 4, stratify: bool = True,
              delta: float = solver.HUBER_DELTA, approach2_kwargs: dict | None = None,
              **columns) -> BootstrapResult:
    """Seeded bootstrap over runs for the requested approaches.

    ``fit3`` (the full-data Approach 3 fit, any law) supplies the law and the starts of
    every resample: its distinct local optima plus ``grid_starts`` random points of the
    law's grid; without it ``law`` (default Chinchilla) is fitted on the small grid first.
    """
    if K < 2:
        raise ConfigError(f"bootstrap: K={K}; use K >= 2 resamples (e.g. 200)")
    frame = canonical(df, n_col=n_col, loss_col=loss_col, d_col=d_col, c_col=c_col,
                      budget_col=budget_col, **columns)
    cols = canon(frame)
    groups = budgets_of(frame) if stratify else np.zeros(len(frame))
    counts = resample_counts(groups, K, seed)
    pl, fails, point, se, errors = {}, {}, {}, {}, {}
    for appr in (1, 2):
        if appr not in approaches:
            continue
        fitter = ap.fit_approach1 if appr == 1 else ap.fit_approach2
        kw = dict(approach2_kwargs or {}) if appr == 2 else {}
        c12 = {k: v for k, v in cols.items() if k != "u_col"}
        try:
            full = fitter(frame, **c12, **kw)
        except ValueError as e:
            errors[appr] = str(e)
            continue
        point[appr], se[appr] = full.a, full.a_se
        out = np.full((K, 4), np.nan)
        nf = 0
        for k in range(K):
            try:
                r = fitter(_frame_from_counts(frame, counts[k]), **c12, **kw)
                out[k] = (r.a, r.b, r.frontier.n0, r.frontier.d0)
            except ValueError:
                nf += 1
        pl[appr], fails[appr] = out, nf
    samples, model = None, lw.get(law if fit3 is None else fit3.law)
    if 3 in approaches:
        try:
            if fit3 is None:
                fit3 = ap.fit_approach3(frame, **cols, law=model, starts="small", delta=delta)
            starts = law_starts(fit3, grid_starts, seed)
            y = np.log(frame["loss"].to_numpy())[None]
            samples = refit_rows(fit3, inputs_of(frame), y, counts, starts, delta)
            fails[3] = int((~np.isfinite(samples).all(axis=1)).sum())
            point[3] = fit3.a
            se[3] = law_se_a(fit3, frame)
        except ValueError as e:
            errors[3] = str(e)
    return BootstrapResult(K=K, seed=seed, n_points=len(frame), powerlaw=pl, law=samples,
                           failures=fails, point=point, asymptotic_se=se, errors=errors,
                           model=model, k=flops_per_param_token(frame),
                           c_ref=fit3.c_ref if fit3 is not None else float(frame["C"].max()))


class Predictions(dict, Rich):
    """What :func:`prediction_intervals` returns: its dictionary (JSON-ready, unchanged),
    rendered in Jupyter as one row per budget with the intervals."""

    def tables(self) -> list[Table]:
        lv = int(100 * self.get("level", 0.95))
        rows = tuple((C, fmt(r["n_opt"]), interval(*r["n_opt_ci"]), interval(*r["d_opt_ci"]), fmt(r["loss_opt"]),
                      interval(*r["loss_opt_ci"]), interval(*r["loss_opt_pi"])) for C, r in self["at_C"].items())
        return [Table(f"Predictions of the fitted law at new budgets (residual bootstrap, K={self['K']}, "
                      f"{self['failures']} failed refits; residual SD {fmt(self['residual_sd'])} in log loss)",
                      ("budget C", "N_opt", f"N_opt {lv}%", f"D_opt {lv}%", "compute-optimal loss",
                       f"loss {lv}% (law)", f"loss {lv}% (one run)"), rows,
                      ("'one run': where a single run trained at that allocation would land, run-to-run noise included",))]


def prediction_intervals(df: pd.DataFrame, fit3: ap.LawFit, Cs, *, loss_col: str,
                         n_col: str | None = None, d_col: str | None = None,
                         c_col: str | None = None, budget_col: str | None = None, K: int = 200,
                         seed: int = 0, level: float = 0.95, grid_starts: int = 2,
                         delta: float = solver.HUBER_DELTA, **columns) -> dict:
    """Residual bootstrap of ``fit3`` at target budgets ``Cs``.

    Residuals ``r = log L_obs - log L_fit`` are resampled with replacement onto the fitted
    curve and the law refitted, K times (seeded).  Per budget: ``n_opt``/``d_opt``/
    ``loss_opt`` intervals from the refits (parameter uncertainty under the observed
    noise) and ``loss_opt_pi``, the prediction interval of one run's measured loss at that
    allocation (each refit's prediction times exp of one more resampled residual).
    """
    frame = canonical(df, n_col=n_col, loss_col=loss_col, d_col=d_col, c_col=c_col,
                      budget_col=budget_col, **columns)
    x = inputs_of(frame)
    y = np.log(frame["loss"].to_numpy())
    theta = np.array(fit3.x)
    fitted = fit3.law.log_loss(theta[None], x)[0]
    resid = y - fitted
    rng = np.random.default_rng(seed)
    Y = fitted[None] + resid[rng.integers(0, len(resid), size=(K, len(resid)))]
    samples = refit_rows(fit3, x, Y, None, law_starts(fit3, grid_starts, seed), delta)
    noise = resid[rng.integers(0, len(resid), size=K)]
    out = Predictions({"K": K, "level": level, "residual_sd": float(resid.std(ddof=min(len(resid) - 1, len(fit3.x)))),
           "failures": int((~np.isfinite(samples).all(axis=1)).sum()), "at_C": {}})
    for C in np.atleast_1d(Cs):
        C = float(C)
        lo = law_samples(fit3.law, samples, "loss_opt", C, fit3.k)
        out["at_C"][f"{C:.4g}"] = {
            "n_opt": float(fit3.n_opt(C)), "loss_opt": float(fit3.loss_opt(C)),
            "n_opt_ci": list(percentile_interval(law_samples(fit3.law, samples, "n_opt", C, fit3.k), level)),
            "d_opt_ci": list(percentile_interval(law_samples(fit3.law, samples, "d_opt", C, fit3.k), level)),
            "loss_opt_ci": list(percentile_interval(lo, level)),
            "loss_opt_pi": list(percentile_interval(lo * np.exp(noise), level))}
    return out
