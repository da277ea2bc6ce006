"""Compile the real train step for a real TPU topology on this CPU host (libtpu, nothing runs on a TPU).

``jax.experimental.topologies`` gives the devices of a ``v5p:2x2x1`` slice (4 chips); the
trainer's own lowering (``lower_programs(cell, mesh)``) traces the init, train and eval
programs for a mesh over them and XLA:TPU compiles the train step.  Each attention
implementation that targets TPU (einsum, dot_product, flash) must compile, report its
per-chip memory, and place the collectives its mesh implies: FSDP gathers parameters
(all-gather) and scatters gradients (reduce-scatter); data parallelism all-reduces gradients
and gathers nothing.  Models are tiny so each compile takes seconds.

libtpu comes with the test extra (``pip install -e ".[test]"``).
"""

from __future__ import annotations

import dataclasses
import os
import re

import pytest

try:  # not a skip: the README's test command installs it (test extra), so its absence is a broken install
    import libtpu  # noqa: F401
except ImportError as e:
    raise ImportError("tests/test_tpu_aot.py needs libtpu, which the test extra installs: pip install -e '.[test]'") from e
# Tell libtpu which accelerator to assume, instead of probing the host for one.
os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5p-8")

from scaling import sharding  # noqa: E402
from scaling.config import Cell, MeshConfig, ModelConfig  # noqa: E402

from scaling.programs import lower_programs  # noqa: E402

TOPOLOGY = "v5p:2x2x1"
MODEL = ModelConfig(vocab_size=256, seq_len=128, d_model=128, n_layers=2, n_heads=4, kv_size=32, ffw_size=256,
                    compute_dtype="float32")


@pytest.fixture(scope="module")
def tpu_devices():
    from jax.experimental import topologies

    topo = topologies.get_topology_desc(platform="tpu", topology_name=TOPOLOGY)
    assert len(topo.devices) == 4 and topo.devices[0].platform == "tpu"
    return topo.devices


def _lower_step(devices, mesh: MeshConfig, model: ModelConfig):
    cell = Cell(model=model, tokens=8 * model.seq_len * 10, batch_size=8, eval_batch_size=8)
    return lower_programs(cell, sharding.make_mesh(mesh, devices=devices)).step


def _compile_step(devices, mesh: MeshConfig, model: ModelConfig):
    return _lower_step(devices, mesh, model).compile()


def collectives(hlo: str) -> set[str]:
    """Collective kinds in compiled HLO text (XLA:TPU fuses reduce-scatters into ``all-reduce-scatter`` fusions)."""
    found = set()
    if re.search(r"\ball-gather(-start)?[.(]", hlo):
        found.add("all-gather")
    if re.search(r"reduce-scatter", hlo):
        found.add("reduce-scatter")
    if re.search(r"\ball-reduce(-start)?[.(]", hlo):
        found.add("all-reduce")
    return found


CASES = [  # attention, mesh, collectives that must appear, collectives that must not
    ("einsum", MeshConfig(data=1, fsdp=4), {"all-gather", "reduce-scatter"}, set()),
    ("einsum", MeshConfig(data=4), {"all-reduce"}, {"all-gather", "reduce-scatter"}),
    ("dot_product", MeshConfig(data=1, fsdp=1, tensor=4), {"all-reduce"}, set()),
    ("flash", MeshConfig(data=2, fsdp=2), {"all-gather", "reduce-scatter", "all-reduce"}, set()),
]


@pytest.mark.parametrize("attention, mesh, present, absent", CASES,
                         ids=[f"{a}-{m.data}x{m.fsdp}x{m.tensor}" for a, m, _, _ in CASES])
def test_train_step_compiles_for_tpu(tpu_devices, attention, mesh, present, absent):
    compiled = _compile_step(tpu_devices, mesh, dataclasses.replace(MODEL, attention=attention))
    mem = compiled.memory_analysis()
    assert mem.argument_size_in_bytes > 0 and mem.temp_size_in_bytes > 0
    hlo = compiled.as_text()
    kinds = collectives(hlo)
    assert present <= kinds and not (absent & kinds), kinds
    assert "while" in hlo  # TPU resolves scan_layers=None to the scanned layout
    if attention == "flash":
        assert "tpu_custom_call" in hlo  # the Pallas kernel itself, not a fallback


def test_fsdp_shards_the_state_and_bf16_is_the_tpu_default(tpu_devices):
    # dims that are whole TPU tiles (8 x 128) once split 4 ways, so padding does not blur the ratio
    wide = dataclasses.replace(MODEL, d_model=512, kv_size=128, ffw_size=1024, n_layers=1)
    replicated = _compile_step(tpu_devices, MeshConfig(data=4), wide).memory_analysis().argument_size_in_bytes
    f32 = _lower_step(tpu_devices, MeshConfig(data=1, fsdp=4), wide)
    assert f32.compile().memory_analysis().argument_size_in_bytes < 0.3 * replicated  # state split 4 ways
    tpu_model = dataclasses.replace(wide, compute_dtype="default").for_backend("tpu")
    assert (tpu_model.compute_dtype, tpu_model.attention, tpu_model.scan_layers) == ("bfloat16", "flash", True)
    bf16 = _lower_step(tpu_devices, MeshConfig(data=1, fsdp=4), tpu_model)
    # the program as written (StableHLO, before XLA:TPU picks its own matmul passes)
    assert "bf16" in bf16.as_text() and "bf16" not in f32.as_text()
