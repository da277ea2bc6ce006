"""The cells of :mod:`hp_transfer` under ``completep``: muP with width-independent weight decay.

At one depth (``base_depth = n_layers``, what HPGrid sets from its base) ``completep`` differs
from ``mup`` only in the hidden matrices' weight decay, ``x m`` so that LR x WD is the same at
every width (``scaling.parametrization``; Wortsman et al. 2023, Kosson et al. 2025 on
independent weight decay for muP under AdamW).  21 runs; the standard and mup cells are in
:mod:`hp_transfer`::

    scaling sweep experiments/hp_transfer_completep.py --out runs/hp_transfer_completep
    python experiments/hp_sweep.py runs/hp_transfer runs/hp_transfer_completep
"""

import dataclasses

from hp_transfer import SWEEP as TRANSFER

SWEEP = dataclasses.replace(
    TRANSFER, name="hp_transfer",
    grid=dataclasses.replace(TRANSFER.grid, parametrizations=("completep",)),
    description="the hp_transfer cells under completep (at one depth: mup with width-independent weight decay)",
)
