"""Input checking: turn any DataFrame into clean float64 columns, loudly.

Every fit in :mod:`analysis` starts here.  The caller names the columns (our results table
calls them ``n_total``, ``tokens``, ``eval_loss``, ``budget``; Epoch's reconstruction calls
them ``Model Size``, ``Training FLOP``, ``loss``), and :func:`prepare` returns a small frame
with the canonical columns ``N``, ``D``, ``C``, ``loss``, ``budget`` (and ``U``, unique
tokens, when asked for).

Rules, so that no fit is silently nonsense:

* any two of N, D, C are enough: the third follows from ``C = k N D`` (``k = 6`` for the
  usual 6ND convention; ``convention="8N"`` or a number for others), or, with a per-row
  FLOPs-per-token column F, from ``C = F D`` (and ``N = F / k`` when N is missing);
* a named column that is missing -> :class:`ConfigError` (a ``ValueError``) naming it and
  listing the columns found; a column that is not numeric -> ConfigError naming it;
* rows with NaN/inf in a used column (diverged runs, for example) are *excluded* and the
  exclusion is recorded in the returned warnings list;
* non-positive N, D, C, U or loss -> ConfigError naming the column (logs of them are taken
  everywhere, so there is no sensible way to keep such a row); U > D likewise.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import ConfigError

CONVENTIONS = {"6N": 6.0, "8N": 8.0}   # training FLOPs per parameter per token


def flops_factor(convention) -> float:
    """k in C = k N D for a convention name ("6N", "8N") or a positive number."""
    if isinstance(convention, str):
        if convention not in CONVENTIONS:
            raise ConfigError(f"convention: unknown {convention!r}; use one of "
                              f"{', '.join(CONVENTIONS)}, a number k (C = k N D) or flops_per_token_col")
        return CONVENTIONS[convention]
    k = float(convention)
    if not (math.isfinite(k) and k > 0):
        raise ConfigError(f"convention: {convention!r} is not a positive FLOPs-per-parameter-token factor")
    return k


def _columns_found(df) -> str:
    return ", ".join(map(str, df.columns))


def prepare(df: pd.DataFrame, *, loss_col: str, n_col: str | None = None,
            d_col: str | None = None, c_col: str | None = None, budget_col: str | None = None,
            u_col: str | None = None, flops_per_token_col: str | None = None,
            convention="6N", warnings: list | None = None) -> pd.DataFrame:
    """Validate ``df`` and return a frame with columns N, D, C, loss, budget (+ U), float64.

    ``budget`` is the caller's budget column when given, else NaN (approaches that need
    budgets then group by :func:`bin_budgets` of C).  Excluded rows are reported by
    appending a line to ``warnings``.
    """
    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"data: expected a pandas DataFrame, got {type(df).__name__}")
    used = {"n_col": n_col, "loss_col": loss_col, "d_col": d_col, "c_col": c_col,
            "budget_col": budget_col, "u_col": u_col, "flops_per_token_col": flops_per_token_col}
    for arg, col in used.items():
        if col is not None and col not in df.columns:
            raise ConfigError(f"{arg}: column {col!r} not in table; columns found: {_columns_found(df)}")
    have = {"N": n_col, "D": d_col, "C": c_col}
    sizes = sum(v is not None for v in have.values()) + (flops_per_token_col is not None)
    if sizes < 2:
        given = ", ".join(f"{a}={c!r}" for a, c in used.items() if c is not None and a != "loss_col")
        raise ConfigError(f"n_col/d_col/c_col: need two of parameters (n_col), tokens (d_col) and "
                          f"FLOPs (c_col, or flops_per_token_col); got {given or 'none'}; columns "
                          f"found: {_columns_found(df)}")
    if n_col is None and d_col is None:
        raise ConfigError("d_col: with only FLOPs columns, give a tokens column (d_col) or a "
                          "parameter column (n_col)")
    k = flops_factor(convention)
    warn = warnings if warnings is not None else []
    out = pd.DataFrame(index=df.index)
    named = (("N", n_col), ("loss", loss_col), ("D", d_col), ("C", c_col), ("budget", budget_col),
             ("U", u_col), ("F", flops_per_token_col))
    for name, col in named:
        if col is None:
            continue
        try:
            out[name] = pd.to_numeric(df[col], errors="raise").astype(np.float64)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{col}: column is not numeric ({e}); fix or drop those rows") from None
    # a missing budget is not a reason to drop a run (grid sweeps have none)
    core = [c for c in ("N", "loss", "D", "C", "U", "F") if c in out]
    bad = ~np.isfinite(out[core].to_numpy(dtype=np.float64)).all(axis=1)
    if bad.any():
        cols = ", ".join(c for n, c in named if c and n in core)
        warn.append(f"excluded {int(bad.sum())} row(s) with NaN/inf in {cols}")
        out = out[~bad]
    if len(out) == 0:
        raise ConfigError(f"{loss_col}: no usable rows left after excluding NaN/inf")
    for name, col in named:
        if col is not None and (out[name] <= 0).any():   # NaN budgets compare False: kept
            n_bad = int((out[name] <= 0).sum())
            raise ConfigError(f"{col}: {n_bad} non-positive value(s); scaling fits take logs, "
                              f"drop or fix those rows")
    F = out["F"] if "F" in out else None
    if "C" not in out:
        out["C"] = F * out["D"] if F is not None and "D" in out else k * out["N"] * out["D"]
    if "D" not in out:
        out["D"] = out["C"] / F if F is not None else out["C"] / (k * out["N"])
    if "N" not in out:
        out["N"] = F / k if F is not None else out["C"] / (k * out["D"])
    if "budget" not in out:
        out["budget"] = np.nan
    cols = ["N", "D", "C", "loss", "budget"]
    if "U" in out:
        over = out["U"] > out["D"] * (1 + 1e-9)
        if over.any():
            raise ConfigError(f"{u_col}: {int(over.sum())} row(s) with more unique tokens than tokens "
                              f"seen ({d_col or 'D'}); unique tokens must be <= tokens")
        cols.append("U")
    return out[cols].reset_index(drop=True)


def flops_per_param_token(frame: pd.DataFrame) -> float:
    """The k of C = k N D that the prepared frame implies (median over rows; 6 for 6ND)."""
    return float(np.median(frame["C"] / (frame["N"] * frame["D"])))


def drop_groups(df: pd.DataFrame, *, group_col: str = "group", groups=("wsd_trunk",),
                warnings: list | None = None) -> pd.DataFrame:
    """``df`` without rows whose ``group_col`` is in ``groups`` (a WSD trunk's checkpoints
    are mid-schedule, never a final loss); each exclusion is reported in ``warnings``."""
    if not groups or group_col not in df.columns:
        return df
    m = df[group_col].isin(groups)
    if m.any() and warnings is not None:
        warnings.append(f"excluded {int(m.sum())} row(s) of group(s) {', '.join(groups)} from the fits "
                        f"(not end-of-schedule losses)")
    return df[~m]


def near_optimum(df: pd.DataFrame, *, budget_col: str, loss_col: str, within: float = 0.05,
                 warnings: list | None = None) -> pd.DataFrame:
    """Rows whose loss is within ``within`` (relative) of their budget's lowest loss.

    Published IsoFLOP scans often reach far from the optimum (large models trained for a
    few hundred steps, with losses twice the minimum); those points are governed by
    effects a compute-optimal law does not model, and they dominate any fit.  Dropped rows
    are counted in ``warnings``.
    """
    for col in (budget_col, loss_col):
        if col not in df.columns:
            raise ConfigError(f"{col}: column not in table; columns found: {_columns_found(df)}")
    best = df.groupby(budget_col)[loss_col].transform("min")
    keep = df[loss_col] <= (1 + within) * best
    if warnings is not None and (~keep).any():
        warnings.append(f"kept {int(keep.sum())} of {len(df)} rows within {within:.0%} of their "
                        f"budget's lowest {loss_col}")
    return df[keep]


def bin_budgets(C, *, gap_dex: float = 0.1) -> np.ndarray:
    """Group FLOP counts that were meant to be one IsoFLOP budget.

    Published isoFLOP data (and runs whose achieved FLOPs differ slightly from the planned
    budget) scatter around nominal budgets.  Sorting log10 C and cutting wherever two
    neighbours differ by more than ``gap_dex`` gives the groups; each is labelled by the
    geometric mean of its members.
    """
    C = np.asarray(C, dtype=np.float64)
    if C.size == 0:
        return C.copy()
    order = np.argsort(C)
    lc = np.log10(C[order])
    group = np.concatenate([[0], np.cumsum(np.diff(lc) > gap_dex)])
    labels = np.empty_like(C)
    for g in np.unique(group):
        m = group == g
        labels[order[m]] = 10 ** lc[m].mean()
    return labels


def budgets_of(frame: pd.DataFrame) -> np.ndarray:
    """The budget label of every row: the budget column if present, else binned C."""
    b = frame["budget"].to_numpy(dtype=np.float64).copy()
    miss = ~np.isfinite(b)
    if miss.any():   # rows without a budget: group their FLOPs into IsoFLOP budgets
        b[miss] = bin_budgets(frame["C"].to_numpy()[miss])
    return b


# A design whose (log N, log D) cloud is thinner than this, relative to its length, lies on one
# line (one IsoFLOP budget, one tokens-per-parameter ratio): Approach 3 cannot separate the N
# and D terms there.  One budget of our results table (tokens rounded to whole batches) is
# ~5e-4; the quickstart's three budgets 0.69.
COLLINEAR_RATIO = 1e-2


def require_identifiable(frame: pd.DataFrame, approach: int, *, loss_col: str = "loss") -> None:
    """ConfigError with the reason when ``frame`` (from :func:`prepare`) cannot identify ``approach``.

    Every approach needs >= 2 distinct N and >= 2 distinct D; Approaches 1 and 2 fit power
    laws in C across budgets, so they need >= 2 budgets; Approach 3 separates the N and D
    terms, so (log N, log D) must not lie on one line.  Refused rather than fitted: such a fit
    converges to numbers (a = 0.34, E = 0.0002) that the data say nothing about.
    """
    name = f"Approach {approach}"
    if len(frame) == 0:
        raise ConfigError(f"{loss_col}: {name}: no usable runs")
    for q, what in (("N", "model size"), ("D", "token count")):
        vals = frame[q].unique()
        if len(vals) < 2:
            raise ConfigError(f"{loss_col}: {name} cannot be identified: all {len(frame)} run(s) have the same "
                              f"{q} ({vals[0]:.4g}); add runs at other {what}s")
    if approach in (1, 2):
        nb = len(np.unique(budgets_of(frame)))
        if nb < 2:
            raise ConfigError(f"budget: {name} cannot be identified: every run is at one compute budget "
                              f"(C ~ {float(frame['C'].median()):.3g}); a power law in C needs runs at >= 2 budgets")
    if approach == 3:
        x = np.column_stack([np.log(frame["N"].to_numpy()), np.log(frame["D"].to_numpy())])
        sv = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
        ratio = float(sv[-1] / sv[0]) if sv[0] > 0 else 0.0
        if ratio < COLLINEAR_RATIO:
            raise ConfigError(f"{loss_col}: {name} cannot be identified: log N and log D lie on one line "
                              f"(thickness {ratio:.1e} of its length: one compute budget or one tokens-per-"
                              f"parameter ratio), so the law's N and D terms cannot be separated; add runs "
                              f"at other budgets or ratios")


def done_runs(df: pd.DataFrame, *, state_col: str = "state") -> tuple[pd.DataFrame, list[dict]]:
    """``(runs to fit, runs excluded for their state)`` of a table with a run-state column.

    A sweep's results table holds diverged (and, read mid-sweep, unfinished) runs beside the
    done ones; their losses are not end-of-schedule numbers, so fits use the ``done`` rows
    only and every report lists the others (run id, state, steps trained when known).  A
    table without ``state_col`` is returned whole.
    """
    if state_col not in df.columns:
        return df, []
    keep = df[state_col] == "done"
    excluded = []
    for _, r in df[~keep].iterrows():
        rec = {"run_id": str(r.get("run_id", r.name)), "state": str(r[state_col])}
        for k in ("steps", "eval_loss", "n_total", "tokens"):
            v = r.get(k)
            if v is not None and not (isinstance(v, float) and not math.isfinite(v)):
                rec[k] = v.item() if hasattr(v, "item") else v
        excluded.append(rec)
    return df[keep], excluded


def load_results(sweep_dir_or_file, *, what: str = "sweep_dir_or_file") -> pd.DataFrame:
    """The tidy results table in one call: from a sweep directory (its ``results.parquet``,
    else ``results.csv``) or from a ``.csv`` / ``.parquet`` file of runs, ours or anyone's.

    ConfigError (naming ``what``, the argument as the caller calls it) for a path that does
    not exist, a directory without a results table, another kind of file, an empty or
    unreadable file, or a table without rows.
    """
    p = Path(sweep_dir_or_file)
    if not p.exists():
        raise ConfigError(f"{what}: {sweep_dir_or_file} does not exist; pass a sweep directory "
                          f"(`scaling sweep --out DIR`) or a .csv/.parquet table")
    if p.is_dir():
        for name in ("results.parquet", "results.csv"):
            if (p / name).is_file():
                p = p / name
                break
        else:
            hint = ("its runs/ are there: rebuild the table with `scaling.results.write_table(DIR)` or "
                    "relaunch the sweep" if (p / "runs").is_dir() else "run the sweep first (`scaling sweep EXP --out DIR`)")
            raise ConfigError(f"{what}: {sweep_dir_or_file} has no results.parquet or results.csv; {hint}")
    if p.suffix not in (".parquet", ".pq", ".csv", ".txt"):
        raise ConfigError(f"{what}: {p.name}: expected a sweep directory or a .csv or .parquet file")
    try:
        df = pd.read_parquet(p) if p.suffix in (".parquet", ".pq") else pd.read_csv(p)
    except pd.errors.EmptyDataError:
        raise ConfigError(f"{what}: {p} is empty (no header row); pass a results table with one row per run") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as e:
        why = " ".join(str(e).split())[:160]
        raise ConfigError(f"{what}: {p} cannot be read as {p.suffix[1:]} ({type(e).__name__}: {why}); "
                          f"pass a .csv or .parquet results table") from None
    if len(df) == 0:
        raise ConfigError(f"{what}: {p} has a header but no rows; nothing to fit")
    return df


def load_table(path) -> pd.DataFrame:
    """:func:`load_results` as the ``scaling fit TABLE_OR_SWEEP_DIR`` argument reads it."""
    return load_results(path, what="TABLE_OR_SWEEP_DIR")


__all__ = ["CONVENTIONS", "ConfigError", "bin_budgets", "budgets_of", "drop_groups",
           "done_runs", "flops_factor", "flops_per_param_token", "load_results", "load_table", "near_optimum", "prepare",
           "require_identifiable"]
