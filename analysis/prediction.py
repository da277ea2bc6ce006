"""Where will *this* run land?  Point predictions with intervals that widen with extrapolation.

``analysis.predict(df, at=[(N, D), ...], ...)`` fits a law (Approach 3, any law) and returns,
per point, the law's loss, a parameter interval and a prediction interval for one run's
*measured* loss there, plus ``extrapolation`` = the point's C / the largest C in the table.

Why not the residual bootstrap alone (:func:`analysis.uncertainty.prediction_intervals`):
it carries the in-sample noise and the parameter uncertainty, but nothing of the error that
grows with extrapolation distance (misspecification, drifting hyperparameters, a curve that
bends).  That error is measured inside the table by **rollouts** (OLMo's ladder evaluation):
for every budget b_k with enough runs below it, fit on the runs at budgets <= b_k and predict
every run above; the log errors against ``d = log10(C_run / C_fit_max)`` show how the error
grows.  The interval model, in log loss::

    sigma(d)^2 = sigma_0^2 + var_param + (s * max(d, 0))^2

``sigma_0``: the full fit's residual sd (one run's noise); ``var_param``: the bootstrap
variance of the predicted log loss at the point; ``s``: the growth per decade, the least-
squares slope of ``e^2 - sigma_0k^2`` on ``d^2`` over all rollout predictions (``e`` a rollout
error, ``sigma_0k`` the residual sd of the fit that made it), clipped at 0.  The interval is
``loss * exp(+-z sigma(d))``, ``z`` the Gaussian 1.96 for 95%, or the 95% quantile of the
rollouts' standardized errors when that is larger (heavy tails widen it).  Because rollout errors already contain the parameter error of
the smaller fits, adding ``var_param`` is conservative.

``calibration`` reports the rollouts' **cross-validated coverage**: each rollout level's
predictions are scored with an ``s`` and a ``z`` estimated from the *other* levels (and
without the parameter term), so the number is not the fit grading itself.  What the interval does not
include: errors that no smaller-budget rollout inside the table exhibits (a regime change
beyond the data), and anything systematic shared by every run (a biased eval set).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis import approaches as ap
from analysis import laws as lw
from analysis.data import require_identifiable
from analysis.diagnostics import canon, canonical, inputs_of
from analysis.errors import ConfigError

LEVEL = 0.95

# Error growth per decade assumed, at least, by a table with fewer than two rollout levels: the
# 25th percentile of the cross-validated growths of the 24 published tables shipped in the package
# (benchmarks/predict_calibration.py prints it).  On those tables cut to their three smallest
# budgets (one rollout level, as a 3-budget sweep has), the floor raises the 95% interval's coverage
# of the runs 0.5-1 decade beyond from 88.9% to 93.9% (benchmarks/predict_calibration.py --small).
GROWTH_FLOOR = 0.032617061614193636


def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))


def residual_sd(fit: ap.LawFit, frame: pd.DataFrame) -> float:
    """Residual sd of log loss, corrected for the law's parameters."""
    r = np.log(frame["loss"].to_numpy()) - fit.law.log_loss(np.array(fit.x)[None], inputs_of(frame))[0]
    dof = max(len(r) - len(fit.x), 1)
    return float(math.sqrt(float(r @ r) / dof))


def rollout_levels(frame: pd.DataFrame) -> tuple[str, np.ndarray]:
    """``(key column, thresholds)`` the rollouts cut the table at.

    An IsoFLOP-style table (>= 3 budgets, none holding most of the runs) is cut at its budgets;
    anything else (training-curve points, a continuum of C as in Epoch's reconstruction) at the
    30th, 40th, ..., 90th percentiles of C.
    """
    budgets, counts = np.unique(frame["budget"].to_numpy(), return_counts=True)
    if len(budgets) >= 3 and counts.max() <= 0.6 * len(frame):
        return "budget", budgets[:-1]
    return "C", np.unique(np.quantile(frame["C"].to_numpy(), np.arange(0.3, 0.91, 0.1)))


def rollouts(frame: pd.DataFrame, *, law="chinchilla", starts="small") -> tuple[pd.DataFrame, list[str]]:
    """Fit on the runs at or below each level (:func:`rollout_levels`), predict every run above.

    ``frame``: a prepared frame (:func:`analysis.diagnostics.canonical`).  Returns one row per
    (level, predicted run): ``level``, ``n_fit``, ``sigma0_fit`` (that fit's residual sd),
    ``budget``, ``N``, ``D``, ``C``, ``loss``, ``pred``, ``distance`` (log10 of the run's C over the
    largest C fitted), ``log_error`` (log loss - log pred); and the notes of levels skipped.
    """
    law = lw.get(law)
    cols = canon(frame)
    key, levels = rollout_levels(frame)
    rows, notes = [], []
    for b in levels:
        train, test = frame[frame[key] <= b], frame[frame[key] > b]
        if test.empty:
            continue
        try:
            if len(train) < len(law.params) + 1:
                raise ConfigError(f"{len(train)} runs < {len(law.params) + 1}")
            require_identifiable(train, 3)
            fit = ap.fit_approach3(train, **cols, law=law, starts=starts)
        except ValueError as e:
            notes.append(f"rollout from {key} <= {b:.3g} skipped: {e}")
            continue
        pred = np.exp(fit.law.log_loss(np.array(fit.x)[None], inputs_of(test))[0])
        c_fit = float(train["C"].max())
        sd = residual_sd(fit, train)
        for (_, r), p in zip(test.iterrows(), pred):
            rows.append({"level": float(b), "n_fit": len(train), "sigma0_fit": sd, "budget": float(r["budget"]),
                         "N": float(r["N"]), "D": float(r["D"]), "C": float(r["C"]), "loss": float(r["loss"]),
                         "pred": float(p), "distance": math.log10(float(r["C"]) / c_fit),
                         "log_error": math.log(float(r["loss"]) / float(p))})
    cols_out = ["level", "n_fit", "sigma0_fit", "budget", "N", "D", "C", "loss", "pred", "distance", "log_error"]
    return pd.DataFrame(rows, columns=cols_out), notes


def growth(roll: pd.DataFrame) -> float:
    """Error growth per decade of extrapolation, ``s``: least squares of ``e^2 - sigma_0k^2`` on ``d^2``."""
    if roll.empty:
        return 0.0
    d2 = np.maximum(roll["distance"].to_numpy(), 0.0) ** 2
    excess = roll["log_error"].to_numpy() ** 2 - roll["sigma0_fit"].to_numpy() ** 2
    den = float(d2 @ d2)
    return float(math.sqrt(max(float(d2 @ excess) / den, 0.0))) if den > 0 else 0.0


def _scores(roll: pd.DataFrame, s: float) -> np.ndarray:
    """|log error| / the rollout's sd under growth ``s``: 1.96 is the nominal 95% bound."""
    sd = np.sqrt(roll["sigma0_fit"].to_numpy() ** 2 + (s * np.maximum(roll["distance"].to_numpy(), 0)) ** 2)
    return np.abs(roll["log_error"].to_numpy()) / np.maximum(sd, 1e-12)


def z_calibrated(roll: pd.DataFrame, s: float, level: float = LEVEL) -> float:
    """The interval's half-width in sds: the Gaussian ``z`` of ``level``, or the ``level`` quantile of the
    rollouts' standardized errors when that is larger (heavier tails than Gaussian are widened, never
    narrowed)."""
    z = _z(level)
    return max(z, float(np.quantile(_scores(roll, s), level))) if len(roll) else z


def calibration(roll: pd.DataFrame, notes: list[str], level: float = LEVEL) -> dict:
    """Cross-validated coverage of the rollout predictions: each level is scored with the growth ``s``
    and the half-width ``z`` (:func:`z_calibrated`) estimated from the *other* levels."""
    out = {"level": level, "n_levels": int(roll["level"].nunique()) if len(roll) else 0,
           "n_predictions": int(len(roll)), "growth_per_decade": growth(roll), "notes": list(notes)}
    out["z"] = z_calibrated(roll, out["growth_per_decade"], level) if out["n_levels"] >= 2 else _z(level)
    if len(roll):
        e = roll["log_error"].to_numpy()  # log(measured / predicted): < 0 where the law over-predicted
        out.update(mean_signed_rel_error=float(np.mean(np.expm1(-e))),
                   mean_abs_rel_error=float(np.mean(np.abs(np.expm1(-e)))),
                   share_over_predicted=float(np.mean(e < 0)))
    if out["n_levels"] < 2:
        # A table this small cannot say how its own error grows (one level's 5-10 predictions, or
        # none): the growth is at least GROWTH_FLOOR, what a typical published ladder shows
        # (benchmarks/predict_calibration.py --small measures what that buys on published tables)
        own = out["growth_per_decade"]
        out["growth_own"] = own
        out["growth_per_decade"] = max(own, GROWTH_FLOOR)
        out["coverage"] = None
        out["note"] = ("too few budgets for cross-validated rollouts (need >= 2 rollout levels: usually >= 4 budgets, "
                       "each level fitting >= 2 of them); the interval is widened with "
                       + (f"the one level's growth {own:.4f}/decade" if out["n_levels"] else "no rollout of its own")
                       + (f", raised to the published-table floor {GROWTH_FLOOR:.4f}/decade" if own < GROWTH_FLOOR else "")
                       + ", uncalibrated")
        return out
    hits, nominal = [], []
    for lv, g in roll.groupby("level"):
        rest = roll[roll["level"] != lv]
        s = growth(rest)
        sc = _scores(g, s)
        hits.append(sc <= z_calibrated(rest, s, level))
        nominal.append(sc <= _z(level))
    hits, nominal = np.concatenate(hits), np.concatenate(nominal)
    out.update(coverage=float(hits.mean()), coverage_gaussian_z=float(nominal.mean()),
               by_distance=_by_distance(roll, np.concatenate(
                   [np.full(len(g), lv) for lv, g in roll.groupby("level")]), hits))
    return out


def bias_warning(calib: dict) -> str | None:
    """A line when the rollouts err mostly one way (>= 80% of >= 5 predictions): the law is then likely
    biased the same way at the points predicted, more so farther out, and the interval (symmetric in
    log loss around the law) does not correct for it.  The quickstart seeds' rollouts over-predicted
    4-5 of 5 larger runs by 1-3%, and all three pre-registered rungs a decade out landed 4.4-7.2% below
    the prediction (docs/predicting.md)."""
    n, share = calib.get("n_predictions", 0), calib.get("share_over_predicted")
    if n < 5 or share is None or 0.2 < share < 0.8:
        return None
    way, k = ("over", round(share * n)) if share >= 0.8 else ("under", round((1 - share) * n))
    return (f"rollouts: the law {way}-predicted {k} of {n} larger runs (mean {100 * calib['mean_signed_rel_error']:+.1f}% "
            f"of the measured loss): expect the prediction to be {'above' if way == 'over' else 'below'} the "
            f"measured loss too, more so farther out; the interval is centred on the law, not corrected for this")


def _by_distance(roll: pd.DataFrame, levels, hits) -> list[dict]:
    """Coverage and errors in bins of extrapolation distance (decades)."""
    order = np.concatenate([np.flatnonzero(roll["level"].to_numpy() == lv) for lv in np.unique(levels)])
    d, e = roll["distance"].to_numpy()[order], roll["log_error"].to_numpy()[order]
    out = []
    edges = [0.0, 0.25, 0.5, 1.0, np.inf]
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (d > lo) & (d <= hi) if lo > 0 else (d <= hi)
        if m.any():
            out.append({"distance": [lo, None if not math.isfinite(hi) else hi], "n": int(m.sum()),
                        "coverage": float(hits[m].mean()),
                        "mean_signed_rel_error": float(np.mean(np.expm1(-e[m]))),
                        "mean_abs_rel_error": float(np.mean(np.abs(np.expm1(-e[m]))))})
    return out


def rollout_summary(roll: pd.DataFrame, notes: list[str], level: float = LEVEL) -> dict:
    """JSON-ready rollouts for a report: one row per level (runs fitted, runs predicted, farthest
    distance, mean signed and absolute relative error) and the :func:`calibration` of them all."""
    levels = []
    for lv, g in roll.groupby("level"):
        rel = g["pred"] / g["loss"] - 1
        levels.append({"level": float(lv), "n_fit": int(g["n_fit"].iloc[0]), "n_predicted": int(len(g)),
                       "max_distance": float(g["distance"].max()), "mean_signed_rel_error": float(rel.mean()),
                       "mean_abs_rel_error": float(rel.abs().mean())})
    return {"levels": levels, "calibration": calibration(roll, notes, level)}


def parse_points(at) -> list[tuple[float, float]]:
    """``[(N, D), ...]`` from ``"N,D"`` strings or pairs; ConfigError naming ``--at`` otherwise."""
    pts = []
    for a in at:
        try:
            n, d = (float(v) for v in (a.split(",") if isinstance(a, str) else a))
        except (TypeError, ValueError):
            raise ConfigError(f"--at {a!r}: give N,D as two numbers, e.g. --at 1e9,2e10") from None
        if not (math.isfinite(n) and math.isfinite(d) and n > 0 and d > 0):
            raise ConfigError(f"--at {a!r}: N and D must be positive finite numbers, e.g. --at 1e9,2e10")
        pts.append((n, d))
    if not pts:
        raise ConfigError("--at: give at least one point N,D, e.g. --at 1e9,2e10")
    return pts


def predict(df: pd.DataFrame, at, *, loss_col: str, n_col: str | None = None, d_col: str | None = None,
            c_col: str | None = None, budget_col: str | None = None, law="chinchilla", starts="full",
            K: int = 200, seed: int = 0, level: float = LEVEL, min_tokens: float | None = None,
            **columns) -> dict:
    """Predictions at ``at`` (``[(N, D), ...]`` or ``"N,D"`` strings) with parameter and prediction intervals.

    Returns ``{"law": {name, formula, params, sigma0, growth_per_decade, n_points, largest_C},
    "predictions": [{"N", "D", "C", "extrapolation", "loss", "ci", "pi", "sigma"}],
    "calibration": {...}, "warnings": [...]}`` (see the module docstring for the model).
    ``min_tokens``: points with fewer tokens than this (one batch) are refused.
    """
    from analysis.uncertainty import bootstrap, percentile_interval

    pts = parse_points(at)
    if min_tokens:
        for n, d in pts:
            if d < min_tokens:
                raise ConfigError(f"--at {n:g},{d:g}: D = {d:g} tokens is below one batch of the table's runs "
                                  f"({min_tokens:g} tokens); predict at D >= {min_tokens:g}")
    if not 0 < level < 1:
        raise ConfigError(f"level={level}: must be in (0, 1), e.g. 0.95")
    law = lw.get(law)
    frame = canonical(df, n_col=n_col, loss_col=loss_col, d_col=d_col, c_col=c_col, budget_col=budget_col,
                      **columns)
    if "U" in law.inputs:
        raise ConfigError(f"law: {law.name} needs unique tokens at each point; predict supports laws of N and D")
    cols = canon(frame)
    fit = ap.fit_approach3(frame, **cols, law=law, starts=starts)
    sigma0 = residual_sd(fit, frame)
    roll, notes = rollouts(frame, law=law, starts="small")
    calib = calibration(roll, notes, level)
    s, z = calib["growth_per_decade"], calib["z"]
    warnings = list(fit.warnings)
    if calib["n_levels"] < 2:
        warnings.append("predict: " + calib["note"])
    bias = bias_warning(calib)
    if bias:
        warnings.append(bias)
    N = np.array([p[0] for p in pts])
    D = np.array([p[1] for p in pts])
    x = lw.make_inputs(N=N, D=D)
    logp = fit.law.log_loss(np.array(fit.x)[None], x)[0]
    if K >= 2:
        boot = bootstrap(frame, **cols, K=K, seed=seed, approaches=(3,), fit3=fit, law=law)
        S = boot.law[np.isfinite(boot.law).all(axis=1)]
        boot_log = fit.law.log_loss(S, x) if len(S) else np.full((1, len(pts)), np.nan)
    else:
        boot_log = np.full((1, len(pts)), np.nan)
    c_max = float(frame["C"].max())
    k = fit.k
    preds = []
    for i, (n, d) in enumerate(pts):
        C = k * n * d
        dist = math.log10(C / c_max)
        var_param = float(np.nanvar(boot_log[:, i])) if np.isfinite(boot_log[:, i]).sum() >= 2 else 0.0
        sd = math.sqrt(sigma0 ** 2 + var_param + (s * max(dist, 0.0)) ** 2)
        loss = float(math.exp(logp[i]))
        ci = (list(percentile_interval(np.exp(boot_log[:, i]), level)) if np.isfinite(boot_log[:, i]).sum() >= 2
              else [None, None])
        preds.append({"N": n, "D": d, "C": C, "extrapolation": C / c_max, "loss": loss, "ci": ci,
                      "pi": [loss * math.exp(-z * sd), loss * math.exp(z * sd)], "sigma": sd})
    return {"law": {"name": law.name, "formula": law.formula, "params": {k_: float(v) for k_, v in fit.named.items()},
                    "sigma0": sigma0, "growth_per_decade": s, "n_points": int(len(frame)), "largest_C": c_max,
                    "flops_per_param_token": k, "level": level, "K": K},
            "predictions": preds, "calibration": calib, "warnings": warnings}


def to_markdown(res: dict) -> str:
    """The predictions as a Markdown table, with the calibration line under it."""
    law, cal = res["law"], res["calibration"]
    pct = int(round(100 * law["level"]))
    L = [f"Law: {law['formula']} fitted on {law['n_points']} runs (largest C {law['largest_C']:.3g}); "
         f"one run's noise sigma_0 = {law['sigma0']:.4f} (log loss); error growth "
         f"{law['growth_per_decade']:.4f} per decade of extrapolation.", "",
         f"| N | D | C | C / largest | loss | {pct}% CI (parameters) | {pct}% PI (one run) |",
         "|---|---|---|---|---|---|---|"]
    for p in res["predictions"]:
        ci = "-" if p["ci"][0] is None else f"[{p['ci'][0]:.4f}, {p['ci'][1]:.4f}]"
        L.append(f"| {p['N']:.4g} | {p['D']:.4g} | {p['C']:.4g} | {p['extrapolation']:.3g} | {p['loss']:.4f} | {ci} | "
                 f"[{p['pi'][0]:.4f}, {p['pi'][1]:.4f}] |")
    L.append("")
    if cal.get("coverage") is None:
        L.append(f"Calibration: {cal.get('note')}")
    else:
        L.append(f"Calibration: {cal['n_predictions']} rollout predictions from {cal['n_levels']} levels; "
                 f"cross-validated coverage of the {pct}% interval {100 * cal['coverage']:.0f}%, mean |error| "
                 f"{100 * cal['mean_abs_rel_error']:.2f}%, mean signed error {100 * cal['mean_signed_rel_error']:+.2f}%.")
    for w in res.get("warnings", []):
        if not w.startswith("predict: "):  # the calibration line above already says it
            L.append(f"- {w}")
    return "\n".join(L) + "\n"
