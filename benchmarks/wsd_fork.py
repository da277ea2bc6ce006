"""WSD forks against independent runs of the same horizon: how close is a forked cooldown?

For 2 quickstart sizes x 2 token horizons this trains, in one sweep directory:

* an independent **cosine** run of each horizon (the quickstart's recipe: what an N x D grid
  would train without forks);
* an independent **WSD** run of each horizon (warmup, stable, linear decay over the last 20%);
* the **forks** of one trunk per size, cooled down linearly and with ``1-sqrt``
  (Hägele et al. 2024) from the trunk's checkpoint at 80% of the horizon.

and prints every final eval loss and the differences.  A linear fork is by construction the
independent WSD run (the trunk *is* that run up to the fork step), so their difference
measures only that the restart is exact; the fork-vs-cosine difference is the science.

    python3 benchmarks/wsd_fork.py [--sizes 20160,48960] [--tpp 20,80] [--workers 2] [--work DIR]
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="20160,48960", help="total parameters (quickstart shapes)")
    ap.add_argument("--tpp", default="20,80", help="token horizons in tokens per parameter")
    ap.add_argument("--decay-frac", type=float, default=0.2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", help="sweep directory (default: a fresh temporary one)")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path[:0] = [str(REPO), str(REPO / "experiments")]

    from quickstart import RECIPE, shape

    from scaling.launch import state
    from scaling.launch.backend import make_backend
    from scaling.results import build_table
    from scaling.settings import Settings
    from scaling.sweep import NxD, Sweep, WSDFork, plan

    sizes = tuple(int(x) for x in args.sizes.split(","))
    tpp = tuple(float(x) for x in args.tpp.split(","))
    out = Path(args.work or tempfile.mkdtemp(prefix="bench-wsd-"))

    def cells_of(name, grid):
        return plan(Sweep(name=name, recipe=RECIPE, grid=grid, family=shape, n_basis="total"), estimate=False)

    cosine = cells_of("cosine", NxD(sizes=sizes, tokens_per_param=tpp))
    linear = cells_of("fork", WSDFork(sizes=sizes, tokens_per_param=tpp, decay_frac=args.decay_frac))
    sqrt = cells_of("fork", WSDFork(sizes=sizes, tokens_per_param=tpp, decay_frac=args.decay_frac,
                                    decay_shape="1-sqrt"))
    forks = [c for c in linear.cells + sqrt.cells if c.trunk]
    trunks = {c.run_id: c for c in linear.cells + sqrt.cells if not c.trunk}  # shared by both cooldowns
    indep = [dataclasses.replace(c, trunk="", fork_step=0, name=c.name + "-indep")
             for c in linear.cells if c.trunk]
    cells = list(cosine.cells) + list(trunks.values()) + forks + indep
    rows = [dict(r) for r in cosine.rows + linear.rows + sqrt.rows]
    state.write_cells(out, cells, rows)
    print(f"{len(cells)} cells in {out} ({len(trunks)} trunks, {len(forks)} forks, {len(indep)} independent WSD, "
          f"{len(cosine.cells)} cosine); {args.workers} workers", flush=True)

    t0, cpu0 = time.time(), os.times()
    be = make_backend("local", out, args.workers, Settings.from_environ())
    be.start()
    while be.poll():
        time.sleep(1.0)
    be.stop()
    wall = time.time() - t0
    c1 = os.times()
    cpu = (c1.children_user + c1.children_system) - (cpu0.children_user + cpu0.children_system)
    errs = be.errors()
    if errs:
        print("\n".join(errs), file=sys.stderr)
        return 1

    df = build_table(out).set_index("run_id")

    def loss(c):
        return float(df.loc[c.run_id, "eval_loss"])

    def key(c):
        return (c.model.d_model, c.tokens_trained)

    cos = {key(c): c for c in cosine.cells}
    lin = {key(c): c for c in linear.cells if c.trunk}
    sq = {key(c): c for c in sqrt.cells if c.trunk}
    ind = {key(c): c for c in indep}
    print(f"\nwall {wall:.0f} s, cpu_util {cpu / wall:.2f} (CPU-s per wall-s of the workers)\n")
    print("| size (N total) | tokens | tok/param | cosine | WSD (independent) | fork linear | fork 1-sqrt | "
          "fork lin - cosine | fork lin - WSD | 1-sqrt - linear |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for k in sorted(cos):
        n = int(df.loc[cos[k].run_id, "n_total"])
        a, b, f, g = loss(cos[k]), loss(ind[k]), loss(lin[k]), loss(sq[k])
        print(f"| {n:,} | {k[1]:,} | {k[1] / n:.0f} | {a:.4f} | {b:.4f} | {f:.4f} | {g:.4f} | "
              f"{f - a:+.4f} ({100 * (f - a) / a:+.2f}%) | {f - b:+.4f} | {g - f:+.4f} ({100 * (g - f) / f:+.2f}%) |")
    fl = {name: sum(float(r["flops_trained"]) for r in p.rows)
          for name, p in (("cosine", cosine), ("forks", linear))}
    print(f"\nFLOPs trained: cosine runs {fl['cosine']:.3g}; one trunk per size + linear cooldowns {fl['forks']:.3g} "
          f"({100 * fl['forks'] / fl['cosine']:.0f}% of cosine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
