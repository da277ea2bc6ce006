"""``nxd_quickstart``'s 42 (size, horizon) points trained with LRs from the fitted law LR*(N, D).

The same sizes, horizons and recipe as :mod:`nxd_quickstart` (cosine runs from scratch), except
that each cell's peak LR comes from the law ``experiments/hp_sweep.py`` fitted
(``experiments/results/hp_sweep/hp_law.json``, standard parametrization) instead of the
quickstart's per-size rule.  Both tables hold the same points, so ``scaling fit --compare``
pairs them (about 14 minutes on 2 CPU cores)::

    scaling sweep experiments/nxd_quickstart_law.py --out runs/nxd_quickstart_law
    scaling fit runs/nxd_quickstart --approach 3 --compare runs/nxd_quickstart_law --labels "per-size rule,LR law"

Note the law was fitted on horizons of 0.2M-0.8M tokens; these points reach 6.4M, so its D
exponent is extrapolated up to 8x beyond the data it came from.
"""

import dataclasses
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
