"""Process settings: every ``SCALING_*`` environment variable, read in one place, once.

The environment is read by :meth:`Settings.from_environ` at the entry points (the ``scaling``
CLI, the sweep worker, the library entry :func:`scaling.train.train` when it is not handed
settings) and the frozen result is passed down; nothing below an entry point and nothing at
import time looks at ``os.environ`` for these.  A launcher hands its settings to the worker
processes it starts with :meth:`Settings.environ`, so the names live here alone.

=============================  ==============================================================
variable                       field (meaning)
=============================  ==============================================================
SCALING_DATA_DIR               data_dir: prepared datasets, vocabularies, token caches
SCALING_CACHE_DIR              cache_dir: other caches (the CPU matmul-peak probe)
SCALING_PEAK_FLOPS             peak_flops: per-device peak FLOP/s used for MFU (overrides all)
SCALING_COMPILE_CACHE          compile_cache: JAX persistent compilation cache directory
SCALING_STACK_MAX              stack_max: same-shape cells a local worker trains as one program
SCALING_COORDINATOR            coordinator (``host:port``) ...
SCALING_NUM_PROCESSES          num_processes ...
SCALING_PROCESS_ID             process_id: join a multi-process JAX job (``jax.distributed``)
SCALING_MULTIHOST              multihost: pod mode, every host trains the same cells in lockstep
SCALING_LOCK_HEARTBEAT_S       lock_heartbeat_s: how often a worker touches a cell's LOCK
SCALING_LOCK_STALE_S           lock_stale_s: a LOCK untouched this long belongs to a dead node
SCALING_WORKER_POLL_S          worker_poll_s: how often a worker revisits cells others hold
SCALING_SLURM_PARTITION        slurm_partition ...
SCALING_SLURM_TIMEOUT_MIN      slurm_timeout_min ...
SCALING_SLURM_CPUS             slurm_cpus ...
SCALING_SLURM_GPUS             slurm_gpus: the SLURM array's executor parameters
SCALING_RAY_ADDRESS            ray_address: a Ray cluster to join (default: start a local Ray)
SCALING_REQUIRE_SLURM          require_slurm: tests fail, instead of skipping, without SLURM
SCALING_PYSTDLIB_ROOT          pystdlib_root: the directory the pystdlib corpus is read from
SCALING_C4_VOCAB               c4_vocab: the SentencePiece model of the c4_en task
SCALING_TRACKERS               trackers: experiment trackers beside TensorBoard, e.g. ``wandb,mlflow``
                               (``--tracker``; :mod:`scaling.trackers`; not part of any run id)
=============================  ==============================================================
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Mapping

from scaling.config import ConfigError

_PREFIX = "SCALING_"


def _default_cache_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "scaling")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where caches live, how workers coordinate, which cluster to use (see the module table)."""

    data_dir: str = dataclasses.field(default_factory=lambda: os.path.join(_default_cache_dir(), "data"))
    cache_dir: str = dataclasses.field(default_factory=_default_cache_dir)
    peak_flops: float | None = None
    compile_cache: str | None = None
    stack_max: int | None = None  # None: by backend (1 on CPU, 8 on accelerators)
    coordinator: str | None = None
    num_processes: int = 1
    process_id: int = 0
    multihost: bool = False
    lock_heartbeat_s: float = 10.0
    lock_stale_s: float = 120.0
    worker_poll_s: float = 2.0
    slurm_partition: str | None = None
    slurm_timeout_min: int = 24 * 60
    slurm_cpus: int = 1
    slurm_gpus: int = 0
    ray_address: str | None = None
    require_slurm: bool = False
    pystdlib_root: str | None = None  # default: this interpreter's standard library
    c4_vocab: str | None = None  # default: the T5 cc_all.32000 model on GCS
    trackers: str | None = None  # comma-separated scaling.trackers names; an output choice, never hashed

    def with_trackers(self, names) -> "Settings":
        """These settings plus the trackers ``names`` (``--tracker`` flags), after the ones already set."""
        from scaling import trackers

        have = trackers.parse(self.trackers) + trackers.parse(names)
        return self.replace(trackers=",".join(dict.fromkeys(have)) or None)

    def resolve_data(self, data):
        """``data`` with ``data_dir`` set from these settings when it has none (not hashed into run ids)."""
        import dataclasses as dc

        return data if data.data_dir else dc.replace(data, data_dir=self.data_dir)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Settings from ``SCALING_*`` variables (``environ`` defaults to ``os.environ``).

        A malformed value raises :class:`ConfigError` naming the variable and what it takes.
        """
        env = os.environ if environ is None else environ
        kw: dict = {}
        for f in dataclasses.fields(cls):
            raw = env.get(_PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            kw[f.name] = _parse(f, raw)
        if "data_dir" not in kw and "cache_dir" in kw:
            kw["data_dir"] = os.path.join(kw["cache_dir"], "data")
        for k in ("data_dir", "cache_dir", "compile_cache", "pystdlib_root"):
            if kw.get(k):
                kw[k] = os.path.abspath(os.path.expanduser(kw[k]))
        return cls(**kw).validate()

    def validate(self) -> "Settings":
        def bad(name, why):
            raise ConfigError(f"${_PREFIX}{name.upper()}={getattr(self, name)!r}: {why}")

        if self.peak_flops is not None and not self.peak_flops > 0:
            bad("peak_flops", "must be a positive number of FLOP/s, e.g. 4.3e11")
        if self.stack_max is not None and self.stack_max < 1:
            bad("stack_max", "must be an integer >= 1 (1 disables stacking)")
        if self.num_processes < 1 or not 0 <= self.process_id < self.num_processes:
            bad("process_id", f"must be in [0, {self.num_processes}) with SCALING_NUM_PROCESSES >= 1")
        for name in ("lock_heartbeat_s", "lock_stale_s", "worker_poll_s"):
            if not getattr(self, name) > 0:
                bad(name, "must be a positive number of seconds")
        if self.trackers:
            from scaling import trackers

            try:
                trackers.parse(self.trackers)
            except ConfigError as e:
                bad("trackers", str(e).split(": ", 1)[1])
        if self.lock_stale_s <= self.lock_heartbeat_s:
            bad("lock_stale_s", f"must exceed SCALING_LOCK_HEARTBEAT_S={self.lock_heartbeat_s} "
                                "(a live worker's lock would look stale)")
        return self

    def environ(self) -> dict[str, str]:
        """These settings as ``SCALING_*`` variables, for a child process that reads them back."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None or v == f.default:
                continue
            out[_PREFIX + f.name.upper()] = ("1" if v else "0") if isinstance(v, bool) else str(v)
        return out

    def replace(self, **kw) -> "Settings":
        return dataclasses.replace(self, **kw).validate()


def _parse(field: dataclasses.Field, raw: str):
    kind = str(field.type)
    name = _PREFIX + field.name.upper()
    try:
        if "bool" in kind:
            if raw.lower() not in ("0", "1", "true", "false", "yes", "no"):
                raise ValueError
            return raw.lower() in ("1", "true", "yes")
        if "int" in kind:
            return int(raw)
        if "float" in kind:
            return float(raw)
    except ValueError:
        want = "0 or 1" if "bool" in kind else "an integer" if "int" in kind else "a number"
        raise ConfigError(f"${name}={raw!r}: must be {want}") from None
    return raw


def env_name(field: str) -> str:
    """The environment variable behind a :class:`Settings` field (for messages that tell a user what to set)."""
    if field not in {f.name for f in dataclasses.fields(Settings)}:
        raise KeyError(field)
    return _PREFIX + field.upper()


# Device files an accelerator runtime opens: NVIDIA and AMD (ROCm) GPUs, TPU VMs (v4+: accel, v2/v3: vfio).
GPU_DEVICE_FILES = ("/dev/nvidia0", "/dev/kfd")
TPU_DEVICE_FILES = ("/dev/accel0", "/dev/vfio")


def local_backend() -> str:
    """This machine's backend, ``cpu`` | ``gpu`` | ``tpu``: the one answer every module uses.

    Once JAX is imported this is JAX's own answer (``jax.default_backend()``).  A process that
    has not imported JAX (the sweep launcher, the planner) must not start JAX's backend just to
    ask: on a TPU host that would claim the chips its workers need.  It answers from
    ``JAX_PLATFORMS`` and the accelerator device files instead.
    """
    if "jax" in sys.modules:
        import jax

        platform = jax.default_backend()
    else:
        platforms = os.environ.get("JAX_PLATFORMS", "")
        platform = platforms.split(",")[0].strip() if platforms else device_files_backend()
    return "gpu" if platform in ("cuda", "rocm", "gpu") else platform


def device_files_backend() -> str:
    """``tpu`` | ``gpu`` | ``cpu`` from the accelerator device files alone, without starting JAX."""
    if any(os.path.exists(p) for p in TPU_DEVICE_FILES):
        return "tpu"
    if any(os.path.exists(p) for p in GPU_DEVICE_FILES):
        return "gpu"
    return "cpu"


def is_cpu() -> bool:
    """Whether this process computes on CPU (:func:`local_backend`)."""
    return local_backend() == "cpu"
