"""Planning a sweep against an accelerator it will run on: compile every shape before launching.

``plan_for_target(plan, target)`` takes a planned sweep (its cells resolved for the target's
backend) and AOT-compiles each distinct shape's train step (and the init and eval programs of
the largest shape, or of every shape with ``all_programs``) for the target's topology with the
cell's mesh, on this CPU-only host: libtpu compiles for any TPU topology, XLA:GPU compiles
deviceless for a described GPU (:mod:`scaling.targets`).  So memory is the compiler's own before
any accelerator time is spent.  Per cell it adds:

* ``hbm_gib_per_chip``: arguments + outputs - aliases + temporaries of the largest program
  (``memory_analysis()``; the donated train state is an alias, counted once), on GPU plus the
  cuDNN attention workspace the deviceless module cannot show
  (:func:`scaling.accounting.cudnn_workspace_bytes`); ``memory_source``: ``"compiled"``, or
  ``"estimate"`` where compiling is impossible (a GPU target without the ``gpu-aot`` extra:
  the plan says so in one line); ``fits`` against the target's memory per chip (on GPU the card
  less its reserve, :attr:`scaling.targets.Target.hbm_bytes`: XLA:GPU never refuses a program);
* ``compile_s`` (its shape's compile, paid once per shape), ``step_s`` and ``step_model``: on TPU
  XLA's cost-model step time (a loop's body is counted once, so it is scaled by the micro-batch
  count and, for scanned layers, by the layer count: :func:`scan_correction`); on GPU, which has
  no cost analysis, the step-time model :func:`scaling.accounting.gpu_step_model`.  From it
  ``mfu`` (the cell's FLOP convention), ``mfu_6n`` and ``mfu_palm`` (attention FLOPs counted,
  PaLM App. B), and ``est_wall_s`` = steps x step_s;
* ``fit``: what auto-fit changed.  A cell that does not fit is retried with variants of its
  mesh (FSDP over every chip, tensor parallelism), rematerialisation (``dots``, ``full``),
  micro-batches (``grad_accum``) and, on GPU, the layer layout (unrolled instead of scanned),
  cheapest first by an assumed cost (:func:`fit_candidates`), and the first that fits is written
  into the planned cell (its run id follows ``grad_accum``, which changes the summation order;
  mesh, remat and layout are not part of the run id).
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from typing import Callable, Iterator

from scaling.config import Cell, ConfigError, MeshConfig
from scaling.targets import GIB, Target, gpu_aot_problem

_NEEDED = re.compile(r"(?:required|requires?)[^(]*\(([\d.]+)([KMGT])\)?", re.I)
_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


# ---------------------------------------------------------------------------------------- meshes
def target_mesh_shape(cell: Cell, target: Target) -> dict[str, int]:
    """The cell's mesh over the target's chips (ConfigError naming the mesh and the chips when it does not divide)."""
    try:
        return cell.mesh.resolve(target.chips)
    except ConfigError as e:
        raise ConfigError(f"cell {cell.run_id}: {e} (target {target.name} has {target.chips} chips)") from None


def validate_for_target(cell: Cell, target: Target) -> dict[str, int]:
    """Every batch and mesh divisibility of ``cell`` on ``target`` (one-line ConfigError with the fix)."""
    from scaling import sharding

    shape = target_mesh_shape(cell, target)
    try:
        sharding.check_divisibility(shape, batch_size=cell.batch_size, grad_accum=cell.grad_accum,
                                    model_cfg=cell.model, process_count=target.hosts,
                                    eval_batch_size=cell.eval_batch_size)
    except ConfigError as e:
        raise ConfigError(f"cell {cell.run_id} on {target.name} ({target.chips} chips, {target.hosts} hosts): {e}") \
            from None
    return shape


# ---------------------------------------------------------------------------------------- compiling
def _memory(compiled) -> float:
    m = compiled.memory_analysis()
    return float(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes)


def _needed_bytes(err: Exception) -> float | None:
    """The HBM a program that ran out of memory at compile time says it needs (libtpu's message)."""
    m = _NEEDED.search(str(err))
    return float(m.group(1)) * _UNITS[m.group(2).upper()] if m else None


def scan_correction(cell: Cell) -> float:
    """Factor from the cost model's step time to the whole step: XLA counts a loop's body once.

    The train step has two loops: the micro-batches (``grad_accum`` iterations, all the
    model's work) and, when scanned, the layers, whose body is ``layer / (rest + layer)`` of a
    micro-batch's FLOPs (layer and rest, the readout, from :mod:`scaling.accounting`).  So the
    factor is ``grad_accum x (rest + L x layer) / (rest + layer)`` (the layer part is 1 unrolled).
    """
    from scaling import accounting

    cfg = cell.model
    if not cfg.scan_layers or cfg.n_layers == 1:
        return float(cell.grad_accum)
    layer = accounting.chinchilla_forward_flops(dataclasses.replace(cfg, n_layers=1), embeddings=False)
    rest = 2.0 * cfg.seq_len * cfg.d_model * cfg.vocab_size
    return cell.grad_accum * (rest + cfg.n_layers * layer) / (rest + layer)


def compile_shape(cell: Cell, target: Target, devices, *, programs=("step",)) -> dict:
    """AOT-compile ``cell``'s programs for ``target``: ``{hbm_bytes, compile_s, step_s, error, ...}``.

    A program that does not fit is not an exception here: libtpu refuses it at compile time
    and says how much it needs, which becomes ``hbm_bytes``; XLA:GPU compiles it anyway and
    ``fits`` is decided by the caller from the bytes.
    """
    import jax

    from scaling import sharding
    from scaling.programs import compile_init, lower_programs

    t0 = time.perf_counter()
    shape = validate_for_target(cell, target)
    mesh = sharding.make_mesh(MeshConfig(**{k: v for k, v in shape.items()}), devices=devices)
    out = {"hbm_bytes": 0.0, "step_s": None, "error": None, "programs": list(programs), "memory_source": "compiled",
           "step_model": "XLA cost model" if target.backend == "tpu" else "GPU step-time model"}
    try:
        progs = lower_programs(cell, mesh)
        for name in programs:
            low = getattr(progs, name)
            try:
                c = compile_init(low) if name == "init" else low.compile()
            except jax.errors.JaxRuntimeError as e:
                need = _needed_bytes(e)
                if need is None or "RESOURCE_EXHAUSTED" not in str(e):
                    raise
                out["hbm_bytes"] = max(out["hbm_bytes"], need)
                out["error"] = f"{name}: out of memory at compile time"
                break  # the cell does not fit: its other programs are not worth compiling
            out["hbm_bytes"] = max(out["hbm_bytes"], _memory(c))
            if name == "step" and target.backend == "tpu":
                ca = c.cost_analysis()
                ca = ca[0] if isinstance(ca, (list, tuple)) else ca
                secs = (ca or {}).get("optimal_seconds")
                out["step_s"] = float(secs) * scan_correction(cell) if secs and secs > 0 else None
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - one shape must not stop the plan; report it
        out["error"] = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
    if target.backend == "gpu":
        _gpu_columns(out, cell, target, shape)
    out["compile_s"] = time.perf_counter() - t0
    return out


def _gpu_columns(out: dict, cell: Cell, target: Target, shape: dict) -> None:
    """GPU step time from the step-time model, and the cuDNN workspace the compiled bytes lack."""
    from scaling import accounting

    rows = cell.batch_size / cell.grad_accum / (shape["data"] * shape["fsdp"])
    ws = accounting.cudnn_workspace_bytes(cell.model, rows, shape["tensor"])
    if out["hbm_bytes"]:
        out["hbm_bytes"] += ws
    out["cudnn_workspace_bytes"] = ws
    model = accounting.gpu_step_model(cell, shape, target)
    out["step_s"], out["step_bound"] = model["step_s"], model["bound"]


def estimated_bytes(cell: Cell, shape: dict) -> float:
    """The memory model of :func:`estimate_gpu` (per device, bytes) for ``cell`` on mesh ``shape``."""
    from scaling import accounting

    cfg = cell.model
    n = accounting.count_params(cfg).total
    shards = shape["fsdp"] * shape["tensor"]
    micro = cell.batch_size // cell.grad_accum // (shape["data"] * shape["fsdp"])
    sbh = cfg.seq_len * micro * cfg.d_model / shape["tensor"]
    per_layer = {"none": 34.0, "dots": 24.0, "full": 2.0}[cfg.remat] * sbh
    logits = 4.0 * cfg.seq_len * micro * cfg.vocab_size / shape["tensor"]
    return 16.0 * n / shards + cfg.n_layers * per_layer + logits


def estimate_gpu(cell: Cell, target: Target) -> dict:
    """Memory of ``cell`` on a GPU target from a model, where it cannot be compiled (no ``gpu-aot`` extra).

    Per device: f32 parameters + gradients + two AdamW moments (16 bytes per parameter,
    sharded over fsdp x tensor), activations per layer after Korthikanti et al. 2022 in bf16
    (``34 s b h`` per layer without remat, about ``24 s b h`` saving only matmul outputs, ``2 s b h``
    saving block inputs; fused attention, so no ``s^2`` term), plus f32 logits.  The compiled
    figures differ from this by up to 2.5x either way (docs/planning-gpu.md), which is why it is
    only the fallback.
    """
    shape = validate_for_target(cell, target)
    out = {"hbm_bytes": estimated_bytes(cell, shape), "compile_s": 0.0, "step_s": None, "error": None,
           "programs": ["estimate"],
           "memory_source": "estimate", "step_model": "GPU step-time model"}
    _gpu_columns(out, cell, target, shape)
    return out


# ---------------------------------------------------------------------------------------- auto-fit
# Assumed relative cost of each fix (extra compute or lost efficiency), to try the cheapest first:
# remat recomputes part of the forward pass; more, smaller micro-batches run the chips less
# efficiently; tensor parallelism adds collectives to every layer.
REMAT_COST = {"none": 1.0, "dots": 1.1, "full": 1.33}
ACCUM_COST = {1: 1.0, 2: 1.05, 4: 1.15, 8: 1.35}
TENSOR_COST = {1: 1.0, 2: 1.2, 4: 1.4, 8: 1.7}
# GPU only: the other layer layout.  Scanned and unrolled layers run the same kernels and, since
# the model recomputes its elementwise chains under scan (scaling.model._elementwise), compile
# to within a few percent of the same memory; unrolled compiles take longer with depth
# (benchmarks/compile_depth.py), so it is tried after the planned layout at a small cost.
LAYOUT_COST = 1.05


def fit_candidates(cell: Cell, target: Target) -> Iterator[tuple[str, Cell]]:
    """``(what changed, cell)`` to try when ``cell`` does not fit, cheapest first by the assumed costs above.

    Variants: the mesh sharded over every chip (FSDP), remat ``dots`` / ``full``, 2/4/8x the
    micro-batches, tensor parallelism 2/4/8 (with FSDP over the rest) and, on GPU targets, the
    other layer layout (:data:`LAYOUT_COST`).  The planned cell's own settings are the baseline
    (cost 1).
    """
    chips = target.chips
    own = cell.mesh.resolve(chips)
    meshes = {(own["fsdp"], own["tensor"]): ("", cell.mesh)}
    for t in TENSOR_COST:
        if chips % t == 0 and (chips // t, t) not in meshes:
            label = f"mesh fsdp={chips // t}" + (f" tensor={t}" if t > 1 else "")
            meshes[(chips // t, t)] = (label, MeshConfig(data=1, fsdp=-1, tensor=t))
    own_scan = cell.model.scan_layers
    layouts = {own_scan: 1.0}
    if target.backend == "gpu" and own_scan is not None:
        layouts[not own_scan] = LAYOUT_COST
    options = []
    for (_, t), (mname, mesh) in meshes.items():
        for remat in REMAT_COST:
            for ga in ACCUM_COST:
                if cell.batch_size % (cell.grad_accum * ga):
                    continue
                for scan, lcost in layouts.items():
                    what = ", ".join(x for x in (mname, f"remat {remat}" if remat != cell.model.remat else "",
                                                 f"grad_accum {cell.grad_accum * ga}" if ga > 1 else "",
                                                 ("layers scanned" if scan else "layers unrolled")
                                                 if scan != own_scan else "") if x)
                    if what:
                        cost = REMAT_COST[remat] * ACCUM_COST[ga] * TENSOR_COST.get(t, 2.0) * lcost
                        options.append((cost, what, mesh, remat, ga, scan))
    for _, what, mesh, remat, ga, scan in sorted(options, key=lambda o: o[0]):
        yield what, dataclasses.replace(cell, mesh=mesh, grad_accum=cell.grad_accum * ga,
                                        model=dataclasses.replace(cell.model, remat=remat, scan_layers=scan))


# ---------------------------------------------------------------------------------------- the plan
def program_shape_key(cell: Cell) -> tuple:
    """What a cell's compiled programs depend on (cells of one key compile once)."""
    return (cell.model, cell.batch_size, cell.grad_accum, cell.eval_batch_size, cell.mesh)


def plan_for_target(cells, rows, target: Target, *, auto_fit: bool = True, only: str | None = None,
                    all_programs: bool = False, progress: Callable[[str], None] | None = None):
    """``(cells, rows, shapes)``: the plan's cells (auto-fitted where needed) and rows with the
    target's columns, and one entry per distinct compiled shape (for the per-shape table).

    ``only``: a regex; only matching run ids are compiled (the rest keep their rows, without
    target columns).  Raises ConfigError for a cell whose batch or mesh cannot divide the target.
    """
    from scaling import accounting

    say = progress or (lambda msg: None)
    cells, rows = list(cells), [dict(r) for r in rows]
    pick = re.compile(only) if only else None
    chosen = [i for i, c in enumerate(cells) if pick is None or pick.search(c.run_id)]
    for i in chosen:  # every divisibility first: nothing is compiled for a plan that cannot run
        validate_for_target(cells[i], target)
    problem = gpu_aot_problem() if target.backend == "gpu" else None
    if problem:  # the one line that says why this GPU plan is a model, not a compile
        say(f"{target.name}: memory is ESTIMATED, not compiled: {problem}")
    devices = target.devices() if not problem else None
    largest = max(chosen, key=lambda i: rows[i]["n_total"], default=None)
    results: dict[tuple, dict] = {}
    shapes: list[dict] = []

    def measure(cell: Cell, full: bool) -> dict:
        key = program_shape_key(cell)
        hit = results.get(key)
        if hit is not None and (not full or len(hit["programs"]) == 3 or hit["programs"] == ["estimate"]):
            return hit
        progs = ("step", "init", "eval") if full else ("step",)
        say(f"[{len(results) + 1}] compiling {'/'.join(progs)} for {cell.run_id} ({cell.model.n_layers} layers, "
            f"d {cell.model.d_model}, remat {cell.model.remat}, grad_accum {cell.grad_accum}, "
            f"layers {'scanned' if cell.model.scan_layers else 'unrolled'}, mesh {target_mesh_shape(cell, target)}) on "
            f"{target.name} ({target.topology})")
        res = (compile_shape(cell, target, devices, programs=progs) if devices is not None
               else estimate_gpu(cell, target))
        res["fits"] = res["error"] is None and res["hbm_bytes"] <= target.hbm_bytes
        say(f"    {res['hbm_bytes'] / GIB:.2f} GiB/chip {res['memory_source']} "
            f"({'fits' if res['fits'] else 'does NOT fit'} in {target.hbm_bytes / GIB:.1f}), {res['compile_s']:.1f} s"
            + (f"; {res['error']}" if res["error"] else ""))
        results[key] = res
        return res

    def hopeless(cell: Cell, res: dict, cand: Cell) -> bool:
        """GPU only (XLA:GPU compiles an oversized program in full, libtpu refuses it in seconds): skip
        a variant whose compiled bytes, predicted as the cell's compiled bytes scaled by the memory
        model's ratio (:func:`estimated_bytes`), exceed the target's memory by more than 10%."""
        if target.backend != "gpu" or res["memory_source"] != "compiled" or res["error"]:
            return False
        ratio = (estimated_bytes(cand, target_mesh_shape(cand, target))
                 / estimated_bytes(cell, target_mesh_shape(cell, target)))
        return res["hbm_bytes"] * ratio > 1.1 * target.hbm_bytes

    for i in chosen:
        cell = cells[i]
        full = all_programs or i == largest
        res, what = measure(cell, full), ""
        if not res["fits"] and auto_fit:
            for w, cand in fit_candidates(cell, target):
                try:
                    if hopeless(cell, res, cand):
                        continue
                    r = measure(cand, full)
                except ConfigError:
                    continue  # this variant does not divide the target: try the next
                if r["fits"]:
                    cell, res, what = cand, r, w
                    break
        if cell is not cells[i]:
            from scaling.sweep import plan_row

            old = rows[i]
            rows[i] = plan_row(cell, accounting.count_params(cell.model), accounting.flops_per_token_all(cell.model),
                               target=old.get("n_target"), est_rate=None)
            cells[i] = cell
        steps = cell.steps - cell.fork_step
        flops = rows[i]["flops_trained"] / max(steps, 1)
        step_s = res["step_s"]
        mfus = (accounting.mfus(cell.model, cell.tokens_per_step / step_s, target.chips, target.peak_flops)
                if step_s else {"mfu_6n": None, "mfu_palm": None})
        rows[i].update(target=target.name, estimate=res["memory_source"] == "estimate",
                       memory_source=res["memory_source"], hbm_gib_per_chip=res["hbm_bytes"] / GIB,
                       usable_gib_per_chip=target.hbm_bytes / GIB, reserve_gib_per_chip=target.reserve_bytes / GIB,
                       fits=res["fits"], compile_s=res["compile_s"], step_s=step_s, step_model=res["step_model"],
                       mfu=(flops / (step_s * target.chips * target.peak_flops) if step_s else None), **mfus,
                       est_wall_s=(steps * step_s if step_s else None), fit=what or None,
                       remat=cell.model.remat, grad_accum=cell.grad_accum, scan_layers=cell.model.scan_layers,
                       attention=cell.model.attention,
                       estimate_gib_per_chip=(estimated_bytes(cell, target_mesh_shape(cell, target)) / GIB
                                              if target.backend == "gpu" else None),
                       mesh=",".join(f"{k}={v}" for k, v in target_mesh_shape(cell, target).items()),
                       target_error=res["error"])
    for key, res in results.items():
        shapes.append(dict(key=key, **res))
    return cells, rows, shapes


def not_fitting(rows) -> list[dict]:
    return [r for r in rows if r.get("target") and not r.get("fits")]


def shape_table(rows) -> str:
    """Markdown: one line per distinct planned shape (N, layers, layout, attention, remat / grad_accum /
    mesh, memory per chip and where it came from, the old model estimate on GPU, fits, compile s,
    step s, the three MFUs, cells)."""
    def key(r):
        return (r["n_total"], r["n_layers"], r["d_model"], r.get("scan_layers"), r.get("attention"), r["remat"],
                r["grad_accum"], r["mesh"])

    gpu = any(r.get("estimate_gib_per_chip") is not None for r in rows)
    head = ("| N (total) | layers | d_model | layout | attention | remat | grad_accum | mesh | GiB/chip | source | "
            + ("old estimate GiB | " if gpu else "") + "fits | compile s | step s | step model | MFU | MFU 6N | "
            "MFU PaLM | cells |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    count: dict = {}
    for r in rows:
        if r.get("target"):
            count[key(r)] = count.get(key(r), 0) + 1
    seen = set()
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    for r in sorted((r for r in rows if r.get("target")), key=lambda r: r["n_total"]):
        k = key(r)
        if k in seen:
            continue
        seen.add(k)
        layout = {True: "scanned", False: "unrolled"}.get(r.get("scan_layers"), "-")
        lines.append(f"| {r['n_total']:,} | {r['n_layers']} | {r['d_model']} | {layout} | {r.get('attention', '-')} | "
                     f"{r['remat']} | {r['grad_accum']} | {r['mesh']} | {r['hbm_gib_per_chip']:.2f} | "
                     f"{r.get('memory_source', '-')} | "
                     + (f"{fmt(r.get('estimate_gib_per_chip'), '.2f')} | " if gpu else "")
                     + f"{r['fits']} | {r['compile_s']:.1f} | {fmt(r.get('step_s'), '.3g')} | "
                     f"{r.get('step_model', '-')} | {fmt(r.get('mfu'), '.2f')} | {fmt(r.get('mfu_6n'), '.2f')} | "
                     f"{fmt(r.get('mfu_palm'), '.2f')} | {count[k]} |")
    return "\n".join(lines)


def total_time(rows) -> float | None:
    """The sweep's estimated accelerator time: the sum of every cell's ``est_wall_s`` (None if any is unknown)."""
    ts = [r.get("est_wall_s") for r in rows if r.get("target")]
    return sum(ts) if ts and all(t is not None for t in ts) else None


def hours(s: float | None) -> str:
    return "?" if s is None or not math.isfinite(s) else f"{s / 3600:.1f} h"
