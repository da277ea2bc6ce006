"""A constant-LR run per size with a cooldown at every cosine horizon, to predict ``nxd_quickstart``'s cosine runs.

Why (docs/predicting.md, "Loss curves"): fitted on a constant-LR run plus cooldowns that all start
at step 2500 (:mod:`curves_constant`, :mod:`curves_constant_long`), the multi-power law predicts
``nxd_quickstart``'s cosine runs with median |error| 1.18-1.26%, and the error depends on the
horizon, not only on the schedule's shape: fitted on both cooldowns, at 6.4M tokens (the horizon
the first cooldown ends at) the cosine runs are missed by a median 0.41%; at 1.6M-3.2M tokens, far
from every fitted cooldown, by 1.5-1.8%.  This grid gives the law a cooldown at each horizon it must predict: per size one
warmup + constant-LR trunk (the cosine rule's peak LR, :mod:`curves_constant`'s recipe, eval every
:data:`curves_constant.EVAL_EVERY` steps) and one linear 20% cooldown to 0.1 x peak forked from it
at each of ``nxd_quickstart``'s 6 horizons (0.8M-6.4M tokens; fork steps 312-2,500): 7 trunks of 2,500 steps and 42
cooldowns of 78-625 steps, 4,373 steps per size where the 6 cosine runs cost 9,373.  The warmup is
the recipe's rule on the shortest horizon (20 steps, shared by trunk and forks, where the cosine
runs warm up for 20-50 steps by horizon): the law counts a warmup only through the LR area ``S1``.

Chosen before training (this file is committed before the sweep's first step)::

    scaling sweep experiments/curves_constant_forks.py --out runs/curves_constant_forks
    scaling fit-curves runs/curves_constant_forks --law multipower --fork-index 0,1,2,3,4,5 \\
        --predict experiments/nxd_quickstart.py --measured experiments/results/nxd_quickstart/results.csv

* the measurement: that fit, the unchanged multi-power fit of every size's trunk and all 6
  cooldowns, scored against the committed ``nxd_quickstart`` table (target: median |error| <= 1%
  over the 42 cosine runs);
* reported beside it, not chosen among: the same fit against the re-trained table
  (``experiments/results/nxd_quickstart_here``), the trunk + 3 cooldowns (0.8M, 2.4M, 6.4M:
  ``--fork-index 0,2,5``, a cheaper design: 3,280 steps per size), and every single cooldown
  (``benchmarks/curves_report.py cosine``).
"""

import dataclasses

import curves_constant
from wsd_quickstart import HORIZONS

from scaling.sweep import WSDFork

SWEEP = dataclasses.replace(
    curves_constant.SWEEP,  # same recipe (the cosine LR rule, eval every 25 steps), same 7 sizes
    name="curves_constant_forks",
    grid=WSDFork(sizes=curves_constant.SIZES, tokens=HORIZONS, decay_frac=0.2, decay_shape="linear"),
    description="CPU: a constant-LR trunk + a cooldown at each nxd_quickstart horizon, per size",
)
