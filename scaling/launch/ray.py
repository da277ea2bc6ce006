"""Ray backend: K Ray tasks, each running the worker loop (``pip install scaling[ray]``).

``address=None`` starts a local Ray (``num_cpus`` = workers); ``address="auto"`` or
``"ray://host:10001"`` joins an existing cluster (``$SCALING_RAY_ADDRESS`` also works).  The
sweep directory must be visible to every Ray node (shared file system).  Each task asks for
``num_cpus`` (default 1) and ``num_gpus`` (default 0) resources.
"""

from __future__ import annotations

import os
from pathlib import Path

from scaling.config import ConfigError
from scaling.launch.local import REPO


class RayTasks:
    name = "ray"

    def __init__(self, out, workers: int = 1, *, address: str | None = None, num_cpus: float = 1,
                 num_gpus: float = 0, retry_failed: bool = True):
        self.out = Path(out).resolve()
        self.workers = max(1, int(workers))
        self.address = address or os.environ.get("SCALING_RAY_ADDRESS")
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self.retry_failed = retry_failed
        self.refs = []
        self._done: dict = {}
        self._started_ray = False

    def start(self) -> None:
        try:
            import ray
        except ImportError as e:
            raise ConfigError("--backend ray: ray is not installed; pip install 'scaling[ray]'") from e
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        if not ray.is_initialized():
            kw = dict(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
            if self.address:
                ray.init(address=self.address, **kw)
            else:
                ray.init(num_cpus=max(self.workers, int(self.num_cpus * self.workers)), **kw)
            self._started_ray = True

        @ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=0)
        def _ray_worker(out, index, count, retry_failed):
            from scaling.launch.worker import run_worker

            return run_worker(out, index, count, retry_failed=retry_failed)

        k = self.workers
        self.refs = [_ray_worker.remote(str(self.out), i, k, self.retry_failed) for i in range(k)]

    def running(self) -> bool:
        import ray

        pending = [r for r in self.refs if r not in self._done]
        if not pending:
            return False
        ready, _ = ray.wait(pending, num_returns=len(pending), timeout=0)
        for r in ready:
            try:
                self._done[r] = ray.get(r)
            except Exception as e:  # noqa: BLE001
                self._done[r] = e
        return len(self._done) < len(self.refs)

    def errors(self) -> list[str]:
        return [f"ray task: {type(v).__name__}: {str(v)[:500]}" for v in self._done.values() if isinstance(v, Exception)]

    def stop(self) -> None:
        import ray

        for r in self.refs:
            if r not in self._done:
                ray.cancel(r, force=True)
        if self._started_ray:
            ray.shutdown()
