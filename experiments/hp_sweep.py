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
10-25x under standard, 1.6-2.6x under muP.

A recipe can then take its LR from the fitted law: ``Recipe(lr_rule=HPLaw.load(
"runs/hp_sweep/hp_law.json"))`` (docs/hyperparameters.md).
"""

from __future__ import annotations

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


def transfer(table) -> dict:
    """Per parametrization and horizon: LR* per width and its spread (max / min) across widths."""
    from analysis.data import load_table
    from analysis.hp import best_lrs

    df = load_table(table)
    out = {}
    for p, g in df[df.state == "done"].groupby("parametrization"):
        groups = best_lrs(g, n_col="n_total", d_col="tokens", lr_col="peak_lr", loss_col="eval_loss", bootstrap=200)
        for d, gd in groups.groupby("D"):
            ok = gd[gd.included]
            spread = float(ok.lr.max() / ok.lr.min()) if len(ok) >= 2 else float("nan")
            out[(p, float(d))] = {"lr": dict(zip(gd.N, gd.lr)), "included": int(len(ok)), "spread": spread}
    return out


if __name__ == "__main__":
    for (p, d), r in transfer(sys.argv[1]).items():
        lrs = "  ".join(f"N={n:.0f}: {lr:.3g}" for n, lr in r["lr"].items())
        print(f"{p:9s} D={d:.2g}  LR* {lrs}  spread over {r['included']} widths: {r['spread']:.2f}x")
