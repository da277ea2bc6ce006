"""A second pre-registered rung: the compute-optimal run at 10x the largest budget of the seed-1 quickstart.

:mod:`ladder_quickstart`'s rung (from the seed-0 quickstart) missed its 95% interval, 1.2840 against
[1.2906, 1.4830]; the growth floor added after it (docs/predicting.md) would have covered it, but that
is a re-score made after the outcome.  This rung is the test made before one: the law of
:mod:`quickstart_seed1` (committed in ``experiments/results/quickstart_seed1``), the compute-optimal
cell at 2.5e13 FLOPs planned from it with the quickstart's recipe (seed 1) and shape rule, its loss
and interval written into ``prediction.json`` before the first step by the interval method as it
stands, then trained and scored (``predicted_loss``, ``predicted_pi_lo/hi``, ``prediction_inside``)::

    scaling sweep experiments/ladder_quickstart_seed1.py --out runs/ladder_quickstart_seed1
"""

from __future__ import annotations

import ladder_quickstart  # experiments/ is on sys.path while scaling.sweep.load_sweep runs this file
import quickstart_seed1

SWEEP = ladder_quickstart.rung_from(quickstart_seed1.SWEEP)
