"""Stacked vs sequential training of an LR sweep's same-shape cells: wall time and agreement.

    python3 benchmarks/stacked.py --steps 40              # every size of experiments/lr_sweep.py
    python3 benchmarks/stacked.py --steps 100 --sizes 0,2 # the smallest and largest size only

``experiments/lr_sweep.py`` trains each of 3 sizes with 5 peak LRs: per size, 5 cells of one
shape that differ only in optimizer numbers, which is exactly what
:func:`scaling.stacked.train_stacked` can put in one vmapped program.  For each size group this
script trains the group (a) with ``train`` one cell after another, in this process, as a local
worker would, and (b) with ``train_stacked`` as one stack, each into fresh temporary run
directories, and prints

* the wall time of each (XLA compilation excluded: both programs are compiled first, by
  ``compiled_programs`` / ``compiled_stacked``, and that time is reported in its own columns),
* the speed-up (a) / (b),
* the largest |difference| between the two of any member's logged train loss or final eval
  loss (float reassociation of batched vs unbatched kernels: ~1e-5 at sane LRs; Adam amplifies
  it at LRs far above the best one, up to 0.07 nats after 100 steps at 10x the best LR).

``--steps N`` truncates every cell to its first N steps (its token budget becomes N batches,
so its LR schedule is the one of an N-step run) to keep the run short.  The data set is
prepared and the device peak FLOP/s measured once up front (``Settings.peak_flops`` is then
set to it), so neither path pays for them inside the timing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _groups(cells):
    """Cells grouped by stack key, in plan order (for lr_sweep: one group per size)."""
    from scaling.stacked import stack_key

    out: dict = {}
    for c in cells:
        out.setdefault(stack_key(c), []).append(c)
    return list(out.values())


def _max_loss_diff(dirs_a, dirs_b) -> float:
    import json

    from scaling.rundir import read_metrics

    worst = 0.0
    for a, b in zip(dirs_a, dirs_b):
        la = [r["train_loss"] for r in read_metrics(a)]
        lb = [r["train_loss"] for r in read_metrics(b)]
        assert len(la) == len(lb), (a, b)
        ea = json.loads((Path(a) / "summary.json").read_text())["final_eval_loss"]
        eb = json.loads((Path(b) / "summary.json").read_text())["final_eval_loss"]
        for x, y in zip(la + [ea], lb + [eb]):
            if x is not None and y is not None:
                worst = max(worst, abs(x - y))
    return worst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiment", default=str(REPO / "experiments" / "lr_sweep.py"))
    ap.add_argument("--steps", type=int, default=40, help="truncate every cell to its first N steps (0: full)")
    ap.add_argument("--sizes", default=None,
                    help="comma list of size groups: 0-based indices or model names (e.g. d40-l2); default all")
    ap.add_argument("--work", default=None, help="directory for the run dirs (default: a fresh temporary one)")
    args = ap.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(REPO))
    import jax

    from scaling import accounting, sharding, sweep
    from scaling import data as sdata
    from scaling.stacked import compiled_stacked, train_stacked
    from scaling.programs import compiled_programs
    from scaling.settings import Settings
    from scaling.train import train

    plan = sweep.plan(sweep.load_sweep(args.experiment), estimate=False)
    groups = _groups(plan.cells)
    if args.sizes:
        want = [s.strip() for s in args.sizes.split(",") if s.strip()]
        groups = [g for i, g in enumerate(groups) if str(i) in want or g[0].model.name in want]
    if args.steps:
        groups = [[dataclasses.replace(c, tokens=min(c.steps, args.steps) * c.tokens_per_step) for c in g]
                  for g in groups]
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-stacked-"))

    for c in {g[0].data: g[0] for g in groups}.values():  # prepare data sets outside the timing
        for split in ("train", "validation"):
            sdata.open_source(c.data, split, c.model.seq_len)
    # measure the device peak once, outside the timing: every cell then reads it from the settings
    settings = Settings.from_environ()
    settings = settings.replace(peak_flops=accounting.peak_flops(jax.devices()[0], settings=settings)[0])

    print(f"{args.experiment}: {len(groups)} size group(s), steps per cell "
          f"{sorted({c.steps for g in groups for c in g})}, device {jax.devices()[0].device_kind} "
          f"x{jax.device_count()}, work dir {work}")
    print("| size | params | K | steps | sequential s | stacked s | speed-up | compile seq s | compile stacked s "
          "| max abs loss diff |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for gi, g in enumerate(groups):
        mesh = sharding.make_mesh(g[0].mesh)
        t0 = time.perf_counter()
        compiled_programs(g[0], mesh)
        c_seq = time.perf_counter() - t0
        t0 = time.perf_counter()
        compiled_stacked(g[0], mesh, len(g), len({c.seed for c in g}) == 1)
        c_stk = time.perf_counter() - t0

        seq_dirs = [work / f"g{gi}" / "sequential" / c.run_id for c in g]
        t0 = time.perf_counter()
        for c, d in zip(g, seq_dirs):
            train(c, d, settings=settings)
        w_seq = time.perf_counter() - t0

        stk_dirs = [work / f"g{gi}" / "stacked" / c.run_id for c in g]
        t0 = time.perf_counter()
        train_stacked(g, stk_dirs, settings=settings)
        w_stk = time.perf_counter() - t0

        n = accounting.count_params(g[0].model).total
        print(f"| {g[0].model.name} | {n} | {len(g)} | {g[0].steps} | {w_seq:.2f} | {w_stk:.2f} | "
              f"{w_seq / w_stk:.2f}x | {c_seq:.2f} | {c_stk:.2f} | {_max_loss_diff(seq_dirs, stk_dirs):.2e} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
