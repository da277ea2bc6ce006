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

Same recipe as the quickstart (:mod:`quickstart`: bytes, seq 128, batch 16, the per-size LR
rule, 5% warmup), same shapes.  The peak LR rule was fitted for cosine runs; WSD wants about
the same peak (Hägele et al. 2024), which the comparison with the cosine quickstart tests.
"""

from quickstart import RECIPE, shape

from scaling.sweep import Sweep, WSDFork

SIZES = (10368, 20160, 33024, 48960, 67968, 90048, 143424)  # total parameters: quickstart shapes d16 ... d80

SWEEP = Sweep(
    name="wsd_quickstart",
    recipe=RECIPE,
    grid=WSDFork(sizes=SIZES, tokens=(8e5, 1.6e6, 2.4e6, 3.2e6, 4.8e6, 6.4e6), decay_frac=0.2,
                 decay_shape="linear"),
    family=shape,
    n_basis="total",
    analysis=(("approaches", (1, 3)),),
    description="CPU: 7 sizes x 6 horizons from one WSD trunk per size (pystdlib bytes)",
)
