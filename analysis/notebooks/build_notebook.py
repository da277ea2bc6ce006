"""Regenerate the notebooks from the cells below, executed, with their outputs.

    python3 analysis/notebooks/build_notebook.py            # both notebooks, executed in place
    python3 analysis/notebooks/build_notebook.py --no-execute

The notebooks are committed with their outputs (figures inline), so they read as documents
wherever they are browsed; ``tests/test_analysis_notebook.py`` re-executes them with the small
resample counts of :data:`TEST_PARAMETERS` (each notebook's cell tagged ``parameters``).
"""

import argparse
import os
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

CHINCHILLA = [
    ("md", """# Replicating Chinchilla's scaling-law fits, and going beyond them

Data: Epoch AI's reconstruction of the runs behind Chinchilla's Figure 4 (Besiroglu et al.
2024), a reconstruction of the Figure 3 IsoFLOP curves and Porian et al.'s (2024) isoFLOP
points, all shipped inside the package with their provenance
(`analysis.published.load(name)`, `analysis.published.provenance(name)`): this notebook runs
on any machine. We fit Approaches 1-3 with `analysis`, compare with the paper, quantify
uncertainty, revisit Chinchilla vs Gopher, then fit other laws (Kaplan's, the data-constrained
law, one of our own) and compare two training recipes."""),
    ("parameters", """# Resample counts. These are the published run's; the test suite re-executes this notebook
# with small ones (tests/test_analysis_notebook.py), which changes the intervals' digits only.
K_BOOT = 1000     # bootstrap resamples of the runs (Approaches 1 and 3)
K_PRED = 500      # residual-bootstrap refits for the prediction interval
K_SMALL = 200     # resamples for the user-defined law and the recipe comparison"""),
    ("code", """import numpy as np, pandas as pd
from IPython.display import display
import analysis
from analysis import approaches as ap, uncertainty as unc, published as pub, plots, laws
from analysis import data_constrained as dc
from analysis.data import near_optimum, prepare

print(pub.provenance("epoch_chinchilla"))
epoch = pub.epoch_240()               # 245 runs minus the 5 highest losses
COLS = dict(n_col="Model Size", c_col="Training FLOP", loss_col="loss")  # D = C / (6N)
len(epoch)"""),
    ("md", "## Approach 3: summed Huber (delta 1e-3) on log loss, 4,500 Hoffmann starts"),
    ("code", """fit3 = ap.fit_approach3(epoch, **COLS, starts="full")
paper = pub.PRESETS["epoch2024"].law
pd.DataFrame({"this fit": [fit3.E, fit3.A, fit3.B, fit3.alpha, fit3.beta, fit3.a],
              "Epoch 2024": [paper.E, paper.A, paper.B, paper.alpha, paper.beta, paper.a],
              "Chinchilla (rounded)": [1.69, 406.4, 410.7, 0.34, 0.28,
                                       pub.PRESETS["chinchilla_rounded"].law.a]},
             index=["E", "A", "B", "alpha", "beta", "a"])"""),
    ("code", """print(f"objective {fit3.objective:.6e} (expected 1.018274e-3)")
assert abs(fit3.E - 1.8172) < 0.002 and abs(fit3.alpha - 0.3473) < 0.002 and abs(fit3.beta - 0.3672) < 0.002
fit3          # a fit renders itself as a table of its named parameters"""),
    ("md", "## Approach 1 (lower envelope) on the same runs"),
    ("code", """fit1 = ap.fit_approach1(epoch, **COLS)
print(f"Approach 1: a = {fit1.a:.3f}, b = {fit1.b:.3f} from {len(fit1.envelope)} envelope runs "
      f"(paper: 0.50, 0.50)")"""),
    ("md", "## Approach 2 on the Figure 3 IsoFLOP reconstruction (9 budgets)"),
    ("code", """iso = pub.load("openathena_isoflops")
iso = iso[(iso.source == "ml_scalefit") & (iso.model == "chinchilla")]
ICOLS = dict(n_col="params", d_col="tokens", loss_col="loss", budget_col="budget")
fit2 = ap.fit_approach2(iso, **ICOLS)
print(f"Approach 2: a = {fit2.a:.3f}, b = {fit2.b:.3f} (paper: 0.49, 0.51)")
for w in fit2.warnings: print("warning:", w)
fit2.table()[["budget", "n_points", "n_opt", "d_opt", "included", "reason"]]"""),
    ("code", """frame = prepare(iso, **ICOLS)
fig = plots.isoflop_curves(frame, fit2)    # returns the Figure; Jupyter shows it inline"""),
    ("md", """## Uncertainty: bootstrap over runs (seeded), prediction intervals, identifiability, backtest
Chinchilla's published interval for a was [0.454, 0.455]; resampling the runs shows how
wide it really is. The residual bootstrap adds run-to-run noise: the interval a single run
trained at the predicted allocation would land in."""),
    ("code", """boot = unc.bootstrap(epoch, **COLS, K=K_BOOT, seed=0, fit3=fit3, approaches=(1, 3))
print("Approach 3 a 95%:", np.round(boot.interval(3, "a"), 4), " SE(B):", round(boot.se(3, "B")))
print("Approach 1 a 95%:", np.round(boot.interval(1, "a"), 4))
for w in boot.narrow_warnings(): print("warning:", w)
print("published Approach 3 a interval", pub.TABLE2["approach3"]["a_ci"])
pi = unc.prediction_intervals(epoch, fit3, [pub.GOPHER_FLOPS], **COLS, K=K_PRED)
display(boot)
pi"""),
    ("code", """unc.identifiability(epoch, **COLS, fit3=fit3)"""),
    ("code", """unc.backtest(iso, **ICOLS)"""),
    ("md", "## Chinchilla vs Gopher at Gopher's budget (5.76e23 FLOPs)"),
    ("code", """rows = {name: pub.chinchilla_vs_gopher(name) for name in pub.PRESETS}
rows["this fit"] = pub.chinchilla_vs_gopher(fit3, boot=boot)
tab = pd.DataFrame(rows).T[["G", "a", "N_opt", "D_opt", "tokens_per_param", "loss_Gopher", "loss_Chinchilla"]]
print("bootstrap intervals of this fit:", rows["this fit"]["ci"])
tab"""),
    ("code", """pub.compare_table({"this fit": fit3, "chinchilla_rounded": "chinchilla_rounded"})"""),
    ("md", "## Figures: optimal allocation with intervals, L(N, D) contours, residuals"),
    ("code", """eframe = unc.canonical(epoch, **COLS)
fig = plots.optimal_allocation({1: fit1, 3: fit3}, boot=boot, frame=eframe, target_c=pub.GOPHER_FLOPS)"""),
    ("code", """fig = plots.loss_contour(fit3, frame=eframe, target_c=pub.GOPHER_FLOPS)"""),
    ("code", """fig = plots.residuals(eframe, fit3)   # add path="figs/residuals" to also write PNG + SVG"""),
    ("md", """## Other laws, same machinery
Every law is an `analysis.laws.Law`: parameters, bounds, a start grid, a log prediction and,
where one exists, a closed-form frontier. The solver, bootstrap, backtest, report and
`scaling fit --law` take any of them. Kaplan et al. (2020):
L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D."""),
    ("code", """fitk = ap.fit_approach3(epoch, **COLS, law="kaplan")
print(fitk.named, f"objective {fitk.objective:.4e} vs Chinchilla's {fit3.objective:.4e}; a = {fitk.a:.3f}")"""),
    ("md", """### The data-constrained law (Muennighoff et al. 2023)
Repeated tokens and excess parameters decay in value. The coefficients published in
huggingface/datablations' README reproduce its printed evaluations, and the optimal
allocation for a fixed unique-data budget is a 1-D minimisation (their README grid-searches it)."""),
    ("code", """theta = dc.theta(**pub.DATA_CONSTRAINED_C4)
print(dc.loss(theta, 6.34e9, 242e9, 25e9), "(README: 2.2256440889984477)")
print(dc.loss(theta, 8.67e9, 178e9, 25e9), "(README: 2.2269634075087867)")
best = dc.optimal_allocation(theta, 6 * 8.67e9 * 178e9, 25e9)
print(f"optimal with 25B unique tokens: {best['D'][0]:.3g} tokens, {best['epochs'][0]:.2f} epochs, "
      f"{best['N'][0]:.3g} parameters (README: 227B tokens, 9.1 epochs, 6.8B parameters)")"""),
    ("md", """### A law of your own
Write the loss with numpy broadcasting (each parameter arrives as a column, one row per start;
each input as a row), give bounds and a start grid, and every tool takes it. Here: Chinchilla's
form with one exponent shared by N and D (4 parameters instead of 5). Its frontier has no closed form
here, so a is read numerically; with equal exponents it is 0.5 by construction, and its bootstrap
interval has zero width for that reason (the form, not the data, fixes a): compare the objective
with the 5-parameter law's instead."""),
    ("code", """def shared_exponent(p, x):
    return p["E"] + p["A"] / x["N"] ** p["alpha"] + p["B"] / x["D"] ** p["alpha"]

mine = laws.Law.from_loss(
    "shared_exponent", shared_exponent, params=("E", "A", "B", "alpha"),
    bounds={"E": (0.1, 10), "A": (1, 1e7), "B": (1, 1e7), "alpha": (0.05, 2)},
    grid={"E": (1.0, 2.0), "A": (100, 1000, 10000), "B": (100, 1000, 10000), "alpha": (0.2, 0.4, 0.8)})
laws.register(mine)          # now also `scaling fit --law shared_exponent` in this process
fitm = ap.fit_approach3(epoch, **COLS, law=mine)
print(fitm.named, f"objective {fitm.objective:.4e}; a = {fitm.a:.3f} (numeric frontier)")
bm = unc.bootstrap(epoch, **COLS, K=K_SMALL, fit3=fitm, approaches=(3,))
print("a 95%:", np.round(bm.interval(3, "a"), 3))"""),
    ("md", """## Two recipes: Porian et al.'s tuned setup against Kaplan et al.'s
`analysis.compare(df_a, df_b)` fits the same law to both tables and reports the
compute-equivalent gain of B over A (the compute A needs for its compute-optimal loss divided
by the compute B needs for the same loss) at every shared budget and extrapolated, with
bootstrap intervals. Porian's "Counting last layer FLOPs" is Kaplan et al.'s training setup
(long warmup, Kaplan's decay, untuned AdamW) with the FLOP count of the tuned setup, so the two
C columns mean the same thing. IsoFLOP points more than 5% above their budget's minimum are
dropped (large models trained for a few hundred steps, which no compute-optimal law models)."""),
    ("code", """por = pub.load("porian2024_isoflops")
rw = por[por.dataset == "rw"]
pick = lambda label: near_optimum(rw[rw.label == label], budget_col="flops", loss_col="loss", within=0.05)
PCOLS = dict(n_col="n", d_col="t", c_col="flops", budget_col="flops", loss_col="loss")
cmp = analysis.compare(pick("Counting last layer FLOPs"), pick("Optimizer tuning (no decay)"), **PCOLS,
                       labels=("Kaplan setup", "tuned"), K=K_SMALL)
print(f"a: Kaplan setup {cmp.fit_a.a:.3f}, tuned {cmp.fit_b.a:.3f} (Porian et al.: 0.706 and 0.497)")
display(cmp)
fig = plots.compare_gain(cmp)"""),
]


OWN_SWEEP = [
    ("md", """# Fit your own sweep

Any table of runs will do: a sweep directory of this project (`scaling sweep EXP --out DIR`), its
`results.csv`, or a CSV of your own with a loss column and any two of parameters, tokens and
FLOPs. This notebook uses tables committed with the repository (`experiments/results/`), so it
runs offline in seconds, and only the public API: `analysis.load_results`, the fits in
`analysis.approaches`, `analysis.uncertainty`, `analysis.compare` and `analysis.plots`.

1. load the IsoFLOP sweep of `experiments/quickstart.py` and fit Approaches 2 and 3;
2. put intervals on them and predict the compute-optimal model at a budget 10x beyond the sweep;
3. compare two training recipes measured on the same 42 (N, D) points: independent cosine runs
   (`experiments/nxd_quickstart.py`) and WSD forks (`experiments/wsd_quickstart.py`)."""),
    ("parameters", """# Resample counts. The committed outputs used these; the test suite re-executes this notebook
# with small ones (tests/test_analysis_notebook.py), which changes the intervals' digits only.
K_BOOT = 200      # bootstrap resamples of the runs
K_PRED = 200      # residual-bootstrap refits for the prediction
K_CMP = 200       # resamples for the recipe comparison
STARTS = "full"   # Approach 3 start grid: Hoffmann's 4,500 ("small": 432)"""),
    ("code", """from pathlib import Path
import matplotlib.pyplot as plt
import analysis
from analysis import approaches as ap, uncertainty as unc, plots

# the repository's committed tables, found from wherever Jupyter runs this notebook
RESULTS = next(p / "experiments" / "results" for p in (Path.cwd(), *Path.cwd().parents)
               if (p / "experiments" / "results").is_dir())
runs = analysis.load_results(RESULTS / "quickstart")   # a sweep dir, or a .csv/.parquet file
runs = runs[runs.state == "done"]
runs[["run_id", "n_total", "tokens", "budget", "eval_loss"]].head()"""),
    ("md", """## Which columns are N, D, C and the loss
Every fit takes the column names. This sweep counts budgets as C = 6 N D on total parameters, so
N is `n_total`; `budget` is the IsoFLOP budget each run was planned for (Approach 2 fits one
parabola per budget)."""),
    ("code", """COLS = dict(n_col="n_total", d_col="tokens", loss_col="eval_loss", budget_col="budget")
fit2 = ap.fit_approach2(runs, **COLS)
fit2"""),
    ("code", """fit3 = ap.fit_approach3(runs, **COLS, starts=STARTS)
print(f"Approach 2: a = {fit2.a:.3f}; Approach 3: a = {fit3.a:.3f}")
fit3"""),
    ("md", """## Plot: each function draws into the Axes you give it (`ax=`) and returns the Figure
Without `ax=` a function makes its own figure; with `path="dir/name"` it also writes
`name.png` and `name.svg`. Nothing is written here."""),
    ("code", """frame = unc.canonical(runs, **COLS)      # the canonical N, D, C, loss, budget columns
fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5))
plots.isoflop_curves(frame, fit2, ax=left)
plots.loss_contour(fit3, ax=right, frame=frame);"""),
    ("md", """## Intervals
A bootstrap over runs (resampled within budgets, seeded) refits every approach; its table gives
the 95% interval of each exponent and of every parameter of the law."""),
    ("code", """boot = unc.bootstrap(runs, **COLS, K=K_BOOT, seed=0, fit3=fit3, approaches=(2, 3))
boot"""),
    ("md", """## Predict at a new budget
Ten times the largest budget of the sweep: the law's compute-optimal N, D and loss, with the
parameter interval (refits on resampled residuals) and the interval one run trained there would
land in (run-to-run noise included)."""),
    ("code", """C_new = 10 * runs["budget"].max()
print(f"C = {C_new:.3g}: N_opt = {float(fit3.n_opt(C_new)):.4g}, D_opt = {float(fit3.d_opt(C_new)):.4g}, "
      f"{float(fit3.tokens_per_param(C_new)):.1f} tokens/param, loss {float(fit3.loss_opt(C_new)):.4f}")
unc.prediction_intervals(runs, fit3, [C_new], **COLS, K=K_PRED, seed=0)"""),
    ("code", """fig = plots.optimal_allocation({2: fit2, 3: fit3}, boot=boot, frame=frame, target_c=C_new)"""),
    ("md", """## Compare two recipes
Same model sizes and token counts, two learning-rate schedules: independent cosine runs of every
(N, D) point, and WSD forks cooled down from one trunk per size. Any CSV works the same way; the
WSD table's trunk rows (group `wsd_trunk`, mid-schedule checkpoints that were never annealed)
are not final runs, so they are dropped. With the same (N, D) points in both tables, the
bootstrap resamples them paired."""),
    ("code", """cosine = analysis.load_results(RESULTS / "nxd_quickstart" / "results.csv")
wsd = analysis.load_results(RESULTS / "wsd_quickstart" / "results.csv")
wsd = wsd[wsd.group != "wsd_trunk"]
CCOLS = dict(n_col="n_total", d_col="tokens", loss_col="eval_loss", c_col="flops_achieved")
cmp = analysis.compare(cosine, wsd, **CCOLS, labels=("cosine N x D", "WSD forks"), K=K_CMP, seed=0,
                       starts=STARTS)
print(f"paired: {cmp.paired}; a: cosine {cmp.fit_a.a:.3f}, WSD {cmp.fit_b.a:.3f}")
cmp"""),
    ("code", """fig = plots.compare_gain(cmp)"""),
]

NOTEBOOKS = {"chinchilla_replication.ipynb": CHINCHILLA, "fit_your_own_sweep.ipynb": OWN_SWEEP}

# What the test suite runs instead of each notebook's "parameters" cell: cheap resample counts.
TEST_PARAMETERS = {
    "chinchilla_replication.ipynb": "K_BOOT = 40\nK_PRED = 40\nK_SMALL = 20",
    "fit_your_own_sweep.ipynb": 'K_BOOT = 20\nK_PRED = 20\nK_CMP = 20\nSTARTS = "small"',
}


def build(cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    out = []
    for kind, src in cells:
        if kind == "md":
            out.append(nbformat.v4.new_markdown_cell(src))
        else:
            cell = nbformat.v4.new_code_cell(src)
            if kind == "parameters":   # papermill's convention: the cell a runner may replace
                cell.metadata["tags"] = ["parameters"]
            out.append(cell)
    nb.cells = out
    return nb


def execute(nb: nbformat.NotebookNode, parameters: str | None = None, timeout: int = 1200) -> nbformat.NotebookNode:
    """Run ``nb`` in a python3 kernel whose working directory is this one, as in Jupyter, with this
    checkout importable; ``parameters`` replaces the source of the cell tagged ``parameters``."""
    from nbclient import NotebookClient

    if parameters is not None:
        cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        if len(cells) != 1:
            raise ValueError(f"expected one cell tagged 'parameters', found {len(cells)}")
        cells[0].source = parameters
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in (saved or "").split(os.pathsep) if p])
    try:   # the kernel inherits this process's environment: this checkout's analysis is imported
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(HERE)}}).execute()
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    return nb


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-execute", action="store_true", help="write the notebooks without outputs")
    ap.add_argument("names", nargs="*", default=list(NOTEBOOKS), help="which notebooks (default: both)")
    args = ap.parse_args()
    for name in args.names:
        nb = build(NOTEBOOKS[name])
        if not args.no_execute:
            execute(nb)
        nbformat.write(nb, HERE / name)
        print(HERE / name, file=sys.stderr)
