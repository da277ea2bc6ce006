"""The quickstart's law from WSD trunks and forked cooldowns, at under half the FLOPs.

``scaling sweep experiments/wsd_quickstart.py --out runs/wsd_quickstart`` trains, for 5 of the
quickstart's sizes, one warmup-stable trunk each and 8 forks per size: token horizons of 8 to
128 tokens per parameter (the quickstart's compute-optimal ~60 in the middle), each a WSD run
whose last 20% cools down from the trunk's checkpoint.  The data are an N x D grid with a
properly annealed final loss at every point, so Approaches 1 and 3 fit it directly; a
cosine N x D grid of the same horizons would cost more than twice the FLOPs
(``scaling plan experiments/wsd_quickstart.py`` prints the savings).

Same recipe as the quickstart (:mod:`quickstart`: bytes, seq 128, batch 16, the per-size LR
rule, 5% warmup), same shapes.  The peak LR rule was fitted for cosine runs; WSD wants about
the same peak (Hägele et al. 2024), which the comparison with the cosine quickstart tests.
"""

from quickstart import RECIPE, shape

from scaling.sweep import Sweep, WSDFork

SIZES = (20160, 33024, 48960, 67968, 90048)  # total parameters: quickstart shapes d24 ... d64 (2 layers)

SWEEP = Sweep(
    name="wsd_quickstart",
    recipe=RECIPE,
    grid=WSDFork(sizes=SIZES, tokens_per_param=(8, 16, 32, 48, 64, 80, 96, 128), decay_frac=0.2,
                 decay_shape="linear"),
    family=shape,
    n_basis="total",
    analysis=(("approaches", (1, 3)),),
    description="CPU: 5 sizes x 8 horizons from one WSD trunk per size (pystdlib bytes)",
)
