"""Local backend: a pool of K worker processes on this machine.

Each worker is a fresh ``python -m scaling.launch.worker`` process that trains many cells,
so imports and XLA compilation (with the persistent compilation cache, shared through
``OUT/.jax_cache`` unless ``Settings.compile_cache`` says otherwise) are paid once per worker.  On CPU the
workers split the cores: worker i is pinned with ``sched_setaffinity`` to its own slice of
the launcher's CPUs before JAX starts (XLA and TF size their thread pools from the affinity
mask), and OMP/TF thread counts are set to the slice size.  Workers die with the launcher
(``PR_SET_PDEATHSIG``), so a killed sweep leaves stale locks that the next launch breaks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from scaling.launch.backend import repo_pythonpath
from scaling.settings import device_files_backend


def worker_environ(settings) -> dict:
    """The environment of a worker process: ours, the settings, and ``scaling`` importable; on a
    machine with no accelerator device file and no ``JAX_PLATFORMS`` of the user's, ``JAX_PLATFORMS=cpu``."""
    env = dict(os.environ)
    env.update(settings.environ())
    env["PYTHONPATH"] = repo_pythonpath(env.get("PYTHONPATH"))
    if not env.get("JAX_PLATFORMS") and device_files_backend() == "cpu":
        # The workers will compute on CPU whatever is installed, so say it before JAX starts: else JAX
        # initialises every plugin it finds (jax-cuda12-plugin, from the gpu-aot extra, writes a CUDA
        # traceback into each worker log; libtpu admits one process per host, so a CPU worker holding
        # it makes a TPU AOT plan on the same machine fail).
        env["JAX_PLATFORMS"] = "cpu"
    return env


class LocalPool:
    name = "local"

    def __init__(self, out, workers: int = 1, *, settings, pin: bool = True, retry_failed: bool = True,
                 train_fn: str | None = None):
        self.out = Path(out)
        self.workers = max(1, int(workers))
        self.settings = settings
        self.pin = pin
        self.retry_failed = retry_failed
        self.train_fn = train_fn
        self._overhead: dict[str, float] = {}
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        env = worker_environ(self.settings)
        for i in range(self.workers):
            cmd = [sys.executable, "-m", "scaling.launch.worker", str(self.out), "--index", str(i),
                   "--count", str(self.workers), "--die-with-parent"]
            if self.pin:
                cmd.append("--pin")
            if not self.retry_failed:
                cmd.append("--no-retry-failed")
            if self.train_fn:
                cmd += ["--train-fn", self.train_fn]
            log = open(self.out / f"worker-{i}.log", "ab")
            self.procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))

    def poll(self) -> bool:
        return any(p.poll() is None for p in self.procs)

    def errors(self) -> list[str]:
        return [f"worker {i} exited with status {p.returncode} (see {self.out}/worker-{i}.log)"
                for i, p in enumerate(self.procs) if p.returncode not in (0, None)]

    def overhead(self) -> dict[str, float]:
        return dict(self._overhead)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
