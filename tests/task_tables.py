"""Synthetic results tables with downstream-task columns, for the task-fit tests.

:func:`task_table` builds an IsoFLOP-style table with the results table's columns (``n_total``,
``tokens``, ``budget``, ``eval_loss``, ``state``, ``group``, ``run_id``) plus, for one task,
``task/<name>/acc``, ``acc_norm``, ``bpb``, ``n_items`` and ``sha``, all drawn from known laws:
the LM loss and the task loss from Chinchilla-form laws, accuracy from the OLMo sigmoid of the
task loss, with optional noise (log-normal on losses, binomial over ``n_items`` on accuracy).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LM = dict(E=1.8, A=60.0, B=300.0, alpha=0.34, beta=0.30)
TASK = dict(E=0.5, A=20.0, B=100.0, alpha=0.34, beta=0.30)
SIGMOID = dict(a=0.65, b=0.25, k=-8.0, L0=0.8)
BUDGETS = (1e15, 3e15, 1e16, 3e16)


def law(p, N, D):
    return p["E"] + p["A"] / np.asarray(N) ** p["alpha"] + p["B"] / np.asarray(D) ** p["beta"]


def sigmoid(p, L):
    return p["a"] / (1 + np.exp(-p["k"] * (np.asarray(L) - p["L0"]))) + p["b"]


def n_opt(p, C, k=6.0):
    G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    return G * (C / k) ** (p["beta"] / (p["alpha"] + p["beta"]))


def task_table(*, name="demo", budgets=BUDGETS, sizes=5, spread=1.5, lm=LM, task=TASK, sig=SIGMOID,
               loss_noise=0.0, acc_noise=None, n_items=2000, seed=0) -> pd.DataFrame:
    """``sizes`` runs per budget at N_opt(C) * 2^[-spread, spread] of the LM law; ``acc_noise``:
    None (exact accuracies) or "binomial" (correct answers ~ Binomial(n_items, acc) / n_items)."""
    rng = np.random.default_rng(seed)
    rows = []
    for C in budgets:
        for f in np.linspace(-spread, spread, sizes):
            N = float(n_opt(lm, C) * 2.0 ** f)
            D = C / (6 * N)
            loss = float(law(lm, N, D) * np.exp(loss_noise * rng.standard_normal()))
            tl = float(law(task, N, D) * np.exp(loss_noise * rng.standard_normal()))
            acc = float(sigmoid(sig, tl))
            if acc_noise == "binomial":
                acc = rng.binomial(n_items, acc) / n_items
            rows.append({"run_id": f"r-C{C:.0e}-N{N:.3g}", "state": "done", "n_total": N, "tokens": D, "budget": C,
                         "eval_loss": loss, "group": "isoflop", f"task/{name}/acc": acc,
                         f"task/{name}/acc_norm": min(1.0, acc + 0.02), f"task/{name}/bpb": tl,
                         f"task/{name}/n_items": n_items, f"task/{name}/sha": "0" * 12})
    return pd.DataFrame(rows)
