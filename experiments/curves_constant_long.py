"""A second, longer cooldown from each of ``curves_constant``'s constant-LR trunks.

``curves_constant`` fits each size's loss-curve law to a constant-LR run plus one 625-step
linear cooldown (20% of 3125 steps) and predicts ``nxd_quickstart``'s cosine runs with median
|error| 1.26% (docs/predicting.md, "Loss curves"): 36 of 42 over-predicted, so one short
cooldown under-teaches how much a long decay helps.  This grid adds, per size, one linear
cooldown twice as long, forked from the same trunk checkpoint at step 2500 and ending at step
3750 (decay 1/3 of a 7.68M-token horizon, to 0.1 x peak).  The sweep keeps ``curves_constant``'s
name, so its trunks are that sweep's own (same run ids): copy ``runs/curves_constant`` and
sweep into the copy, and only the 7 new forks train (8,750 steps; 298 s of sweep wall on 2
cores)::

    cp -r runs/curves_constant runs/curves_constant_long
    scaling sweep experiments/curves_constant_long.py --out runs/curves_constant_long
    scaling fit-curves runs/curves_constant_long --law multipower --fork-index 0,1 \\
        --predict experiments/nxd_quickstart.py --measured experiments/results/nxd_quickstart/results.csv

``--fork-index 0,1`` fits the trunk and both cooldowns.  Chosen before training: the cooldown
length (2 x 625 steps, the longest the existing trunk checkpoint allows without a new trunk),
the fit (the same multi-power fit, both forks joining the trunk) and the measured table (the
committed ``nxd_quickstart`` results).
"""

import dataclasses

import curves_constant

from scaling.sweep import WSDFork

SWEEP = dataclasses.replace(
    curves_constant.SWEEP,  # same name and recipe: the trunks are curves_constant's
    grid=WSDFork(sizes=curves_constant.SIZES, tokens=(7.68e6,), decay_frac=1 / 3, decay_shape="linear"),
    description="CPU: a 1,250-step cooldown from each curves_constant trunk (a second cooldown per size)",
)
