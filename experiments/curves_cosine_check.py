"""Two of :mod:`nxd_quickstart`'s cosine cells re-run on this machine: is the committed table reproducible here?

``scaling sweep experiments/curves_cosine_check.py --out runs/curves_cosine_check`` trains d16 and
d48 at 1.6M tokens (the same cells, same run ids: the sweep keeps the name ``nxd_quickstart``) so
the cosine final losses that ``scaling fit-curves --predict`` compares with (the committed
``experiments/results/nxd_quickstart/results.csv``, trained on another host) can be compared with
the same cells trained beside the constant-LR runs of :mod:`curves_constant`.
"""

import dataclasses

import nxd_quickstart

SWEEP = dataclasses.replace(nxd_quickstart.SWEEP, grid=dataclasses.replace(nxd_quickstart.SWEEP.grid,
                                                                           sizes=(10368, 67968), tokens=(1.6e6,)),
                            analysis=(), description="CPU: 2 nxd_quickstart cells re-run (reproducibility check)")
