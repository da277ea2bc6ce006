"""A fourth pre-registered rung: the compute-optimal run at 10x the largest budget of the seed-3 quickstart.

The third test of the interval method as it stands since :mod:`ladder_quickstart_seed1` (the growth
floor for tables of fewer than two rollout levels; unchanged since, docs/predicting.md): the law of
:mod:`quickstart_seed3` (committed in ``experiments/results/quickstart_seed3``), the compute-optimal
cell at 2.5e13 FLOPs planned from it with the quickstart's recipe (seed 3) and shape rule, its loss and
interval written into ``prediction.json`` before the first step, then trained and scored
(``predicted_loss``, ``predicted_pi_lo/hi``, ``prediction_inside``)::

    scaling sweep experiments/ladder_quickstart_seed3.py --out runs/ladder_quickstart_seed3
"""

from __future__ import annotations

import ladder_quickstart  # experiments/ is on sys.path while scaling.sweep.load_sweep runs this file
import quickstart_seed3

SWEEP = ladder_quickstart.rung_from(quickstart_seed3.SWEEP)
