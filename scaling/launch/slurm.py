"""SLURM backend: a job array of K workers through submitit (``pip install scaling[slurm]``).

Each array task runs the same worker loop as the local backend
(:func:`scaling.launch.worker.run_worker`) on the shared sweep directory, so the directory
must live on a file system every node sees.  Cells are claimed through the per-cell locks;
cancelling the array and resubmitting resumes the sweep.  Executor parameters: partition, time limit
(minutes), CPUs and GPUs per task, from :class:`scaling.settings.Settings` (``slurm_*``).
submitit logs go to ``OUT/slurm/``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from scaling.config import ConfigError
from scaling.launch.backend import repo_pythonpath


def _slurm_worker(out: str, index: int, retry_failed: bool, settings, train_fn) -> dict:
    from scaling.launch.worker import run_worker

    return run_worker(out, index, retry_failed=retry_failed, settings=settings, train_fn=train_fn)


class SlurmArray:
    name = "slurm"

    def __init__(self, out, workers: int = 1, *, settings, retry_failed: bool = True, train_fn: str | None = None):
        self.out = Path(out).resolve()
        self.workers = max(1, int(workers))
        self.settings = settings
        self.retry_failed = retry_failed
        self.train_fn = train_fn
        self.jobs = []

    def start(self) -> None:
        try:
            import submitit
        except ImportError as e:
            raise ConfigError("--backend slurm: submitit is not installed; pip install 'scaling[slurm]'") from e
        # The array tasks inherit this environment (sbatch --export=ALL): make `scaling` importable.
        os.environ["PYTHONPATH"] = repo_pythonpath(os.environ.get("PYTHONPATH"))
        st = self.settings
        ex = submitit.AutoExecutor(folder=str(self.out / "slurm" / "%j"), cluster="slurm")
        params = dict(timeout_min=st.slurm_timeout_min, slurm_array_parallelism=self.workers,
                      cpus_per_task=st.slurm_cpus, nodes=1, tasks_per_node=1, name="scaling-sweep")
        if st.slurm_partition:
            params["slurm_partition"] = st.slurm_partition
        if st.slurm_gpus:
            params["gpus_per_node"] = st.slurm_gpus
        ex.update_parameters(**params)
        k = self.workers
        self.jobs = ex.map_array(_slurm_worker, [str(self.out)] * k, list(range(k)), [self.retry_failed] * k,
                                 [st] * k, [self.train_fn] * k)

    def poll(self) -> bool:
        return any(not j.done() for j in self.jobs)

    def errors(self) -> list[str]:
        errs = []
        for j in self.jobs:
            if j.done():
                e = j.exception()
                if e is not None:
                    errs.append(f"slurm job {j.job_id}: {type(e).__name__}: {str(e)[:500]}")
        return errs

    def overhead(self) -> dict[str, float]:
        return {}

    def stop(self) -> None:
        for j in self.jobs:
            if not j.done():
                try:
                    j.cancel(check=False)
                except Exception:  # noqa: BLE001
                    pass
        time.sleep(0.1)
