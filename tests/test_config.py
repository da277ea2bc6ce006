"""Config dataclasses: validation names the field and the fix; run identity is stable."""

import dataclasses

import pytest

from scaling.config import (Cell, ConfigError, MeshConfig, ModelConfig, OptimConfig, cell_from_json,
                            cell_to_json)


def _model(**kw):
    base = dict(vocab_size=1024, seq_len=64, d_model=64, n_layers=2, n_heads=4, kv_size=16, ffw_size=256)
    base.update(kw)
    return ModelConfig(**base)


def test_cell_json_round_trip_and_hash_stability():
    cell = Cell(model=_model(), tokens=64 * 8 * 10, batch_size=8).validate()
    again = cell_from_json(cell_to_json(cell))
    assert again == cell and again.run_id == cell.run_id
    assert cell.steps == 10 and cell.tokens_trained == 64 * 8 * 10


def test_run_id_ignores_where_and_how_fast_but_not_what():
    cell = Cell(model=_model(), tokens=10_000, batch_size=8)
    assert dataclasses.replace(cell, mesh=MeshConfig(data=2, fsdp=4)).run_id == cell.run_id
    assert dataclasses.replace(cell, checkpoint_every=7, log_every=3).run_id == cell.run_id
    assert dataclasses.replace(cell, seed=1).run_id != cell.run_id
    assert dataclasses.replace(cell, optim=OptimConfig(peak_lr=3e-3)).run_id != cell.run_id
    assert dataclasses.replace(cell, model=_model(d_model=128)).run_id != cell.run_id


@pytest.mark.parametrize("kw, field", [
    (dict(ffw_size=0), "ffw_size"),
    (dict(seq_len=1), "seq_len"),
    (dict(norm="batchnorm"), "norm"),
    (dict(kv_size=15), "kv_size"),
])
def test_bad_model_fields_are_named(kw, field):
    with pytest.raises(ConfigError, match=field):
        _model(**kw).validate()


def test_tokens_below_one_batch_is_rejected_with_the_fix():
    with pytest.raises(ConfigError, match=r"tokens=100: below one batch.*raise --tokens"):
        Cell(model=_model(), tokens=100, batch_size=8).validate()


def test_mesh_resolution():
    assert MeshConfig.parse("data=2,fsdp=-1,tensor=2").resolve(8) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert MeshConfig(data=-1, dcn_data=2).resolve(8) == {"data": 8, "fsdp": 1, "tensor": 1}
    with pytest.raises(ConfigError, match="devices per slice"):
        MeshConfig(data=3, fsdp=1, tensor=1).resolve(8)
    with pytest.raises(ConfigError, match="unknown axis 'model'"):
        MeshConfig.parse("model=2")
