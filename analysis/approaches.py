"""Chinchilla's three ways of finding the compute-optimal model size (Hoffmann et al. 2022).

Every approach answers the same question: for a training budget of C FLOPs, how many
parameters N and tokens D (with C ~ 6 N D) minimise the final loss?  The answer is a pair
of power laws N_opt ∝ C^a and D_opt ∝ C^b with a + b ≈ 1.

* **Approach 1** looks at the lower envelope of loss over FLOPs: a run is on the envelope
  when no cheaper run reached a lower loss.  The N and D of envelope runs are regressed on
  C in log space.
* **Approach 2** fits, per IsoFLOP budget, a parabola to loss against log N (and against
  log D), takes its vertex as the optimum of that budget, then regresses the optima on C.
  A vertex outside the sampled range is an extrapolation: that budget is excluded with a
  warning.  A vertex near the edge, or few points on one side, earns a warning.
* **Approach 3** fits the parametric law ``L(N, D) = E + A/N^alpha + B/D^beta`` by
  minimising the SUM of Huber losses (delta 1e-3) between ``log L`` and
  ``LSE(a - alpha log N, b - beta log D, e)`` (a, b, e = log A, log B, log E) from
  Hoffmann's grid of 4,500 starts, then reads the frontier off the closed form:
  ``G = (alpha A / (beta B))^(1/(alpha+beta))``, ``N_opt = G (C/6)^a``,
  ``D_opt = G^-1 (C/6)^b`` with ``a = beta/(alpha+beta)``, ``b = alpha/(alpha+beta)``.

Approach 3 is where fits go wrong in practice.  Two traps are documented on Epoch's
reconstruction of Chinchilla's runs: L-BFGS on the *mean* Huber loss stops after two
iterations (the gradient is below its tolerance from the start), and scipy's L-BFGS-B
with default tolerances stops early even on the sum.  So this module runs a damped
Newton method (exact Hessian of the piecewise-quadratic Huber objective,
Levenberg-Marquardt damping, monotone acceptance) vectorised in numpy over all starts at
once, float64 throughout, and then polishes the best distinct optima with scipy at tight
tolerances.  The result carries a convergence report: gradient norm, iterations, and how
many starts reached the best objective.  No JAX: numpy over 4,500 starts x a few hundred
points is fast enough (see ``benchmarks/fit.py``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pandas as pd

from analysis.data import ConfigError, budgets_of, prepare

HUBER_DELTA = 1e-3


# --------------------------------------------------------------------------- helpers

def _powerlaw(logC: np.ndarray, logY: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and intercept of log Y = slope log C + intercept."""
    slope, intercept = np.polyfit(logC, logY, 1)
    return float(slope), float(intercept)


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


# --------------------------------------------------------------------------- Approach 1

@dataclasses.dataclass(frozen=True)
class Approach1Result:
    """Power laws fitted to the runs on the lower envelope of loss over FLOPs."""

    frontier: PowerLawFrontier
    envelope: pd.DataFrame          # rows (N, D, C, loss) on the envelope
    a_se: float
    b_se: float
    warnings: tuple[str, ...]

    @property
    def a(self) -> float:
        return self.frontier.a

    @property
    def b(self) -> float:
        return self.frontier.b


def lower_envelope(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows that reach a lower loss than every row with fewer (or equal) FLOPs."""
    f = frame.sort_values(["C", "loss"], kind="mergesort")
    best = np.minimum.accumulate(f["loss"].to_numpy())
    prev = np.concatenate([[np.inf], best[:-1]])
    return f[f["loss"].to_numpy() < prev].reset_index(drop=True)


def fit_approach1(df: pd.DataFrame, *, n_col: str, loss_col: str, d_col: str | None = None,
                  c_col: str | None = None, budget_col: str | None = None,
                  min_points: int = 3) -> Approach1Result:
    """Approach 1 on any table of (N, D or C, loss) rows.

    Rows may be final runs at several token horizons per size, or points of training
    curves (one row per evaluation step, with D the tokens seen so far): the envelope is
    the same computation either way.
    """
    warns: list[str] = []
    frame = prepare(df, n_col=n_col, loss_col=loss_col, d_col=d_col, c_col=c_col,
                    budget_col=budget_col, warnings=warns)
    env = lower_envelope(frame)
    if len(env) < min_points or env["N"].nunique() < 2:
        raise ConfigError(f"{loss_col}: Approach 1 needs >= {min_points} envelope points from "
                          f">= 2 model sizes, found {len(env)}; add runs at more budgets")
    lc = np.log(env["C"].to_numpy())
    ln, ld = np.log(env["N"].to_numpy()), np.log(env["D"].to_numpy())
    a, n0 = _powerlaw(lc, ln)
    b, d0 = _powerlaw(lc, ld)
    if abs(a + b - 1) > 0.05:
        warns.append(f"approach1: a + b = {a + b:.3f} (expected ~1 when C ~ 6ND)")
    return Approach1Result(PowerLawFrontier(a, b, n0, d0), env, _slope_se(lc, ln),
                           _slope_se(lc, ld), tuple(warns))


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
class Approach2Result:
    """Power laws through the per-budget parabola minima."""

    frontier: PowerLawFrontier
    budgets: tuple[BudgetParabola, ...]
    a_se: float
    b_se: float
    warnings: tuple[str, ...]

    @property
    def a(self) -> float:
        return self.frontier.a

    @property
    def b(self) -> float:
        return self.frontier.b

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([dataclasses.asdict(p) for p in self.budgets])


def _vertex(x: np.ndarray, y: np.ndarray):
    c = np.polyfit(x, y, 2)
    if c[0] <= 0:
        return c, float("nan"), float("nan")
    xv = -c[1] / (2 * c[0])
    return c, float(xv), float(np.polyval(c, xv))


def fit_approach2(df: pd.DataFrame, *, n_col: str, loss_col: str, d_col: str | None = None,
                  c_col: str | None = None, budget_col: str | None = None,
                  min_points: int = 4, min_budgets: int = 2,
                  edge: float = 0.2) -> Approach2Result:
    """Approach 2: parabola per budget in ln N and in ln D, then power laws over budgets.

    Budgets come from ``budget_col`` or, without one, from :func:`analysis.data.bin_budgets`
    of C.  A budget is excluded (with a warning) when it has fewer than ``min_points``
    runs, its parabola opens downwards, or its vertex lies outside the sampled range.  A
    vertex in the outer ``edge`` fraction of the range, or fewer than two runs on one side
    of it, is kept but warned about (off-centre / lopsided sampling).
    """
    warns: list[str] = []
    frame = prepare(df, n_col=n_col, loss_col=loss_col, d_col=d_col, c_col=c_col,
                    budget_col=budget_col, warnings=warns)
    frame = frame.assign(_b=budgets_of(frame))
    out: list[BudgetParabola] = []
    for bud, g in frame.groupby("_b", sort=True):
        ln, ld, y = np.log(g["N"].to_numpy()), np.log(g["D"].to_numpy()), g["loss"].to_numpy()
        nan3 = (float("nan"),) * 3
        if len(g) < min_points or np.unique(ln).size < 3:
            msg = f"budget {bud:.3g}: {len(g)} point(s) < min_points={min_points}; excluded"
            warns.append("approach2: " + msg)
            out.append(BudgetParabola(bud, len(g), nan3, nan3, *(float("nan"),) * 4, False, msg))
            continue
        cn, xn, yv = _vertex(ln, y)
        cd, xd, _ = _vertex(ld, y)
        lo, hi = ln.min(), ln.max()
        pos = (xn - lo) / (hi - lo) if np.isfinite(xn) else float("nan")
        reason = ""
        if not np.isfinite(xn) or not np.isfinite(xd):
            reason = "parabola opens downwards (no minimum)"
        elif not (lo < xn < hi) or not (ld.min() < xd < ld.max()):
            reason = (f"minimum at N={math.exp(xn):.3g} outside sampled range "
                      f"[{math.exp(lo):.3g}, {math.exp(hi):.3g}] (not interior)")
        ok = not reason
        if ok:
            if pos < edge or pos > 1 - edge:
                warns.append(f"approach2: budget {bud:.3g}: off-centre sampling, minimum at "
                             f"{pos:.0%} of the ln N range; sample around it")
            left, right = int((ln < xn).sum()), int((ln > xn).sum())
            if min(left, right) < 2:
                warns.append(f"approach2: budget {bud:.3g}: lopsided sampling, {left} run(s) "
                             f"below and {right} above the minimum")
        else:
            warns.append(f"approach2: budget {bud:.3g}: {reason}; excluded")
        out.append(BudgetParabola(float(bud), len(g), tuple(map(float, cn)),
                                  tuple(map(float, cd)),
                                  math.exp(xn) if np.isfinite(xn) else float("nan"),
                                  math.exp(xd) if np.isfinite(xd) else float("nan"),
                                  yv, pos, ok, reason))
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
    a, n0 = _powerlaw(lc, ln)
    b, d0 = _powerlaw(lc, ld)
    return Approach2Result(PowerLawFrontier(a, b, n0, d0), tuple(out), _slope_se(lc, ln),
                           _slope_se(lc, ld), tuple(warns))


# --------------------------------------------------------------------------- Approach 3

def hoffmann_grid(scale: str = "full") -> np.ndarray:
    """Hoffmann et al.'s initialisation grid as rows (a, b, e, alpha, beta).

    ``full``: alpha, beta in {0, .5, .., 2}, e in {-1, -.5, .., 1}, a, b in {0, 5, .., 25}
    (5 * 5 * 5 * 6 * 6 = 4,500 starts).  ``small``: a 3x3x3x4x4 = 432-start subgrid over
    the same box, for tests and quick looks.
    """
    if scale == "full":
        al = np.arange(0, 2.01, 0.5); e = np.arange(-1, 1.01, 0.5); ab = np.arange(0, 26, 5.0)
    elif scale == "small":
        al = np.array([0.0, 1.0, 2.0]); e = np.array([-1.0, 0.0, 1.0])
        ab = np.array([0.0, 5.0, 15.0, 25.0])
    else:
        raise ConfigError(f"grid: unknown grid {scale!r}; use 'full' or 'small'")
    rows = [(A, B, E, x, y) for x, y, E, A, B in itertools.product(al, al, e, ab, ab)]
    return np.array(rows, dtype=np.float64)


def _terms(X, x1, x2):
    """log-sum-exp of the three terms and the softmax weights of the first two."""
    z1 = X[:, 0:1] - X[:, 3:4] * x1
    z2 = X[:, 1:2] - X[:, 4:5] * x2
    z3 = X[:, 2:3]
    # |z| <= |a| + |alpha| max|x|: an O(rows) bound instead of a pass over the data
    bound = np.abs(X[:, :3]).max(initial=0) + np.abs(X[:, 3:]).max(initial=0) * max(
        np.abs(x1).max(initial=0), np.abs(x2).max(initial=0))
    if bound < 600:
        e1, e2 = np.exp(z1), np.exp(z2)   # no overflow possible: skip the max shift
        s = e1 + e2 + np.exp(z3)
        lse = np.log(s)
    else:
        m = np.maximum(np.maximum(z1, z2), z3)
        e1, e2 = np.exp(z1 - m), np.exp(z2 - m)
        s = e1 + e2 + np.exp(z3 - m)
        lse = m + np.log(s)
    inv = 1.0 / s
    return lse, e1 * inv, e2 * inv


def _huber(r, delta):
    ar = np.abs(r)
    return np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))


def huber_objective(X, logN, logD, logL, *, delta=HUBER_DELTA, weights=None):
    """Summed Huber objective for each row of X (shape (R, 5) or (5,))."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    x1, x2, y = (np.asarray(v, dtype=np.float64).reshape(1, -1) for v in (logN, logD, logL))
    h = _huber(_terms(X, x1, x2)[0] - y, delta)
    if weights is not None:
        h = h * weights
    return h.sum(axis=1)


def _rowdot(a, b):
    """Row-wise sum of a * b, broadcasting b of shape (1, n)."""
    if b.shape[0] == 1:
        return a @ b[0]
    return np.einsum("rn,rn->r", a, b)


_SIGN = np.array([1.0, 1.0, 1.0, -1.0, -1.0])
_SIGN2 = np.outer(_SIGN, _SIGN)


def _obj_grad_hess(X, x1, x2, y, W, delta, hess=True, irls=False):
    """Objective, gradient and exact Hessian (rows of X are independent problems).

    With r = LSE(z) - log L and softmax weights w, dr/dtheta = J = (w1, w2, w3, -w1 x1,
    -w2 x2) and d2r = sum_k w_k dz_k dz_k^T - J J^T.  The Huber sum has gradient
    sum psi(r) J and Hessian sum [1{|r|<=delta} - psi(r)] J J^T + psi(r) sum_k w_k dz_k dz_k^T.
    """
    lse, w1, w2 = _terms(X, x1, x2)
    r = lse - y
    ar = np.abs(r)
    inl = ar <= delta
    psi = np.clip(r, -delta, delta)
    h = psi * (r - 0.5 * psi)          # = r^2/2 inside, delta(|r| - delta/2) outside
    if W is not None:
        h *= W
        psi *= W
    f = h.sum(axis=1)
    w3 = 1.0 - w1 - w2
    w1x, w2x = w1 * x1, w2 * x2
    dot = _rowdot
    p1, p2 = psi * w1, psi * w2
    s1, s2, s3 = p1.sum(1), p2.sum(1), (psi * w3).sum(1)
    s1x, s2x = dot(p1, x1), dot(p2, x2)
    g = np.stack([s1, s2, s3, -s1x, -s2x], axis=1)
    if not hess:
        return f, g, None
    q = inl.astype(np.float64)
    if np.any(irls):   # majorising curvature min(1, delta/|r|): positive, models the |r| branches
        qi = np.minimum(1.0, delta / np.maximum(ar, 1e-300))
        q = qi if np.all(irls) else np.where(np.asarray(irls)[:, None], qi, q)
    if W is not None:
        q *= W
    q -= psi
    # H = sum_n q J J^T (15 distinct entries, as row-wise dot products: no (R, n, 5) temporaries)
    u, v, t = q * w1, q * w2, q * w3
    H = np.empty((X.shape[0], 5, 5))
    cols = (w1, w2, w3, w1x, w2x)
    for i, left in enumerate((u, v, t, u * x1, v * x2)):
        for j in range(i, 5):
            H[:, i, j] = H[:, j, i] = dot(left, cols[j])
    H *= _SIGN2
    H[:, 0, 0] += s1; H[:, 0, 3] -= s1x; H[:, 3, 0] -= s1x; H[:, 3, 3] += dot(p1 * x1, x1)
    H[:, 1, 1] += s2; H[:, 1, 4] -= s2x; H[:, 4, 1] -= s2x; H[:, 4, 4] += dot(p2 * x2, x2)
    H[:, 2, 2] += s3
    return f, g, H


_LM_DOWN, _LM_UP = 3.0, 4.0   # Levenberg-Marquardt damping after an accepted / rejected step
_CHUNK = 256   # rows per block: keeps the (rows x points) temporaries in cache


def _fgh_chunked(X, x1, x2, y, W, delta, irls):
    R = X.shape[0]
    if R <= _CHUNK:
        return _obj_grad_hess(X, x1, x2, y, W, delta, irls=irls)
    f, g, H = np.empty(R), np.empty((R, 5)), np.empty((R, 5, 5))
    for i in range(0, R, _CHUNK):
        sl = slice(i, i + _CHUNK)
        f[sl], g[sl], H[sl] = _obj_grad_hess(X[sl], x1, x2, y, None if W is None else W[sl],
                                             delta, irls=irls[sl])
    return f, g, H


def _f_chunked(X, x1, x2, y, W, delta):
    out = np.empty(X.shape[0])
    for i in range(0, X.shape[0], _CHUNK):
        sl = slice(i, i + _CHUNK)
        out[sl] = huber_objective(X[sl], x1, x2, y, delta=delta,
                                  weights=None if W is None else W[sl])
    return out


@dataclasses.dataclass(frozen=True)
class MultiStartResult:
    """Final state of every start of the batched solver."""

    x: np.ndarray           # (R, 5)
    f: np.ndarray           # (R,)
    grad_norm: np.ndarray   # (R,)
    iterations: np.ndarray  # (R,)
    converged: np.ndarray   # (R,) bool


def newton_multistart(X0, logN, logD, logL, *, delta=HUBER_DELTA, weights=None,
                      max_iter=100, gtol=1e-8, ftol=1e-12,
                      switch_rtol=1e-3) -> MultiStartResult:
    """Damped Newton on the summed Huber objective, vectorised over starts (rows of X0).

    ``weights`` may be (n,) or (R, n) (bootstrap counts, one row per start).  Each row
    keeps its own Levenberg-Marquardt damping: a step is accepted only if it lowers the
    objective; then damping shrinks, else it grows and the row retries.  A row stops when
    its gradient norm is below ``gtol`` or an accepted step changes the objective by less
    than ``ftol`` relative, or the damping explodes (a flat plateau), or after
    ``max_iter`` iterations.  Converged rows leave the active set, so the cost falls as
    starts finish.
    """
    X = np.array(X0, dtype=np.float64, copy=True)
    R = X.shape[0]
    x1, x2, y = (np.asarray(v, dtype=np.float64)[None, :] for v in (logN, logD, logL))
    Wfull = None
    if weights is not None:
        Wfull = np.asarray(weights, dtype=np.float64)
        if Wfull.ndim == 1:
            Wfull = np.broadcast_to(Wfull[None, :], (R, Wfull.size))
    lam = np.full(R, 1e-3)
    iters = np.zeros(R, dtype=np.int64)
    done = np.zeros(R, dtype=bool)
    conv = np.zeros(R, dtype=bool)
    irls = np.ones(R, dtype=bool)
    f, g, H = _fgh_chunked(X, x1, x2, y, Wfull, delta, irls)
    gnorm = np.linalg.norm(g, axis=1)
    eye = np.eye(5)
    for _ in range(max_iter):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        Xa, fa, ga, Ha, la = X[act], f[act], g[act], H[act], lam[act]
        Wa = None if Wfull is None else Wfull[act]
        dg = np.abs(np.diagonal(Ha, axis1=1, axis2=2))
        scale = np.maximum(dg, 1e-12 * (dg.max(axis=1, keepdims=True) + 1e-300))
        # make the damped matrix positive definite: shift by the most negative eigenvalue
        A = Ha + la[:, None, None] * (scale[:, :, None] * eye)
        try:
            mineig = np.linalg.eigvalsh(A)[:, 0]
        except np.linalg.LinAlgError:
            mineig = np.full(act.size, -1.0)
        shift = np.where(mineig <= 0, -mineig + 1e-8 * (dg.max(axis=1) + 1e-300), 0.0)
        A = A + shift[:, None, None] * eye
        try:
            p = -np.linalg.solve(A, ga[..., None])[..., 0]
        except np.linalg.LinAlgError:
            p = -ga / (scale + la[:, None])
        p = np.where(np.isfinite(p), p, 0.0)
        Xn = Xa + p
        fn, gn, Hn = _fgh_chunked(Xn, x1, x2, y, Wa, delta, irls[act])
        ok = np.isfinite(fn) & (fn <= fa) & np.isfinite(gn).all(1) & np.isfinite(Hn).all((1, 2))
        iters[act] += 1
        rel = np.where(ok, (fa - fn) / np.maximum(np.abs(fa), 1e-300), np.inf)
        idx_ok = act[ok]
        X[idx_ok], f[idx_ok], g[idx_ok], H[idx_ok] = Xn[ok], fn[ok], gn[ok], Hn[ok]
        # far from an optimum the IRLS curvature (always positive) gives long, safe steps;
        # once a row's relative progress per step falls below switch_rtol it switches to
        # the exact Hessian (from its next step on) for quadratic convergence.
        irls[idx_ok] &= rel[ok] > switch_rtol
        lam[act] = np.where(ok, np.maximum(la / _LM_DOWN, 1e-12), la * _LM_UP)
        gnorm[act] = np.linalg.norm(g[act], axis=1)
        small_g = gnorm[act] < gtol
        # a rejected step that differs only by round-off also means there is nothing left
        tie = ~ok & np.isfinite(fn) & (fn - fa <= 1e-13 * np.abs(fa))
        small_f = (ok & (rel < ftol)) | tie
        stuck = lam[act] > 1e8
        conv[act] = small_g | small_f
        done[act] = small_g | small_f | stuck
    return MultiStartResult(X, f, gnorm, iters, conv)


@dataclasses.dataclass(frozen=True)
class Convergence:
    """How the Approach 3 optimiser ended."""

    n_starts: int
    n_at_best: int          # starts whose final objective is within rtol of the best
    rtol: float
    grad_norm: float        # at the returned optimum
    iterations: int         # Newton iterations of the best start (+ polish iterations)
    polish_iterations: int
    median_iterations: float
    n_converged: int
    method: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Approach3Result:
    """The fitted law L(N, D) = E + A/N^alpha + B/D^beta and its frontier."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float
    convergence: Convergence
    n_points: int
    x: tuple[float, ...]            # (log A, log B, log E, alpha, beta)
    local_optima: tuple[tuple[float, ...], ...]   # distinct optima found, best first (x + f)
    warnings: tuple[str, ...] = ()

    @property
    def params(self) -> "LawParams":
        return LawParams(self.E, self.A, self.B, self.alpha, self.beta)

    def __getattr__(self, name):  # frontier helpers: a, b, G, n_opt, d_opt, ...
        if name in ("a", "b", "G", "n_opt", "d_opt", "loss", "loss_opt", "tokens_per_param"):
            return getattr(self.params, name)
        raise AttributeError(name)

    def as_dict(self) -> dict:
        p = self.params
        return {"E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta,
                "objective": self.objective, "a": p.a, "b": p.b, "G": p.G,
                "n_points": self.n_points, "convergence": self.convergence.as_dict()}


@dataclasses.dataclass(frozen=True)
class LawParams:
    """E + A/N^alpha + B/D^beta and its compute-optimal frontier under C = 6 N D."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    @property
    def a(self) -> float:
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    def n_opt(self, C):
        return self.G * (np.asarray(C, dtype=np.float64) / 6.0) ** self.a

    def d_opt(self, C):
        return (np.asarray(C, dtype=np.float64) / 6.0) ** self.b / self.G

    def loss(self, N, D):
        N, D = np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64)
        return self.E + self.A / N ** self.alpha + self.B / D ** self.beta

    def loss_opt(self, C):
        return self.loss(self.n_opt(C), self.d_opt(C))

    def tokens_per_param(self, C):
        return self.d_opt(C) / self.n_opt(C)


def _scipy_polish(x0, logN, logD, logL, delta, weights=None, maxiter=20000):
    from scipy.optimize import minimize

    x1, x2, y = logN[None], logD[None], logL[None]
    W = None if weights is None else np.asarray(weights, dtype=np.float64)[None]

    def fg(x):
        f, g, _ = _obj_grad_hess(x[None], x1, x2, y, W, delta, hess=False)
        return float(f[0]), g[0]

    res = minimize(fg, x0, jac=True, method="L-BFGS-B",
                   options={"maxiter": maxiter, "maxfun": 4 * maxiter, "ftol": 1e-16,
                            "gtol": 1e-13, "maxcor": 30})
    return res.x, float(res.fun), int(res.nit)


def distinct_optima(res: MultiStartResult, k: int = 5, tol: float = 1e-4) -> np.ndarray:
    """Indices of the ``k`` best starts whose end points differ (max-abs > tol)."""
    order = np.argsort(np.where(np.isfinite(res.f), res.f, np.inf))
    keep: list[int] = []
    for i in order:
        if not np.isfinite(res.f[i]):
            break
        if all(np.abs(res.x[i] - res.x[j]).max() > tol for j in keep):
            keep.append(int(i))
        if len(keep) >= k:
            break
    return np.array(keep, dtype=np.int64)


def fit_approach3(df: pd.DataFrame, *, n_col: str, loss_col: str, d_col: str | None = None,
                  c_col: str | None = None, budget_col: str | None = None,
                  delta: float = HUBER_DELTA, starts="full", polish: int = 3,
                  rtol_best: float = 1e-6, min_points: int = 6) -> Approach3Result:
    """Approach 3: multi-start fit of E + A/N^alpha + B/D^beta (summed Huber on log loss).

    ``starts``: ``"full"`` (Hoffmann's 4,500), ``"small"`` (432) or an (R, 5) array of
    (log A, log B, log E, alpha, beta) rows.  ``polish`` distinct best optima are refined
    with scipy L-BFGS-B at tight tolerances; the best of everything is returned.
    """
    warns: list[str] = []
    frame = prepare(df, n_col=n_col, loss_col=loss_col, d_col=d_col, c_col=c_col,
                    budget_col=budget_col, warnings=warns)
    if len(frame) < min_points:
        raise ConfigError(f"{loss_col}: Approach 3 has 5 parameters and needs >= {min_points} "
                          f"runs, found {len(frame)}")
    logN, logD, logL = (np.log(frame[c].to_numpy()) for c in ("N", "D", "loss"))
    return fit_law(logN, logD, logL, delta=delta, starts=starts, polish=polish,
                   rtol_best=rtol_best, warnings=warns)


def fit_law(logN, logD, logL, *, delta=HUBER_DELTA, starts="full", polish=3, rtol_best=1e-6,
            weights=None, warnings=None) -> Approach3Result:
    """Approach 3 on log arrays (the engine behind :func:`fit_approach3`)."""
    warns = list(warnings or [])
    X0 = hoffmann_grid(starts) if isinstance(starts, str) else np.asarray(starts, np.float64)
    res = newton_multistart(X0, logN, logD, logL, delta=delta, weights=weights)
    cand = distinct_optima(res, k=max(polish, 1))
    if cand.size == 0:
        raise ConfigError("loss: Approach 3 objective is not finite at any start; check the data")
    best_x, best_f, best_i, pol_it = res.x[cand[0]], res.f[cand[0]], cand[0], 0
    for i in cand[:polish]:
        x, fv, nit = _scipy_polish(res.x[i], logN, logD, logL, delta, weights)
        if fv < best_f - 1e-15 * abs(best_f):
            best_x, best_f, best_i, pol_it = x, fv, i, nit
    x1, x2, y = logN[None], logD[None], logL[None]
    W = None if weights is None else np.asarray(weights, np.float64)[None]
    _, g, _ = _obj_grad_hess(best_x[None], x1, x2, y, W, delta, hess=False)
    n_best = int((res.f <= best_f * (1 + rtol_best) + 1e-300).sum())
    conv = Convergence(n_starts=len(X0), n_at_best=n_best, rtol=rtol_best,
                       grad_norm=float(np.linalg.norm(g)),
                       iterations=int(res.iterations[best_i]) + pol_it,
                       polish_iterations=pol_it,
                       median_iterations=float(np.median(res.iterations)),
                       n_converged=int(res.converged.sum()),
                       method="numpy damped Newton over all starts + scipy L-BFGS-B polish")
    if n_best < 2:
        warns.append(f"approach3: only {n_best} of {len(X0)} starts reached the best objective; "
                     "the optimum may not be global")
    if best_x[3] < 1e-3 or best_x[4] < 1e-3:
        warns.append("approach3: an exponent is ~0: the data do not identify that term")
    opt = [tuple(map(float, res.x[i])) + (float(res.f[i]),) for i in cand]
    la, lb, le, al, be = map(float, best_x)
    return Approach3Result(E=math.exp(le), A=math.exp(la), B=math.exp(lb), alpha=al, beta=be,
                           objective=float(best_f), convergence=conv, n_points=len(logN),
                           x=(la, lb, le, al, be), local_optima=tuple(opt),
                           warnings=tuple(warns))
