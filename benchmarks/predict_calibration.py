"""Rollout calibration of ``analysis.predict`` on every published table shipped in the package.

    python3 benchmarks/predict_calibration.py [--starts small|full]

For each table (and each group of the multi-set tables): the rollout levels, the number of
rollout predictions, the error growth per decade of extrapolation, the cross-validated coverage
of the 95% prediction interval (target >= 90%; also with the plain Gaussian z = 1.96 instead of
the rollout-calibrated z), and the mean |error| of the rollout predictions,
overall and beyond one decade.  The numbers in docs/predicting.md come from this script.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from analysis import published as pub
from analysis.diagnostics import canonical
from analysis.prediction import calibration, rollouts


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", default="small", choices=("small", "full"))
    args = ap.parse_args()
    rows = []
    for name, df, cols in tables():
        t0 = time.time()
        frame = canonical(df, **cols)
        roll, notes = rollouts(frame, starts=args.starts)
        cal = calibration(roll, notes)
        far = roll[roll["distance"] > 1.0]
        rows.append({"table": name, "runs": len(frame), "levels": cal["n_levels"], "predictions": cal["n_predictions"],
                     "growth/decade": round(cal["growth_per_decade"], 4),
                     "coverage95": None if cal.get("coverage") is None else round(cal["coverage"], 3),
                     "coverage95 (z=1.96)": None if cal.get("coverage") is None else round(cal["coverage_gaussian_z"], 3),
                     "z": round(cal["z"], 2),
                     "mean|err|": None if cal.get("mean_abs_rel_error") is None else round(cal["mean_abs_rel_error"], 4),
                     "mean|err| >1 decade": round(float((far["pred"] / far["loss"] - 1).abs().mean()), 4) if len(far) else None,
                     "s": round(time.time() - t0, 1)})
        print(rows[-1], flush=True)
    out = pd.DataFrame(rows)
    cols = list(out.columns)
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join("-" if r[c] is None else str(r[c]) for c in cols) + " |")
    ok = out["coverage95"].dropna()
    print(f"\n{len(ok)} tables with cross-validated coverage: median {ok.median():.3f}, min {ok.min():.3f}, "
          f"{int((ok >= 0.9).sum())} of {len(ok)} >= 0.90")


if __name__ == "__main__":
    main()
