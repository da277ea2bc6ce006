"""A pre-registered Ladder rung: planned from a smaller sweep's law, its prediction on disk before
the first step, never rewritten, and scored in the results table and the report.

Training is the launcher's fake (``train_fn``): the trainer is tested elsewhere; here what matters
is the order of events and who writes what.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.config import ConfigError
from scaling.rundir import RunDir

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def fake_train(cell, run_dir):
    """Trains nothing: refuses to start without a prediction, then lands just inside its interval."""
    rd = RunDir(run_dir)
    if rd.is_finished():
        return rd.finished_summary()
    pred = rd.read_prediction()
    if pred is None:
        raise RuntimeError("trained before its prediction was registered")
    loss = pred["loss"] * 1.002
    n = int(pred["N"])
    summary = {"run_id": cell.run_id, "state": "done", "steps": cell.steps, "tokens_seen": cell.tokens_trained,
               "params": {"total": n, "non_embedding": n, "embedding": 0, "head": 0, "tied": True},
               "flops_achieved": {cell.flops_convention: 6.0 * n * cell.tokens_trained}, "budget": cell.budget,
               "flops_convention": cell.flops_convention, "final_eval_loss": loss, "group": cell.group,
               "timing": {"train": 0.1}}
    rd.finish(summary)
    return summary


def fit_table(path: Path, seed: int = 0) -> Path:
    """A smaller sweep's results: 3 IsoFLOP budgets x 6 sizes from a known law, 0.5% noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for C in (1e11, 3e11, 1e12):
        n_opt = math.sqrt(C / 6 / 20)
        for x in np.linspace(-1.0, 1.0, 6):
            N = n_opt * math.exp(x)
            D = C / (6 * N)
            L = (1.7 + 300 / N ** 0.4 + 900 / D ** 0.3) * math.exp(0.005 * rng.standard_normal())
            rows.append({"run_id": f"r{len(rows)}", "state": "done", "n_total": N, "tokens": D, "budget": C,
                         "eval_loss": L})
    path.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path / "results.csv", index=False)
    return path


EXPERIMENT = '''
from scaling.config import DataConfig, OptimConfig
from scaling.sweep import Ladder, Recipe, Sweep

SWEEP = Sweep(name="rung", recipe=Recipe(data=DataConfig(task="synthetic_markov", repeat=True), seq_len=32,
              batch_size=4, optim=OptimConfig(peak_lr=3e-3, warmup_steps=2), eval_batches=1),
              grid=Ladder(fit=FIT, target_c=TARGETS, K=20), analysis=(("approaches", ()),))
'''


def experiment(tmp_path: Path, fit: Path, targets=(1e13,)) -> Path:
    p = tmp_path / "rung.py"
    p.write_text(EXPERIMENT.replace("FIT", repr(str(fit))).replace("TARGETS", repr(tuple(targets))))
    return p


def test_a_rung_is_predicted_before_it_trains_and_scored_after(tmp_path, monkeypatch, capsys):
    from scaling import sweep as sweep_mod
    from scaling.launch.commands import run_sweep

    fit = fit_table(tmp_path / "small")
    exp = experiment(tmp_path, fit)
    plan = sweep_mod.plan(sweep_mod.load_sweep(exp), estimate=False)
    (cell,), (row,) = plan.cells, plan.rows
    pred = row["prediction"]
    assert cell.group == "ladder" and cell.budget == 1e13
    assert pred["fit"] == str(fit.resolve()) and pred["fit_runs"] == 18
    assert pred["pi"][0] < pred["ci"][0] <= pred["loss"] <= pred["ci"][1] < pred["pi"][1]
    # C of the prediction is the fit table's 6ND; the budget is spent in the recipe's own convention
    assert pred["extrapolation"] == pytest.approx(6 * pred["N"] * pred["D"] / 1e12, rel=0.01)
    assert 5 < pred["extrapolation"] < 15
    assert pred["N"] == row["n_total"] and pred["D"] == cell.tokens_trained
    # `scaling plan` shows the number the rung commits to, before anything trains
    from scaling import cli

    assert cli.main(["plan", str(exp)]) == 0
    head, line = capsys.readouterr().out.splitlines()[:2]
    assert "predicted_loss" in head and "predicted_pi" in head
    assert f"{pred['loss']:.4f}" in line and f"[{pred['pi'][0]:.4f}, {pred['pi'][1]:.4f}]" in line

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "out"
    r = run_sweep(exp, out, workers=1, quiet=True, train_fn="test_ladder:fake_train")
    assert r["states"] == {"done": 1} and not r["errors"]
    rd = RunDir(out / "runs" / cell.run_id)
    first = (rd.path / "prediction.json").read_bytes()
    assert rd.read_prediction()["loss"] == pred["loss"]
    df = r["results"]
    assert df["predicted_loss"].iloc[0] == pred["loss"] and bool(df["prediction_inside"].iloc[0])
    assert df["predicted_pi_lo"].iloc[0] == pred["pi"][0]
    md = (out / "report" / "fits.md").read_text()
    assert "## Pre-registered predictions (Ladder)" in md and "| yes |" in md

    # relaunch after the smaller sweep's table changed: the registered prediction never moves
    fit_table(fit, seed=1)
    assert sweep_mod.plan(sweep_mod.load_sweep(exp), estimate=False).rows[0]["prediction"]["loss"] != pred["loss"]
    run_sweep(exp, out, workers=1, quiet=True, train_fn="test_ladder:fake_train")
    assert (rd.path / "prediction.json").read_bytes() == first


def test_bad_rungs_are_refused_before_planning(tmp_path):
    from scaling import sweep as sweep_mod

    fit = fit_table(tmp_path / "small")
    with pytest.raises(ConfigError, match=r"grid.target_c: 1e\+12 is not above the fit's largest budget"):
        sweep_mod.plan(sweep_mod.load_sweep(experiment(tmp_path, fit, targets=(1e12,))), estimate=False)
    with pytest.raises(ConfigError, match="grid.fit: .* does not exist"):
        sweep_mod.plan(sweep_mod.load_sweep(experiment(tmp_path, tmp_path / "nowhere")), estimate=False)
