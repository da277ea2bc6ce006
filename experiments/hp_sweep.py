"""Hyperparameters by law on a laptop: an LR sweep over widths x horizons, under standard and muP.

Three quickstart shapes a factor 8 apart in width (d8, d24, d64: 3.6k, 20k and 115k total
parameters, 2 layers, 2 heads, the quickstart recipe on pystdlib bytes) x three horizons (0.2M,
0.4M, 0.8M tokens, the same for every width, so LR* can be read along N at fixed D and along D
at fixed N) x five peak LRs a factor 2 apart around the quickstart's per-size rule
(``lr_factors``), once under the ``standard`` parametrization and once under ``mup`` with the
smallest shape as its base (so every muP width is centred on the base's LR): 90 cosine runs,
about 11 minutes on 2 uncontended CPU cores (20 CPU-minutes)::

    scaling sweep experiments/hp_sweep.py --out runs/hp_sweep
    scaling fit-hp runs/hp_sweep --parametrization standard --plots runs/hp_sweep/standard --save runs/hp_sweep/hp_law.json
    scaling fit-hp runs/hp_sweep --parametrization mup --plots runs/hp_sweep/mup
    python experiments/hp_sweep.py runs/hp_sweep      # the transfer check: LR* spread per parametrization

Measured (docs/hyperparameters.md, experiments/results/hp_sweep/): LR* spread over the 8x width range
10-25x under standard, 1.6-2.6x under muP; with 5 LRs a factor 2 apart, the vertices' noise alone gives
spreads up to 1.3-2.3x (95th percentile), and every muP spread's interval contains 1.5x.
:mod:`hp_transfer` re-measures it from a d16 base with 7 LRs a factor sqrt(2) apart.

A recipe can then take its LR from the fitted law: ``Recipe(lr_rule=HPLaw.load(
"runs/hp_sweep/hp_law.json"))`` (docs/hyperparameters.md).
"""

from __future__ import annotations

import math
import sys

import quickstart  # experiments/ is on sys.path while scaling.sweep.load_sweep runs this file
from scaling.sweep import HPGrid, Sweep

SIZES = (3648, 20160, 115200)  # total parameters: quickstart shapes d8, d24, d64
HORIZONS = (2e5, 4e5, 8e5)  # tokens
LR_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)  # times quickstart.peak_lr (at the base shape under muP)

SWEEP = Sweep(
    name="hp_sweep",
    recipe=quickstart.RECIPE,
    grid=HPGrid(sizes=SIZES, tokens=HORIZONS, lr_factors=LR_FACTORS, parametrizations=("standard", "mup"),
                base=SIZES[0]),
    family=quickstart.shape,
    n_basis="total",
    analysis=(("approaches", ()),),
    description="LR x width x horizon, standard vs muP (quickstart recipe and shapes)",
)


def transfer(*tables, bootstrap: int = 200) -> dict:
    """Per parametrization and horizon: LR* per width (with its interval) and the spread (max / min)
    across widths, with the spread's bootstrap interval and the spread noise alone would give
    (:func:`analysis.hp.lr_spread`); and ``regret``: per width, the loss its parabola gives at the
    smallest width's LR* minus its own best (what using the base's LR costs; NaN where that LR lies
    outside the LRs the width sampled).  Several tables (e.g. one sweep per parametrization) are
    concatenated."""
    import numpy as np
    import pandas as pd

    from analysis.data import load_table
    from analysis.hp import best_lrs, lr_spread
    from analysis.vertices import vertex

    df = pd.concat([load_table(t) for t in tables], ignore_index=True)
    df = df[df.state == "done"]
    out = {}
    for p, g in df.groupby("parametrization"):
        groups = best_lrs(g, n_col="n_total", d_col="tokens", lr_col="peak_lr", loss_col="eval_loss",
                          bootstrap=bootstrap, samples=True)
        for d, gd in groups.groupby("D"):
            s = lr_spread(gd)
            base_lr = float(gd.sort_values("N").lr.iloc[0])
            regret = {}
            for n in gd.N:
                runs = g[(g.n_total == n) & (g.tokens == d)]
                x, y = np.log(runs.peak_lr.to_numpy(float)), runs.eval_loss.to_numpy(float)
                v = vertex(0.0, x, y)
                xb = math.log(base_lr) if math.isfinite(base_lr) else math.nan
                inside = v.included and x.min() <= xb <= x.max()
                regret[n] = float(np.polyval(v.coef, xb) - v.y) if inside else math.nan
            out[(p, float(d))] = {"lr": {n: (lr, lo, hi) for n, lr, lo, hi in zip(gd.N, gd.lr, gd.lr_lo, gd.lr_hi)},
                                  "included": s["n"], "regret": regret, **s}
    return out


def format_transfer(rows: dict) -> str:
    """One line per (parametrization, horizon): LR* [interval] per width, the spread [interval], the noise floor."""
    lines = []
    for (p, d), r in rows.items():
        lrs = "  ".join(f"N={n:.0f}: {lr:.3g} [{lo:.3g}, {hi:.3g}]" for n, (lr, lo, hi) in r["lr"].items())
        lines.append(f"{p:9s} D={d:.2g}  LR* {lrs}  spread over {r['included']} widths: {r['spread']:.2f}x "
                     f"[{r['ci'][0]:.2f}, {r['ci'][1]:.2f}]; noise alone: median {r['null_median']:.2f}x, "
                     f"95th pct {r['null_hi']:.2f}x ({r['draws']} draws); loss at the smallest width's LR* "
                     f"minus best: " + "  ".join(f"N={n:.0f}: {v:+.4f}" for n, v in r["regret"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    print(format_transfer(transfer(*sys.argv[1:])))
