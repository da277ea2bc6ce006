"""Downstream-task scaling: predict a task's accuracy at any (N, D) or compute budget, with intervals.

A results table carries, per run and per multiple-choice task ``NAME``, the columns
``task/NAME/acc``, ``task/NAME/acc_norm`` (accuracy, choices scored per byte), ``task/NAME/bpb``
(the correct choice's loss per byte, bits in our results table: the *task loss*), ``task/NAME/n_items`` and ``task/NAME/sha``.
Two ways from (N, D) to accuracy, both on the library's one solver and one bootstrap:

* **two-step** (Bhagia et al. 2024, the OLMo ladder; ``method="two_step"``, the default):

  1. the task loss as a function of (N, D), fitted with Approach 3 and any law of
     :mod:`analysis.laws` (Chinchilla's ``L = E + A/N^alpha + B/D^beta`` by default);
  2. accuracy as a sigmoid of the measured task loss,
     ``acc = a / (1 + exp(-k (L - L0))) + b``.  Bounds, so that the fit cannot leave the
     meaningful region: ``b`` (the accuracy at infinite loss) lies in ``[chance, 1]``, ``a + b``
     (the ceiling at zero loss) is at most 1, ``k <= 0`` (accuracy never rises with loss),
     ``|k| <= 100 / spread(L)`` and ``L0`` within 10 spreads of the data.  The solver works in
     ``(b, s, k, L0)`` with ``a = (1 - b) s``, ``0 <= s <= 1``, which turns the ceiling into a box.

* **Gadre et al. 2024** (``method="gadre"``): the average top-1 error as a function of the
  *LM* loss (the table's held-out loss), ``Err(L) = epsilon - k exp(-gamma L)``, chained with
  the LM-loss law.  ``epsilon`` in ``[0, 1]``, ``k, gamma >= 0``.

``chance`` (default 0.25: the built-in task has 4 choices) is ``1 / n_choices``; pass the right
one for other tasks, it bounds the sigmoid's floor.  Accuracy curves are fitted like every law
here: summed Huber loss (delta 1e-3) between log predicted and log measured accuracy (error for
Gadre) from a grid of starts, i.e. close to least absolute *relative* deviations: one odd run
moves the curve little.

**Compute-optimal points.**  The accuracy at a budget C is the chain's accuracy at
``(N_opt(C), D_opt(C))`` of the LM-loss law fitted by Approach 3 on the same runs (the same law
family as step 1).

**Intervals.**  Runs are resampled with replacement within their budgets K times (seeded,
:func:`analysis.uncertainty.resample_counts`); on each resample the LM-loss law, the task-loss law
and the accuracy curve are all refitted (the batched Newton solver, from the full fit's optima
plus grid points: :func:`analysis.uncertainty.refit_rows`), and the prediction is recomputed
through every step.  ``ci`` is the percentile interval of those predictions (parameter
uncertainty of both steps and of the allocation); ``pi`` adds to each one resampled residual of
the chain on the fitted runs (measured accuracy minus the chain's prediction at that run's N, D,
scaled by ``sqrt(n / (n - P))`` for the curve's P fitted parameters), the interval one run's
*measured* accuracy falls in, item-sampling and run noise included.

Everything here takes DataFrames and column names, returns frozen dataclasses whose
``as_dict()`` is JSON-ready, and knows nothing of JAX or run directories.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from analysis import approaches as ap
from analysis import laws as lw
from analysis import solver
from analysis.data import budgets_of, done_runs, drop_groups, require_identifiable
from analysis.diagnostics import canon, canonical
from analysis.display import Rich, Table, fmt, interval
from analysis.errors import ConfigError

PREFIX = "task/"
METRICS = ("acc", "acc_norm", "bpb", "n_items", "sha")
ACC_METRICS = ("acc", "acc_norm")
METHODS = ("two_step", "gadre")
CHANCE = 0.25
LEVEL = 0.95


def column(task: str, metric: str) -> str:
    """The results-table column of ``metric`` for ``task``: ``task/<task>/<metric>``."""
    return f"{PREFIX}{task}/{metric}"


def task_names(df: pd.DataFrame) -> list[str]:
    """The tasks a table has columns for (``task/<name>/<metric>``), sorted."""
    out = set()
    for c in map(str, df.columns):
        if c.startswith(PREFIX) and "/" in c[len(PREFIX):]:
            name, metric = c[len(PREFIX):].rsplit("/", 1)
            if metric in METRICS and name:
                out.add(name)
    return sorted(out)


def with_average(df: pd.DataFrame, names, metric: str = "acc") -> tuple[str, pd.DataFrame]:
    """``(name, df + its column)``: the runs' ``metric`` averaged over the tasks ``names`` (empty where
    a run lacks any of them), as the pseudo-task ``average`` (``average_of_tasks`` if the table has an
    ``average``): Gadre et al. fit the *average* top-1 error of many tasks against the LM loss."""
    name = "average" if "average" not in task_names(df) else "average_of_tasks"
    vals = pd.concat([pd.to_numeric(df[column(n, metric)], errors="coerce") for n in names], axis=1)
    return name, df.assign(**{column(name, metric): vals.mean(axis=1, skipna=False)})


# ----------------------------------------------------------------------------- input checks

def check_task(df: pd.DataFrame, task: str, *, metric: str = "acc", method: str = "two_step") -> None:
    """ConfigError (one line naming the column and the fix) unless ``df`` can feed a task fit:
    the task's columns exist, are numeric and not all empty, accuracies lie in [0, 1] and task
    losses are positive.  Cheap: no fitting."""
    if metric not in ACC_METRICS:
        raise ConfigError(f"--task-metric {metric!r}: use one of {', '.join(ACC_METRICS)}")
    if method not in METHODS:
        raise ConfigError(f"--task-method {method!r}: use one of {', '.join(METHODS)}")
    present = task_names(df)
    if task not in present:
        have = (", ".join(present) if present else
                "none (the table has no task/<name>/acc columns: score tasks during training with --eval-task NAME=PATH)")
        raise ConfigError(f"--task {task!r}: not in the table; tasks present: {have}")
    need = [metric] + (["bpb"] if method == "two_step" else [])
    for m in need:
        col = column(task, m)
        if col not in df.columns:
            alt = "; use --task-method gadre (accuracy and the LM loss only)" if m == "bpb" else ""
            raise ConfigError(f"{col}: column not in table (task {task!r} has "
                              f"{', '.join(c for c in df.columns if str(c).startswith(column(task, '')))}){alt}")
        v = pd.to_numeric(df[col], errors="coerce")
        bad = df[col].notna() & v.isna()
        if bad.any():
            raise ConfigError(f"{col}: {int(bad.sum())} value(s) are not numbers (e.g. {df[col][bad].iloc[0]!r}); "
                              f"fix or drop those rows")
        if not np.isfinite(v.to_numpy(dtype=np.float64)).any():
            others = [t for t in present if t != task]
            raise ConfigError(f"{col}: every value is empty (NaN): no run scored task {task!r}; rebuild the table "
                              f"from runs that did" + (f", or fit another task ({', '.join(others)})" if others else ""))
        if m in ACC_METRICS:
            out = (v < 0) | (v > 1)
            if out.any():
                raise ConfigError(f"{col}: {int(out.sum())} value(s) outside [0, 1] (e.g. {float(v[out].iloc[0]):g}); "
                                  f"accuracies are fractions: divide percentages by 100")
        elif (v <= 0).any():
            raise ConfigError(f"{col}: {int((v <= 0).sum())} non-positive task loss(es); a loss per byte is > 0, "
                              f"fix or drop those rows")


def task_frame(df: pd.DataFrame, task: str, *, metric: str = "acc", method: str = "two_step",
               loss_col: str = "eval_loss", n_col: str | None = None, d_col: str | None = None,
               c_col: str | None = None, budget_col: str | None = None, law="chinchilla",
               group_col: str = "group", warnings: list | None = None, **columns) -> pd.DataFrame:
    """The runs a task fit uses: done runs (no WSD trunk checkpoints) with the LM loss, the task's
    accuracy and (two-step) task loss all finite, as a prepared frame (N, D, C, loss, budget)
    plus ``task_loss`` and ``acc``.  ConfigError when there are too few runs, or runs at too few
    budgets, to fit the two steps (one line naming what is missing)."""
    check_task(df, task, metric=metric, method=method)
    warns = warnings if warnings is not None else []
    df, _ = done_runs(df)
    df = drop_groups(df, group_col=group_col, warnings=warns)
    acc_col, bpb_col = column(task, metric), column(task, "bpb")
    cols = dict(n_col=n_col, loss_col=loss_col, d_col=d_col, c_col=c_col, budget_col=budget_col, **columns)
    canonical(df, **cols)   # bad columns / values raise here, with the library's messages
    used = [c for c in (n_col, d_col, c_col, loss_col, columns.get("flops_per_token_col")) if c]
    used += [acc_col] + ([bpb_col] if method == "two_step" else [])
    vals = np.column_stack([pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64) for c in used])
    keep = np.isfinite(vals).all(axis=1)
    if (~keep).any():
        warns.append(f"task {task}: excluded {int((~keep).sum())} run(s) without a finite {' / '.join(used)}")
    sub = df[keep]
    law = lw.get(law)
    need = len(law.params) + 1
    nb = int(np.unique(budgets_of(canonical(sub, **cols))).size) if len(sub) else 0
    what = "two-step" if method == "two_step" else "Gadre"
    if len(sub) < need:
        raise ConfigError(f"{acc_col}: the {what} fit needs >= {need} runs with task metrics (the {law.name} law has "
                          f"{len(law.params)} parameters) at >= 2 budgets; found {len(sub)} run(s) at {nb} budget(s)")
    frame = canonical(sub, **cols)
    try:
        require_identifiable(frame, 3, loss_col=acc_col)
    except ConfigError as e:
        raise ConfigError(f"{acc_col}: the {what} fit needs runs at >= 2 budgets (or tokens-per-parameter ratios) and "
                          f">= 2 model sizes; found {len(frame)} run(s) at {nb} budget(s), "
                          f"{frame['N'].nunique()} size(s) ({str(e).split(': ', 1)[-1]})") from None
    frame["acc"] = pd.to_numeric(sub[acc_col], errors="coerce").to_numpy(dtype=np.float64)
    frame["task_loss"] = (pd.to_numeric(sub[bpb_col], errors="coerce").to_numpy(dtype=np.float64)
                          if method == "two_step" else np.nan)
    if "run_id" in sub.columns:
        frame["run_id"] = sub["run_id"].astype(str).to_numpy()
    return frame


# ----------------------------------------------------------------------------- accuracy curves

def _spread(L) -> float:
    L = np.asarray(L, dtype=np.float64)
    return float(max(np.ptp(L), 1e-3 * np.abs(L).mean(), 1e-6))


def sigmoid_law(L, acc, chance: float = CHANCE) -> lw.Law:
    """The OLMo-ladder sigmoid ``acc = a / (1 + exp(-k (L - L0))) + b`` as a :class:`analysis.laws.Law`
    of one input ``L`` (the task loss), in solver coordinates ``(b, s, k, L0)``, ``a = (1 - b) s``.

    Bounds and start grid are scaled to the data (``L``, ``acc``): see the module docstring."""
    from scipy.special import expit

    L = np.asarray(L, dtype=np.float64)
    acc = np.asarray(acc, dtype=np.float64)
    sp = _spread(L)
    kmax = 100.0 / sp
    lo0, hi0 = max(0.0, float(L.min()) - 10 * sp), float(L.max()) + 10 * sp
    b0 = sorted({float(chance), float(np.clip(np.quantile(acc, 0.1), chance, 0.999))})
    grid = (tuple(b0), (0.25, 0.6, 1.0), tuple(-v / sp for v in (1.0, 4.0, 16.0, 64.0)),
            tuple(float(np.clip(v, lo0, hi0)) for v in (L.min() - sp, L.min(), np.median(L), L.max(), L.max() + sp)))

    def log_acc(X, x):
        b, s, k, L0 = (X[:, i:i + 1] for i in range(4))
        with np.errstate(all="ignore"):
            A = b + (1 - b) * s * expit(k * (x["L"] - L0))
            return np.where(A > 0, np.log(np.where(A > 0, A, 1.0)), np.nan)

    def readable(t):
        b, s, k, L0 = map(float, t)
        return {"a": (1 - b) * s, "b": b, "k": k, "L0": L0}

    return lw.Law(name="sigmoid", params=("b", "s", "k", "L0"),
                  bounds=((float(chance), 1.0), (0.0, 1.0), (-kmax, 0.0), (lo0, hi0)),
                  grid={"full": grid, "small": grid}, log_loss=log_acc, inputs=("L",),
                  formula="acc = a / (1 + exp(-k (L - L0))) + b", readable=readable)


def gadre_law(L, err, chance: float = CHANCE) -> lw.Law:
    """Gadre et al.'s ``Err = epsilon - k exp(-gamma L)`` (L the LM loss) as a Law of one input
    ``L``, fitted to log error; solver coordinates ``(epsilon, log k, gamma)``.  The start grid
    crosses ceilings near ``1 - chance`` and 1 with rates ``gamma`` of 0.5-8 per mean loss and
    values of ``log k`` that put the curve near the runs' mean error."""
    L = np.asarray(L, dtype=np.float64)
    err = np.asarray(err, dtype=np.float64)
    Lm = float(np.abs(L).mean()) or 1.0
    eps0 = tuple(sorted({float(min(max(1 - chance, err.max() + 1e-3), 1.0)), 1.0}))
    gam0 = tuple(v / Lm for v in (0.5, 1.0, 2.0, 4.0, 8.0))
    # k e^{-gamma Lm} ~ epsilon - mean(err): the curve passes near the runs
    lk = sorted({round(float(np.clip(math.log(max(e - float(err.mean()), 1e-3)) + g * Lm + d, -30, 60)), 6)
                 for e in eps0 for g in gam0 for d in (-1.0, 0.0, 1.0)})

    def log_err(X, x):
        with np.errstate(all="ignore"):
            E = X[:, 0:1] - np.exp(X[:, 1:2] - X[:, 2:3] * x["L"])
            return np.where(E > 0, np.log(np.where(E > 0, E, 1.0)), np.nan)

    grid = (eps0, tuple(lk), gam0)
    return lw.Law(name="gadre", params=("epsilon", "logk", "gamma"),
                  bounds=((0.0, 1.0), (-30.0, 60.0), (0.0, 50.0 / Lm)),
                  grid={"full": grid, "small": grid}, log_loss=log_err, inputs=("L",),
                  formula="Err = epsilon - k exp(-gamma L)",
                  readable=lambda t: {"epsilon": float(t[0]), "k": math.exp(float(t[1])), "gamma": float(t[2])})


@dataclasses.dataclass(frozen=True, eq=False)
class CurveFit(Rich):
    """A fitted accuracy curve of one input (task loss for the sigmoid, LM loss for Gadre).

    ``law``/``x``/``local_optima`` are what :func:`analysis.uncertainty.refit_rows` and
    ``law_starts`` need to refit it on resamples."""

    law: lw.Law
    x: tuple[float, ...]
    objective: float
    n_points: int
    chance: float
    local_optima: tuple[tuple[float, ...], ...]
    convergence: solver.Convergence
    warnings: tuple[str, ...] = ()

    @property
    def named(self) -> dict:
        return self.law.named(self.x)

    def acc(self, L) -> np.ndarray:
        """Predicted accuracy at input(s) L (task loss for the sigmoid, LM loss for Gadre)."""
        return accuracy(self.law, np.array(self.x)[None], np.atleast_1d(np.asarray(L, dtype=np.float64)))[0].reshape(
            np.shape(L))

    def as_dict(self) -> dict:
        return {"law": self.law.name, "formula": self.law.formula, **self.named, "chance": self.chance,
                "objective": self.objective, "n_points": self.n_points,
                "convergence": self.convergence.as_dict(), "warnings": list(self.warnings)}

    def tables(self) -> list[Table]:
        rows = tuple((k, fmt(v)) for k, v in self.named.items())
        return [Table(f"{self.law.formula} ({self.n_points} runs, chance {fmt(self.chance)})", ("parameter", "value"),
                      rows, self.warnings)]


def rowwise_log(law: lw.Law, X: np.ndarray, block: int = 256, **inputs) -> np.ndarray:
    """``law.log_loss`` of row r of X (R, P) at the r-th value of each input array (each (R,)): (R,).
    NaN where the row or its inputs are not finite.  Blocks of rows are evaluated against blocks of
    inputs at once (the diagonal of each block), so a bootstrap's K predictions cost no Python loop."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    arrs = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), (len(X),)) for k, v in inputs.items()}
    ok = np.isfinite(X).all(axis=1)
    for v in arrs.values():
        ok &= np.isfinite(v) & (v > 0)
    out = np.full(len(X), np.nan)
    idx = np.flatnonzero(ok)
    for i in range(0, idx.size, block):
        j = idx[i:i + block]
        with np.errstate(all="ignore"):
            out[j] = np.diagonal(law.log_loss(X[j], lw.make_inputs(**{k: v[j] for k, v in arrs.items()})))
    return out


def accuracy(law: lw.Law, X: np.ndarray, L: np.ndarray, *, rowwise: bool = False) -> np.ndarray:
    """Accuracy of parameter rows X (R, P) at inputs L: (R, n), or (R,) with ``rowwise`` (row r at L[r])."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    L = np.asarray(L, dtype=np.float64).reshape(-1)
    if law.name == "gadre":   # Err = epsilon - k e^{-gamma L} crosses 0 at low enough L: accuracy is then 1
        eps, lk, g = (X[:, i] if rowwise else X[:, i:i + 1] for i in range(3))
        with np.errstate(all="ignore"):
            return 1.0 - np.clip(eps - np.exp(lk - g * (L if rowwise else L[None])), 0.0, 1.0)
    return np.exp(rowwise_log(law, X, L=L) if rowwise else law.log_loss(X, lw.make_inputs(L=L)))


STEP = 20.0   # |k| x the span of the runs' task losses above which a sigmoid is a near-step


def _curve_warnings(law: lw.Law, x: np.ndarray, L: np.ndarray) -> list[str]:
    out = []
    if law.name == "sigmoid" and abs(x[2]) * np.ptp(L) > STEP and x[2] > law.lower[2] * (1 - 1e-9):
        out.append(f"sigmoid: |k| = {abs(x[2]):.3g} is {abs(x[2]) * np.ptp(L):.0f}/(span of the runs' task losses): a "
                   f"near-step the runs cannot resolve; accuracy extrapolated beyond them is unreliable")
    lo, hi = law.lower, law.upper
    for j, p in enumerate(law.params):
        if law.name == "sigmoid" and p == "b":
            continue   # b at chance is the expected floor, not a failure
        if x[j] <= lo[j] + 1e-9 * max(1.0, abs(lo[j])) or x[j] >= hi[j] - 1e-9 * max(1.0, abs(hi[j])):
            what = {"k": "accuracy does not vary with the task loss in these runs" if x[j] >= hi[j] - 1e-12 else
                    "the sigmoid is a step: the runs do not resolve its slope",
                    "s": "the curve's ceiling is not pinned down by the runs",
                    "L0": "the sigmoid's midpoint lies far outside the runs' losses",
                    "gamma": "the error does not vary with the LM loss in these runs"}.get(p, "the data do not identify it")
            out.append(f"{law.name}: {p} = {x[j]:.4g} sits at its bound ({what})")
    return out


def fit_curve(L, acc, *, method: str = "two_step", chance: float = CHANCE, delta: float = solver.HUBER_DELTA,
              weights=None) -> CurveFit:
    """Fit accuracy ``acc`` against ``L``: the sigmoid (``two_step``: L is the task loss) or
    Gadre's error law (``gadre``: L is the LM loss).  Float64, bounded, many starts."""
    L = np.asarray(L, dtype=np.float64).reshape(-1)
    acc = np.asarray(acc, dtype=np.float64).reshape(-1)
    if not (0 < chance < 1):
        raise ConfigError(f"--chance {chance:g}: the chance accuracy 1/n_choices must be in (0, 1), e.g. 0.25")
    if method == "two_step":
        law = sigmoid_law(L, acc, chance)
        y = np.log(np.clip(acc, 1e-6, None))
    elif method == "gadre":
        law = gadre_law(L, 1 - acc, chance)
        y = np.log(np.clip(1 - acc, 1e-6, None))
    else:
        raise ConfigError(f"--task-method {method!r}: use one of {', '.join(METHODS)}")
    P = len(law.params)
    if len(L) < P + 1:
        raise ConfigError(f"acc: the {law.name} curve has {P} parameters and needs >= {P + 1} runs, found {len(L)}")
    sol = solver.solve(law, lw.make_inputs(L=L), y, starts="full", delta=delta, weights=weights, polish=2,
                       projection=False)
    return CurveFit(law=law, x=tuple(map(float, sol.x)), objective=sol.objective, n_points=len(L),
                    chance=float(chance), local_optima=sol.local_optima, convergence=sol.convergence,
                    warnings=tuple(_curve_warnings(law, sol.x, L)))


# ----------------------------------------------------------------------------- the chain

def _pct(s, level) -> list:
    from analysis.uncertainty import percentile_interval

    lo, hi = percentile_interval(s, level)
    return [None, None] if not math.isfinite(lo) else [lo, hi]


@dataclasses.dataclass(frozen=True, eq=False)
class TaskFit(Rich):
    """A task's accuracy law: (N, D) -> [task loss] -> accuracy, and the compute-optimal allocation.

    ``lm``: the LM-loss law (Approach 3 on ``loss``), which places the compute-optimal point of a
    budget (and, for Gadre, is the first step); ``task_law``: the task loss's law (two-step only);
    ``curve``: accuracy against the task loss (sigmoid) or the LM loss (Gadre).  ``samples``: the
    bootstrap's refitted parameter rows per step (``lm``, ``task``, ``curve``; rows that failed in
    any step are NaN everywhere); ``residuals``: the chain's residuals on the fitted runs, scaled by
    ``sqrt(n / (n - P))`` (P: the curve's parameters).
    """

    task: str
    metric: str
    method: str
    chance: float
    frame: pd.DataFrame
    lm: ap.LawFit
    task_law: ap.LawFit | None
    curve: CurveFit
    samples: dict
    residuals: np.ndarray
    K: int
    seed: int
    level: float = LEVEL
    warnings: tuple[str, ...] = ()

    # ---- point predictions
    def first_step(self, N, D) -> np.ndarray:
        """The chain's middle quantity at (N, D): task loss (two-step) or LM loss (Gadre)."""
        step = self.task_law if self.method == "two_step" else self.lm
        return np.asarray(step.loss(N, D), dtype=np.float64)

    def acc(self, N, D) -> np.ndarray:
        """Predicted accuracy at (N, D) (arrays broadcast)."""
        N, D = np.broadcast_arrays(np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64))
        return self.curve.acc(self.first_step(N, D).reshape(-1)).reshape(N.shape)

    def optimal(self, C) -> tuple[np.ndarray, np.ndarray]:
        """The LM-loss law's compute-optimal (N_opt, D_opt) at budget(s) C."""
        C = np.atleast_1d(np.asarray(C, dtype=np.float64))
        return self.lm.optimal(C)

    # ---- bootstrap samples through every step
    def _middle_samples(self, N, D) -> np.ndarray:
        """(K,) task loss (or LM loss) of each resample's step-1 law at its own (N[k], D[k])."""
        law = self.task_law if self.method == "two_step" else self.lm
        S = self.samples["task" if self.method == "two_step" else "lm"]
        return np.exp(rowwise_log(law.law, S, N=N, D=D))

    def acc_samples(self, N, D) -> np.ndarray:
        """(K,) bootstrap accuracies at one (N, D) (empty without a bootstrap)."""
        if not self.samples:
            return np.empty(0)
        return accuracy(self.curve.law, self.samples["curve"], self._middle_samples(N, D), rowwise=True)

    def acc_samples_at(self, C) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N_opt, D_opt, acc) samples at budget C: each resample's own allocation, task law and curve."""
        if not self.samples:
            return np.empty(0), np.empty(0), np.empty(0)
        from analysis.uncertainty import law_samples

        S = self.samples["lm"]
        n = law_samples(self.lm.law, S, "n_opt", float(C), self.lm.k, self.lm.c_ref)
        d = law_samples(self.lm.law, S, "d_opt", float(C), self.lm.k, self.lm.c_ref)
        return n, d, accuracy(self.curve.law, self.samples["curve"], self._middle_samples(n, d), rowwise=True)

    def _pi(self, s: np.ndarray, salt: int) -> np.ndarray:
        """Bootstrap predictions plus one resampled chain residual each: one run's measured accuracy."""
        r = self.residuals[np.isfinite(self.residuals)]
        if not len(s) or not len(r):
            return np.empty(0)
        rng = np.random.default_rng([self.seed, 7919, abs(int(salt))])
        return np.clip(s + r[rng.integers(0, len(r), size=len(s))], 0.0, 1.0)

    def predict(self, N: float, D: float) -> dict:
        """Accuracy at one (N, D): the chain's value, ``ci`` (both steps refitted) and ``pi`` (one run)."""
        N, D = float(N), float(D)
        s = self.acc_samples(N, D)
        return {"N": N, "D": D, "C": self.lm.k * N * D, "middle": float(self.first_step(N, D)),
                "acc": float(self.acc(N, D)), "ci": _pct(s, self.level),
                "pi": _pct(self._pi(s, int(1e3 * math.log(N * D))), self.level)}

    def predict_c(self, C: float) -> dict:
        """Accuracy at the compute-optimal point of budget C, with ``ci``/``pi`` through the allocation,
        the task-loss law and the curve."""
        C = float(C)
        n, d = (float(v[0]) for v in self.optimal(C))
        ns, ds, s = self.acc_samples_at(C)
        return {"C": C, "N_opt": n, "D_opt": d, "N_opt_ci": _pct(ns, self.level), "middle": float(self.first_step(n, d)),
                "acc": float(self.acc(n, d)), "ci": _pct(s, self.level),
                "pi": _pct(self._pi(s, int(1e3 * math.log(C))), self.level)}

    @property
    def failures(self) -> int:
        return int((~np.isfinite(self.samples["curve"]).all(axis=1)).sum()) if self.samples else 0

    def as_dict(self) -> dict:
        f = self.frame
        out = {"task": self.task, "metric": self.metric, "method": self.method, "chance": self.chance,
               "middle": "task_loss" if self.method == "two_step" else "lm_loss",
               "n_runs": int(len(f)), "n_budgets": int(f["budget"].nunique()),
               "lm_law": {"law": self.lm.law.name, **self.lm.named, "a": self.lm.a, "b": self.lm.b},
               "task_law": (None if self.task_law is None else
                            {"law": self.task_law.law.name, "formula": self.task_law.law.formula, **self.task_law.named,
                             "objective": self.task_law.objective}),
               "curve": self.curve.as_dict(),
               "residual_sd": float(np.std(self.residuals, ddof=1)) if len(self.residuals) > 1 else None,
               "bootstrap": {"K": self.K, "seed": self.seed, "level": self.level, "failures": self.failures},
               "warnings": list(self.warnings)}
        return out

    def tables(self) -> list[Table]:
        d = self.as_dict()
        rows = [("method", self.method), ("metric", self.metric), ("runs", str(d["n_runs"])),
                ("curve", self.curve.law.formula)] + [(k, fmt(v)) for k, v in self.curve.named.items()]
        if self.task_law is not None:
            rows += [(f"task loss: {k}", fmt(v)) for k, v in self.task_law.named.items()]
        return [Table(f"task {self.task}: accuracy law", ("quantity", "value"), tuple(rows), self.warnings)]


def fit_task(df: pd.DataFrame, task: str, *, metric: str = "acc", method: str = "two_step",
             chance: float = CHANCE, loss_col: str = "eval_loss", n_col: str | None = None,
             d_col: str | None = None, c_col: str | None = None, budget_col: str | None = None,
             law="chinchilla", starts="full", K: int = 200, seed: int = 0, level: float = LEVEL,
             grid_starts: int = 4, group_col: str = "group", **columns) -> TaskFit:
    """Fit ``task``'s accuracy law on ``df`` (a results table or any DataFrame with the same columns).

    ``metric``: ``acc`` or ``acc_norm``; ``method``: ``two_step`` (task loss law + sigmoid) or
    ``gadre`` (error vs LM loss); ``law``: the Approach-3 law of the LM loss and of the task loss;
    ``K`` bootstrap resamples (0: no intervals).  Columns as for :func:`analysis.data.prepare`.
    """
    from analysis.uncertainty import law_starts, refit_rows, resample_counts

    law = lw.get(law)
    if "U" in law.inputs:
        raise ConfigError(f"--law {law.name}: task fits support laws of N and D only")
    if not 0 < level < 1:
        raise ConfigError(f"level={level}: must be in (0, 1), e.g. 0.95")
    if K < 0:
        raise ConfigError("--bootstrap: K must be >= 0")
    warns: list[str] = []
    frame = task_frame(df, task, metric=metric, method=method, loss_col=loss_col, n_col=n_col, d_col=d_col,
                       c_col=c_col, budget_col=budget_col, law=law, group_col=group_col, warnings=warns, **columns)
    cols = canon(frame)
    lm = ap.fit_approach3(frame, **cols, law=law, starts=starts)
    warns += [f"LM-loss law: {w}" for w in lm.warnings]
    task_law = None
    if method == "two_step":
        task_law = ap.fit_approach3(frame.assign(loss=frame["task_loss"]), **cols, law=law, starts=starts)
        warns += [f"task-loss law: {w}" for w in task_law.warnings]
        mid = frame["task_loss"].to_numpy()
    else:
        mid = frame["loss"].to_numpy()
    acc = frame["acc"].to_numpy()
    curve = fit_curve(mid, acc, method=method, chance=chance)
    warns += list(curve.warnings)
    # the chain's residuals: what a run measured minus what the chain predicts at its N, D
    step = task_law if method == "two_step" else lm
    resid = acc - curve.acc(np.asarray(step.loss(frame["N"].to_numpy(), frame["D"].to_numpy())))
    # in-sample residuals are shrunk by the curve's fitted parameters: rescale to n / (n - P) variance
    n, P = len(resid), len(curve.law.params)
    resid = resid * math.sqrt(n / max(n - P, 1))
    samples: dict = {}
    if K:
        counts = resample_counts(frame["budget"].to_numpy(), K, seed)
        xs = lw.make_inputs(N=frame["N"].to_numpy(), D=frame["D"].to_numpy())
        samples["lm"] = refit_rows(lm, xs, np.log(frame["loss"].to_numpy())[None], counts,
                                   law_starts(lm, grid_starts, seed), solver.HUBER_DELTA)
        if task_law is not None:
            samples["task"] = refit_rows(task_law, xs, np.log(mid)[None], counts,
                                         law_starts(task_law, grid_starts, seed), solver.HUBER_DELTA)
        yc = np.log(np.clip(acc if method == "two_step" else 1 - acc, 1e-6, None))
        samples["curve"] = refit_rows(curve, lw.make_inputs(L=mid), yc[None], counts,
                                      law_starts(curve, grid_starts, seed), solver.HUBER_DELTA)
        bad = np.zeros(K, dtype=bool)
        for S in samples.values():
            bad |= ~np.isfinite(S).all(axis=1)
        for S in samples.values():
            S[bad] = np.nan
        if bad.any():
            warns.append(f"bootstrap: {int(bad.sum())} of {K} resamples failed in some step and were dropped")
    return TaskFit(task=task, metric=metric, method=method, chance=float(chance), frame=frame, lm=lm,
                   task_law=task_law, curve=curve, samples=samples, residuals=resid, K=int(K), seed=int(seed),
                   level=float(level), warnings=tuple(warns))


# ----------------------------------------------------------------------------- backtest

def backtest(df: pd.DataFrame, task: str, **kw) -> dict:
    """Fit on every budget but the largest, predict the largest budget's best accuracy.

    Budgets are those of the existing backtest (:func:`analysis.diagnostics.backtest`): the budget
    column, else C binned into IsoFLOP groups.  Returns the held-out budget, its best run's
    measured accuracy, the chain's prediction at that budget's compute-optimal point (``acc``,
    ``ci``, ``pi``), whether the measurement lies inside each interval, the error in accuracy
    points, and per held-out run the prediction at its own (N, D).  ``kw``: :func:`fit_task`'s.
    """
    cols = {k: kw[k] for k in ("loss_col", "n_col", "d_col", "c_col", "budget_col", "law", "group_col",
                               "convention", "flops_per_token_col") if k in kw}
    fit_kw = dict(kw)
    full = task_frame(df, task, **{k: v for k, v in kw.items() if k not in ("chance", "starts", "K", "seed", "level",
                                                                            "grid_starts")})
    b = full["budget"].to_numpy()
    ub = np.unique(b)
    if ub.size < 3:
        raise ConfigError(f"{cols.get('budget_col') or 'budget'}: the task backtest fits on every budget but the "
                          f"largest and needs >= 3 budgets with task metrics, found {ub.size}")
    test_b = float(ub[-1])
    # the same rows, addressed through the prepared columns
    train_df = full[b < test_b].assign(**{column(task, kw.get("metric", "acc")): full["acc"][b < test_b],
                                          column(task, "bpb"): full["task_loss"][b < test_b]})
    fit_kw.update(loss_col="loss", n_col="N", d_col="D", c_col="C", budget_col="budget")
    for k in ("convention", "flops_per_token_col"):
        fit_kw.pop(k, None)
    fit = fit_task(train_df, task, **fit_kw)
    test = full[b == test_b]
    i_best = int(np.argmax(test["acc"].to_numpy()))
    best = float(test["acc"].iloc[i_best])
    p = fit.predict_c(test_b)
    runs, boot = [], []
    for i, (_, r) in enumerate(test.iterrows()):
        q = fit.predict(r["N"], r["D"])
        s = fit.acc_samples(r["N"], r["D"])
        boot.append((s, fit._pi(s, 17 + i)))
        runs.append({"run_id": r.get("run_id"), "N": float(r["N"]), "D": float(r["D"]), "acc": float(r["acc"]),
                     "pred": q["acc"], "ci": q["ci"], "pi": q["pi"],
                     "inside_pi": None if q["pi"][0] is None else bool(q["pi"][0] <= r["acc"] <= q["pi"][1])})
    inside = lambda iv: None if iv[0] is None else bool(iv[0] <= best <= iv[1])  # noqa: E731
    # the best of the runs actually trained: per resample, the largest of their predicted accuracies
    if fit.K:
        best_ci = _pct(np.max([b[0] for b in boot], axis=0), fit.level)
        best_pi = _pct(np.max([b[1] for b in boot], axis=0), fit.level)
    else:
        best_ci = best_pi = [None, None]
    best_pred = max(r["pred"] for r in runs)
    return {"task": task, "metric": fit.metric, "method": fit.method, "held_out_budget": test_b,
            "n_train": int((b < test_b).sum()), "n_test": int(len(test)), "train_budgets": [float(v) for v in ub[:-1]],
            "best_acc": best, "best_run": test["run_id"].iloc[i_best] if "run_id" in test else None,
            "best_N": float(test["N"].iloc[i_best]), "best_D": float(test["D"].iloc[i_best]),
            "pred": p["acc"], "N_opt": p["N_opt"], "D_opt": p["D_opt"], "ci": p["ci"], "pi": p["pi"],
            "error_points": 100 * (p["acc"] - best), "inside_ci": inside(p["ci"]), "inside_pi": inside(p["pi"]),
            "best_of_runs": {"pred": best_pred, "ci": best_ci, "pi": best_pi, "error_points": 100 * (best_pred - best),
                             "inside_pi": inside(best_pi)},
            "runs": runs, "warnings": list(fit.warnings)}


__all__ = ["ACC_METRICS", "CHANCE", "METHODS", "CurveFit", "TaskFit", "accuracy", "backtest", "check_task",
           "column", "fit_curve", "fit_task", "gadre_law", "rowwise_log", "sigmoid_law", "task_frame", "task_names",
           "with_average"]
