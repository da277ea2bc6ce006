"""The planner: grids, run identity, FLOP accounting per cell, warnings, malformed experiments."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from scaling import accounting
from scaling.config import ConfigError, DataConfig, ModelConfig, OptimConfig
from scaling.sweep import (Allocation, IsoFLOP, NxD, Plan, Prior, Recipe, Sweep, load_sweep, plan)

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
RECIPE = Recipe(data=DataConfig(task="pystdlib", vocab="sp1024"), seq_len=128, batch_size=16,
                optim=OptimConfig(peak_lr=3e-3, warmup_steps=50))


def test_quickstart_plan_is_an_isoflop_grid_with_exact_accounting():
    sw = load_sweep(EXPERIMENTS / "quickstart.py")
    p = plan(sw, estimate=False)
    budgets = sorted({r["budget"] for r in p.rows})
    assert len(budgets) >= 3
    tpb = sw.recipe.batch_size * sw.recipe.seq_len
    for C in budgets:
        rows = [r for r in p.rows if r["budget"] == C]
        assert len(rows) >= 5
        ns = sorted(r["n_non_embedding"] for r in rows)
        assert len(set(ns)) == len(ns), "sizes within a budget are distinct"
    for cell, r in zip(p.cells, p.rows):
        assert cell.run_id == r["run_id"] and r["tokens"] % tpb == 0 and r["tokens"] == cell.tokens
        fpt = accounting.flops_per_token(cell.model, sw.recipe.flops_convention)
        assert r["flops_achieved"] == pytest.approx(r["tokens"] * fpt)
        # whole batches: achieved within half a batch of the budget
        assert abs(r["flops_achieved"] - r["budget"]) <= 0.5 * tpb * fpt + 1
        counts = accounting.count_params(cell.model)
        assert (r["n_total"], r["n_non_embedding"], r["n_embedding"]) == (counts.total, counts.non_embedding,
                                                                        counts.embedding)
        for conv in accounting.CONVENTIONS:
            assert r[f"flops_{conv}"] == pytest.approx(r["tokens"] * accounting.flops_per_token(cell.model, conv))
        assert cell.budget == r["budget"] and cell.group == "isoflop" and cell.steps >= 1
    assert len({c.run_id for c in p.cells}) == len(p.cells)


def test_isoflop_sizes_log_spaced_and_centred_on_prior():
    prior = Prior(tokens_per_param=20.0)
    sw = Sweep(name="c", recipe=RECIPE, grid=IsoFLOP(budgets=(1e13,), n_sizes=7, span=4.0, prior=prior),
               n_basis="non_embedding")
    p = plan(sw, estimate=False)
    targets = [r["n_target"] for r in p.rows]
    assert len(targets) == 7
    ratios = [b / a for a, b in zip(targets, targets[1:])]
    assert all(r == pytest.approx(4.0 ** (1 / 3)) for r in ratios)
    assert math.sqrt(targets[0] * targets[-1]) == pytest.approx(prior.n_opt(1e13))
    assert prior.n_opt(1e13) == pytest.approx(math.sqrt(1e13 / 120))
    ns = [r["n_non_embedding"] for r in p.rows]
    assert ns == sorted(ns) and ns[0] < prior.n_opt(1e13) < ns[-1]
    ch = Prior.chinchilla()
    assert ch.a == pytest.approx(0.28 / 0.62)


def test_allocation_pairs_chinchilla_vs_kaplan():
    sw = load_sweep(EXPERIMENTS / "chinchilla_vs_gopher.py")
    p = plan(sw, estimate=False)
    by = {}
    for r in p.rows:
        by.setdefault(r["budget"], {})[r["group"]] = r
    assert len(by) >= 3
    for C, pair in by.items():
        assert set(pair) == {"chinchilla_rule", "kaplan_rule"}
        # above the anchor, Kaplan's steeper rule picks a bigger model trained on fewer tokens
        assert pair["kaplan_rule"]["n_total"] > pair["chinchilla_rule"]["n_total"]
        assert pair["kaplan_rule"]["tokens"] < pair["chinchilla_rule"]["tokens"]
        for r in pair.values():
            assert abs(r["flops_achieved"] / C - 1) < 0.05


def test_nxd_grid_horizons_lr_sweep_and_lr_rule_hook():
    rule = lambda cfg, counts: 1e-3 * (1e5 / counts.non_embedding) ** 0.5  # noqa: E731
    sw = Sweep(name="n", recipe=dataclasses.replace(RECIPE, lr_rule=rule, warmup_frac=0.1),
               grid=NxD(sizes=(3e4, 1e5), tokens_per_param=(10, 40)), n_basis="non_embedding")
    p = plan(sw, estimate=False)
    assert len(p.cells) == 4 and {c.group for c in p.cells} == {"nxd"}
    for c, r in zip(p.cells, p.rows):
        assert c.optim.peak_lr == pytest.approx(rule(c.model, accounting.count_params(c.model)))
        assert c.optim.warmup_steps == min(50, round(0.1 * c.steps))
        assert r["budget"] is None and r["flops_planned"] == r["flops_achieved"]
    lr = load_sweep(EXPERIMENTS / "lr_sweep.py")
    pl = plan(lr, estimate=False)
    lrs = {c.optim.peak_lr for c in pl.cells}
    assert len(lrs) == 5 and len(pl.cells) == 15 and {c.group for c in pl.cells} == {"lr_sweep"}


def test_every_shipped_experiment_plans():
    for f in sorted(EXPERIMENTS.glob("*.py")):
        p = plan(load_sweep(f), estimate=False)
        assert isinstance(p, Plan) and p.cells, f
    big = plan(load_sweep(EXPERIMENTS / "chinchilla_isoflop.py"), estimate=False)
    assert sorted({r["budget"] for r in big.rows}) == [6e18, 1e19, 3e19, 6e19, 1e20, 3e20, 6e20, 1e21, 3e21]
    assert all(c.data.task == "c4_en" for c in big.cells)


def test_run_identity_is_stable_and_result_sensitive():
    a = plan(load_sweep(EXPERIMENTS / "quickstart.py"), estimate=False)
    b = plan(load_sweep(EXPERIMENTS / "quickstart.py"), estimate=False)
    assert [c.run_id for c in a.cells] == [c.run_id for c in b.cells]
    sw = load_sweep(EXPERIMENTS / "quickstart.py")
    c = plan(dataclasses.replace(sw, recipe=dataclasses.replace(sw.recipe, seed=1)), estimate=False)
    assert not {x.run_id for x in a.cells} & {x.run_id for x in c.cells}


def test_warnings_for_unbracketable_and_moved_sizes():
    sw = Sweep(name="w", recipe=RECIPE, grid=IsoFLOP(budgets=(1e13,), n_sizes=2, span=1.5), n_basis="non_embedding")
    p = plan(sw, estimate=False)
    assert any("a parabola needs >= 3" in w for w in p.warnings)
    # a budget too small for the bigger sizes: those are dropped with a warning, the rest kept
    sw = Sweep(name="w", recipe=RECIPE, grid=IsoFLOP(budgets=(2e10,), n_sizes=3, span=10.0, centres=(1e7,)),
               n_basis="non_embedding")
    p = plan(sw, estimate=False)
    assert any("dropped size" in w for w in p.warnings)
    assert any("cannot bracket the predicted optimum" in w for w in p.warnings)
    assert len(p.cells) == 1
    fixed = lambda n, V, L: ModelConfig(vocab_size=V, seq_len=L, d_model=32, n_layers=2, n_heads=2, kv_size=16,  # noqa: E731
                                        ffw_size=128)
    sw = Sweep(name="w", recipe=RECIPE, family=fixed, grid=NxD(sizes=(1e4, 1e6), tokens=(1e6,)))
    p = plan(sw, estimate=False)
    assert len(p.cells) == 1 and any("duplicate" in w for w in p.warnings)
    assert any("moved N" in w for w in p.warnings)


@pytest.mark.parametrize("grid, match", [
    (IsoFLOP(budgets=(-1e12,)), "grid.budgets: -1e\\+12 is not a positive FLOP budget"),
    (IsoFLOP(budgets=()), "grid.budgets: empty"),
    (NxD(sizes=()), "grid.sizes: empty"),
    (NxD(sizes=("chinchilla-no-such-member",), tokens=(1e6,)), "grid size 'chinchilla-no-such-member'"),
    (NxD(sizes=(1e5,), tokens=(100.0,)), "below one batch"),
    (IsoFLOP(budgets=(1e3,), n_sizes=5), "leaves no size with at least one batch"),
    (Allocation(budgets=(0.0,)), "not a positive FLOP budget"),
])
def test_malformed_experiments_raise_one_clear_error(grid, match):
    sw = Sweep(name="bad", recipe=RECIPE, grid=grid, n_basis="non_embedding")
    with pytest.raises(ConfigError, match=match) as e:
        plan(sw, estimate=False)
    assert "\n" not in str(e.value)


def test_load_sweep_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_sweep(tmp_path / "missing.py")
    (tmp_path / "x.py").write_text("X = 1\n")
    with pytest.raises(ConfigError, match="define SWEEP"):
        load_sweep(tmp_path / "x.py")
    (tmp_path / "y.py").write_text("from scaling.sweep import *\nfrom scaling.config import *\n"
                                   "def sweep():\n    return Sweep(name='y', recipe=Recipe(), grid=NxD(sizes=(3e4,), tokens=(1e6,)))\n")
    assert load_sweep(tmp_path / "y.py").name == "y"


def test_plan_command_formats_and_no_jax(tmp_path):
    code = ("import sys, argparse\n"
            "from scaling.launch import commands\n"
            "ap = argparse.ArgumentParser(); sub = ap.add_subparsers(); commands.add_commands(sub)\n"
            "a = ap.parse_args(sys.argv[1:]); rc = a.func(a)\n"
            "assert 'jax' not in sys.modules and 'tensorflow' not in sys.modules, 'planning imported jax/tf'\n"
            "sys.exit(rc)\n")
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "SCALING_PEAK_FLOPS": "4e11"}
    r = subprocess.run([sys.executable, "-c", code, "plan", str(EXPERIMENTS / "quickstart.py"), "--format", "json"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    row = out["cells"][0]
    for k in ("run_id", "n_total", "n_non_embedding", "tokens", "flops_planned", "flops_achieved", "budget",
              "steps", "batch_size", "peak_lr", "warmup_steps", "est_wall_s", "flops_6N", "flops_kaplan"):
        assert k in row, k
    assert row["est_wall_s"] == pytest.approx(row["flops_6N"] / (4e11 * 0.25))
    r = subprocess.run([sys.executable, "-c", code, "plan", str(EXPERIMENTS / "quickstart.py"), "--format", "csv"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and r.stdout.splitlines()[0].startswith("run_id,")
    assert len(r.stdout.strip().splitlines()) == len(out["cells"]) + 1
    r = subprocess.run([sys.executable, "-c", code, "plan", str(EXPERIMENTS / "quickstart.py")],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and "cells" in r.stdout and "estimated" in r.stdout


def test_prior_from_smaller_budgets(tmp_path):
    # synthetic IsoFLOP parabolas whose minima follow N_opt = 2 (C/6)^0.5 exactly
    rows = ["run_id,state,budget,n_non_embedding,eval_loss"]
    for i, C in enumerate((1e11, 1e12, 1e13)):
        n_star = 2.0 * (C / 6) ** 0.5
        for k in (-2, -1, 0, 1, 2):
            n = n_star * 2.0 ** k
            rows.append(f"r{i}{k},done,{C},{n},{3 + 0.1 * (math.log(n / n_star)) ** 2}")
    rows.append("bad,diverged,1e11,1,99")
    (tmp_path / "results.csv").write_text("\n".join(rows) + "\n")
    pr = Prior.from_results(tmp_path / "results.csv")
    assert pr.a == pytest.approx(0.5, abs=1e-6) and pr.G == pytest.approx(2.0, rel=1e-5)
    assert pr.n_opt(1e15) == pytest.approx(2.0 * (1e15 / 6) ** 0.5, rel=1e-5)
    with pytest.raises(ConfigError, match="fewer than 2 budgets"):
        Prior.from_results(tmp_path / "results.csv", max_budget=1e11)


def test_lr_sweep_fit_recovers_a_known_rule_and_feeds_the_quickstart(tmp_path, monkeypatch):
    """``experiments/lr_sweep.fit_lr_rule`` on a table whose losses are parabolas in log LR around
    a known ``LR*(N) = 8e-3 (N/1e5)^-0.7``: it must recover that rule; and the quickstart's
    ``peak_lr`` must follow the rule it documents (clipped)."""
    import pandas as pd

    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    import lr_sweep
    import quickstart

    rows = []
    for n in (2e4, 6e4, 1.8e5):
        best = 8e-3 * (n / 1e5) ** -0.7
        for lr in lr_sweep.LRS:
            rows.append({"state": "done", "n_total": n, "peak_lr": lr,
                         "eval_loss": 2.0 + 0.1 * math.log(lr / best) ** 2})
    rows.append({"state": "diverged", "n_total": 2e4, "peak_lr": 1.0, "eval_loss": 0.1})  # ignored
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    fit = lr_sweep.fit_lr_rule(str(tmp_path / "results.csv"))
    assert fit["lr_exp"] == pytest.approx(0.7, abs=1e-6)
    assert fit["lr_at_1e5"] == pytest.approx(8e-3, rel=1e-6)
    counts = argparse.Namespace(total=1e5)
    assert quickstart.peak_lr(None, counts) == pytest.approx(quickstart.LR_REF)
    counts.total = 1e3  # tiny: clipped at the top of the swept range
    assert quickstart.peak_lr(None, counts) == quickstart.LR_MAX


def test_wsd_lr_sweep_fit_recovers_a_known_factor_and_feeds_wsd_quickstart(tmp_path, monkeypatch):
    """``experiments/wsd_lr_sweep.fit_lr_factor`` on forks whose losses are parabolas in log LR
    around 0.6 x the cosine rule (every horizon, with its own offset; trunk rows ignored): it
    must recover 0.6; and ``wsd_quickstart`` must plan its trunks at the factor it documents."""
    import pandas as pd

    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    import quickstart
    import wsd_lr_sweep

    rows = []
    for n in wsd_lr_sweep.SIZES:
        best = 0.6 * quickstart.LR_REF * (n / quickstart.N_REF) ** -quickstart.LR_EXP
        for t in wsd_lr_sweep.HORIZONS:
            for lr in wsd_lr_sweep.LRS:
                rows.append({"state": "done", "group": "wsd_fork", "n_total": n, "tokens": t, "peak_lr": lr,
                             "eval_loss": 2.0 - 0.1 * math.log(t) + 0.05 * math.log(lr / best) ** 2})
        rows.append({"state": "done", "group": "wsd_trunk", "n_total": n, "tokens": 1e9, "peak_lr": 1.0,
                     "eval_loss": 0.1})
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    fit = wsd_lr_sweep.fit_lr_factor(str(tmp_path / "results.csv"))
    assert fit["factor"] == pytest.approx(0.6, rel=1e-6)
    for (n, t), (lr, _) in fit["per_horizon"].items():
        assert lr == pytest.approx(fit["best"][n], rel=1e-6)
    import wsd_quickstart

    p = plan(load_sweep(EXPERIMENTS / "wsd_quickstart.py"), estimate=False)
    for c in p.cells:
        assert c.optim.peak_lr == pytest.approx(wsd_quickstart.WSD_LR_FACTOR
                                                * quickstart.peak_lr(c.model, accounting.count_params(c.model)))


def test_cosine_short_lr_reads_the_best_cosine_run_and_the_fork_at_its_point(tmp_path, monkeypatch):
    """``experiments/cosine_short_lr.best_cosine_vs_fork``: per size the lowest cosine loss over
    the LRs, beside the WSD fork at the same (N, tokens) (not a trunk, not another horizon); and
    the sweep plans one cosine cell per (size, LR) at wsd_quickstart's shortest horizon."""
    import pandas as pd

    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    import cosine_short_lr as csl
    import wsd_quickstart

    assert csl.TOKENS == min(wsd_quickstart.HORIZONS) and set(csl.SIZES) <= set(wsd_quickstart.SIZES)
    p = plan(load_sweep(EXPERIMENTS / "cosine_short_lr.py"), estimate=False)
    assert len(p.cells) == len(csl.SIZES) * len(csl.LRS)
    assert {c.optim.schedule for c in p.cells} == {"cosine"} and {c.optim.peak_lr for c in p.cells} == set(csl.LRS)
    cos = [{"state": "done", "n_total": n, "tokens": 798720, "steps": 390, "peak_lr": lr,
            "eval_loss": 2.0 + (math.log(lr) - math.log(1e-2)) ** 2 + (0 if n == 10 else 0.5)}
           for n in (10, 20) for lr in (4e-3, 1e-2, 2e-2)]
    cos.append({"state": "failed", "n_total": 10, "tokens": 798720, "steps": 390, "peak_lr": 8e-3, "eval_loss": 0.1})
    forks = [{"state": "done", "group": g, "n_total": n, "tokens": t, "peak_lr": 5e-3, "eval_loss": v}
             for g, n, t, v in (("wsd_fork", 10, 798720, 1.9), ("wsd_fork", 10, 1599488, 1.5),
                                ("wsd_trunk", 10, 798720, 1.0), ("wsd_fork", 20, 798720, 2.6))]
    pd.DataFrame(cos).to_csv(tmp_path / "cos.csv", index=False)
    pd.DataFrame(forks).to_csv(tmp_path / "forks.csv", index=False)
    out = {r["n_total"]: r for r in csl.best_cosine_vs_fork(str(tmp_path / "cos.csv"), str(tmp_path / "forks.csv"))}
    assert out[10]["best_lr"] == 1e-2 and out[10]["best_loss"] == pytest.approx(2.0) and out[10]["fork_loss"] == 1.9
    assert out[20]["best_loss"] == pytest.approx(2.5) and out[20]["fork_loss"] == 2.6 and len(out[10]["lrs"]) == 3


def test_synthetic_isoflop_runs_a_source_with_a_known_entropy_rate():
    sw = load_sweep(EXPERIMENTS / "synthetic_isoflop.py")
    from scaling.data.synthetic_markov import MarkovSpec, entropy_rate

    spec = MarkovSpec.from_options(sw.recipe.data.options)
    assert sw.recipe.data.task == "synthetic_markov" and spec.symbols == 32
    assert entropy_rate(spec) == pytest.approx(2.2333, abs=1e-4)  # what the README quotes
    p = plan(sw, estimate=False)
    assert {c.model.vocab_size for c in p.cells} == {spec.vocab_size}


def test_every_cell_field_comes_from_the_recipe_or_the_planner():
    """A sweep can set every Cell field: the recipe names it (copied by name) or the planner decides it."""
    from scaling.config import Cell
    from scaling.sweep import PLANNER_CELL_FIELDS, RECIPE_CELL_FIELDS

    fields = {f.name for f in dataclasses.fields(Cell)}
    assert fields == set(RECIPE_CELL_FIELDS) | set(PLANNER_CELL_FIELDS)
    r = dataclasses.replace(RECIPE, eval_batch_size=48, keep_every=7)
    sw = Sweep(name="t", recipe=r, grid=NxD(sizes=(3e4,), tokens=(2e5,)))
    c = plan(sw, estimate=False).cells[0]
    assert (c.eval_batch_size, c.keep_every, c.log_every) == (48, 7, r.log_every)
