"""Rollout calibration of ``analysis.predict`` on every published table shipped in the package.

    python3 benchmarks/predict_calibration.py [--starts small|full]
    python3 benchmarks/predict_calibration.py --small 3     # the same tables cut to their 3 smallest budgets

For each table (and each group of the multi-set tables): the rollout levels, the number of
rollout predictions, the error growth per decade of extrapolation, the cross-validated coverage
of the 95% prediction interval (target >= 90%; also with the plain Gaussian z = 1.96 instead of
the rollout-calibrated z), the median 95% half-width at the rollout predictions, and the mean |error|
of the rollout predictions, overall and beyond one decade; then the 25th percentile of the tables'
growths (the floor, ``analysis.prediction.GROWTH_FLOOR``, that a table too small to measure its own
growth is given).  With ``--variants``, the same rollouts also under three other models of the error's
growth (the study behind keeping the production one, docs/predicting.md): distance counted per *span*
of the fit (decades beyond its largest C / decades of C it covers) instead of per decade, and each
rollout level counted once in the growth's least squares instead of each prediction; and the production
model after correcting each level's predictions for the signed drift (error proportional to distance)
that the other levels' rollouts show, the study behind saying a bias rather than correcting it.

``--small K``: what a K-budget sweep's interval is worth.  Each IsoFLOP table is cut to its K
smallest budgets, ``analysis.predict`` (the production path, 40 bootstrap resamples) predicts every
larger run of the table from the cut, and the 95% intervals' coverage is printed by distance and per
table, with the growth floor and without it (the same predictions, the floor's term removed).
The numbers in docs/predicting.md come from this script.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import pandas as pd

from analysis import prediction
from analysis import published as pub
from analysis.diagnostics import canonical
from analysis.prediction import GROWTH_FLOOR, calibration, predict, rollouts


def tables():
    yield "epoch_chinchilla (240)", pub.epoch_240(), dict(loss_col="loss", n_col="Model Size", c_col="Training FLOP")
    oa = pub.load("openathena_isoflops")
    for key, g in oa.groupby(["source", "dataset", "model", "condition"], dropna=False):
        name = "openathena " + "/".join(str(k) for k in key if isinstance(k, str))
        yield name, g, dict(loss_col="loss", n_col="params", d_col="tokens", budget_col="budget")
    po = pub.load("porian2024_isoflops")
    for key, g in po.groupby(["dataset", "hparams", "warmup", "decay", "param_count", "loss_split"]):
        yield "porian2024 " + "/".join(key), g, dict(loss_col="loss", n_col="n", d_col="t", budget_col="flops")
    qs = pd.read_csv("experiments/results/quickstart/results.csv")
    yield "quickstart (ours)", qs, dict(loss_col="eval_loss", n_col="n_total", d_col="tokens", budget_col="budget")


_POOLED = prediction.growth  # the production growth: one least squares over every rollout prediction


def _level_weighted_growth(roll: pd.DataFrame) -> float:
    """The growth with each rollout level counted once: the root mean of the levels' own least-squares s^2."""
    return math.sqrt(float(np.mean([_POOLED(g) ** 2 for _, g in roll.groupby("level")]))) if len(roll) else 0.0


def _half_width(roll: pd.DataFrame, cal: dict) -> float:
    """Median 95% half-width (log loss) of the full table's interval model at its rollout predictions."""
    sd = np.sqrt(roll["sigma0_fit"].to_numpy() ** 2 + (cal["growth_per_decade"] * roll["distance"].clip(lower=0)) ** 2)
    return float(np.median(cal["z"] * sd))


def variants(frame: pd.DataFrame, roll: pd.DataFrame, notes: list[str]) -> dict:
    """Cross-validated coverage and median half-width under the four growth models (see the module doc)."""
    key, _ = prediction.rollout_levels(frame)
    span = {}  # decades of C each level's fit covers (at least 0.05: a near-one-budget fit)
    for lv in roll["level"].unique():
        c = frame.loc[frame[key] <= lv, "C"]
        span[lv] = max(math.log10(c.max() / c.min()), 0.05)
    # per span: the distance column replaced by the ratio, so calibration() runs unchanged on it
    per_span = roll.assign(distance=roll["distance"].clip(lower=0) / roll["level"].map(span))
    out = {}
    for unit, r in (("decade", roll), ("span", per_span)):
        for weighting in ("pooled", "by level"):
            saved = prediction.growth
            if weighting == "by level":
                prediction.growth = _level_weighted_growth
            try:
                cal = calibration(r, notes)
            finally:
                prediction.growth = saved
            out[f"per {unit}, {weighting}"] = (cal.get("coverage"), _half_width(r, cal), cal["z"])
    return out


def drift_corrected(roll: pd.DataFrame) -> tuple[float, float, float]:
    """Leave-level-out: correct each level's predictions by the signed drift ``e = b d`` that the *other*
    levels' rollouts show (least squares through 0), then score them with the production model fitted on
    the other levels' corrected errors.  Returns (coverage, mean |log error| corrected, uncorrected)."""
    d, e = roll["distance"].clip(lower=0).to_numpy(), roll["log_error"].to_numpy()
    hits, corrected = [], []
    for lv in roll["level"].unique():
        m = (roll["level"] == lv).to_numpy()
        b = float(d[~m] @ e[~m] / (d[~m] @ d[~m]))
        rest, g = roll[~m].assign(log_error=e[~m] - b * d[~m]), roll[m].assign(log_error=e[m] - b * d[m])
        s = prediction.growth(rest)
        hits.append(prediction._scores(g, s) <= prediction.z_calibrated(rest, s))
        corrected.append(np.abs(g["log_error"].to_numpy()))
    return float(np.concatenate(hits).mean()), float(np.concatenate(corrected).mean()), float(np.abs(e).mean())


def small_tables(k: int) -> None:
    rows = []
    for name, df, cols in tables():
        frame = canonical(df, **cols)
        budgets, counts = np.unique(frame["budget"].to_numpy(), return_counts=True)
        if name.startswith("quickstart") or len(budgets) <= k or counts.max() > 0.6 * len(frame):
            continue  # ours (3 budgets), or not an IsoFLOP table (Epoch's reconstruction)
        cut, above = frame[frame["budget"] <= budgets[k - 1]], frame[frame["budget"] > budgets[k - 1]]
        t0 = time.time()
        res = predict(cut, [(float(r.N), float(r.D)) for r in above.itertuples()], loss_col="loss", n_col="N",
                      d_col="D", budget_col="budget", starts="small", K=40)
        cal = res["calibration"]
        own, s = cal.get("growth_own", cal["growth_per_decade"]), cal["growth_per_decade"]
        for p, r in zip(res["predictions"], above.itertuples()):
            d = max(math.log10(p["extrapolation"]), 0.0)
            sd_own = math.sqrt(max(p["sigma"] ** 2 - (s * d) ** 2 + (own * d) ** 2, 0.0))
            e = abs(math.log(r.loss / p["loss"]))
            rows.append({"table": name, "distance": d, "inside": e <= cal["z"] * p["sigma"],
                         "inside_own": e <= cal["z"] * sd_own, "abs_error": e})
        print(f"{name}: {len(above)} runs predicted from {len(cut)}, own growth {own:.4f}, {time.time() - t0:.0f} s",
              flush=True)
    out = pd.DataFrame(rows)
    out["decades beyond"] = pd.cut(out["distance"], [0, 0.5, 1.0, 1.5, 2.5, 9], include_lowest=True)
    print(f"\n95% PI coverage of the runs above each table's {k} smallest budgets (growth floor {GROWTH_FLOOR}):")
    print(out.groupby("decades beyond", observed=True).agg(
        runs=("inside", "size"), with_floor=("inside", "mean"), own_growth_only=("inside_own", "mean"),
        mean_abs_log_error=("abs_error", "mean")).round(3).to_string())
    near = out[out["distance"] <= 1.2].groupby("table")[["inside", "inside_own"]].mean()
    print(f"\ntables with >= 90% coverage within 1.2 decades: with floor {int((near['inside'] >= 0.9).sum())}, "
          f"own growth only {int((near['inside_own'] >= 0.9).sum())}, of {len(near)}; "
          f"overall {out['inside'].mean():.3f} vs {out['inside_own'].mean():.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", default="small", choices=("small", "full"))
    ap.add_argument("--variants", action="store_true", help="also score three other growth models on the rollouts")
    ap.add_argument("--small", type=int, default=0, metavar="K",
                    help="cut each IsoFLOP table to its K smallest budgets and score the intervals beyond")
    args = ap.parse_args()
    if args.small:
        return small_tables(args.small)
    rows, growths, study = [], [], []
    for name, df, cols in tables():
        t0 = time.time()
        frame = canonical(df, **cols)
        roll, notes = rollouts(frame, starts=args.starts)
        cal = calibration(roll, notes)
        far = roll[roll["distance"] > 1.0]
        if cal["n_levels"] >= 2 and not name.startswith("quickstart"):
            growths.append(cal["growth_per_decade"])  # published tables, unrounded
        rows.append({"table": name, "runs": len(frame), "levels": cal["n_levels"], "predictions": cal["n_predictions"],
                     "growth/decade": round(cal["growth_per_decade"], 4),
                     "coverage95": None if cal.get("coverage") is None else round(cal["coverage"], 3),
                     "coverage95 (z=1.96)": None if cal.get("coverage") is None else round(cal["coverage_gaussian_z"], 3),
                     "z": round(cal["z"], 2),
                     "half-width": round(_half_width(roll, cal), 4) if len(roll) else None,
                     "mean|err|": None if cal.get("mean_abs_rel_error") is None else round(cal["mean_abs_rel_error"], 4),
                     "mean|err| >1 decade": round(float((far["pred"] / far["loss"] - 1).abs().mean()), 4) if len(far) else None,
                     "s": round(time.time() - t0, 1)})
        print(rows[-1], flush=True)
        if args.variants and cal["n_levels"] >= 2:
            study.append({"table": name, **{f"{m} {what}": v[i] for m, v in variants(frame, roll, notes).items()
                                            for i, what in enumerate(("coverage", "half-width", "z"))},
                          **dict(zip(("drift coverage", "drift abs", "abs"), drift_corrected(roll)))})
    out = pd.DataFrame(rows)
    cols = list(out.columns)
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join("-" if r[c] is None else str(r[c]) for c in cols) + " |")
    ok = out["coverage95"].dropna()
    print(f"\n{len(ok)} tables with cross-validated coverage: median {ok.median():.3f}, min {ok.min():.3f}, "
          f"{int((ok >= 0.9).sum())} of {len(ok)} >= 0.90")
    if study:
        st = pd.DataFrame(study).set_index("table")
        print("\ngrowth models on the same rollouts (cross-validated coverage; median half-width; z):")
        for m in ("per decade, pooled", "per decade, by level", "per span, pooled", "per span, by level"):
            c, w, z = st[f"{m} coverage"], st[f"{m} half-width"], st[f"{m} z"]
            print(f"  {m:22s} coverage median {c.median():.3f}, min {c.min():.3f}, {int((c >= 0.9).sum())} of {len(c)} >= 0.90; "
                  f"half-width median {w.median():.4f}, max {w.max():.4f}; z median {z.median():.2f}, max {z.max():.2f}")
        c = st["drift coverage"]
        print(f"  corrected for the drift the other levels show: coverage median {c.median():.3f}, min {c.min():.3f}, "
              f"{int((c >= 0.9).sum())} of {len(c)} >= 0.90; mean |log error| lower in "
              f"{int((st['drift abs'] < st['abs']).sum())} of {len(c)} tables (median {st['drift abs'].median():.4f} "
              f"vs {st['abs'].median():.4f} uncorrected)")
    print(f"growth per decade over the {len(growths)} published tables with >= 2 rollout levels: 25th percentile "
          f"{np.quantile(growths, 0.25):.6f} (analysis.prediction.GROWTH_FLOOR = {GROWTH_FLOOR}), "
          f"median {np.median(growths):.6f}")


if __name__ == "__main__":
    main()
