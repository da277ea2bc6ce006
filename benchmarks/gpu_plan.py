"""GPU planning on this CPU-only host, measured: deviceless XLA:GPU compiles of the real programs.

    python3 benchmarks/gpu_plan.py                 # all three parts (the sweep takes tens of minutes)
    python3 benchmarks/gpu_plan.py --parts layout,h200

Three parts, each printing its numbers and tables (docs/planning-gpu.md quotes them):

* ``layout``: the GPT-3 125M train step (d 768, 12 layers, V 50304, seq 2048, bf16, 8 sequences
  per GPU, FSDP over 8 x H100), cuDNN and XLA (``dot_product``) attention, scanned and unrolled
  layers, compiled with the model's elementwise recompute under scan off (how the model was
  before: ``scaling.model.RECOMPUTE_UNDER_SCAN = False``) and on; remat ``full`` for reference;
  the old memory model (``aot.estimated_bytes``) beside each.
* ``h200``: ``scaling plan`` of the GPU shapes of ``benchmarks/train_step.py --device gpu``
  (125M, 350M, 1.3B; seq 2048, bf16, 8 sequences per GPU) on ``h200-x8``: every cell compiled,
  auto-fitted if needed.
* ``sweep``: ``scaling plan experiments/chinchilla_isoflop.py --target h100-x64`` (81 cells),
  as the CLI runs it; it checks every cell's ``memory_source`` is ``compiled`` and ``fits``, and
  prints the per-shape table, the wall time and this process's peak RSS.
* ``model`` (not in the default): the step-time model alone for the same sweep (no compile).

The machine may be shared: wall times are what this run saw (``cpu_util`` says how much of
the cores it had).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import time

os.environ["JAX_PLATFORMS"] = "cpu"  # before JAX starts: compile for GPUs without opening one
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

GIB = 2**30
GPT3 = {"125M": (768, 12, 12), "350M": (1024, 24, 16), "1.3B": (2048, 24, 16)}  # as benchmarks/train_step.py


def gpt3_cell(name: str, *, per_gpu: int = 8, gpus: int = 8, **model_kw):
    from scaling.config import Cell, MeshConfig, ModelConfig

    d, L, H = GPT3[name]
    cfg = ModelConfig(vocab_size=50304, seq_len=2048, d_model=d, n_layers=L, n_heads=H, kv_size=d // H,
                      ffw_size=4 * d, compute_dtype="bfloat16", name=name, **model_kw)
    b = per_gpu * gpus
    return Cell(model=cfg, tokens=b * 2048 * 1000, batch_size=b, eval_batch_size=b, mesh=MeshConfig(data=1, fsdp=-1),
                name=f"gpt3-{name}")


def cpu_util(c0, w0) -> float:
    c1 = os.times()
    return ((c1.user - c0.user) + (c1.system - c0.system)) / max(time.perf_counter() - w0, 1e-9)


def part_layout() -> None:
    from scaling import aot, model
    from scaling.targets import parse_target

    t = parse_target("h100-x8")
    devices = t.devices()
    print(f"\n## layout: GPT-3 125M train step on {t.name} ({t.topology}), fsdp=8, 8 sequences per GPU")
    print("| attention | layers | remat | elementwise recompute under scan | compiled GiB/GPU | old estimate GiB | "
          "compile s |")
    print("|---|---|---|---|---|---|---|")
    cases = [("cudnn", True, "none", False), ("cudnn", True, "none", True), ("cudnn", False, "none", True),
             ("dot_product", True, "none", False), ("dot_product", True, "none", True),
             ("dot_product", False, "none", True), ("cudnn", True, "full", True)]
    for att, scan, remat, recompute in cases:
        model.RECOMPUTE_UNDER_SCAN = recompute
        cell = gpt3_cell("125M", attention=att, scan_layers=scan, remat=remat)
        res = aot.compile_shape(cell, t, devices)
        est = aot.estimated_bytes(cell, aot.target_mesh_shape(cell, t))
        tag = ("on" if recompute else "off (before)") if scan else "n/a"
        print(f"| {att} | {'scanned' if scan else 'unrolled'} | {remat} | {tag} | "
              f"{res['hbm_bytes'] / GIB:.2f} | {est / GIB:.2f} | {res['compile_s']:.1f} |"
              + (f" error: {res['error']}" if res["error"] else ""), flush=True)
    model.RECOMPUTE_UNDER_SCAN = True


def part_h200() -> bool:
    from scaling import accounting, aot
    from scaling.sweep import plan_row
    from scaling.targets import parse_target

    t = parse_target("h200-x8")
    cells = [gpt3_cell(n) for n in GPT3]
    cells = [dataclasses.replace(c, model=c.model.for_backend("gpu")) for c in cells]  # cuDNN, scanned
    rows = [plan_row(c, accounting.count_params(c.model), accounting.flops_per_token_all(c.model), target=None,
                     est_rate=None) for c in cells]
    print(f"\n## h200: benchmarks/train_step.py GPU shapes on {t.name} ({t.topology}), 8 sequences per GPU", flush=True)
    w0, c0 = time.perf_counter(), os.times()
    _, rows, _ = aot.plan_for_target(cells, rows, t, progress=lambda m: print(m, flush=True))
    print(f"\n{len(rows)} cells in {time.perf_counter() - w0:.0f} s (cpu_util {cpu_util(c0, w0):.2f}); usable "
          f"{t.hbm_bytes / GIB:.1f} of {t.card_bytes / GIB:.1f} GiB per GPU")
    print(aot.shape_table(rows))
    ok = all(r["memory_source"] == "compiled" and r["fits"] for r in rows)
    print(f"all compiled and fitting: {ok}")
    return ok


def part_sweep() -> bool:
    from scaling import aot
    from scaling.launch import commands
    from scaling.sweep import load_sweep

    exp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "experiments", "chinchilla_isoflop.py")
    print("\n## sweep: scaling plan experiments/chinchilla_isoflop.py --target h100-x64", flush=True)
    w0, c0 = time.perf_counter(), os.times()
    p = commands.plan_sweep(load_sweep(exp), target="h100-x64")
    wall = time.perf_counter() - w0
    rows = [r for r in p.rows if r.get("target")]
    compiled = sum(r["memory_source"] == "compiled" for r in rows)
    fit = sum(bool(r["fits"]) for r in rows)
    refit = [r for r in rows if r.get("fit")]
    shapes = len({(r["n_total"], r["n_layers"], r["d_model"], r["remat"], r["grad_accum"], r["mesh"],
                   r["scan_layers"]) for r in rows})
    print(f"\n{len(rows)} cells: {compiled} compiled, {fit} fit; {shapes} distinct shapes; {len(refit)} refitted "
          f"({', '.join(sorted({r['fit'] for r in refit}))}); wall {wall / 60:.1f} min (cpu_util "
          f"{cpu_util(c0, w0):.2f}); peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB; "
          f"sweep time on h100-x64 {aot.hours(aot.total_time(p.rows))} (step-time model)")
    print(aot.shape_table(p.rows))
    return compiled == fit == len(rows) == 81


def part_model() -> None:
    """The step-time model alone for the sweep's shapes on h100-x64 (no compile: seconds), using the
    grad_accum the compiled plan chose (``--accum N_TOTAL=K,...``, default the measured plan's)."""
    from scaling import accounting, aot
    from scaling.sweep import load_sweep, plan
    from scaling.targets import parse_target

    exp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "experiments", "chinchilla_isoflop.py")
    t = parse_target("h100-x64")
    p = plan(load_sweep(exp), estimate=False, backend="gpu")
    print(f"\n## model: the step-time model for chinchilla_isoflop on {t.name}, grad_accum as compiled")
    print("| N (total) | grad_accum | step s | bound | MFU 6N | MFU PaLM | cells |")
    print("|---|---|---|---|---|---|---|")
    total, seen = 0.0, {}
    for c, r in zip(p.cells, p.rows):
        c = dataclasses.replace(c, grad_accum=ACCUM.get(r["n_total"], 1))
        m = accounting.gpu_step_model(c, {"data": 1, "fsdp": 64, "tensor": 1}, t)
        total += m["step_s"] * c.steps
        mf = accounting.mfus(c.model, c.tokens_per_step / m["step_s"], t.chips, t.peak_flops)
        key = (r["n_total"], c.grad_accum)
        seen.setdefault(key, [m, mf, 0])[2] += 1
    for (n, ga), (m, mf, k) in sorted(seen.items()):
        print(f"| {n:,} | {ga} | {m['step_s']:.3g} | {m['bound']} | {mf['mfu_6n']:.2f} | {mf['mfu_palm']:.2f} | {k} |")
    print(f"sweep time on {t.name}: {aot.hours(total)} (model)")


ACCUM = {8516874240: 2, 12146404992: 2}  # the cells the compiled h100-x64 plan refitted (grad_accum 2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="layout,h200,sweep", help="comma list of layout, h200, sweep, model")
    args = ap.parse_args(argv)
    import jax

    jax.config.update("jax_platforms", "cpu")
    ok = True
    for part in args.parts.split(","):
        res = {"layout": part_layout, "h200": part_h200, "sweep": part_sweep, "model": part_model}[part]()
        ok = ok and res is not False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
