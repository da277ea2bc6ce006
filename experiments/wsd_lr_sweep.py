"""Peak learning rate for WSD trunks: the data behind ``wsd_quickstart``'s LR rule.

The quickstart's per-size rule (:func:`quickstart.peak_lr`) was fitted on cosine runs at 10
tokens per parameter.  A WSD trunk holds its peak for 80% of every horizon and one trunk
serves horizons from 6 to 600 tokens per parameter, so its best peak need not be cosine's.
Two sizes of ``wsd_quickstart`` (d24 and d40), each one trunk per peak LR (five, a factor 2
apart, bracketing the cosine rule at both sizes) with forks at 0.8M-6.4M tokens, the
``wsd_quickstart`` span: 50 cells, about 5 minutes on 2 CPU cores::

    scaling sweep experiments/wsd_lr_sweep.py --out runs/wsd_lr_sweep
    python experiments/wsd_lr_sweep.py runs/wsd_lr_sweep

Fit (chosen before looking at any fork loss): a trunk's LR is shared by all its horizons, so
per size the best LR is the vertex of a parabola in log LR through the mean fork loss per LR
(the lowest point and its neighbours, :func:`analysis.hp.best_lrs`); the WSD rule is the cosine rule
times the geometric mean over sizes of best / cosine-rule LR (two sizes cannot pin the exponent
better than ``lr_sweep.py``'s three, so the exponent stays).  Each horizon's own best LR is
printed beside it, to show how much a shared trunk gives up.
"""

from __future__ import annotations

import sys

import quickstart  # experiments/ is on sys.path while scaling.sweep.load_sweep runs this file
from scaling.sweep import Sweep, WSDFork

SIZES = (20160, 48960)  # total parameters: quickstart shapes d24 and d40
HORIZONS = (8e5, 1.6e6, 3.2e6, 6.4e6)
LRS = (3.25e-3, 6.5e-3, 1.3e-2, 2.6e-2, 5.2e-2)  # cosine rule: 2.6e-2 (d24), 1.3e-2 (d40)

SWEEP = Sweep(
    name="wsd_lr_sweep",
    recipe=quickstart.RECIPE,
    grid=WSDFork(sizes=SIZES, tokens=HORIZONS, decay_frac=0.2, decay_shape="linear", peak_lrs=LRS),
    family=quickstart.shape,
    n_basis="total",
    description="peak LR x size for WSD trunks with forks at 0.8M-6.4M tokens (quickstart recipe and shapes)",
)


def fit_lr_factor(results_csv: str) -> dict:
    """Per size the best trunk LR for the mean fork loss, per (size, horizon) the best LR, and
    the factor (geometric mean over sizes) by which the cosine rule should be scaled for WSD
    (vertices of :func:`analysis.hp.best_lrs`, lowest point and its neighbours)."""
    import numpy as np
    import pandas as pd

    from analysis import hp

    df = pd.read_csv(results_csv)
    forks = df[(df.state == "done") & (df.group == "wsd_fork")]
    rule = {float(n): quickstart.lr_for(n) for n in forks.n_total.unique()}
    mean = forks.groupby(["n_total", "peak_lr"]).eval_loss.mean().reset_index()
    cols = dict(n_col="n_total", lr_col="peak_lr", loss_col="eval_loss", local=True, bootstrap=0)
    best = {float(g.N): float(g.lr) for g in hp.best_lrs(mean, d_col=None, **cols).itertuples()}
    per_h = {(float(g.N), float(g.D)): (float(g.lr), forks[(forks.n_total == g.N) & (forks.tokens == g.D)]
                                        .sort_values("peak_lr").eval_loss.round(4).tolist())
             for g in hp.best_lrs(forks, d_col="tokens", **cols).itertuples()}
    factor = float(np.exp(np.mean([np.log(best[n] / rule[n]) for n in best])))
    return {"best": best, "rule": rule, "per_horizon": per_h, "factor": factor,
            "mean_loss": {float(n): g.sort_values("peak_lr").eval_loss.round(4).tolist()
                          for n, g in mean.groupby("n_total")}}


if __name__ == "__main__":
    out = fit_lr_factor(sys.argv[1].rstrip("/") + "/results.csv")
    print(f"peak LRs: {LRS}")
    for n, lr in out["best"].items():
        print(f"N={n:7.0f}  cosine rule {out['rule'][n]:.3g}  best trunk LR {lr:.3g} ({lr / out['rule'][n]:.2f}x)  "
              f"mean fork loss per LR: {out['mean_loss'][n]}")
        for (m, t), (lr_h, losses) in sorted(out["per_horizon"].items()):
            if m == n:
                print(f"    {t:9.3g} tokens ({t / n:5.0f}/param): best LR {lr_h:.3g}  losses {losses}")
    print(f"WSD rule = cosine rule x {out['factor']:.3f}")
