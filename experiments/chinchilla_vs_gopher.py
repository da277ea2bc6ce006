"""Chinchilla vs Gopher by training: the two allocation rules at equal compute.

At each budget train the size Chinchilla's rule prescribes (20 tokens per parameter,
``N ∝ C^0.5``) and the size Kaplan's rule prescribes (``N ∝ C^0.73``), both anchored at the
same point (a budget 10x below the smallest), with the same data and recipe.  The report
compares the final eval losses per budget; the Chinchilla allocation is expected to win.
CPU-sized: the quickstart's 3 budgets on ``pystdlib`` (bytes), same recipe, shapes and LR rule.
"""

from scaling.sweep import Allocation, Prior, Sweep

import quickstart  # experiments/ is on sys.path while scaling.sweep.load_sweep runs this file

RECIPE = quickstart.RECIPE

SWEEP = Sweep(
    name="chinchilla_vs_gopher",
    recipe=RECIPE,
    grid=Allocation(budgets=(2e11, 6e11, 2e12), prior=Prior(tokens_per_param=20.0), anchor_factor=10.0),
    family=quickstart.shape,  # the quickstart's shape family and per-size LR rule
    n_basis="total",
    analysis=(("approaches", ()),),  # 2 sizes per budget: compare the allocations, fit no law
    description="Chinchilla rule vs Kaplan rule at 3 budgets (pystdlib)",
)
