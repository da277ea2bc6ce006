"""Tests of analysis/laws.py, analysis/data_constrained.py and analysis/solver.py: one machinery, any law."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import approaches as ap
from analysis import data_constrained as dc
from analysis import laws
from analysis import published as pub
from analysis import solver
from analysis.errors import ConfigError
from analysis.report import fit_all

from test_analysis import synthetic_isoflop

COLS = dict(n_col="n_total", d_col="tokens", loss_col="eval_loss", budget_col="budget")
README = dc.theta(**pub.DATA_CONSTRAINED_C4)


# ----------------------------------------------------------------------------- data-constrained

def test_datablations_readme_evaluations():
    """The two evaluations printed in huggingface/datablations' README (Figure 1, right)."""
    assert float(dc.loss(README, 6.34e9, 242e9, 25e9)) == pytest.approx(2.2256440889984477, rel=1e-6)
    assert float(dc.loss(README, 8.67e9, 178e9, 25e9)) == pytest.approx(2.2269634075087867, rel=1e-6)
    # with no repetition and a data-usable N the law is Chinchilla's with the same coefficients
    p = pub.DATA_CONSTRAINED_C4
    chin = laws.LawParams(p["E"], p["A"], p["B"], p["alpha"], p["beta"])
    n, d = 1e9, float(chin.d_opt(6 * 1e9 * 2e10))
    n = float(chin.n_opt(6 * n * d))
    assert float(dc.loss(README, n, d, d)) == pytest.approx(float(chin.loss(n, d)), rel=1e-12)


def _readme_grid_allocation(n_base, d_base, u_base):
    """The README's own grid search (factors 1.0001..3 in both directions at fixed N*D)."""
    best = (np.inf, None, None)
    for i in np.linspace(1.0001, 3, 500):
        for D, N in ((d_base * i, n_base / i), (d_base / i, n_base * i)):
            L = float(dc.loss(README, N, D, min(u_base, D)))
            if L < best[0]:
                best = (L, D, N)
    return best


def test_data_constrained_allocation_for_fixed_unique_data():
    L_grid, D_grid, N_grid = _readme_grid_allocation(8.67e9, 178e9, 25e9)
    out = dc.optimal_allocation(README, 6 * 8.67e9 * 178e9, 25e9)
    # README: "227B tokens, 9.1 epochs, 6.8B parameters"
    assert out["D"][0] == pytest.approx(227e9, rel=0.005) and out["N"][0] == pytest.approx(6.8e9, rel=0.01)
    assert out["epochs"][0] == pytest.approx(9.1, abs=0.05)
    # the continuous optimum is at least as good as the grid's and at the same place
    assert out["loss"][0] <= L_grid + 1e-12
    assert out["D"][0] == pytest.approx(D_grid, rel=0.005) and out["N"][0] == pytest.approx(N_grid, rel=0.005)
    # more unique data never hurts; with ample unique data the allocation is single-epoch
    ample = dc.optimal_allocation(README, 6 * 8.67e9 * 178e9, 1e15)
    assert ample["loss"][0] < out["loss"][0] and ample["epochs"][0] == pytest.approx(1.0)


def _repeated_runs(theta, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for U in (1e8, 4e8):
        for N in (2e7, 5e7, 1.2e8, 3e8, 8e8):
            for ep in (1, 2, 4, 8, 16, 40):
                D = U * ep
                L = float(dc.loss(theta, N, D, U)) * math.exp(noise * rng.standard_normal())
                rows.append(dict(n_total=N, tokens=D, tokens_unique=U, epochs=ep, eval_loss=L, group="repeat"))
    return pd.DataFrame(rows)


def test_data_constrained_fit_recovers_known_coefficients():
    df = _repeated_runs(README)
    f = ap.fit_approach3(df, n_col="n_total", d_col="tokens", loss_col="eval_loss",
                         u_col="tokens_unique", law="data_constrained")
    truth = pub.DATA_CONSTRAINED_C4
    for k in ("E", "A", "B", "alpha", "beta", "R_D_star", "R_N_star"):
        assert f.named[k] == pytest.approx(truth[k], rel=2e-3), k
    assert f.objective < 1e-10
    # the report machinery takes the law by name and finds the unique-token column itself
    s, objs = fit_all(df, **{k: v for k, v in COLS.items() if k != "budget_col"}, approaches=(3,),
                      law="data_constrained", diagnostics=False)
    assert s["approach3"]["law"] == "data_constrained"
    assert s["approach3"]["R_D_star"] == pytest.approx(truth["R_D_star"], rel=2e-3)
    with pytest.raises(ConfigError, match="u_col"):
        ap.fit_approach3(df, n_col="n_total", d_col="tokens", loss_col="eval_loss", law="data_constrained")
    bad = df.assign(tokens_unique=df["tokens"] * 2)
    with pytest.raises(ConfigError, match="tokens_unique"):
        ap.fit_approach3(bad, n_col="n_total", d_col="tokens", loss_col="eval_loss",
                         u_col="tokens_unique", law="data_constrained")
    with pytest.raises(ConfigError, match="needs >= 8"):
        ap.fit_approach3(df.head(7), n_col="n_total", d_col="tokens", loss_col="eval_loss",
                         u_col="tokens_unique", law="data_constrained")


# ----------------------------------------------------------------------------- Kaplan and user laws

def test_kaplan_law_fit_and_closed_form_frontier():
    theta = np.array([math.log(8.8e13), math.log(5.4e13), 0.076, 0.095])
    rows = [dict(n_total=N, tokens=D, eval_loss=float(laws.KAPLAN.predict(theta, N=N, D=D)))
            for N in np.logspace(6, 9, 7) for D in np.logspace(8, 11, 7)]
    f = ap.fit_approach3(pd.DataFrame(rows), n_col="n_total", d_col="tokens", loss_col="eval_loss", law="kaplan")
    assert f.alpha_N == pytest.approx(0.076, rel=1e-3) and f.alpha_D == pytest.approx(0.095, rel=1e-3)
    assert f.objective < 1e-10
    C = np.array([1e18, 1e21])
    n_closed, _ = laws.KAPLAN.optimal(theta, C)
    n_num, _ = laws.numeric_frontier(laws.KAPLAN, theta, C)
    assert n_closed == pytest.approx(n_num, rel=1e-5)
    assert f.a == pytest.approx(0.095 / (0.076 + 0.095), rel=1e-3)


def test_numeric_frontier_matches_chinchilla_closed_form():
    p = pub.CHINCHILLA_ROUNDED
    t = np.array([math.log(p.A), math.log(p.B), math.log(p.E), p.alpha, p.beta])
    C = np.logspace(18, 26, 5)
    n, d = laws.numeric_frontier(laws.CHINCHILLA, t, C)
    assert n == pytest.approx(p.n_opt(C), rel=1e-6) and d == pytest.approx(p.d_opt(C), rel=1e-6)


def user_law():
    """Chinchilla's form written as a user would, plus nothing else."""
    def loss(p, x):
        return p["E"] + p["A"] / x["N"] ** p["alpha"] + p["B"] / x["D"] ** p["beta"]
    return laws.Law.from_loss("my_chinchilla", loss, params=("E", "A", "B", "alpha", "beta"),
                              bounds={"E": (0.1, 10), "A": (1, 1e6), "B": (1, 1e6), "alpha": (0.05, 2),
                                      "beta": (0.05, 2)},
                              grid={"E": (1.0, 2.0), "A": (100, 1000), "B": (100, 1000),
                                    "alpha": (0.2, 0.5), "beta": (0.2, 0.5)})


USER_LAW = user_law()   # what `scaling fit --law test_laws:USER_LAW` imports


def test_user_defined_law_recovers_and_matches_builtin():
    df = synthetic_isoflop(noise=0.002, seed=7)
    mine = ap.fit_approach3(df, **COLS, law=user_law())
    ref = ap.fit_approach3(df, **COLS)
    assert mine.objective == pytest.approx(ref.objective, rel=1e-6)
    assert mine.E == pytest.approx(ref.E, rel=1e-3) and mine.alpha == pytest.approx(ref.alpha, rel=1e-3)
    assert mine.a == pytest.approx(ref.a, rel=1e-3)          # numeric frontier exponent
    assert float(mine.n_opt(1e21)) == pytest.approx(float(ref.n_opt(1e21)), rel=1e-3)
    laws.register(user_law())
    s, _ = fit_all(df, **COLS, approaches=(3,), law="my_chinchilla", diagnostics=True)
    assert s["approach3"]["law"] == "my_chinchilla" and "param_correlation" in s["identifiability"]


def test_start_grid_outside_bounds_is_refused():
    with pytest.raises(ConfigError, match="alpha"):
        laws.Law.from_loss("bad", lambda p, x: p["E"] + 0 * x["N"], params=("E", "alpha"),
                           bounds={"E": (0, 5), "alpha": (0.1, 1)},
                           grid={"E": (1.0,), "alpha": (0.0, 0.5)}).starts("full")
    with pytest.raises(ConfigError, match="bounds"):
        laws.Law.from_loss("bad", lambda p, x: p["E"], params=("E",), bounds={"E": (5, 0)}, grid={"E": (1.0,)})
    with pytest.raises(ConfigError, match="unknown"):
        laws.get("nope")


# ----------------------------------------------------------------------------- the solver

@pytest.mark.parametrize("table", ["quickstart", "synthetic_isoflop"])
def test_projection_reaches_the_optimum_of_all_starts(table):
    from pathlib import Path

    df = pd.read_csv(Path(__file__).resolve().parents[1] / "experiments" / "results" / table / "results.csv")
    cols = dict(n_col="n_total", d_col="tokens", loss_col="eval_loss", budget_col="budget")
    proj = ap.fit_approach3(df, **cols, starts="full")
    plain = ap.fit_approach3(df, **cols, starts="small", projection=False)
    assert proj.convergence.n_distinct == 25 and proj.convergence.n_starts == 4500
    assert proj.objective <= plain.objective * (1 + 1e-6)
    assert proj.convergence.grad_norm < 1e-6


def test_projected_starts_depend_only_on_exponents():
    df = synthetic_isoflop(noise=0.003, seed=2)
    x = laws.make_inputs(N=df["n_total"].to_numpy(), D=df["tokens"].to_numpy())
    y = np.log(df["eval_loss"].to_numpy())
    X0 = laws.CHINCHILLA.starts("full")
    Xu, inv = solver.projected_starts(laws.CHINCHILLA, X0, x, y)
    assert len(Xu) == 25 and inv.shape == (4500,)
    assert np.array_equal(Xu[inv][:, 3:], X0[:, 3:])            # exponents kept, coefficients replaced
    # the bounded solver never leaves the law's box
    res = solver.newton_multistart(laws.CHINCHILLA, Xu, x, y)
    assert (res.x >= laws.CHINCHILLA.lower).all() and (res.x <= laws.CHINCHILLA.upper).all()
