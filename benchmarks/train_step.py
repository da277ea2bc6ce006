"""Training-step throughput and MFU of scaling's real programs, on this machine's CPU or one GPU.

    python3 benchmarks/train_step.py                  # CPU: defaults vs the reference path, 0.1M / 1M / 5M
    python3 benchmarks/train_step.py --device gpu     # GPU: 125M / 350M / 1.3B, seq 2048, bf16, cuDNN attention

Every number comes from the programs the trainer runs: :func:`scaling.programs.lower_programs`
(the real init, the real jitted train step with AdamW and the traced hyperparameter vector)
on synthetic packed batches (2 segments per row), timing ``--steps`` steps after ``--warmup``
(median step).  MFU uses Chinchilla FLOPs per token (``accounting.flops_per_token``) against
the device's peak (``accounting.peak_flops``: a fresh f32 matmul probe on CPU, the vendor bf16
figure on a GPU), printed next to MFU 6N and MFU PaLM (attention FLOPs counted, Chowdhery et al.
2022 App. B; ``accounting.mfus``).  ``cpu_util`` = (user + sys CPU s) / wall s over the timed steps, so a reader
can tell whether other processes shared the cores.

CPU mode runs, for each size, the **defaults** (``scan_layers``, ``attention`` and ``remat``
left to ``ModelConfig.resolve('cpu')``) and the **reference** path (``--no-scan-layers --remat
none --attention einsum``: the model before these options existed), interleaved step by step
so both see the same machine load, plus the scanned layout for information.
GPU mode (``--device gpu``) runs GPT-3 125M / 350M / 1.3B shapes (Brown et al. 2020) at seq
2048, bf16 compute (f32 params and accumulation), cuDNN fused attention, on one GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

CPU_SIZES = {  # name -> (d_model, n_layers, n_heads); kv = d/heads, ffw = 4d; seq 256, vocab 4096
    "0.1M": (64, 2, 2),
    "1M": (128, 5, 4),
    "5M": (256, 6, 4),
    "20M": (512, 6, 8),
}
GPU_SIZES = {  # GPT-3 Table 2.1 shapes; vocab 50304 (GPT-2's 50257 padded to a multiple of 128)
    "125M": (768, 12, 12),
    "350M": (1024, 24, 16),
    "1.3B": (2048, 24, 16),
}


def synthetic_batch(B: int, T: int, V: int):
    import numpy as np

    rng = np.random.default_rng(0)
    half = T // 2
    return {
        "decoder_input_tokens": rng.integers(1, V, (B, T), dtype=np.int32),
        "decoder_target_tokens": rng.integers(1, V, (B, T), dtype=np.int32),
        "decoder_segment_ids": np.concatenate([np.ones((B, half), np.int32), np.full((B, T - half), 2, np.int32)], 1),
        "decoder_positions": np.concatenate([np.arange(half), np.arange(T - half)]).astype(np.int32)[None].repeat(B, 0),
        "decoder_loss_weights": np.ones((B, T), np.float32),
    }


class Runner:
    """One model's compiled init + train step, its state and batch: ``step()`` runs and waits for one update."""

    def __init__(self, cell, mesh, batch_np):
        import jax

        from scaling.optim import hyperparams
        from scaling.programs import TRAIN_KEYS, compile_init, lower_programs

        t0 = time.perf_counter()
        progs = lower_programs(cell, mesh)
        init, self.fn = compile_init(progs.init), progs.step.compile()
        self.compile_s = time.perf_counter() - t0
        self.state = init(jax.random.PRNGKey(0))
        self.batch = {k: jax.device_put(batch_np[k], progs.batch_sharding) for k in TRAIN_KEYS}
        self.hp = jax.device_put(hyperparams(cell.optim, 1000, 20), progs.replicated)
        self.times: list[float] = []

    def step(self, timed: bool = True) -> None:
        t = time.perf_counter()
        self.state, m = self.fn(self.state, self.batch, self.hp)
        float(m["loss"])
        if timed:
            self.times.append(time.perf_counter() - t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--sizes", help="comma list (CPU: 0.1M,1M,5M,20M; GPU: 125M,350M,1.3B)")
    ap.add_argument("--dtype", default=None, choices=("float32", "bfloat16"),
                    help="compute dtype (default: bfloat16 with f32 accumulation)")
    ap.add_argument("--activation", default=None, choices=("gelu", "relu", "swiglu"),
                    help="default: relu on CPU (the fast path there), gelu on GPU (GPT-3)")
    ap.add_argument("--batch", type=int, default=None, help="sequences per step (CPU 32, GPU 8)")
    ap.add_argument("--seq-len", type=int, default=None, help="CPU 256, GPU 2048")
    ap.add_argument("--devices", type=int, default=2, help="CPU: virtual devices, data parallel")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-peak", action="store_true", help="CPU: reuse the cached peak instead of re-measuring")
    args = ap.parse_args(argv)
    gpu = args.device == "gpu"
    if "jax" not in sys.modules and not gpu:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={args.devices}".strip()
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

    import jax

    from scaling import accounting, sharding
    from scaling.config import Cell, MeshConfig, ModelConfig, OptimConfig
    from scaling.inputs import mfu_device_count
    from scaling.programs import backend_name

    if gpu and jax.default_backend() != "gpu":
        print(f"error: --device gpu: JAX sees no GPU (backend {jax.default_backend()!r}); "
              f"install jax[cuda12] (pip install 'scaling[gpu]')", file=sys.stderr)
        return 2
    sizes = GPU_SIZES if gpu else CPU_SIZES
    names = (args.sizes or ",".join(list(sizes)[:3])).split(",")
    B = args.batch or (8 if gpu else 32)
    T = args.seq_len or (2048 if gpu else 256)
    V = 50304 if gpu else 4096
    dtype = args.dtype or "bfloat16"
    act = args.activation or ("gelu" if gpu else "relu")
    dev = jax.devices()[0]
    peak, source = accounting.peak_flops(dev, refresh=not (args.no_peak or gpu),
                                         dtype="bfloat16" if gpu else "float32")
    n_dev = 1 if gpu else args.devices
    mesh = sharding.make_mesh(MeshConfig(data=-1), devices=jax.devices()[:n_dev])
    print(f"device: {dev.device_kind} x{n_dev} ({dev.platform}); peak {peak / 1e12:.3g} TFLOP/s per device ({source})")
    print(f"B={B} T={T} V={V} dtype {dtype} activation {act}")
    batch_np = synthetic_batch(B, T, V)

    def cell_of(name, **options):
        d, L, H = sizes[name]
        cfg = ModelConfig(vocab_size=V, seq_len=T, d_model=d, n_layers=L, n_heads=H, kv_size=d // H, ffw_size=4 * d,
                          activation=act, compute_dtype=dtype, **options)
        return Cell(model=cfg.resolve(backend_name()), tokens=B * T * 1000, batch_size=B,
                    optim=OptimConfig(warmup_steps=10), eval_batch_size=B, mesh=MeshConfig(data=-1))

    variants = ({"cuDNN, scanned": dict(attention="cudnn")} if gpu else
                {"defaults": {}, "reference": dict(scan_layers=False, remat="none", attention="einsum"),
                 "scanned": dict(scan_layers=True)})
    rows = []
    for name in names:
        runners = {}
        for v, opts in variants.items():
            c = cell_of(name, **opts)
            runners[v] = (c, Runner(c, mesh, batch_np))
        for r in runners.values():
            for _ in range(args.warmup):
                r[1].step(timed=False)
        c0, w0 = os.times(), time.perf_counter()
        for _ in range(args.steps):  # interleaved: every variant sees the same machine load
            for _, r in runners.values():
                r.step()
        c1, w1 = os.times(), time.perf_counter()
        util = ((c1.user - c0.user) + (c1.system - c0.system)) / (w1 - w0)
        for v, (c, r) in runners.items():
            dt = statistics.median(r.times)
            tps = B * T / dt
            fpt = accounting.flops_per_token(c.model, "chinchilla")
            n_dev = mfu_device_count() if not gpu else 1
            mfu = accounting.mfu(tps, fpt, n_dev, peak)
            two = accounting.mfus(c.model, tps, n_dev, peak)  # 6N and PaLM (attention counted)
            counts = accounting.count_params(c.model)
            rows.append((name, v, c.model, counts, tps, mfu, two, r.compile_s, util))
            print(f"  {name} {v}: {tps:,.0f} tok/s  MFU {mfu:.3f} (6N {two['mfu_6n']:.3f}, PaLM {two['mfu_palm']:.3f})  "
                  f"step {dt * 1e3:.1f} ms  compile {r.compile_s:.1f}s  "
                  f"(scan {c.model.scan_layers}, attention {c.model.attention}, remat {c.model.remat})", flush=True)
        if not gpu:
            ref = statistics.median(runners["reference"][1].times)
            print(f"  {name}: defaults / reference step time = {statistics.median(runners['defaults'][1].times) / ref:.3f}"
                  f" (<= 1: not slower); cpu_util {util:.2f}", flush=True)

    print()
    print("| model | variant | d/L/H | N_total | scan / attention / remat | tok/s | MFU | MFU 6N | MFU PaLM | compile s "
          "| cpu_util |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, v, m, counts, tps, mfu, two, cs, util in rows:
        print(f"| {name} | {v} | {m.d_model}/{m.n_layers}/{m.n_heads} | {counts.total:,} | "
              f"{m.scan_layers} / {m.attention} / {m.remat} | {tps:,.0f} | {mfu:.2f} | {two['mfu_6n']:.2f} | "
              f"{two['mfu_palm']:.2f} | {cs:.1f} | {util:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
