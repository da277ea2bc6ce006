"""A small learning-rate sweep over sizes: the data behind the quickstart's per-size LR rule.

Three sizes spanning the quickstart's grid (2e4-1.8e5 total parameters, same shape family,
recipe and data) each train at 10 tokens per parameter with five peak LRs a factor 2 apart:
15 short cosine runs, about 5 minutes on 2 CPU cores::

    scaling sweep experiments/lr_sweep.py --out runs/lr_sweep

Fit (:mod:`analysis.hp`, as ``scaling fit-hp --law n --local`` does): per size, a parabola in
log LR through (log LR, eval loss) gives the best LR; a line through (log N, log LR*) gives ``LR*(N) = LR_REF (N / N_REF)^-LR_EXP``, which
``experiments/quickstart.py`` plugs into ``Recipe.lr_rule`` (the measured numbers are in
the README, "Science on a laptop").  ``python experiments/lr_sweep.py runs/lr_sweep``
prints that fit from a finished sweep.
"""

from __future__ import annotations

import sys

from scaling.sweep import NxD, Sweep

import quickstart  # experiments/ is on sys.path while scaling.sweep.load_sweep runs this file

LRS = (3e-3, 6e-3, 1.2e-2, 2.4e-2, 4.8e-2)

SWEEP = Sweep(
    name="lr_sweep",
    recipe=quickstart.RECIPE,
    grid=NxD(sizes=(2e4, 6e4, 1.8e5), tokens_per_param=(10.0,), peak_lrs=LRS),
    family=quickstart.shape,
    n_basis="total",
    description="peak LR x size at 10 tokens/param (quickstart recipe and shapes)",
)


def fit_lr_rule(results_csv: str) -> dict:
    """Best LR per size (parabola in log LR through the lowest point and its neighbours,
    clipped to them) and the power law in N through them (:mod:`analysis.hp`; every size is at
    10 tokens per parameter, so D carries no information of its own: groups by N, ``law="n"``)."""
    import pandas as pd

    from analysis import hp

    df = pd.read_csv(results_csv)
    groups = hp.best_lrs(df, n_col="n_total", d_col=None, lr_col="peak_lr", loss_col="eval_loss", local=True,
                         bootstrap=0)
    law = hp.fit_law(groups, law="n", bootstrap=0)
    done = df[df.state == "done"]
    best = [(float(g.N), float(g.lr), done[done.n_total == g.N].sort_values("peak_lr").eval_loss.round(4).tolist())
            for g in groups.itertuples()]
    return {"best": best, "lr_exp": float(-law.exponents[0]), "lr_at_1e5": law.predict(N=1e5)}


if __name__ == "__main__":
    out = fit_lr_rule(sys.argv[1].rstrip("/") + "/results.csv")
    for n, lr, losses in out["best"]:
        print(f"N={n:9.0f}  best LR={lr:.3g}  losses at {LRS}: {losses}")
    print(f"LR*(N) = {out['lr_at_1e5']:.3g} * (N / 1e5)^-{out['lr_exp']:.3f}")
