"""Accelerator targets by their cloud names: chips, hosts, memory per chip, bf16 peak, topology.

``parse_target("v5p-128")`` -> :class:`Target`.  Names follow gcloud's accelerator types:

=================  ======================================  =======================================
name               meaning                                 example
=================  ======================================  =======================================
``v4-N``           TPU v4, N TensorCores (2 per chip)      ``v4-32``: 16 chips, topology 2x2x4
``v5p-N``          TPU v5p, N TensorCores (2 per chip)     ``v5p-128``: 64 chips, topology 4x4x4
``v5litepod-N``    TPU v5e, N chips                        ``v5litepod-16``: topology 4x4
``v6e-N``          TPU v6e (Trillium), N chips             ``v6e-8``: topology 2x4
``a100-80gb-xN``   N NVIDIA A100 SXM 80 GB                 ``a100-80gb-x8``
``h100-xN``        N NVIDIA H100 SXM 80 GB                 ``h100-x8``; ``h100-x64``: 8 hosts x 8
``h200-xN``        N NVIDIA H200 141 GB                    ``h200-x8``
=================  ======================================  =======================================

A GPU count is 1, 2, 4 or 8 (one host) or a multiple of 8 (``hosts x 8``).  Both kinds are
compiled for on this CPU-only host: TPU topologies by libtpu (the ``tpu`` extra), GPU ones by
XLA:GPU deviceless (the ``gpu-aot`` extra: ``jax-cuda12-plugin`` + cuDNN) from the
``GpuTargetConfig`` protos shipped in ``scaling/gpu_targets/`` (each says where its numbers come
from), with topology ``1 x hosts x GPUs-per-host``.  Peaks come from
:data:`scaling.accounting.PEAK_TABLE` (one table of vendor numbers).

**GPU memory.** XLA:GPU never refuses a program larger than the card (libtpu does), so a plan's
``fits`` compares the compiled bytes with :attr:`Target.hbm_bytes`, which on a GPU is the part of
the card a JAX process may use: JAX preallocates ``XLA_PYTHON_CLIENT_MEM_FRACTION`` of it (0.75
unless that variable is set where you plan) as the pool every XLA buffer comes from; the rest,
:attr:`Target.reserve_bytes`, is what CUDA's context, cuBLAS/cuDNN handles and NCCL's
communicator buffers allocate outside that pool.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
from pathlib import Path

from scaling.config import ConfigError

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Generation:
    kind: str  # "tpu" | "gpu"
    device_kind: str  # matched against accounting.PEAK_TABLE
    hbm_bytes: float  # per chip
    cores_per_chip: int = 1  # how the cloud name counts (TensorCores for v4/v5p)
    chips_per_host: int = 4
    topology: str = ""  # libtpu's name prefix ("" for GPUs)
    dims: int = 3  # 3D torus (v4, v5p) or 2D (v5e, v6e)
    target_config: str = ""  # GPUs: the GpuTargetConfig text proto in scaling/gpu_targets/
    # GPUs, for the step-time model (scaling.accounting.gpu_step_model): per-GPU link bandwidth
    # in bytes/s, one direction, inside a host (NVLink) and between hosts (InfiniBand, 8 x 400 Gb/s
    # NICs per 8-GPU host, i.e. one 50 GB/s NIC per GPU, as in DGX H100/H200 and A100 SuperPODs).
    nvlink_bw: float = 0.0
    network_bw: float = 50e9


GENERATIONS = {
    "v4": Generation("tpu", "tpu v4", 32 * GIB, cores_per_chip=2, topology="v4", dims=3),
    "v5p": Generation("tpu", "v5p", 95 * GIB, cores_per_chip=2, topology="v5p", dims=3),
    "v5litepod": Generation("tpu", "v5e", 16 * GIB, topology="v5e", dims=2),
    "v6e": Generation("tpu", "v6e", 32 * GIB, topology="v6e", dims=2),
    # GPU memory = the protos' device_memory_size (what cudaMemGetInfo reports as total)
    "a100-80gb": Generation("gpu", "a100", 85100068864, chips_per_host=8, target_config="a100_sxm_80.txtpb",
                            nvlink_bw=300e9),  # NVLink 3: 600 GB/s both directions
    "h100": Generation("gpu", "h100", 84942979072, chips_per_host=8, target_config="h100_sxm.txtpb",
                       nvlink_bw=450e9),  # NVLink 4: 900 GB/s both directions
    "h200": Generation("gpu", "h200", 151397597184, chips_per_host=8, target_config="h200.txtpb",
                       nvlink_bw=450e9),
}
GPU_TARGETS_DIR = Path(__file__).resolve().parent / "gpu_targets"
JAX_MEM_FRACTION = 0.75  # JAX's default XLA_PYTHON_CLIENT_MEM_FRACTION: the pool XLA's buffers live in
GPU_AOT_INSTALL = "pip install 'scaling[gpu-aot]'  (jax-cuda12-plugin==0.10.2 and nvidia-cudnn-cu12)"
_TPU = re.compile(r"(v4|v5p|v5litepod|v6e)-(\d+)")
_GPU = re.compile(r"(a100-80gb|h100|h200)-x(\d+)")


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    generation: str
    chips: int
    hbm_override: float | None = None  # bytes per chip to plan against instead of the chip's (headroom, what-ifs)

    @property
    def gen(self) -> Generation:
        return GENERATIONS[self.generation]

    @property
    def backend(self) -> str:
        return self.gen.kind

    @property
    def hosts(self) -> int:
        return max(1, self.chips // self.gen.chips_per_host) if self.chips > 8 or self.backend == "gpu" else 1

    @property
    def mem_fraction(self) -> float:
        """GPUs: the share of the card JAX lets XLA use ($XLA_PYTHON_CLIENT_MEM_FRACTION here, else JAX's 0.75)."""
        raw = os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION", "")
        try:
            f = float(raw) if raw else JAX_MEM_FRACTION
        except ValueError:
            raise ConfigError(f"XLA_PYTHON_CLIENT_MEM_FRACTION={raw!r}: must be a number in (0, 1], e.g. 0.9") from None
        if not 0 < f <= 1:
            raise ConfigError(f"XLA_PYTHON_CLIENT_MEM_FRACTION={raw!r}: must be in (0, 1], e.g. 0.9")
        return f

    @property
    def card_bytes(self) -> float:
        """The whole memory of one chip (HBM per TPU chip, device memory per GPU)."""
        return self.gen.hbm_bytes

    @property
    def reserve_bytes(self) -> float:
        """GPUs: memory outside XLA's pool (CUDA context, cuBLAS/cuDNN handles, NCCL); 0 on TPU."""
        if self.backend != "gpu" or self.hbm_override is not None:
            return 0.0
        return self.card_bytes * (1.0 - self.mem_fraction)

    @property
    def hbm_bytes(self) -> float:
        """Bytes per chip a program may use: ``--hbm-gib`` if given, else the chip's (GPU: less the reserve)."""
        if self.hbm_override is not None:
            return self.hbm_override
        return self.card_bytes - self.reserve_bytes

    @property
    def peak_flops(self) -> float:
        """bf16 dense peak FLOP/s per chip (vendor figure)."""
        from scaling import accounting

        return accounting.table_peak(self.gen.device_kind)[0]

    @property
    def estimated(self) -> bool:
        """True only for a GPU target when the GPU compile extra is missing (then memory is a model)."""
        return self.backend == "gpu" and gpu_aot_problem() is not None

    @property
    def topology(self) -> str:
        """libtpu's topology name (``v5p:4x4x4``), or XLA:GPU's ``partitions x hosts x GPUs per host``."""
        if self.backend == "gpu":
            return f"1x{self.hosts}x{self.chips // self.hosts}"
        return f"{self.gen.topology}:{'x'.join(str(d) for d in torus(self.chips, self.gen.dims))}"

    def devices(self):
        """The target's devices (TPU or GPU topology devices, usable in a Mesh for AOT compiles).

        JAX must already be limited to the CPU platform here (``JAX_PLATFORMS=cpu`` before it
        starts, or ``jax.config.update('jax_platforms', 'cpu')`` before its first backend call):
        otherwise the CUDA plugin tries to open a GPU this host does not have.
        """
        from jax.experimental import topologies

        if self.backend == "gpu":
            problem = gpu_aot_problem()
            if problem:
                raise ConfigError(f"--target {self.name}: {problem}")
            try:
                return topologies.get_topology_desc(platform="cuda", target_config=self.target_config_text(),
                                                    topology=self.topology).devices
            except Exception as e:  # noqa: BLE001 - the plugin refused the description or topology
                raise ConfigError(f"--target {self.name}: XLA:GPU cannot build topology {self.topology} "
                                  f"({type(e).__name__}: {' '.join(str(e).split())[:200]}); plan with "
                                  f"JAX_PLATFORMS=cpu set before JAX starts") from e
        os.environ.setdefault("TPU_ACCELERATOR_TYPE", self.name)  # libtpu: do not probe this host for chips
        try:
            return topologies.get_topology_desc(platform="tpu", topology_name=self.topology).devices
        except Exception as e:  # noqa: BLE001 - libtpu missing, locked, or a topology it does not know
            msg = " ".join(str(e).split())
            # libtpu allows one process per host: a CPU sweep started without JAX_PLATFORMS=cpu holds it
            fix = ("another JAX process on this host holds libtpu (e.g. a running CPU sweep or notebook): wait for it, "
                   "or start CPU work with JAX_PLATFORMS=cpu so that it leaves libtpu alone"
                   if "lockfile" in msg else "install libtpu: pip install 'scaling[tpu]'")
            raise ConfigError(f"--target {self.name}: cannot build TPU topology {self.topology} ({type(e).__name__}: "
                              f"{msg[:200]}); {fix}") from e

    def target_config_text(self) -> str:
        """The GPU's ``GpuTargetConfig`` text proto (comments and all; XLA's text parser skips them)."""
        return (GPU_TARGETS_DIR / self.gen.target_config).read_text()


def gpu_aot_problem() -> str | None:
    """Why this host cannot compile for a GPU deviceless (one line naming the install), or None."""
    for module, what in (("jax_plugins.xla_cuda12", "the XLA:GPU compiler"),
                         ("nvidia.cudnn", "cuDNN (for cuDNN attention)")):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"{what} is not installed; {GPU_AOT_INSTALL}"
    return None


# Slice shapes by chip count (the shapes gcloud provisions; libtpu's topology names use them).
TORUS_3D = {4: (2, 2, 1), 8: (2, 2, 2), 16: (2, 2, 4), 32: (2, 4, 4), 64: (4, 4, 4), 128: (4, 4, 8),
            256: (4, 8, 8), 512: (8, 8, 8), 1024: (8, 8, 16), 2048: (8, 16, 16), 4096: (16, 16, 16)}
TORUS_2D = {1: (1, 1), 4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8), 128: (8, 16), 256: (16, 16)}


def torus(chips: int, dims: int) -> tuple[int, ...]:
    """The slice shape of ``chips`` chips (``TORUS_3D`` / ``TORUS_2D``)."""
    return (TORUS_3D if dims == 3 else TORUS_2D)[chips]


GPU_COUNTS = (1, 2, 4, 8)  # on one host; more GPUs come as hosts x 8


def _example(gen: str) -> str:
    g = GENERATIONS[gen]
    if g.kind == "gpu":
        return f"{gen}-x8"
    sizes = TORUS_3D if g.dims == 3 else TORUS_2D
    return f"{gen}-{(8 if 8 in sizes else min(sizes)) * g.cores_per_chip}"


def parse_target(name: str) -> Target:
    """A :class:`Target` from a cloud name (see the module table); a one-line ConfigError naming
    ``--target`` and valid choices otherwise."""
    forms = ("v4-N, v5p-N, v5litepod-N, v6e-N (TPU) or a100-80gb-xN, h100-xN, h200-xN (GPU), "
             "e.g. v5p-128 or h100-x8")
    m = _TPU.fullmatch(name or "") or _GPU.fullmatch(name or "")
    if not m:
        gpu = re.fullmatch(r"(a100-80gb|h100|h200)-(\d+)", name or "")
        hint = f" (GPU counts are written -xN: {gpu.group(1)}-x{gpu.group(2)})" if gpu else ""
        raise ConfigError(f"--target {name!r}: unknown target{hint}; use {forms}")
    gen, n = m.group(1), int(m.group(2))
    g = GENERATIONS[gen]
    if g.kind == "gpu":
        if n < 1 or (n not in GPU_COUNTS and n % g.chips_per_host):
            raise ConfigError(f"--target {name}: {n} GPUs is not 1, 2, 4 or 8 on one host, or hosts x "
                              f"{g.chips_per_host}; use e.g. {gen}-x8 or {gen}-x64")
        return Target(name=name, generation=gen, chips=n)
    if n < 1 and g.cores_per_chip == 1:
        raise ConfigError(f"--target {name}: N is the chip count and must be positive; use e.g. {_example(gen)}")
    if n < 1 or n % g.cores_per_chip:
        raise ConfigError(f"--target {name}: {gen} counts {g.cores_per_chip} TensorCores per chip, so N must be a "
                          f"positive multiple of {g.cores_per_chip}; use e.g. {_example(gen)}")
    chips = n // g.cores_per_chip
    if g.kind == "tpu" and chips not in (TORUS_3D if g.dims == 3 else TORUS_2D):
        sizes = sorted(k * g.cores_per_chip for k in (TORUS_3D if g.dims == 3 else TORUS_2D))
        raise ConfigError(f"--target {name}: not a {gen} slice size; choose {gen}-N with N in {sizes}, "
                          f"e.g. {_example(gen)}")
    return Target(name=name, generation=gen, chips=chips)
