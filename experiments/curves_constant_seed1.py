"""``curves_constant`` again with seed 1: how much the cosine-from-constant measurement moves with the seed.

Three designs of the fitted runs (:mod:`curves_constant`, :mod:`curves_constant_long`,
:mod:`curves_constant_forks`) predicted ``nxd_quickstart``'s 42 cosine runs with median |error|
1.18-1.68%, and the one-cooldown fit of :mod:`curves_constant_forks`' trunk (the same design as
:mod:`curves_constant` but for a 20-step warmup instead of 50) gave 2.22% where
:mod:`curves_constant` gave 1.26%.  This sweep separates design from chance: the same grid and
recipe as :mod:`curves_constant` with only ``seed`` changed (other initial weights, another order
of the same batches; every run id changes with it), so the fitted runs no longer share their
initialization and batch order with the seed-0 cosine runs they predict, as a user's runs would
not.  Registered before training (this file is committed before the sweep's first step), and
reported as the spread of that measurement, not as another try at the 1% target::

    scaling sweep experiments/curves_constant_seed1.py --out runs/curves_constant_seed1
    scaling fit-curves runs/curves_constant_seed1 --law multipower \\
        --predict experiments/nxd_quickstart.py --measured experiments/results/nxd_quickstart/results.csv

(the committed seed-0 table; :mod:`nxd_quickstart`'s cells have the seed-0 run ids, so
``--predict`` reads them from that table).  14 runs, 21,875 steps.
"""

import dataclasses

import curves_constant

SWEEP = dataclasses.replace(
    curves_constant.SWEEP, name="curves_constant_seed1",
    recipe=dataclasses.replace(curves_constant.SWEEP.recipe, seed=1),
    description="CPU: curves_constant (a constant-LR trunk + one cooldown per size) with seed 1",
)
