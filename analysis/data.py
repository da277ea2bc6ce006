"""Input checking: turn any DataFrame into clean float64 arrays, loudly.

Every fit in :mod:`analysis` starts here.  The caller names the columns (our results table
calls them ``n_total``, ``tokens``, ``eval_loss``, ``budget``; Epoch's reconstruction calls
them ``Model Size``, ``Training FLOP``, ``loss``), and :func:`prepare` returns a small frame
with the canonical columns ``N``, ``D``, ``C``, ``loss`` and ``budget``.

Rules, so that no fit is silently nonsense:

* a named column that is missing -> :class:`ConfigError` (a ``ValueError``) naming it;
* rows with NaN/inf in a used column (diverged runs, for example) are *excluded* and the
  exclusion is recorded in the returned warnings list;
* non-positive N, D, C or loss -> :class:`ConfigError` naming the column (logs of them
  are taken everywhere, so there is no sensible way to keep such a row);
* when only ``c_col`` is given, tokens are derived with the usual ``D = C / (6 N)``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

try:  # the shared one-line configuration error of the project
    from scaling.config import ConfigError
except Exception:  # pragma: no cover - analysis also works without the scaling package
    class ConfigError(ValueError):
        """A bad input; the message names the field and the fix."""


@dataclasses.dataclass(frozen=True)
class Columns:
    """Which columns of the caller's frame hold what."""

    n_col: str
    loss_col: str
    d_col: str | None = None
    c_col: str | None = None
    budget_col: str | None = None


def prepare(df: pd.DataFrame, *, n_col: str, loss_col: str, d_col: str | None = None,
            c_col: str | None = None, budget_col: str | None = None,
            warnings: list | None = None) -> pd.DataFrame:
    """Validate ``df`` and return a frame with columns N, D, C, loss, budget (float64).

    ``budget`` is the caller's budget column when given, else NaN (approaches that need
    budgets then group by :func:`bin_budgets` of C).  ``C`` is the caller's FLOPs column
    when given, else ``6 N D``.  Excluded rows are reported by appending a line to
    ``warnings``.
    """
    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"data: expected a pandas DataFrame, got {type(df).__name__}")
    if d_col is None and c_col is None:
        raise ConfigError("d_col: give a tokens column (d_col) or a FLOPs column (c_col)")
    used = {"n_col": n_col, "loss_col": loss_col, "d_col": d_col, "c_col": c_col,
            "budget_col": budget_col}
    for arg, col in used.items():
        if col is not None and col not in df.columns:
            raise ConfigError(f"{arg}: column {col!r} not in table; available: "
                              f"{', '.join(map(str, df.columns))}")
    warn = warnings if warnings is not None else []
    out = pd.DataFrame(index=df.index)
    for name, col in (("N", n_col), ("loss", loss_col), ("D", d_col), ("C", c_col),
                      ("budget", budget_col)):
        if col is None:
            continue
        try:
            out[name] = pd.to_numeric(df[col], errors="raise").astype(np.float64)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{col}: column is not numeric ({e})") from None
    # a missing budget is not a reason to drop a run (grid sweeps have none): only N, D, C, loss
    core = [c for c in ("N", "loss", "D", "C") if c in out]
    bad = ~np.isfinite(out[core].to_numpy(dtype=np.float64)).all(axis=1)
    if bad.any():
        warn.append(f"excluded {int(bad.sum())} row(s) with NaN/inf in "
                    f"{', '.join(c for c in (n_col, loss_col, d_col, c_col) if c)}")
        out = out[~bad]
    for name, col in (("N", n_col), ("loss", loss_col), ("D", d_col), ("C", c_col),
                      ("budget", budget_col)):
        if col is not None and (out[name] <= 0).any():   # NaN budgets compare False: kept
            k = int((out[name] <= 0).sum())
            raise ConfigError(f"{col}: {k} non-positive value(s); scaling fits take logs, "
                              f"drop or fix those rows")
    if "D" not in out:
        out["D"] = out["C"] / (6.0 * out["N"])
    if "C" not in out:
        out["C"] = 6.0 * out["N"] * out["D"]
    if "budget" not in out:
        out["budget"] = np.nan
    if len(out) == 0:
        raise ConfigError(f"{loss_col}: no usable rows left after excluding NaN/inf")
    return out[["N", "D", "C", "loss", "budget"]].reset_index(drop=True)


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


def load_table(path) -> pd.DataFrame:
    """Read a results table: a .csv/.parquet file or a sweep dir holding results.parquet/.csv."""
    p = Path(path)
    if p.is_dir():
        for name in ("results.parquet", "results.csv"):
            if (p / name).exists():
                p = p / name
                break
        else:
            raise ConfigError(f"TABLE_OR_SWEEP_DIR: {path} has no results.parquet or "
                              f"results.csv; run `scaling status`/the sweep first")
    if not p.exists():
        raise ConfigError(f"TABLE_OR_SWEEP_DIR: {path} does not exist")
    if p.suffix == ".parquet":
        return pd.read_parquet(p)
    if p.suffix in (".csv", ".txt"):
        return pd.read_csv(p)
    raise ConfigError(f"TABLE_OR_SWEEP_DIR: {p.name}: expected a .csv or .parquet file")
