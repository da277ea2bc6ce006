"""The quickstart again with seed 1 (other initial weights and another order of the same batches).

The first rung of :mod:`ladder_quickstart` was registered from the seed-0 quickstart and missed
its interval; re-training that same cell would only give back the same number.  A second seed
gives a second, independent quickstart law and so a second rung to pre-register
(:mod:`ladder_quickstart_seed1`), the test of the interval method as it stands now (with the growth
floor for tables of fewer than two rollout levels, docs/predicting.md).  Same grid, recipe and
shapes as :mod:`quickstart`; only ``seed`` differs, and with it every run id::

    scaling sweep experiments/quickstart_seed1.py --out runs/quickstart_seed1
"""

from __future__ import annotations

import quickstart  # experiments/ is on sys.path while scaling.sweep.load_sweep runs this file

SWEEP = quickstart.with_seed(1)
