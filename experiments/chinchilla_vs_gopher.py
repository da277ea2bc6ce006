"""Chinchilla vs Gopher by training: the two allocation rules at equal compute.

At each budget train the size Chinchilla's rule prescribes (20 tokens per parameter,
``N ∝ C^0.5``) and the size Kaplan's rule prescribes (``N ∝ C^0.73``), both anchored at the
same point (a budget 10x below the smallest), with the same data and recipe.  The report
compares the final eval losses per budget; the Chinchilla allocation is expected to win.
CPU-sized: 3 budgets on ``pystdlib``, same recipe as the quickstart.
"""

from scaling.sweep import Allocation, Prior, Sweep

import quickstart  # experiments/ is on sys.path while scaling.sweep.load_sweep runs this file

RECIPE = quickstart.SWEEP.recipe

SWEEP = Sweep(
    name="chinchilla_vs_gopher",
    recipe=RECIPE,
    grid=Allocation(budgets=(3e11, 1e12, 3e12), prior=Prior(tokens_per_param=20.0), anchor_factor=10.0),
    n_basis="total",
    description="Chinchilla rule vs Kaplan rule at 3 budgets (pystdlib)",
)
