"""Figures in the style of Chinchilla's Figures 3 and 4 (matplotlib, Agg, PNG + SVG).

Each function takes fitted results (and optionally bootstrap samples), draws one figure
and, given ``path`` without suffix, writes ``path.png`` and ``path.svg``; it returns the
list of files written.  matplotlib is imported inside the functions so that importing
:mod:`analysis` stays light.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> list[str]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("png", "svg"):
        p = path.with_suffix("." + ext)
        fig.savefig(p, dpi=110, bbox_inches="tight")
        out.append(str(p))
    _plt().close(fig)
    return out


def isoflop_curves(frame, fit2, path) -> list[str]:
    """Loss vs N per budget with the fitted parabolas and their minima (Fig. 3 left).

    ``frame`` is the canonical frame (N, D, C, loss, budget) of :func:`analysis.data.prepare`
    with the budget column filled.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    cmap = plt.get_cmap("viridis")
    bud = fit2.budgets
    for i, p in enumerate(bud):
        c = cmap(i / max(len(bud) - 1, 1))
        g = frame[np.isclose(frame["budget"], p.budget, rtol=1e-9)]
        ax.scatter(g["N"], g["loss"], s=14, color=c, alpha=0.8,
                   label=f"{p.budget:.2g}" + ("" if p.included else " (excl.)"))
        if np.isfinite(p.coef_n[0]):
            x = np.linspace(np.log(g["N"]).min(), np.log(g["N"]).max(), 100)
            ax.plot(np.exp(x), np.polyval(p.coef_n, x), color=c, lw=1,
                    ls="-" if p.included else ":")
        if p.included:
            ax.scatter([p.n_opt], [p.loss_opt], marker="*", s=90, color=c, edgecolor="k", zorder=5)
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("loss")
    ax.set_title("IsoFLOP curves, parabola fits and minima")
    ax.legend(title="FLOPs", fontsize=7, ncol=2)
    return _save(fig, path)


def optimal_allocation(fits: dict, path, *, boot=None, C_range=(1e18, 1e26),
                       kaplan: bool = True, minima=None) -> list[str]:
    """N_opt(C) and D_opt(C) for each approach (``fits``: {1: res1, 2: res2, 3: res3}),
    with bootstrap bands when ``boot`` is given, and Kaplan et al.'s N_opt line."""
    from analysis.published import KAPLAN2020, MODELS

    plt = _plt()
    C = np.logspace(np.log10(C_range[0]), np.log10(C_range[1]), 60)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    colors = {1: "tab:blue", 2: "tab:orange", 3: "tab:green"}
    for appr, res in sorted(fits.items()):
        if res is None:
            continue
        fr = res.params if appr == 3 else res.frontier
        for ax, fn, q in ((axes[0], fr.n_opt, "n_opt"), (axes[1], fr.d_opt, "d_opt")):
            ax.plot(C, fn(C), color=colors[appr], label=f"Approach {appr} (a={res.a:.3f})"
                    if q == "n_opt" else f"Approach {appr} (b={res.b:.3f})")
            if boot is not None:
                try:
                    lo_hi = np.array([boot.interval(appr, q, c) for c in C])
                    if np.isfinite(lo_hi).all():
                        ax.fill_between(C, lo_hi[:, 0], lo_hi[:, 1], color=colors[appr], alpha=0.2)
                except ValueError:
                    pass
    if kaplan:
        axes[0].plot(C, KAPLAN2020.n_opt(C), "k--", lw=1, label="Kaplan et al. 2020 (a=0.73)")
        axes[1].plot(C, KAPLAN2020.d_opt(C), "k--", lw=1, label="Kaplan et al. 2020 (b=0.27)")
    if minima is not None:
        axes[0].scatter(minima["budget"], minima["n_opt"], color="tab:orange", s=15, zorder=5)
        axes[1].scatter(minima["budget"], minima["d_opt"], color="tab:orange", s=15, zorder=5)
    for name, (n, d) in MODELS.items():
        axes[0].scatter([6 * n * d], [n], marker="x", color="gray")
        axes[0].annotate(name, (6 * n * d, n), fontsize=7)
    for ax, lab in zip(axes, ("parameters N_opt", "tokens D_opt")):
        ax.set_xscale("log"); ax.set_yscale("log")
        ax.set_xlabel("training FLOPs C"); ax.set_ylabel(lab); ax.legend(fontsize=7)
    fig.suptitle("Compute-optimal allocation" + (" (95% bootstrap bands)" if boot else ""))
    return _save(fig, path)


def loss_contour(law, path, *, frame=None, N_range=(1e7, 1e12), D_range=(1e8, 1e13),
                 models=None) -> list[str]:
    """Contours of L(N, D) with the efficient frontier and published models (Fig. 4)."""
    from analysis.published import MODELS, get_law

    plt = _plt()
    p = get_law(law)
    models = MODELS if models is None else models
    n = np.logspace(*np.log10(N_range), 200)
    d = np.logspace(*np.log10(D_range), 200)
    NN, DD = np.meshgrid(n, d)
    LL = p.loss(NN, DD)
    fig, ax = plt.subplots(figsize=(6.4, 5))
    cs = ax.contourf(DD, NN, LL, levels=np.quantile(LL, np.linspace(0, 0.97, 25)), cmap="viridis")
    fig.colorbar(cs, ax=ax, label="predicted loss")
    C = np.logspace(np.log10(6 * N_range[0] * D_range[0]), np.log10(6 * N_range[1] * D_range[1]), 100)
    nf, df_ = p.n_opt(C), p.d_opt(C)
    keep = (nf >= N_range[0]) & (nf <= N_range[1]) & (df_ >= D_range[0]) & (df_ <= D_range[1])
    ax.plot(df_[keep], nf[keep], "w-", lw=2, label="efficient frontier")
    for Ciso in 10.0 ** np.arange(18, 27, 2):
        dd = Ciso / (6 * n)
        ok = (dd >= D_range[0]) & (dd <= D_range[1])
        ax.plot(dd[ok], n[ok], color="w", lw=0.5, ls=":")
    if frame is not None:
        ax.scatter(frame["D"], frame["N"], s=5, color="k", alpha=0.4, label="runs")
    for name, (nm, dm) in models.items():
        ax.scatter([dm], [nm], marker="*", s=120, edgecolor="k", zorder=5, label=name)
    ax.set_xscale("log"); ax.set_yscale("log")
    ax.set_xlabel("tokens D"); ax.set_ylabel("parameters N")
    ax.set_title("L(N, D) = E + A/N^alpha + B/D^beta")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def residuals(frame, law, path) -> list[str]:
    """log loss residuals of the Approach 3 law against N and against C."""
    from analysis.published import get_law

    plt = _plt()
    p = get_law(law)
    r = np.log(p.loss(frame["N"].to_numpy(), frame["D"].to_numpy())) - np.log(frame["loss"].to_numpy())
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, x, lab in ((axes[0], frame["N"], "parameters N"), (axes[1], frame["C"], "FLOPs C")):
        ax.scatter(x, r, s=8)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log"); ax.set_xlabel(lab); ax.set_ylabel("log(pred) - log(obs)")
    fig.suptitle(f"Approach 3 residuals (RMS {np.sqrt(np.mean(r ** 2)):.3g})")
    return _save(fig, path)


def allocation_comparison(table, path, rules=("chinchilla_rule", "kaplan_rule")) -> list[str]:
    """Final loss vs budget for two allocation rules (``analysis.allocation.compare_allocations``),
    with each point labelled by its model size: the trained version of Chinchilla vs Gopher."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for rule, color, marker in zip(rules, ("tab:green", "tab:red"), ("o", "s")):
        ax.plot(table["budget"], table[f"loss_{rule}"], marker=marker, color=color, label=rule.replace("_", " "))
        for _, r in table.iterrows():
            ax.annotate(f"N={r[f'n_{rule}']:.3g}", (r["budget"], r[f"loss_{rule}"]), fontsize=7,
                        textcoords="offset points", xytext=(4, 4 if rule == rules[0] else -10), color=color)
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs C")
    ax.set_ylabel("final eval loss")
    ax.set_title("Same budget, two allocations")
    ax.legend(fontsize=8)
    return _save(fig, path)
