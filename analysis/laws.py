"""Parametric loss laws as small objects the whole fitting machinery shares.

A :class:`Law` is a prediction function of the inputs (``N`` parameters, ``D`` tokens, and
for some laws ``U`` unique tokens) with named parameters, their bounds, a start grid and,
where one exists, a closed-form compute-optimal frontier.  Fitting minimises the summed
Huber loss between ``log L_pred`` and ``log L_obs`` (:mod:`analysis.solver`), so a law is
written as a log prediction.  The multistart solver, bootstrap, backtest, report and
``scaling fit --law`` take any law; three are built in:

* ``chinchilla`` (Hoffmann et al. 2022): ``L = E + A/N^alpha + B/D^beta`` in the
  coordinates (log A, log B, log E, alpha, beta), ``log L = LSE(a - alpha log N,
  b - beta log D, e)``, with Hoffmann's 4,500-start grid;
* ``kaplan`` (Kaplan et al. 2020, eq. 1.5): ``L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D``
  in (log N_c, log D_c, alpha_N, alpha_D);
* ``data_constrained`` (Muennighoff et al. 2023), in :mod:`analysis.data_constrained`.

A user-defined law needs only a loss function written with numpy broadcasting (each
parameter arrives as a column of shape (R, 1), one row per start; each input as a row of
shape (1, n)), its parameter names, bounds and start grid: :meth:`Law.from_loss`.

Every frontier here is the minimiser of ``L(N, C / (k N))`` over N at fixed compute C,
where ``k`` is the FLOPs per parameter per token of the table's convention (6 for C = 6ND).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Callable, Mapping

import numpy as np

from analysis.display import Rich, Table, fmt
from analysis.errors import ConfigError

Inputs = Mapping[str, np.ndarray]   # "N", "D", "U" and their logs "logN", ..., each (1, n)


@dataclasses.dataclass(frozen=True)
class LawParams(Rich):
    """Chinchilla's E + A/N^alpha + B/D^beta and its frontier under C = k N D (k = 6)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    k: float = 6.0

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
        return self.G * (np.asarray(C, dtype=np.float64) / self.k) ** self.a

    def d_opt(self, C):
        return (np.asarray(C, dtype=np.float64) / self.k) ** self.b / self.G

    def loss(self, N, D):
        N, D = np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64)
        return self.E + self.A / N ** self.alpha + self.B / D ** self.beta

    def loss_opt(self, C):
        return self.loss(self.n_opt(C), self.d_opt(C))

    def tokens_per_param(self, C):
        return self.d_opt(C) / self.n_opt(C)

    def tables(self) -> list[Table]:
        rows = tuple((k, fmt(getattr(self, k))) for k in ("E", "A", "B", "alpha", "beta", "a", "b", "G"))
        return [Table(f"L = E + A/N^alpha + B/D^beta (C = {fmt(self.k)} N D)", ("parameter", "value"), rows)]


@dataclasses.dataclass(frozen=True, eq=False)
class Law(Rich):
    """A loss law in solver coordinates ``params`` (one row of X per start).

    ``log_loss(X, inputs) -> (R, n)`` is the law's log prediction.  Optional hooks make a
    law faster or more exact, never different: ``jacobian`` (R, n, P) (else central finite
    differences), ``exact`` (objective, gradient and exact Hessian of the summed Huber
    loss), ``basis`` + ``coefficients`` (the law is ``sum_k exp(X[:, coefficients[k]]) *
    basis_k``, which lets the solver eliminate the coefficients: variable projection),
    ``frontier`` (closed-form N_opt(C)), ``exponents`` ((a, b) of N_opt ∝ C^a, D_opt ∝ C^b),
    ``readable`` (named values of one row, e.g. E, A, B instead of their logs).
    ``grid`` maps a scale name ("full", "small") to one tuple of values per parameter; the
    start grid is their Cartesian product.  ``seed`` names another law whose fitted optima,
    crossed with ``seed_grid`` values of the remaining parameters, are the starts instead.
    """

    name: str
    params: tuple[str, ...]
    bounds: tuple[tuple[float, float], ...]
    grid: Mapping[str, tuple[tuple[float, ...], ...]]
    log_loss: Callable
    inputs: tuple[str, ...] = ("N", "D")
    formula: str = ""
    jacobian: Callable | None = None
    exact: Callable | None = None
    basis: Callable | None = None
    coefficients: tuple[int, ...] = ()
    frontier: Callable | None = None
    exponents: Callable | None = None
    readable: Callable | None = None
    seed: str | None = None
    seed_grid: Mapping[str, tuple[tuple[float, ...], ...]] | None = None

    def __post_init__(self):
        P = len(self.params)
        if len(self.bounds) != P:
            raise ConfigError(f"law {self.name}: bounds has {len(self.bounds)} pairs for {P} params")
        for p, (lo, hi) in zip(self.params, self.bounds):
            if not lo <= hi:
                raise ConfigError(f"law {self.name}: bounds of {p} ({lo}, {hi}) are not lo <= hi")
        for scale, axes in dict(self.grid).items():
            if self.seed is None and len(axes) != P:
                raise ConfigError(f"law {self.name}: grid {scale!r} has {len(axes)} axes for {P} params")

    @classmethod
    def from_loss(cls, name: str, loss: Callable, *, params, bounds, grid,
                  inputs=("N", "D"), formula: str = "") -> "Law":
        """A user-defined law from ``loss(p, x) -> L``: ``p[name]`` is an (R, 1) column per
        parameter, ``x["N"]``/``x["D"]``/``x["U"]`` an (1, n) row per input; returns (R, n)
        predicted losses (non-positive predictions make a start's objective infinite)."""
        params = tuple(params)
        bounds = tuple(bounds.get(p) for p in params) if isinstance(bounds, Mapping) else tuple(bounds)
        if isinstance(grid, Mapping) and not set(grid) <= {"full", "small"}:
            grid = {"full": tuple(tuple(grid[p]) for p in params)}
        elif not isinstance(grid, Mapping):
            grid = {"full": tuple(tuple(a) for a in grid)}
        grid = {k: v for k, v in dict(grid).items()}
        grid.setdefault("small", grid["full"])

        def log_loss(X, x):
            p = {n: X[:, i:i + 1] for i, n in enumerate(params)}
            with np.errstate(all="ignore"):
                L = np.asarray(loss(p, x), dtype=np.float64)
                return np.where(L > 0, np.log(np.where(L > 0, L, 1.0)), np.nan)

        return cls(name=name, params=params, bounds=bounds, grid=grid, log_loss=log_loss,
                   inputs=tuple(inputs), formula=formula)

    def tables(self) -> list[Table]:
        rows = tuple((p, fmt(lo), fmt(hi)) for p, (lo, hi) in zip(self.params, self.bounds))
        return [Table(f"law {self.name}: {self.formula}".rstrip(": "), ("parameter (solver coordinate)", "lower bound",
                                                                        "upper bound"), rows,
                      (f"inputs: {', '.join(self.inputs)}; start grids: {', '.join(self.grid)}",))]

    # ------------------------------------------------------------------ starts and bounds

    def starts(self, scale="full") -> np.ndarray:
        """The start grid (R, P) for ``scale``, or ``scale`` itself when it is an array;
        ConfigError when a start violates the bounds."""
        if isinstance(scale, str):
            if scale not in self.grid:
                raise ConfigError(f"starts: law {self.name} has no grid {scale!r}; use one of "
                                  f"{', '.join(self.grid)} or pass an (R, {len(self.params)}) array")
            X0 = cartesian(self.grid[scale])
        else:
            X0 = np.atleast_2d(np.asarray(scale, dtype=np.float64))
        self.check(X0, "starts")
        return X0

    def check(self, X0: np.ndarray, what: str = "starts") -> None:
        P = len(self.params)
        if X0.ndim != 2 or X0.shape[1] != P:
            raise ConfigError(f"{what}: law {self.name} needs rows of {P} values "
                              f"({', '.join(self.params)}), got shape {X0.shape}")
        lo, hi = self.lower, self.upper
        bad = ~np.isfinite(X0) | (X0 < lo) | (X0 > hi)
        if bad.any():
            j = int(np.flatnonzero(bad.any(axis=0))[0])
            raise ConfigError(f"{what}: {int(bad[:, j].sum())} start(s) put {self.params[j]} outside "
                              f"the law's bounds [{lo[j]:g}, {hi[j]:g}]; fix the grid or the bounds")

    @property
    def lower(self) -> np.ndarray:
        return np.array([b[0] for b in self.bounds], dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        return np.array([b[1] for b in self.bounds], dtype=np.float64)

    # ------------------------------------------------------------------ predictions

    def jac(self, X: np.ndarray, x: Inputs) -> np.ndarray:
        """d log L / d X, shape (R, n, P): analytic when the law has one, else central differences."""
        if self.jacobian is not None:
            return self.jacobian(X, x)
        R, P = X.shape
        h = 1e-6 * np.maximum(1.0, np.abs(X))
        Xs = np.repeat(X[None], 2 * P, axis=0)          # (2P, R, P)
        for j in range(P):
            Xs[2 * j, :, j] += h[:, j]
            Xs[2 * j + 1, :, j] -= h[:, j]
        f = self.log_loss(Xs.reshape(2 * P * R, P), x).reshape(2 * P, R, -1)
        return np.stack([(f[2 * j] - f[2 * j + 1]) / (2 * h[:, j:j + 1]) for j in range(P)], axis=-1)

    def predict(self, theta, **inputs) -> np.ndarray:
        """Predicted loss of one parameter row at arrays N, D (, U)."""
        x = make_inputs(**{k: inputs[k] for k in self.inputs})
        shape = np.broadcast(*[np.asarray(inputs[k]) for k in self.inputs]).shape
        X = np.asarray(theta, dtype=np.float64).reshape(1, -1)
        return np.exp(self.log_loss(X, x))[0].reshape(shape)

    def named(self, theta) -> dict:
        """Readable parameter values of one row (``readable`` hook, else the raw coordinates)."""
        theta = np.asarray(theta, dtype=np.float64)
        if self.readable is not None:
            return self.readable(theta)
        return {p: float(v) for p, v in zip(self.params, theta)}

    def optimal(self, theta, C, *, k: float = 6.0, U=None) -> tuple[np.ndarray, np.ndarray]:
        """Compute-optimal (N_opt, D_opt) at budgets C under C = k N D (closed form where the
        law has one and no unique-token limit applies; otherwise a 1-D minimisation)."""
        C = np.asarray(C, dtype=np.float64)
        if self.frontier is not None and U is None:
            n = self.frontier(np.asarray(theta, dtype=np.float64), C, k)
            return n, C / (k * n)
        return numeric_frontier(self, theta, C, k=k, U=U)


def cartesian(axes) -> np.ndarray:
    """Rows of the Cartesian product of ``axes`` (the last axis varies fastest)."""
    mesh = np.meshgrid(*[np.asarray(a, dtype=np.float64) for a in axes], indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


def make_inputs(**arrays) -> dict:
    """Inputs dict for a law: each array as a (1, n) row plus its natural log."""
    out = {}
    for k, v in arrays.items():
        if v is None:
            continue
        a = np.asarray(v, dtype=np.float64).reshape(1, -1)
        out[k] = a
        out["log" + k] = np.log(a)
    return out


def numeric_frontier(law: Law, theta, C, *, k: float = 6.0, U=None, points: int = 241,
                     iters: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """argmin over N of L(N, C/(kN) [, U]) for each budget: a log-spaced scan over
    1 <= N <= C/k, then golden-section search in the bracket around the scan's minimum."""
    C = np.atleast_1d(np.asarray(C, dtype=np.float64))
    theta = np.asarray(theta, dtype=np.float64).reshape(1, -1)
    hi = np.log(C / k)

    def loss_at(logn):                              # logn: (nC, m)
        n = np.exp(logn)
        d = C[:, None] / (k * n)
        kw = {"N": n, "D": d}
        if "U" in law.inputs:
            u = np.broadcast_to(np.asarray(U if U is not None else np.inf, dtype=np.float64), C.shape)
            kw["U"] = np.minimum(u[:, None], d)    # never more unique tokens than seen
        x = make_inputs(**{key: kw[key].ravel() for key in law.inputs})
        with np.errstate(all="ignore"):
            v = law.log_loss(theta, x)[0].reshape(n.shape)
        return np.where(np.isfinite(v), v, np.inf)

    grid = np.linspace(0.0, 1.0, points)[None, :] * hi[:, None]
    f = loss_at(grid)
    i = np.clip(np.argmin(f, axis=1), 1, points - 2)
    rows = np.arange(C.size)
    a, b = grid[rows, i - 1], grid[rows, i + 1]
    g = (math.sqrt(5) - 1) / 2
    for _ in range(iters):
        c1, c2 = b - g * (b - a), a + g * (b - a)
        f1, f2 = loss_at(c1[:, None])[:, 0], loss_at(c2[:, None])[:, 0]
        left = f1 < f2
        b = np.where(left, c2, b)
        a = np.where(left, a, c1)
    n = np.exp((a + b) / 2)
    return n, C / (k * n)


# ----------------------------------------------------------------------------- Chinchilla

def _lse_terms(X, x1, x2):
    """log-sum-exp of (a - alpha x1, b - beta x2, e) and the softmax weights of the first two."""
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


def _rowdot(a, b):
    """Row-wise sum of a * b, broadcasting b of shape (1, n)."""
    if b.shape[0] == 1:
        return a @ b[0]
    return np.einsum("rn,rn->r", a, b)


_SIGN = np.array([1.0, 1.0, 1.0, -1.0, -1.0])
_SIGN2 = np.outer(_SIGN, _SIGN)


def chinchilla_fgh(X, x, y, W, delta, hess=True, irls=False):
    """Summed Huber objective, gradient and exact Hessian of the Chinchilla law per row of X.

    With r = LSE(z) - log L and softmax weights w, dr/dtheta = J = (w1, w2, w3, -w1 x1,
    -w2 x2) and d2r = sum_k w_k dz_k dz_k^T - J J^T.  The Huber sum has gradient
    sum psi(r) J and Hessian sum [1{|r|<=delta} - psi(r)] J J^T + psi(r) sum_k w_k dz_k dz_k^T.
    ``irls`` (per row) replaces 1{|r|<=delta} by the majorising min(1, delta/|r|).
    """
    x1, x2 = x["logN"], x["logD"]
    lse, w1, w2 = _lse_terms(X, x1, x2)
    r = lse - y
    ar = np.abs(r)
    psi = np.clip(r, -delta, delta)
    h = psi * (r - 0.5 * psi)          # = r^2/2 inside, delta(|r| - delta/2) outside
    if W is not None:
        h *= W
        psi *= W
    f = h.sum(axis=1)
    w3 = 1.0 - w1 - w2
    dot = _rowdot
    p1, p2 = psi * w1, psi * w2
    s1, s2, s3 = p1.sum(1), p2.sum(1), (psi * w3).sum(1)
    s1x, s2x = dot(p1, x1), dot(p2, x2)
    g = np.stack([s1, s2, s3, -s1x, -s2x], axis=1)
    if not hess:
        return f, g, None
    q = (ar <= delta).astype(np.float64)
    if np.any(irls):
        qi = np.minimum(1.0, delta / np.maximum(ar, 1e-300))
        q = qi if np.all(irls) else np.where(np.asarray(irls)[:, None], qi, q)
    if W is not None:
        q *= W
    q -= psi
    # H = sum_n q J J^T (15 distinct entries, as row-wise dot products: no (R, n, 5) temporaries)
    u, v, t = q * w1, q * w2, q * w3
    H = np.empty((X.shape[0], 5, 5))
    cols = (w1, w2, w3, w1 * x1, w2 * x2)
    for i, left in enumerate((u, v, t, u * x1, v * x2)):
        for j in range(i, 5):
            H[:, i, j] = H[:, j, i] = dot(left, cols[j])
    H *= _SIGN2
    H[:, 0, 0] += s1; H[:, 0, 3] -= s1x; H[:, 3, 0] -= s1x; H[:, 3, 3] += dot(p1 * x1, x1)
    H[:, 1, 1] += s2; H[:, 1, 4] -= s2x; H[:, 4, 1] -= s2x; H[:, 4, 4] += dot(p2 * x2, x2)
    H[:, 2, 2] += s3
    return f, g, H


def _chinchilla_jac(X, x):
    _, w1, w2 = _lse_terms(X, x["logN"], x["logD"])
    return np.stack([w1, w2, 1 - w1 - w2, -w1 * x["logN"], -w2 * x["logD"]], axis=-1)


def _chinchilla_readable(t) -> dict:
    p = LawParams(math.exp(t[2]), math.exp(t[0]), math.exp(t[1]), float(t[3]), float(t[4]))
    return {"E": p.E, "A": p.A, "B": p.B, "alpha": p.alpha, "beta": p.beta}


def _chinchilla_frontier(t, C, k):
    al, be = t[3], t[4]
    G = (al * math.exp(t[0]) / (be * math.exp(t[1]))) ** (1.0 / (al + be))
    return G * (C / k) ** (be / (al + be))


def hoffmann_axes(scale: str) -> tuple:
    """Hoffmann et al.'s initialisation grid as axes (log A, log B, log E, alpha, beta).

    ``full``: alpha, beta in {0, .5, .., 2}, e in {-1, -.5, .., 1}, a, b in {0, 5, .., 25}
    (5 * 5 * 5 * 6 * 6 = 4,500 starts).  ``small``: a 3x3x3x4x4 = 432-start subgrid over
    the same box, for tests and quick looks.
    """
    if scale == "full":
        al = np.arange(0, 2.01, 0.5); e = np.arange(-1, 1.01, 0.5); ab = np.arange(0, 26, 5.0)
    else:
        al = np.array([0.0, 1.0, 2.0]); e = np.array([-1.0, 0.0, 1.0])
        ab = np.array([0.0, 5.0, 15.0, 25.0])
    return tuple(tuple(map(float, v)) for v in (ab, ab, e, al, al))


def hoffmann_grid(scale: str = "full") -> np.ndarray:
    """The grid as rows (a, b, e, alpha, beta), ordered as Hoffmann's nested loops."""
    if scale not in ("full", "small"):
        raise ConfigError(f"grid: unknown grid {scale!r}; use 'full' or 'small'")
    A, B, E, al, be = hoffmann_axes(scale)
    rows = [(a, b, e, x, y) for x, y, e, a, b in itertools.product(al, be, E, A, B)]
    return np.array(rows, dtype=np.float64)


CHINCHILLA = Law(
    name="chinchilla",
    params=("logA", "logB", "logE", "alpha", "beta"),
    bounds=((-50.0, 100.0), (-50.0, 100.0), (-50.0, 10.0), (0.0, 10.0), (0.0, 10.0)),
    grid={"full": hoffmann_axes("full"), "small": hoffmann_axes("small")},
    log_loss=lambda X, x: _lse_terms(X, x["logN"], x["logD"])[0],
    formula="L = E + A/N^alpha + B/D^beta",
    jacobian=_chinchilla_jac,
    exact=chinchilla_fgh,
    basis=lambda X, x: np.stack([np.exp(-X[:, 3:4] * x["logN"]), np.exp(-X[:, 4:5] * x["logD"]),
                                 np.ones((X.shape[0], x["logN"].shape[1]))], axis=1),
    coefficients=(0, 1, 2),
    frontier=_chinchilla_frontier,
    exponents=lambda t: (t[4] / (t[3] + t[4]), t[3] / (t[3] + t[4])),
    readable=_chinchilla_readable,
)


# ----------------------------------------------------------------------------- Kaplan

def _kaplan_parts(X, x):
    p = X[:, 2:3] / X[:, 3:4]
    u = p * (X[:, 0:1] - x["logN"])
    v = X[:, 1:2] - x["logD"]
    m = np.maximum(u, v)
    eu, ev = np.exp(u - m), np.exp(v - m)
    s = m + np.log(eu + ev)
    return u, s, eu / (eu + ev)


def _kaplan_log_loss(X, x):
    _, s, _ = _kaplan_parts(X, x)
    return X[:, 3:4] * s


def _kaplan_jac(X, x):
    u, s, wu = _kaplan_parts(X, x)
    aN, aD = X[:, 2:3], X[:, 3:4]
    dNc = wu * aN
    dDc = (1 - wu) * aD
    daN = wu * (X[:, 0:1] - x["logN"])
    daD = s - wu * u
    return np.stack(np.broadcast_arrays(dNc, dDc, daN, daD), axis=-1)


def _kaplan_frontier(t, C, k):
    # d/dN [(Nc/N)^p + k Dc N / C] = 0  ->  N^(p+1) = p Nc^p C / (k Dc)
    p = t[2] / t[3]
    return np.exp((math.log(p) + p * t[0] + np.log(C) - math.log(k) - t[1]) / (p + 1))


KAPLAN = Law(
    name="kaplan",
    params=("logNc", "logDc", "alpha_N", "alpha_D"),
    bounds=((-30.0, 120.0), (-30.0, 120.0), (1e-3, 5.0), (1e-3, 5.0)),
    grid={"full": ((10.0, 20.0, 30.0, 40.0), (10.0, 20.0, 30.0, 40.0), (0.05, 0.1, 0.3, 0.6),
                   (0.05, 0.1, 0.3, 0.6)),
          "small": ((15.0, 30.0), (15.0, 30.0), (0.07, 0.3), (0.1, 0.4))},
    log_loss=_kaplan_log_loss,
    formula="L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D",
    jacobian=_kaplan_jac,
    frontier=_kaplan_frontier,
    exponents=lambda t: (t[3] / (t[2] + t[3]), t[2] / (t[2] + t[3])),
    readable=lambda t: {"Nc": math.exp(t[0]), "Dc": math.exp(t[1]), "alpha_N": float(t[2]),
                        "alpha_D": float(t[3])},
)


# ----------------------------------------------------------------------------- registry

LAWS: dict[str, Law] = {"chinchilla": CHINCHILLA, "kaplan": KAPLAN}


def register(law: Law) -> Law:
    """Make ``law`` available by name (``scaling fit --law NAME``, ``fit(law="NAME")``)."""
    LAWS[law.name] = law
    return law


def get(law) -> Law:
    """A Law from a name (built-in or registered) or a Law itself."""
    if isinstance(law, Law):
        return law
    if law is None:
        return CHINCHILLA
    if isinstance(law, str):
        if law == "data_constrained" and law not in LAWS:
            import analysis.data_constrained  # noqa: F401  (registers itself)
        if law in LAWS:
            return LAWS[law]
        raise ConfigError(f"law: unknown {law!r}; choose one of {', '.join(sorted(set(LAWS) | {'data_constrained'}))} "
                          f"or pass an analysis.laws.Law (Law.from_loss for your own)")
    raise ConfigError(f"law: expected a name or an analysis.laws.Law, got {type(law).__name__}")
