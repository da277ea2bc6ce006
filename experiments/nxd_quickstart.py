"""The cosine reference for ``wsd_quickstart``: the same 42 (size, horizon) points as independent runs.

``scaling sweep experiments/nxd_quickstart.py --out runs/nxd_quickstart`` trains every size of
:mod:`wsd_quickstart` at each of its token horizons from scratch with the quickstart's recipe
(cosine to its own horizon, the cosine LR rule): the grid the forks replace, at about twice
their FLOPs (about 14 minutes on 2 CPU cores).  Fitting both tables compares the schedules on
one design; the cosine quickstart (an IsoFLOP design over other (N, D) points) is not that
comparison, because Approach 3's exponent moves with the points it is given.  Both tables
hold the same points, so ``scaling fit`` compares them paired (the same resamples from both)::

    scaling fit runs/nxd_quickstart --approach 3 --compare runs/wsd_quickstart --labels "cosine N x D,WSD forks"
"""

from quickstart import RECIPE, shape
from wsd_quickstart import HORIZONS, SIZES

from scaling.sweep import NxD, Sweep

SWEEP = Sweep(
    name="nxd_quickstart",
    recipe=RECIPE,
    grid=NxD(sizes=SIZES, tokens=HORIZONS),
    family=shape,
    n_basis="total",
    analysis=(("approaches", (1, 3)),),
    description="CPU: wsd_quickstart's 7 sizes x 6 horizons as independent cosine runs (pystdlib bytes)",
)
