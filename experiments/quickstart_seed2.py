"""The quickstart again with seed 2: a third independent quickstart law, for a third pre-registered rung.

Two rungs at 10x the quickstart's largest budget have been pre-registered so far
(:mod:`ladder_quickstart`, seed 0: a miss, before the growth floor; :mod:`ladder_quickstart_seed1`:
inside, 6.5% below the prediction).  The method has not changed since the second, so this seed is
its second test (:mod:`ladder_quickstart_seed2`).  Same grid, recipe and shapes as :mod:`quickstart`;
only ``seed`` differs, and with it every run id::

    scaling sweep experiments/quickstart_seed2.py --out runs/quickstart_seed2
"""

from __future__ import annotations

import quickstart  # experiments/ is on sys.path while scaling.sweep.load_sweep runs this file

SWEEP = quickstart.with_seed(2)
