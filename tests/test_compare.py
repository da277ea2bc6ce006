"""Tests of analysis/recipes.py (analysis.compare) and `scaling fit A --compare B`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import analysis
from analysis import published as pub
from analysis.data import near_optimum
from analysis.errors import ConfigError
from analysis.laws import LawParams
from analysis.report import write_report

from test_analysis import run_cli, synthetic_isoflop

COLS = dict(n_col="n_total", d_col="tokens", loss_col="eval_loss", budget_col="budget")


def _pair(s=math.sqrt(2), noise=0.003):
    """Recipe B's parameters and tokens are each worth s times A's: L_B(N, D) = L_A(sN, sD),
    so B reaches any loss with exactly s^2 less compute (gain s^2 at every budget)."""
    a = pub.CHINCHILLA_ROUNDED
    b = LawParams(a.E, a.A / s ** a.alpha, a.B / s ** a.beta, a.alpha, a.beta)
    return (synthetic_isoflop(law=a, noise=noise, seed=1), synthetic_isoflop(law=b, noise=noise, seed=2))


def test_compare_recovers_a_known_gain():
    df_a, df_b = _pair()
    cmp = analysis.compare(df_a, df_b, **COLS, labels=("base", "better"), K=60)
    t = cmp.table
    assert set(t["kind"]) == {"measured", "extrapolated"}
    assert (t["kind"] == "measured").sum() == 6
    for _, r in t.iterrows():
        assert r["gain"] == pytest.approx(2.0, rel=0.15)
        assert r["gain_lo"] < 2.0 < r["gain_hi"]
    md = cmp.to_markdown()
    assert "Compute-equivalent gain of **better** over **base**" in md and "| 1e+18 | measured |" in md
    # the same table against itself gains nothing
    same = analysis.compare(df_a, df_a, **COLS, K=20)
    assert same.table["gain"].to_numpy() == pytest.approx(1.0, rel=1e-6)


def test_compare_refuses_tables_without_overlapping_budgets():
    df_a = synthetic_isoflop(budgets=(1e18, 3e18, 1e19))
    df_b = synthetic_isoflop(budgets=(1e21, 3e21, 1e22))
    with pytest.raises(ConfigError, match="no overlap"):
        analysis.compare(df_a, df_b, **COLS, K=5)


def test_compare_on_porian_settings():
    """Porian et al. 2024 (RefinedWeb): their tuned setup against Kaplan et al.'s training
    setup with the same FLOP counting; near-optimum points only.  Tuning (short warmup, no
    decay, tuned AdamW) buys most at small budgets."""
    por = pub.load("porian2024_isoflops")
    rw = por[por["dataset"] == "rw"]
    pick = lambda lab: near_optimum(rw[rw["label"] == lab], budget_col="flops", loss_col="loss", within=0.05)  # noqa: E731
    cmp = analysis.compare(pick("Counting last layer FLOPs"), pick("Optimizer tuning (no decay)"),
                           n_col="n", d_col="t", c_col="flops", budget_col="flops", loss_col="loss",
                           labels=("Kaplan setup", "tuned"), K=40)
    meas = cmp.table[cmp.table["kind"] == "measured"]
    assert meas["gain"].iloc[0] > 5 and meas["gain_lo"].iloc[0] > 1     # big gain at the smallest budget
    assert meas["gain"].iloc[0] > meas["gain"].iloc[-1]                   # shrinking with compute
    assert abs(cmp.fit_a.a - 0.71) < 0.1 and abs(cmp.fit_b.a - 0.50) < 0.05


def test_cli_compare_and_report_section(tmp_path, capsys):
    df_a, df_b = _pair()
    df_a.to_csv(tmp_path / "a.csv", index=False)
    df_b.to_csv(tmp_path / "b.csv", index=False)
    rc = run_cli(["fit", str(tmp_path / "a.csv"), "--compare", str(tmp_path / "b.csv"), "--labels", "base,better",
               "--bootstrap", "20", "--plots", str(tmp_path / "figs"), "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["compare"]["labels"] == ["base", "better"]
    assert out["compare"]["table"][0]["gain"] == pytest.approx(2.0, rel=0.15)
    assert (tmp_path / "figs" / "compare.png").exists()
    far = synthetic_isoflop(budgets=(1e22, 3e22, 1e23))
    far.to_csv(tmp_path / "far.csv", index=False)
    rc = run_cli(["fit", str(tmp_path / "a.csv"), "--compare", str(tmp_path / "far.csv"), "--bootstrap", "5"])
    assert rc == 2 and "no overlap" in capsys.readouterr().err
    s = write_report(df_a, tmp_path / "rep", **COLS, bootstrap=10, compare_to=df_b, compare_labels=("base", "better"))
    md = (tmp_path / "rep" / "fits.md").read_text()
    assert "## Recipe comparison" in md and (tmp_path / "rep" / "compare.png").exists()
    assert np.isfinite(s["compare"]["table"][0]["gain_lo"])


def test_compare_pairs_tables_of_the_same_design():
    """Same (N, D) points in both tables (e.g. WSD forks vs cosine runs of the same horizons):
    resampled together, so the law differences isolate the recipes.  B's data term falls faster
    (beta + 0.06): the paired interval of beta's difference holds the truth and excludes 0."""
    a = pub.CHINCHILLA_ROUNDED
    b = LawParams(a.E, a.A, a.B, a.alpha, a.beta + 0.06)
    df_a = synthetic_isoflop(law=a, noise=0.002, seed=1)
    rng = np.random.default_rng(2)
    df_b = df_a.assign(eval_loss=[float(b.loss(n, d)) * math.exp(0.002 * rng.standard_normal())
                                  for n, d in zip(df_a.n_total, df_a.tokens)])
    cmp = analysis.compare(df_a, df_b.sample(frac=1.0, random_state=0), **COLS, K=60)   # row order is irrelevant
    assert cmp.paired
    d = cmp.differences.set_index("quantity")
    assert d.loc["beta", "diff"] == pytest.approx(0.06, abs=0.02)
    assert 0 < d.loc["beta", "diff_lo"] < 0.06 < d.loc["beta", "diff_hi"]
    assert d.loc["a", "diff"] > 0 and d.loc["a", "diff"] == pytest.approx(-d.loc["b", "diff"])
    md = cmp.to_markdown()
    assert "paired: both tables hold the same (N, D) points" in md and "| beta |" in md
    # a table against itself, shuffled: every resample picks the same runs, so every difference is 0
    same = analysis.compare(df_a, df_a.iloc[::-1], **COLS, K=20)
    assert same.paired
    sd = same.differences
    assert (np.abs(sd[["diff", "diff_lo", "diff_hi"]].to_numpy()).max(axis=1) <= 1e-6 * np.abs(sd["value_a"])).all()
    # other designs: independent resamples, and the same table's differences then have width
    df_c, df_d = _pair()
    other = analysis.compare(df_c, df_d, **COLS, K=20)
    assert not other.paired and "resampled independently" in other.to_markdown()
    pts = df_a.assign(N=df_a.n_total, D=df_a.tokens)
    assert analysis.recipes.matched_rows(pts, pts.assign(D=pts.D * 1.01)) is None
    assert analysis.recipes.matched_rows(pts, pts.iloc[1:]) is None
