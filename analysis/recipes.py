"""Recipe B against recipe A: how much compute does B save for the same loss?

``compare(df_a, df_b, ...)`` fits the same law to two tables of runs (two training recipes,
data sets, architectures...), reads each one's compute-optimal loss frontier
``L*(C) = L(N_opt(C), D_opt(C))`` and reports the **compute-equivalent gain** of B over A:
at a budget C, the compute B needs to reach the loss A reaches compute-optimally at C is
``C_B = L*_B^-1(L*_A(C))``, and the gain is ``C / C_B`` (2.0: B gets there with half the
compute; below 1: B is worse).  The gain is given at every budget of A that lies inside B's
range (with both tables' measured IsoFLOP minima for reference) and extrapolated to larger
budgets, each with a bootstrap interval: runs are resampled within budgets and both laws
refitted, K times (seeded).  ``differences`` gives B - A for the law's exponents a and b and its
parameters, with intervals from the same resamples.

Two tables of the same design (the same (N, D) points, e.g. WSD forks against independent cosine
runs of the same horizons) are resampled **paired**: one draw picks the same points from both, so
the intervals of the differences hold the design fixed and measure only how the two recipes' losses
differ.  Tables of different designs are resampled independently.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from analysis import approaches as ap
from analysis import uncertainty as unc
from analysis.diagnostics import canon, canonical, inputs_of
from analysis.display import Rich, Table, fmt, interval
from analysis.errors import ConfigError
from analysis.solver import HUBER_DELTA


def frontier_losses(model, S: np.ndarray, Cgrid: np.ndarray, k: float) -> np.ndarray:
    """(K, G) compute-optimal losses of parameter samples S (K, P) on budgets Cgrid."""
    return np.stack([unc.law_samples(model, S, "loss_opt", float(C), k) for C in Cgrid], axis=1)


def _invert(losses: np.ndarray, Cgrid: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per row: the C at which a decreasing frontier (losses on Cgrid) reaches ``target``;
    NaN outside the tabulated range (cannot be read off this grid)."""
    out = np.full(losses.shape[0], np.nan)
    lc = np.log(Cgrid)
    for i, (row, t) in enumerate(zip(losses, target)):
        ok = np.isfinite(row)
        if ok.sum() < 2 or not np.isfinite(t) or not (row[ok].min() <= t <= row[ok].max()):
            continue
        r = np.minimum.accumulate(row[ok])          # monotone even if round-off wiggles
        out[i] = math.exp(np.interp(-t, -r, lc[ok]))
    return out


def frontier_inverse(fit: ap.LawFit, targets, Cgrid) -> np.ndarray:
    """The budgets at which ``fit``'s compute-optimal loss reaches each of ``targets``:
    bracketed on ``Cgrid``, then bisected to round-off (NaN outside the grid)."""
    targets = np.atleast_1d(np.asarray(targets, dtype=np.float64))
    tab = frontier_losses(fit.law, np.array([fit.x]), Cgrid, fit.k)
    guess = _invert(np.repeat(tab, len(targets), axis=0), Cgrid, targets)
    ok = np.isfinite(guess)
    step = np.log(Cgrid[1] / Cgrid[0])
    lo, hi = np.log(guess[ok]) - 2 * step, np.log(guess[ok]) + 2 * step
    for _ in range(60):
        mid = (lo + hi) / 2
        above = np.asarray(fit.loss_opt(np.exp(mid))) > targets[ok]   # not there yet: more compute
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    guess[ok] = np.exp((lo + hi) / 2)
    return guess


@dataclasses.dataclass(frozen=True)
class Comparison(Rich):
    """Gain of recipe B over recipe A (``table``: one row per budget, measured then
    extrapolated) and both fits."""

    labels: tuple[str, str]
    fit_a: ap.LawFit
    fit_b: ap.LawFit
    table: pd.DataFrame
    K: int
    level: float
    warnings: tuple[str, ...]
    minima_a: pd.DataFrame | None = None
    minima_b: pd.DataFrame | None = None
    differences: pd.DataFrame | None = None   # one row per quantity: value_a, value_b, diff (B - A), interval
    paired: bool = False                      # same (N, D) points in both tables, resampled together

    def to_markdown(self) -> str:
        a, b = self.labels
        L = [f"Compute-equivalent gain of **{b}** over **{a}** ({self.fit_a.law.name} law fitted to "
             f"each; {int(100 * self.level)}% bootstrap intervals, K={self.K}): the compute {a} needs "
             f"for its compute-optimal loss, divided by the compute {b} needs for the same loss.", "",
             f"| budget C | kind | loss* {a} | loss* {b} | C_{b} for loss* {a} | gain | interval | "
             f"min {a} (measured) | min {b} (measured) | gain of the measured minima |",
             "|---|---|---|---|---|---|---|---|---|---|"]
        fmt = lambda v, f: "-" if v is None or not np.isfinite(v) else format(v, f)  # noqa: E731
        for _, r in self.table.iterrows():
            L.append(f"| {r['C']:.3g} | {r['kind']} | {fmt(r['loss_a'], '.4f')} | {fmt(r['loss_b'], '.4f')} | "
                     f"{fmt(r['c_b'], '.3g')} | **{fmt(r['gain'], '.2f')}x** | "
                     f"[{fmt(r['gain_lo'], '.2f')}, {fmt(r['gain_hi'], '.2f')}] | {fmt(r['measured_a'], '.4f')} | "
                     f"{fmt(r['measured_b'], '.4f')} | {fmt(r['gain_measured'], '.2f')} |")
        if self.differences is not None:
            how = ("paired: both tables hold the same (N, D) points, resampled together" if self.paired
                   else "the tables' designs differ: resampled independently")
            L += ["", f"Law of **{b}** minus law of **{a}** ({int(100 * self.level)}% bootstrap intervals, "
                  f"{how}):", "", f"| quantity | {a} | {b} | {b} - {a} | interval | relative |",
                  "|---|---|---|---|---|---|"]
            for _, r in self.differences.iterrows():
                L.append(f"| {r['quantity']} | {r['value_a']:.4g} | {r['value_b']:.4g} | **{r['diff']:+.4g}** | "
                         f"[{fmt(r['diff_lo'], '+.4g')}, {fmt(r['diff_hi'], '+.4g')}] | {fmt(100 * r['rel'], '+.2f')}% |")
        if self.warnings:
            L += [""] + [f"- {w}" for w in self.warnings]
        return "\n".join(L) + "\n"

    def tables(self) -> list[Table]:
        a, b = self.labels
        lv = f"{int(100 * self.level)}%"
        rows = tuple((fmt(r["C"]), r["kind"], fmt(r["loss_a"]), fmt(r["loss_b"]), fmt(r["gain"]) + "x",
                      interval(r["gain_lo"], r["gain_hi"]), fmt(r["gain_measured"])) for _, r in self.table.iterrows())
        out = [Table(f"Compute-equivalent gain of {b} over {a} ({self.fit_a.law.name} law fitted to each; "
                     f"bootstrap K={self.K})", ("budget C", "kind", f"loss* {a}", f"loss* {b}", "gain",
                                                 f"gain {lv}", "gain of the measured minima"), rows,
                     (f"gain: the compute {a} needs for its compute-optimal loss / the compute {b} needs "
                      f"for the same loss (> 1: {b} is cheaper)",))]
        if self.differences is not None:
            rows = tuple((r["quantity"], fmt(r["value_a"]), fmt(r["value_b"]), f"{r['diff']:+.4g}",
                          interval(r["diff_lo"], r["diff_hi"])) for _, r in self.differences.iterrows())
            out.append(Table(f"Law of {b} minus law of {a} ({'paired' if self.paired else 'independent'} resampling)",
                             ("quantity", a, b, f"{b} - {a}", lv), rows))
        if self.warnings:
            out[-1] = dataclasses.replace(out[-1], notes=out[-1].notes + tuple(self.warnings))
        return out

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def as_dict(self) -> dict:
        return {"labels": list(self.labels), "law": self.fit_a.law.name, "K": self.K,
                "level": self.level, "fit_a": self.fit_a.as_dict(), "fit_b": self.fit_b.as_dict(),
                "table": self.table.to_dict(orient="records"), "paired": self.paired,
                "differences": None if self.differences is None else self.differences.to_dict(orient="records"),
                "warnings": list(self.warnings)}


def matched_rows(fa: pd.DataFrame, fb: pd.DataFrame, rtol: float = 1e-6) -> np.ndarray | None:
    """``perm`` with ``fb.iloc[perm[i]]`` at the (N, D) point of ``fa.iloc[i]`` for every row, when
    the two prepared frames hold the same points (same multiset, relative tolerance ``rtol``);
    else None."""
    if len(fa) != len(fb):
        return None
    ka, kb = (np.log(f[["N", "D"]].to_numpy(dtype=np.float64)) for f in (fa, fb))
    oa, ob = np.lexsort(ka.T[::-1]), np.lexsort(kb.T[::-1])
    if not np.allclose(ka[oa], kb[ob], rtol=0.0, atol=rtol):
        return None
    perm = np.empty(len(fa), dtype=np.int64)
    perm[oa] = ob
    return perm


def _differences(fits, samples, level: float) -> pd.DataFrame:
    """B - A for a, b and every parameter both laws name, point and percentile interval."""
    names = ["a", "b"] + [p for p in fits[0].named if p in fits[1].named]
    q = (1 - level) / 2
    rows = []
    for name in names:
        va, vb = (float(unc.law_samples(f.law, np.array([f.x]), name)[0]) for f in fits)
        d = unc.law_samples(fits[1].law, samples[1], name) - unc.law_samples(fits[0].law, samples[0], name)
        d = d[np.isfinite(d)]
        rows.append({"quantity": name, "value_a": va, "value_b": vb, "diff": vb - va,
                     "diff_lo": float(np.quantile(d, q)) if d.size else np.nan,
                     "diff_hi": float(np.quantile(d, 1 - q)) if d.size else np.nan,
                     "rel": vb / va - 1 if va != 0 else np.nan, "n_boot": int(d.size)})
    return pd.DataFrame(rows)


def _minima(frame) -> pd.DataFrame | None:
    try:
        r = ap.fit_approach2(frame, **{k: v for k, v in canon(frame).items() if k != "u_col"},
                             min_budgets=1)
    except ValueError:
        return None
    t = r.table()
    return t[t["included"]][["budget", "n_opt", "d_opt", "loss_opt"]].reset_index(drop=True)


def compare(df_a: pd.DataFrame, df_b: pd.DataFrame, *, loss_col: str, n_col: str | None = None,
            d_col: str | None = None, c_col: str | None = None, budget_col: str | None = None,
            law="chinchilla", labels=("A", "B"), K: int = 200, seed: int = 0, Cs=None,
            extrapolate=(10.0, 100.0), level: float = 0.95, starts="full",
            **columns) -> Comparison:
    """Compute-equivalent gain of ``df_b``'s recipe over ``df_a``'s (same column names).

    Rows: every budget of A inside B's budget range (``kind`` "measured"), then
    ``extrapolate`` multiples of the largest shared budget and the budgets ``Cs``
    (``kind`` "extrapolated").  ConfigError when the two tables share no budget range.
    """
    cols = dict(n_col=n_col, d_col=d_col, c_col=c_col, loss_col=loss_col, budget_col=budget_col, **columns)
    frames = []
    for lab, df in zip(labels, (df_a, df_b)):
        if not isinstance(df, pd.DataFrame) or len(df) == 0:
            raise ConfigError(f"compare: table {lab} is empty or not a DataFrame")
        frames.append(canonical(df, **cols))
    fa, fb = frames
    lo_a, hi_a = fa["budget"].min(), fa["budget"].max()
    lo_b, hi_b = fb["budget"].min(), fb["budget"].max()
    lo, hi = max(lo_a, lo_b), min(hi_a, hi_b)
    if lo > hi * 1.05:
        raise ConfigError(f"compare: budgets of {labels[0]} span [{lo_a:.3g}, {hi_a:.3g}] and of "
                          f"{labels[1]} [{lo_b:.3g}, {hi_b:.3g}]: no overlap; compare tables trained "
                          f"at overlapping compute")
    warns: list[str] = []
    fits = [ap.fit_approach3(f, **canon(f), law=law, starts=starts) for f in frames]
    for lab, f in zip(labels, fits):
        warns += [f"{lab}: {w}" for w in f.warnings]
    if abs(fits[0].k / fits[1].k - 1) > 0.05:
        warns.append(f"the tables count FLOPs differently (C/(N D) = {fits[0].k:.3g} vs {fits[1].k:.3g}); "
                     f"gains compare their C columns as given")
    shared = np.unique(fa["budget"][(fa["budget"] >= lo / 1.05) & (fa["budget"] <= hi * 1.05)])
    extra = sorted(set([float(hi * m) for m in extrapolate] + [float(c) for c in np.atleast_1d(Cs if Cs is not None else [])]))
    C_eval = np.concatenate([shared, extra])
    Cgrid = np.logspace(math.log10(min(lo_a, lo_b)) - 3, math.log10(max(C_eval.max(), hi_a, hi_b)) + 3, 600)
    point = [np.array([f.x]) for f in fits]
    perm = matched_rows(fa, fb)
    counts = [unc.resample_counts(fa["budget"].to_numpy(), K, seed)]
    if perm is None:
        counts.append(unc.resample_counts(fb["budget"].to_numpy(), K, seed + 1))
    else:                                   # paired: B's row perm[i] is drawn as often as A's row i
        counts_b = np.empty_like(counts[0])
        counts_b[:, perm] = counts[0]
        counts.append(counts_b)
    samples = []
    for f, fr, w, s in zip(fits, frames, counts, (seed, seed + 1)):
        y = np.log(fr["loss"].to_numpy())[None]
        samples.append(unc.refit_rows(f, inputs_of(fr), y, w, unc.law_starts(f, 2, s if perm is None else seed),
                                      HUBER_DELTA))

    def gains(Sa, Sb):
        la = frontier_losses(fits[0].law, Sa, C_eval, fits[0].k)          # (K, nC)
        tab_b = frontier_losses(fits[1].law, Sb, Cgrid, fits[1].k)         # (K, G)
        cb = np.stack([_invert(tab_b, Cgrid, la[:, j]) for j in range(len(C_eval))], axis=1)
        return la, cb

    la = frontier_losses(fits[0].law, point[0], C_eval, fits[0].k)
    lb = frontier_losses(fits[1].law, point[1], C_eval, fits[1].k)
    cb = frontier_inverse(fits[1], la[0], Cgrid)[None]
    _, CB = gains(*samples)
    G = C_eval[None] / CB
    q = (1 - level) / 2
    ma, mb = _minima(fa), _minima(fb)

    def measured(m, C):
        if m is None:
            return np.nan
        hit = m[np.isclose(m["budget"], C, rtol=0.05)]
        return float(hit["loss_opt"].iloc[0]) if len(hit) else np.nan

    def measured_gain(C):
        """C / (compute at which B's measured minima reach A's measured minimum at C)."""
        la_m = measured(ma, C)
        if mb is None or len(mb) < 2 or not np.isfinite(la_m):
            return np.nan
        cb_m = _invert(mb["loss_opt"].to_numpy()[None], mb["budget"].to_numpy(), np.array([la_m]))[0]
        return float(C / cb_m)

    rows = []
    for j, C in enumerate(C_eval):
        g = G[:, j]
        fin = g[np.isfinite(g)]
        rows.append({"C": float(C), "kind": "measured" if j < len(shared) else "extrapolated",
                     "loss_a": float(la[0, j]), "loss_b": float(lb[0, j]),
                     "measured_a": measured(ma, C), "measured_b": measured(mb, C),
                     "gain_measured": measured_gain(C),
                     "c_b": float(cb[0, j]), "gain": float(C / cb[0, j]),
                     "gain_lo": float(np.quantile(fin, q)) if fin.size else np.nan,
                     "gain_hi": float(np.quantile(fin, 1 - q)) if fin.size else np.nan,
                     "n_boot": int(fin.size)})
        if fin.size < 0.9 * K:
            warns.append(f"C={C:.3g}: {K - fin.size} of {K} resamples could not reach A's loss within "
                         f"the tabulated range; the interval uses the rest")
    return Comparison(tuple(labels), fits[0], fits[1], pd.DataFrame(rows), K, level, tuple(warns), ma, mb,
                      differences=_differences(fits, samples, level), paired=perm is not None)
