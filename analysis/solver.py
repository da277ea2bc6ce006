"""The multistart solver behind Approach 3: summed Huber loss on log loss, for any law.

Two traps are documented on Epoch's reconstruction of Chinchilla's runs: L-BFGS on the
*mean* Huber loss stops after two iterations (the gradient is below its tolerance from the
start), and scipy's L-BFGS-B with default tolerances stops early even on the sum.  So:

* **Damped Newton, vectorised over starts** (:func:`newton_multistart`): every start is a
  row; each keeps its own Levenberg-Marquardt damping and takes a step only when it lowers
  the objective.  Far from an optimum the curvature is the IRLS majoriser of the Huber loss
  (always positive, long safe steps); close to it a law with an exact Hessian
  (``Law.exact``) switches to it for quadratic convergence.  Float64 throughout; rows that
  converge leave the active set.  Steps are clipped to the law's bounds.
* **Variable projection of the starts** (:func:`projected_starts`): when a law is a sum of
  basis functions with positive coefficients (Chinchilla: ``A N^-alpha + B D^-beta + E``),
  the coefficients of every start are replaced by the non-negative least-squares fit of the
  linearised problem at that start's exponents (unique when the basis has full rank, and
  a deterministic function of the exponents always).  The result depends only on the
  exponents, so starts that share them (Hoffmann's 4,500 starts are 25 exponent pairs
  x 180 coefficient triples) are one and the same computation and are solved once.
* **Polish** (:func:`polish_optimum`): the best distinct optima are refined with scipy L-BFGS-B at
  tight tolerances and the law's bounds; the best of everything is returned, with a
  convergence report (gradient norm, iterations, how many starts reached the best value).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from analysis.errors import ConfigError
from analysis.laws import Law, cartesian, make_inputs

HUBER_DELTA = 1e-3
_LM_DOWN, _LM_UP = 3.0, 4.0   # Levenberg-Marquardt damping after an accepted / rejected step
_CHUNK = 256   # rows per block: keeps the (rows x points) temporaries in cache


def huber(r, delta=HUBER_DELTA):
    ar = np.abs(r)
    return np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))


def objective(law: Law, X, x, y, *, delta=HUBER_DELTA, weights=None) -> np.ndarray:
    """Summed Huber loss of ``log L_pred - y`` for each row of X (R, P)."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    with np.errstate(all="ignore"):
        h = huber(law.log_loss(X, x) - np.asarray(y, dtype=np.float64).reshape(-1, np.shape(y)[-1]), delta)
    if weights is not None:
        h = h * weights
    f = h.sum(axis=1)
    return np.where(np.isfinite(f), f, np.inf)


def _generic_fgh(law, X, x, y, W, delta, hess=True, irls=None):
    """Objective, gradient and IRLS curvature sum q J J^T, q = min(1, delta/|r|)."""
    with np.errstate(all="ignore"):
        r = law.log_loss(X, x) - y
        J = law.jac(X, x)
    psi = np.clip(r, -delta, delta)
    h = psi * (r - 0.5 * psi)
    if W is not None:
        h = h * W
        psi = psi * W
    f = h.sum(axis=1)
    g = np.einsum("rn,rnp->rp", psi, J)
    if not hess:
        return f, g, None
    q = np.minimum(1.0, delta / np.maximum(np.abs(r), 1e-300))
    if W is not None:
        q = q * W
    return f, g, np.einsum("rn,rnp,rnq->rpq", q, J, J)


def fgh(law: Law, X, x, y, W, delta, hess=True, irls=None):
    """(f, g, H) per row; rows of y and W (when 2-D) belong to rows of X."""
    fn = law.exact if law.exact is not None else (lambda *a, **k: _generic_fgh(law, *a, **k))
    R = X.shape[0]
    if irls is None:
        irls = np.ones(R, dtype=bool)
    if R <= _CHUNK:
        return fn(X, x, y, W, delta, hess=hess, irls=irls)
    P = X.shape[1]
    f, g, H = np.empty(R), np.empty((R, P)), (np.empty((R, P, P)) if hess else None)
    for i in range(0, R, _CHUNK):
        sl = slice(i, i + _CHUNK)
        yi = y[sl] if y.shape[0] > 1 else y
        Wi = None if W is None else (W[sl] if W.shape[0] > 1 else W)
        fi, gi, Hi = fn(X[sl], x, yi, Wi, delta, hess=hess, irls=irls[sl])
        f[sl], g[sl] = fi, gi
        if hess:
            H[sl] = Hi
    return f, g, H


@dataclasses.dataclass(frozen=True)
class MultiStartResult:
    """Final state of every row of the batched solver."""

    x: np.ndarray           # (R, P)
    f: np.ndarray           # (R,)
    grad_norm: np.ndarray   # (R,) norm of the gradient projected on the bounds
    iterations: np.ndarray  # (R,)
    converged: np.ndarray   # (R,) bool


def _rows(a, R, n):
    """(1, n) or (R, n) float64 view of per-point data (y or weights)."""
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(1, n) if a.ndim == 1 or a.shape[0] == 1 else a.reshape(R, n)


def _projected_norm(g, X, lo, hi):
    free = ~(((X <= lo) & (g > 0)) | ((X >= hi) & (g < 0)))
    return np.linalg.norm(np.where(free, g, 0.0), axis=1)


def newton_multistart(law: Law, X0, x, y, *, delta=HUBER_DELTA, weights=None, max_iter=100,
                      gtol=1e-8, ftol=1e-12, switch_rtol=1e-3) -> MultiStartResult:
    """Damped Newton on the summed Huber objective, vectorised over starts (rows of X0).

    ``y`` (log losses) and ``weights`` may be (n,) or (R, n): per-row data let one call
    solve many bootstrap resamples at once.  A row stops when its gradient norm is below
    ``gtol``, an accepted step changes the objective by less than ``ftol`` relative, the
    damping explodes (a flat plateau), or after ``max_iter`` iterations.
    """
    X = np.array(X0, dtype=np.float64, copy=True)
    R, P = X.shape
    n = x[law.inputs[0]].shape[1]
    Y = _rows(y, R, n)
    Wfull = None if weights is None else _rows(weights, R, n)
    lo, hi = law.lower, law.upper
    lam = np.full(R, 1e-3)
    iters = np.zeros(R, dtype=np.int64)
    done = np.zeros(R, dtype=bool)
    conv = np.zeros(R, dtype=bool)
    irls = np.ones(R, dtype=bool)
    with np.errstate(all="ignore"):
        f, g, H = fgh(law, X, x, Y, Wfull, delta, irls=irls)
    f = np.where(np.isfinite(f), f, np.inf)
    eye = np.eye(P)
    take = lambda a, idx: None if a is None else (a[idx] if a.shape[0] > 1 else a)  # noqa: E731
    for _ in range(max_iter):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        Xa, fa, ga, Ha, la = X[act], f[act], g[act], H[act], lam[act]
        dg = np.abs(np.diagonal(Ha, axis1=1, axis2=2))
        scale = np.maximum(dg, 1e-12 * (dg.max(axis=1, keepdims=True) + 1e-300))
        # make the damped matrix positive definite: shift by the most negative eigenvalue
        A = Ha + la[:, None, None] * (scale[:, :, None] * eye)
        A = np.where(np.isfinite(A), A, 0.0)
        try:
            mineig = np.linalg.eigvalsh(A)[:, 0]
        except np.linalg.LinAlgError:
            mineig = np.full(act.size, -1.0)
        shift = np.where(mineig <= 0, -mineig + 1e-8 * (dg.max(axis=1) + 1e-300), 0.0)
        A = A + shift[:, None, None] * eye
        gs = np.where(np.isfinite(ga), ga, 0.0)
        try:
            p = -np.linalg.solve(A, gs[..., None])[..., 0]
        except np.linalg.LinAlgError:
            p = -gs / (scale + la[:, None])
        p = np.where(np.isfinite(p), p, 0.0)
        Xn = np.clip(Xa + p, lo, hi)
        with np.errstate(all="ignore"):
            fn, gn, Hn = fgh(law, Xn, x, take(Y, act), take(Wfull, act), delta, irls=irls[act])
        ok = np.isfinite(fn) & (fn <= fa) & np.isfinite(gn).all(1) & np.isfinite(Hn).all((1, 2))
        iters[act] += 1
        rel = np.where(ok, (fa - fn) / np.maximum(np.abs(fa), 1e-300), np.inf)
        idx_ok = act[ok]
        X[idx_ok], f[idx_ok], g[idx_ok], H[idx_ok] = Xn[ok], fn[ok], gn[ok], Hn[ok]
        # once a row's relative progress per step falls below switch_rtol it uses the exact
        # Hessian (when the law has one) from its next step on, for quadratic convergence
        irls[idx_ok] &= rel[ok] > switch_rtol
        lam[act] = np.where(ok, np.maximum(la / _LM_DOWN, 1e-12), la * _LM_UP)
        gnorm = _projected_norm(g[act], X[act], lo, hi)
        small_g = gnorm < gtol
        # a rejected step that differs only by round-off also means there is nothing left
        tie = ~ok & np.isfinite(fn) & (fn - fa <= 1e-13 * np.abs(fa))
        small_f = (ok & (rel < ftol)) | tie
        stuck = lam[act] > 1e8
        conv[act] = small_g | small_f
        done[act] = small_g | small_f | stuck
    gnorm = _projected_norm(np.where(np.isfinite(g), g, np.inf), X, lo, hi)
    return MultiStartResult(X, f, gnorm, iters, conv)


def projected_starts(law: Law, X0: np.ndarray, x, y, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """Variable projection of the starts: distinct rows and, for each start, its row index.

    For each distinct exponent part of X0, the coefficients are the non-negative least
    squares solution of ``sum_k c_k basis_k / L_obs ~ 1`` (the first-order expansion of the
    log residual), which does not depend on the start's own coefficients.  A zero
    coefficient is raised to 1e-4 of its term's typical size so that Newton can grow it.
    """
    from scipy.optimize import nnls

    if law.basis is None:
        raise ConfigError(f"projection: law {law.name} is not a sum of basis functions; "
                          f"use projection=False")
    coef = np.array(law.coefficients)
    nl = np.setdiff1d(np.arange(X0.shape[1]), coef)
    uniq, inverse = np.unique(X0[:, nl], axis=0, return_inverse=True)
    L = np.exp(np.asarray(y, dtype=np.float64).reshape(-1))
    w = np.ones_like(L) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    sw = np.sqrt(w)
    Xu = np.empty((len(uniq), X0.shape[1]))
    Xu[:, nl] = uniq
    Xu[:, coef] = 0.0
    B = law.basis(Xu, x)                                      # (U, K, n)
    for i in range(len(uniq)):
        M = (B[i] * (sw / L)).T                               # (n, K)
        norm = np.linalg.norm(M, axis=0)
        norm = np.where(norm > 0, norm, 1.0)
        c, _ = nnls(M / norm, sw, maxiter=50 * M.shape[1])
        c = c / norm
        floor = 1e-4 * L.mean() / np.maximum(np.mean(B[i], axis=1), 1e-300)
        Xu[i, coef] = np.log(np.maximum(c, floor))
    Xu = np.clip(Xu, law.lower, law.upper)
    return Xu, inverse.reshape(-1)


def polish_optimum(law: Law, x0, x, y, delta=HUBER_DELTA, weights=None, maxiter=20000):
    """scipy L-BFGS-B from ``x0`` with tight tolerances and the law's bounds."""
    from scipy.optimize import minimize

    y = np.asarray(y, dtype=np.float64).reshape(1, -1)
    W = None if weights is None else np.asarray(weights, dtype=np.float64).reshape(1, -1)

    def fg(v):
        with np.errstate(all="ignore"):
            f, g, _ = fgh(law, v[None], x, y, W, delta, hess=False)
        if not np.isfinite(f[0]) or not np.isfinite(g).all():
            return 1e300, np.zeros_like(v)
        return float(f[0]), g[0]

    res = minimize(fg, np.clip(x0, law.lower, law.upper), jac=True, method="L-BFGS-B",
                   bounds=list(law.bounds),
                   options={"maxiter": maxiter, "maxfun": 4 * maxiter, "ftol": 1e-16,
                            "gtol": 1e-13, "maxcor": 30})
    return res.x, float(res.fun), int(res.nit)


def distinct_optima(res: MultiStartResult, k: int = 5, tol: float = 1e-4) -> np.ndarray:
    """Indices of the ``k`` best rows whose end points differ (max-abs > tol)."""
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


@dataclasses.dataclass(frozen=True)
class Convergence:
    """How the multistart optimiser ended."""

    n_starts: int
    n_at_best: int          # starts whose final objective is within rtol of the best
    rtol: float
    grad_norm: float        # at the returned optimum (projected on the bounds)
    iterations: int         # Newton iterations of the best start (+ polish iterations)
    polish_iterations: int
    median_iterations: float
    n_converged: int
    method: str
    n_distinct: int = 0     # distinct problems solved (< n_starts with variable projection)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Solution:
    x: np.ndarray
    objective: float
    convergence: Convergence
    local_optima: tuple[tuple[float, ...], ...]   # distinct optima, best first (x + f)


def initial_starts(law: Law, starts, x, y, *, delta=HUBER_DELTA, weights=None) -> np.ndarray:
    """The start rows for ``starts`` (a grid name or an array); a law with a ``seed`` law
    starts from that law's best optima on the same data, crossed with its ``seed_grid``."""
    if law.seed is None or not isinstance(starts, str):
        return law.starts(starts)
    from analysis import laws

    if starts not in (law.seed_grid or {}):
        raise ConfigError(f"starts: law {law.name} has no grid {starts!r}; use "
                          f"{', '.join(law.seed_grid or {})} or an array")
    seed = laws.get(law.seed)
    sx = {k: v for k, v in x.items() if k in seed.inputs or k[3:] in seed.inputs}
    sol = solve(seed, sx, y, starts=starts, delta=delta, weights=weights, polish=1)
    opt = np.array([o[:-1] for o in sol.local_optima[:4]])
    extra = cartesian(law.seed_grid[starts])
    X0 = np.array([np.concatenate([o, e]) for o in opt for e in extra])
    return np.clip(X0, law.lower, law.upper)


def solve(law: Law, x, y, *, starts="full", delta=HUBER_DELTA, weights=None, polish=3,
          rtol_best=1e-6, projection="auto") -> Solution:
    """Multistart fit of ``law`` to log losses ``y`` at inputs ``x`` (see :func:`make_inputs`).

    ``projection``: ``"auto"`` projects named grids of laws with a basis, ``True``/``False``
    force it.  ``polish`` distinct best optima are refined with scipy.
    """
    k_pol = int(polish)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    X0 = initial_starts(law, starts, x, y, delta=delta, weights=weights)
    use_proj = (isinstance(starts, str) and law.basis is not None) if projection == "auto" else bool(projection)
    if use_proj:
        Xs, inverse = projected_starts(law, X0, x, y, weights)
    else:
        Xs, inverse = X0, np.arange(len(X0))
    res = newton_multistart(law, Xs, x, y, delta=delta, weights=weights)
    cand = distinct_optima(res, k=max(k_pol, 1))
    if cand.size == 0:
        raise ConfigError("loss: the objective is not finite at any start; check the data and the law")
    best_x, best_f, best_i, pol_it = res.x[cand[0]], res.f[cand[0]], cand[0], 0
    for i in cand[:k_pol]:
        xp, fv, nit = polish_optimum(law, res.x[i], x, y, delta, weights)
        if fv < best_f - 1e-15 * abs(best_f):
            best_x, best_f, best_i, pol_it = xp, fv, i, nit
    with np.errstate(all="ignore"):
        _, g, _ = fgh(law, best_x[None], x, y[None], None if weights is None else
                      np.asarray(weights, np.float64)[None], delta, hess=False)
    f_all = res.f[inverse]
    n_best = int((f_all <= best_f * (1 + rtol_best) + 1e-300).sum())
    method = ("variable projection of the starts + " if use_proj else "") + \
        "numpy damped Newton over all starts + scipy L-BFGS-B polish"
    conv = Convergence(n_starts=len(X0), n_at_best=n_best, rtol=rtol_best,
                       grad_norm=float(_projected_norm(g, best_x[None], law.lower, law.upper)[0]),
                       iterations=int(res.iterations[best_i]) + pol_it, polish_iterations=pol_it,
                       median_iterations=float(np.median(res.iterations[inverse])),
                       n_converged=int(res.converged[inverse].sum()), method=method,
                       n_distinct=len(Xs))
    opt = [tuple(map(float, res.x[i])) + (float(res.f[i]),) for i in cand if i != best_i]
    opt = tuple([tuple(map(float, best_x)) + (float(best_f),)] + opt)
    return Solution(np.asarray(best_x, dtype=np.float64), float(best_f), conv, opt)


__all__ = ["HUBER_DELTA", "Convergence", "MultiStartResult", "Solution", "distinct_optima",
           "fgh", "huber", "initial_starts", "make_inputs", "newton_multistart", "objective",
           "polish_optimum", "projected_starts", "solve"]
