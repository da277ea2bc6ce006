"""SLURM backend: a job array of K workers through submitit (``pip install scaling[slurm]``).

Each array task runs the same worker loop as the local backend
(:func:`scaling.launch.worker.run_worker`) on the shared sweep directory, so the directory
must live on a file system every node sees.  Cells are claimed through the per-cell locks;
cancelling the array and resubmitting resumes the sweep.  Executor parameters come from
``SCALING_SLURM_*`` environment variables or keyword arguments: partition, time limit
(minutes), CPUs and GPUs per task.  submitit logs go to ``OUT/slurm/``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from scaling.config import ConfigError
from scaling.launch.local import REPO


def _slurm_worker(out: str, index: int, count: int, retry_failed: bool = True) -> dict:
    from scaling.launch.worker import pin_cpus, run_worker  # noqa: F401

    return run_worker(out, index, count, retry_failed=retry_failed)


class SlurmArray:
    name = "slurm"

    def __init__(self, out, workers: int = 1, *, partition: str | None = None, timeout_min: int | None = None,
                 cpus_per_task: int | None = None, gpus_per_node: int | None = None, retry_failed: bool = True):
        self.out = Path(out).resolve()
        self.workers = max(1, int(workers))
        self.partition = partition or os.environ.get("SCALING_SLURM_PARTITION")
        self.timeout_min = int(timeout_min or os.environ.get("SCALING_SLURM_TIMEOUT_MIN", 24 * 60))
        self.cpus_per_task = int(cpus_per_task or os.environ.get("SCALING_SLURM_CPUS", 1))
        self.gpus_per_node = int(gpus_per_node or os.environ.get("SCALING_SLURM_GPUS", 0))
        self.retry_failed = retry_failed
        self.jobs = []

    def start(self) -> None:
        try:
            import submitit
        except ImportError as e:
            raise ConfigError("--backend slurm: submitit is not installed; pip install 'scaling[slurm]'") from e
        # The array tasks inherit this environment (sbatch --export=ALL): make `scaling` importable.
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        ex = submitit.AutoExecutor(folder=str(self.out / "slurm" / "%j"), cluster="slurm")
        params = dict(timeout_min=self.timeout_min, slurm_array_parallelism=self.workers,
                      cpus_per_task=self.cpus_per_task, nodes=1, tasks_per_node=1, name="scaling-sweep")
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.gpus_per_node:
            params["gpus_per_node"] = self.gpus_per_node
        ex.update_parameters(**params)
        k = self.workers
        self.jobs = ex.map_array(_slurm_worker, [str(self.out)] * k, list(range(k)), [k] * k,
                                 [self.retry_failed] * k)

    def running(self) -> bool:
        return any(not j.done() for j in self.jobs)

    def errors(self) -> list[str]:
        errs = []
        for j in self.jobs:
            if j.done():
                e = j.exception()
                if e is not None:
                    errs.append(f"slurm job {j.job_id}: {type(e).__name__}: {str(e)[:500]}")
        return errs

    def stop(self) -> None:
        for j in self.jobs:
            if not j.done():
                try:
                    j.cancel(check=False)
                except Exception:  # noqa: BLE001
                    pass
        time.sleep(0.1)
