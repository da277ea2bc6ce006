"""``analysis.predict`` / ``scaling predict``: intervals that cover at their stated rate in-sample
and widen with extrapolation distance, calibrated by rollouts inside the table.

Synthetic tables from a known law (and a known misspecification) make the truth checkable;
the fits use the small start grid and few bootstrap resamples, so each test takes seconds.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis import laws as lw
from analysis import predict
from analysis.prediction import GROWTH_FLOOR, rollouts
from analysis.diagnostics import canonical

TRUE = dict(E=1.8, A=400.0, B=1200.0, alpha=0.34, beta=0.30)
BUDGETS = (1e17, 3e17, 1e18, 3e18, 1e19)


def law_loss(N, D, bend=0.0):
    L = TRUE["E"] + TRUE["A"] / N ** TRUE["alpha"] + TRUE["B"] / D ** TRUE["beta"]
    # misspecification: a slow drift in log C that the Chinchilla form cannot express
    return L * (6 * N * D / 1e17) ** (-bend)


def isoflop(noise, seed, bend=0.0, budgets=BUDGETS, k=7):
    rng = np.random.default_rng(seed)
    rows = []
    for C in budgets:
        n_opt = math.sqrt(C / 6 / 20)
        for x in np.linspace(-1.2, 1.2, k):
            N = n_opt * math.exp(x)
            D = C / (6 * N)
            rows.append({"n_total": N, "tokens": D, "budget": C,
                         "eval_loss": law_loss(N, D, bend) * math.exp(noise * rng.standard_normal())})
    return pd.DataFrame(rows)


COLS = dict(loss_col="eval_loss", n_col="n_total", d_col="tokens", budget_col="budget", starts="small")


def test_intervals_cover_at_their_stated_rate_in_sample():
    """Well specified, noise 1%: fresh runs at points inside the table land in the 95% PI ~95% of the time."""
    noise = 0.01
    df = isoflop(noise, seed=0)
    rng = np.random.default_rng(1)
    pts = [(float(n), float(d)) for n, d in zip(np.exp(rng.uniform(np.log(2e7), np.log(1e8), 40)),
                                                np.exp(rng.uniform(np.log(2e8), np.log(2e9), 40)))]
    res = predict(df, pts, K=30, **COLS)
    assert abs(res["law"]["sigma0"] - noise) < 0.004  # one run's noise is recovered
    hits = []
    for p in res["predictions"]:
        measured = law_loss(p["N"], p["D"]) * np.exp(noise * rng.standard_normal(50))
        hits.append(np.mean((measured >= p["pi"][0]) & (measured <= p["pi"][1])))
        assert p["ci"][0] <= p["loss"] <= p["ci"][1]
        assert p["pi"][0] < p["ci"][0] and p["pi"][1] > p["ci"][1]  # one run's noise on top of the parameters
    assert 0.88 <= float(np.mean(hits)) <= 0.995
    assert not [w for w in res["warnings"] if w.startswith("rollouts:")]  # errors of both signs: no bias line


def test_intervals_widen_with_distance_and_cover_a_misspecified_truth():
    """Under a drift the law cannot express, rollouts measure error growth; the widened interval still
    covers the truth far out, where an interval of in-sample noise and parameters alone does not."""
    df = isoflop(0.003, seed=2, bend=0.01)
    far = [(n, 20 * n) for n in (1e9, 3e9, 1e10)]  # C = 1.2e20 .. 1.2e22: 10x .. 1000x the largest budget
    res = predict(df, far, K=30, **COLS)
    cal = res["calibration"]
    assert cal["n_levels"] >= 2 and cal["coverage"] is not None
    assert res["law"]["growth_per_decade"] > 0.003
    # the law bends away from the drift the same way inside the table and beyond it: the rollouts
    # under-predict (most of them), the warning says so, and the far truths are above the law too
    assert cal["share_over_predicted"] <= 0.2 and cal["mean_signed_rel_error"] < 0
    assert [w for w in res["warnings"] if w.startswith("rollouts: the law under-predicted")]
    assert all(law_loss(p["N"], p["D"], 0.01) > p["loss"] for p in res["predictions"])
    widths = [math.log(p["pi"][1] / p["pi"][0]) for p in res["predictions"]]
    assert widths[0] < widths[1] < widths[2]
    truth = [law_loss(p["N"], p["D"], 0.01) for p in res["predictions"]]
    assert all(p["pi"][0] <= t <= p["pi"][1] for p, t in zip(res["predictions"], truth))
    narrow = [p["loss"] * math.exp(1.96 * res["law"]["sigma0"]) for p in res["predictions"]]
    assert any(not (t <= hi) or not (t >= p["loss"] ** 2 / hi) for p, t, hi in zip(res["predictions"], truth, narrow))
    assert [p["extrapolation"] for p in res["predictions"]] == pytest.approx(
        [6 * n * d / max(BUDGETS) for n, d in far], rel=0.02)


def test_rollouts_fit_below_and_predict_above():
    frame = canonical(isoflop(0.005, seed=3), loss_col="eval_loss", n_col="n_total", d_col="tokens",
                      budget_col="budget")
    roll, notes = rollouts(frame, law=lw.get("chinchilla"))
    assert sorted(roll["level"].unique()) == [3e17, 1e18, 3e18]  # 1e17 alone is on one line: skipped
    assert any("skipped" in n for n in notes)
    for lv, g in roll.groupby("level"):
        assert (g["budget"] > lv).all() and (g["distance"] > 0).all()
        assert (g["n_fit"] == (frame["budget"] <= lv).sum()).all()


def test_a_table_too_small_for_rollouts_is_said_not_failed():
    df = isoflop(0.005, seed=4, budgets=(1e17, 1e18))
    res = predict(df, ["1e8,2e9"], K=0, **COLS)
    assert res["calibration"]["coverage"] is None and "too few budgets" in res["calibration"]["note"]
    assert any("too few budgets" in w for w in res["warnings"])
    assert res["predictions"][0]["ci"] == [None, None]  # no bootstrap asked for
    # no rollout of its own: the interval still widens with distance, at the published-table floor
    cal = res["calibration"]
    assert cal["growth_own"] == 0.0 and cal["growth_per_decade"] == GROWTH_FLOOR > 0
    assert "floor" in cal["note"]
    near, far = predict(df, ["1e8,1.6e9", "1e9,1.6e10"], K=0, **COLS)["predictions"]  # C = 1x, 100x the largest
    d = math.log10(far["extrapolation"])
    assert d > 1.9 and far["sigma"] ** 2 == pytest.approx(res["law"]["sigma0"] ** 2 + (GROWTH_FLOOR * d) ** 2, rel=1e-9)
    assert near["sigma"] == pytest.approx(res["law"]["sigma0"], rel=1e-9)


def test_cli_json(tmp_path, capsys):
    from scaling import cli

    isoflop(0.005, seed=5).to_csv(tmp_path / "t.csv", index=False)
    assert cli.main(["predict", str(tmp_path / "t.csv"), "--at", "1e8,2e9", "--at", "3e8,6e9", "--starts", "small",
                     "--bootstrap", "10", "--format", "json", "--budget-col", "budget"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"law", "predictions", "calibration", "warnings"}
    assert [set(p) >= {"N", "D", "C", "extrapolation", "loss", "ci", "pi"} for p in out["predictions"]] == [True, True]
    assert out["predictions"][1]["C"] == pytest.approx(6 * 3e8 * 6e9)
