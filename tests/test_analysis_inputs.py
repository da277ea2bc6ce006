"""Tests of analysis inputs (any two of N, D, C), shipped data, prediction intervals and the report's form."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from analysis import approaches as ap
from analysis import published as pub
from analysis import uncertainty as unc
from analysis.data import near_optimum, prepare
from analysis.errors import ConfigError
from analysis.report import write_report

from test_analysis import run_cli, synthetic_isoflop

COLS = dict(n_col="n_total", d_col="tokens", loss_col="eval_loss", budget_col="budget")


def test_any_two_of_n_d_c():
    df = synthetic_isoflop(noise=0.002, seed=3)
    df["flops"] = 6 * df["n_total"] * df["tokens"]
    full = prepare(df, **COLS)
    no_n = prepare(df, d_col="tokens", c_col="flops", loss_col="eval_loss")
    assert no_n["N"].to_numpy() == pytest.approx(full["N"].to_numpy(), rel=1e-12)     # N = C / (6 D)
    no_d = prepare(df, n_col="n_total", c_col="flops", loss_col="eval_loss")
    assert no_d["D"].to_numpy() == pytest.approx(full["D"].to_numpy(), rel=1e-12)
    # another convention: C = 8 N D
    df8 = df.assign(flops=8 * df["n_total"] * df["tokens"])
    assert prepare(df8, d_col="tokens", c_col="flops", loss_col="eval_loss", convention="8N")["N"].to_numpy() == \
        pytest.approx(full["N"].to_numpy(), rel=1e-12)
    # a FLOPs-per-token column: C = F D, and N = F / 6 when no N column is given
    dff = df.assign(fpt=6 * df["n_total"] * 1.1)
    f = prepare(dff, d_col="tokens", flops_per_token_col="fpt", loss_col="eval_loss")
    assert f["C"].to_numpy() == pytest.approx(6.6 * full["N"].to_numpy() * full["D"].to_numpy())
    with pytest.raises(ConfigError, match="columns found: .*n_total"):
        prepare(df, d_col="tokens", loss_col="eval_loss")
    with pytest.raises(ConfigError, match="convention"):
        prepare(df, d_col="tokens", c_col="flops", loss_col="eval_loss", convention="7X")
    with pytest.raises(ConfigError, match="not numeric"):
        prepare(df.assign(tokens="many"), **COLS)


def test_cli_fits_a_table_without_n_column(tmp_path, capsys):
    """The acceptance command: compute, tokens and loss only."""
    df = synthetic_isoflop(noise=0.002, seed=3)
    ref = ap.fit_approach2(df, **COLS)
    table = pd.DataFrame({"flops": df["budget"], "tokens": df["tokens"], "loss": df["eval_loss"]})
    table.to_csv(tmp_path / "table.csv", index=False)
    rc = run_cli(["fit", str(tmp_path / "table.csv"), "--approach", "2", "--d-col", "tokens", "--c-col", "flops",
               "--budget-col", "flops", "--loss-col", "loss", "--format", "json", "--bootstrap", "20"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["approach2"]["a"] == pytest.approx(ref.a, rel=1e-6)
    assert len(out["approach2"]["ci"]["a"]) == 2
    rc = run_cli(["fit", str(tmp_path / "table.csv"), "--loss-col", "loss"])      # no size columns at all
    err = capsys.readouterr().err
    assert rc == 2 and "columns found: flops, tokens, loss" in err
    rc = run_cli(["fit", str(tmp_path / "table.csv"), "--d-col", "tokens", "--c-col", "flops", "--loss-col", "loss",
               "--law", "kaplan", "--approach", "3", "--bootstrap", "0", "--format", "json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["approach3"]["law"] == "kaplan"
    user = ["--d-col", "tokens", "--c-col", "flops", "--loss-col", "loss", "--approach", "3", "--bootstrap", "0",
            "--format", "json"]
    rc = run_cli(["fit", str(tmp_path / "table.csv"), "--law", "test_laws:USER_LAW"] + user)
    assert rc == 0 and json.loads(capsys.readouterr().out)["approach3"]["law"] == "my_chinchilla"
    rc = run_cli(["fit", str(tmp_path / "table.csv"), "--law", "test_laws:NO_SUCH_LAW"] + user)
    assert rc == 2 and "test_laws:NO_SUCH_LAW" in capsys.readouterr().err


def test_shipped_reference_data_and_provenance():
    for name in pub.DATASETS:
        row = pub.provenance(name)
        path = pub.dataset_path(name)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row["sha256"]
        assert row["repo"] and row["commit"] and row["how"]
        assert len(pub.load(name)) > 10
    assert len(pub.load("epoch_chinchilla")) == 245 and len(pub.epoch_240()) == 240
    assert len(pub.load("chinchilla_table_a9")) == 50
    with pytest.raises(ConfigError, match="unknown"):
        pub.load("nope")


def test_prediction_intervals_include_run_noise():
    law = pub.CHINCHILLA_ROUNDED
    df = synthetic_isoflop(noise=0.01, seed=11)
    fit = ap.fit_approach3(df, **COLS)
    C = 1e21
    out = unc.prediction_intervals(df, fit, [C], **COLS, K=100, seed=0)
    at = out["at_C"]["1e+21"]
    lo_ci, hi_ci = at["loss_opt_ci"]
    lo_pi, hi_pi = at["loss_opt_pi"]
    assert lo_pi < lo_ci and hi_pi > hi_ci                          # noise widens the interval
    assert lo_pi < float(law.loss_opt(C)) < hi_pi
    assert at["n_opt_ci"][0] < at["n_opt"] < at["n_opt_ci"][1]
    assert out["residual_sd"] == pytest.approx(0.01, rel=0.35)


def test_report_form_intervals_tables_and_trunk_rows(tmp_path):
    df = synthetic_isoflop(budgets=(1e17, 1e18, 1e19), k=5, noise=0.003, seed=4)
    df["group"] = "isoflop"
    trunk = df.head(4).assign(group="wsd_trunk", eval_loss=9.0)     # mid-schedule checkpoints
    s = write_report(pd.concat([df, trunk]), tmp_path, **COLS)        # default: bootstrap intervals on
    assert s["data"]["n_points"] == len(df)
    assert any("wsd_trunk" in w for w in s["warnings"])
    c3 = s["approach3"]["ci"]
    assert c3["K"] == 200 and set(s["approach3"]["at_C"]) == {"1e+19", "1e+21"}   # largest budget, 100x
    assert all(len(c3["at_C"][k]["loss_opt"]) == 2 for k in c3["at_C"])
    assert "loss_opt_pi" in s["prediction"]["at_C"]["1e+21"]
    md = (tmp_path / "fits.md").read_text()
    assert "```" not in md and '"n_points"' not in md                 # tables, not JSON dumps
    for head in ("## Compute-optimal allocation", "Convergence:", "## Identifiability", "| logA | +1.000"):
        assert head in md
    assert "(extrapolation target)" in md and "one run:" in md


def test_near_optimum_window():
    df = synthetic_isoflop(k=9, span=2.5)
    warns: list[str] = []
    kept = near_optimum(df, budget_col="budget", loss_col="eval_loss", within=0.02, warnings=warns)
    best = df.groupby("budget")["eval_loss"].min()
    assert (kept["eval_loss"] <= 1.02 * kept["budget"].map(best)).all() and len(kept) < len(df)
    assert "within 2%" in warns[0]
