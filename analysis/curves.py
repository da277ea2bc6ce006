"""Schedule-aware loss-curve laws: the loss at any step of any learning-rate schedule.

A final loss depends on the whole LR schedule, not only on N and D: a WSD run's loss drops
when it cools down, a cosine run's tracks its own horizon.  The **LR-annealing law** (Tissue
et al. 2024, "Scaling law with learning rate annealing") writes the loss after step s of one
model size as

    L(s) = L0 + A * S1(s)^(-alpha) - C * S2(s)

* ``S1(s) = sum_{i<=s} eta_i``: the forward area, how far the schedule has carried the model;
* ``S2(s) = sum_{i<=s} m_i`` with ``m_i = lam * m_{i-1} + max(eta_{i-1} - eta_i, 0)``: the
  annealing area, LR decreases accumulated with momentum ``lam`` (0.999 in the paper), so a
  cooldown's benefit builds up over the steps after the LR falls.

``eta`` is the LR relative to the peak of the runs fitted (the law's constants absorb the
scale).  LR *increases* (warmup) do not count as annealing.  Four constants per size
(``L0, A, alpha, C``) fitted on one or two runs' trajectories (e.g. a WSD trunk and one fork)
predict the loss of every other schedule of that size (the other forks' horizons, a cosine
run): :func:`fit_curve` and :meth:`CurveLaw.predict_final`.

``scaling fit-curves SWEEP_DIR`` does this per size for a sweep's run directories (their
``metrics.jsonl`` and the schedules in ``config.json``): for each size it fits the trunk (the
run of group ``wsd_trunk``) plus one fork, predicts every other run's final loss, and prints
prediction beside measurement.  Only the annealing law is implemented; the multi-power law
(Luo et al. 2025) is not.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from analysis.errors import ConfigError

LAMBDA = 0.999


def areas(lr: np.ndarray, *, peak: float, lam: float = LAMBDA) -> tuple[np.ndarray, np.ndarray]:
    """``(S1, S2)`` after each step of the per-step learning rates ``lr`` (step 1 first)."""
    eta = np.asarray(lr, dtype=np.float64) / peak
    s1 = np.cumsum(eta)
    drop = np.maximum(np.concatenate([[0.0], eta[:-1] - eta[1:]]), 0.0)
    m = np.empty_like(eta)
    acc = 0.0
    for i, d in enumerate(drop):  # a first-order filter; T is at most a few 1e5 steps
        acc = lam * acc + d
        m[i] = acc
    return s1, np.cumsum(m)


@dataclasses.dataclass(frozen=True)
class CurveLaw:
    """A fitted LR-annealing law of one model size (see the module docstring)."""

    L0: float
    A: float
    alpha: float
    C: float
    peak: float
    lam: float = LAMBDA
    rmse: float = float("nan")  # relative, on the points fitted
    n_points: int = 0

    def loss(self, s1, s2):
        return self.L0 + self.A * np.asarray(s1, dtype=np.float64) ** (-self.alpha) - self.C * np.asarray(s2)

    def predict_final(self, lr: np.ndarray) -> float:
        """The loss after the last step of a run whose per-step LRs are ``lr``."""
        s1, s2 = areas(lr, peak=self.peak, lam=self.lam)
        return float(self.loss(s1[-1], s2[-1]))

    def predict_curve(self, lr: np.ndarray, steps) -> np.ndarray:
        s1, s2 = areas(lr, peak=self.peak, lam=self.lam)
        idx = np.asarray(steps, dtype=int) - 1
        return self.loss(s1[idx], s2[idx])


def fit_curve(runs, *, lam: float = LAMBDA, skip_frac: float = 0.1) -> CurveLaw:
    """Fit one size's law to ``runs``: ``[(lr per step, steps, losses), ...]``.

    ``steps`` are the 1-based steps whose loss was logged.  The first ``skip_frac`` of each
    trajectory (warmup and the fast initial drop, which no power law in S1 describes) is left
    out.  Least squares on the relative error, from a small grid of starts (the problem is
    linear in ``L0, A, C`` for fixed ``alpha``: ``alpha`` is scanned, then all four polished).
    """
    from scipy.optimize import least_squares

    if not runs:
        raise ConfigError("runs: fit_curve needs at least one trajectory")
    peak = max(float(np.max(lr)) for lr, _, _ in runs)
    S1, S2, Y = [], [], []
    for lr, steps, losses in runs:
        steps, losses = np.asarray(steps, dtype=int), np.asarray(losses, dtype=np.float64)
        ok = np.isfinite(losses) & (steps >= 1) & (steps <= len(lr))
        steps, losses = steps[ok], losses[ok]
        keep = steps > skip_frac * len(lr)
        s1, s2 = areas(lr, peak=peak, lam=lam)
        S1.append(s1[steps[keep] - 1]), S2.append(s2[steps[keep] - 1]), Y.append(losses[keep])
    s1, s2, y = np.concatenate(S1), np.concatenate(S2), np.concatenate(Y)
    if len(y) < 6:
        raise ConfigError(f"runs: {len(y)} logged losses after the first {skip_frac:.0%} of steps; a curve law "
                          f"needs >= 6 (log more often: log_every / eval_every)")

    def linear(alpha):  # best L0, A, C for this alpha (relative least squares)
        X = np.column_stack([np.ones_like(s1), s1 ** (-alpha), -s2]) / y[:, None]
        coef, *_ = np.linalg.lstsq(X, np.ones_like(y), rcond=None)
        r = X @ coef - 1
        return float(r @ r), coef

    best = min((linear(a) + (a,) for a in np.linspace(0.05, 2.0, 40)), key=lambda t: t[0])
    _, (L0, A, C), alpha = best

    def resid(p):
        return (p[0] + p[1] * s1 ** (-p[2]) - p[3] * s2) / y - 1

    sol = least_squares(resid, x0=[L0, A, alpha, C], bounds=([-np.inf, -np.inf, 1e-3, -np.inf], np.inf),
                        x_scale="jac")
    L0, A, alpha, C = map(float, sol.x)
    return CurveLaw(L0, A, alpha, C, peak, lam, float(np.sqrt(np.mean(sol.fun ** 2))), int(len(y)))


# ----------------------------------------------------------------------------- sweep dirs
def run_trajectory(run_dir, *, loss: str = "auto"):
    """``(cell, lr per step, steps, losses, which)`` of a finished run directory.

    ``loss``: ``eval_loss`` when the run logged at least 6 evaluations (``auto``), else
    ``train_loss``; the per-step LRs are recomputed from the cell's schedule (exactly what the
    trainer applied: :func:`scaling.optim.learning_rate`).
    """
    from scaling.optim import learning_rate
    from scaling.rundir import RunDir

    rd = RunDir(run_dir)
    cell = rd.read_cell()
    rows = rd.read_metrics()
    if cell is None or not rows:
        raise ConfigError(f"run_dir {rd.path}: no config.json or no metrics.jsonl; fit-curves needs run directories "
                          f"with trajectories (train them with log_every / eval_every > 0)")
    evals = [r for r in rows if r.get("eval_loss") is not None]
    which = loss if loss != "auto" else ("eval_loss" if len(evals) >= 6 else "train_loss")
    pts = [(r["step"], r[which]) for r in rows if r.get(which) is not None]
    steps = np.arange(1, cell.steps + 1)
    lr = np.asarray(learning_rate(cell.optim, cell.steps, steps), dtype=np.float64)
    return cell, lr, np.array([p[0] for p in pts]), np.array([p[1] for p in pts], dtype=np.float64), which


def fit_sweep_curves(sweep_dir, *, loss: str = "auto", fork_index: int = 0, lam: float = LAMBDA) -> list[dict]:
    """Per model size of a WSD sweep: fit on the trunk plus one fork, predict every other run's final loss.

    Returns one row per predicted run: ``size`` (the model's d_model/n_layers name), ``run_id``,
    ``tokens``, ``measured`` (the run's final held-out loss from ``summary.json``; else its last
    logged loss), ``predicted``, ``rel_error``, ``fitted_on`` (run ids), ``loss`` (the trajectory fitted).
    Sizes without a trunk use their run with the longest horizon plus one other run.
    """
    from scaling.rundir import sweep_runs

    by_size: dict[str, list] = {}
    finals: dict[str, float] = {}  # measured = the run's final held-out loss when it has one
    for rd in sweep_runs(sweep_dir):
        if not rd.is_finished():
            continue
        fin = (rd.read_summary() or {}).get("final_eval_loss")
        if fin is not None:
            finals[rd.name] = float(fin)
        try:
            cell, lr, steps, losses, which = run_trajectory(rd.path, loss=loss)
        except ConfigError:
            continue
        key = f"d{cell.model.d_model}-l{cell.model.n_layers}"
        by_size.setdefault(key, []).append((cell, lr, steps, losses, which))
    if not by_size:
        raise ConfigError(f"sweep_dir {sweep_dir}: no finished run directory with a trajectory under runs/; "
                          f"fit-curves reads a sweep's runs/<run_id>/metrics.jsonl")
    out = []
    for key, runs in sorted(by_size.items()):
        trunks = [r for r in runs if r[0].group == "wsd_trunk"]
        others = sorted([r for r in runs if r[0].group != "wsd_trunk"], key=lambda r: r[0].steps)
        if len(others) < 2:
            continue
        base = trunks[:1] or [others.pop()]
        pick = others.pop(min(fork_index, len(others) - 1))
        law = fit_curve([(r[1], r[2], r[3]) for r in base + [pick]], lam=lam)
        fitted_on = [r[0].run_id for r in base + [pick]]
        for cell, lr, steps, losses, which in others:
            measured = finals.get(cell.run_id)
            if measured is None:  # no final eval: the last logged loss, if it is the run's last step
                measured = float(losses[-1]) if len(losses) and steps[-1] == cell.steps else float("nan")
            pred = law.predict_final(lr)
            out.append({"size": key, "run_id": cell.run_id, "tokens": cell.tokens_trained, "measured": measured,
                        "predicted": pred, "rel_error": pred / measured - 1 if measured == measured else None,
                        "fitted_on": fitted_on, "loss": which,
                        "law": {"L0": law.L0, "A": law.A, "alpha": law.alpha, "C": law.C, "rmse": law.rmse}})
    return out


def summarize(rows: list[dict]) -> dict:
    errs = np.array([abs(r["rel_error"]) for r in rows if r["rel_error"] is not None])
    return {"n_predicted": int(len(errs)), "median_abs_rel_error": float(np.median(errs)) if len(errs) else None,
            "max_abs_rel_error": float(errs.max()) if len(errs) else None}


def to_markdown(rows: list[dict]) -> str:
    L = ["| size | run | tokens | measured | predicted | error | fitted on |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        err = "-" if r["rel_error"] is None else f"{100 * r['rel_error']:+.2f}%"
        L.append(f"| {r['size']} | {r['run_id']} | {r['tokens']:.3g} | {r['measured']:.4f} | {r['predicted']:.4f} | "
                 f"{err} | {len(r['fitted_on'])} runs |")
    s = summarize(rows)
    if s["n_predicted"]:
        L += ["", f"{s['n_predicted']} final losses predicted; median |error| {100 * s['median_abs_rel_error']:.2f}%, "
                  f"max {100 * s['max_abs_rel_error']:.2f}% ({rows[0]['loss']})."]
    return "\n".join(L) + "\n"


def _path_ok(p) -> Path:
    p = Path(p)
    if not p.is_dir():
        raise ConfigError(f"SWEEP_DIR {p}: not a directory; pass the --out of `scaling sweep`")
    return p
