"""``nxd_quickstart``'s 42 (size, horizon) points trained with LRs from the fitted law LR*(N, D).

The same sizes, horizons and recipe as :mod:`nxd_quickstart` (cosine runs from scratch), except
that each cell's peak LR comes from the law ``experiments/hp_sweep.py`` fitted
(``experiments/results/hp_sweep/hp_law.json``, standard parametrization) instead of the
quickstart's per-size rule.  Both tables hold the same points, so ``scaling fit --compare``
pairs them (about 14 minutes on 2 CPU cores)::

    scaling sweep experiments/nxd_quickstart_law.py --out runs/nxd_quickstart_law
    scaling fit runs/nxd_quickstart --approach 3 --compare runs/nxd_quickstart_law --labels "per-size rule,LR law"
    python experiments/nxd_quickstart_law.py runs/nxd_quickstart runs/nxd_quickstart_law   # per-point table

(``scaling fit`` and this script take a sweep directory or its ``results.csv``, e.g. the
committed ``experiments/results/nxd_quickstart/results.csv``.)

Note the law was fitted on horizons of 0.2M-0.8M tokens; these points reach 6.4M, so its D
exponent is extrapolated up to 8x beyond the data it came from.
"""

import dataclasses
import sys
from pathlib import Path

from nxd_quickstart import SWEEP as REFERENCE
from quickstart import RECIPE

from analysis.hp import HPLaw

LAW = Path(__file__).resolve().parent / "results" / "hp_sweep" / "hp_law.json"

SWEEP = dataclasses.replace(
    REFERENCE,
    name="nxd_quickstart_law",
    recipe=dataclasses.replace(RECIPE, lr_rule=HPLaw.load(LAW)),
    description="CPU: nxd_quickstart's 42 points with peak LRs from hp_sweep's fitted LR*(N, D)",
)


def paired_points(table_a, table_b):
    """Per (N, D) point of both tables (finished runs): the two peak LRs and eval losses and
    ``diff = loss_b - loss_a`` (negative: B's LR did better), sorted by N then D."""
    from analysis.data import load_table

    keys = ["n_total", "tokens"]
    a, b = (load_table(t) for t in (table_a, table_b))
    a, b = (t[t.state == "done"][keys + ["peak_lr", "eval_loss"]] for t in (a, b))
    m = a.merge(b, on=keys, suffixes=("_a", "_b")).sort_values(keys).reset_index(drop=True)
    m["lr_ratio"] = m.peak_lr_b / m.peak_lr_a
    m["diff"] = m.eval_loss_b - m.eval_loss_a
    return m


def to_markdown(m, labels=("per-size rule", "LR law")) -> str:
    a, b = labels
    lines = [f"| N (total) | D (tokens) | LR {a} | LR {b} | ratio | loss {a} | loss {b} | {b} - {a} |",
             "|---|---|---|---|---|---|---|---|"]
    for r in m.itertuples():
        lines.append(f"| {r.n_total:,} | {r.tokens:.3g} | {r.peak_lr_a:.4g} | {r.peak_lr_b:.4g} | {r.lr_ratio:.2f} | "
                     f"{r.eval_loss_a:.4f} | {r.eval_loss_b:.4f} | {r.diff:+.4f} |")
    d = m["diff"]
    lines.append("")
    lines.append(f"{len(m)} paired points; {b} - {a}: mean {d.mean():+.4f}, median {d.median():+.4f}, "
                 f"min {d.min():+.4f}, max {d.max():+.4f}; lower under {b} at {(d < 0).sum()} of {len(m)}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(to_markdown(paired_points(sys.argv[1], sys.argv[2])))
