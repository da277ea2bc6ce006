"""Tests of analysis/: Approaches 1-3, uncertainty, presets, report, CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from analysis import approaches as ap
from analysis import published as pub
from analysis import uncertainty as unc
from analysis.data import bin_budgets, prepare
from analysis.report import fit_all, write_report

EPOCH = dict(n_col="Model Size", c_col="Training FLOP", loss_col="loss")


def epoch_240() -> pd.DataFrame:
    df = pub.load("epoch_chinchilla")
    assert len(df) == 245
    return df.drop(df["loss"].nlargest(5).index).reset_index(drop=True)


def synthetic_isoflop(law=None, budgets=(1e18, 3e18, 1e19, 3e19, 1e20, 3e20), k=7, span=1.5,
                      noise=0.0, seed=0, shift=0.0) -> pd.DataFrame:
    """IsoFLOP runs from a known law: k sizes per budget spread around the true N_opt."""
    law = law or pub.PRESETS["chinchilla_rounded"].law
    rng = np.random.default_rng(seed)
    rows = []
    for C in budgets:
        for x in np.linspace(-span, span, k) + shift:
            N = float(law.n_opt(C)) * np.exp(x)
            D = C / (6 * N)
            L = float(law.loss(N, D)) * np.exp(noise * rng.standard_normal())
            rows.append({"n_total": N, "tokens": D, "eval_loss": L, "budget": C})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- acceptance

@pytest.fixture(scope="module")
def epoch_fit():
    return ap.fit_approach3(epoch_240(), **EPOCH, starts="full")


def test_epoch_acceptance_full_grid(epoch_fit):
    r = epoch_fit
    assert r.n_points == 240
    assert abs(r.E - 1.8172) < 0.002
    assert abs(r.alpha - 0.3473) < 0.002
    assert abs(r.beta - 0.3672) < 0.002
    assert abs(r.objective / 1.01827e-3 - 1) < 0.01
    assert abs(r.a - 0.514) < 0.002
    c = r.convergence
    assert c.n_starts == 4500 and c.n_at_best >= 10 and c.grad_norm < 1e-6
    # the reported objective is the SUM of Huber losses at the returned parameters
    x = np.log([r.A, r.B, r.E]).tolist() + [r.alpha, r.beta]
    df = epoch_240()
    N = df["Model Size"].to_numpy(); D = df["Training FLOP"].to_numpy() / (6 * N)
    f = ap.huber_objective(x, np.log(N), np.log(D), np.log(df["loss"].to_numpy()))
    assert f[0] == pytest.approx(r.objective, rel=1e-9)


def test_newton_escapes_the_default_tolerance_stall():
    """From Hoffmann's unrounded values scipy's defaults stall at ~1.1633e-3; ours does not."""
    df = epoch_240()
    N = df["Model Size"].to_numpy(); D = df["Training FLOP"].to_numpy() / (6 * N)
    lN, lD, lL = np.log(N), np.log(D), np.log(df["loss"].to_numpy())
    u = pub.CHINCHILLA_UNROUNDED_LOGS
    x0 = np.array([[u["logA"], u["logB"], u["logE"], u["alpha"], u["beta"]]])
    r = ap.fit_law(lN, lD, lL, starts=x0, polish=1)
    assert r.objective < 1.0184e-3


# ----------------------------------------------------------------------------- presets

def test_chinchilla_rounded_frontier_constants():
    p = pub.PRESETS["chinchilla_rounded"].law
    assert p.G == pytest.approx(1.34471, abs=2e-5)
    assert p.a == pytest.approx(0.451613, abs=1e-6)
    u = pub.PRESETS["chinchilla_unrounded"].law
    assert u.a == pytest.approx(0.456526, abs=1e-6)
    assert u.E == pytest.approx(np.exp(0.5267228)) and u.A != p.A   # never replaced by rounded
    assert pub.CHINCHILLA_UNROUNDED_LOGS["logA"] == 6.0073404


def test_chinchilla_vs_gopher_rounded():
    out = pub.chinchilla_vs_gopher("chinchilla_rounded")
    assert out["C"] == 5.76e23 and out["G"] == pytest.approx(1.34471, abs=2e-5)
    # Chinchilla (70B, 1.4T) is predicted better than Gopher (280B, 300B) at equal compute
    assert out["loss_Chinchilla"] < out["loss_Gopher"]
    assert 3e10 < out["N_opt"] < 1e11
    assert out["N_opt"] * out["D_opt"] * 6 == pytest.approx(5.76e23, rel=1e-9)
    assert set(pub.MODELS) == {"Gopher", "Chinchilla", "GPT-3", "MT-NLG"}
    assert len(pub.TABLE3) == 9 and len(pub.TABLE_A3) == 9
    t = pub.compare_table({"rounded": "chinchilla_rounded"})
    assert {"table3_flops", "approach3_flops", "rounded_flops"} <= set(t.columns)


# ----------------------------------------------------------------------------- approaches 1, 2, 3

def test_approach2_recovers_known_exponent_and_approach3_the_law():
    df = synthetic_isoflop()
    cols = dict(n_col="n_total", d_col="tokens", loss_col="eval_loss", budget_col="budget")
    r2 = ap.fit_approach2(df, **cols)
    truth = pub.PRESETS["chinchilla_rounded"].law
    assert all(p.included for p in r2.budgets)
    assert r2.a == pytest.approx(truth.a, abs=0.02)
    assert r2.a + r2.b == pytest.approx(1.0, abs=1e-6)   # D = C/6N exactly
    r3 = ap.fit_approach3(df, **cols, starts="small")
    assert r3.alpha == pytest.approx(0.34, abs=1e-3) and r3.beta == pytest.approx(0.28, abs=1e-3)
    assert r3.E == pytest.approx(1.69, abs=1e-3)
    assert r3.objective < 1e-9
    r1 = ap.fit_approach1(df, **cols)
    assert 0.3 < r1.a < 0.7 and len(r1.envelope) >= 3


def test_approach2_excludes_non_interior_minimum_and_warns_off_centre():
    df = synthetic_isoflop(shift=0.0)
    # budget 1e18: shift its sizes far to the right -> loss increases monotonically in N
    m = df["budget"] == 1e18
    df.loc[m, "n_total"] *= np.exp(3.0)
    law = pub.PRESETS["chinchilla_rounded"].law
    df.loc[m, "tokens"] = 1e18 / (6 * df.loc[m, "n_total"])
    df.loc[m, "eval_loss"] = law.loss(df.loc[m, "n_total"], df.loc[m, "tokens"])
    cols = dict(n_col="n_total", d_col="tokens", loss_col="eval_loss", budget_col="budget")
    r = ap.fit_approach2(df, **cols)
    b = {p.budget: p for p in r.budgets}
    assert not b[1e18].included and "interior" in b[1e18].reason
    assert any("1e+18" in w and "excluded" in w for w in r.warnings)
    off = ap.fit_approach2(synthetic_isoflop(shift=1.0), **cols)
    assert any("off-centre" in w for w in off.warnings)
    assert all(p.included for p in off.budgets)


def test_approach2_min_points_and_too_few_budgets():
    df = synthetic_isoflop(budgets=(1e18, 1e19), k=3)
    cols = dict(n_col="n_total", d_col="tokens", loss_col="eval_loss", budget_col="budget")
    with pytest.raises(ValueError, match="budget"):
        ap.fit_approach2(df, **cols)      # 3 points < min_points=4 -> both excluded
    r = ap.fit_approach2(df, **cols, min_points=3)
    assert any("no residual degrees of freedom" in w for w in r.warnings)


# ----------------------------------------------------------------------------- bad input

def test_bad_input_errors_name_the_column():
    df = synthetic_isoflop()
    with pytest.raises(ValueError, match="params"):
        prepare(df, n_col="params", d_col="tokens", loss_col="eval_loss")
    bad = df.copy(); bad.loc[3, "tokens"] = -1.0
    with pytest.raises(ValueError, match="tokens"):
        ap.fit_approach3(bad, n_col="n_total", d_col="tokens", loss_col="eval_loss")
    nan = df.copy(); nan.loc[[1, 2], "eval_loss"] = np.nan
    warns: list[str] = []
    out = prepare(nan, n_col="n_total", d_col="tokens", loss_col="eval_loss", warnings=warns)
    assert len(out) == len(df) - 2 and "excluded 2 row(s)" in warns[0]
    with pytest.raises(ValueError, match="needs >= 6"):
        ap.fit_approach3(df.head(4), n_col="n_total", d_col="tokens", loss_col="eval_loss")
    with pytest.raises(ValueError, match="d_col"):
        prepare(df, n_col="n_total", loss_col="eval_loss")


def test_c_only_gives_d_and_budget_binning():
    df = pd.DataFrame({"N": [1e8, 2e8], "C": [6e18, 1.05e19], "L": [3.0, 2.9]})
    f = prepare(df, n_col="N", c_col="C", loss_col="L")
    assert f["D"].tolist() == pytest.approx([1e10, 8.75e9])
    b = bin_budgets([1e19, 1.1e19, 0.95e19, 1e20, 1.05e20])
    assert len(np.unique(b)) == 2
    # a results table whose budget column is partly empty keeps every run
    iso = synthetic_isoflop()
    iso.loc[iso["budget"] == 1e18, "budget"] = np.nan
    r = ap.fit_approach2(iso, n_col="n_total", d_col="tokens", loss_col="eval_loss",
                         budget_col="budget")
    assert len(r.budgets) == 6 and sum(p.n_points for p in r.budgets) == len(iso)


# ----------------------------------------------------------------------------- uncertainty

def test_bootstrap_seeded_intervals_and_narrow_warning():
    df = synthetic_isoflop(noise=0.01, seed=1)
    cols = dict(n_col="n_total", d_col="tokens", loss_col="eval_loss", budget_col="budget")
    fit3 = ap.fit_approach3(df, **cols, starts="small")
    b1 = unc.bootstrap(df, **cols, K=40, seed=3, fit3=fit3)
    b2 = unc.bootstrap(df, **cols, K=40, seed=3, fit3=fit3)
    assert b1.interval(3, "a") == b2.interval(3, "a")
    assert b1.interval(2, "a") == b2.interval(2, "a")
    for appr in (1, 2, 3):
        lo, hi = b1.interval(appr, "a")
        assert lo < hi
    lo, hi = b1.interval(3, "n_opt", 1e21)
    assert lo < float(fit3.params.n_opt(1e21)) < hi
    lo, hi = b1.interval(3, "loss_opt", 1e21)
    assert lo < hi
    s = b1.summary((1e21,))
    assert set(s) == {"approach1", "approach2", "approach3"}
    assert "tokens_per_param" in s["approach2"]["at_C"]["1e+21"]
    # a degenerate "bootstrap" whose samples never vary is flagged as implausibly narrow
    fake = unc.BootstrapResult(K=3, seed=0, n_points=len(df),
                               powerlaw={2: np.tile([[0.45, 0.55, 0.0, 0.0]], (3, 1))},
                               law=None, failures={}, point={2: 0.45},
                               asymptotic_se={2: 0.01}, errors={})
    assert any("zero width" in w for w in fake.narrow_warnings())
    fake2 = dataclasses_replace(fake, powerlaw={2: np.array([[0.45, .55, 0, 0], [0.4501, .55, 0, 0],
                                                             [0.4502, .55, 0, 0]])})
    assert any("implausibly narrow" in w for w in fake2.narrow_warnings())


def dataclasses_replace(obj, **kw):
    import dataclasses
    return dataclasses.replace(obj, **kw)


def test_identifiability_and_backtest():
    df = synthetic_isoflop(noise=0.005, seed=2)
    cols = dict(n_col="n_total", d_col="tokens", loss_col="eval_loss", budget_col="budget")
    fit3 = ap.fit_approach3(df, **cols, starts="small")
    d = unc.identifiability(df, **cols, fit3=fit3)
    assert d["n_budgets"] == 6 and d["span_log10_N"] > 2
    assert -1 <= d["corr_logN_logD"] <= 1
    corr = np.array(d["param_correlation"])
    assert corr.shape == (5, 5) and np.allclose(np.diag(corr), 1.0)
    assert d["condition_number"] > 1
    bt = unc.backtest(df, **cols)
    assert bt["held_out_budget"] == 3e20 and bt["n_test"] == 7
    assert bt["approach3"]["mean_abs_rel_error"] < 0.02
    assert abs(bt["approach2"]["n_opt_rel_error"]) < 0.2


def test_markdown_names_a_singular_design_instead_of_crashing():
    # a singular Gauss-Newton matrix has an infinite condition number, which fits.json stores as null
    from analysis.report_md import _identifiability

    d = {"n_points": 8, "n_budgets": 2, "span_log10_N": 0.4, "span_log10_D": 0.9, "corr_logN_logD": 0.0,
         "params": ["a", "b"], "param_correlation": [[1.0, 0.2], [0.2, 1.0]], "condition_number": None}
    text = "\n".join(_identifiability({"identifiability": d}))
    assert "condition number infinite" in text
    d["condition_number"] = 12.5
    assert "condition number 12.5:" in "\n".join(_identifiability({"identifiability": d}))


# ----------------------------------------------------------------------------- report + CLI

def test_write_report_small_sweep(tmp_path):
    df = synthetic_isoflop(budgets=(1e17, 1e18, 1e19), k=5, noise=0.003, seed=4)
    df.loc[0, "eval_loss"] = np.nan        # a diverged run
    s = write_report(df, tmp_path, n_col="n_total", d_col="tokens", loss_col="eval_loss",
                     budget_col="budget", bootstrap=10)
    assert (tmp_path / "fits.json").exists() and (tmp_path / "fits.md").exists()
    js = json.loads((tmp_path / "fits.json").read_text())
    assert {"E", "A", "B", "alpha", "beta", "objective", "a", "b", "G"} <= set(js["approach3"])
    assert "ci" in js["approach2"] and "a" in js["approach2"]["ci"]
    assert any("excluded 1 row" in w for w in js["warnings"])
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["allocation.png", "contour.png", "isoflop.png", "residuals.png", "rollouts.png"]
    assert len(list(tmp_path.glob("*.svg"))) == 5
    assert "Approach" not in s.get("bootstrap_error", "")
    # rollouts: the last level is the backtest (fit all but the largest budget, predict its 5 runs);
    # the smallest budget alone cannot be fitted and is named
    last = js["rollouts"]["levels"][-1]
    assert last["level"] == pytest.approx(1e18) and last["n_predicted"] == 5 and last["n_fit"] == 9
    assert any("skipped" in n for n in js["rollouts"]["calibration"]["notes"])
    assert abs(last["mean_abs_rel_error"]) < 0.05
    assert "## Rollouts" in (tmp_path / "fits.md").read_text()


def test_write_report_degenerate_records_errors(tmp_path):
    df = synthetic_isoflop(budgets=(1e18,), k=7)          # one budget only
    s = write_report(df, tmp_path, n_col="n_total", d_col="tokens", loss_col="eval_loss",
                     budget_col="budget", bootstrap=5)
    # one budget identifies no power law in C, and puts (log N, log D) on one line: every approach
    # is refused with its reason rather than fitted to numbers the data say nothing about
    assert "needs runs at >= 2 budgets" in s["approach2"]["error"]
    assert "one compute budget" in s["approach1"]["error"]
    assert "lie on one line" in s["approach3"]["error"]
    assert "needs >= 3 budgets" in s["backtest"]["error"]
    assert any("approach2 failed" in w for w in s["warnings"])
    md = (tmp_path / "fits.md").read_text()
    assert "error: " in md and "lie on one line" in md
    assert not (tmp_path / "isoflop.png").exists()
    tiny = synthetic_isoflop(budgets=(1e18,), k=3)        # too small for every approach
    s = write_report(tiny, tmp_path / "tiny", n_col="n_total", d_col="tokens",
                     loss_col="eval_loss", budget_col="budget")
    assert all("error" in s[f"approach{i}"] for i in (1, 2, 3))


def run_cli(argv):
    """Run `scaling fit ...` in-process through analysis.cli's parser; returns the exit code."""
    from analysis.cli import add_commands
    p = argparse.ArgumentParser(prog="scaling")
    add_commands(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    return args.func(args)


def test_cli_fit_json_and_c_col(tmp_path, capsys):
    df = synthetic_isoflop(noise=0.003, seed=5)
    sweep = tmp_path / "sweep"; sweep.mkdir()
    df.to_csv(sweep / "results.csv", index=False)
    rc = run_cli(["fit", str(sweep), "--format", "json", "--bootstrap", "8",
               "--plots", str(tmp_path / "plots")])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert {"E", "A", "B", "alpha", "beta", "objective", "a", "b", "G"} <= set(out["approach3"])
    assert {"a", "b"} <= set(out["approach2"]) and {"a", "b"} <= set(out["approach1"])
    assert "ci" in out["approach3"] and len(out["approach3"]["ci"]["a"]) == 2
    assert (tmp_path / "plots" / "contour.svg").exists()
    # only a FLOPs column: D = C / (6 N)
    df2 = df.assign(flops=6 * df["n_total"] * df["tokens"]).drop(columns=["tokens"])
    df2.to_csv(tmp_path / "t.csv", index=False)
    rc = run_cli(["fit", str(tmp_path / "t.csv"), "--c-col", "flops", "--approach", "2",
               "--format", "json"])
    out2 = json.loads(capsys.readouterr().out)
    assert rc == 0 and out2["approach2"]["a"] == pytest.approx(out["approach2"]["a"], rel=1e-6)
    assert "approach3" not in out2
    rc = run_cli(["fit", str(tmp_path / "t.csv"), "--loss-col", "nope", "--c-col", "flops"])
    assert rc == 2 and "nope" in capsys.readouterr().err


def test_report_lists_the_runs_it_excluded_for_their_state(tmp_path):
    """A sweep's report fits the done runs and names every diverged one it left out."""
    df = synthetic_isoflop(budgets=(1e18, 3e18, 1e19), k=5)
    df["run_id"] = [f"r{i}" for i in range(len(df))]
    df["state"] = "done"
    df.loc[[2, 7], "state"] = "diverged"
    df.loc[[2, 7], "eval_loss"] = np.nan
    s = write_report(df, tmp_path, n_col="n_total", d_col="tokens", loss_col="eval_loss",
                     budget_col="budget", bootstrap=0, approaches=(2,))
    assert [e["run_id"] for e in s["excluded_runs"]] == ["r2", "r7"]
    assert {e["state"] for e in s["excluded_runs"]} == {"diverged"}
    assert s["data"]["n_points"] == len(df) - 2
    assert json.loads((tmp_path / "fits.json").read_text())["excluded_runs"][1]["run_id"] == "r7"
    md = (tmp_path / "fits.md").read_text()
    assert "## Runs excluded for their state" in md and "| r2 | diverged |" in md
    with pytest.raises(ValueError, match="every run was excluded for its state"):
        write_report(df.assign(state="diverged"), tmp_path / "all", n_col="n_total", d_col="tokens",
                     loss_col="eval_loss", budget_col="budget", bootstrap=0)
