"""The quickstart again with seed 3: a fourth independent quickstart law, for a fourth pre-registered rung.

Three rungs at 10x the quickstart's largest budget have been pre-registered so far
(:mod:`ladder_quickstart`, seed 0: a miss, before the growth floor; :mod:`ladder_quickstart_seed1`
and :mod:`ladder_quickstart_seed2`: inside, 6.5% and 4.4% below their predictions).  The method has
not changed since the second, so this seed is its third test (:mod:`ladder_quickstart_seed3`).  Same
grid, recipe and shapes as :mod:`quickstart`; only ``seed`` differs, and with it every run id::

    scaling sweep experiments/quickstart_seed3.py --out runs/quickstart_seed3
"""

from __future__ import annotations

import quickstart  # experiments/ is on sys.path while scaling.sweep.load_sweep runs this file

SWEEP = quickstart.with_seed(3)
