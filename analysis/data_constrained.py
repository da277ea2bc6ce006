"""The data-constrained law of Muennighoff et al. 2023 and its allocation for fixed unique data.

Repeated tokens are worth less than fresh ones, and parameters beyond what the unique data
can use are worth less than useful ones.  With ``U`` unique tokens seen ``D / U`` times:

* ``R_D = max(D / U - 1, 0)`` repetitions, effective data ``D' = U + U R_D* (1 - exp(-R_D / R_D*))``;
* ``U_N = min(N, D_to_N(U))`` the parameters the unique data can use, where ``D_to_N(U) =
  (U G)^(beta/alpha) G`` is the compute-optimal size for U tokens under the single-epoch
  law (``G = (alpha A / (beta B))^(1/(alpha+beta))``), ``R_N = max(N / U_N - 1, 0)`` and
  ``N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*))``;
* ``L = E + A / N'^alpha + B / D'^beta``.

With no repetition (``U = D``) and an N that the data can use, ``N' = N`` and ``D' = D``:
the law is Chinchilla's.  Solver coordinates are (log A, log B, log E, alpha, beta,
log R_D*, log R_N*).  Starts: the Chinchilla fit of the same runs (its best optima), crossed
with a grid of R_D* and R_N*.
"""

from __future__ import annotations

import math

import numpy as np

from analysis.laws import Law, make_inputs, numeric_frontier, register


def _effective(X, x):
    """log N' and log D' per row (R, n)."""
    la, lb, al, be = X[:, 0:1], X[:, 1:2], X[:, 3:4], X[:, 4:5]
    rd, rn = np.exp(X[:, 5:6]), np.exp(X[:, 6:7])
    logG = (np.log(al) + la - np.log(be) - lb) / (al + be)
    log_un = np.minimum(x["logN"], (be / al) * (x["logU"] + logG) + logG)
    r_n = np.maximum(np.exp(x["logN"] - log_un) - 1.0, 0.0)
    r_d = np.maximum(np.exp(x["logD"] - x["logU"]) - 1.0, 0.0)
    log_n_eff = log_un + np.log1p(rn * -np.expm1(-r_n / rn))
    log_d_eff = x["logU"] + np.log1p(rd * -np.expm1(-r_d / rd))
    return log_n_eff, log_d_eff


def _log_loss(X, x):
    ln, ld = _effective(X, x)
    z1 = X[:, 0:1] - X[:, 3:4] * ln
    z2 = X[:, 1:2] - X[:, 4:5] * ld
    z3 = np.broadcast_to(X[:, 2:3], z1.shape)
    m = np.maximum(np.maximum(z1, z2), z3)
    return m + np.log(np.exp(z1 - m) + np.exp(z2 - m) + np.exp(z3 - m))


def _readable(t) -> dict:
    return {"E": math.exp(t[2]), "A": math.exp(t[0]), "B": math.exp(t[1]), "alpha": float(t[3]),
            "beta": float(t[4]), "R_D_star": math.exp(t[5]), "R_N_star": math.exp(t[6])}


def theta(*, E, A, B, alpha, beta, R_D_star, R_N_star) -> np.ndarray:
    """Solver coordinates from the readable values."""
    return np.array([math.log(A), math.log(B), math.log(E), alpha, beta,
                     math.log(R_D_star), math.log(R_N_star)], dtype=np.float64)


_RD = tuple(math.log(v) for v in (2.0, 5.0, 15.0, 50.0, 200.0))
_RN = tuple(math.log(v) for v in (1.0, 3.0, 10.0, 30.0, 100.0))

DATA_CONSTRAINED = register(Law(
    name="data_constrained",
    params=("logA", "logB", "logE", "alpha", "beta", "log_R_D_star", "log_R_N_star"),
    bounds=((-50.0, 100.0), (-50.0, 100.0), (-50.0, 10.0), (1e-3, 10.0), (1e-3, 10.0),
            (math.log(1e-2), math.log(1e5)), (math.log(1e-2), math.log(1e5))),
    grid={},
    log_loss=_log_loss,
    inputs=("N", "D", "U"),
    formula="L = E + A/N'^alpha + B/D'^beta (N', D' effective parameters and data)",
    readable=_readable,
    seed="chinchilla",
    seed_grid={"full": (_RD, _RN), "small": (_RD[1::2], _RN[1::2])},
))


def loss(t, N, D, U) -> np.ndarray:
    """Predicted loss at N parameters, D tokens seen, U unique tokens (U <= D)."""
    return DATA_CONSTRAINED.predict(t, N=N, D=D, U=U)


def optimal_allocation(t, C, U, *, k: float = 6.0) -> dict:
    """The best (N, D) for compute C when only U unique tokens exist (D may repeat them).

    Minimises L(N, C/(kN), min(U, D)) over N.  Returns N, D, epochs = D / min(U, D) and the
    predicted loss; arrays when C or U are arrays.
    """
    C = np.atleast_1d(np.asarray(C, dtype=np.float64))
    U = np.broadcast_to(np.asarray(U, dtype=np.float64), C.shape)
    n, d = numeric_frontier(DATA_CONSTRAINED, t, C, k=k, U=U)
    u = np.minimum(U, d)
    x = make_inputs(N=n, D=d, U=u)
    L = np.exp(_log_loss(np.asarray(t, dtype=np.float64)[None], x))[0]
    return {"N": n, "D": d, "epochs": d / u, "loss": L}
