"""Meshes from MeshConfig, logical-axis rules -> NamedShardings, and their error messages."""

from __future__ import annotations

import jax
import pytest
from jax.sharding import PartitionSpec as P

from scaling import sharding
from scaling.config import ConfigError, MeshConfig, ModelConfig

MODEL = ModelConfig(vocab_size=128, seq_len=16, d_model=32, n_layers=1, n_heads=4, kv_size=8, ffw_size=64)


@pytest.mark.parametrize("spec, shape", [
    ("data=-1", (8, 1, 1)), ("data=2,fsdp=4", (2, 4, 1)), ("data=2,fsdp=2,tensor=2", (2, 2, 2)),
    ("data=2,fsdp=-1,tensor=2", (2, 2, 2)), ("data=1,fsdp=1,tensor=-1", (1, 1, 8)),
])
def test_make_mesh_shapes(spec, shape):
    mesh = sharding.make_mesh(MeshConfig.parse(spec))
    assert tuple(mesh.shape[a] for a in ("data", "fsdp", "tensor")) == shape
    assert mesh.devices.size == 8 and len(set(mesh.devices.flat)) == 8
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)


def test_mesh_on_a_device_subset_and_dcn():
    mesh = sharding.make_mesh(MeshConfig(data=1), devices=jax.devices()[:1])
    assert mesh.devices.size == 1
    # two "slices" of 4 devices, data parallel across them: each data row spans one slice
    mesh = sharding.make_mesh(MeshConfig(data=1, fsdp=4, dcn_data=2))
    assert dict(mesh.shape) == {"data": 2, "fsdp": 4, "tensor": 1}
    devs = jax.devices()
    assert set(mesh.devices[0].flat) == set(devs[:4]) and set(mesh.devices[1].flat) == set(devs[4:])


@pytest.mark.parametrize("spec, match", [
    ("data=3", "= 3 but there are 8"), ("data=3,fsdp=-1", "do not divide"), ("data=2,fsdp=2,tensor=1", "data\\*fsdp\\*tensor = 4"), ("data=-1,fsdp=-1", "at most one"),
    ("data=0", "mesh.data"),
])
def test_bad_meshes(spec, match):
    with pytest.raises(ConfigError, match=match):
        sharding.make_mesh(MeshConfig.parse(spec))


def test_divisibility_errors():
    mesh = sharding.make_mesh(MeshConfig.parse("data=2,fsdp=2,tensor=2"))
    sharding.check_divisibility(mesh, batch_size=8, grad_accum=2, model_cfg=MODEL)
    with pytest.raises(ConfigError, match="batch_size=6"):
        sharding.check_divisibility(mesh, batch_size=6, grad_accum=1, model_cfg=MODEL)
    with pytest.raises(ConfigError, match="grad_accum=4"):
        sharding.check_divisibility(mesh, batch_size=8, grad_accum=4, model_cfg=MODEL)
    with pytest.raises(ConfigError, match="n_heads=3"):
        sharding.check_divisibility(mesh, batch_size=8, grad_accum=1,
                                    model_cfg=ModelConfig(**{**MODEL.__dict__, "n_heads": 3}))
    with pytest.raises(ConfigError, match="d_model=33"):
        sharding.check_divisibility(mesh, batch_size=8, grad_accum=1,
                                    model_cfg=ModelConfig(**{**MODEL.__dict__, "d_model": 33}))


def test_logical_rules_shard_params_and_adam_state():
    import flax.linen as nn
    import jax.numpy as jnp
    import optax

    from scaling.model import Decoder

    mesh = sharding.make_mesh(MeshConfig.parse("data=2,fsdp=2,tensor=2"))
    model = Decoder(ModelConfig(**{**MODEL.__dict__, "tied_embeddings": False}))
    tx = optax.adamw(1e-3)

    def init(rng):
        p = model.init(rng, jnp.zeros((1, 16), jnp.int32))["params"]
        return {"params": p, "opt": tx.init(p)}

    sh = sharding.logical_shardings(jax.eval_shape(init, jax.random.PRNGKey(0)), mesh)
    p = sh["params"]
    assert p["token_embed"]["embedding"].spec == P("tensor", "fsdp")
    assert p["lm_head"]["kernel"].spec == P("fsdp", "tensor")
    assert p["layers_0"]["attn"]["q"].spec == P("fsdp", "tensor", None)
    assert p["layers_0"]["attn"]["o"].spec == P("tensor", None, "fsdp")
    assert p["layers_0"]["mlp"]["wi"].spec == P("fsdp", "tensor")
    assert p["layers_0"]["mlp"]["wo"].spec == P("tensor", "fsdp")
    mu = sh["opt"][0].mu
    assert mu["layers_0"]["mlp"]["wi"].spec == P("fsdp", "tensor")
    assert sh["opt"][0].count.spec == P()
    assert sharding.batch_sharding(mesh).spec == P(("data", "fsdp"), None)
    assert sharding.batch_shards(mesh) == 4


def test_initialize_distributed_is_a_noop_without_env(monkeypatch):
    for k in ("SCALING_COORDINATOR", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES"):
        monkeypatch.delenv(k, raising=False)
    assert sharding.initialize_distributed() is False
    assert jax.process_count() == 1
