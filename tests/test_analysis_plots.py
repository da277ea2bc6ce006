"""Notebook-native analysis: figures (ax= in, Figure out, files only given path=, no backend
switched), results that render as tables with intervals, and load_results in one call.

Everything runs on the quickstart sweep's committed results table (15 runs, 3 budgets) with
the small start grid and a handful of resamples, so the file takes a few seconds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import approaches as ap
from analysis import plots
from analysis import uncertainty as unc
from analysis.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "experiments" / "results" / "quickstart"
COLS = dict(n_col="n_total", d_col="tokens", loss_col="eval_loss", budget_col="budget")


@pytest.fixture(scope="module")
def fitted():
    df = analysis.load_results(QUICKSTART)
    frame = unc.canonical(df, **COLS)
    fit1 = ap.fit_approach1(df, **COLS)
    fit2 = ap.fit_approach2(df, **COLS)
    fit3 = ap.fit_approach3(df, **COLS, starts="small")
    boot = unc.bootstrap(df, **COLS, K=8, seed=0, fit3=fit3)
    return df, frame, fit1, fit2, fit3, boot


def _figures(fitted):
    """Every plotting function with the arguments it needs and its number of panels."""
    df, frame, fit1, fit2, fit3, boot = fitted
    wsd = pd.read_csv(REPO / "experiments" / "results" / "wsd_quickstart" / "results.csv")
    cmp = analysis.compare(df, df.assign(eval_loss=df.eval_loss * 0.99), **COLS, K=4, starts="small")
    from analysis import allocation

    alloc = pd.DataFrame({"budget": [1e18, 1e19], "loss_chinchilla_rule": [3.0, 2.8], "loss_kaplan_rule": [3.1, 2.9],
                          "n_chinchilla_rule": [1e8, 3e8], "n_kaplan_rule": [3e8, 1e9]})
    assert allocation is not None
    from analysis.prediction import rollouts

    roll, _ = rollouts(frame, starts="small")
    return [
        ("isoflop_curves", 1, lambda **kw: plots.isoflop_curves(frame, fit2, **kw)),
        ("optimal_allocation", 2, lambda **kw: plots.optimal_allocation({1: fit1, 2: fit2, 3: fit3}, boot=boot,
                                                                         frame=frame, **kw)),
        ("loss_contour", 1, lambda **kw: plots.loss_contour(fit3, frame=frame, **kw)),
        ("residuals", 2, lambda **kw: plots.residuals(frame, fit3, **kw)),
        ("compare_gain", 2, lambda **kw: plots.compare_gain(cmp, **kw)),
        ("allocation_comparison", 1, lambda **kw: plots.allocation_comparison(alloc, **kw)),
        ("wsd_forks", 1, lambda **kw: plots.wsd_forks(wsd, n_col="n_total", d_col="tokens", loss_col="eval_loss",
                                                      law=fit3, **kw)),
        ("rollout_errors", 2, lambda **kw: plots.rollout_errors(roll, growth=0.03, sigma0=0.01, **kw)),
    ]


def test_every_plot_takes_ax_returns_the_figure_and_writes_only_given_path(fitted, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")               # the test session's own choice, which no plot may change
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    backend = matplotlib.get_backend()
    figs = _figures(fitted)
    public = {n for n in dir(plots) if not n.startswith("_") and callable(getattr(plots, n))
              and getattr(getattr(plots, n), "__module__", "") == "analysis.plots"} - {"save", "offscreen"}
    assert public == {name for name, _, _ in figs}      # every figure function is checked here
    for name, panels, draw in figs:
        fig = draw()                                     # a new Figure, nothing written
        assert isinstance(fig, Figure), name
        assert list(cwd.iterdir()) == [] and not (tmp_path / "figs" / f"{name}.png").exists(), name
        own, axes = plt.subplots(1, panels, figsize=(12, 4))
        got = draw(ax=axes, path=tmp_path / "figs" / name)   # into the caller's Axes, saved when asked
        assert got is own, name
        assert all(a.has_data() or a.collections or a.lines for a in np.atleast_1d(axes)), name
        assert {p.name for p in (tmp_path / "figs").glob(name + ".*")} == {name + ".png", name + ".svg"}
        plt.close("all")
    assert matplotlib.get_backend() == backend
    with pytest.raises(ConfigError, match="ax: this figure has 2 panel"):
        plots.residuals(fitted[1], fitted[4], ax=plt.subplots()[1])


def test_importing_and_reporting_never_select_a_backend(tmp_path):
    """A fresh process: analysis and a whole report (figures included) leave pyplot unimported and
    the backend as the user's configuration left it."""
    code = (
        "import sys, matplotlib, pandas as pd\n"
        "before = matplotlib.rcParams._get_backend_or_none()\n"
        "from analysis.report import write_report\n"
        "df = pd.read_csv(%r)\n"
        "s = write_report(df, %r, bootstrap=4, starts='small', n_col='n_total', d_col='tokens', "
        "loss_col='eval_loss', budget_col='budget')\n"
        "assert not [p for p in s['plots'] if p.startswith('error')], s['plots']\n"
        "assert len([p for p in s['plots'] if p.endswith('.png')]) == 5, s['plots']  # rollouts.png too\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "assert matplotlib.rcParams._get_backend_or_none() == before, (before, matplotlib.rcParams._get_backend_or_none())\n"
        "print('ok')\n" % (str(QUICKSTART / "results.csv"), str(tmp_path / "report")))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(REPO), "MPLBACKEND": "", "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
    assert (tmp_path / "report" / "contour.svg").exists()


def test_results_render_as_tables_with_intervals(fitted):
    df, frame, fit1, fit2, fit3, boot = fitted
    # a fit: its named parameters
    md = fit3._repr_markdown_()
    assert "| parameter | value |" in md and "| alpha |" in md and f"{fit3.E:.4g}" in md
    assert "<table>" in fit3._repr_html_() and "<td>beta</td>" in fit3._repr_html_()
    # Approaches 1 and 2: a and b with their OLS intervals; Approach 2 also its budgets
    lo, hi = fit2.a - 1.96 * fit2.a_se, fit2.a + 1.96 * fit2.a_se
    assert f"[{lo:.4g}, {hi:.4g}]" in fit2._repr_markdown_() and "IsoFLOP parabola minima" in fit2._repr_markdown_()
    assert "lower envelope" in fit1._repr_html_()
    # the bootstrap: every parameter of the law with its percentile interval
    lo, hi = boot.interval(3, "alpha")
    bmd = boot._repr_markdown_()
    assert f"| alpha | {np.median(boot.samples(3, 'alpha')[np.isfinite(boot.samples(3, 'alpha'))]):.4g} | [{lo:.4g}, {hi:.4g}]" in bmd
    assert "K=8" in bmd and "Approach 2 (IsoFLOP minima)" in bmd
    # predictions: still the JSON-ready dict, and a table per budget
    pred = unc.prediction_intervals(df, fit3, [1e13], **COLS, K=6)
    assert isinstance(pred, dict) and set(pred) >= {"K", "at_C"}
    r = pred["at_C"]["1e+13"]
    assert f"[{r['loss_opt_pi'][0]:.4g}, {r['loss_opt_pi'][1]:.4g}]" in pred._repr_markdown_()
    # a comparison: gain and differences with intervals
    cmp = analysis.compare(df, df.assign(eval_loss=df.eval_loss * 0.99), **COLS, K=4, starts="small")
    html = cmp._repr_html_()
    assert "Compute-equivalent gain" in html and "minus law of" in html and "paired" in html
    assert cmp._repr_markdown_() == cmp.to_markdown()
    # published laws and law objects
    from analysis import laws

    assert "| G |" in fit3.params._repr_markdown_()
    assert "<td>logE</td>" in laws.CHINCHILLA._repr_html_()


def test_load_results_one_call(tmp_path):
    from_dir = analysis.load_results(QUICKSTART)
    from_csv = analysis.load_results(QUICKSTART / "results.csv")
    assert len(from_dir) == 15 and list(from_dir.columns) == list(from_csv.columns)
    pq = tmp_path / "t.parquet"
    from_csv.to_parquet(pq)
    assert len(analysis.load_results(pq)) == 15
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    from_csv.to_csv(sweep / "results.csv", index=False)
    assert analysis.load_results(sweep)["eval_loss"].tolist() == from_csv["eval_loss"].tolist()
    (sweep / "results.csv").unlink()
    (sweep / "runs").mkdir()
    with pytest.raises(ConfigError, match="sweep_dir_or_file: .* no results.parquet or results.csv; its runs/"):
        analysis.load_results(sweep)
    with pytest.raises(ConfigError, match="does not exist"):
        analysis.load_results(tmp_path / "nope")
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(ConfigError, match="expected a sweep directory or a .csv or .parquet file"):
        analysis.load_results(tmp_path / "t.json")
