"""A small learning-rate sweep over sizes: the data for a per-size LR rule.

Every size of the quickstart's range trains at 20 tokens per parameter with each peak LR
(a factor ~2 apart); ``issue 6`` fits ``peak_lr(N)`` on the best LR per size and plugs it
into ``Recipe.lr_rule``.  Same recipe as the quickstart otherwise.
"""

from scaling.sweep import NxD, Sweep

import quickstart  # experiments/ is on sys.path while scaling.sweep.load_sweep runs this file

SWEEP = Sweep(
    name="lr_sweep",
    recipe=quickstart.SWEEP.recipe,
    grid=NxD(sizes=(2e4, 6e4, 2e5), tokens_per_param=(20.0,), peak_lrs=(1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2)),
    n_basis="total",
    description="peak LR x size at 20 tokens/param",
)
