"""Downstream-task laws (analysis.tasks): curves recovered, the two-step chain backtested, intervals
that respond to noise, and `scaling fit --task` end to end.  Synthetic tables (tests/task_tables.py)
with known laws; no JAX."""

from __future__ import annotations

import json

import numpy as np
import pytest
from task_tables import LM, SIGMOID, TASK, law, n_opt, sigmoid, task_table

from analysis import tasks
from scaling import cli

COLS = dict(n_col="n_total", d_col="tokens", budget_col="budget")


def test_sigmoid_recovered_from_noisy_points():
    rng = np.random.default_rng(0)
    L = np.linspace(0.55, 1.25, 16)
    acc = sigmoid(SIGMOID, L) + 0.004 * rng.standard_normal(L.size)
    fit = tasks.fit_curve(L, acc, chance=0.25)
    p = fit.named
    assert p["a"] == pytest.approx(SIGMOID["a"], abs=0.05)
    assert p["b"] == pytest.approx(SIGMOID["b"], abs=0.02)
    assert p["k"] == pytest.approx(SIGMOID["k"], rel=0.15)
    assert p["L0"] == pytest.approx(SIGMOID["L0"], abs=0.03)
    assert np.max(np.abs(fit.acc(L) - sigmoid(SIGMOID, L))) < 0.01
    json.dumps(fit.as_dict())
    # the floor is bounded by chance: points below it cannot drag b under 1/n_choices
    low = tasks.fit_curve(L, np.clip(acc - 0.1, 0.05, 1), chance=0.25)
    assert low.named["b"] >= 0.25 and low.named["a"] + low.named["b"] <= 1 + 1e-12


def test_gadre_error_law_recovered():
    rng = np.random.default_rng(1)
    eps, k, gamma = 0.75, 3.0, 0.9
    L = np.linspace(2.4, 4.0, 14)
    err = eps - k * np.exp(-gamma * L) + 0.002 * rng.standard_normal(L.size)
    fit = tasks.fit_curve(L, 1 - err, method="gadre")
    p = fit.named
    assert p["epsilon"] == pytest.approx(eps, abs=0.03)
    assert p["gamma"] == pytest.approx(gamma, rel=0.2)
    assert np.max(np.abs((1 - fit.acc(L)) - (eps - k * np.exp(-gamma * L)))) < 0.006
    assert fit.acc(0.2) == 1.0  # far below the runs the error law crosses 0: accuracy 1, not NaN


def _true_opt_acc(C):
    n = n_opt(LM, C)
    return float(sigmoid(SIGMOID, law(TASK, n, C / (6 * n))))


@pytest.fixture(scope="module")
def noisy():
    return task_table(loss_noise=0.003, acc_noise="binomial", n_items=5000, seed=3)


def test_two_step_chain_predicts_a_held_out_budget(noisy):
    bt = tasks.backtest(noisy, "demo", **COLS, K=40, starts="small")
    json.dumps(bt)
    assert bt["held_out_budget"] == 3e16 and bt["n_train"] == 15 and bt["n_test"] == 5
    truth = _true_opt_acc(3e16)
    assert bt["ci"][0] <= truth <= bt["ci"][1], (truth, bt["pred"], bt["ci"])
    assert abs(bt["pred"] - truth) < 0.04
    assert abs(bt["error_points"]) < 5 and bt["inside_pi"]
    # per held-out run, the chain at its own (N, D) against what it measured
    assert sum(r["inside_pi"] for r in bt["runs"]) >= 4
    assert np.mean([abs(r["pred"] - r["acc"]) for r in bt["runs"]]) < 0.04


def test_interval_width_follows_the_noise(noisy):
    """No noise: every resample refits the truth (zero width); more noise: wider intervals."""
    kw = dict(**COLS, K=20, starts="small")
    exact = tasks.fit_task(task_table(), "demo", **kw).predict_c(1e17)
    assert exact["acc"] == pytest.approx(_true_opt_acc(1e17), abs=1e-6)
    low = tasks.fit_task(noisy, "demo", **kw).predict_c(1e17)
    high = tasks.fit_task(task_table(loss_noise=0.03, acc_noise="binomial", n_items=300, seed=3), "demo",
                          **kw).predict_c(1e17)
    width = lambda p: p["ci"][1] - p["ci"][0]  # noqa: E731
    assert width(exact) < 1e-4 < width(low) < width(high), (width(exact), width(low), width(high))
    assert low["ci"][0] <= low["acc"] <= low["ci"][1]


def test_scaling_fit_task_json_and_report(tmp_path, capsys, monkeypatch):
    from analysis import report

    monkeypatch.setattr(report, "make_plots", lambda objs, out_dir: [])  # the LM-loss figures: tested elsewhere
    table = tmp_path / "t.csv"
    task_table(budgets=(1e15, 3e15, 1e16), sizes=4, loss_noise=0.003, acc_noise="binomial", n_items=5000,
               seed=5).to_csv(table, index=False)
    out = tmp_path / "report"
    rc = cli.main(["fit", str(table), "--task", "demo", "--task-method", "gadre", "--approach", "1", "--bootstrap", "12",
                   "--starts", "small", "--at", "3e6,3e9", "--at-c", "1e17", "--format", "json", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    d = json.loads(captured.out)["tasks"]["demo"]
    assert d["method"] == "gadre" and d["curve"]["law"] == "gadre" and d["task_law"] is None
    assert [r["C"] for r in d["at_budgets"]] == [1e15, 3e15, 1e16] and d["at_C"][0]["C"] == 1e17
    p = d["predictions"][0]
    assert p["N"] == 3e6 and p["ci"][0] <= p["acc"] <= p["ci"][1]
    assert d["backtest"]["held_out_budget"] == 1e16 and d["backtest"]["inside_pi"] in (True, False)
    saved = json.loads((out / "fits.json").read_text())
    assert saved["tasks"]["demo"]["curve"] == d["curve"]
    assert "## Downstream tasks" in (out / "fits.md").read_text()
    for f in ("task_demo_acc_vs_compute.png", "task_demo_acc_vs_loss.png"):
        assert (out / f).stat().st_size > 1000


def test_gadre_also_fits_the_average_of_several_tasks(noisy):
    from analysis.report import task_section

    rng = np.random.default_rng(0)
    df = noisy.assign(**{"task/other/acc": np.clip(noisy["task/demo/acc"] - 0.05 + 0.01 * rng.standard_normal(len(noisy)),
                                                   0, 1)})
    out = task_section(df, ["demo", "other"], method="gadre", K=0, backtest=False, starts="small", loss_col="eval_loss",
                       **COLS)
    assert set(out) == {"demo", "other", "average"} and out["average"]["averaged"] == ["demo", "other"]
    mean = (df["task/demo/acc"] + df["task/other/acc"]) / 2
    assert [b["best_acc"] for b in out["average"]["at_budgets"]] == pytest.approx(
        mean.groupby(df["budget"]).max().tolist())
    assert out["average"]["at_budgets"][-1]["acc"] == pytest.approx(
        (out["demo"]["at_budgets"][-1]["acc"] + out["other"]["at_budgets"][-1]["acc"]) / 2, abs=0.03)
