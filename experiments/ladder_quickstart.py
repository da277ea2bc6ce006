"""The quickstart's next rung, pre-registered: the compute-optimal run at 10x its largest budget.

``scaling sweep experiments/ladder_quickstart.py --out runs/ladder_quickstart`` fits the law of
the committed quickstart table (``experiments/results/quickstart``: 3 budgets x 5 sizes up to
2.5e12 FLOPs), plans the compute-optimal cell at 2.5e13 FLOPs with the quickstart's recipe and
shape rule, writes its predicted loss and 95% prediction interval into the run directory
(``prediction.json``) before the first step, trains it, and scores it: the results table's
``predicted_loss``, ``predicted_pi_lo/hi`` and ``prediction_inside``, and the report's
"Pre-registered predictions" section.  One cell; ~10-15 minutes on 2 CPU cores.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import quickstart  # noqa: E402  (the recipe and shape rule of the rungs below)

from scaling.sweep import Ladder, Sweep  # noqa: E402

SWEEP = Sweep(
    name="ladder_quickstart",
    recipe=quickstart.RECIPE,
    grid=Ladder(fit=str(HERE / "results" / "quickstart"), target_c=(2.5e13,)),
    family=quickstart.shape,
    n_basis="total",
    analysis=(("approaches", ()),),  # one run: nothing to fit; the report scores the prediction
    description="the quickstart's compute-optimal run at 10x its largest budget, predicted before training",
)


def rung_from(qs: Sweep) -> Sweep:
    """This rung planned from another quickstart sweep (:func:`quickstart.with_seed`): its committed
    results (``experiments/results/<its name>``) and its recipe, named ``ladder_<its name>``."""
    return dataclasses.replace(
        SWEEP, name=f"ladder_{qs.name}", recipe=qs.recipe,
        grid=Ladder(fit=str(HERE / "results" / qs.name), target_c=(2.5e13,)),
        description=f"the seed-{qs.recipe.seed} quickstart's compute-optimal run at 10x its largest budget, "
                    "predicted before training")
