"""Chinchilla's three ways of finding the compute-optimal model size (Hoffmann et al. 2022).

Every approach answers the same question: for a training budget of C FLOPs, how many
parameters N and tokens D (with C = k N D, k = 6 usually) minimise the final loss?  The
answer is a pair of power laws N_opt ∝ C^a and D_opt ∝ C^b with a + b ≈ 1.

* **Approach 1** looks at the lower envelope of loss over FLOPs: a run is on the envelope
  when no cheaper run reached a lower loss.  The N and D of envelope runs are regressed on
  C in log space.
* **Approach 2** fits, per IsoFLOP budget, a parabola to loss against log N (and against
  log D), takes its vertex as the optimum of that budget, then regresses the optima on C
  (:mod:`analysis.vertices`).  A vertex outside the sampled range is an extrapolation: that
  budget is excluded with a warning.  A vertex near the edge, or few points on one side,
  earns a warning.
* **Approach 3** fits a parametric law (:mod:`analysis.laws`; Chinchilla's
  ``L = E + A/N^alpha + B/D^beta`` by default) by minimising the SUM of Huber losses
  (delta 1e-3) between ``log L`` and the law's log prediction from a grid of starts
  (:mod:`analysis.solver`), then reads the frontier off the law (closed form for
  Chinchilla: ``N_opt = G (C/6)^a``, ``G = (alpha A / (beta B))^(1/(alpha+beta))``,
  ``a = beta/(alpha+beta)``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from analysis import laws as lw
from analysis import solver
from analysis.data import budgets_of, flops_per_param_token, prepare, require_identifiable
from analysis.display import Rich, Table, fmt, interval
from analysis.errors import ConfigError
from analysis.laws import LawParams, hoffmann_grid
from analysis.solver import HUBER_DELTA, Convergence
from analysis.vertices import power_law, vertex


def _slope_se(x: np.ndarray, y: np.ndarray) -> float:
    """Ordinary least-squares standard error of the slope (nan if < 3 points)."""
    if len(x) < 3:
        return float("nan")
    slope, icpt = np.polyfit(x, y, 1)
    resid = y - (slope * x + icpt)
    s2 = resid @ resid / (len(x) - 2)
    return float(math.sqrt(s2 / ((x - x.mean()) @ (x - x.mean()))))


@dataclasses.dataclass(frozen=True)
class PowerLawFrontier:
    """N_opt = exp(n0) C^a and D_opt = exp(d0) C^b (natural-log intercepts)."""

    a: float
    b: float
    n0: float
    d0: float

    def n_opt(self, C):
        return np.exp(self.n0) * np.asarray(C, dtype=np.float64) ** self.a

    def d_opt(self, C):
        return np.exp(self.d0) * np.asarray(C, dtype=np.float64) ** self.b

    def tokens_per_param(self, C):
        return self.d_opt(C) / self.n_opt(C)


@dataclasses.dataclass(frozen=True)
class _PowerLawResult(Rich):
    frontier: PowerLawFrontier
    a_se: float
    b_se: float
    warnings: tuple[str, ...]

    @property
    def a(self) -> float:
        return self.frontier.a

    @property
    def b(self) -> float:
        return self.frontier.b

    def _frontier_table(self, title: str) -> Table:
        """a and b with OLS 95% intervals (1.96 SE), and the frontier's coefficients."""
        f = self.frontier
        rows = [(q, fmt(v), interval(v - 1.96 * se, v + 1.96 * se), fmt(se))
                for q, v, se in (("a (N_opt ∝ C^a)", f.a, self.a_se), ("b (D_opt ∝ C^b)", f.b, self.b_se))]
        rows += [("N_opt at C = 1 (e^n0)", fmt(math.exp(f.n0)) if math.isfinite(f.n0) else "-", "-", "-"),
                 ("D_opt at C = 1 (e^d0)", fmt(math.exp(f.d0)) if math.isfinite(f.d0) else "-", "-", "-")]
        return Table(title, ("quantity", "value", "95% interval (OLS)", "SE"), tuple(rows),
                     tuple(self.warnings) + ("bootstrap intervals: analysis.uncertainty.bootstrap",))


# --------------------------------------------------------------------------- Approach 1

@dataclasses.dataclass(frozen=True)
class Approach1Result(_PowerLawResult):
    """Power laws fitted to the runs on the lower envelope of loss over FLOPs."""

    envelope: pd.DataFrame = None   # rows (N, D, C, loss) on the envelope

    def tables(self) -> list[Table]:
        n = 0 if self.envelope is None else len(self.envelope)
        return [self._frontier_table(f"Approach 1: power laws through the lower envelope ({n} runs)")]


def lower_envelope(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows that reach a lower loss than every row with fewer (or equal) FLOPs."""
    f = frame.sort_values(["C", "loss"], kind="mergesort")
    best = np.minimum.accumulate(f["loss"].to_numpy())
    prev = np.concatenate([[np.inf], best[:-1]])
    return f[f["loss"].to_numpy() < prev].reset_index(drop=True)


def fit_approach1(df: pd.DataFrame, *, loss_col: str, n_col: str | None = None,
                  d_col: str | None = None, c_col: str | None = None,
                  budget_col: str | None = None, min_points: int = 3, **columns) -> Approach1Result:
    """Approach 1 on any table of (N, D or C, loss) rows.

    Rows may be final runs at several token horizons per size, or points of training
    curves (one row per evaluation step, with D the tokens seen so far): the envelope is
    the same computation either way.  ``columns``: more :func:`analysis.data.prepare` options.
    """
    warns: list[str] = []
    frame = prepare(df, n_col=n_col, loss_col=loss_col, d_col=d_col, c_col=c_col,
                    budget_col=budget_col, warnings=warns, **columns)
    require_identifiable(frame, 1, loss_col=loss_col)
    env = lower_envelope(frame)
    if len(env) < min_points or env["N"].nunique() < 2:
        raise ConfigError(f"{loss_col}: Approach 1 needs >= {min_points} envelope points from "
                          f">= 2 model sizes, found {len(env)} point(s) from {env['N'].nunique()} size(s); "
                          f"add runs at more budgets")
    lc = np.log(env["C"].to_numpy())
    ln, ld = np.log(env["N"].to_numpy()), np.log(env["D"].to_numpy())
    a, n0 = power_law(lc, ln)
    b, d0 = power_law(lc, ld)
    if abs(a + b - 1) > 0.05:
        warns.append(f"approach1: a + b = {a + b:.3f} (expected ~1 when C ~ 6ND)")
    return Approach1Result(PowerLawFrontier(a, b, n0, d0), _slope_se(lc, ln), _slope_se(lc, ld),
                           tuple(warns), env)


# --------------------------------------------------------------------------- Approach 2

@dataclasses.dataclass(frozen=True)
class BudgetParabola:
    """One IsoFLOP budget: parabolas loss(log N) and loss(log D) and their vertices."""

    budget: float
    n_points: int
    coef_n: tuple[float, float, float]      # loss = c0 x^2 + c1 x + c2, x = ln N
    coef_d: tuple[float, float, float]      # same in x = ln D
    n_opt: float
    d_opt: float
    loss_opt: float
    position_n: float                       # vertex position in [0, 1] of the sampled ln N range
    included: bool
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class Approach2Result(_PowerLawResult):
    """Power laws through the per-budget parabola minima."""

    budgets: tuple[BudgetParabola, ...] = ()

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([dataclasses.asdict(p) for p in self.budgets])

    def tables(self) -> list[Table]:
        used = sum(p.included for p in self.budgets)
        rows = tuple((fmt(p.budget), str(p.n_points), fmt(p.n_opt), fmt(p.d_opt), fmt(p.loss_opt),
                      "yes" if p.included else f"no: {p.reason}") for p in self.budgets)
        return [self._frontier_table(f"Approach 2: power laws through the IsoFLOP minima "
                                     f"({used} of {len(self.budgets)} budgets)"),
                Table("IsoFLOP parabola minima", ("budget C", "runs", "N_opt", "D_opt", "loss at minimum",
                                                   "included"), rows)]


def _budget_parabola(bud, g, min_points, edge, warns) -> BudgetParabola:
    ln, ld, y = np.log(g["N"].to_numpy()), np.log(g["D"].to_numpy()), g["loss"].to_numpy()
    vn = vertex(bud, ln, y, min_points=min_points)
    vd = vertex(bud, ld, y, min_points=min_points)
    exp = lambda v: math.exp(v) if math.isfinite(v) else float("nan")  # noqa: E731
    if math.isnan(vn.coef[0]):          # too few points: no parabola at all
        msg = f"budget {bud:.3g}: {vn.reason}; excluded"
        warns.append("approach2: " + msg)
        return BudgetParabola(float(bud), len(g), vn.coef, vd.coef, *(float("nan"),) * 4, False, msg)
    lo, hi = ln.min(), ln.max()
    pos = (vn.x - lo) / (hi - lo) if math.isfinite(vn.x) else float("nan")
    reason = ""
    if not vn.included or not vd.included:
        bad = vn if not vn.included else vd
        reason = bad.reason
        if "outside" in reason:
            reason = (f"minimum at N={exp(vn.x):.3g} outside sampled range "
                      f"[{math.exp(lo):.3g}, {math.exp(hi):.3g}] (not interior)")
        warns.append(f"approach2: budget {bud:.3g}: {reason}; excluded")
    else:
        if pos < edge or pos > 1 - edge:
            warns.append(f"approach2: budget {bud:.3g}: off-centre sampling, minimum at "
                         f"{pos:.0%} of the ln N range; sample around it")
        left, right = int((ln < vn.x).sum()), int((ln > vn.x).sum())
        if min(left, right) < 2:
            warns.append(f"approach2: budget {bud:.3g}: lopsided sampling, {left} run(s) "
                         f"below and {right} above the minimum")
    return BudgetParabola(float(bud), len(g), vn.coef, vd.coef, exp(vn.x), exp(vd.x), vn.y,
                          pos, not reason, reason)


def fit_approach2(df: pd.DataFrame, *, loss_col: str, n_col: str | None = None,
                  d_col: str | None = None, c_col: str | None = None,
                  budget_col: str | None = None, min_points: int = 4, min_budgets: int = 2,
                  edge: float = 0.2, **columns) -> Approach2Result:
    """Approach 2: parabola per budget in ln N and in ln D, then power laws over budgets.

    Budgets come from ``budget_col`` or, without one, from :func:`analysis.data.bin_budgets`
    of C.  A budget is excluded (with a warning) when it has fewer than ``min_points``
    runs, its parabola opens downwards, or its vertex lies outside the sampled range.  A
    vertex in the outer ``edge`` fraction of the range, or fewer than two runs on one side
    of it, is kept but warned about (off-centre / lopsided sampling).
    """
    warns: list[str] = []
    frame = prepare(df, n_col=n_col, loss_col=loss_col, d_col=d_col, c_col=c_col,
                    budget_col=budget_col, warnings=warns, **columns)
    require_identifiable(frame, 2, loss_col=loss_col)
    frame = frame.assign(_b=budgets_of(frame))
    out = [_budget_parabola(b, g, min_points, edge, warns) for b, g in frame.groupby("_b", sort=True)]
    good = [p for p in out if p.included]
    if len(good) < min_budgets:
        raise ConfigError(f"{budget_col or 'budget'}: Approach 2 needs >= {min_budgets} budgets "
                          f"with an interior minimum, found {len(good)}"
                          + (f" ({'; '.join(w for w in warns)})" if warns else ""))
    if len(good) == 2:
        warns.append("approach2: only 2 budgets: the power law has no residual degrees of "
                     "freedom; its uncertainty is not estimable from the fit")
    lc = np.log([p.budget for p in good])
    ln = np.log([p.n_opt for p in good])
    ld = np.log([p.d_opt for p in good])
    a, n0 = power_law(lc, ln) if len(good) > 1 else (float("nan"), float("nan"))
    b, d0 = power_law(lc, ld) if len(good) > 1 else (float("nan"), float("nan"))
    return Approach2Result(PowerLawFrontier(a, b, n0, d0), _slope_se(lc, ln), _slope_se(lc, ld),
                           tuple(warns), tuple(out))


# --------------------------------------------------------------------------- Approach 3

@dataclasses.dataclass(frozen=True)
class LawFit(Rich):
    """A fitted law: its parameters (solver coordinates ``x``), objective, convergence and
    frontier.  Named parameters (``E``, ``A``, ... for Chinchilla) are attributes."""

    law: lw.Law
    x: tuple[float, ...]
    objective: float
    convergence: Convergence
    n_points: int
    local_optima: tuple[tuple[float, ...], ...]   # distinct optima found, best first (x + f)
    warnings: tuple[str, ...] = ()
    k: float = 6.0          # FLOPs per parameter per token of the data (C = k N D)
    c_ref: float = 1e21     # a budget inside the data, where numeric exponents are read

    def __getattr__(self, name):
        if name.startswith("__") or name in ("law", "x"):   # not yet set (copy, unpickling)
            raise AttributeError(name)
        named = self.law.named(self.x)
        if name in named:
            return named[name]
        raise AttributeError(name)

    @property
    def named(self) -> dict:
        return self.law.named(self.x)

    @property
    def params(self) -> LawParams:
        """The Chinchilla-form parameters (ConfigError for other laws)."""
        if self.law.name != "chinchilla":
            raise ConfigError(f"params: the {self.law.name} law has no E/A/B/alpha/beta form")
        n = self.named
        return LawParams(n["E"], n["A"], n["B"], n["alpha"], n["beta"], self.k)

    @property
    def a(self) -> float:
        if self.law.exponents is not None:
            return float(self.law.exponents(np.array(self.x))[0])
        n1, n2 = self.n_opt([self.c_ref, 10 * self.c_ref])
        return float(math.log(n2 / n1) / math.log(10))

    @property
    def b(self) -> float:
        if self.law.exponents is not None:
            return float(self.law.exponents(np.array(self.x))[1])
        d1, d2 = self.d_opt([self.c_ref, 10 * self.c_ref])
        return float(math.log(d2 / d1) / math.log(10))

    @property
    def G(self) -> float:
        return self.params.G

    def optimal(self, C, U=None):
        return self.law.optimal(np.array(self.x), np.asarray(C, dtype=np.float64), k=self.k, U=U)

    def n_opt(self, C, U=None):
        return self.optimal(C, U)[0].reshape(np.shape(C))

    def d_opt(self, C, U=None):
        return self.optimal(C, U)[1].reshape(np.shape(C))

    def loss(self, N, D, U=None):
        kw = {"N": N, "D": D}
        if "U" in self.law.inputs:
            kw["U"] = D if U is None else U
        return self.law.predict(np.array(self.x), **kw)

    def loss_opt(self, C, U=None):
        n, d = self.optimal(np.atleast_1d(C), U)
        u = None if U is None else np.minimum(U, d)
        return self.loss(n, d, u).reshape(np.shape(C))

    def tokens_per_param(self, C, U=None):
        n, d = self.optimal(np.atleast_1d(C), U)
        return (d / n).reshape(np.shape(C))

    def tables(self) -> list[Table]:
        rows = [(k, fmt(v)) for k, v in self.named.items()]
        rows += [("a (N_opt ∝ C^a)", fmt(self.a)), ("b (D_opt ∝ C^b)", fmt(self.b))]
        if self.law.name == "chinchilla":
            rows.append(("G", fmt(self.G)))
        c = self.convergence
        rows += [("objective (summed Huber)", f"{self.objective:.6g}"), ("runs fitted", str(self.n_points)),
                 ("starts at the best objective", f"{c.n_at_best} of {c.n_starts}")]
        return [Table(f"Approach 3: {self.law.name} law {self.law.formula}".rstrip(), ("parameter", "value"),
                      tuple(rows), tuple(self.warnings) + (
                          "intervals: analysis.uncertainty.bootstrap(..., fit3=fit) and prediction_intervals",))]

    def as_dict(self) -> dict:
        out = {"law": self.law.name, **self.named, "objective": self.objective, "a": self.a,
               "b": self.b, "n_points": self.n_points, "convergence": self.convergence.as_dict()}
        if self.law.name == "chinchilla":
            out["G"] = self.G
        return out


Approach3Result = LawFit   # the name the Chinchilla-law fit has always had


def fit_approach3(df: pd.DataFrame, *, loss_col: str, n_col: str | None = None,
                  d_col: str | None = None, c_col: str | None = None,
                  budget_col: str | None = None, law="chinchilla", u_col: str | None = None,
                  delta: float = HUBER_DELTA, starts="full", polish: int = 3,
                  rtol_best: float = 1e-6, min_points: int | None = None,
                  projection="auto", **columns) -> LawFit:
    """Approach 3: multi-start fit of ``law`` (summed Huber on log loss).

    ``starts``: ``"full"`` (Hoffmann's 4,500 for Chinchilla), ``"small"`` or an (R, P) array
    of rows in the law's coordinates.  ``u_col`` (unique tokens) feeds laws that need U.
    ``polish`` distinct best optima are refined with scipy L-BFGS-B at tight tolerances.
    """
    law = lw.get(law)
    warns: list[str] = []
    if "U" in law.inputs and u_col is None:
        raise ConfigError(f"u_col: the {law.name} law needs unique tokens; name the column "
                          f"(our results table: tokens_unique)")
    frame = prepare(df, n_col=n_col, loss_col=loss_col, d_col=d_col, c_col=c_col,
                    budget_col=budget_col, u_col=u_col if "U" in law.inputs else None,
                    warnings=warns, **columns)
    P = len(law.params)
    need = P + 1 if min_points is None else min_points
    if len(frame) < need:
        raise ConfigError(f"{loss_col}: Approach 3 with the {law.name} law has {P} parameters and "
                          f"needs >= {need} runs, found {len(frame)}")
    require_identifiable(frame, 3, loss_col=loss_col)
    logU = np.log(frame["U"].to_numpy()) if "U" in frame else None
    if logU is not None and np.all(frame["U"].to_numpy() >= frame["D"].to_numpy() * (1 - 1e-9)):
        warns.append(f"approach3: no run repeats data ({u_col} == tokens everywhere): R_D* is not "
                     f"identified by these runs")
    logN, logD, logL = (np.log(frame[c].to_numpy()) for c in ("N", "D", "loss"))
    return fit_law(logN, logD, logL, law=law, logU=logU, delta=delta, starts=starts,
                   polish=polish, rtol_best=rtol_best, warnings=warns, projection=projection,
                   k=flops_per_param_token(frame), c_ref=float(frame["C"].max()))


def fit_law(logN, logD, logL, *, law=None, logU=None, delta=HUBER_DELTA, starts="full",
            polish=3, rtol_best=1e-6, weights=None, warnings=None, projection="auto",
            k: float = 6.0, c_ref: float | None = None) -> LawFit:
    """Approach 3 on log arrays (the engine behind :func:`fit_approach3`)."""
    law = lw.get(law)
    warns = list(warnings or [])
    x = lw.make_inputs(N=np.exp(logN), D=np.exp(logD), U=None if logU is None else np.exp(logU))
    sol = solver.solve(law, x, logL, starts=starts, delta=delta, weights=weights, polish=polish,
                       rtol_best=rtol_best, projection=projection)
    conv = sol.convergence
    if conv.n_at_best < 2:
        warns.append(f"approach3: only {conv.n_at_best} of {conv.n_starts} starts reached the best "
                     "objective; the optimum may not be global")
    at_lo = sol.x <= law.lower + 1e-9 * np.maximum(1.0, np.abs(law.lower))
    at_hi = sol.x >= law.upper - 1e-9 * np.maximum(1.0, np.abs(law.upper))
    for j in np.flatnonzero(at_lo | at_hi):
        warns.append(f"approach3: {law.params[j]} = {sol.x[j]:.4g} sits at its bound: the data do "
                     f"not identify that term")
    if law.name == "chinchilla" and (sol.x[3] < 1e-3 or sol.x[4] < 1e-3) and not (at_lo[3] or at_lo[4]):
        warns.append("approach3: an exponent is ~0: the data do not identify that term")
    if c_ref is None:
        c_ref = float(np.exp(np.max(logN + logD)) * k)
    return LawFit(law=law, x=tuple(map(float, sol.x)), objective=sol.objective, convergence=conv,
                  n_points=len(logN), local_optima=sol.local_optima, warnings=tuple(warns),
                  k=float(k), c_ref=float(c_ref))


def huber_objective(X, logN, logD, logL, *, delta=HUBER_DELTA, weights=None, law=None, logU=None):
    """Summed Huber objective of ``law`` (Chinchilla by default) for each row of X."""
    law = lw.get(law)
    x = lw.make_inputs(N=np.exp(logN), D=np.exp(logD), U=None if logU is None else np.exp(logU))
    return solver.objective(law, X, x, np.asarray(logL, dtype=np.float64).reshape(1, -1),
                            delta=delta, weights=weights)


__all__ = ["Approach1Result", "Approach2Result", "Approach3Result", "BudgetParabola", "LawFit",
           "LawParams", "PowerLawFrontier", "fit_approach1", "fit_approach2", "fit_approach3",
           "fit_law", "hoffmann_grid", "huber_objective", "lower_envelope", "prepare"]
