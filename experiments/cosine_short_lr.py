"""Is cosine's deficit at short horizons its learning rate?  A cosine LR sweep at 0.8M tokens.

On ``wsd_quickstart``'s shortest horizon (0.8M tokens, 390 steps) the WSD forks end 0.9-3.3%
below independent cosine runs of the same points (``nxd_quickstart``), the larger the model the
more, and that gap is what separates the two designs' fitted exponents.  If the cosine LR rule
(fitted at 10 tokens per parameter) were simply wrong for 390-step runs, a better cosine LR
would close it.  This sweep trains two of the sizes (d40, 49k parameters, and d64, 143k) at
0.8M tokens with seven peak LRs (a factor ~1.41 apart, 0.2x-1.7x the rule at 49k, 0.5x-4x at 143k):
14 cells, about 4 minutes on 2 CPU cores::

    scaling sweep experiments/cosine_short_lr.py --out runs/cosine_short_lr
    python experiments/cosine_short_lr.py runs/cosine_short_lr experiments/results/wsd_quickstart/results.csv

prints each size's best cosine loss over the LRs beside the WSD fork's loss at the same point.
"""

from __future__ import annotations

import sys

import quickstart  # experiments/ is on sys.path while scaling.sweep.load_sweep runs this file
from scaling.sweep import NxD, Sweep

SIZES = (48960, 143424)   # total parameters: quickstart shapes d40 and d64
TOKENS = 8e5              # wsd_quickstart's shortest horizon
LRS = (2.83e-3, 4e-3, 5.6e-3, 8e-3, 1.13e-2, 1.6e-2, 2.26e-2)   # cosine rule: 1.30e-2 (d40), 5.57e-3 (d64)

SWEEP = Sweep(
    name="cosine_short_lr",
    recipe=quickstart.RECIPE,
    grid=NxD(sizes=SIZES, tokens=(TOKENS,), peak_lrs=LRS),
    family=quickstart.shape,
    n_basis="total",
    description="cosine peak LR x size at 0.8M tokens (390 steps), against wsd_quickstart's forks",
)


def best_cosine_vs_fork(sweep_csv: str, forks_csv: str) -> list[dict]:
    """Per size: the cosine loss at every LR, the best of them, and the WSD fork's loss at the
    same (N, tokens)."""
    import pandas as pd

    cos = pd.read_csv(sweep_csv)
    cos = cos[cos.state == "done"]
    forks = pd.read_csv(forks_csv)
    forks = forks[(forks.state == "done") & (forks.group == "wsd_fork")]
    out = []
    for n, g in cos.groupby("n_total"):
        g = g.sort_values("peak_lr")
        fork = forks[(forks.n_total == n) & ((forks.tokens - g.tokens.iloc[0]).abs() < 1)]
        best = g.loc[g.eval_loss.idxmin()]
        out.append({"n_total": int(n), "tokens": int(g.tokens.iloc[0]), "steps": int(g.steps.iloc[0]),
                    "rule_lr": quickstart.lr_for(n), "lrs": g.peak_lr.tolist(), "losses": g.eval_loss.tolist(),
                    "best_lr": float(best.peak_lr), "best_loss": float(best.eval_loss),
                    "fork_loss": float(fork.eval_loss.iloc[0]) if len(fork) else float("nan"),
                    "fork_lr": float(fork.peak_lr.iloc[0]) if len(fork) else float("nan")})
    return out


if __name__ == "__main__":
    for r in best_cosine_vs_fork(sys.argv[1].rstrip("/") + "/results.csv", sys.argv[2]):
        print(f"N={r['n_total']:7d}  {r['tokens']:.3g} tokens ({r['steps']} steps)  cosine rule LR {r['rule_lr']:.3g}")
        print("    cosine loss per LR: " + ", ".join(f"{lr:.3g}: {v:.4f}" for lr, v in zip(r["lrs"], r["losses"])))
        print(f"    best cosine {r['best_loss']:.4f} (LR {r['best_lr']:.3g})   WSD fork {r['fork_loss']:.4f} "
              f"(LR {r['fork_lr']:.3g})   fork - best cosine {100 * (r['fork_loss'] / r['best_loss'] - 1):+.2f}%")
