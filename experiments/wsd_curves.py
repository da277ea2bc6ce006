"""A subset of :mod:`wsd_quickstart` for ``scaling fit-curves``: 3 of its 7 sizes, same cells, same run ids.

``scaling sweep experiments/wsd_curves.py --out runs/wsd_quickstart`` trains, for d16, d40 and d48
(10k, 49k and 68k parameters), exactly the trunk and 6 forks of :mod:`wsd_quickstart` (its recipe
with held-out evaluations every 25 steps; the sweep keeps the name ``wsd_quickstart``, so every
cell's run id is the full sweep's and the two share a directory).  It exists because the full
sweep looked to take over an hour on the shared 2-core machine of 2026-12-05, so these sizes were
trained first; the full sweep then finished the other four in the same directory, and
fit-curves' measured numbers (docs/predicting.md, "Loss curves") cover all 7 sizes.
"""

import dataclasses

import wsd_quickstart

SIZES = (10368, 48960, 67968)  # d16, d40, d48

SWEEP = dataclasses.replace(wsd_quickstart.SWEEP, grid=dataclasses.replace(wsd_quickstart.SWEEP.grid, sizes=SIZES),
                            description="CPU: 3 of wsd_quickstart's sizes (d16, d40, d48), eval trajectories")
