"""A third pre-registered rung: the compute-optimal run at 10x the largest budget of the seed-2 quickstart.

The second test of the interval method as it stands since :mod:`ladder_quickstart_seed1` (the growth
floor for tables of fewer than two rollout levels; unchanged since, docs/predicting.md): the law of
:mod:`quickstart_seed2` (committed in ``experiments/results/quickstart_seed2``), the compute-optimal
cell at 2.5e13 FLOPs planned from it with the quickstart's recipe (seed 2) and shape rule, its loss and
interval written into ``prediction.json`` before the first step, then trained and scored
(``predicted_loss``, ``predicted_pi_lo/hi``, ``prediction_inside``)::

    scaling sweep experiments/ladder_quickstart_seed2.py --out runs/ladder_quickstart_seed2
"""

from __future__ import annotations

import ladder_quickstart  # experiments/ is on sys.path while scaling.sweep.load_sweep runs this file
import quickstart_seed2

SWEEP = ladder_quickstart.rung_from(quickstart_seed2.SWEEP)
