"""Accelerator targets by their cloud names: chips, hosts, HBM per chip, bf16 peak, TPU topology.

``parse_target("v5p-128")`` -> :class:`Target`.  Names follow gcloud's accelerator types:

=================  ======================================  =======================================
name               meaning                                 example
=================  ======================================  =======================================
``v4-N``           TPU v4, N TensorCores (2 per chip)      ``v4-32``: 16 chips, topology 2x2x4
``v5p-N``          TPU v5p, N TensorCores (2 per chip)     ``v5p-128``: 64 chips, topology 4x4x4
``v5litepod-N``    TPU v5e, N chips                        ``v5litepod-16``: topology 4x4
``v6e-N``          TPU v6e (Trillium), N chips             ``v6e-8``: topology 2x4
``a100-80gb-xN``   N NVIDIA A100 80 GB                     ``a100-80gb-x8``
``h100-xN``        N NVIDIA H100 80 GB                     ``h100-x8``
``h200-xN``        N NVIDIA H200 141 GB                    ``h200-x8``
=================  ======================================  =======================================

TPU targets are compiled for exactly (libtpu compiles for any topology on a CPU-only host);
GPU targets are estimated from the peak table and a memory model (:mod:`scaling.aot`), and
say so.  Peaks come from :data:`scaling.accounting.PEAK_TABLE` (one table of vendor numbers).
"""

from __future__ import annotations

import dataclasses
import re

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


GENERATIONS = {
    "v4": Generation("tpu", "tpu v4", 32 * GIB, cores_per_chip=2, topology="v4", dims=3),
    "v5p": Generation("tpu", "v5p", 95 * GIB, cores_per_chip=2, topology="v5p", dims=3),
    "v5litepod": Generation("tpu", "v5e", 16 * GIB, topology="v5e", dims=2),
    "v6e": Generation("tpu", "v6e", 32 * GIB, topology="v6e", dims=2),
    "a100-80gb": Generation("gpu", "a100", 80e9, chips_per_host=8),
    "h100": Generation("gpu", "h100", 80e9, chips_per_host=8),
    "h200": Generation("gpu", "h200", 141e9, chips_per_host=8),
}
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
    def hbm_bytes(self) -> float:
        return self.hbm_override if self.hbm_override is not None else self.gen.hbm_bytes

    @property
    def peak_flops(self) -> float:
        """bf16 dense peak FLOP/s per chip (vendor figure)."""
        from scaling import accounting

        return accounting.table_peak(self.gen.device_kind)[0]

    @property
    def estimated(self) -> bool:
        """GPU targets are estimates (no AOT compiler here); TPU targets are compiled for."""
        return self.backend == "gpu"

    @property
    def topology(self) -> str:
        """libtpu's topology name, e.g. ``v5p:4x4x4``."""
        return f"{self.gen.topology}:{'x'.join(str(d) for d in torus(self.chips, self.gen.dims))}"

    def devices(self):
        """The target's devices (TPU topology devices, usable in a Mesh for AOT compiles)."""
        import os

        if self.backend != "tpu":
            raise ConfigError(f"--target {self.name}: GPU targets are estimated, not compiled for")
        os.environ.setdefault("TPU_ACCELERATOR_TYPE", self.name)  # libtpu: do not probe this host for chips
        from jax.experimental import topologies

        try:
            return topologies.get_topology_desc(platform="tpu", topology_name=self.topology).devices
        except Exception as e:  # noqa: BLE001 - libtpu missing, or a topology it does not know
            raise ConfigError(f"--target {self.name}: cannot build TPU topology {self.topology} ({type(e).__name__}: "
                              f"{str(e)[:200]}); install libtpu: pip install 'scaling[tpu]'") from e


# Slice shapes by chip count (the shapes gcloud provisions; libtpu's topology names use them).
TORUS_3D = {4: (2, 2, 1), 8: (2, 2, 2), 16: (2, 2, 4), 32: (2, 4, 4), 64: (4, 4, 4), 128: (4, 4, 8),
            256: (4, 8, 8), 512: (8, 8, 8), 1024: (8, 8, 16), 2048: (8, 16, 16), 4096: (16, 16, 16)}
TORUS_2D = {1: (1, 1), 4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8), 128: (8, 16), 256: (16, 16)}


def torus(chips: int, dims: int) -> tuple[int, ...]:
    """The slice shape of ``chips`` chips (``TORUS_3D`` / ``TORUS_2D``)."""
    return (TORUS_3D if dims == 3 else TORUS_2D)[chips]


def parse_target(name: str) -> Target:
    """A :class:`Target` from a cloud name (see the module table); ConfigError listing the forms otherwise."""
    forms = "v4-N, v5p-N, v5litepod-N, v6e-N (TPU) or a100-80gb-xN, h100-xN, h200-xN (GPU)"
    m = _TPU.fullmatch(name or "") or _GPU.fullmatch(name or "")
    if not m:
        raise ConfigError(f"--target {name!r}: unknown target; use {forms}")
    gen, n = m.group(1), int(m.group(2))
    g = GENERATIONS[gen]
    if n < 1 or n % g.cores_per_chip:
        raise ConfigError(f"--target {name}: {gen} counts {g.cores_per_chip} cores per chip; use a multiple of "
                          f"{g.cores_per_chip}, e.g. {gen}-{8 * g.cores_per_chip}")
    chips = n // g.cores_per_chip
    if g.kind == "tpu" and chips not in (TORUS_3D if g.dims == 3 else TORUS_2D):
        sizes = sorted(k * g.cores_per_chip for k in (TORUS_3D if g.dims == 3 else TORUS_2D))
        raise ConfigError(f"--target {name}: not a {gen} slice size; choose {gen}-N with N in {sizes}")
    return Target(name=name, generation=gen, chips=chips)
