"""Tests of the report's science extras: backtest of the optimal loss, known-truth E, allocation rules."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis import allocation
from analysis import published as pub
from analysis import uncertainty as unc
from analysis.data import ConfigError
from analysis.report import write_report

from test_analysis import synthetic_isoflop

COLS = dict(n_col="n_total", d_col="tokens", loss_col="eval_loss", budget_col="budget")


def test_backtest_predicts_the_held_out_optimal_loss():
    law = pub.PRESETS["chinchilla_rounded"].law
    df = synthetic_isoflop(noise=0.002, seed=3)
    bt = unc.backtest(df, **COLS)
    a3 = bt["approach3"]
    true_opt = float(law.loss_opt(3e20))
    # the law is exact up to 0.2% noise: its extrapolated optimum lands near the truth,
    # the held-out parabola vertex near it too, and the reported errors are consistent
    assert abs(a3["loss_opt_pred"] / true_opt - 1) < 0.01
    assert abs(bt["held_out_vertex_loss"] / true_opt - 1) < 0.01
    assert a3["loss_opt_rel_error"] == pytest.approx(a3["loss_opt_pred"] / bt["held_out_vertex_loss"] - 1)
    assert bt["held_out_best_loss"] == pytest.approx(df[df.budget == 3e20].eval_loss.min())
    assert abs(a3["loss_best_rel_error"]) < 0.02


def test_backtest_detects_a_law_that_breaks_at_the_largest_budget():
    df = synthetic_isoflop(noise=0.0, seed=0)
    big = df.budget == df.budget.max()
    df.loc[big, "eval_loss"] *= 1.10          # the largest budget trains 10% worse than the law says
    bt = unc.backtest(df, **COLS)
    assert bt["approach3"]["loss_opt_rel_error"] < -0.07   # prediction far below what was achieved


def test_known_truth_in_report(tmp_path):
    law = pub.PRESETS["chinchilla_rounded"].law
    df = synthetic_isoflop(budgets=(1e18, 1e19, 1e20), k=5, noise=0.001, seed=1)
    df["entropy_rate"] = law.E
    s = write_report(df, tmp_path, **COLS)
    t = s["known_truth"]
    assert t["entropy_rate"] == pytest.approx(law.E)
    assert abs(t["rel_error"]) < 0.05 and t["E"] == pytest.approx(s["approach3"]["E"])
    md = (tmp_path / "fits.md").read_text()
    assert "Known truth" in md and "Backtest" in md
    # no entropy column (a natural-language corpus): no claim
    s2 = write_report(df.drop(columns="entropy_rate"), tmp_path / "b", **COLS)
    assert "known_truth" not in s2


def _allocation_runs(kaplan_penalty=0.05):
    rows = []
    for C, nc, nk in ((1e18, 1e7, 3e7), (1e19, 3e7, 1.6e8), (1e20, 1e8, 8e8)):
        rows.append(dict(n_total=nc, tokens=C / (6 * nc), eval_loss=3.0 - 0.2 * np.log10(C / 1e18),
                         budget=C, group="chinchilla_rule"))
        rows.append(dict(n_total=nk, tokens=C / (6 * nk), eval_loss=3.0 - 0.2 * np.log10(C / 1e18) + kaplan_penalty,
                         budget=C, group="kaplan_rule"))
    return pd.DataFrame(rows)


def test_compare_allocations_table_and_report(tmp_path):
    df = _allocation_runs()
    t = allocation.compare_allocations(df, n_col="n_total", loss_col="eval_loss")
    assert list(t.budget) == [1e18, 1e19, 1e20]
    assert (t.winner == "chinchilla_rule").all()
    assert np.allclose(t.delta_loss, 0.05)
    assert t.n_kaplan_rule.tolist() == [3e7, 1.6e8, 8e8]
    # the Kaplan rule winning one budget is reported as such, not averaged away
    df.loc[(df.group == "kaplan_rule") & (df.budget == 1e20), "eval_loss"] -= 0.2
    t2 = allocation.compare_allocations(df, n_col="n_total", loss_col="eval_loss")
    assert t2.winner.tolist() == ["chinchilla_rule", "chinchilla_rule", "kaplan_rule"]
    assert "wins at 2 of 3 budgets" in allocation.to_markdown(t2)
    # a diverged run leaves its budget incomplete
    df.loc[0, "eval_loss"] = np.nan
    t3 = allocation.compare_allocations(df, n_col="n_total", loss_col="eval_loss")
    assert t3.winner.iloc[0] == "incomplete"

    s = write_report(_allocation_runs(), tmp_path, approaches=(), **COLS)
    assert "approach3" not in s and len(s["allocation"]) == 3
    assert (tmp_path / "allocation_rules.png").exists()
    md = (tmp_path / "fits.md").read_text()
    assert "Allocation rules at equal compute" in md and "chinchilla_rule wins at 3 of 3" in md
    assert json.loads((tmp_path / "fits.json").read_text())["allocation"][0]["winner"] == "chinchilla_rule"


def test_compare_allocations_bad_input():
    df = _allocation_runs()
    with pytest.raises(ConfigError, match="group"):
        allocation.compare_allocations(df.drop(columns="group"), n_col="n_total", loss_col="eval_loss")
    with pytest.raises(ConfigError, match="no rows"):
        allocation.compare_allocations(df.assign(group="isoflop"), n_col="n_total", loss_col="eval_loss")
