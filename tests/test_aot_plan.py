"""Planning against an accelerator target: names, validation before compute, AOT memory, auto-fit, refusal.

TPU targets are compiled for with libtpu (the test extra) on this CPU host; the models are
tiny and the topology small (v5p-8: 4 chips) so each compile takes seconds.  GPU targets:
tests/test_gpu_aot.py.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from scaling.config import ConfigError, MeshConfig
from scaling.launch import commands
from scaling.sweep import load_sweep, plan
from scaling.targets import parse_target

EXPERIMENT = """
from scaling.config import DataConfig, ModelConfig, OptimConfig, MeshConfig
from scaling.sweep import NxD, Recipe, Sweep

def shape(n, V, L):
    return ModelConfig(vocab_size=256, seq_len=L, d_model=128 * int(n), n_layers=2, n_heads=4, kv_size=32 * int(n),
                       ffw_size=512 * int(n))

SWEEP = Sweep(name="tiny", recipe=Recipe(data=DataConfig(task="synthetic_markov"), vocab_size=256, seq_len=128,
              batch_size=16, eval_batch_size=EVAL, optim=OptimConfig(peak_lr=3e-3, warmup_steps=2), mesh=MESH),
              family=shape, grid=NxD(sizes=(1, 2), tokens=(16 * 128 * 20, 16 * 128 * 40)))
"""


def write(tmp_path, eval_batch=16, mesh="MeshConfig(data=1, fsdp=-1)"):
    p = tmp_path / "tiny.py"
    p.write_text(EXPERIMENT.replace("EVAL", str(eval_batch)).replace("MESH", mesh))
    return p


def test_target_names_and_bad_names():
    t = parse_target("v5p-128")
    assert (t.chips, t.hosts, t.topology, t.backend, t.hbm_bytes / 2**30) == (64, 16, "v5p:4x4x4", "tpu", 95)
    assert parse_target("v4-8").topology == "v4:2x2x1" and parse_target("v5litepod-16").topology == "v5e:4x4"
    assert parse_target("v6e-8").chips == 8 and parse_target("h100-x8").backend == "gpu"
    for bad, needle in (("tpu-8", "unknown target; use v4-N"), ("v5p-3", "2 TensorCores per chip"),
                        ("v5p-12", "not a v5p slice size")):
        with pytest.raises(ConfigError, match=needle):
            parse_target(bad)


def test_a_tpu_topology_failure_names_its_fix(monkeypatch):
    """libtpu held by another process (one per host) is not 'install libtpu'; a missing libtpu is."""
    from jax.experimental import topologies

    def locked(**kw):
        raise RuntimeError('ABORTED: Internal error when accessing libtpu multi-process lockfile. Run "$ sudo rm '
                           '/tmp/libtpu_lockfile".')

    monkeypatch.setattr(topologies, "get_topology_desc", locked)
    with pytest.raises(ConfigError, match="another JAX process on this host holds libtpu.*JAX_PLATFORMS=cpu"):
        parse_target("v5p-8").devices()
    monkeypatch.setattr(topologies, "get_topology_desc", lambda **kw: (_ for _ in ()).throw(ImportError("no libtpu")))
    with pytest.raises(ConfigError, match=r"install libtpu: pip install 'scaling\[tpu\]'"):
        parse_target("v5p-8").devices()


@pytest.mark.parametrize("kw, needle", [
    (dict(eval_batch=6), "eval_batch_size=6: not divisible by mesh data*fsdp=4"),
    (dict(mesh="MeshConfig(data=1, fsdp=-1, tensor=3)"), "do not divide 4 devices"),
])
def test_divisibility_is_checked_before_any_compile(tmp_path, kw, needle):
    sw = load_sweep(write(tmp_path, **kw))
    with pytest.raises(ConfigError) as e:
        commands.plan_sweep(sw, target="v5p-8", quiet=True)
    assert needle in str(e.value) and "v5p-8" in str(e.value) and "\n" not in str(e.value)


def test_tpu_plan_reports_memory_cost_and_compiles_each_shape_once(tmp_path, capsys):
    sw = load_sweep(write(tmp_path))
    p = commands.plan_sweep(sw, target="v5p-8")
    err = capsys.readouterr().err
    assert err.count("compiling") == 2  # 4 cells (2 sizes x 2 horizons), 2 distinct shapes
    assert err.count("compiling step/init/eval") == 1  # the largest shape: all three programs
    for c, r in zip(p.cells, p.rows):
        assert r["target"] == "v5p-8" and r["fits"] and 0 < r["hbm_gib_per_chip"] < 1 and r["compile_s"] > 0
        assert r["step_s"] > 0 and 0 < r["mfu"] < 1 and r["est_wall_s"] == pytest.approx(c.steps * r["step_s"])
        assert c.model.compute_dtype == "bfloat16" and c.model.scan_layers and r["mesh"] == "data=1,fsdp=4,tensor=1"
    # resolved for the TPU: bf16 is another experiment than the CPU plan's float32 (new run ids)
    assert not {c.run_id for c in p.cells} & {c.run_id for c in plan(sw, estimate=False, backend="cpu").cells}


def test_auto_fit_picks_the_cheapest_variant_that_fits_and_refusal(tmp_path, capsys, monkeypatch):
    sw = load_sweep(write(tmp_path))
    asis = commands.plan_sweep(sw, target="v5p-8", quiet=True)
    big = next(r for r in asis.rows if r.get("target") and r["d_model"] == 256)["hbm_gib_per_chip"]
    small = max(r["hbm_gib_per_chip"] for r in asis.rows if r["d_model"] == 128)
    assert small < big
    limit = (small + big) / 2  # the 256-wide cells no longer fit as planned, the 128-wide ones do
    fitted = commands.plan_sweep(sw, target="v5p-8", hbm_gib=limit, quiet=True)
    rows = [r for r in fitted.rows if r["d_model"] == 256]
    assert rows and all(r["fits"] and r["fit"] and r["hbm_gib_per_chip"] <= limit for r in rows)
    cells = [c for c in fitted.cells if c.model.d_model == 256]
    assert all((c.grad_accum, c.model.remat, c.mesh) != (1, "none", MeshConfig(data=1, fsdp=-1)) for c in cells)
    small = [r for r in fitted.rows if r["d_model"] == 128]
    assert all(r["fits"] and r["fit"] is None for r in small)  # cells that fit are left as planned
    report = commands.plan_sweep(sw, target="v5p-8", hbm_gib=limit, auto_fit=False, quiet=True)
    assert [r["fits"] for r in report.rows if r["d_model"] == 256] == [False, False]
    # a sweep whose cells do not fit its target refuses to launch, naming the HBM a cell needs
    from scaling import targets

    gen = targets.GENERATIONS["v5p"]
    monkeypatch.setitem(targets.GENERATIONS, "v5p", dataclasses.replace(gen, hbm_bytes=limit * 2**30))
    with pytest.raises(ConfigError, match=r"do not fit, e.g. tiny-.* needs [\d.]+ GiB per chip"):
        commands.run_sweep(sw, tmp_path / "out", target="v5p-8", auto_fit=False, report=False, quiet=True)
    assert not (tmp_path / "out").exists()


def test_plan_command_json_and_require_fit(tmp_path, capsys):
    from scaling.cli import main

    exp = write(tmp_path)
    assert main(["plan", str(exp), "--target", "v5p-8", "--format", "json", "--only", "D8.2e4"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["target"]["fits"] and doc["target"]["est_wall_s"] > 0
    assert sum(1 for r in doc["cells"] if r.get("target")) == 2  # --only: the two 8.2e4-token cells
    assert main(["plan", str(exp), "--target", "v5p-8", "--hbm-gib", "0.001", "--no-auto-fit", "--require-fit",
                 "--only", "D8.2e4"]) == 3
    assert "do not fit v5p-8" in capsys.readouterr().err
    assert main(["plan", str(exp), "--target", "v7-8"]) == 2
