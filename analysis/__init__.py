"""analysis: fit scaling laws to any table of runs.

Works on a pandas DataFrame whose column names are arguments, so our sweep results and
published data go through the same code:

* :mod:`analysis.data`        input checks; any two of N, D, C; FLOPs conventions;
* :mod:`analysis.vertices`    parabola vertex per group + power law (numpy only);
* :mod:`analysis.laws`        loss laws (Chinchilla, Kaplan, user-defined) as objects;
  :mod:`analysis.data_constrained` Muennighoff et al.'s law for repeated data;
* :mod:`analysis.solver`      the multistart Huber solver every law goes through;
* :mod:`analysis.approaches`  Approaches 1, 2 and 3 and the compute-optimal frontier;
* :mod:`analysis.uncertainty` bootstrap and prediction intervals; :mod:`analysis.diagnostics`
  identifiability and backtests;
* :mod:`analysis.recipes`     ``analysis.compare``: recipe B against recipe A, compute-equivalent gain;
* :mod:`analysis.prediction`  ``analysis.predict``: the loss at any (N, D) with intervals calibrated by rollouts;
* :mod:`analysis.tasks`       downstream tasks: accuracy from (N, D) through the task loss and a sigmoid
  (OLMo ladder) or from the LM loss (Gadre et al.), chained with intervals (``scaling fit --task``);
  :mod:`analysis.task_plots` their figures;
* :mod:`analysis.hp`          hyperparameter laws: best LR per group, ``LR* = c N^a D^b``, law files
  recipes read (``scaling fit-hp``); :mod:`analysis.hp_plots` their figures;
* :mod:`analysis.published`   published laws, model points, tables and shipped data sets;
* :mod:`analysis.plots`       figures: ``ax=`` in, Figure out, PNG + SVG only given ``path=``;
  :mod:`analysis.report` fits.json / fits.md / figures in one call; :mod:`analysis.cli` the
  ``scaling fit`` command; :mod:`analysis.display` how results render in Jupyter.

``analysis.load_results(sweep_dir_or_file)`` reads a results table (a sweep directory or a
CSV/parquet file) in one call.

No JAX anywhere.  Submodules load on first use (``import analysis.vertices`` pulls in
numpy only), so planners can import the light parts without pandas or scipy.
"""

import importlib

_EXPORTS = {
    "Approach1Result": "approaches", "Approach2Result": "approaches", "Approach3Result": "approaches",
    "LawFit": "approaches", "fit_approach1": "approaches", "fit_approach2": "approaches",
    "fit_approach3": "approaches", "fit_law": "approaches", "huber_objective": "approaches",
    "LawParams": "laws", "Law": "laws", "hoffmann_grid": "laws",
    "bin_budgets": "data", "load_results": "data", "load_table": "data", "prepare": "data",
    "BootstrapResult": "uncertainty", "bootstrap": "uncertainty", "prediction_intervals": "uncertainty",
    "Comparison": "recipes",
    "compare": "recipes", "predict": "prediction", "fit_task": "tasks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"analysis.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
