"""Benchmark: Approach 3 multi-start fit vs a plain scipy L-BFGS-B loop, and the bootstrap.

    python3 benchmarks/fit.py [--data DIR] [--reference-starts K] [--bootstrap 1000]

Data: Epoch AI's reconstruction of Chinchilla's runs (``$SCALING_REFERENCE_DATA`` or
``--data``), D = C/(6N), the 5 highest losses dropped (240 points).

1. ours: :func:`analysis.approaches.fit_law` over Hoffmann's 4,500-start grid (batched
   damped Newton in numpy + scipy polish of the best optima).
2. reference, in the same run: ``scipy.optimize.minimize(method="L-BFGS-B", jac=True)``
   with default tolerances from every start (same objective and analytic gradient).
   ``--reference-starts K`` runs an evenly spaced subset of K starts and extrapolates the
   time linearly to 4,500 (printed as such).
3. 1,000 bootstrap resamples of Approach 3, each from 8 starts (4 full-data optima + 4
   random grid points), and of all three approaches.
Prints times, the speed-up (target >= 50x), the objective agreement (target 1e-6) and
the bootstrap time (target < 60 s on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis import approaches as ap  # noqa: E402
from analysis import uncertainty as unc  # noqa: E402


def load_epoch(data_dir) -> pd.DataFrame:
    df = pd.read_csv(Path(data_dir) / "epoch_chinchilla_svg_extracted_data.csv")
    return df.drop(df["loss"].nlargest(5).index).reset_index(drop=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("SCALING_REFERENCE_DATA"))
    p.add_argument("--reference-starts", type=int, default=0,
                   help="time the scipy loop on K evenly spaced starts and extrapolate (0 = all)")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--threads", type=int, default=0, help="informational: os.cpu_count() used")
    a = p.parse_args(argv)
    if not a.data:
        print("error: --data: set SCALING_REFERENCE_DATA or pass --data DIR", file=sys.stderr)
        return 2
    df = load_epoch(a.data)
    N = df["Model Size"].to_numpy(); C = df["Training FLOP"].to_numpy()
    lN, lD, lL = np.log(N), np.log(C / (6 * N)), np.log(df["loss"].to_numpy())
    grid = ap.hoffmann_grid("full")
    print(f"data: {len(df)} points; starts: {len(grid)}; cpus: {os.cpu_count()}")

    t0 = time.perf_counter()
    fit = ap.fit_law(lN, lD, lL, starts="full")
    t_ours = time.perf_counter() - t0
    cv = fit.convergence
    print(f"ours: {t_ours:.2f} s  objective {fit.objective:.10e}  E={fit.E:.5f} "
          f"alpha={fit.alpha:.5f} beta={fit.beta:.5f} a={fit.a:.4f}  |grad|={cv.grad_norm:.1e} "
          f"starts at best {cv.n_at_best}/{cv.n_starts}, median Newton iterations "
          f"{cv.median_iterations:.0f}")

    from scipy.optimize import minimize
    x1, x2, y = lN[None], lD[None], lL[None]

    def fg(x):
        f, g, _ = ap._obj_grad_hess(x[None], x1, x2, y, None, ap.HUBER_DELTA, hess=False)
        return float(f[0]), g[0]

    # The plain loop as usually written (e.g. in public replications): scipy's logsumexp and
    # huber, summed, L-BFGS-B with its default tolerances and finite-difference gradients.
    from scipy.special import huber, logsumexp

    def plain_objective(x):
        a_, b_, e_, al, be = x
        lse = logsumexp(np.stack([a_ - al * lN, b_ - be * lD, np.full_like(lN, e_)]), axis=0)
        return float(np.sum(huber(ap.HUBER_DELTA, lse - lL)))

    idx = np.arange(len(grid))
    if a.reference_starts and a.reference_starts < len(grid):
        idx = np.unique(np.linspace(0, len(grid) - 1, a.reference_starts).round().astype(int))
    def loop(label, fun, jac):
        t0 = time.perf_counter()
        ref_f = np.full(len(idx), np.inf)
        for j, i in enumerate(idx):
            with np.errstate(all="ignore"):
                r = minimize(fun, grid[i], jac=jac, method="L-BFGS-B")
            if np.isfinite(r.fun):
                ref_f[j] = r.fun
        t_run = time.perf_counter() - t0
        t_ref = t_run * len(grid) / len(idx)
        note = "" if len(idx) == len(grid) else (
            f" (EXTRAPOLATED from {len(idx)} of {len(grid)} starts, {t_run:.1f} s measured)")
        best_ref = ref_f.min()
        rel = abs(best_ref - fit.objective) / fit.objective
        print(f"reference {label}: {t_ref:.1f} s{note}; best objective {best_ref:.10e}")
        print(f"  speed-up: {t_ref / t_ours:.1f}x (target >= 50x); objective agreement "
              f"|ref - ours| / ours = {rel:.2e} ({'within' if rel <= 1e-6 else 'NOT within'} "
              f"1e-6; ours {'lower or equal' if fit.objective <= best_ref else 'higher'})")

    loop("plain scipy L-BFGS-B loop (logsumexp + huber, finite-difference gradient, default "
         "tolerances)", plain_objective, None)
    loop("scipy L-BFGS-B loop with our analytic gradient (default tolerances)", fg, True)

    if a.bootstrap:
        t0 = time.perf_counter()
        b = unc.bootstrap(df, n_col="Model Size", c_col="Training FLOP", loss_col="loss",
                          K=a.bootstrap, seed=0, approaches=(3,), fit3=fit)
        t_b3 = time.perf_counter() - t0
        lo, hi = b.interval(3, "a")
        print(f"bootstrap approach 3: {a.bootstrap} resamples x 8 starts in {t_b3:.1f} s "
              f"(target < 60 s); a 95% [{lo:.4f}, {hi:.4f}], SE(B) {b.se(3, 'B'):.0f}, "
              f"failures {b.failures.get(3, 0)}")
        t0 = time.perf_counter()
        b = unc.bootstrap(df, n_col="Model Size", c_col="Training FLOP", loss_col="loss",
                          K=a.bootstrap, seed=0, approaches=(1, 2), fit3=fit)
        print(f"bootstrap approaches 1+2: {a.bootstrap} resamples in "
              f"{time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
