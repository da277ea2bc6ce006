"""Compile time across a sweep's cells of one shape: is the compiled train step reused?

    python3 benchmarks/sweep_compile.py                  # 3 cells, budgets 20/40/60 steps
    python3 benchmarks/sweep_compile.py --steps 20,40,60,80 --cache /tmp/my-cache

A sweep trains many cells that share a model shape and batch but differ in token budget (so
in step count and schedule) and often in peak LR.  The trainer passes the learning rate and
every other optimizer number into the jitted step as a traced vector
(:func:`scaling.optim.hyperparams`), so those cells lower to the same programs and only the
first one of a shape pays for XLA compilation; the rest hit the persistent compilation
cache (``Settings.compile_cache``: a fresh temporary directory unless ``--cache`` is given).

This script trains ``len(--steps)`` such cells one after another in ONE process (as a local
sweep worker does; within a process the trainer also reuses the compiled programs
themselves), or with ``--processes`` each in a fresh process, and prints, per cell, the trainer's own ``compile_s`` (lowering +
compiling or loading init/step/eval), ``wall_s``, and the fraction of wall time spent in
train steps; then the totals.  Run it from an older checkout to compare.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default="20,40,60", help="train steps of each cell (its token budget)")
    ap.add_argument("--peak-lrs", default="3e-3,1e-3,6e-3", help="peak LR of each cell (cycled)")
    ap.add_argument("--devices", type=int, default=1)
    ap.add_argument("--cache", default=None, help="compilation cache dir (default: a fresh temporary one)")
    ap.add_argument("--processes", action="store_true",
                    help="train each cell in its own process (only the persistent cache is shared)")
    ap.add_argument("--only", type=int, default=None, help=argparse.SUPPRESS)  # internal: one cell
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if "jax" not in sys.modules:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={args.devices}".strip()
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    work = args.work or tempfile.mkdtemp(prefix="sweep-compile-")
    cache = args.cache or os.path.join(work, "cache")
    if args.processes:
        import json
        import subprocess

        out = []
        for i in range(len(args.steps.split(","))):
            r = subprocess.run([sys.executable, os.path.abspath(__file__), "--steps", args.steps, "--peak-lrs",
                                args.peak_lrs, "--devices", str(args.devices), "--work", work,
                                "--cache", cache, "--only", str(i)],
                               capture_output=True, text=True, check=True)
            out.append(r.stdout.strip().splitlines()[-1])
        print(f"cache: {cache} (one process per cell)")
        print("| cell | steps | peak_lr | compile_s | wall_s | train_s | train / wall |")
        print("|---|---|---|---|---|---|---|")
        rows = [json.loads(o) for o in out]
        for row in rows:
            print(row["line"])
        c, w, t = (sum(r[k] for r in rows) for k in ("compile", "wall", "train"))
        print(f"| total | | | {c:.2f} | {w:.2f} | {t:.2f} | {t / w:.2f} |")
        return 0

    from scaling.config import Cell, DataConfig, ModelConfig, OptimConfig
    from scaling.settings import Settings
    from scaling.train import train

    settings = Settings.from_environ().replace(compile_cache=cache)

    model = ModelConfig(vocab_size=130, seq_len=64, d_model=64, n_layers=2, n_heads=2, kv_size=32, ffw_size=256)
    B = 16
    steps = [int(s) for s in args.steps.split(",")]
    lrs = [float(x) for x in args.peak_lrs.split(",")]
    print(f"cache: {cache}")
    print("| cell | steps | peak_lr | compile_s | wall_s | train_s | train / wall |")
    print("|---|---|---|---|---|---|---|")
    tot = {"compile": 0.0, "wall": 0.0, "train": 0.0}
    for i, n in enumerate(steps):
        if args.only is not None and i != args.only:
            continue
        lr = lrs[i % len(lrs)]
        cell = Cell(model=model, tokens=n * B * model.seq_len, batch_size=B, data=DataConfig(task="synthetic_markov"),
                    optim=OptimConfig(peak_lr=lr, warmup_steps=5), name=f"c{i}", eval_every=0, eval_batches=1,
                    checkpoint_every=10**6, log_every=10)
        s = train(cell, os.path.join(work, f"run{i}"), settings=settings)
        c, w, t = s["compile_s"], s["wall_s"], s["timing"]["train"]
        tot["compile"] += c; tot["wall"] += w; tot["train"] += t
        line = f"| {i} | {n} | {lr:g} | {c:.2f} | {w:.2f} | {t:.2f} | {t / w:.2f} |"
        if args.only is not None:
            import json

            print(json.dumps({"line": line, "compile": c, "wall": w, "train": t}))
            return 0
        print(line, flush=True)
    print(f"| total | {sum(steps)} | | {tot['compile']:.2f} | {tot['wall']:.2f} | {tot['train']:.2f} | "
          f"{tot['train'] / tot['wall']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
