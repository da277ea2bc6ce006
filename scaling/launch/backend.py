"""The backend seam: how a sweep's workers are started, watched and stopped.

Every backend runs the same worker loop (:func:`scaling.launch.worker.run_worker`) on the same
sweep directory; they differ only in where the workers run.  ``run_sweep`` talks to them
through :class:`Backend` alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

from scaling.config import ConfigError

REPO = Path(__file__).resolve().parents[2]

NAMES = ("local", "slurm", "ray")


@runtime_checkable
class Backend(Protocol):
    name: str

    def start(self) -> None:
        """Start the workers (returns at once)."""

    def poll(self) -> bool:
        """True while any worker may still be running."""

    def errors(self) -> list[str]:
        """One line per worker that ended abnormally (after :meth:`poll` returned False)."""

    def stop(self) -> None:
        """Stop every worker still running (idempotent)."""

    def overhead(self) -> dict[str, float]:
        """Launcher-side seconds per phase (e.g. data preparation), added to the sweep's breakdown."""


def repo_pythonpath(existing: str | None) -> str:
    """``PYTHONPATH`` with this checkout first, so worker processes import the same ``scaling``."""
    return os.pathsep.join([str(REPO)] + [p for p in (existing or "").split(os.pathsep) if p])


def make_backend(name: str, out, workers: int, settings, *, address: str | None = None, retry_failed: bool = True,
                 train_fn: str | None = None) -> Backend:
    """The backend called ``name`` for sweep directory ``out`` (ConfigError for an unknown name)."""
    kw = dict(settings=settings, retry_failed=retry_failed, train_fn=train_fn)
    if name == "local":
        from scaling.launch.local import LocalPool

        return LocalPool(out, workers, **kw)
    if name == "slurm":
        from scaling.launch.slurm import SlurmArray

        return SlurmArray(out, workers, **kw)
    if name == "ray":
        from scaling.launch.ray import RayTasks

        return RayTasks(out, workers, address=address, **kw)
    raise ConfigError(f"--backend {name!r}: choose one of {', '.join(NAMES)}")
