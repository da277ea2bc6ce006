"""Schedule-aware loss-curve laws: the loss at any step of any learning-rate schedule.

A final loss depends on the whole LR schedule, not only on N and D: a WSD run's loss drops
when it cools down, a cosine run's tracks its own horizon.  Two laws of one model size, both in
``eta`` = the LR relative to the peak of the runs fitted (the constants absorb the scale):

**LR-annealing law** (Tissue et al. 2024, "Scaling law with learning rate annealing"),
``law="annealing"``::

    L(s) = L0 + A * S1(s)^(-alpha) - C * S2(s)

* ``S1(s) = sum_{i<=s} eta_i``: the forward area, how far the schedule has carried the model;
* ``S2(s) = sum_{i<=s} m_i`` with ``m_i = lam * m_{i-1} + max(eta_{i-1} - eta_i, 0)``: the
  annealing area, LR decreases accumulated with momentum ``lam`` (0.999 in the paper), so a
  cooldown's benefit builds up over the steps after the LR falls.

**Multi-power law** (Luo et al. 2025, "A multi-power law for loss curve prediction across
learning rate schedules"), ``law="multipower"``::

    L(t) = L0 + A * S1(t)^(-alpha) - LD(t)
    LD(t) = B * sum_{k<=t} (eta_{k-1} - eta_k)+ * G(eta_k^(-gamma) * S_k(t)),  G(x) = 1 - (C x + 1)^(-beta)
    S_k(t) = sum_{k<=tau<=t} eta_tau

each LR drop pays off as a saturating power of the LR area trained since, so a drop's benefit
depends on how long and at what LR the run continued (seven constants; ``S1`` includes the
warmup, the paper's ``S1 + S_W``).

``area_power=p`` (multi-power law only; 1 = the published law) replaces the forward area by
``S1(t) = sum_{i<=t} eta_i^p``: with ``p < 1`` a step at a low LR counts for more progress than its
LR area, as a cosine decay's long low-LR tail does on small models.  A trunk and its cooldowns do
not pin ``p`` (their LRs are mostly the peak), so it is a constant of the model family, calibrated
on other cosine runs (``benchmarks/curves_area_power.py``) and passed in, not fitted.

LR *increases* (warmup) never count as annealing.  Either law, fitted on one or two runs'
trajectories (e.g. a WSD trunk and one fork), predicts the loss of every other schedule of that
size (the other forks' horizons, a cosine run): :func:`fit_curve` and ``predict_final``.  A
constant-LR run alone does not determine the annealing constants (their terms are zero on it):
a fit needs at least one run that anneals.

``scaling fit-curves SWEEP_DIR`` does this per size for a sweep's run directories (their
``metrics.jsonl`` and the schedules in ``config.json``): for each size it fits the trunk (the
run of group ``wsd_trunk``) plus one fork, predicts every other run's final loss (or, with
``--predict EXP --measured TABLE``, every run of another experiment of the same sizes), and prints
prediction beside measurement.  Held-out (eval) trajectories are preferred to training-batch
losses when the runs logged them.
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
    at_bounds: tuple[str, ...] = ()  # fitted exponents left on a search bound (:func:`_at_bounds`)

    name = "annealing"

    def params(self) -> dict:
        return {k: getattr(self, k) for k in ("L0", "A", "alpha", "C", "rmse")}

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


LAWS = ("annealing", "multipower")


def check_law(law: str, p=1.0) -> float:
    """The area power ``p`` as a float, after refusing an unknown ``law``, a ``p`` outside (0, 2], or
    any ``p`` but 1 for the annealing law.  Every entry point calls it before reading a run."""
    if law not in LAWS:
        raise ConfigError(f"law={law!r}: choose one of {LAWS}")
    try:
        v = float(p)
    except (TypeError, ValueError):
        v = float("nan")
    if not (0.0 < v <= 2.0):
        raise ConfigError(f"--area-power {p}: must be a number in (0, 2]; 1 is the published multi-power law "
                          f"(S1 = sum eta), below 1 a low-LR step counts for more than its LR area")
    if v != 1.0 and law != "multipower":
        raise ConfigError(f"--area-power {p}: only the multipower law has it; add --law multipower, or leave "
                          f"--area-power at 1 for the {law} law")
    return v


def _points(runs, skip_frac: float):
    """``(peak, [(lr, steps kept, losses kept, first_step)], n)``: the logged points a fit uses.

    ``runs`` items are ``(lr, steps, losses)`` or ``(lr, steps, losses, first_step)``: a fork's
    rows up to its fork step are its trunk's, so a fit that holds both keeps only the fork's
    own steps (``first_step`` = fork step + 1), and each point counts once.
    """
    if not runs:
        raise ConfigError("runs: fit_curve needs at least one trajectory")
    peak = max(float(np.max(r[0])) for r in runs)
    out, n = [], 0
    for r in runs:
        lr, steps, losses = r[0], np.asarray(r[1], dtype=int), np.asarray(r[2], dtype=np.float64)
        first = int(r[3]) if len(r) > 3 else 1
        ok = np.isfinite(losses) & (steps >= max(1, first)) & (steps <= len(lr)) & (steps > skip_frac * len(lr))
        out.append((np.asarray(lr, dtype=np.float64), steps[ok], losses[ok], first))
        n += int(ok.sum())
    if n < 8:
        raise ConfigError(f"runs: {n} logged losses after the first {skip_frac:.0%} of steps; a curve law "
                          f"needs >= 8 (log more often: log_every / eval_every)")
    if not any(len(st) and np.any(np.diff(lr[: st.max()]) < 0) for lr, st, *_ in out):
        raise ConfigError("runs: no fitted trajectory anneals (every LR is constant or rising up to its last "
                          "logged loss), so the annealing constants are undetermined; fit a run with a cooldown too "
                          "(e.g. a WSD fork of the constant-LR run)")
    return peak, out, n


def _system(pts, mats, difference: bool):
    """``(X, t)`` of the relative least squares ``X @ coef ~ t`` over every fitted point.

    ``mats[i]``: the design (one column per linear constant) at ``pts[i]``'s steps.  A point
    normally asks ``model / loss = 1``.  With ``difference``, a fork's point at a step where the
    first run (its trunk) was also evaluated asks instead that the model's fork-minus-trunk gap
    equal the measured one (relative to the trunk's loss): both runs saw the same batches up to
    there, so noise they share cancels.
    """
    Xb, (_, sb, yb, _) = mats[0], pts[0]
    Xs, ts = [Xb / yb[:, None]], [np.ones_like(yb)]
    where = {int(v): i for i, v in enumerate(sb)}
    for X, (_, st, y, first) in zip(mats[1:], pts[1:]):
        pair = np.array([difference and first > 1 and int(v) in where for v in st], dtype=bool)
        if pair.any():
            j = np.array([where[int(v)] for v in st[pair]], dtype=int)
            Xs.append((X[pair] - Xb[j]) / yb[j, None]), ts.append((y[pair] - yb[j]) / yb[j])
        Xs.append(X[~pair] / y[~pair, None]), ts.append(np.ones(int((~pair).sum())))
    return np.concatenate(Xs), np.concatenate(ts)


def _varpro(pts, design, difference, starts, lo, hi, x_scale):
    """Best ``(residuals, linear coefs, nonlinear q)``: ``design(q) -> [matrix per run]``, linear part solved exactly."""
    from scipy.optimize import least_squares

    def inner(q):
        X, t = _system(pts, design(q), difference)
        coef, *_ = np.linalg.lstsq(X, t, rcond=None)
        return X @ coef - t, coef

    best = None
    for q0 in starts:
        sol = least_squares(lambda q: inner(q)[0], x0=q0, bounds=(lo, hi), x_scale=x_scale, max_nfev=200)
        if best is None or sol.cost < best.cost:
            best = sol
    r, coef = inner(best.x)
    return r, coef, best.x


def _at_bounds(names, q, lo, hi) -> tuple[str, ...]:
    """The nonlinear constants a fit left on (within 1e-4 of the range of) a search bound.

    A constant there is not pinned by the trajectories: the best fit wanted to go further, so a
    prediction that leans on it extrapolates a boundary fit, however small its rmse.
    """
    return tuple(n for n, v, a, b in zip(names, q, lo, hi) if min(v - a, b - v) <= 1e-4 * (b - a))


def fit_curve(runs, *, law: str = "annealing", lam: float = LAMBDA, skip_frac: float = 0.1,
              difference: bool = False, area_power: float = 1.0):
    """Fit one size's law (``annealing`` or ``multipower``) to ``runs``: ``[(lr per step, steps, losses), ...]``.

    ``steps`` are the 1-based steps whose loss was logged (a 4th item, the first step to use,
    drops a fork's copy of its trunk's rows and marks it a fork of ``runs[0]``).  The first
    ``skip_frac`` of each trajectory (warmup and the fast initial drop, which no power law in S1
    describes) is left out.  Least squares on the relative error, float64, by variable
    projection (both laws are linear in ``L0``, ``A`` and their annealing amplitude for fixed
    exponents: those are searched from a few starts, the rest solved exactly).  ``difference``:
    fit a fork's points, where its trunk was evaluated at the same step, as fork-minus-trunk
    gaps (:func:`_system`).  ``area_power`` (multi-power law only): the fixed ``p`` of its forward
    area ``sum eta^p`` (1 = the published law).  Returns a :class:`CurveLaw` or :class:`MultiPowerLaw`.
    """
    area_power = check_law(law, area_power)
    if law == "multipower":
        return fit_multipower(runs, skip_frac=skip_frac, difference=difference, area_power=area_power)
    return _fit_annealing(runs, lam=lam, skip_frac=skip_frac, difference=difference)


def _fit_annealing(runs, *, lam: float, skip_frac: float, difference: bool = False) -> CurveLaw:
    peak, pts, _ = _points(runs, skip_frac)
    S = []
    for lr, steps, _, _ in pts:
        s1, s2 = areas(lr, peak=peak, lam=lam)
        S.append((s1[steps - 1], s2[steps - 1]))

    def design(q):
        return [np.column_stack([np.ones_like(s1), s1 ** (-q[0]), -s2]) for s1, s2 in S]

    def cost(alpha):
        X, t = _system(pts, design([alpha]), difference)
        coef, *_ = np.linalg.lstsq(X, t, rcond=None)
        r = X @ coef - t
        return float(r @ r)

    a0 = min(np.linspace(0.05, 2.0, 40), key=cost)  # a scan, then a polish
    lo, hi = [1e-3], [3.0]
    r, (L0, A, C), q = _varpro(pts, design, difference, [[a0]], lo, hi, [0.1])
    return CurveLaw(float(L0), float(A), float(q[0]), float(C), peak, lam, float(np.sqrt(np.mean(r ** 2))), len(r),
                    _at_bounds(("alpha",), q, lo, hi))


# ----------------------------------------------------------------------------- multi-power law
def _mpl_terms(lr: np.ndarray, steps, *, peak: float, C: float, beta: float, gamma: float, area_power: float = 1.0):
    """``(S1, D)`` at 1-based ``steps``: ``L = L0 + A*S1^-alpha - B*D`` (see the module docstring).

    ``S1`` sums ``eta^area_power``; the areas ``S_k(t)`` after each drop stay LR areas (``sum eta``).
    """
    eta = np.asarray(lr, dtype=np.float64) / peak
    cum = np.cumsum(eta)
    steps = np.asarray(steps, dtype=int)
    drop = np.maximum(np.concatenate([[0.0], eta[:-1] - eta[1:]]), 0.0)
    k = np.nonzero(drop > 0)[0]  # 0-based index of each step whose LR fell
    # the forward area: the LR area itself for the published law (p = 1), else sum eta^p
    s1 = (cum if area_power == 1.0 else np.cumsum(np.maximum(eta, 0.0) ** area_power))[steps - 1]
    s1_area = cum[steps - 1]
    if not len(k):
        return s1, np.zeros(len(steps))
    # S_k(t) = sum_{tau=k..t} eta_tau, for every (t, k) with k <= t
    sk = s1_area[:, None] - cum[k][None, :] + eta[k][None, :]
    x = np.maximum(sk, 0.0) * np.maximum(eta[k], 1e-12)[None, :] ** (-gamma)
    g = 1.0 - (C * x + 1.0) ** (-beta)
    g = np.where(k[None, :] <= (steps - 1)[:, None], g, 0.0)
    return s1, g @ drop[k]


@dataclasses.dataclass(frozen=True)
class MultiPowerLaw:
    """A fitted multi-power law of one model size (Luo et al. 2025; see the module docstring)."""

    L0: float
    A: float
    alpha: float
    B: float
    C: float
    beta: float
    gamma: float
    peak: float
    rmse: float = float("nan")  # relative, on the points fitted
    n_points: int = 0
    at_bounds: tuple[str, ...] = ()  # fitted constants left on a search bound (:func:`_at_bounds`)
    area_power: float = 1.0  # S1 = sum eta^area_power: given, not fitted (the module docstring)

    name = "multipower"

    def params(self) -> dict:
        return {k: getattr(self, k) for k in ("L0", "A", "alpha", "B", "C", "beta", "gamma", "area_power", "rmse")}

    def predict_curve(self, lr: np.ndarray, steps) -> np.ndarray:
        s1, d = _mpl_terms(lr, steps, peak=self.peak, C=self.C, beta=self.beta, gamma=self.gamma,
                           area_power=self.area_power)
        return self.L0 + self.A * s1 ** (-self.alpha) - self.B * d

    def predict_final(self, lr: np.ndarray) -> float:
        """The loss after the last step of a run whose per-step LRs are ``lr``."""
        return float(self.predict_curve(lr, [len(lr)])[0])


def fit_multipower(runs, *, skip_frac: float = 0.1, difference: bool = False, area_power: float = 1.0) -> MultiPowerLaw:
    """:func:`fit_curve` with ``law="multipower"`` (``area_power``: the fixed ``p`` of ``S1 = sum eta^p``).

    Variable projection: for fixed ``(alpha, log C, beta, gamma)`` the best ``L0, A, B`` solve a
    linear least squares on the relative error; the four are searched by ``least_squares`` from
    six starts (bounds ``alpha`` in [0.02, 3], ``C`` in [1e-5, 1e3], ``beta`` in [0.02, 5],
    ``gamma`` in [0, 2]) and the best fit is kept; ``at_bounds`` names those it left on a bound.
    """
    area_power = check_law("multipower", area_power)
    peak, pts, _ = _points(runs, skip_frac)

    def design(q):
        alpha, logc, beta, gamma = q
        out = []
        for lr, steps, _, _ in pts:
            s1, d = _mpl_terms(lr, steps, peak=peak, C=math.exp(logc), beta=beta, gamma=gamma, area_power=area_power)
            out.append(np.column_stack([np.ones_like(s1), s1 ** (-alpha), -d]))
        return out

    lo, hi = [0.02, math.log(1e-5), 0.02, 0.0], [3.0, math.log(1e3), 5.0, 2.0]
    starts = [[a0, math.log(c0), 0.5, 0.5] for a0 in (0.3, 0.8) for c0 in (1e-3, 1e-1, 10.0)]
    r, (L0, A, B), q = _varpro(pts, design, difference, starts, lo, hi, [0.3, 2.0, 0.3, 0.3])
    alpha, logc, beta, gamma = map(float, q)
    return MultiPowerLaw(float(L0), float(A), alpha, float(B), math.exp(logc), beta, gamma, peak,
                         float(np.sqrt(np.mean(r ** 2))), len(r), _at_bounds(("alpha", "C", "beta", "gamma"), q, lo, hi),
                         float(area_power))


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


def _size_key(cell) -> str:
    return f"d{cell.model.d_model}-l{cell.model.n_layers}"


def _sweep_sizes(sweep_dir, loss: str):
    """``({size: [(cell, lr, steps, losses, which)]}, {run_id: final eval loss})`` of a sweep's finished runs."""
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
        by_size.setdefault(_size_key(cell), []).append((cell, lr, steps, losses, which))
    if not by_size:
        raise ConfigError(f"sweep_dir {sweep_dir}: no finished run directory with a trajectory under runs/; "
                          f"fit-curves reads a sweep's runs/<run_id>/metrics.jsonl")
    return by_size, finals


def _fit_size(runs, *, fork_index, law: str, lam: float, min_others: int, difference: bool = False,
              area_power: float = 1.0):
    """``(fitted law, fitted run ids, the size's other runs, trajectory name)``, or None with too few runs.

    The base is the size's trunk (group ``wsd_trunk``; else its longest run) plus the forks of
    rank ``fork_index`` by horizon (an int, or a tuple of ints: several cooldowns fitted
    together); a fork's rows up to its fork step (its trunk's) are not fitted twice.  A rank
    past the size's forks is refused.
    """
    ranks = (fork_index,) if isinstance(fork_index, int) else tuple(fork_index)
    trunks = [r for r in runs if r[0].group == "wsd_trunk"]
    others = sorted([r for r in runs if r[0].group != "wsd_trunk"], key=lambda r: r[0].steps)
    planned = len(getattr(trunks[0][0], "checkpoint_steps", ()) or ()) if trunks else 0
    if planned and len([r for r in others if r[0].trunk == trunks[0][0].run_id]) < planned:
        return None  # forks still training: "the k-th fork by horizon" would name another horizon
    base = trunks[:1] or others[-1:]
    others = others if trunks else others[:-1]
    if others and max(ranks) >= len(others):
        raise ConfigError(f"--fork-index {','.join(map(str, ranks))}: size {_size_key(runs[0][0])} has "
                          f"{len(others)} fork(s) besides its trunk (ranks 0..{len(others) - 1} by horizon); "
                          f"pick ranks below {len(others)}")
    if not base or len(others) < len(ranks) + min_others - 1:
        return None  # nothing left to predict from or to
    picks = [others[i] for i in ranks]
    others = [r for i, r in enumerate(others) if i not in ranks]
    fitted = [(r[1], r[2], r[3]) for r in base]
    for pick in picks:
        forked = trunks and pick[0].trunk == base[0][0].run_id and pick[0].fork_step
        fitted.append((pick[1], pick[2], pick[3], pick[0].fork_step + 1 if forked else 1))
    fit = fit_curve(fitted, law=law, lam=lam, difference=difference, area_power=area_power)
    whiches = sorted({r[4] for r in base + picks})
    return fit, [r[0].run_id for r in base + picks], others, "+".join(whiches)


def _row(key, cell, lr, measured, fit, fitted_on, which) -> dict:
    pred = fit.predict_final(lr)
    ok = measured is not None and measured == measured
    return {"size": key, "run_id": cell.run_id, "schedule": cell.optim.schedule, "steps": cell.steps,
            "tokens": cell.tokens_trained, "measured": measured if ok else float("nan"), "predicted": pred,
            "rel_error": pred / measured - 1 if ok else None, "fitted_on": fitted_on, "loss": which,
            "law": fit.name, "params": fit.params(), "at_bounds": list(fit.at_bounds)}


def fit_sweep_curves(sweep_dir, *, loss: str = "auto", fork_index: int | tuple[int, ...] = 0, lam: float = LAMBDA,
                     law: str = "annealing", difference: bool = False, area_power: float = 1.0) -> list[dict]:
    """Per model size of a WSD sweep: fit on the trunk plus one fork, predict every other run's final loss.

    ``fork_index``: the fork's rank by horizon (0 = shortest), or a tuple of ranks to fit the
    trunk with several cooldowns at once.

    Returns one row per predicted run: ``size`` (the model's d_model/n_layers name), ``run_id``,
    ``schedule``, ``steps``, ``tokens``, ``measured`` (the run's final held-out loss from
    ``summary.json``, the results table's ``eval_loss``; else its last logged loss),
    ``predicted``, ``rel_error``, ``fitted_on`` (run ids), ``loss`` (the trajectory fitted:
    ``eval_loss`` or ``train_loss``), ``law`` and its fitted ``params``.
    Sizes without a trunk use their run with the longest horizon plus one other run; sizes whose
    trunk's forks have not all finished are left out.  ``difference``: the fork's points fitted as fork-minus-trunk gaps (:func:`fit_curve`).
    ``area_power``: the multi-power law's fixed ``p`` (:func:`fit_curve`).
    """
    area_power = check_law(law, area_power)
    by_size, finals = _sweep_sizes(sweep_dir, loss)
    out = []
    for key, runs in sorted(by_size.items()):
        got = _fit_size(runs, fork_index=fork_index, law=law, lam=lam, min_others=2, difference=difference,
                        area_power=area_power)
        if got is None:
            continue
        fit, fitted_on, others, which = got
        for cell, lr, steps, losses, _ in others:
            measured = finals.get(cell.run_id)
            if measured is None:  # no final eval: the last logged loss, if it is the run's last step
                measured = float(losses[-1]) if len(losses) and steps[-1] == cell.steps else None
            out.append(_row(key, cell, lr, measured, fit, fitted_on, which))
    return out


def experiment_cells(experiment, measured_table) -> list[tuple]:
    """``[(cell, measured eval_loss)]``: the planned cells of ``experiment`` that its results table measured.

    Refused before any fit: a bad experiment file, a table without ``run_id``/``eval_loss``, or
    one none of whose run ids is a cell of the experiment.
    """
    from analysis.data import load_results
    from scaling.sweep import load_sweep, plan

    cells = plan(load_sweep(experiment), estimate=False).cells
    table = load_results(measured_table, what="--measured")
    for col in ("run_id", "eval_loss"):
        if col not in table.columns:
            raise ConfigError(f"--measured {measured_table}: no {col!r} column; pass the results table of "
                              f"{experiment} (`scaling sweep` writes results.csv)")
    measured = {str(r): float(v) for r, v in zip(table["run_id"], table["eval_loss"]) if v == v}
    mine = [(c, measured[c.run_id]) for c in cells if c.run_id in measured]
    if not mine:
        raise ConfigError(f"--measured {measured_table}: none of its run ids is a cell of {experiment}; pass the "
                          f"table that experiment's sweep wrote (same recipe, same code)")
    return mine


def fit_sizes(sweep_dir, *, loss: str = "auto", fork_index: int | tuple[int, ...] = 0, lam: float = LAMBDA,
              law: str = "annealing", difference: bool = False, area_power: float = 1.0) -> dict:
    """``{size: (fitted law, fitted run ids, trajectory name)}``: each size of ``sweep_dir`` fitted on its
    trunk + the fork(s) ``fork_index`` (sizes without one are left out)."""
    by_size, _ = _sweep_sizes(sweep_dir, loss)
    fits = {}
    for key, runs in sorted(by_size.items()):
        got = _fit_size(runs, fork_index=fork_index, law=law, lam=lam, min_others=1, difference=difference,
                        area_power=area_power)
        if got is not None:
            fits[key] = (got[0], got[1], got[3])
    return fits


def predict_cells(fits: dict, cells, *, sweep_dir="SWEEP_DIR", experiment="EXPERIMENT") -> list[dict]:
    """One :func:`_row` per ``(cell, measured)`` whose size is in ``fits`` (:func:`fit_sizes`).

    A cell whose peak LR differs from its size's fitted runs is refused (the laws' constants hold
    at the peak they were fitted at).
    """
    from scaling.optim import learning_rate

    out = []
    for cell, measured in sorted(cells, key=lambda cm: (_size_key(cm[0]), cm[0].steps)):
        key = _size_key(cell)
        if key not in fits:
            continue
        fit, fitted_on, which = fits[key]
        if abs(cell.optim.peak_lr / fit.peak - 1) > 1e-3:
            raise ConfigError(f"--predict {experiment}: cell {cell.run_id} has peak_lr {cell.optim.peak_lr:.4g} but "
                              f"size {key} of {sweep_dir} was fitted at {fit.peak:.4g}; train the fitted runs at the "
                              f"predicted runs' peak LR")
        lr = np.asarray(learning_rate(cell.optim, cell.steps, np.arange(1, cell.steps + 1)), dtype=np.float64)
        out.append(_row(key, cell, lr, measured, fit, fitted_on, which))
    return out


def predict_experiment(sweep_dir, experiment, measured_table, *, loss: str = "auto",
                       fork_index: int | tuple[int, ...] = 0,
                       lam: float = LAMBDA, law: str = "annealing", difference: bool = False,
                       area_power: float = 1.0) -> list[dict]:
    """Fit each size of ``sweep_dir`` (trunk + the fork(s) ``fork_index``), predict every cell of another experiment.

    ``experiment``: an experiment file whose planned cells (same model shapes, same peak LR) are
    predicted from their own LR schedules; ``measured_table``: its results table (a sweep
    directory or results.csv/.parquet) whose ``eval_loss`` by ``run_id`` is the measurement.  A
    cell whose peak LR differs from its size's fitted runs is refused (the laws' constants hold
    at the peak they were fitted at); cells of sizes not in ``sweep_dir`` are left out.
    ``area_power``: the multi-power law's fixed ``p`` (:func:`fit_curve`).
    """
    area_power = check_law(law, area_power)
    mine = experiment_cells(experiment, measured_table)  # bad file or table: refused before any fit
    fits = fit_sizes(sweep_dir, loss=loss, fork_index=fork_index, lam=lam, law=law, difference=difference,
                     area_power=area_power)
    out = predict_cells(fits, mine, sweep_dir=sweep_dir, experiment=experiment)
    if not out:
        raise ConfigError(f"--predict {experiment}: no cell shares a model size with {sweep_dir} "
                          f"(sizes there: {', '.join(sorted(fits)) or 'none with a trunk and a fork'})")
    return out


def summarize(rows: list[dict]) -> dict:
    """Median and max |relative error|, the signed median and how many were over-predicted, overall and ``by_size``.

    The signed numbers tell noise from bias: a law whose errors are noise over-predicts about half
    the runs with a signed median near 0; one that over-predicts nearly all of them is biased for
    those schedules, however small its rmse on the runs it was fitted to.
    """
    def one(rs):
        signed = np.array([r["rel_error"] for r in rs if r["rel_error"] is not None], dtype=np.float64)
        errs = np.abs(signed)
        return {"n_predicted": int(len(errs)), "median_abs_rel_error": float(np.median(errs)) if len(errs) else None,
                "max_abs_rel_error": float(errs.max()) if len(errs) else None,
                "median_rel_error": float(np.median(signed)) if len(signed) else None,
                "n_over": int((signed > 0).sum())}

    out = one(rows)
    out["by_size"] = {k: one([r for r in rows if r["size"] == k]) for k in sorted({r["size"] for r in rows})}
    out["law"] = rows[0]["law"] if rows else None
    out["area_power"] = (rows[0].get("params") or {}).get("area_power") if rows else None
    out["loss"] = rows[0]["loss"] if rows else None
    # sizes whose fit left a constant on a search bound: their predictions rest on a boundary fit
    out["at_bounds"] = {r["size"]: r["at_bounds"] for r in rows if r.get("at_bounds")}
    return out


def to_markdown(rows: list[dict]) -> str:
    L = ["| size | run | schedule | tokens | measured | predicted | error | fitted on |",
         "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        err = "-" if r["rel_error"] is None else f"{100 * r['rel_error']:+.2f}%"
        L.append(f"| {r['size']} | {r['run_id']} | {r['schedule']} | {r['tokens']:.3g} | {r['measured']:.4f} | "
                 f"{r['predicted']:.4f} | {err} | {len(r['fitted_on'])} runs |")
    s = summarize(rows)
    if s["n_predicted"]:
        L += ["", "| size | predicted | median abs error | max abs error |", "|---|---|---|---|"]
        for k, v in s["by_size"].items():
            if v["n_predicted"]:
                L.append(f"| {k} | {v['n_predicted']} | {100 * v['median_abs_rel_error']:.2f}% | "
                         f"{100 * v['max_abs_rel_error']:.2f}% |")
        law = s["law"] + (f" (area power {s['area_power']:g})" if s["area_power"] not in (None, 1.0) else "")
        L += ["", f"{s['n_predicted']} final losses predicted by the {law} law fitted on {s['loss']} "
                  f"trajectories; median |error| {100 * s['median_abs_rel_error']:.2f}%, "
                  f"max {100 * s['max_abs_rel_error']:.2f}%; signed median {100 * s['median_rel_error']:+.2f}%, "
                  f"{s['n_over']} of {s['n_predicted']} over-predicted."]
    if s["at_bounds"]:
        which = "; ".join(k + ": " + ", ".join(v) for k, v in s["at_bounds"].items())
        L += ["", f"warning: {len(s['at_bounds'])} of {len(s['by_size'])} size(s) fitted with constants on a search "
                  f"bound ({which}): the best fit wanted to go "
                  f"further, so these trajectories do not pin them and those sizes' predictions extrapolate a "
                  f"boundary fit."]
    return "\n".join(L) + "\n"


def _path_ok(p) -> Path:
    p = Path(p)
    if not p.is_dir():
        raise ConfigError(f"SWEEP_DIR {p}: not a directory; pass the --out of `scaling sweep`")
    return p
