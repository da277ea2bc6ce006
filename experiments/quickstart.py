"""The CPU quickstart: a real IsoFLOP sweep on the embedded Python-stdlib corpus.

``scaling sweep experiments/quickstart.py --out runs/quickstart`` trains 3 budgets x 5 sizes
of tiny decoders on ``pystdlib`` (byte-level, 128-byte sequences), offline, with one worker
per CPU core, then fits Chinchilla Approaches 2 and 3 into ``runs/quickstart/report/``.

Why the recipe looks the way it does (each choice removes a known small-scale trap):

* **Byte vocabulary** (259 rows): with a 1024-piece vocabulary the embedding is most of a
  30k-parameter model, and the head matmul most of its FLOPs.  With bytes the body dominates
  at every size of the grid, so "parameters" means what it means at scale.
* **Budgets in the 6N convention on total parameters** (``n_basis="total"``): C = 6 N D
  holds exactly in the basis the fits use, so Approach 2 (minimum per budget) and Approach 3
  (``a = beta / (alpha + beta)`` from the fitted L(N, D), which assumes C ∝ N D) measure the
  same thing.  Mixing a FLOP convention that includes the head with a non-embedding N bends
  the IsoFLOP parabolas differently at each budget.
* **Wide, shallow shapes of one family** (:func:`shape`): the generic size rule gives
  deep-narrow models at tiny sizes (e.g. d32-l7) that train badly at a shared LR and run
  slowly on CPU, and it alternates depths between neighbouring sizes, which puts kinks in the
  IsoFLOP curves.  Here every size of the grid has 2 layers and 2 heads; only the width varies.
* **Per-size peak LR** (:func:`peak_lr`) fitted on ``experiments/lr_sweep.py``: smaller models
  want larger LRs; a single LR tuned for the middle under-trains the ends of every parabola
  and biases the exponent (Porian et al. 2024).
* **Short warmup** (5% of steps, at most 50): long warmups waste a large share of short runs.

Every cell also reports the built-in downstream task ``pystdlib_nextline`` (accuracy, accuracy per
byte, the correct lines' bits per byte: columns ``task/pystdlib_nextline/...`` of the results).
"""

from __future__ import annotations

import dataclasses
import math

from scaling import accounting
from scaling.config import DataConfig, ModelConfig, OptimConfig
from scaling.sweep import IsoFLOP, Prior, Recipe, Sweep


def layers_for(n: float) -> int:
    """Depth of the family: 2 layers up to ~6e5 parameters, then one more per ~4x."""
    if n < 6e5:
        return 2
    return min(8, 3 + int(math.log(n / 6e5, 4)))


def shape(n: float, vocab_size: int, seq_len: int) -> ModelConfig:
    """A shallow decoder of fixed depth and head count whose total parameter count is closest to ``n``.

    One consistent family across the grid: only the width changes between neighbouring sizes
    (multiples of 8, so steps are ~1.2-1.5x at the small end), 2 heads per layer
    (4 from 3 layers up), ReLU MLP of 4 d_model, tied embeddings; counted by
    :func:`scaling.accounting.count_params`, like every other size in the project.
    """
    n_layers = layers_for(n)

    def config(d: int) -> ModelConfig:
        n_heads = 2 if n_layers <= 2 or d % 8 else 4
        return ModelConfig(vocab_size=vocab_size, seq_len=seq_len, d_model=d, n_layers=n_layers,
                           n_heads=n_heads, kv_size=d // n_heads, ffw_size=4 * d, activation="relu",
                           name=f"d{d}-l{n_layers}")

    return min((config(d) for d in range(8, 2049, 8)),
               key=lambda cfg: abs(math.log(accounting.count_params(cfg).total / n)))


# Peak LR per size: lr = LR_REF * (N / N_REF) ** -LR_EXP, clipped; fitted on lr_sweep.py.
LR_REF, N_REF, LR_EXP, LR_MIN, LR_MAX = 7.4e-3, 1e5, 0.79, 2e-3, 4e-2


def lr_for(n_total: float) -> float:
    """The rule at ``n_total`` total parameters (clipped to the swept range)."""
    lr = LR_REF * (n_total / N_REF) ** (-LR_EXP)
    return float(min(LR_MAX, max(LR_MIN, lr)))


def peak_lr(model: ModelConfig, counts) -> float:
    """The per-size peak learning rate (``Recipe.lr_rule``)."""
    return lr_for(counts.total)


RECIPE = Recipe(
    data=DataConfig(task="pystdlib", vocab="byte", repeat=True),
    seq_len=128,
    batch_size=16,
    optim=OptimConfig(peak_lr=6e-3, warmup_steps=50, schedule="cosine", weight_decay=0.1),
    warmup_frac=0.05,
    lr_rule=peak_lr,
    flops_convention="6N",
    model_overrides=(("activation", "relu"),),
    eval_batches=8,
    log_every=25,
    checkpoint_every=500,
    # scored at the end of every cell (eval_every=0): "which of 4 lines is the real next line", made from
    # the corpus's held-out files (docs/tasks.md); not part of the run ids
    eval_tasks=("pystdlib_nextline",),
)

SWEEP = Sweep(
    name="quickstart",
    recipe=RECIPE,
    grid=IsoFLOP(budgets=(2.5e11, 8e11, 2.5e12), n_sizes=5, span=2.5, prior=Prior(tokens_per_param=50.0)),
    family=shape,
    n_basis="total",
    description="CPU default: 3 IsoFLOP budgets x 5 sizes on pystdlib (bytes)",
)


def with_seed(seed: int) -> Sweep:
    """This sweep with another ``seed`` (other initial weights, another order of the same batches), named
    ``quickstart_seed<seed>``: same grid, recipe and shapes, so every difference is the seed's."""
    return dataclasses.replace(
        SWEEP, name=f"quickstart_seed{seed}", recipe=dataclasses.replace(RECIPE, seed=seed),
        description=f"the quickstart with seed {seed}: 3 IsoFLOP budgets x 5 sizes on pystdlib (bytes)")
