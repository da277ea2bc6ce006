"""Training-step throughput and MFU of scaling's decoder on this machine.

    python3 benchmarks/train_step.py                       # the 4-size table (0.1M, 1M, 5M, 20M)
    python3 benchmarks/train_step.py --sizes 5M --dtype bfloat16 --activation relu --devices 2

What it does:

1. measures the per-device matmul peak afresh (``accounting.peak_flops(refresh=True)``: on
   CPU a jitted f32 matmul probe; the result is cached on disk for the trainer's MFU);
2. for each model size builds the real :class:`scaling.model.Decoder`, the real optimizer
   (:func:`scaling.optim.make_optimizer`, hyperparameters passed as a traced vector) and the real jitted train step
   (:func:`scaling.programs.make_train_step`), sharded data-parallel over ``--devices``
   virtual CPU devices, feeds synthetic packed batches (2 segments per row) and times
   ``--steps`` steps after ``--warmup`` untimed ones (median step time);
3. prints tokens/s, MFU with Chinchilla FLOPs per token (``accounting.flops_per_token``,
   convention ``chinchilla``) against the measured f32 peak, and ``cpu_util`` =
   (user + sys CPU seconds) / wall seconds over the timed steps, so a reader can tell
   whether other processes were sharing the cores (2.0 = both cores ours).

The sizes are non-embedding parameter targets with seq_len 256 and a 4096 vocabulary.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

SIZES = {  # name -> (d_model, n_layers, n_heads); kv_size = d/heads, ffw = 4d
    "0.1M": (64, 2, 2),
    "1M": (128, 5, 4),
    "5M": (256, 6, 4),
    "20M": (512, 6, 8),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="0.1M,1M,5M,20M")
    ap.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    ap.add_argument("--activation", default="relu", choices=("gelu", "relu", "swiglu"))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--devices", type=int, default=2, help="virtual CPU devices, data parallel")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-peak", action="store_true", help="reuse the cached peak instead of re-measuring")
    ap.add_argument("--ref-peak", type=float, default=430e9,
                    help="also report MFU against this FLOP/s (default 430e9: this host's f32 matmul peak "
                         "measured quiet; the live probe reads low when other jobs share the cores)")
    args = ap.parse_args(argv)

    if "jax" not in sys.modules:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={args.devices}".strip()
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np

    from scaling import accounting, sharding
    from scaling.config import MeshConfig, ModelConfig, OptimConfig
    from scaling.model import Decoder
    from scaling.inputs import mfu_device_count
    from scaling.optim import hyperparams, init_opt_state
    from scaling.programs import TRAIN_KEYS, make_train_step

    peak, source = accounting.peak_flops(jax.devices()[0], refresh=not args.no_peak)
    print(f"peak: {peak / 1e9:.0f} GFLOP/s per device ({source})")
    mesh = sharding.make_mesh(MeshConfig(data=-1), devices=jax.devices()[: args.devices])
    n_dev = mesh.devices.size
    print(f"devices: {n_dev} ({jax.devices()[0].platform}), dtype {args.dtype}, activation {args.activation}, "
          f"B={args.batch} T={args.seq_len} V={args.vocab}")

    rng = np.random.default_rng(0)
    B, T = args.batch, args.seq_len
    half = T // 2
    batch_np = {
        "decoder_input_tokens": rng.integers(1, args.vocab, (B, T), dtype=np.int32),
        "decoder_target_tokens": rng.integers(1, args.vocab, (B, T), dtype=np.int32),
        "decoder_segment_ids": np.concatenate([np.ones((B, half), np.int32), np.full((B, T - half), 2, np.int32)], 1),
        "decoder_positions": np.concatenate([np.arange(half), np.arange(T - half)]).astype(np.int32)[None].repeat(B, 0),
        "decoder_loss_weights": np.ones((B, T), np.float32),
    }
    rows = []
    for name in args.sizes.split(","):
        d, L, H = SIZES[name]
        cfg = ModelConfig(vocab_size=args.vocab, seq_len=T, d_model=d, n_layers=L, n_heads=H, kv_size=d // H,
                          ffw_size=4 * d, activation=args.activation, compute_dtype=args.dtype)
        counts = accounting.count_params(cfg)
        fpt = accounting.flops_per_token(cfg, "chinchilla")
        model = Decoder(cfg)
        hp = hyperparams(OptimConfig(warmup_steps=10), 1000, 20)

        def init_boxed(r):
            p = model.init(r, jnp.zeros((1, T), jnp.int32))["params"]
            return {"step": jnp.zeros((), jnp.int32), "params": p, "opt_state": init_opt_state(p)}

        with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
            sh = sharding.logical_shardings(jax.eval_shape(init_boxed, jax.random.PRNGKey(0)), mesh)
            state = jax.jit(lambda r: nn.meta.unbox(init_boxed(r)), out_shardings=sh)(jax.random.PRNGKey(0))
            bsh = sharding.batch_sharding(mesh)
            batch = {k: jax.device_put(batch_np[k], bsh) for k in TRAIN_KEYS}
            t0 = time.perf_counter()
            rep = sharding.replicated(mesh)
            hp = jax.device_put(hp, rep)
            step = jax.jit(make_train_step(model, 1), in_shardings=(sh, bsh, rep),
                           out_shardings=(sh, rep), donate_argnums=0).lower(state, batch, hp).compile()
            compile_s = time.perf_counter() - t0
            for _ in range(args.warmup):
                state, m = step(state, batch, hp)
                float(m["loss"])
            times = []
            c0, w0 = os.times(), time.perf_counter()
            for _ in range(args.steps):
                t = time.perf_counter()
                state, m = step(state, batch, hp)
                float(m["loss"])
                times.append(time.perf_counter() - t)
            c1, w1 = os.times(), time.perf_counter()
        util = ((c1.user - c0.user) + (c1.system - c0.system)) / (w1 - w0)
        dt = float(np.median(times))
        tps = B * T / dt
        mfu = accounting.mfu(tps, fpt, mfu_device_count(), peak)  # CPU: virtual devices share the peak
        mfu_ref = accounting.mfu(tps, fpt, mfu_device_count(), args.ref_peak)
        rows.append((name, f"{d}/{L}/{H}", counts.non_embedding, counts.total, tps, mfu, mfu_ref, compile_s, util))
        print(f"  {name}: {tps:,.0f} tok/s  MFU {mfu:.3f} (vs ref peak {mfu_ref:.3f})  step {dt * 1e3:.0f} ms  "
              f"compile {compile_s:.1f}s  cpu_util {util:.2f}", flush=True)

    print()
    ref = f"{args.ref_peak / 1e9:.0f}G"
    print(f"| model | d/L/H | N_nonemb | N_total | tok/s | MFU vs probe {peak / 1e9:.0f}G | MFU vs {ref} | "
          f"compile s | cpu_util |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, shape, ne, tot, tps, mfu, mref, cs, util in rows:
        print(f"| {name} | {shape} | {ne:,} | {tot:,} | {tps:,.0f} | {mfu:.2f} | {mref:.2f} | {cs:.1f} | {util:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
