"""Model options: the two parameter layouts and their conversion, per-backend resolution, run identity, bad input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P, SingleDeviceSharding

from scaling import accounting, sharding
from scaling.checkpoint import CheckpointRestoreError, Checkpointer
from scaling.config import Cell, ConfigError, DataConfig, MeshConfig, ModelConfig, OptimConfig
from scaling.model import Decoder, convert_layout, layout_of, param_layout, stack_layers, unstack_layers

REPO = Path(__file__).resolve().parents[1]
CFG = ModelConfig(vocab_size=97, seq_len=16, d_model=32, n_layers=3, n_heads=4, kv_size=8, ffw_size=48,
                  scan_layers=False)


def _init(cfg, boxed=False):
    v = Decoder(cfg).init(jax.random.PRNGKey(0), jnp.ones((1, cfg.seq_len), jnp.int32))["params"]
    return v if boxed else nn.meta.unbox(v)


def _assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ---------------------------------------------------------------------------- layouts
@pytest.mark.parametrize("variant", [{}, {"position": "learned", "tied_embeddings": False, "activation": "swiglu",
                                          "norm": "layernorm"}])
def test_scanned_init_is_the_unrolled_init_stacked_and_counts_agree(variant):
    flat_cfg = dataclasses.replace(CFG, **variant)
    scan_cfg = dataclasses.replace(flat_cfg, scan_layers=True)
    flat, scanned = _init(flat_cfg), _init(scan_cfg)
    assert param_layout(flat) == "unrolled" and param_layout(scanned) == "scanned"
    assert sorted(k for k in flat if k.startswith("layers")) == ["layers_0", "layers_1", "layers_2"]
    assert scanned["layers"]["attn"]["q"].shape == (3, 32, 4, 8)
    _assert_trees_equal(scanned, stack_layers(flat))
    _assert_trees_equal(unstack_layers(scanned), flat)
    for cfg, p in ((flat_cfg, flat), (scan_cfg, scanned)):
        assert accounting.count_params_tree(p, cfg) == accounting.count_params(cfg)
    # every stacked leaf carries the leading ``layers`` logical axis, which the rules replicate
    boxed = _init(scan_cfg, boxed=True)["layers"]
    for leaf in jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned)):
        assert leaf.names[0] == "layers" and len(leaf.names) == leaf.value.ndim
    assert dict(sharding.RULES)["layers"] is None


def test_convert_layout_covers_the_optimizer_state_and_is_idempotent():
    flat = _init(CFG)
    tx = optax.adamw(1e-3)
    opt = tx.init(flat)
    _, opt = tx.update(jax.tree.map(jnp.ones_like, flat), opt, flat)
    state = {"step": jnp.asarray(3), "params": flat, "opt_state": opt}
    scanned = convert_layout(state, "scanned")
    assert param_layout(scanned["params"]) == "scanned"
    assert scanned["opt_state"][0].mu["layers"]["mlp"]["wo"].shape == (3, 48, 32)
    _assert_trees_equal(convert_layout(scanned, "scanned"), scanned)
    _assert_trees_equal(convert_layout(scanned, "unrolled"), state)
    with pytest.raises(ConfigError, match="to='sideways'"):
        convert_layout(state, "sideways")
    with pytest.raises(ConfigError, match="expected one decoder parameter tree"):
        param_layout({"w": jnp.zeros(3)})


def test_convert_layout_of_abstract_sharded_trees():
    mesh = sharding.make_mesh(MeshConfig(data=2, fsdp=4))
    flat = _init(CFG)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(mesh, P("fsdp"))
                                                           if x.ndim == 2 and x.shape[0] % 4 == 0 else
                                                           NamedSharding(mesh, P())), flat)
    stacked = convert_layout(abstract, "scanned")
    wi = stacked["layers"]["mlp"]["wi"]
    assert wi.shape == (3, 32, 48) and wi.sharding.spec == P(None, "fsdp")
    back = convert_layout(stacked, "unrolled")
    assert jax.tree.structure(back) == jax.tree.structure(abstract)
    assert back["layers_1"]["mlp"]["wi"].sharding.spec == P("fsdp")


def test_checkpoint_of_one_layout_restores_into_the_other(tmp_path):
    """What the trainer's restore does with a checkpoint whose ``param_layout`` differs from the config's."""
    scan_cfg = dataclasses.replace(CFG, scan_layers=True)
    saved = {"step": jnp.asarray(7, jnp.int32), "params": _init(scan_cfg)}
    with Checkpointer(tmp_path / "ckpt", async_save=False) as ck:
        ck.save(7, saved, {"param_layout": param_layout(saved["params"])})
    want = layout_of(CFG)  # this run's config is unrolled
    cpu0 = SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=cpu0),
                          {"step": saved["step"], "params": _init(CFG)})
    with Checkpointer(tmp_path / "ckpt") as ck:
        with pytest.raises(CheckpointRestoreError):  # restoring straight into the other layout cannot work
            ck.restore(7, target)
        state, meta = ck.restore(7, convert_layout(target, meta_layout := "scanned"))
    assert meta["param_layout"] == meta_layout
    state = convert_layout(state, want)
    _assert_trees_equal(state["params"], unstack_layers(saved["params"]))
    with pytest.raises(ConfigError, match="resolve the config"):
        layout_of(dataclasses.replace(CFG, scan_layers=None))


# ---------------------------------------------------------------------------- resolution
def test_per_backend_defaults():
    base = dataclasses.replace(CFG, scan_layers=None, seq_len=256)
    cpu = base.resolve("cpu")
    assert (cpu.scan_layers, cpu.attention, cpu.compute_dtype, cpu.remat) == (False, "einsum", "float32", "none")
    tpu = base.for_backend("tpu")
    assert (tpu.scan_layers, tpu.attention, tpu.compute_dtype) == (True, "flash", "bfloat16")
    assert base.resolve("tpu").compute_dtype == "float32"  # resolve never changes the dtype (run identity)
    assert dataclasses.replace(base, seq_len=200).resolve("tpu").attention == "dot_product"  # not a flash size
    assert base.for_backend("gpu").attention == "cudnn"
    assert base.resolve("gpu").attention == "dot_product"  # cuDNN needs bf16
    assert cpu.is_resolved and cpu.resolve("cpu") == cpu
    explicit = dataclasses.replace(base, compute_dtype="float32").for_backend("tpu")
    assert explicit.compute_dtype == "float32"  # an explicit choice is kept


@pytest.mark.parametrize("change, backend, needle", [
    ({"remat": "sometimes"}, None, "model.remat='sometimes': choose one of ('none', 'dots', 'full')"),
    ({"attention": "magic"}, None, "model.attention='magic': choose one of ('default', 'einsum', 'dot_product', "
                                   "'cudnn', 'flash')"),
    ({"compute_dtype": "float16"}, None, "model.compute_dtype='float16': choose one of"),
    ({"scan_layers": "yes"}, None, "model.scan_layers='yes'"),
    ({"attention": "flash"}, "cpu", "model.attention='flash': not available on 'cpu'; choose one of "
                                    "('default', 'einsum', 'dot_product')"),
    ({"attention": "cudnn"}, "cpu", "model.attention='cudnn': not available on 'cpu'"),
    ({"attention": "cudnn"}, "tpu", "model.attention='cudnn': not available on 'tpu'"),
    ({"attention": "cudnn", "compute_dtype": "float32"}, "gpu", "needs compute_dtype='bfloat16'"),
    ({"attention": "flash", "seq_len": 200}, "tpu", "needs seq_len a multiple of 128"),
])
def test_bad_options_one_line_errors(change, backend, needle):
    cfg = dataclasses.replace(CFG, **change)
    with pytest.raises(ConfigError) as e:
        cfg.resolve(backend) if backend else cfg.validate()
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_flash_on_cpu_is_refused_by_train_before_any_step(tmp_path):
    from scaling.train import train

    cfg = dataclasses.replace(CFG, vocab_size=130, seq_len=128, attention="flash")
    cell = Cell(model=cfg, tokens=8 * 128 * 2, batch_size=8, data=DataConfig(task="synthetic_markov"),
                mesh=MeshConfig(data=8), eval_batch_size=8, eval_batches=1)
    with pytest.raises(ConfigError, match="model.attention='flash': not available on 'cpu'"):
        train(cell, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists() and not (tmp_path / "run" / "checkpoints").exists()


# ---------------------------------------------------------------------------- run identity
def test_execution_choices_keep_the_run_id():
    cell = Cell(model=dataclasses.replace(CFG, scan_layers=None), tokens=16 * 64, batch_size=4)
    ids = {dataclasses.replace(cell, model=dataclasses.replace(cell.model, **kw)).run_id
           for kw in ({}, {"scan_layers": True}, {"remat": "full"}, {"attention": "dot_product"},
                      {"compute_dtype": "float32"})}
    ids.add(dataclasses.replace(cell, model=cell.model.resolve("tpu")).run_id)
    assert len(ids) == 1
    bf16 = dataclasses.replace(cell, model=cell.model.for_backend("tpu"))
    assert bf16.model.compute_dtype == "bfloat16" and bf16.run_id != cell.run_id


def test_quickstart_run_ids_unchanged():
    from scaling import sweep

    planned = {c.run_id for c in sweep.plan(sweep.load_sweep(str(REPO / "experiments" / "quickstart.py"))).cells}
    committed = set(pd.read_csv(REPO / "experiments" / "results" / "quickstart" / "results.csv")["run_id"])
    assert planned == committed and len(planned) == 15


def test_cli_flags_reach_the_model_config():
    from scaling.cli import build_cell, build_parser

    args = build_parser().parse_args(["train", "--out", "x", "--d-model", "32", "--n-layers", "2", "--n-heads", "2",
                                      "--seq-len", "32", "--tokens", "4096", "--batch", "8", "--task",
                                      "synthetic_markov", "--scan-layers", "--remat", "dots",
                                      "--attention", "dot_product", "--dtype", "bfloat16"])
    m = build_cell(args).model
    assert (m.scan_layers, m.remat, m.attention, m.compute_dtype) == (True, "dots", "dot_product", "bfloat16")
    args = build_parser().parse_args(["count", "--d-model", "32", "--n-layers", "2", "--n-heads", "2", "--vocab",
                                      "64", "--seq-len", "32", "--no-scan-layers"])
    assert args.scan_layers is False and args.remat is None and args.attention is None


def test_a_run_resumes_across_layouts_and_records_its_choices(tmp_path):
    """A run checkpointed scanned and resumed unrolled (e.g. moved from a TPU to a CPU) continues the same run."""
    from scaling.rundir import RunDir, read_metrics
    from scaling.train import train

    cfg = dataclasses.replace(CFG, vocab_size=130, seq_len=32)
    base = Cell(model=dataclasses.replace(cfg, scan_layers=True), tokens=12 * 8 * 32, batch_size=8,
                data=DataConfig(task="synthetic_markov"), mesh=MeshConfig(data=8), eval_batch_size=8,
                eval_batches=1, checkpoint_every=4, optim=OptimConfig(warmup_steps=2))
    ref = train(base, tmp_path / "ref")
    train(base, tmp_path / "moved", stop_after_step=6)
    meta = RunDir(tmp_path / "moved").read_cell().model
    assert (meta.scan_layers, meta.attention, meta.compute_dtype) == (True, "einsum", "float32")  # resolved
    moved = train(dataclasses.replace(base, model=dataclasses.replace(cfg, scan_layers=False)), tmp_path / "moved")
    assert moved["run_id"] == ref["run_id"]
    a = [r["train_loss"] for r in read_metrics(tmp_path / "ref")]
    b = [r["train_loss"] for r in read_metrics(tmp_path / "moved")]
    np.testing.assert_allclose(b, a, rtol=1e-5)
