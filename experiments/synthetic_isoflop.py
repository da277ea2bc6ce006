"""Known-truth check: the quickstart's IsoFLOP pipeline on ``synthetic_markov``.

The source is a seeded Markov chain whose exact entropy rate (nats/token) is in the task
metadata and in every run's summary; the Approach-3 fit's E should land within 5% of it.
"""

import dataclasses

from scaling.config import DataConfig
from scaling.sweep import IsoFLOP, Prior, Sweep

import quickstart  # experiments/ is on sys.path while scaling.sweep.load_sweep runs this file

SWEEP = Sweep(
    name="synthetic_isoflop",
    recipe=dataclasses.replace(quickstart.RECIPE, data=DataConfig(task="synthetic_markov", repeat=True)),
    grid=IsoFLOP(budgets=(1e11, 3e11, 1e12), n_sizes=5, span=3.0, prior=Prior(tokens_per_param=20.0)),
    family=quickstart.shape,
    n_basis="total",
    description="IsoFLOP on a source with known entropy rate",
)
