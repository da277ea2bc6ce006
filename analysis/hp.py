"""Hyperparameters by law: the best LR (and batch) per group of an HP sweep, and a power law through them.

Two stages, on any table whose column names are arguments (our sweeps' ``results.csv`` or a
published LR grid):

1. :func:`best_lrs`: per (N, D[, B]) group, a least-squares parabola of the loss in log LR and
   its vertex, the group's best LR (:func:`analysis.vertices.vertex`: a group whose parabola
   opens downwards or whose vertex lies outside the sampled LRs has no interior minimum; it is
   reported with the reason and left out of the law, never extrapolated).  Its interval comes
   from the project's bootstrap (:func:`analysis.uncertainty.resample_counts`: runs resampled
   with replacement within the group, K times, seeded; the vertex refitted on each resample).
2. :func:`fit_law`: ``log LR* = log c + sum_i e_i log X_i`` through the included vertices by
   least squares, ``X = (N, D)`` by default (``LR* = c N^a D^b``; Step Law's form), ``(N,)``,
   ``(D,)`` or DeepSeek's ``(C,)`` with ``C = 6 N D``; with a batch column, a ``B`` term too, and
   the best batch per (N, D) (:func:`best_batches`) gets its own law the same way.  Intervals on
   every coefficient: for each bootstrap draw the groups are resampled with replacement and each
   drawn group contributes its own bootstrap vertex, so the interval carries both the scatter of
   the vertices about the law and each vertex's own uncertainty.

The fitted law is an :class:`HPLaw`: it predicts with intervals, saves to JSON with the table it
was fitted on (:meth:`HPLaw.save`, :meth:`HPLaw.load`) and is a recipe rule
(``Recipe(lr_rule=HPLaw.load(path))``) that refuses a model of another parametrization or a
table whose columns a recipe cannot supply.  Imports numpy at module level only (planners load
law files without pandas); :mod:`analysis.hp_plots` draws the figures.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from analysis.errors import ConfigError

LAW_FORMS = {"nd": ("N", "D"), "n": ("N",), "d": ("D",), "c": ("C",)}
FORMAT = "scaling.hp_law/1"
# What a recipe knows about a cell, by the law's column: N from the parameter counts, D = tokens.
RECIPE_N_COLS = {"n_total": "total", "n_non_embedding": "non_embedding"}
RECIPE_D_COLS = ("tokens",)


# ------------------------------------------------------------------------------ input checks
def check_table(df, *, n_col: str, d_col: str | None, lr_col: str, loss_col: str, batch_col: str | None = None):
    """The rows to fit (``state == done`` when there is a state column) with every column checked.

    Rows of group ``wsd_trunk`` are dropped as :func:`analysis.data.drop_groups` does for every fit.
    One :class:`ConfigError` naming the column and the fix, before any fit: a missing or
    non-numeric column, a non-positive LR, an LR column with one value per group (not an LR
    sweep), or no group with 3 distinct LRs (a parabola needs 3).
    """
    import pandas as pd

    from analysis.data import done_runs, drop_groups

    df = drop_groups(df)  # WSD trunks' losses are mid-schedule, never a run's final number
    cols = [c for c in (n_col, d_col, lr_col, loss_col, batch_col) if c is not None]
    for c in cols:
        if c not in df.columns:
            raise ConfigError(f"column {c!r} not in table (columns: {', '.join(map(str, df.columns))}); "
                              f"name the right one with --{_flag(c, n_col, d_col, lr_col, loss_col, batch_col)}")
    df, _ = done_runs(df)
    if len(df) == 0:
        raise ConfigError("every run was excluded for its state (no row has state == 'done'); nothing to fit")
    for c in cols:
        v = pd.to_numeric(df[c], errors="coerce")
        if v.isna().any():
            raise ConfigError(f"column {c!r}: {int(v.isna().sum())} value(s) not numeric; give a numeric column "
                              f"with --{_flag(c, n_col, d_col, lr_col, loss_col, batch_col)}")
        df = df.assign(**{c: v.astype(float)})
    bad = df[lr_col] <= 0
    if bad.any():
        raise ConfigError(f"column {lr_col!r}: {int(bad.sum())} non-positive learning rate(s) (e.g. "
                          f"{df.loc[bad, lr_col].iloc[0]:g}); learning rates must be > 0 (fix the table or --lr-col)")
    keys = [c for c in (n_col, d_col, batch_col) if c is not None]
    for c in keys:
        if (df[c] <= 0).any():
            raise ConfigError(f"column {c!r}: non-positive values; N, D and B must be > 0")
    distinct = df.groupby(keys)[lr_col].nunique()
    if distinct.max() == 1:
        raise ConfigError(f"column {lr_col!r} holds one value per ({', '.join(keys)}) group: not an LR sweep; "
                          f"pass the column that varies with --lr-col, or sweep >= 3 LRs per group")
    if distinct.max() < 3:
        raise ConfigError(f"column {lr_col!r}: no ({', '.join(keys)}) group has 3 distinct learning rates (at most "
                          f"{distinct.max()}); a parabola in log LR needs >= 3 per group (5 a factor 2 apart is "
                          f"a good start)")
    return df


def _flag(c, n_col, d_col, lr_col, loss_col, batch_col) -> str:
    return {n_col: "n-col", d_col: "d-col", lr_col: "lr-col", loss_col: "loss-col", batch_col: "batch-col"}[c]


# ------------------------------------------------------------------------------ stage 1: vertices
def _vertex_samples(x: np.ndarray, y: np.ndarray, K: int, seed: int, local: bool) -> np.ndarray:
    """K bootstrap vertices (log LR) of one group; NaN where a resample has no interior minimum."""
    from analysis.uncertainty import resample_counts
    from analysis.vertices import vertex

    if K == 0:
        return np.empty(0)
    counts = resample_counts(np.zeros(len(x), dtype=int), K, seed)
    out = np.full(K, np.nan)
    for k in range(K):
        idx = np.repeat(np.arange(len(x)), counts[k].astype(int))
        v = vertex(0.0, x[idx], y[idx], local=local)
        if v.included and np.unique(x[idx]).size >= 3:
            out[k] = v.x
    return out


def best_lrs(df, *, n_col: str = "n_total", d_col: str | None = "tokens", lr_col: str = "peak_lr",
             loss_col: str = "eval_loss", batch_col: str | None = None, bootstrap: int = 200, seed: int = 0,
             level: float = 0.95, local: bool = False, samples: bool = False):
    """Per (N, D[, B]) group: the best LR, its interval and whether it enters the law.

    Returns a DataFrame, one row per group in (N, D, B) order: ``N``, ``D`` (``B``), ``lr``
    (``exp`` of the parabola's vertex in log LR), ``lr_lo``/``lr_hi`` (the ``level`` bootstrap
    interval over ``bootstrap`` resamples; NaN when off), ``loss`` (the parabola at the vertex),
    ``n_lrs``, ``included`` and ``reason`` (why a group was left out), ``boot_ok`` (the share
    of resamples with an interior minimum).  ``local=True``: the vertex of the lowest point and
    its two neighbours, clipped to them (:func:`analysis.vertices.vertex`; always included):
    for coarse scans whose ends are far off.  ``d_col=None`` groups by N (and B) only (``D`` is
    then NaN), e.g. for losses already averaged over horizons.  ``samples=True`` adds ``lr_samples`` (the bootstrap
    vertices in log LR) for :func:`fit_law`.
    """
    import pandas as pd

    from analysis.uncertainty import percentile_interval
    from analysis.vertices import vertex

    df = check_table(df, n_col=n_col, d_col=d_col, lr_col=lr_col, loss_col=loss_col, batch_col=batch_col)
    keys = [c for c in (n_col, d_col, batch_col) if c is not None]
    names = [k for k, c in zip(("N", "D", "B"), (n_col, d_col, batch_col)) if c is not None]
    rows = []
    for i, (key, g) in enumerate(df.groupby(keys, sort=True)):
        g = g.sort_values(lr_col)
        x, y = np.log(g[lr_col].to_numpy()), g[loss_col].to_numpy(dtype=float)
        v = vertex(0.0, x, y, local=local)
        s = _vertex_samples(x, y, bootstrap, seed + 7919 * i, local) if v.included else np.empty(0)
        lo, hi = percentile_interval(s, level) if s.size else (math.nan, math.nan)
        row = dict(zip(names, key if isinstance(key, tuple) else (key,)))
        row.setdefault("D", math.nan)
        row.update(lr=math.exp(v.x) if math.isfinite(v.x) else math.nan, lr_lo=math.exp(lo) if math.isfinite(lo)
                   else math.nan, lr_hi=math.exp(hi) if math.isfinite(hi) else math.nan,
                   loss=v.y, n_lrs=int(np.unique(x).size), included=bool(v.included), reason=v.reason,
                   boot_ok=float(np.isfinite(s).mean()) if s.size else math.nan)
        if not v.included:
            row["lr"] = math.nan  # never report an extrapolated optimum as a best LR
        if samples:
            row["lr_samples"] = s
        rows.append(row)
    return pd.DataFrame(rows)


def best_batches(groups, *, local: bool = False):
    """Per (N, D) of :func:`best_lrs` groups with a ``B`` column: the best batch, the vertex of a
    parabola of the best-LR loss in log B (groups with fewer than 3 batches or no interior
    minimum are left out with the reason).  Columns ``N, D, B, loss, n_batches, included, reason``."""
    import pandas as pd

    from analysis.vertices import vertex

    rows = []
    for (n, d), g in groups[groups.included].groupby(["N", "D"], sort=True):
        v = vertex(0.0, np.log(g.B.to_numpy(dtype=float)), g.loss.to_numpy(dtype=float), local=local)
        rows.append(dict(N=n, D=d, B=math.exp(v.x) if v.included else math.nan, loss=v.y,
                         n_batches=int(g.B.nunique()), included=bool(v.included), reason=v.reason))
    return pd.DataFrame(rows, columns=["N", "D", "B", "loss", "n_batches", "included", "reason"])


def lr_spread(groups, *, level: float = 0.95) -> dict:
    """The spread ``max / min`` of the best LRs of :func:`best_lrs` groups (``samples=True``), with its noise.

    Meant for a transfer check: the groups of one horizon across widths.  Returns ``spread``
    (of the included groups' point vertices), ``ci`` (its ``level`` interval: on bootstrap draw
    k every group contributes its own k-th bootstrap vertex; draws where some group has none are
    dropped), ``null_median`` and ``null_hi`` (the spread that the vertices' noise alone gives
    when every group's true best LR is the same: each group's bootstrap vertices centred on their
    own median, the spread of draw k taken, its median and upper ``level`` quantile), and
    ``draws`` (the draws used).  Max/min of noisy estimates exceeds 1 even under perfect
    transfer (and the bootstrap spread sits above the true one for the same reason), so a
    measured spread inside ``[1, null_hi]`` is not evidence of a width dependence.  NaN entries with fewer than 2 included groups.
    """
    ok = groups[groups.included & np.isfinite(groups["lr"].to_numpy(float))]
    nan = dict(spread=math.nan, ci=(math.nan, math.nan), null_median=math.nan, null_hi=math.nan, draws=0, n=len(ok))
    if len(ok) < 2:
        return nan
    point = np.log(ok["lr"].to_numpy(float))
    out = dict(nan, spread=float(math.exp(point.max() - point.min())))
    if "lr_samples" not in ok.columns:
        return out
    K = min(len(s) for s in ok["lr_samples"])
    if K == 0:
        return out
    S = np.stack([np.asarray(s[:K], float) for s in ok["lr_samples"]])  # (groups, K) log LR
    good = np.all(np.isfinite(S), axis=0)
    S = S[:, good]
    if S.shape[1] == 0:
        return out
    from analysis.uncertainty import percentile_interval

    lo, hi = percentile_interval(S.max(0) - S.min(0), level)
    centred = S - np.median(S, axis=1, keepdims=True)
    null = centred.max(0) - centred.min(0)
    out.update(ci=(math.exp(lo), math.exp(hi)), null_median=float(math.exp(np.median(null))),
               null_hi=float(math.exp(np.quantile(null, level))), draws=int(S.shape[1]))
    return out


# ------------------------------------------------------------------------------ stage 2: the law
@dataclasses.dataclass(frozen=True)
class HPLaw:
    """``target* = c * prod_i X_i^e_i`` (``target``: ``lr`` or ``batch``), with intervals.

    ``variables`` name the ``X_i`` (``N``, ``D``, ``C = 6 N D``, ``B``); ``log_c`` and
    ``exponents`` are the least-squares fit; ``ci`` maps ``c`` and each variable to its
    interval; ``samples`` are the bootstrap coefficient vectors ``(log c, e_1, ...)`` behind the
    intervals (and behind :meth:`interval`).  ``columns`` (n_col, d_col, lr_col, loss_col,
    batch_col), ``parametrization``, ``table`` and ``table_sha256`` record what it was fitted on.

    As a recipe rule (``Recipe(lr_rule=law)``; ``uses_tokens``: the planner passes the cell's
    tokens) it returns the law's value at the cell's N and D, after checking that the model has
    the law's parametrization and that the law's columns are ones a recipe supplies (N:
    ``n_total`` or ``n_non_embedding``; D: ``tokens``).
    """

    target: str
    variables: tuple[str, ...]
    log_c: float
    exponents: tuple[float, ...]
    ci: dict
    samples: tuple[tuple[float, ...], ...] = ()
    columns: dict = dataclasses.field(default_factory=dict)
    parametrization: str = "standard"
    table: str = ""
    table_sha256: str = ""
    n_groups: int = 0
    level: float = 0.95

    uses_tokens = True  # the planner calls rule(model_config, counts, tokens)

    @property
    def c(self) -> float:
        return math.exp(self.log_c)

    def _x(self, N=None, D=None, B=None) -> np.ndarray:
        vals = {"N": N, "D": D, "B": B, "C": 6.0 * N * D if N is not None and D is not None else None}
        out = [1.0]
        for v in self.variables:
            if vals[v] is None or not (vals[v] > 0):
                raise ConfigError(f"{self.target} law in {', '.join(self.variables)}: needs {v} > 0 to predict "
                                  f"(got {vals[v]!r})")
            out.append(math.log(vals[v]))
        return np.asarray(out)

    def predict(self, N=None, D=None, B=None) -> float:
        """The law's value at N, D (and B when it has a B term)."""
        return float(math.exp(np.dot(np.r_[self.log_c, self.exponents], self._x(N, D, B))))

    def interval(self, N=None, D=None, B=None, level: float | None = None) -> tuple[float, float]:
        """The bootstrap interval of the law's value at N, D (NaN without samples)."""
        from analysis.uncertainty import percentile_interval

        if not self.samples:
            return (math.nan, math.nan)
        vals = np.exp(np.asarray(self.samples) @ self._x(N, D, B))
        lo, hi = percentile_interval(vals, level or self.level)
        return (float(lo), float(hi))

    def __call__(self, model, counts, tokens: float | None = None) -> float:
        p = getattr(model, "parametrization", "standard")
        if p != self.parametrization:
            raise ConfigError(f"lr_rule: the law in {self.table or 'its file'} was fitted on "
                              f"parametrization={self.parametrization!r} runs but the recipe's model is {p!r}; "
                              f"fit a law on {p!r} runs (scaling fit-hp --parametrization {p}) or set the recipe's "
                              f"parametrization to {self.parametrization!r}")
        n_col, d_col = self.columns.get("n_col"), self.columns.get("d_col")
        if n_col not in RECIPE_N_COLS:
            raise ConfigError(f"lr_rule: the law was fitted on N column {n_col!r}; a recipe knows N only as "
                              f"{' or '.join(RECIPE_N_COLS)}; refit with --n-col n_total")
        if "D" in self.variables or "C" in self.variables:
            if d_col not in RECIPE_D_COLS:
                raise ConfigError(f"lr_rule: the law was fitted on D column {d_col!r}; a recipe knows D only as "
                                  f"'tokens'; refit with --d-col tokens")
            if tokens is None:
                raise ConfigError("lr_rule: this law depends on D; the planner passes a cell's tokens to rules with "
                                  "uses_tokens = True")
        if "B" in self.variables:
            raise ConfigError("lr_rule: this law has a batch term; fit it with a fixed batch, or use it through "
                              "HPLaw.predict(N, D, B)")
        N = float(getattr(counts, RECIPE_N_COLS[n_col]))
        value = self.predict(N=N, D=float(tokens) if tokens is not None else None)
        return value if self.target == "lr" else max(1, int(round(value)))

    # -- files -------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {"format": FORMAT, "target": self.target, "variables": list(self.variables),
             "formula": self.formula(), "c": self.c, "log_c": self.log_c,
             "exponents": dict(zip(self.variables, self.exponents)),
             "ci": {k: list(v) for k, v in self.ci.items()}, "level": self.level, "n_groups": self.n_groups,
             "parametrization": self.parametrization, "columns": self.columns, "table": self.table,
             "table_sha256": self.table_sha256, "samples": [list(s) for s in self.samples]}
        return d

    def formula(self) -> str:
        lhs = "LR*" if self.target == "lr" else "B*"
        return f"{lhs} = {self.c:.4g}" + "".join(f" * {v}^{e:+.3f}" for v, e in zip(self.variables, self.exponents))

    def save(self, path: str | os.PathLike) -> str:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return str(p)

    @classmethod
    def from_dict(cls, d: dict, where: str = "law") -> "HPLaw":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ConfigError(f"{where}: not an HP law file (format {FORMAT!r}); write one with "
                              f"`scaling fit-hp TABLE --save {where}`")
        try:
            variables = tuple(d["variables"])
            return cls(target=d["target"], variables=variables, log_c=float(d["log_c"]),
                       exponents=tuple(float(d["exponents"][v]) for v in variables),
                       ci={k: tuple(v) for k, v in d.get("ci", {}).items()},
                       samples=tuple(tuple(float(x) for x in s) for s in d.get("samples", [])),
                       columns=dict(d.get("columns", {})), parametrization=d.get("parametrization", "standard"),
                       table=d.get("table", ""), table_sha256=d.get("table_sha256", ""),
                       n_groups=int(d.get("n_groups", 0)), level=float(d.get("level", 0.95)))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{where}: HP law file is missing or has a bad field ({type(e).__name__}: {e}); "
                              f"rewrite it with `scaling fit-hp TABLE --save {where}`") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "HPLaw":
        """A law written by :meth:`save` (``scaling fit-hp --save``)."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"HPLaw.load({str(path)!r}): no such file; write one with `scaling fit-hp TABLE "
                              f"--save {path}`")
        try:
            d = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"HPLaw.load({str(path)!r}): not valid JSON (line {e.lineno}: {e.msg})") from None
        return cls.from_dict(d, str(path))


def _design(frame, variables: Sequence[str]) -> np.ndarray:
    cols = []
    for v in variables:
        cols.append(np.log(6.0 * frame["N"].to_numpy(float) * frame["D"].to_numpy(float)) if v == "C"
                    else np.log(frame[v].to_numpy(float)))
    return np.column_stack([np.ones(len(frame))] + cols)


def fit_law(groups, *, law: str = "nd", target: str = "lr", value_col: str | None = None, bootstrap: int = 200,
            seed: int = 0, level: float = 0.95, **record) -> HPLaw:
    """The power law through the included groups of :func:`best_lrs` (or :func:`best_batches`).

    ``law``: ``nd`` (``c N^a D^b``), ``n``, ``d`` or ``c`` (DeepSeek: ``c C^a``, ``C = 6 N D``);
    a ``B`` column with more than one value adds a ``B`` term to an LR law.  ``record`` is kept
    on the law (columns, parametrization, table...).  Raises :class:`ConfigError` when too few
    groups are included or the variables cannot be separated (e.g. every group at one tokens
    per parameter: log N and log D collinear; use ``law='n'`` or ``'c'``).
    """
    if law not in LAW_FORMS:
        raise ConfigError(f"--law {law!r}: choose one of {', '.join(LAW_FORMS)} (nd: c N^a D^b; c: DeepSeek's c C^a)")
    value_col = value_col or ("lr" if target == "lr" else "B")
    variables = LAW_FORMS[law]
    if target == "lr" and "B" in groups.columns and groups["B"].nunique() > 1:
        variables = variables + ("B",)
    ok = groups[groups.included & np.isfinite(groups[value_col].to_numpy(float))].reset_index(drop=True)
    p = len(variables) + 1
    left = [f"N={r.N:.3g} D={r.D:.3g}: {r.reason}" for r in groups[~groups.included].itertuples()]
    if len(ok) < p:
        raise ConfigError(f"{target} law in {', '.join(variables)}: {len(ok)} group(s) with an interior minimum, "
                          f"need >= {p}" + (f" (left out: {'; '.join(left[:3])})" if left else "")
                          + "; widen the LR range or add sizes/horizons, or pick a smaller --law")
    X = _design(ok, variables)
    if np.linalg.matrix_rank(X - np.r_[0, X[:, 1:].mean(0)] * (np.arange(X.shape[1]) > 0)) < p:
        raise ConfigError(f"{target} law in {', '.join(variables)}: the groups' log "
                          f"{', '.join(variables)} are collinear (e.g. one tokens-per-parameter ratio for "
                          f"every size), so the exponents cannot be separated; use --law n, --law d or --law c")
    y = np.log(ok[value_col].to_numpy(float))
    theta = np.linalg.lstsq(X, y, rcond=None)[0]
    samples = _law_samples(ok, X, y, bootstrap, seed, p)
    names = ("c",) + variables
    ci = {}
    if len(samples):
        from analysis.uncertainty import percentile_interval

        for j, name in enumerate(names):
            lo, hi = percentile_interval(samples[:, j], level)
            ci[name] = (math.exp(lo), math.exp(hi)) if name == "c" else (lo, hi)
    return HPLaw(target=target, variables=tuple(variables), log_c=float(theta[0]),
                 exponents=tuple(float(t) for t in theta[1:]), ci=ci,
                 samples=tuple(tuple(float(v) for v in s) for s in samples), n_groups=len(ok), level=level, **record)


def _law_samples(ok, X: np.ndarray, y: np.ndarray, K: int, seed: int, p: int) -> np.ndarray:
    """K coefficient vectors: groups resampled with replacement, each with its own bootstrap vertex."""
    if K == 0:
        return np.empty((0, p))
    rng = np.random.default_rng(seed + 1)
    per_group = ok["lr_samples"].tolist() if "lr_samples" in ok.columns else None
    out = []
    for k in range(K):
        idx = rng.integers(0, len(ok), size=len(ok))
        yk = y[idx].copy()
        if per_group is not None:
            for j, i in enumerate(idx):
                s = per_group[i]
                if len(s) > k and np.isfinite(s[k]):
                    yk[j] = s[k]
        Xk = X[idx]
        if np.linalg.matrix_rank(Xk) < p:
            continue
        out.append(np.linalg.lstsq(Xk, yk, rcond=None)[0])
    return np.asarray(out).reshape(-1, p)


# ------------------------------------------------------------------------------ one call
def table_sha256(path) -> str:
    p = Path(path)
    if p.is_dir():
        p = next((p / n for n in ("results.parquet", "results.csv") if (p / n).exists()), p)
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""


def fit_hp(df, *, n_col: str = "n_total", d_col: str = "tokens", lr_col: str = "peak_lr",
           loss_col: str = "eval_loss", batch_col: str | None = None, law: str = "nd", bootstrap: int = 200,
           seed: int = 0, level: float = 0.95, at: Sequence[tuple] = (), parametrization: str | None = None,
           local: bool = False, table: str = "") -> dict:
    """Stage 1 and 2 in one call: ``{"law", "groups", "predictions"[, "batch_law", "batch_groups"]}``.

    ``law`` is the fitted :class:`HPLaw` (``summary["law"].to_dict()`` is what the JSON holds);
    ``groups`` the :func:`best_lrs` frame; ``predictions`` one dict per ``at`` point
    ``(N, D[, B])``: ``N, D, lr, lr_ci``.  A table with a ``parametrization`` column holding
    several values needs ``parametrization`` (one law per parametrization).
    """
    if law not in LAW_FORMS:
        raise ConfigError(f"--law {law!r}: choose one of {', '.join(LAW_FORMS)} (nd: c N^a D^b; c: DeepSeek's c C^a)")
    if "parametrization" in df.columns:
        have = sorted(set(df["parametrization"].dropna().astype(str)))
        if parametrization is None:
            if len(have) > 1:
                raise ConfigError(f"column 'parametrization' holds {', '.join(have)}: a law is fitted per "
                                  f"parametrization; choose one with --parametrization")
            parametrization = have[0] if have else "standard"
        elif parametrization not in have:
            raise ConfigError(f"--parametrization {parametrization}: the table holds only {', '.join(have)}")
        df = df[df["parametrization"].astype(str) == parametrization]
    elif parametrization is None:
        parametrization = "standard"
    groups = best_lrs(df, n_col=n_col, d_col=d_col, lr_col=lr_col, loss_col=loss_col, batch_col=batch_col,
                      bootstrap=bootstrap, seed=seed, level=level, local=local, samples=True)
    record = dict(columns=dict(n_col=n_col, d_col=d_col, lr_col=lr_col, loss_col=loss_col, batch_col=batch_col),
                  parametrization=parametrization, table=str(table),
                  table_sha256=table_sha256(table) if table else "")
    fitted = fit_law(groups, law=law, bootstrap=bootstrap, seed=seed, level=level, **record)
    out = {"law": fitted, "groups": groups.drop(columns=["lr_samples"]), "predictions": []}
    if batch_col is not None:
        bg = best_batches(groups, local=local)
        out["batch_groups"] = bg
        if bg.included.sum() >= len(LAW_FORMS[law]) + 1:
            out["batch_law"] = fit_law(bg, law=law, target="batch", bootstrap=bootstrap, seed=seed, level=level,
                                       **record)
    for pt in at:
        N, D = float(pt[0]), float(pt[1])
        B = float(pt[2]) if len(pt) > 2 else None
        if "B" in fitted.variables and B is None:
            if "batch_law" not in out:
                raise ConfigError(f"--at {N:g},{D:g}: the LR law has a batch term; give N,D,B")
            B = out["batch_law"].predict(N=N, D=D)
        rec = {"N": N, "D": D, "lr": fitted.predict(N, D, B), "lr_ci": list(fitted.interval(N, D, B))}
        if B is not None:
            rec["B"] = B
        out["predictions"].append(rec)
    return out


def to_json(summary: dict) -> dict:
    """The JSON of ``scaling fit-hp --format json``: ``{"law", "groups", "predictions"[, "batch_law", ...]}``."""
    def clean(v):
        if isinstance(v, (float, np.floating)):
            return None if not math.isfinite(v) else float(v)
        if isinstance(v, (np.integer,)):
            return int(v)
        if isinstance(v, (np.bool_,)):
            return bool(v)
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    out = {"law": clean({k: v for k, v in summary["law"].to_dict().items() if k != "samples"}),
           "groups": clean(summary["groups"].to_dict(orient="records")),
           "predictions": clean(summary["predictions"])}
    if "batch_groups" in summary:
        out["batch_groups"] = clean(summary["batch_groups"].to_dict(orient="records"))
    if "batch_law" in summary:
        out["batch_law"] = clean({k: v for k, v in summary["batch_law"].to_dict().items() if k != "samples"})
    return out


def to_markdown(summary: dict) -> str:
    """The text of ``scaling fit-hp``: groups with their best LR and interval, the law, predictions."""
    law, g = summary["law"], summary["groups"]
    has_b = "B" in g.columns
    lines = [f"# Best learning rate per group ({law.parametrization})", "",
             "| N | D |" + (" B |" if has_b else "") + " LRs | best LR | interval | loss at best | used |",
             "|---|---|" + ("---|" if has_b else "") + "---|---|---|---|---|"]
    for r in g.itertuples():
        used = "yes" if r.included else f"no: {r.reason}"
        lines.append(f"| {r.N:.4g} | {r.D:.4g} |" + (f" {r.B:g} |" if has_b else "")
                     + f" {r.n_lrs} | {r.lr:.4g} | [{r.lr_lo:.4g}, {r.lr_hi:.4g}] | {r.loss:.4g} | {used} |")
    lines += ["", f"## Law ({law.n_groups} groups, {100 * law.level:.0f}% bootstrap intervals)", "",
              f"    {law.formula()}", ""]
    for name in ("c",) + law.variables:
        val = law.c if name == "c" else law.exponents[law.variables.index(name)]
        lo, hi = law.ci.get(name, (math.nan, math.nan))
        lines.append(f"- {name if name == 'c' else 'exponent of ' + name}: {val:.4g} [{lo:.4g}, {hi:.4g}]")
    if "batch_law" in summary:
        bl = summary["batch_law"]
        lines += ["", "## Batch law", "", f"    {bl.formula()}"]
    if summary["predictions"]:
        lines += ["", "## Predictions", "", "| N | D | LR* | interval |", "|---|---|---|---|"]
        for p in summary["predictions"]:
            lines.append(f"| {p['N']:.4g} | {p['D']:.4g} | {p['lr']:.4g} | [{p['lr_ci'][0]:.4g}, {p['lr_ci'][1]:.4g}] |")
    return "\n".join(lines) + "\n"
