"""A constant-LR run per size (plus one cooldown from it), to predict ``nxd_quickstart``'s cosine runs.

``scaling sweep experiments/curves_constant.py --out runs/curves_constant`` trains, for
:data:`SIZES` (all 7 of :mod:`nxd_quickstart`'s sizes; 14 runs, about 29 minutes of sweep wall on 2
cores shared with one other sweep), with
nxd_quickstart's exact recipe (the quickstart's: bytes, seq 128, batch 16, the cosine per-size
peak LR, the 50-step warmup of its horizons >= 1000 steps), one warmup + constant-LR run of 2500 steps (group ``wsd_trunk``) and one linear cooldown forked from it at step 2500 to
0.1 x peak at step 3125 (the longest cosine horizon, 6.4M tokens): the FLOPs of one cosine run per
size, evaluated on the held-out set every :data:`EVAL_EVERY` steps.

``scaling fit-curves runs/curves_constant --predict experiments/nxd_quickstart.py --measured
experiments/results/nxd_quickstart/results.csv`` fits each size's loss-curve law to these two
eval trajectories and predicts the final loss of every cosine run of ``nxd_quickstart`` (all 6
horizons), beside the measured ones (docs/predicting.md, "Loss curves").  Why the cooldown: a
constant-LR curve alone says nothing about how much annealing lowers the loss (every annealing
constant of both laws multiplies a term that is zero on it), so the one 625-step cooldown is what
pins it; the trunk is the constant-LR run.
"""

import dataclasses

import wsd_quickstart
from quickstart import RECIPE, shape

from scaling.sweep import Sweep, WSDFork

SIZES = wsd_quickstart.SIZES  # all 7 of nxd_quickstart's sizes, d16 ... d72 (10k ... 143k parameters)
EVAL_EVERY = 25
LONGEST = 6.4e6  # tokens: nxd_quickstart's longest horizon, 3125 steps of 2048 tokens

SWEEP = Sweep(
    name="curves_constant",
    recipe=dataclasses.replace(RECIPE, eval_every=EVAL_EVERY),
    grid=WSDFork(sizes=SIZES, tokens=(LONGEST,), decay_frac=0.2, decay_shape="linear"),
    family=shape,
    n_basis="total",
    analysis=(),
    description="CPU: a constant-LR trunk + one cooldown per nxd_quickstart size, eval trajectories",
)
