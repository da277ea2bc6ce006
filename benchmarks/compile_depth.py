"""CPU compile time and step time of the train step against depth, scanned vs unrolled layers.

    python3 benchmarks/compile_depth.py                  # the README table (about 4 minutes on 2 cores)
    python3 benchmarks/compile_depth.py --width 128 --depths 2,4,8 --layouts scanned,unrolled

For each depth and layout it builds a cell of that shape, lowers its programs with the
trainer's own lowering (``lower_programs(cell, mesh)``: init, train step and eval traced and
lowered for a 1-device mesh) and compiles the train step; then the layouts of that depth take
turns for ``--steps`` train steps each on a synthetic packed batch (medians), so both see the
same load.  It prints ``lower_s`` (tracing + lowering all three programs), ``compile_s`` (XLA
compile of the train step), step times, and ``cpu_util`` (CPU seconds / wall seconds; 2.0 =
both cores were ours, lower = a shared machine).

Then the two acceptance numbers, from this one run:

* ``compile ratio``: (lower + compile) of the deepest scanned row / the ``--ref-depth``
  scanned row (target: at most 2.0 for 44 vs 8 layers);
* per depth, scanned vs unrolled compile and step time, which decides the CPU default of
  ``scan_layers`` (:data:`scaling.config.SCAN_BY_DEFAULT`).

The persistent compilation cache is not enabled here, so every compile is a real one.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=256, help="d_model (heads of 64, ffw 4 d_model)")
    ap.add_argument("--depths", default="2,4,8,44")
    ap.add_argument("--layouts", default="scanned,unrolled")
    ap.add_argument("--unrolled-max", type=int, default=44, help="skip unrolled rows deeper than this (slow)")
    ap.add_argument("--ref-depth", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--remat", default="none", choices=("none", "dots", "full"))
    ap.add_argument("--attention", default="einsum", choices=("einsum", "dot_product"))
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args(argv)

    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import jax
    import numpy as np

    from scaling import sharding
    from scaling.config import Cell, MeshConfig, ModelConfig

    from scaling.optim import hyperparams
    from scaling.programs import TRAIN_KEYS, lower_programs

    mesh = sharding.make_mesh(MeshConfig(data=1), devices=jax.devices()[:1])
    d, L, B = args.width, args.seq_len, args.batch
    rng = np.random.default_rng(0)
    seg = np.concatenate([np.ones((B, L // 2)), 2 * np.ones((B, L - L // 2))], 1).astype(np.int32)
    pos = np.concatenate([np.arange(L // 2), np.arange(L - L // 2)])[None].repeat(B, 0).astype(np.int32)
    toks = rng.integers(1, args.vocab, (B, L)).astype(np.int32)
    batch_np = {"decoder_input_tokens": toks, "decoder_target_tokens": np.roll(toks, -1, 1),
                "decoder_segment_ids": seg, "decoder_positions": pos,
                "decoder_loss_weights": np.ones((B, L), np.float32)}

    print(f"width {d} (heads {max(1, d // 64)} x 64), seq {L}, batch {B}, vocab {args.vocab}, remat {args.remat}, "
          f"attention {args.attention}, {jax.devices()[0].platform} x1")
    print(f"{'layout':<9} {'layers':>6} {'lower_s':>8} {'compile_s':>9} {'total_s':>8} {'cpu_util':>8}")

    def build(layout: str, n: int):
        heads = max(1, d // 64)
        cfg = ModelConfig(vocab_size=args.vocab, seq_len=L, d_model=d, n_layers=n, n_heads=heads,
                          kv_size=d // heads, ffw_size=4 * d, compute_dtype="float32",
                          scan_layers=layout == "scanned", remat=args.remat, attention=args.attention)
        cell = Cell(model=cfg, tokens=B * L * 10, batch_size=B, eval_batch_size=B)
        w0, c0 = time.perf_counter(), _cpu_s()
        progs = lower_programs(cell, mesh)
        t_lower = time.perf_counter() - w0
        step = progs.step.compile()
        t_compile = time.perf_counter() - w0 - t_lower
        util = (_cpu_s() - c0) / (time.perf_counter() - w0)
        print(f"{layout:<9} {n:>6} {t_lower:>8.2f} {t_compile:>9.2f} {t_lower + t_compile:>8.2f} {util:>8.2f}",
              flush=True)
        state = progs.init.compile()(jax.random.PRNGKey(0))
        batch = {k: jax.device_put(batch_np[k], progs.batch_sharding) for k in TRAIN_KEYS}
        hp = jax.device_put(hyperparams(cell.optim, cell.steps, 1), progs.replicated)
        return t_lower + t_compile, [step, state, batch, hp]

    def one_step(run) -> float:
        step, state, batch, hp = run
        t = time.perf_counter()
        run[1], out = step(state, batch, hp)
        float(out["loss"])
        return time.perf_counter() - t

    rows, steps = {}, {}
    layouts = args.layouts.split(",")
    for n in (int(x) for x in args.depths.split(",")):
        runs = {}
        for layout in layouts:
            if layout == "unrolled" and n > args.unrolled_max:
                continue
            rows[(layout, n)], runs[layout] = build(layout, n)
            one_step(runs[layout])  # warm-up
        # Layouts take turns step by step, so both see the same load on a shared machine.
        times = {lay: [] for lay in runs}
        c0, w0 = _cpu_s(), time.perf_counter()
        for _ in range(args.steps):
            for lay, run in runs.items():
                times[lay].append(one_step(run))
        util = (_cpu_s() - c0) / (time.perf_counter() - w0)
        for lay in runs:
            steps[(lay, n)] = 1e3 * statistics.median(times[lay])
        print("  steps, " + ", ".join(f"{lay} {steps[(lay, n)]:.1f} ms" for lay in runs)
              + f" (median of {args.steps}, turns interleaved, cpu_util {util:.2f})", flush=True)
        del runs

    deep = max((n for (lay, n) in rows if lay == "scanned"), default=None)
    if deep is not None and ("scanned", args.ref_depth) in rows and deep != args.ref_depth:
        ratio = rows[("scanned", deep)] / rows[("scanned", args.ref_depth)]
        print(f"compile ratio scanned {deep} / {args.ref_depth} layers: {ratio:.2f} (target <= 2.0)")
    for (lay, n), c in sorted(rows.items(), key=lambda kv: kv[0][1]):
        if lay == "scanned" and ("unrolled", n) in rows:
            print(f"{n:>3} layers: scanned/unrolled compile {c / rows[('unrolled', n)]:.2f}x, "
                  f"step {steps[(lay, n)] / steps[('unrolled', n)]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
