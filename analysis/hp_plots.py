"""Figures of hyperparameter laws (matplotlib, Agg, PNG + SVG; the style of :mod:`analysis.plots`).

Each function takes data (a results table and/or :func:`analysis.hp.best_lrs` groups, a fitted
:class:`analysis.hp.HPLaw`) and ``path`` without suffix, writes ``path.png`` and ``path.svg``
and returns the files written.
"""

from __future__ import annotations

import math

import numpy as np

from analysis.plots import _cmap, _figure, offscreen, save


def loss_vs_lr(df, groups, path, *, n_col: str = "n_total", d_col: str = "tokens", lr_col: str = "peak_lr",
               loss_col: str = "eval_loss", batch_col: str | None = None, **_) -> list[str]:
    """Loss vs LR, one panel per N, one colour per D (and B): the runs, each group's parabola and
    its vertex with the bootstrap interval (groups left out of the law are drawn dashed, no vertex)."""
    from analysis.vertices import parabola_vertex

    from matplotlib.ticker import NullFormatter

    if "state" in df.columns:
        df = df[df["state"] == "done"]
    Ns = sorted(groups.N.unique())
    with offscreen():  # a file-writing helper: never touches pyplot's global figures
        fig, axes, _ = _figure(None, len(Ns), (4.2 * len(Ns), 3.6))
    axes = axes if len(Ns) > 1 else [axes]
    cmap = _cmap("viridis")
    keys = ["D"] + (["B"] if "B" in groups.columns else [])
    styles = {k: cmap(i / max(1, len(groups[keys].drop_duplicates()) - 1))
              for i, k in enumerate(sorted(map(tuple, groups[keys].drop_duplicates().to_numpy())))}
    for ax, n in zip(axes, Ns):
        for g in groups[groups.N == n].itertuples():
            key = (g.D,) + ((g.B,) if "B" in groups.columns else ())
            sel = (df[n_col] == n) & (df[d_col] == g.D)
            if batch_col:
                sel &= df[batch_col] == g.B
            pts = df[sel].sort_values(lr_col)
            x, y = np.log(pts[lr_col].to_numpy(float)), pts[loss_col].to_numpy(float)
            c = styles[key]
            label = f"D={g.D:.3g}" + (f" B={g.B:g}" if "B" in groups.columns else "")
            ax.plot(np.exp(x), y, "o", color=c, ms=4, label=label)
            if len(np.unique(x)) >= 3:
                coef, _, _ = parabola_vertex(x, y)
                xs = np.linspace(x.min(), x.max(), 60)
                ax.plot(np.exp(xs), np.polyval(coef, xs), "-" if g.included else "--", color=c, lw=1)
            if g.included:
                ax.errorbar([g.lr], [g.loss], xerr=[[g.lr - g.lr_lo], [g.lr_hi - g.lr]] if math.isfinite(g.lr_lo)
                            else None, fmt="*", color=c, ms=10, mec="k", capsize=3)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels crowd a scan of a few octaves
        ax.set_xlabel("peak learning rate")
        ax.set_title(f"N = {n:.3g}")
        ax.legend(fontsize=7)
    axes[0].set_ylabel(loss_col)
    fig.suptitle("loss vs LR per group (star: best LR with its interval; dashed: no interior minimum)", fontsize=9)
    return save(fig, path)


def lr_law(groups, law, path) -> list[str]:
    """LR* vs N (one line per D) and vs D (one line per N): the included vertices with their
    intervals and the fitted law."""
    ok = groups[groups.included]
    with offscreen():
        fig, axes, _ = _figure(None, 2, (9, 3.6))
    cmap = _cmap("viridis")
    for ax, (along, across) in zip(axes, (("N", "D"), ("D", "N"))):
        levels = sorted(ok[across].unique())
        for i, lev in enumerate(levels):
            g = ok[ok[across] == lev].sort_values(along)
            c = cmap(i / max(1, len(levels) - 1))
            ax.errorbar(g[along], g.lr, yerr=[g.lr - g.lr_lo, g.lr_hi - g.lr], fmt="o", color=c, capsize=3,
                        label=f"{across}={lev:.3g}")
            xs = np.geomspace(ok[along].min(), ok[along].max(), 50)
            kw = {along: xs, across: np.full_like(xs, lev)}
            if "B" in law.variables:
                kw["B"] = np.full_like(xs, float(g.B.iloc[0]))
            ys = [law.predict(**{k: float(v[j]) for k, v in kw.items()}) for j in range(len(xs))]
            ax.plot(xs, ys, "-", color=c, lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(along)
        ax.set_ylabel("best LR")
        ax.legend(fontsize=7)
    fig.suptitle(f"{law.formula()}  ({law.parametrization})", fontsize=9)
    return save(fig, path)
