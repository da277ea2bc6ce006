"""Benchmark: the 4,500-start Approach 3 fit against scipy L-BFGS-B, the bootstraps, the report.

    python3 benchmarks/fit.py [--reference-starts K] [--bootstrap 1000] [--fd-reference]

Data: Epoch AI's reconstruction of Chinchilla's runs, shipped in the package
(``analysis.published.load("epoch_chinchilla")``), D = C/(6N), the 5 highest losses dropped
(240 points).  Everything is measured side by side in this one run (the machines are
shared; every timing prints its cpu_util = CPU-seconds per wall-second):

1. ours: :func:`analysis.approaches.fit_law` over Hoffmann's 4,500 starts (variable
   projection of the starts, batched damped Newton, scipy polish), first call and warm;
   and the same solver without projection (Newton from all 4,500 starts).
2. reference: ``scipy.optimize.minimize(method="L-BFGS-B", jac=True)`` with default
   tolerances from every one of the same 4,500 starts, given a plain numpy analytic
   gradient of the same summed Huber objective.  ``--reference-starts K`` runs an evenly
   spaced subset of K starts and extrapolates linearly (printed as such).
   ``--fd-reference`` adds the loop with finite-difference gradients.
3. 1,000 bootstrap resamples of Approach 3 (each from 8 starts) and of Approaches 1+2.
4. The report's intervals at its default K (200): pairs + residual bootstrap on the
   quickstart's results and on Epoch's 240 points.
Targets: speed-up >= 50x at equal objective (1e-6 relative), bootstrap < 60 s, report
intervals <= 10 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis import approaches as ap  # noqa: E402
from analysis import published as pub  # noqa: E402
from analysis import uncertainty as unc  # noqa: E402
from analysis.laws import hoffmann_grid  # noqa: E402

DELTA = 1e-3


class Timer:
    """Wall and process CPU time of a block; cpu_util = CPU-s / wall-s."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w
        self.cpu = time.process_time() - self.c
        self.util = self.cpu / max(self.wall, 1e-9)

    def __str__(self):
        return f"{self.wall:.3f} s wall (cpu_util {self.util:.2f})"


def plain_objective_grad(lN, lD, lL):
    """The summed Huber objective in log-sum-exp form and its analytic gradient, as one
    writes them for scipy (numpy, one start at a time)."""
    def fg(x):
        a, b, e, al, be = x
        z = np.stack([a - al * lN, b - be * lD, np.full_like(lN, e)])
        m = z.max(axis=0)
        w = np.exp(z - m)
        s = w.sum(axis=0)
        r = m + np.log(s) - lL
        w /= s
        psi = np.clip(r, -DELTA, DELTA)
        f = float(np.sum(psi * (r - 0.5 * psi)))
        g = np.array([psi @ w[0], psi @ w[1], psi @ w[2], -(psi * w[0]) @ lN, -(psi * w[1]) @ lD])
        return f, g
    return fg


def reference_loop(grid, idx, fun, jac):
    from scipy.optimize import minimize

    best = np.inf
    with Timer() as t:
        for i in idx:
            with np.errstate(all="ignore"):
                r = minimize(fun, grid[i], jac=jac, method="L-BFGS-B")
            if np.isfinite(r.fun):
                best = min(best, float(r.fun))
    return best, t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference-starts", type=int, default=0,
                   help="time the scipy loop on K evenly spaced starts and extrapolate (0 = all 4,500)")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--fd-reference", action="store_true", help="also time the finite-difference loop")
    a = p.parse_args(argv)
    df = pub.epoch_240()
    N = df["Model Size"].to_numpy(); C = df["Training FLOP"].to_numpy()
    lN, lD, lL = np.log(N), np.log(C / (6 * N)), np.log(df["loss"].to_numpy())
    grid = hoffmann_grid("full")
    import scipy.optimize  # noqa: F401  (both sides use it: import it outside the timers)

    print(f"data: {len(df)} points; starts: {len(grid)}; cpus: {os.cpu_count()}; load average {os.getloadavg()}")

    with Timer() as t_first:
        fit = ap.fit_law(lN, lD, lL, starts="full")
    with Timer() as t_ours:
        fit = ap.fit_law(lN, lD, lL, starts="full")
    cv = fit.convergence
    print(f"ours (variable projection + batched Newton): first call {t_first}; warm {t_ours}")
    print(f"  objective {fit.objective:.10e}  E={fit.E:.5f} A={fit.A:.1f} B={fit.B:.0f} alpha={fit.alpha:.5f} "
          f"beta={fit.beta:.5f} a={fit.a:.4f}  |grad|={cv.grad_norm:.1e}; {cv.n_distinct} distinct problems "
          f"for {cv.n_starts} starts, {cv.n_at_best} starts at the best objective")
    with Timer() as t_np:
        fit_np = ap.fit_law(lN, lD, lL, starts="full", projection=False)
    print(f"ours without projection (Newton from all {len(grid)} starts): {t_np}; objective "
          f"{fit_np.objective:.10e}; {fit_np.convergence.n_at_best} starts at best")

    idx = np.arange(len(grid))
    if a.reference_starts and a.reference_starts < len(grid):
        idx = np.unique(np.linspace(0, len(grid) - 1, a.reference_starts).round().astype(int))
    scale = len(grid) / len(idx)
    loops = [("scipy L-BFGS-B, analytic gradient (default tolerances)", plain_objective_grad(lN, lD, lL), True)]
    if a.fd_reference:
        fg = plain_objective_grad(lN, lD, lL)
        loops.append(("scipy L-BFGS-B, finite-difference gradient (default tolerances)",
                      lambda x: fg(x)[0], None))
    for label, fun, jac in loops:
        best_ref, t = reference_loop(grid, idx, fun, jac)
        t_ref = t.wall * scale
        note = "" if len(idx) == len(grid) else f" (EXTRAPOLATED from {len(idx)} starts, {t.wall:.1f} s measured)"
        rel = abs(best_ref - fit.objective) / fit.objective
        print(f"reference {label}: {t_ref:.2f} s over {len(grid)} starts{note} (cpu_util {t.util:.2f}); "
              f"best objective {best_ref:.10e}")
        print(f"  SPEED-UP vs warm ours: {t_ref / t_ours.wall:.0f}x, vs first call {t_ref / t_first.wall:.0f}x "
              f"(target >= 50x); objective |ref - ours| / ours = {rel:.2e} "
              f"({'within' if rel <= 1e-6 else 'NOT within'} 1e-6; ours "
              f"{'lower or equal' if fit.objective <= best_ref else 'higher'})")

    if a.bootstrap:
        cols = dict(n_col="Model Size", c_col="Training FLOP", loss_col="loss")
        with Timer() as t:
            b = unc.bootstrap(df, **cols, K=a.bootstrap, seed=0, approaches=(3,), fit3=fit)
        lo, hi = b.interval(3, "a")
        print(f"bootstrap approach 3: {a.bootstrap} resamples x 8 starts: {t} (target < 60 s); "
              f"a 95% [{lo:.4f}, {hi:.4f}], SE(B) {b.se(3, 'B'):.0f}, failures {b.failures.get(3, 0)}")
        with Timer() as t:
            unc.bootstrap(df, **cols, K=a.bootstrap, seed=0, approaches=(1, 2), fit3=fit)
        print(f"bootstrap approaches 1+2: {a.bootstrap} resamples: {t}")
        with Timer() as t:
            pi = unc.prediction_intervals(df, fit, [5.76e23], **cols, K=a.bootstrap)
        at = pi["at_C"]["5.76e+23"]
        print(f"residual bootstrap approach 3: {a.bootstrap} refits: {t}; at 5.76e23 N_opt "
              f"{at['n_opt']:.3g} {np.round(at['n_opt_ci'], -8).tolist()}, loss {at['loss_opt']:.4f} "
              f"CI {np.round(at['loss_opt_ci'], 4).tolist()} PI {np.round(at['loss_opt_pi'], 4).tolist()}")

    import pandas as pd

    from analysis.report import fit_all

    qs = pd.read_csv(REPO / "experiments" / "results" / "quickstart" / "results.csv")
    for name, table, cols in (
            ("quickstart (15 runs)", qs, dict(n_col="n_total", d_col="tokens", loss_col="eval_loss",
                                              budget_col="budget", c_col="flops_achieved")),
            ("Epoch (240 runs)", df, dict(n_col="Model Size", c_col="Training FLOP", loss_col="loss"))):
        with Timer() as t0:
            fit_all(table, **cols, bootstrap=0, diagnostics=False)
        with Timer() as t1:
            fit_all(table, **cols, bootstrap=200, diagnostics=False)
        print(f"report intervals, {name}, K=200 (pairs bootstrap of approaches 1-3 + residual bootstrap): "
              f"{t1.wall - t0.wall:.2f} s on top of the fits (target <= 10 s; cpu_util {t1.util:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
