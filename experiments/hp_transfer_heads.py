"""The muP transfer check of :mod:`hp_transfer` with a fixed head size instead of a fixed head count.

:mod:`hp_transfer` keeps 2 heads at every width, so the head size grows with the width (8 at
d16, 64 at d128) and the attention logits' ``1 / D`` scaling carries part of the width change.
Yang et al. (2022) state muP for either choice, but the widely reproduced transfers (their GPT-3
proxy, Lingle 2024, Everett et al. 2024) grow the head count at a fixed head size.  This sweep is
:mod:`hp_transfer` cell for cell (same sizes, parameter counts, horizon, LR grid, base d16,
``standard`` and ``mup`` in one HPGrid) with one change: every width has heads of 8 (d16: 2,
d48: 6, d128: 16), so the head size, and with it the attention scale, is the base's at every
width under both parametrizations::

    scaling sweep experiments/hp_transfer_heads.py --out runs/hp_transfer_heads
    python experiments/hp_sweep.py runs/hp_transfer_heads   # LR* spread per parametrization, with intervals

The d16 cells are the same models as :mod:`hp_transfer`'s (2 heads of 8) and train identically.

Measured (experiments/results/hp_transfer_heads/, docs/hyperparameters.md): LR* spread over the 8x
width range 1.25x [1.04, 1.55] under ``mup`` (noise alone: 95th percentile 1.41x), 8.75x under
``standard``; with 2 heads at every width they were 1.78x and 20.6x.
"""

from __future__ import annotations

import dataclasses

import hp_transfer  # experiments/ is on sys.path while scaling.sweep.load_sweep runs this file
from quickstart import shape

from scaling.config import ModelConfig

HEAD_SIZE = 8  # the d16 base's head size


def shape_fixed_head(n: float, vocab_size: int, seq_len: int) -> ModelConfig:
    """The quickstart's shape at ``n`` parameters with heads of :data:`HEAD_SIZE` (same parameter count)."""
    cfg = shape(n, vocab_size, seq_len)
    return dataclasses.replace(cfg, n_heads=cfg.d_model // HEAD_SIZE, kv_size=HEAD_SIZE)


SWEEP = dataclasses.replace(
    hp_transfer.SWEEP,
    name="hp_transfer_heads",
    family=shape_fixed_head,
    description="muP transfer with heads of 8 at every width: d16/d48/d128 x 7 LRs x 0.8M tokens, standard vs mup",
)
