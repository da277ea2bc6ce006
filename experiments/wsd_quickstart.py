"""The quickstart's law from WSD trunks and forked cooldowns, at under half the FLOPs.

``scaling sweep experiments/wsd_quickstart.py --out runs/wsd_quickstart`` trains, for 7 of the
quickstart's sizes (10k-143k parameters), one warmup-stable trunk each and 6 forks per size:
token horizons of 0.8M to 6.4M tokens, the range the quickstart's IsoFLOP runs cover (from
6 to 600 tokens per parameter across the sizes, so small models see many tokens per
parameter and large ones few, as on the IsoFLOP curves), each a WSD run whose last 20%
cools down from the trunk's checkpoint.  The data are an N x D grid with a
properly annealed final loss at every point, so Approaches 1 and 3 fit it directly; a
cosine N x D grid of the same horizons would cost more than twice the FLOPs
(``scaling plan experiments/wsd_quickstart.py`` prints the savings).

Same recipe as the quickstart (:mod:`quickstart`: bytes, seq 128, batch 16, 5% warmup), same
shapes, and the quickstart's per-size LR rule times :data:`WSD_LR_FACTOR`: the cosine rule was
fitted at 10 tokens per parameter, and a trunk that holds its peak for 80% of horizons up to 600
tokens per parameter does best lower (measured by :mod:`wsd_lr_sweep`; README "Cheaper sweeps").

Every run also evaluates on the held-out set every :data:`EVAL_EVERY` steps (evaluation does not
change training), so each trunk and fork leaves an eval-loss trajectory that ``scaling fit-curves``
fits (docs/predicting.md, "Loss curves").
"""

import dataclasses

from quickstart import RECIPE, peak_lr, shape

from scaling.sweep import Sweep, WSDFork

SIZES = (10368, 20160, 33024, 48960, 67968, 90048, 143424)  # total parameters: quickstart shapes d16 ... d72
HORIZONS = (8e5, 1.6e6, 2.4e6, 3.2e6, 4.8e6, 6.4e6)  # tokens

# best trunk LR / cosine rule, geometric mean over sizes (python experiments/wsd_lr_sweep.py runs/wsd_lr_sweep)
WSD_LR_FACTOR = 0.650

# eval-loss trajectories for `scaling fit-curves`: 100 points on a trunk, >= 3 in the shortest cooldown
EVAL_EVERY = 25


def wsd_peak_lr(model, counts) -> float:
    """The cosine rule scaled for WSD trunks (``Recipe.lr_rule``)."""
    return WSD_LR_FACTOR * peak_lr(model, counts)


SWEEP = Sweep(
    name="wsd_quickstart",
    recipe=dataclasses.replace(RECIPE, lr_rule=wsd_peak_lr, eval_every=EVAL_EVERY),
    grid=WSDFork(sizes=SIZES, tokens=HORIZONS, decay_frac=0.2,
                 decay_shape="linear"),
    family=shape,
    n_basis="total",
    analysis=(("approaches", (1, 3)),),
    description="CPU: 7 sizes x 6 horizons from one WSD trunk per size (pystdlib bytes)",
)
