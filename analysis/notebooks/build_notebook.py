"""Regenerate chinchilla_replication.ipynb (unexecuted) from the cells below.

    python3 analysis/notebooks/build_notebook.py
"""

from pathlib import Path

import nbformat

CELLS = [
    ("md", """# Replicating Chinchilla's scaling-law fits

Data: Epoch AI's reconstruction of the runs behind Chinchilla's Figure 4 (Besiroglu et al.
2024) and a reconstruction of the Figure 3 IsoFLOP curves, read from the directory in
`$SCALING_REFERENCE_DATA` (never copied into the repo). We fit Approaches 1-3 with
`analysis`, compare with the paper, quantify uncertainty and revisit Chinchilla vs Gopher."""),
    ("code", """import os, tempfile
from pathlib import Path
import numpy as np, pandas as pd
from IPython.display import Image, display
from analysis import approaches as ap, uncertainty as unc, published as pub, plots

ref = os.environ.get("SCALING_REFERENCE_DATA")
if not ref:
    raise RuntimeError("set SCALING_REFERENCE_DATA to the reference-data directory")
REF = Path(ref)
FIG = Path(tempfile.mkdtemp(prefix="chinchilla_nb_"))
epoch = pd.read_csv(REF / "epoch_chinchilla_svg_extracted_data.csv")
epoch = epoch.drop(epoch["loss"].nlargest(5).index).reset_index(drop=True)  # 240 points
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
    ("code", """iso = pd.read_csv(REF / "openathena_isoflops_combined.csv")
iso = iso[(iso.source == "ml_scalefit") & (iso.model == "chinchilla")]
ICOLS = dict(n_col="params", d_col="tokens", loss_col="loss", budget_col="budget")
fit2 = ap.fit_approach2(iso, **ICOLS)
print(f"Approach 2: a = {fit2.a:.3f}, b = {fit2.b:.3f} (paper: 0.49, 0.51)")
for w in fit2.warnings: print("warning:", w)
fit2.table()[["budget", "n_points", "n_opt", "d_opt", "included", "reason"]]"""),
    ("code", """frame = ap.prepare(iso, **ICOLS)
for f in plots.isoflop_curves(frame, fit2, FIG / "isoflop"):
    if f.endswith(".png"): display(Image(f))"""),
    ("md", """## Uncertainty: bootstrap over runs (seeded), identifiability, backtest
Chinchilla's published interval for a was [0.454, 0.455]; resampling the runs shows how
wide it really is. (K is small here to keep the notebook fast; use K >= 1000 for real.)"""),
    ("code", """boot = unc.bootstrap(epoch, **COLS, K=200, seed=0, fit3=fit3, approaches=(1, 3))
print("Approach 3 a 95%:", np.round(boot.interval(3, "a"), 4), " SE(B):", round(boot.se(3, "B")))
print("Approach 1 a 95%:", np.round(boot.interval(1, "a"), 4))
for w in boot.narrow_warnings(): print("warning:", w)
print("published Approach 3 a interval", pub.TABLE2["approach3"]["a_ci"])
unc.identifiability(epoch, **COLS, fit3=fit3)"""),
    ("code", """unc.backtest(iso, **ICOLS)"""),
    ("md", "## Chinchilla vs Gopher at Gopher's budget (5.76e23 FLOPs)"),
    ("code", """rows = {name: pub.chinchilla_vs_gopher(name) for name in pub.PRESETS}
rows["this fit"] = pub.chinchilla_vs_gopher(fit3, boot=boot)
tab = pd.DataFrame(rows).T[["G", "a", "N_opt", "D_opt", "tokens_per_param", "loss_Gopher", "loss_Chinchilla"]]
print("bootstrap intervals of this fit:", rows["this fit"]["ci"])
tab"""),
    ("code", """pub.compare_table({"this fit": fit3, "chinchilla_rounded": "chinchilla_rounded"})"""),
    ("md", "## Figures: optimal allocation with intervals, L(N, D) contours, residuals"),
    ("code", """files = plots.optimal_allocation({1: fit1, 2: fit2, 3: fit3}, FIG / "allocation", boot=boot)
files += plots.loss_contour(fit3, FIG / "contour", frame=ap.prepare(epoch, **COLS))
files += plots.residuals(ap.prepare(epoch, **COLS), fit3, FIG / "residuals")
for f in files:
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
