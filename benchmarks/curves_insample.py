"""How well a sweep's fitted loss-curve laws reproduce the runs they were fitted on (final losses).

    python benchmarks/curves_insample.py runs/curves_constant_forks 0,1,2,3,4,5 [multipower|annealing]

Per size: the law fitted exactly as ``scaling fit-curves SWEEP --fork-index RANKS`` fits it (the
trunk plus the forks of those ranks), then every fork of that size, fitted or not, predicted from
its own schedule beside its final held-out loss; and the median |error| over the fitted forks.
The number to hold next to a ``--predict`` check: a law that reproduces its own cooldowns to
0.2% and misses another schedule by 1.7% is biased for the carry-over, not noisy
(docs/predicting.md, "Loss curves").
"""

import sys

import numpy as np

from analysis.cli import _fork_ranks
from analysis.curves import LAMBDA, _fit_size, _sweep_sizes


def main(sweep: str, ranks: str, law: str = "multipower") -> None:
    ks = _fork_ranks(ranks)  # the same parsing (and refusals) as `scaling fit-curves --fork-index`
    by_size, finals = _sweep_sizes(sweep, "auto")
    fitted_errs = []
    for key, runs in sorted(by_size.items()):
        got = _fit_size(runs, fork_index=ks, law=law, lam=LAMBDA, min_others=1)
        if got is None:
            continue
        fit, fitted_on, _, _ = got
        forks = sorted([r for r in runs if r[0].group != "wsd_trunk"], key=lambda r: r[0].steps)
        cells = []
        for cell, lr, *_ in forks:
            err = fit.predict_final(lr) / finals[cell.run_id] - 1
            if cell.run_id in fitted_on:
                fitted_errs.append(err)
            cells.append(f"{cell.steps}{'*' if cell.run_id in fitted_on else ''} {100 * err:+.2f}%")
        print(f"{key}: rmse {100 * fit.rmse:.2f}%/point; forks by steps (* fitted): {', '.join(cells)}")
    e = np.abs(fitted_errs)
    print(f"{len(e)} fitted forks' final losses reproduced: median |error| {100 * np.median(e):.2f}%, "
          f"max {100 * e.max():.2f}%")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
