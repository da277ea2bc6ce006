"""Calibrate the multi-power law's area power ``p`` (``S1 = sum eta^p``) on development cosine tables.

    python benchmarks/curves_area_power.py [--design SWEEP:RANKS ...] [--dev EXPERIMENT=TABLE ...]

A trunk and its cooldowns do not pin ``p`` (their LRs are mostly the peak, where every ``p``
gives the same area), so ``scaling fit-curves --area-power P`` takes it as a constant of the model
family.  This script chooses it the one way that does not peek at the table to be predicted:
every design (a sweep of constant-LR trunks + cooldowns and the fork ranks fitted, as
``scaling fit-curves SWEEP --fork-index RANKS``) predicts every cell of every development table
(an experiment whose cells share the sizes and peak LRs, and its results table), and ``p`` is
the value where the pooled signed median error is zero (bisection, to 0.001, between the grid
points that bracket it): the law neither over- nor under-predicts those runs.

Defaults: the six designs of ``curves_constant``, ``curves_constant_seed1``,
``curves_constant_long`` and ``curves_constant_forks`` (whichever of ``runs/<name>`` exist), and
the quickstart's four seeds as the development tables.  ``nxd_quickstart``, the table the
calibrated law is scored on, is never read here (docs/predicting.md, "Loss curves").
Prints the grid (pooled and per-design medians) and the calibrated ``p``.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from analysis.cli import _fork_ranks
from analysis.curves import experiment_cells, fit_sizes, predict_cells

DESIGNS = ("runs/curves_constant:0", "runs/curves_constant_seed1:0", "runs/curves_constant_long:0,1",
           "runs/curves_constant_long:1", "runs/curves_constant_forks:5", "runs/curves_constant_forks:0,1,2,3,4,5")
DEV = tuple(f"experiments/{e}.py=experiments/results/{e}/results.csv"
            for e in ("quickstart", "quickstart_seed1", "quickstart_seed2", "quickstart_seed3"))
GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def _errors(job) -> np.ndarray:
    """Signed relative errors of one design at one ``p`` over every development cell."""
    design, p, dev = job
    sweep, ranks = design.rsplit(":", 1)
    fits = fit_sizes(sweep, fork_index=_fork_ranks(ranks), law="multipower", area_power=p)
    rows = [r for cells in dev for r in predict_cells(fits, cells, sweep_dir=sweep)]
    return np.array([r["rel_error"] for r in rows if r["rel_error"] is not None])


def _pooled(pool, designs, p, dev) -> tuple[float, float, list[float], int]:
    """``(signed median, median |error|, per-design median |error|, n predictions)`` at ``p``."""
    errs = list(pool.map(_errors, [(d, p, dev) for d in designs]))
    a = np.concatenate(errs)
    return float(np.median(a)), float(np.median(np.abs(a))), [float(np.median(np.abs(e))) for e in errs], len(a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--design", action="append", help="SWEEP:RANKS (repeatable); default: " + ", ".join(DESIGNS))
    ap.add_argument("--dev", action="append", help="EXPERIMENT=TABLE (repeatable); default: the quickstart's 4 seeds")
    args = ap.parse_args()
    designs = args.design or [d for d in DESIGNS if Path(d.rsplit(":", 1)[0]).is_dir()]
    for d in designs:
        if ":" not in d or not Path(d.rsplit(":", 1)[0]).is_dir():
            raise SystemExit(f"--design {d}: give SWEEP_DIR:RANKS of an existing sweep (e.g. runs/curves_constant:0)")
        _fork_ranks(d.rsplit(":", 1)[1])
    if not designs:
        raise SystemExit("no design found: train experiments/curves_constant.py (scaling sweep ... --out "
                         "runs/curves_constant) or pass --design SWEEP:RANKS")
    dev = []
    for spec in args.dev or DEV:
        if "=" not in spec:
            raise SystemExit(f"--dev {spec}: give EXPERIMENT=TABLE (e.g. experiments/quickstart.py="
                             f"experiments/results/quickstart/results.csv)")
        exp, table = spec.split("=", 1)
        if "nxd_quickstart" in exp:
            raise SystemExit(f"--dev {spec}: nxd_quickstart is the table the calibrated law is scored on; "
                             f"calibrate on other cosine runs")
        dev.append(experiment_cells(exp, table))
    n_dev = sum(len(c) for c in dev)
    print(f"{len(designs)} design(s) x {len(dev)} development table(s) ({n_dev} measured cells; those of a "
          f"size a design fitted are predicted): "
          + "; ".join(designs))
    print("| p | pooled median abs error | pooled signed median | " + " | ".join(designs) + " |")
    print("|---" * (3 + len(designs)) + "|")
    signed = {}
    with ProcessPoolExecutor(max_workers=min(len(designs), os.cpu_count() or 1)) as pool:
        for p in GRID:
            s, m, per, _ = _pooled(pool, designs, p, dev)
            signed[p] = s
            print(f"| {p:.2f} | {100 * m:.2f}% | {100 * s:+.2f}% | " + " | ".join(f"{100 * x:.2f}%" for x in per) + " |",
                  flush=True)
        brackets = [(a, b) for a, b in zip(GRID, GRID[1:]) if signed[a] <= 0 < signed[b]]
        if not brackets:
            end = GRID[0] if signed[GRID[0]] > 0 else GRID[-1]
            print(f"the pooled signed median does not change sign on the grid: no p in [{GRID[0]}, {GRID[-1]}] "
                  f"makes the law unbiased on these tables (closest: {end})")
            return
        a, b = brackets[0]
        while b - a > 1e-3:  # the signed median grows with p (a larger p credits a cosine tail less)
            mid = (a + b) / 2
            s, *_ = _pooled(pool, designs, mid, dev)
            a, b = (mid, b) if s <= 0 else (a, mid)
        p = round((a + b) / 2, 3)  # the bisection's resolution, not a rounding of a fitted constant
        s, m, per, n = _pooled(pool, designs, p, dev)
    print(f"calibrated area power p = {p:.3f}: pooled median |error| {100 * m:.2f}%, signed median {100 * s:+.2f}% "
          f"over {n} predictions; per design " + ", ".join(f"{100 * x:.2f}%" for x in per))


if __name__ == "__main__":
    main()
