"""analysis: fit Chinchilla-style scaling laws to any table of runs.

Works on a pandas DataFrame with parameter, token (or FLOP) and loss columns whose names
are arguments, so our sweep results and published data go through the same code:

* :mod:`analysis.approaches`  Approaches 1, 2 and 3 and the compute-optimal frontier;
* :mod:`analysis.uncertainty` bootstrap intervals, identifiability, backtests;
* :mod:`analysis.published`   published laws, model points and Chinchilla's tables;
* :mod:`analysis.plots`       Figures 3/4-style plots (PNG + SVG);
* :mod:`analysis.report`      fits.json / fits.md / plots in one call; ``scaling fit`` CLI.

No JAX anywhere: the 4,500-start Approach 3 fit is a damped Newton method vectorised
over starts in numpy (float64).
"""

from analysis.approaches import (Approach1Result, Approach2Result, Approach3Result, LawParams,
                                 fit_approach1, fit_approach2, fit_approach3, fit_law,
                                 hoffmann_grid, huber_objective)
from analysis.data import bin_budgets, load_table, prepare

__all__ = ["Approach1Result", "Approach2Result", "Approach3Result", "LawParams",
           "fit_approach1", "fit_approach2", "fit_approach3", "fit_law", "hoffmann_grid",
           "huber_objective", "bin_budgets", "load_table", "prepare"]
