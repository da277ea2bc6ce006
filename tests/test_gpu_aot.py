"""GPU targets on this CPU host: names, memory reserve, deviceless XLA:GPU compiles of the real programs,
the plan's GPU columns, auto-fit, bad input, the cuDNN fallback and ``benchmarks/gpu_check.py --dry``.

XLA:GPU compiles deviceless from the ``GpuTargetConfig`` protos in ``scaling/gpu_targets/`` (the
``gpu-aot`` extra, which the test extra installs: ``jax-cuda12-plugin`` + cuDNN).  Models are tiny
and the topology is one host of 8 H100s (``1x1x8``), so each compile takes seconds.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path

import pytest

from scaling.config import Cell, ConfigError, DataConfig, MeshConfig, ModelConfig
from scaling.targets import GIB, gpu_aot_problem, parse_target

if gpu_aot_problem():  # not a skip: the test extra installs it, so its absence is a broken install
    raise ImportError(f"tests/test_gpu_aot.py needs the GPU compiler: {gpu_aot_problem()}")

REPO = Path(__file__).resolve().parents[1]
MODEL = ModelConfig(vocab_size=256, seq_len=128, d_model=64, n_layers=2, n_heads=2, kv_size=32, ffw_size=256,
                    compute_dtype="bfloat16")


# ---------------------------------------------------------------------------------------- names
@pytest.mark.parametrize("name, needles", [
    ("h100-x0", ["--target h100-x0", "1, 2, 4 or 8", "e.g. h100-x8"]),
    ("h100-8", ["--target 'h100-8'", "h100-x8", "v5p-N"]),
    ("h100-x12", ["--target h100-x12", "hosts x 8", "h100-x64"]),
    ("b200-x8", ["--target 'b200-x8'", "unknown target", "h200-xN"]),
    ("v5p-0", ["--target v5p-0", "positive multiple of 2", "e.g. v5p-16"]),
    ("v5p-3", ["--target v5p-3", "positive multiple of 2", "e.g. v5p-16"]),
    ("v5litepod-0", ["--target v5litepod-0", "must be positive", "e.g. v5litepod-8"]),
    ("v6e-12", ["--target v6e-12", "not a v6e slice size", "e.g. v6e-8"]),
])
def test_bad_target_names_say_the_field_and_a_valid_choice(name, needles):
    with pytest.raises(ConfigError) as e:
        parse_target(name)
    msg = str(e.value)
    assert "\n" not in msg and all(n in msg for n in needles), msg
    for suggested in re.findall(r"e\.g\. ([\w-]+)", msg):  # every example offered is itself valid
        parse_target(suggested)


def test_gpu_topologies_and_the_memory_reserve(monkeypatch):
    monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION", raising=False)
    t = parse_target("h100-x64")
    assert (t.backend, t.chips, t.hosts, t.topology) == ("gpu", 64, 8, "1x8x8")
    assert parse_target("h100-x8").topology == "1x1x8" and parse_target("a100-80gb-x2").topology == "1x1x2"
    assert t.card_bytes == 84942979072  # the proto's device_memory_size
    assert t.hbm_bytes == pytest.approx(0.75 * t.card_bytes) and t.reserve_bytes == pytest.approx(0.25 * t.card_bytes)
    assert not t.estimated
    monkeypatch.setenv("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.9")
    assert parse_target("h200-x8").hbm_bytes == pytest.approx(0.9 * 151397597184)
    monkeypatch.setenv("XLA_PYTHON_CLIENT_MEM_FRACTION", "2")
    with pytest.raises(ConfigError, match="XLA_PYTHON_CLIENT_MEM_FRACTION"):
        parse_target("h100-x8").hbm_bytes
    for f in ("h100_sxm", "h200", "a100_sxm_80"):  # shipped in the package, each saying where it comes from
        text = (REPO / "scaling" / "gpu_targets" / f"{f}.txtpb").read_text()
        assert "openxla/xla" in text and "device_memory_size" in text


# ---------------------------------------------------------------------------------------- compiles
@pytest.fixture(scope="module")
def h100():
    t = parse_target("h100-x8")
    return t, t.devices()


def _compile(h100, model: ModelConfig, mesh: MeshConfig, batch: int = 16):
    from scaling import sharding
    from scaling.programs import lower_programs

    _, devices = h100
    cell = Cell(model=model.for_backend("gpu"), tokens=batch * model.seq_len * 10, batch_size=batch,
                eval_batch_size=batch, mesh=mesh)
    return lower_programs(cell, sharding.make_mesh(mesh, devices=devices)).step.compile()


def collectives(hlo: str) -> set[str]:
    return {k for k in ("all-gather", "reduce-scatter", "all-reduce") if re.search(rf"\b{k}(-start)?\(", hlo)}


CASES = [  # attention, mesh, collectives that must appear, that must not
    ("cudnn", MeshConfig(data=1, fsdp=8), {"all-gather", "reduce-scatter"}, set()),
    ("dot_product", MeshConfig(data=1, fsdp=4, tensor=2), {"all-reduce", "all-gather"}, set()),
]


@pytest.mark.parametrize("attention, mesh, present, absent", CASES, ids=[c[0] for c in CASES])
def test_train_step_compiles_for_h100_with_the_gpu_defaults(h100, attention, mesh, present, absent):
    model = dataclasses.replace(MODEL, attention=attention)
    compiled = _compile(h100, model, mesh)
    mem = compiled.memory_analysis()
    assert mem.argument_size_in_bytes > 0 and mem.temp_size_in_bytes > 0
    hlo = compiled.as_text()
    assert present <= collectives(hlo) and not (absent & collectives(hlo)), collectives(hlo)
    assert "while" in hlo and "bf16" in hlo  # GPU defaults: scanned layers, bf16 matmuls
    assert ("__cudnn$fmha" in hlo) == (attention == "cudnn")  # the fused kernel itself, not a fallback


def test_gpu_defaults_resolve_to_bf16_cudnn_scanned():
    m = dataclasses.replace(MODEL, compute_dtype="default").for_backend("gpu")
    assert (m.compute_dtype, m.attention, m.scan_layers) == ("bfloat16", "cudnn", True)


def test_scanned_layers_no_longer_cost_memory(h100, monkeypatch):
    """The layout finding: scanning stacked every elementwise intermediate per layer (tanh-GELU's five
    f32 [B, L, ffw] buffers...); the model now recomputes those chains, so scanned ~ unrolled."""
    from scaling import aot, model as model_mod

    t, devices = h100
    wide = dataclasses.replace(MODEL, seq_len=256, d_model=128, kv_size=64, ffw_size=512, n_layers=4,
                               attention="cudnn")
    cell = Cell(model=wide, tokens=64 * 256 * 10, batch_size=64, eval_batch_size=64, mesh=MeshConfig(data=8))
    gib = {}
    for scan, recompute in ((True, True), (False, True), (True, False)):
        monkeypatch.setattr(model_mod, "RECOMPUTE_UNDER_SCAN", recompute)
        c = dataclasses.replace(cell, model=dataclasses.replace(wide, scan_layers=scan))
        res = aot.compile_shape(c, t, devices)
        assert res["error"] is None and res["memory_source"] == "compiled"
        gib[scan, recompute] = res["hbm_bytes"]
    assert gib[True, True] <= 1.1 * gib[False, True], gib
    assert gib[True, False] > 1.5 * gib[True, True], gib  # what it was: the test can fail


def test_eight_stacked_cells_compile_for_h100(h100):
    """Stacking 8 same-shape cells, a GPU default: the stack runs XLA attention (cuDNN's vmap rules
    fail in jax 0.10.2, see scaling.stacked.for_stacking) and compiles for 8 x H100."""
    from scaling import sharding
    from scaling.stacked import for_stacking, lower_stacked

    _, devices = h100
    model = dataclasses.replace(MODEL, n_layers=1).for_backend("gpu")
    cudnn = Cell(model=model, tokens=16 * 128 * 10, batch_size=16, eval_batch_size=16, mesh=MeshConfig(data=8))
    cell = for_stacking(cudnn)
    assert (cudnn.model.attention, cell.model.attention, cell.run_id) == ("cudnn", "dot_product", cudnn.run_id)
    progs = lower_stacked(cell, sharding.make_mesh(cell.mesh, devices=devices), members=8, shared_batch=True)
    assert progs.members == 8 and progs.step.memory_analysis().temp_size_in_bytes > 0
    hlo = progs.step.as_text()
    assert "while" in hlo and "bf16" in hlo and "__cudnn$fmha" not in hlo


# ---------------------------------------------------------------------------------------- plans
EXPERIMENT = """
from scaling.config import DataConfig, ModelConfig, OptimConfig, MeshConfig
from scaling.sweep import NxD, Recipe, Sweep

def shape(n, V, L):
    return ModelConfig(vocab_size=256, seq_len=L, d_model=64 * int(n), n_layers=2, n_heads=2, kv_size=32 * int(n),
                       ffw_size=256 * int(n))

SWEEP = Sweep(name="tinygpu", recipe=Recipe(data=DataConfig(task="synthetic_markov"), vocab_size=256, seq_len=128,
              batch_size=16, eval_batch_size=16, optim=OptimConfig(peak_lr=3e-3, warmup_steps=2), mesh=MESH,
              model_overrides=OVERRIDES),
              family=shape, grid=NxD(sizes=(1,), tokens=(16 * 128 * 20,)))
"""


def write(tmp_path, mesh="MeshConfig(data=1, fsdp=-1)", overrides="()"):
    p = tmp_path / "tinygpu.py"
    p.write_text(EXPERIMENT.replace("MESH", mesh).replace("OVERRIDES", overrides))
    return p


def test_plan_h100_json_compiled_columns_and_auto_fit(tmp_path, capsys):
    from scaling.cli import main

    exp = write(tmp_path)
    assert main(["plan", str(exp), "--target", "h100-x8", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = [r for r in doc["cells"] if r.get("target")]
    assert len(rows) == 1 and doc["target"]["memory_source"] == ["compiled"] and doc["target"]["fits"]
    assert doc["target"]["usable_gib_per_chip"] == pytest.approx(0.75 * 84942979072 / GIB)
    for r in rows:
        assert r["memory_source"] == "compiled" and r["fits"] and 0 < r["hbm_gib_per_chip"] < 1
        assert r["step_model"] == "GPU step-time model" and r["step_s"] > 0 and r["est_wall_s"] > 0
        assert 0 < r["mfu_6n"] < r["mfu_palm"] <= 1 and r["attention"] == "cudnn" and r["scan_layers"]
        assert r["estimate_gib_per_chip"] > 0
    # auto-fit: against 80% of the cell's bytes it must change something and then fit
    limit = 0.8 * rows[0]["hbm_gib_per_chip"]
    assert main(["plan", str(exp), "--target", "h100-x8", "--format", "json", "--hbm-gib", str(limit)]) == 0
    out = capsys.readouterr()
    fitted = [r for r in json.loads(out.out)["cells"] if r.get("target")]
    assert fitted and all(r["fits"] and r["fit"] and r["hbm_gib_per_chip"] <= limit for r in fitted), fitted


def test_plan_without_the_gpu_extra_estimates_and_says_so(tmp_path, capsys, monkeypatch):
    from scaling import aot, targets
    from scaling.launch import commands
    from scaling.sweep import load_sweep

    problem = f"the XLA:GPU compiler is not installed; {targets.GPU_AOT_INSTALL}"
    monkeypatch.setattr(targets, "gpu_aot_problem", lambda: problem)
    monkeypatch.setattr(aot, "gpu_aot_problem", lambda: problem)
    p = commands.plan_sweep(load_sweep(write(tmp_path)), target="h100-x8")
    err = capsys.readouterr().err
    assert err.count("memory is ESTIMATED") == 1 and "pip install 'scaling[gpu-aot]'" in err
    assert all(r["memory_source"] == "estimate" and r["estimate"] and r["step_s"] > 0 for r in p.rows)
    with pytest.raises(ConfigError, match=r"--target h100-x8: .*pip install 'scaling\[gpu-aot\]'"):
        parse_target("h100-x8").devices()


@pytest.mark.parametrize("kw, needle", [
    (dict(overrides='(("attention", "flash"),)'), "model.attention='flash': not available on 'gpu'; choose one of"),
    (dict(mesh="MeshConfig(data=1, fsdp=-1, tensor=3)"), "do not divide 8 devices"),
])
def test_bad_gpu_plans_fail_in_one_line_before_any_compile(tmp_path, capsys, kw, needle):
    from scaling.cli import main

    assert main(["plan", str(write(tmp_path, **kw)), "--target", "h100-x8"]) == 2
    err = capsys.readouterr().err
    assert needle in err and "compiling" not in err and len(err.strip().splitlines()) == 1, err


# ---------------------------------------------------------------------------------------- runtime
def test_cudnn_failure_falls_back_to_dot_product_once(tmp_path, monkeypatch, capsys):
    """A cuDNN cell whose first step fails inside cuDNN trains on with XLA attention, same run id,
    one warning line, config.json recording dot_product.  (No GPU here: the failure is injected.)"""
    from scaling import programs
    from scaling.rundir import RunDir
    from scaling.train import train

    real = programs.compiled_programs
    calls = []

    def fake(cell, mesh):
        calls.append(cell.model.attention)
        if cell.model.attention != "cudnn":
            return real(cell, mesh)
        progs, (init, step, ev) = real(dataclasses.replace(cell, model=dataclasses.replace(
            cell.model, attention="dot_product")), mesh)

        def failing_step(*a):
            raise RuntimeError("INTERNAL: cuDNN error: CUDNN_STATUS_NOT_SUPPORTED (mask)")
        return progs, (init, failing_step, ev)

    monkeypatch.setattr(programs, "compiled_programs", fake)
    monkeypatch.setattr(programs, "for_this_backend", lambda c: dataclasses.replace(
        c, model=dataclasses.replace(c.model.resolve("cpu"), attention="cudnn")))
    cell = Cell(model=dataclasses.replace(MODEL, compute_dtype="float32", seq_len=32, n_layers=1), tokens=3 * 8 * 32,
                batch_size=8, eval_batch_size=8, eval_batches=1, data=DataConfig(task="synthetic_markov"))
    summary = train(cell, tmp_path / "run")
    assert summary["state"] == "done" and summary["steps"] == 3 and calls == ["cudnn", "dot_product"]
    err = capsys.readouterr().err
    assert err.count("cuDNN attention failed") == 1 and "attention='dot_product'" in err
    rec = RunDir(tmp_path / "run").read_cell()
    assert rec.model.attention == "dot_product" and rec.run_id == cell.run_id


def test_cudnn_fallback_leaves_other_errors_alone():
    from scaling.programs import cudnn_fallback

    cudnn_cell = Cell(model=dataclasses.replace(MODEL, attention="cudnn"), tokens=16 * 128, batch_size=16)
    with pytest.raises(ValueError, match="shape"):
        cudnn_fallback(cudnn_cell, ValueError("bad shape"))
    with pytest.raises(RuntimeError, match="cuDNN"):  # not a cuDNN cell: nothing to fall back from
        cudnn_fallback(dataclasses.replace(cudnn_cell, model=MODEL), RuntimeError("cuDNN error"))


# ---------------------------------------------------------------------------------------- gpu_check
def test_gpu_check_dry_mode_plans_the_same_cells(capsys, monkeypatch):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import gpu_check

    real_cells = gpu_check.small_cells
    monkeypatch.setattr(gpu_check, "small_cells", lambda: real_cells(d_model=64, n_layers=2))  # the same four, smaller
    assert gpu_check.main(["--dry"]) == 0
    out = capsys.readouterr().out
    for cell in gpu_check.small_cells():
        assert cell.name in out
    assert out.count("| compiled | True |") == len(gpu_check.small_cells()) == 4
    assert {c.model.attention for c in gpu_check.small_cells()} == {"cudnn", "dot_product", "einsum"}
    assert {c.model.scan_layers for c in gpu_check.small_cells()} == {True, False}
    for size in ("125M", "350M", "1.3B"):
        assert re.search(rf"\| {re.escape(size)} \|.*\| model \|", out), out
