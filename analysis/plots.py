"""Figures in the style of Chinchilla's Figures 3 and 4, for notebooks and reports alike.

Every function follows the pandas/seaborn convention: it draws into the Axes it is given
(``ax=``; a pair of Axes for the two-panel figures) or into a new Figure, saves
``path.png`` and ``path.svg`` only when ``path`` (without suffix) is given, and returns the
Figure, which Jupyter renders inline.  No function selects a matplotlib backend: a new
Figure comes from :mod:`matplotlib.pyplot` under the session's own backend, or, inside
:func:`offscreen` (what :mod:`analysis.report` uses), is an Agg figure that pyplot never
sees, so a headless report neither needs a display nor leaks figures into a notebook.

Every figure is drawn over the range the data cover (plus the extrapolation target when one
is given): published models and Kaplan et al.'s line appear only when they fall inside that
range, or when asked for.  matplotlib is imported inside the functions so that importing
:mod:`analysis` stays light.
"""

from __future__ import annotations

import contextlib
import contextvars
from pathlib import Path

import numpy as np

_OFFSCREEN = contextvars.ContextVar("analysis_plots_offscreen", default=False)


@contextlib.contextmanager
def offscreen():
    """Within this block, new figures are Agg-canvas Figures outside pyplot (never shown, no
    backend switched, garbage-collected with their last reference): for headless reports."""
    token = _OFFSCREEN.set(True)
    try:
        yield
    finally:
        _OFFSCREEN.reset(token)


def _cmap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def _figure(ax, ncols: int, figsize, **kw):
    """``(fig, axes, own)``: the caller's Axes (``ncols`` of them) and their Figure, or a new
    Figure with ``ncols`` panels (``own`` True: the function may set the figure's title)."""
    if ax is not None:
        axes = np.atleast_1d(np.asarray(ax, dtype=object)).ravel().tolist()
        if len(axes) != ncols:
            from analysis.errors import ConfigError

            raise ConfigError(f"ax: this figure has {ncols} panel(s); pass {'one Axes' if ncols == 1 else f'{ncols} Axes'}, "
                              f"got {len(axes)}")
        return axes[0].figure, (axes[0] if ncols == 1 else axes), False
    if _OFFSCREEN.get():
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        sharey = kw.pop("sharey", False)
        fig = Figure(figsize=figsize, **kw)
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, ncols, sharey=sharey, squeeze=True)
    else:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, ncols, figsize=figsize, **kw)
    return fig, (axes if ncols == 1 else list(axes)), True


def _suptitle(fig, axes, own: bool, text: str, **kw) -> None:
    """The figure's title, or (drawing into the caller's Axes) the first panel's."""
    if own:
        fig.suptitle(text, **kw)
    else:
        axes[0].set_title(text, **kw)


def save(fig, path) -> list[str]:
    """Write ``fig`` as ``path.png`` and ``path.svg`` (``path`` without suffix; parents made);
    return the two file names."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("png", "svg"):
        p = path.with_suffix("." + ext)
        fig.savefig(p, dpi=110, bbox_inches="tight")
        out.append(str(p))
    return out


def _done(fig, path):
    if path is not None:
        save(fig, path)
    return fig


def _law(law):
    from analysis.published import get_law

    return get_law(law)


def _law_title(law) -> str:
    """The fitted law with its numbers, e.g. ``L = 1.82 + 478/N^0.347 + 2.14e3/D^0.367``."""
    named = getattr(law, "named", None)
    if named is None and hasattr(law, "E"):
        named = {"E": law.E, "A": law.A, "B": law.B, "alpha": law.alpha, "beta": law.beta}
    if named and {"E", "A", "B", "alpha", "beta"} <= set(named) and len(named) == 5:
        return (f"L = {named['E']:.3g} + {named['A']:.3g}/N^{named['alpha']:.3f} + "
                f"{named['B']:.3g}/D^{named['beta']:.3f}")
    formula = getattr(getattr(law, "law", None), "formula", "")
    return formula + ("  (" + ", ".join(f"{k}={v:.3g}" for k, v in named.items()) + ")" if named else "")


def isoflop_curves(frame, fit2, path=None, *, ax=None):
    """Loss vs N per budget with the fitted parabolas and their minima (Fig. 3 left).

    ``frame`` is the canonical frame (N, D, C, loss, budget) of :func:`analysis.data.prepare`
    with the budget column filled.
    """
    fig, ax, own = _figure(ax, 1, (6.6, 4.6))
    cmap = _cmap("viridis")
    bud = fit2.budgets
    for i, p in enumerate(bud):
        c = cmap(i / max(len(bud) - 1, 1))
        g = frame[np.isclose(frame["budget"], p.budget, rtol=1e-9)]
        ax.scatter(g["N"], g["loss"], s=16, color=c, alpha=0.85,
                   label=f"C = {p.budget:.2g}" + ("" if p.included else " (excluded)"))
        if np.isfinite(p.coef_n[0]):
            x = np.linspace(np.log(g["N"]).min(), np.log(g["N"]).max(), 100)
            ax.plot(np.exp(x), np.polyval(p.coef_n, x), color=c, lw=1,
                    ls="-" if p.included else ":")
        if p.included:
            ax.scatter([p.n_opt], [p.loss_opt], marker="*", s=110, color=c, edgecolor="k", zorder=5)
    ax.scatter([], [], marker="*", s=110, color="w", edgecolor="k", label="parabola minimum")
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("final loss")
    ax.set_title(f"IsoFLOP curves: loss vs size at fixed compute (Approach 2, a = {fit2.a:.3f})")
    ax.legend(title="budget (FLOPs)", fontsize=7, ncol=2)
    return _done(fig, path)


def optimal_allocation(fits: dict, path=None, *, ax=None, boot=None, C_range=None, kaplan="auto", minima=None,
                       frame=None, target_c=None):
    """N_opt(C) and D_opt(C) for each approach (``fits``: {1: res1, 2: res2, 3: res3}), with
    the 95% bootstrap band of each when ``boot`` is given, the budgets the runs span shaded,
    the runs and the IsoFLOP minima as points, and the extrapolation target marked."""
    from analysis.published import KAPLAN2020, MODELS

    if C_range is None:
        if frame is not None:
            hi = max(frame["C"].max(), target_c or 0)
            C_range = (frame["C"].min() / 3, hi * 3)
        else:
            C_range = (1e18, 1e26)
    C = np.logspace(np.log10(C_range[0]), np.log10(C_range[1]), 80)
    fig, axes, own = _figure(ax, 2, (11, 4.4))
    colors = {1: "tab:blue", 2: "tab:orange", 3: "tab:green"}
    names = {1: "Approach 1 (envelope)", 2: "Approach 2 (IsoFLOP minima)", 3: "Approach 3 (fitted law)"}
    for appr, res in sorted(fits.items()):
        if res is None:
            continue
        fr = res if appr == 3 else res.frontier
        for ax, fn, q in ((axes[0], fr.n_opt, "n_opt"), (axes[1], fr.d_opt, "d_opt")):
            ax.plot(C, fn(C), color=colors[appr], lw=1.6,
                    label=f"{names[appr]}: {'a' if q == 'n_opt' else 'b'} = {res.a if q == 'n_opt' else res.b:.3f}")
            if boot is not None:
                try:
                    lo_hi = np.array([boot.interval(appr, q, c) for c in C])
                    if np.isfinite(lo_hi).all():
                        ax.fill_between(C, lo_hi[:, 0], lo_hi[:, 1], color=colors[appr], alpha=0.18, lw=0)
                except ValueError:
                    pass
    models = {k: v for k, v in MODELS.items() if C_range[0] <= 6 * v[0] * v[1] <= C_range[1]}
    if kaplan is True or (kaplan == "auto" and models):
        axes[0].plot(C, KAPLAN2020.n_opt(C), "k--", lw=1, label="Kaplan et al. 2020 (a = 0.73)")
        axes[1].plot(C, KAPLAN2020.d_opt(C), "k--", lw=1, label="Kaplan et al. 2020 (b = 0.27)")
    for name, (n, d) in models.items():
        for ax, v in ((axes[0], n), (axes[1], d)):
            ax.scatter([6 * n * d], [v], marker="x", color="gray")
            ax.annotate(name, (6 * n * d, v), fontsize=7)
    if frame is not None:
        for ax, q in ((axes[0], "N"), (axes[1], "D")):
            ax.axvspan(frame["C"].min(), frame["C"].max(), color="0.85", alpha=0.6, lw=0,
                       label="budgets trained", zorder=0)
            ax.scatter(frame["C"], frame[q], s=7, color="0.45", alpha=0.6, label="runs", zorder=2)
    if minima is not None and len(minima):
        axes[0].scatter(minima["budget"], minima["n_opt"], color="tab:orange", edgecolor="k", s=28, zorder=5,
                        label="IsoFLOP minima")
        axes[1].scatter(minima["budget"], minima["d_opt"], color="tab:orange", edgecolor="k", s=28, zorder=5,
                        label="IsoFLOP minima")
    if target_c:
        for ax in axes:
            ax.axvline(target_c, color="k", lw=0.8, ls=":", label=f"target C = {target_c:.3g}")
    for ax, lab in zip(axes, ("compute-optimal parameters N_opt", "compute-optimal tokens D_opt")):
        ax.set_xscale("log"); ax.set_yscale("log")
        ax.set_xlabel("training FLOPs C"); ax.set_ylabel(lab); ax.legend(fontsize=7)
    _suptitle(fig, axes, own, "Compute-optimal allocation" + (f" with 95% bootstrap bands (K={boot.K})" if boot else ""))
    return _done(fig, path)


def _ranges(p, frame, target_c, N_range, D_range):
    if N_range is not None and D_range is not None:
        return N_range, D_range
    if frame is None:
        return N_range or (1e7, 1e12), D_range or (1e8, 1e13)
    n = [frame["N"].min(), frame["N"].max()]
    d = [frame["D"].min(), frame["D"].max()]
    if target_c:
        n.append(float(p.n_opt(target_c)))
        d.append(float(p.d_opt(target_c)))
    return (min(n) / 3, max(n) * 3), (min(d) / 3, max(d) * 3)


def loss_contour(law, path=None, *, ax=None, frame=None, target_c=None, N_range=None, D_range=None,
                 models=None):
    """Contours of the fitted L(N, D) over the runs (coloured by their measured loss on the
    same scale), the efficient frontier, IsoFLOP lines through the trained budgets and the
    target, and published models that fall inside the range (``models``: a dict to force)."""
    from analysis.published import MODELS

    p = _law(law)
    N_range, D_range = _ranges(p, frame, target_c, N_range, D_range)
    n = np.logspace(*np.log10(N_range), 160)
    d = np.logspace(*np.log10(D_range), 160)
    NN, DD = np.meshgrid(n, d)
    LL = np.asarray(p.loss(NN.ravel(), DD.ravel())).reshape(NN.shape)
    lo = LL.min()
    hi = np.quantile(LL, 0.95)
    if frame is not None:
        lo, hi = min(lo, frame["loss"].min()), max(min(hi, frame["loss"].max() * 1.05), frame["loss"].max())
    levels = np.linspace(lo, hi, 22)
    fig, ax, own = _figure(ax, 1, (7.2, 5.6))
    cs = ax.contourf(DD, NN, np.clip(LL, lo, hi), levels=levels, cmap="viridis_r", extend="neither")
    cb = fig.colorbar(cs, ax=ax, label="loss (background: the law; dots: measured runs)", format="%.3g")
    cb.set_ticks(levels[::3])
    k = getattr(p, "k", 6.0)
    C = np.logspace(np.log10(k * N_range[0] * D_range[0]), np.log10(k * N_range[1] * D_range[1]), 200)
    nf, df_ = p.n_opt(C), p.d_opt(C)
    keep = (nf >= N_range[0]) & (nf <= N_range[1]) & (df_ >= D_range[0]) & (df_ <= D_range[1])
    ax.plot(df_[keep], nf[keep], "w-", lw=2.2, label="efficient frontier (law)")
    budgets = sorted(frame["budget"].unique()) if frame is not None else []
    if len(budgets) > 6:   # a few IsoFLOP lines orient the reader; dozens hide the runs
        budgets = [budgets[i] for i in np.unique(np.linspace(0, len(budgets) - 1, 6).round().astype(int))]
    for Ciso in list(budgets) + ([target_c] if target_c else []):
        dd = Ciso / (k * n)
        ok = (dd >= D_range[0]) & (dd <= D_range[1])
        if ok.any():
            ax.plot(dd[ok], n[ok], color="w", lw=0.7, ls=":")
            j = np.flatnonzero(ok)[int(0.85 * ok.sum())]   # label near the line's upper-left end
            ax.annotate(f"C={Ciso:.2g}", (dd[j], n[j]), fontsize=7, color="w", rotation=-38,
                        textcoords="offset points", xytext=(3, 3))
    if frame is not None:
        ax.scatter(frame["D"], frame["N"], c=frame["loss"], cmap="viridis_r", vmin=lo, vmax=hi,
                   s=28, edgecolor="k", lw=0.6, zorder=4, label="runs (colour = measured loss)")
    if target_c:
        tn, td = float(p.n_opt(target_c)), float(p.d_opt(target_c))
        ax.scatter([td], [tn], marker="*", s=220, color="w", edgecolor="k", zorder=6,
                   label=f"target C={target_c:.3g}: N_opt={tn:.3g}, D_opt={td:.3g}")
    shown = MODELS if models is None else models
    for name, (nm, dm) in shown.items():
        inside = N_range[0] <= nm <= N_range[1] and D_range[0] <= dm <= D_range[1]
        if inside or models is not None:
            ax.scatter([dm], [nm], marker="P", s=90, color="tab:red", edgecolor="k", zorder=5)
            ax.annotate(name, (dm, nm), fontsize=7, color="w", textcoords="offset points", xytext=(-10, -12),
                        ha="right")
    ax.set_xscale("log"); ax.set_yscale("log")
    ax.set_xlim(*D_range); ax.set_ylim(*N_range)
    ax.set_xlabel("tokens D"); ax.set_ylabel("parameters N")
    ax.set_title(_law_title(law), fontsize=9)
    ax.legend(fontsize=7, loc="lower left", framealpha=0.8)
    return _done(fig, path)


def residuals(frame, law, path=None, *, ax=None):
    """log loss residuals of the fitted law against N and against D, one colour per budget."""
    p = _law(law)
    pred = np.asarray(p.loss(frame["N"].to_numpy(), frame["D"].to_numpy()))
    r = np.log(pred) - np.log(frame["loss"].to_numpy())
    fig, axes, own = _figure(ax, 2, (10.5, 3.9), sharey=True, layout="constrained")
    budgets = np.unique(frame["budget"])
    cmap = _cmap("viridis")
    for i, b in enumerate(budgets):
        m = np.isclose(frame["budget"].to_numpy(), b, rtol=1e-9)
        for ax, q in zip(axes, ("N", "D")):
            ax.scatter(frame[q][m], r[m], s=14, color=cmap(i / max(len(budgets) - 1, 1)),
                       label=f"C = {b:.2g}" if q == "N" else None)
    for ax, lab in zip(axes, ("parameters N", "tokens D")):
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log"); ax.set_xlabel(lab)
    axes[0].set_ylabel("log(predicted) - log(measured)")
    if len(budgets) <= 12:
        axes[0].legend(title="budget", fontsize=7, ncol=2)
    rms = float(np.sqrt(np.mean(r ** 2)))
    _suptitle(fig, axes, own, f"Residuals of the fitted law: RMS {rms:.3g} in log loss (about {100 * rms:.2g}% of the loss); "
                 f"a pattern along N or D means the law's form does not fit", fontsize=9)
    return _done(fig, path)


def rollout_errors(roll, path=None, *, ax=None, growth: float | None = None, sigma0: float | None = None,
                   z: float = 1.96):
    """Rollout prediction errors against extrapolation distance: signed (left) and absolute (right)
    relative error of each run predicted from the fit on the levels below it, one colour per level;
    with ``growth`` and ``sigma0``, the interval half-width ``z sigma(d)`` the predictions use."""
    fig, axes, own = _figure(ax, 2, (10.5, 3.9), layout="constrained")
    levels = sorted(roll["level"].unique())
    cmap = _cmap("viridis")
    for i, lv in enumerate(levels):
        g = roll[roll["level"] == lv]
        rel = 100 * (g["pred"] / g["loss"] - 1)
        c = cmap(i / max(len(levels) - 1, 1))
        axes[0].scatter(g["distance"], rel, s=12, color=c, label=f"fit <= {lv:.2g}")
        axes[1].scatter(g["distance"], rel.abs(), s=12, color=c)
    if growth is not None and sigma0 is not None and len(roll):
        d = np.linspace(0, max(float(roll["distance"].max()), 0.1), 50)
        half = 100 * np.expm1(z * np.sqrt(sigma0 ** 2 + (growth * d) ** 2))
        axes[1].plot(d, half, "k--", lw=1, label=f"interval half-width ({growth:.3f}/decade)")
        axes[1].legend(fontsize=7)
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].set_ylabel("predicted / measured - 1 (%)")
    axes[1].set_ylabel("|error| (%)")
    for a in axes:
        a.set_xlabel("extrapolation distance: log10(C / largest C fitted)")
    if 0 < len(levels) <= 12:
        axes[0].legend(fontsize=7, ncol=2)
    _suptitle(fig, axes, own, "Rollouts: fit on the runs at or below each level, predict every run above", fontsize=9)
    return _done(fig, path)


def compare_gain(cmp, path=None, *, ax=None):
    """Left: both recipes' compute-optimal loss frontiers and measured IsoFLOP minima.
    Right: compute-equivalent gain of B over A with 95% bootstrap intervals."""
    from analysis import recipes

    a, b = cmp.labels
    t = cmp.table
    C = np.logspace(np.log10(t["C"].min() / 2), np.log10(t["C"].max() * 2), 120)
    fa, fb = cmp.fit_a, cmp.fit_b
    fig, axes, own = _figure(ax, 2, (11, 4.4))
    for fit, lab, col, m in ((fa, a, "tab:blue", cmp.minima_a), (fb, b, "tab:red", cmp.minima_b)):
        axes[0].plot(C, fit.loss_opt(C), color=col, label=f"{lab}: law frontier")
        if m is not None and len(m):
            axes[0].scatter(m["budget"], m["loss_opt"], color=col, edgecolor="k", s=24, zorder=5,
                            label=f"{lab}: IsoFLOP minima")
    meas = t[t["kind"] == "measured"]
    for ax in axes:
        ax.axvspan(meas["C"].min(), meas["C"].max(), color="0.88", lw=0, zorder=0, label="budgets both trained")
    axes[0].set_xscale("log"); axes[0].set_xlabel("training FLOPs C"); axes[0].set_ylabel("compute-optimal loss")
    axes[0].legend(fontsize=7)
    grid = np.logspace(np.log10(C.min()) - 3, np.log10(C.max()) + 3, 240)
    la = recipes.frontier_losses(fa.law, np.array([fa.x]), C, fa.k)[0]
    cb = recipes.frontier_inverse(fb, la, grid)
    axes[1].plot(C, C / cb, color="k", lw=1.5, label="gain (point estimate)")
    ok = np.isfinite(t["gain_lo"]) & np.isfinite(t["gain_hi"]) & np.isfinite(t["gain"])
    axes[1].errorbar(t["C"][ok], t["gain"][ok], yerr=[t["gain"][ok] - t["gain_lo"][ok], t["gain_hi"][ok] - t["gain"][ok]],
                     fmt="o", color="tab:purple", ms=4, capsize=3, label="95% bootstrap interval")
    if "gain_measured" in t and np.isfinite(t["gain_measured"]).any():
        axes[1].scatter(t["C"], t["gain_measured"], marker="s", color="tab:orange", s=20, zorder=5,
                        label="from measured minima")
    axes[1].axhline(1.0, color="gray", lw=0.8, ls="--")
    axes[1].set_xscale("log"); axes[1].set_yscale("log")
    axes[1].set_xlabel("training FLOPs C (of recipe A)")
    axes[1].set_ylabel(f"compute-equivalent gain of {b}")
    axes[1].legend(fontsize=7)
    _suptitle(fig, axes, own, f"{b} vs {a}: compute {a} needs / compute {b} needs for the same loss (>1: {b} is cheaper)",
                 fontsize=9)
    return _done(fig, path)


def allocation_comparison(table, path=None, rules=("chinchilla_rule", "kaplan_rule"), *, ax=None):
    """Final loss vs budget for two allocation rules (``analysis.allocation.compare_allocations``),
    with each point labelled by its model size: the trained version of Chinchilla vs Gopher."""
    fig, ax, own = _figure(ax, 1, (6.4, 4.2))
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
    return _done(fig, path)


def wsd_forks(df, path=None, *, n_col: str, d_col: str, loss_col: str, group_col: str = "group", law=None, ax=None):
    """Final eval loss vs training tokens per model size, one marker per WSD fork (each a cooled-down
    branch of that size's one trunk), with the fitted law's curve per size when given."""
    forks = df[df[group_col] == "wsd_fork"].sort_values(d_col)
    sizes = sorted(forks[n_col].unique())
    cmap = _cmap("viridis")
    fig, ax, own = _figure(ax, 1, (6.6, 4.4))
    for i, n in enumerate(sizes):
        g = forks[forks[n_col] == n]
        color = cmap(i / max(len(sizes) - 1, 1))
        ax.plot(g[d_col], g[loss_col], marker="o", ls="none", color=color, label=f"N = {n:,.0f}")
        if law is not None:
            d = np.geomspace(g[d_col].min() / 1.5, g[d_col].max() * 1.5, 60)
            ax.plot(d, _law(law).loss(np.full_like(d, n), d), color=color, lw=1, alpha=0.7)
    ax.set_xscale("log")
    ax.set_xlabel(f"training tokens D ({d_col}), one point per fork")
    ax.set_ylabel(f"final eval loss ({loss_col})")
    ax.set_title("WSD forks: one trunk per size, each horizon cooled down from it"
                 + ("\nlines: fitted law" if law is not None else ""), fontsize=10)
    ax.legend(fontsize=7, title="size (parameters)", title_fontsize=7)
    ax.grid(alpha=0.3, which="both")
    return _done(fig, path)
