"""Schedule-aware loss curves (``analysis.curves``, ``scaling fit-curves``): the LR-annealing law
fitted on a trunk and one fork predicts the other forks' final losses.

Trajectories come from a known law with 0.3% noise on the real schedules the trainer applies
(:func:`scaling.optim.learning_rate`), so the prediction error is checkable against the truth.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from analysis.curves import CurveLaw, areas, fit_curve, fit_sweep_curves
from scaling.config import Cell, ConfigError, ModelConfig, OptimConfig
from scaling.optim import learning_rate
from scaling.rundir import RunDir

TRUE = CurveLaw(L0=1.5, A=2.0, alpha=0.5, C=6e-5, peak=3e-3)
MODEL = ModelConfig(vocab_size=64, seq_len=16, d_model=16, n_layers=1, n_heads=2, kv_size=8, ffw_size=32)


def lrs(optim: OptimConfig, steps: int) -> np.ndarray:
    return np.asarray(learning_rate(optim, steps, np.arange(1, steps + 1)), dtype=np.float64)


def trajectory(lr, rng, every=25):
    steps = np.arange(every, len(lr) + 1, every)
    return steps, TRUE.predict_curve(lr, steps) * np.exp(0.003 * rng.standard_normal(len(steps)))


def test_areas():
    s1, s2 = areas(np.array([1.0, 1.0, 0.5, 0.5, 0.5]), peak=1.0, lam=0.5)
    assert s1.tolist() == [1.0, 2.0, 2.5, 3.0, 3.5]
    assert s2.tolist() == pytest.approx([0, 0, 0.5, 0.75, 0.875])  # a drop keeps paying off, decaying
    s1, s2 = areas(np.linspace(0.1, 1.0, 10), peak=1.0)
    assert (s2 == 0).all()  # warmup is not annealing


def test_a_trunk_and_one_fork_predict_the_other_forks():
    rng = np.random.default_rng(0)
    wsd = OptimConfig(peak_lr=3e-3, warmup_steps=20, schedule="wsd", decay_frac=0.2)
    trunk = lrs(dataclasses.replace(wsd, schedule="constant"), 4000)
    fork = lrs(wsd, 1000)
    law = fit_curve([(trunk, *trajectory(trunk, rng)), (fork, *trajectory(fork, rng))])
    assert law.alpha == pytest.approx(0.5, abs=0.05) and law.rmse < 0.005
    for T in (2000, 3000, 4000):
        lr = lrs(wsd, T)
        assert abs(law.predict_final(lr) / TRUE.predict_final(lr) - 1) < 0.005
    # a schedule it never saw: cosine over 3000 steps
    cos = lrs(dataclasses.replace(wsd, schedule="cosine"), 3000)
    assert abs(law.predict_final(cos) / TRUE.predict_final(cos) - 1) < 0.01


def _run(out, name, optim, steps, rng, group):
    cell = Cell(model=MODEL, tokens=steps * 4 * 16, batch_size=4, optim=optim, name=name, group=group)
    rd = RunDir(out / "runs" / cell.run_id)
    rd.write_cell(cell)
    lr = lrs(optim, steps)
    s, y = trajectory(lr, rng)
    rd.write_metrics([{"step": int(a), "train_loss": float(b), "lr": float(lr[a - 1])} for a, b in zip(s, y)])
    rd.finish({"run_id": cell.run_id, "state": "done", "steps": steps})
    return cell, TRUE.predict_final(lr)


def test_fit_curves_on_a_sweep_directory(tmp_path, capsys):
    from scaling import cli

    rng = np.random.default_rng(1)
    wsd = OptimConfig(peak_lr=3e-3, warmup_steps=20, schedule="wsd", decay_frac=0.2)
    _run(tmp_path, "trunk", dataclasses.replace(wsd, schedule="constant"), 4000, rng, "wsd_trunk")
    truth = {}
    for T in (1000, 2000, 3000, 4000):
        cell, final = _run(tmp_path, f"fork{T}", wsd, T, rng, "wsd_fork")
        truth[cell.run_id] = final
    rows = fit_sweep_curves(tmp_path)
    assert len(rows) == 3 and all(r["loss"] == "train_loss" and len(r["fitted_on"]) == 2 for r in rows)
    for r in rows:  # measured = the noisy last logged loss; the prediction is within noise of it and of the truth
        assert abs(r["predicted"] / truth[r["run_id"]] - 1) < 0.005
        assert abs(r["rel_error"]) < 0.015
    assert cli.main(["fit-curves", str(tmp_path), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["n_predicted"] == 3 and out["summary"]["median_abs_rel_error"] < 0.015


def test_directories_without_trajectories_are_refused(tmp_path, capsys):
    from scaling import cli

    (tmp_path / "runs" / "x").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no finished run directory with a trajectory"):
        fit_sweep_curves(tmp_path)
    assert cli.main(["fit-curves", str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err
