"""The CPU quickstart: a real IsoFLOP sweep on the embedded Python-stdlib corpus.

``scaling sweep experiments/quickstart.py --out runs/quickstart`` trains 3 budgets x 5 sizes
of tiny decoders (about 15k-500k non-embedding parameters, SentencePiece vocab of 1024,
128-token sequences) on ``pystdlib``, offline, with one worker per CPU core, then fits
Chinchilla Approaches 2 and 3 into ``runs/quickstart/report/``.  Measured on a shared 2-core
VM: see notes/README (about 8-9 minutes with warm data caches).

Budgets are in the ``chinchilla`` FLOP convention; each budget's sizes are log-spaced over
a factor 3 either side of the size a 20-tokens-per-parameter prior predicts.  The recipe
(LR, warmup, sizes) is a first reasonable choice; ``experiments/lr_sweep.py`` calibrates a
per-size learning-rate rule for it.
"""

from scaling.config import DataConfig, OptimConfig
from scaling.sweep import IsoFLOP, Prior, Recipe, Sweep

SWEEP = Sweep(
    name="quickstart",
    recipe=Recipe(
        data=DataConfig(task="pystdlib", vocab="sp1024", repeat=True),
        seq_len=128,
        batch_size=16,
        optim=OptimConfig(peak_lr=3e-3, warmup_steps=50, schedule="cosine", weight_decay=0.1),
        warmup_frac=0.05,
        flops_convention="chinchilla",
        model_overrides=(("activation", "relu"),),
        eval_batches=8,
        log_every=25,
        checkpoint_every=500,
    ),
    grid=IsoFLOP(budgets=(3e11, 1e12, 3e12), n_sizes=5, span=3.0, prior=Prior(tokens_per_param=20.0)),
    n_basis="non_embedding",  # tiny models are embedding-dominated (Kaplan et al. 2020 use this basis)
    description="CPU default: 3 IsoFLOP budgets x 5 sizes on pystdlib",
)
