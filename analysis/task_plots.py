"""Figures of downstream-task laws (:mod:`analysis.tasks`), in the style of :mod:`analysis.plots`.

Each function draws into the Axes it is given (``ax=``) or a new Figure, saves ``path.png`` and
``path.svg`` only when ``path`` (without suffix) is given, and returns the Figure.
"""

from __future__ import annotations

import numpy as np

from analysis.plots import _cmap, _done, _figure


def _band(fit, C, level):
    """Chained accuracy at the compute-optimal point of each C, with its bootstrap interval."""
    mid = np.array([float(fit.acc(*[float(v[0]) for v in fit.optimal(c)])) for c in C])
    if not fit.K:
        return mid, None, None
    lo, hi = [], []
    q = (1 - level) / 2
    for c in C:
        s = fit.acc_samples_at(c)[2]
        s = s[np.isfinite(s)]
        lo.append(np.quantile(s, q) if s.size else np.nan)
        hi.append(np.quantile(s, 1 - q) if s.size else np.nan)
    return mid, np.array(lo), np.array(hi)


def accuracy_vs_compute(fit, path=None, *, ax=None, at_c=(), backtest: dict | None = None, points: int = 15):
    """Accuracy against training FLOPs: every run (colour: model size), each size's predicted
    accuracy along its runs' token range (thin lines, up to 12 sizes), and the chained prediction
    at the compute-optimal point of each budget with its bootstrap interval (band).  ``at_c``
    extends the curve to those budgets; ``backtest`` (:func:`analysis.tasks.backtest`) marks the
    held-out budget's prediction and best measured accuracy."""
    fig, ax, own = _figure(ax, 1, (6.8, 4.6))
    f = fit.frame
    cmap = _cmap("viridis")
    logn = np.log10(f["N"].to_numpy())
    span = max(np.ptp(logn), 1e-9)
    color = lambda n: cmap((np.log10(n) - logn.min()) / span)  # noqa: E731
    sizes = np.unique(f["N"].to_numpy())
    if len(sizes) <= 12:
        for n in sizes:
            g = f[f["N"] == n]
            D = np.geomspace(g["D"].min() / 1.5, g["D"].max() * 1.5, 30)
            ax.plot(fit.lm.k * n * D, fit.acc(np.full_like(D, n), D), color=color(n), lw=0.8, alpha=0.7)
    sc = ax.scatter(f["C"], f["acc"], c=logn, cmap=cmap, s=22, edgecolor="k", linewidth=0.3, zorder=4)
    c_hi = max([float(f["C"].max())] + [float(c) for c in at_c])
    C = np.geomspace(float(f["C"].min()) / 1.5, c_hi * 1.5, points)
    mid, lo, hi = _band(fit, C, fit.level)
    ax.plot(C, mid, "k-", lw=1.6, label="chained prediction at the compute-optimal point")
    if lo is not None:
        ax.fill_between(C, lo, hi, color="k", alpha=0.12, lw=0, label=f"{int(100 * fit.level)}% interval (both steps refitted)")
    if backtest and "pred" in backtest:
        Cb = backtest["held_out_budget"]
        ax.scatter([Cb], [backtest["best_acc"]], marker="*", s=140, color="tab:red", edgecolor="k", zorder=6,
                   label="held-out budget: best measured")
        if backtest["ci"][0] is not None:
            ax.errorbar([Cb], [backtest["pred"]], yerr=[[backtest["pred"] - backtest["pi"][0]],
                                                      [backtest["pi"][1] - backtest["pred"]]],
                        fmt="D", color="tab:red", ms=5, capsize=3, zorder=6,
                        label="backtest: predicted from the smaller budgets")
    ax.axhline(fit.chance, color="0.5", ls=":", lw=1, label=f"chance ({fit.chance:g})")
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())  # a budget range under a decade: minor labels would collide
    ax.set_xlabel("training FLOPs C")
    ax.set_ylabel(f"{fit.task} {fit.metric}")
    fig.colorbar(sc, ax=ax, label="log10 parameters N")
    ax.legend(fontsize=7, loc="upper left")
    how = "task loss law + sigmoid" if fit.method == "two_step" else "LM loss law + Gadre error law"
    ax.set_title(f"{fit.task}: accuracy vs compute ({how})", fontsize=9)
    return _done(fig, path)


def accuracy_vs_loss(fit, path=None, *, ax=None):
    """Accuracy against the chain's middle quantity (the task loss for the sigmoid, the LM loss
    for Gadre's law): the runs (colour: budget), the fitted curve and its bootstrap band."""
    from analysis.tasks import accuracy

    fig, ax, own = _figure(ax, 1, (6.4, 4.4))
    f = fit.frame
    two = fit.method == "two_step"
    x = f["task_loss" if two else "loss"].to_numpy()
    budgets = np.unique(f["budget"].to_numpy())
    cmap = _cmap("viridis")
    for i, b in enumerate(budgets):
        m = f["budget"].to_numpy() == b
        ax.scatter(x[m], f["acc"].to_numpy()[m], s=22, color=cmap(i / max(len(budgets) - 1, 1)), edgecolor="k",
                   linewidth=0.3, zorder=4, label=f"C = {b:.2g}")
    sp = max(np.ptp(x), 1e-3)
    L = np.linspace(max(x.min() - 0.5 * sp, 1e-6), x.max() + 0.5 * sp, 120)
    ax.plot(L, fit.curve.acc(L), "k-", lw=1.6, label=fit.curve.law.formula)
    S = fit.samples.get("curve") if fit.samples else None
    if S is not None:
        S = S[np.isfinite(S).all(axis=1)]
        if len(S) > 1:
            A = accuracy(fit.curve.law, S, L)
            q = (1 - fit.level) / 2
            ax.fill_between(L, np.nanquantile(A, q, axis=0), np.nanquantile(A, 1 - q, axis=0), color="k", alpha=0.12,
                            lw=0, label=f"{int(100 * fit.level)}% bootstrap band")
    ax.axhline(fit.chance, color="0.5", ls=":", lw=1, label=f"chance ({fit.chance:g})")
    ax.set_xlabel("task loss: the correct choice's loss per byte" if two else "LM loss (held-out, nats/token)")
    ax.set_ylabel(f"{fit.task} {fit.metric}")
    if len(budgets) <= 12:
        ax.legend(fontsize=7)
    p = fit.curve.named
    text = (f"a={p['a']:.3g}, b={p['b']:.3g}, k={p['k']:.3g}, L0={p['L0']:.3g}" if two else
            f"epsilon={p['epsilon']:.3g}, k={p['k']:.3g}, gamma={p['gamma']:.3g}")
    ax.set_title(f"{fit.task}: {'accuracy vs task loss' if two else 'accuracy vs LM loss'} ({text})", fontsize=9)
    return _done(fig, path)
