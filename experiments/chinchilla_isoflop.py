"""Chinchilla's IsoFLOP sweep (Hoffmann et al. 2022, Figure 3): 9 budgets, 6e18 ... 3e21 FLOPs.

For TPU/GPU users: ``c4_en`` with a 32k SentencePiece vocabulary, 2048-token sequences,
cosine decay to 10% over each run's own budget, AdamW.  Each budget trains 9 sizes
log-spaced over a factor 4 either side of the Chinchilla-law optimum (Approach 3 fit,
``N_opt = G (C/6)^a``).  ``scaling plan experiments/chinchilla_isoflop.py`` lists the 81
cells; expect roughly 1e23 FLOPs in total.  ``scaling plan experiments/chinchilla_isoflop.py --target
v5p-128`` compiles every shape for that pod on this machine and fits the cells that need it.  On a TPU pod:
``tpu_scripts/tpu.py all --name N --zone Z --type v5p-128 --experiment experiments/chinchilla_isoflop.py --out DIR``.
"""

from scaling.config import DataConfig, MeshConfig, OptimConfig
from scaling.sweep import IsoFLOP, Prior, Recipe, Sweep

BUDGETS = (6e18, 1e19, 3e19, 6e19, 1e20, 3e20, 6e20, 1e21, 3e21)

SWEEP = Sweep(
    name="chinchilla_isoflop",
    recipe=Recipe(
        data=DataConfig(task="c4_en", vocab="gs://t5-data/vocabs/cc_all.32000/sentencepiece.model"),
        vocab_size=32000,  # the T5 vocabulary; given here so planning never reads gs://
        seq_len=2048,
        batch_size=256,
        optim=OptimConfig(peak_lr=2e-4, warmup_steps=1000, schedule="cosine", final_lr_frac=0.1,
                          weight_decay=0.1, b2=0.95),
        warmup_frac=0.02,
        flops_convention="chinchilla",
        tied_embeddings=False,
        eval_every=1000,
        # 6 x 256 sequences (3.1M tokens): the eval batch must split over every chip and host of
        # a pod (a v5p-128 has 64 chips on 16 hosts), as the train batch does
        eval_batches=6,
        eval_batch_size=256,
        mesh=MeshConfig(data=1, fsdp=-1),  # FSDP over every chip: parameters and AdamW state sharded
        log_every=50,
        checkpoint_every=1000,
    ),
    grid=IsoFLOP(budgets=BUDGETS, n_sizes=9, span=4.0, prior=Prior.chinchilla()),
    n_basis="total",
    description="Hoffmann et al. 2022 IsoFLOP profiles, 9 budgets x 9 sizes on C4",
)
