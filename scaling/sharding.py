"""Device meshes, logical-axis rules and multi-host start-up: pjit semantics on today's ``jax.jit``.

A run names its parallelism declaratively with :class:`scaling.config.MeshConfig`
(``data``, ``fsdp``, ``tensor``; one ``-1`` absorbs the remaining devices; ``dcn_*`` sizes
for multi-slice).  This module turns that into a :class:`jax.sharding.Mesh` and turns the
model's *logical* parameter axes into :class:`~jax.sharding.NamedSharding` objects:

=========  =====================  =================================================
logical    mesh axes              meaning
=========  =====================  =================================================
batch      (data, fsdp)           examples are split over every data-like axis
embed      fsdp                   FSDP: parameters (and Adam moments) are sharded
heads      tensor                 Megatron-style tensor parallelism ...
mlp        tensor                 ... over attention heads, MLP hidden units
vocab      tensor                 ... and the vocabulary
layers     replicated             the leading axis of scanned (stacked) parameters
other      replicated             kv, position, length, act_* (activations)
=========  =====================  =================================================

Optimizer state inherits the parameter shardings because ``optax`` state is built from
the (boxed) parameter tree, so ``nn.get_partition_spec`` of ``jax.eval_shape(init)`` gives
one logical spec per leaf of the whole train state.  The jitted train step is then
compiled with those ``in_shardings``/``out_shardings`` and XLA inserts the collectives.

jax 0.10 defaults ``make_mesh`` to ``AxisType.Explicit``, under which linen's
``with_logical_constraint`` asserts; we build meshes with ``AxisType.Auto`` (GSPMD).
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

from scaling.config import MESH_AXES, ConfigError, MeshConfig

# Logical axis -> mesh axes.  Unlisted logical axes are replicated.
RULES: tuple = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    # The stacked-layer axis of scanned parameters stays whole on every device: the scan body
    # slices one layer per iteration, and splitting layers across devices would turn that
    # slice into a gather of another device's layer.
    ("layers", None),
)


def make_mesh(spec: MeshConfig, devices: Sequence[Any] | None = None):
    """A ``Mesh`` with axes (data, fsdp, tensor) over ``devices`` (default: all global devices).

    Raises :class:`ConfigError` when the sizes do not divide the device count.  With any
    ``dcn_*`` size > 1 the mesh is built by ``mesh_utils.create_hybrid_device_mesh`` so that
    the DCN (slow, cross-slice) dimension is outermost on each axis.
    """
    import jax
    from jax.sharding import AxisType, Mesh

    devices = list(jax.devices() if devices is None else devices)
    sizes = spec.resolve(len(devices))
    shape = tuple(sizes[a] for a in MESH_AXES)
    dcn = (spec.dcn_data, spec.dcn_fsdp, spec.dcn_tensor)
    auto = (AxisType.Auto,) * len(MESH_AXES)
    if math.prod(dcn) > 1:
        ici = tuple(s // d for s, d in zip(shape, dcn))
        if all(hasattr(d, "slice_index") for d in devices):
            from jax.experimental import mesh_utils

            arr = mesh_utils.create_hybrid_device_mesh(ici, dcn, devices=devices)
        else:  # no slice topology (CPU/GPU): consecutive device groups play the slices
            import numpy as np

            k = len(MESH_AXES)
            arr = np.asarray(devices, dtype=object).reshape(*dcn, *ici)
            arr = arr.transpose([j for i in range(k) for j in (i, i + k)]).reshape(shape)
        return Mesh(arr, MESH_AXES, axis_types=auto)
    if len(devices) == len(jax.devices()):
        return jax.make_mesh(shape, MESH_AXES, axis_types=auto, devices=devices)
    import numpy as np

    return Mesh(np.asarray(devices, dtype=object).reshape(shape), MESH_AXES, axis_types=auto)


def batch_shards(mesh) -> int:
    """How many ways the batch dimension is split (data x fsdp); ``mesh``: a Mesh or its axis sizes."""
    shape = getattr(mesh, "shape", mesh)
    return shape["data"] * shape["fsdp"]


def check_divisibility(mesh, *, batch_size: int, grad_accum: int, model_cfg, process_count: int = 1,
                       eval_batch_size: int | None = None) -> None:
    """ConfigError (one line) if the batch or any sharded parameter dim does not divide its mesh axes.

    ``mesh``: a Mesh, or its axis sizes (a planner checking a target it does not have).
    """
    shape = getattr(mesh, "shape", mesh)
    n = batch_shards(mesh)
    micro = batch_size // grad_accum
    if micro % n:
        raise ConfigError(f"batch_size={batch_size} (micro-batch {micro} with grad_accum={grad_accum}) is not "
                          f"divisible by mesh data*fsdp={n}; use a batch that is a multiple of {n * grad_accum}")
    if eval_batch_size is not None and (eval_batch_size % n or eval_batch_size % process_count):
        raise ConfigError(f"eval_batch_size={eval_batch_size}: not divisible by mesh data*fsdp={n} and "
                          f"{process_count} processes; use a multiple of {n * process_count}")
    if batch_size % process_count:
        raise ConfigError(f"batch_size={batch_size}: not divisible by the {process_count} processes")
    t, f = shape["tensor"], shape["fsdp"]
    for name, v, ax, k in (("n_heads", model_cfg.n_heads, "tensor", t), ("ffw_size", model_cfg.ffw_size, "tensor", t),
                           ("vocab_size", model_cfg.vocab_size, "tensor", t), ("d_model", model_cfg.d_model, "fsdp", f)):
        if v % k:
            raise ConfigError(f"model.{name}={v}: not divisible by mesh {ax}={k}; change the mesh (--mesh) or the shape")


def logical_shardings(boxed_abstract_tree, mesh, rules=RULES):
    """NamedShardings (same tree structure as the unboxed tree) from a boxed ``eval_shape`` tree."""
    import flax.linen as nn

    spec = nn.get_partition_spec(boxed_abstract_tree)
    return nn.logical_to_mesh_sharding(spec, mesh, rules)


def batch_sharding(mesh):
    """Rows over (data, fsdp); the sequence dimension replicated."""
    from jax.sharding import NamedSharding, PartitionSpec as P

    return NamedSharding(mesh, P(("data", "fsdp"), None))


def replicated(mesh):
    from jax.sharding import NamedSharding, PartitionSpec as P

    return NamedSharding(mesh, P())


def initialize_distributed(settings=None) -> bool:
    """Join a multi-process JAX job if the settings ask for one; returns whether this process is in one.

    ``settings.coordinator`` (``host:port``), ``num_processes`` and ``process_id`` name the job
    explicitly (:mod:`scaling.settings`); without them, JAX's own auto-detection is used only
    when SLURM / TPU / Open MPI variables are present.  On CPU the collectives use gloo.
    Safe to call twice (the second call is a no-op).  ``settings`` default: read from the
    environment now.
    """
    import jax

    from scaling.settings import Settings

    if getattr(initialize_distributed, "_done", False):
        return True
    settings = settings or Settings.from_environ()
    if settings.coordinator:
        if settings.num_processes <= 1:
            return False
        if os.environ.get("JAX_PLATFORMS", "cpu") == "cpu" or jax.config.jax_platforms == "cpu":
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=settings.coordinator, num_processes=settings.num_processes,
                                   process_id=settings.process_id)
    elif any(k in os.environ for k in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES")):
        # the cluster's own variables (not ours): JAX reads them itself
        n = int(os.environ.get("SLURM_NTASKS", os.environ.get("OMPI_COMM_WORLD_SIZE", "1")))
        if n <= 1 and "TPU_WORKER_HOSTNAMES" not in os.environ:
            return False
        jax.distributed.initialize()
    else:
        return False
    initialize_distributed._done = True
    return True
