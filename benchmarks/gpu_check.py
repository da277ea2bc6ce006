"""One-command GPU check: plan, train and time scaling's real programs on this machine's GPU.

    python3 benchmarks/gpu_check.py            # on a GPU machine (at most ~8 minutes); exit 1 on any failure
    python3 benchmarks/gpu_check.py --dry      # anywhere (CPU): plan the same cells deviceless, train nothing

Real mode, on one GPU of the machine (its kind picks the target: H100, H200 or A100 80 GB):

(a) **plans** four small cells covering every GPU attention path and both layer layouts
    (:func:`small_cells`: cuDNN scanned, cuDNN unrolled, XLA ``dot_product`` scanned, ``einsum``
    unrolled) by compiling them deviceless for the target in a child process with
    ``JAX_PLATFORMS=cpu`` (exactly what ``scaling plan --target`` does on a CPU host), then
    **trains** each with ``scaling.train.train`` (synthetic data, a few steps), each in its own
    process so that
(b) its measured peak device memory (``memory_stats()["peak_bytes_in_use"]``) is its own, printed
    next to the deviceless-compiled figure;
(c) **times** the train step at GPT-3 125M / 350M / 1.3B, seq 2048, bf16, cuDNN, scanned, 8
    sequences (``benchmarks/train_step.py``'s runner), printing tok/s, MFU 6N and MFU PaLM (attention
    counted) beside the step-time model's figures;
(d) exits non-zero if anything failed (a cell that did not train, a measured peak above the
    card's usable memory, a timing that did not run).

Dry mode runs (a) without training: the same four cells compiled deviceless (a table with
``compiled`` GiB per GPU), and the step-time model for the three timing shapes.  Nothing here
has run on a GPU yet: the numbers real mode prints are still to be measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

GIB = 2**30
KINDS = (("h200", "h200"), ("h100", "h100"), ("a100", "a100-80gb"))  # device_kind substring -> target prefix
TIMING = ("125M", "350M", "1.3B")


def small_cells(d_model: int = 256, n_layers: int = 4):
    """Four small cells: every GPU attention path (cuDNN, XLA dot_product, einsum) and both layouts.

    ``d_model`` (a multiple of 64) and ``n_layers`` scale them: smaller in the test of the dry mode.
    """
    from scaling.config import Cell, DataConfig, MeshConfig, ModelConfig

    base = ModelConfig(vocab_size=512, seq_len=256, d_model=d_model, n_layers=n_layers, n_heads=d_model // 64, kv_size=64,
                       ffw_size=4 * d_model, compute_dtype="bfloat16")
    variants = (("cudnn", True), ("cudnn", False), ("dot_product", True), ("einsum", False))
    return [Cell(model=dataclasses.replace(base, attention=a, scan_layers=s), tokens=10 * 32 * 256, batch_size=32,
                 eval_batch_size=32, eval_batches=1, eval_every=0, checkpoint_every=1000, mesh=MeshConfig(data=-1),
                 data=DataConfig(task="synthetic_markov"), name=f"check-{a}-{'scanned' if s else 'unrolled'}")
            for a, s in variants]


def target_name(kind: str) -> str:
    k = kind.lower()
    for sub, prefix in KINDS:
        if sub in k:
            return f"{prefix}-x1"
    raise SystemExit(f"error: GPU {kind!r}: gpu_check knows H100, H200 and A100 80GB (scaling/gpu_targets/)")


def plan_cells(target: str) -> list[dict]:
    """Deviceless compile of :func:`small_cells` for ``target`` (this process must be on CPU)."""
    from scaling import aot
    from scaling.targets import parse_target

    t = parse_target(target)
    devices = t.devices()
    out = []
    for cell in small_cells():
        res = aot.compile_shape(cell, t, devices)  # the train step: the largest of the three here
        out.append({"name": cell.name, "gib": res["hbm_bytes"] / GIB, "source": res["memory_source"],
                    "compile_s": res["compile_s"], "error": res["error"], "fits": res["hbm_bytes"] <= t.hbm_bytes,
                    "usable_gib": t.hbm_bytes / GIB})
    return out


def timing_cell(size: str):
    from train_step import GPU_SIZES  # the same GPT-3 shapes benchmarks/train_step.py --device gpu times

    from scaling.config import Cell, MeshConfig, ModelConfig

    d, L, H = GPU_SIZES[size]
    cfg = ModelConfig(vocab_size=50304, seq_len=2048, d_model=d, n_layers=L, n_heads=H, kv_size=d // H,
                      ffw_size=4 * d, compute_dtype="bfloat16", attention="cudnn", scan_layers=True, name=size)
    return Cell(model=cfg, tokens=8 * 2048 * 100, batch_size=8, eval_batch_size=8, mesh=MeshConfig(data=-1))


def modelled(size: str, target: str) -> dict:
    from scaling import accounting
    from scaling.targets import parse_target

    t, cell = parse_target(target), timing_cell(size)
    m = accounting.gpu_step_model(cell, {"data": 1, "fsdp": 1, "tensor": 1}, t)
    return {"step_s": m["step_s"], **accounting.mfus(cell.model, cell.tokens_per_step / m["step_s"], 1, t.peak_flops)}


def dry(target: str) -> int:
    import jax

    jax.config.update("jax_platforms", "cpu")
    print(f"gpu_check --dry: the four check cells compiled deviceless for {target} on this host (nothing trains)\n")
    print("| cell | attention | layers | GiB/GPU | source | fits | compile s |")
    print("|---|---|---|---|---|---|---|")
    ok = True
    for cell, p in zip(small_cells(), plan_cells(target)):
        ok = ok and p["error"] is None and p["fits"]
        print(f"| {cell.name} | {cell.model.attention} | {'scanned' if cell.model.scan_layers else 'unrolled'} | "
              f"{p['gib']:.3f} | {p['source']} | {p['fits']} | {p['compile_s']:.1f} |"
              + (f" error: {p['error']}" if p["error"] else ""))
    print(f"\ntiming shapes (seq 2048, bf16, cuDNN, scanned, 8 sequences, 1 GPU), step-time model only:\n")
    print("| size | step s | source | MFU 6N | MFU PaLM |")
    print("|---|---|---|---|---|")
    for size in TIMING:
        m = modelled(size, target)
        print(f"| {size} | {m['step_s']:.3f} | model | {m['mfu_6n']:.2f} | {m['mfu_palm']:.2f} |")
    return 0 if ok else 1


def train_one(index: int, out_dir: str) -> int:
    """Child process: train small cell ``index`` on this GPU; print one JSON line with its peak memory."""
    import jax

    from scaling.train import train

    cell = small_cells()[index]
    t0 = time.perf_counter()
    summary = train(cell, os.path.join(out_dir, cell.name))
    stats = jax.devices()[0].memory_stats() or {}
    from scaling.rundir import RunDir

    used = RunDir(os.path.join(out_dir, cell.name)).read_cell().model.attention
    print(json.dumps({"name": cell.name, "state": summary.get("state"), "steps": summary.get("steps"),
                      "peak_gib": stats.get("peak_bytes_in_use", 0) / GIB, "wall_s": time.perf_counter() - t0,
                      "attention_used": used}))
    return 0 if summary.get("state") == "done" else 1


def time_one(size: str, steps: int = 10, warmup: int = 3) -> dict:
    import jax

    from train_step import Runner, synthetic_batch

    from scaling import accounting, sharding
    from scaling.config import MeshConfig

    cell = timing_cell(size)
    mesh = sharding.make_mesh(MeshConfig(data=1), devices=jax.devices()[:1])
    r = Runner(cell, mesh, synthetic_batch(8, 2048, 50304))
    for _ in range(warmup):
        r.step(timed=False)
    for _ in range(steps):
        r.step()
    dt = statistics.median(r.times)
    peak = accounting.peak_flops(jax.devices()[0], dtype="bfloat16")[0]
    return {"step_s": dt, "tok_s": cell.tokens_per_step / dt, "compile_s": r.compile_s,
            **accounting.mfus(cell.model, cell.tokens_per_step / dt, 1, peak)}


def real() -> int:
    import jax

    if jax.default_backend() != "gpu":
        print(f"error: JAX sees no GPU (backend {jax.default_backend()!r}); run with --dry on a CPU host, or install "
              f"jax[cuda12] (pip install 'scaling[gpu]')", file=sys.stderr)
        return 2
    kind = jax.devices()[0].device_kind
    target = target_name(kind)
    t_start = time.perf_counter()
    failures = []
    env = dict(os.environ, JAX_PLATFORMS="cpu")  # the plan: deviceless, as on a CPU host
    plan = subprocess.run([sys.executable, __file__, "--plan-json", target], env=env, capture_output=True, text=True)
    if plan.returncode:
        print(plan.stderr[-2000:], file=sys.stderr)
        return 1
    planned = json.loads(plan.stdout.strip().splitlines()[-1])
    print(f"gpu_check on {kind} (target {target}): (a)+(b) four cells planned deviceless, then trained\n")
    print("| cell | compiled GiB/GPU (deviceless) | measured peak GiB | measured / compiled | attention used | state |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as out:
        for i, p in enumerate(planned):
            one_gpu = dict(os.environ, CUDA_VISIBLE_DEVICES=os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0])
            run = subprocess.run([sys.executable, __file__, "--train-one", str(i), out], env=one_gpu,
                                 capture_output=True, text=True)
            try:
                m = json.loads(run.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                m = {"state": f"failed (exit {run.returncode}): {run.stderr.strip()[-300:]}", "peak_gib": 0.0,
                     "attention_used": "-"}
            if m["state"] != "done" or m["peak_gib"] > p["usable_gib"]:
                failures.append(p["name"])
            ratio = m["peak_gib"] / p["gib"] if p["gib"] else float("nan")
            print(f"| {p['name']} | {p['gib']:.3f} | {m['peak_gib']:.3f} | {ratio:.2f} | {m['attention_used']} | "
                  f"{m['state']} |", flush=True)
    print("\n(c) train step, seq 2048, bf16, cuDNN, scanned, 8 sequences, 1 GPU; model = scaling.accounting's "
          "step-time model\n")
    print("| size | step s | tok/s | MFU 6N | MFU PaLM | model step s | model MFU PaLM | compile s |")
    print("|---|---|---|---|---|---|---|---|")
    for size in TIMING:
        try:
            r, m = time_one(size), modelled(size, target)
            print(f"| {size} | {r['step_s']:.3f} | {r['tok_s']:,.0f} | {r['mfu_6n']:.3f} | {r['mfu_palm']:.3f} | "
                  f"{m['step_s']:.3f} | {m['mfu_palm']:.2f} | {r['compile_s']:.1f} |", flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure, then exit non-zero
            failures.append(size)
            print(f"| {size} | failed: {type(e).__name__}: {' '.join(str(e).split())[:200]} |", flush=True)
    verdict = f"FAILED: {', '.join(failures)}" if failures else "all passed"
    print(f"\n{time.perf_counter() - t_start:.0f} s; {verdict}")
    return 1 if failures else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry", action="store_true", help="plan only, deviceless (any host)")
    ap.add_argument("--target", default="h100-x1", help="--dry: the GPU target to plan for (default h100-x1)")
    ap.add_argument("--plan-json", metavar="TARGET", help=argparse.SUPPRESS)  # child: the deviceless plan
    ap.add_argument("--train-one", nargs=2, metavar=("INDEX", "DIR"), help=argparse.SUPPRESS)  # child: one cell
    args = ap.parse_args(argv)
    if args.plan_json:
        import jax

        jax.config.update("jax_platforms", "cpu")
        print(json.dumps(plan_cells(args.plan_json)))
        return 0
    if args.train_one:
        return train_one(int(args.train_one[0]), args.train_one[1])
    if args.dry:
        return dry(args.target)
    return real()


if __name__ == "__main__":
    sys.exit(main())
