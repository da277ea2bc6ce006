"""Regenerate chinchilla_replication.ipynb (unexecuted) from the cells below.

    python3 analysis/notebooks/build_notebook.py
"""

from pathlib import Path

import nbformat

CELLS = [
    ("md", """# Replicating Chinchilla's scaling-law fits, and going beyond them

Data: Epoch AI's reconstruction of the runs behind Chinchilla's Figure 4 (Besiroglu et al.
2024), a reconstruction of the Figure 3 IsoFLOP curves and Porian et al.'s (2024) isoFLOP
points, all shipped inside the package with their provenance
(`analysis.published.load(name)`, `analysis.published.provenance(name)`): this notebook runs
on any machine. We fit Approaches 1-3 with `analysis`, compare with the paper, quantify
uncertainty, revisit Chinchilla vs Gopher, then fit other laws (Kaplan's, the data-constrained
law, one of our own) and compare two training recipes."""),
    ("code", """import tempfile
from pathlib import Path
import numpy as np, pandas as pd
from IPython.display import Image, Markdown, display
import analysis
from analysis import approaches as ap, uncertainty as unc, published as pub, plots, laws
from analysis import data_constrained as dc
from analysis.data import near_optimum, prepare

FIG = Path(tempfile.mkdtemp(prefix="chinchilla_nb_"))
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
print(fit3.convergence)
assert abs(fit3.E - 1.8172) < 0.002 and abs(fit3.alpha - 0.3473) < 0.002 and abs(fit3.beta - 0.3672) < 0.002"""),
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
for f in plots.isoflop_curves(frame, fit2, FIG / "isoflop"):
    if f.endswith(".png"): display(Image(f))"""),
    ("md", """## Uncertainty: bootstrap over runs (seeded), prediction intervals, identifiability, backtest
Chinchilla's published interval for a was [0.454, 0.455]; resampling the runs shows how
wide it really is. The residual bootstrap adds run-to-run noise: the interval a single run
trained at the predicted allocation would land in."""),
    ("code", """boot = unc.bootstrap(epoch, **COLS, K=1000, seed=0, fit3=fit3, approaches=(1, 3))
print("Approach 3 a 95%:", np.round(boot.interval(3, "a"), 4), " SE(B):", round(boot.se(3, "B")))
print("Approach 1 a 95%:", np.round(boot.interval(1, "a"), 4))
for w in boot.narrow_warnings(): print("warning:", w)
print("published Approach 3 a interval", pub.TABLE2["approach3"]["a_ci"])
pi = unc.prediction_intervals(epoch, fit3, [pub.GOPHER_FLOPS], **COLS, K=500)
pd.DataFrame(pi["at_C"]).T"""),
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
files = plots.optimal_allocation({1: fit1, 3: fit3}, FIG / "allocation", boot=boot, frame=eframe,
                                 target_c=pub.GOPHER_FLOPS)
files += plots.loss_contour(fit3, FIG / "contour", frame=eframe, target_c=pub.GOPHER_FLOPS)
files += plots.residuals(eframe, fit3, FIG / "residuals")
for f in files:
    if f.endswith(".png"): display(Image(f))"""),
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
bm = unc.bootstrap(epoch, **COLS, K=200, fit3=fitm, approaches=(3,))
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
                       labels=("Kaplan setup", "tuned"), K=200)
print(f"a: Kaplan setup {cmp.fit_a.a:.3f}, tuned {cmp.fit_b.a:.3f} (Porian et al.: 0.706 and 0.497)")
display(Markdown(cmp.to_markdown()))
for f in plots.compare_gain(cmp, FIG / "compare"):
    if f.endswith(".png"): display(Image(f))"""),
]


def build() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
                for kind, src in CELLS]
    return nb


if __name__ == "__main__":
    out = Path(__file__).with_name("chinchilla_replication.ipynb")
    nbformat.write(build(), out)
    print(out)
