"""Ray backend: K Ray tasks, each running the worker loop (``pip install scaling[ray]``).

``address=None`` starts a local Ray (``num_cpus`` = workers); ``address="auto"`` or
``"ray://host:10001"`` joins an existing cluster (default: ``Settings.ray_address``).  The
sweep directory must be visible to every Ray node (shared file system).  Each task asks for
``num_cpus`` (default 1) and ``num_gpus`` (default 0) resources.
"""

from __future__ import annotations

import os
from pathlib import Path

from scaling.config import ConfigError
from scaling.launch.backend import repo_pythonpath


class RayTasks:
    name = "ray"

    def __init__(self, out, workers: int = 1, *, settings, address: str | None = None, num_cpus: float = 1,
                 num_gpus: float = 0, retry_failed: bool = True, train_fn: str | None = None):
        self.out = Path(out).resolve()
        self.workers = max(1, int(workers))
        self.settings = settings
        self.train_fn = train_fn
        self.address = address or settings.ray_address
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
        os.environ["PYTHONPATH"] = repo_pythonpath(os.environ.get("PYTHONPATH"))
        if not ray.is_initialized():
            kw = dict(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
            if self.address:
                ray.init(address=self.address, **kw)
            else:
                ray.init(num_cpus=max(self.workers, int(self.num_cpus * self.workers)), **kw)
            self._started_ray = True

        @ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=0)
        def _ray_worker(out, index, retry_failed, settings, train_fn):
            from scaling.launch.worker import run_worker

            return run_worker(out, index, retry_failed=retry_failed, settings=settings, train_fn=train_fn)

        k = self.workers
        self.refs = [_ray_worker.remote(str(self.out), i, self.retry_failed, self.settings, self.train_fn)
                     for i in range(k)]

    def poll(self) -> bool:
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

    def overhead(self) -> dict[str, float]:
        return {}

    def stop(self) -> None:
        import ray

        for r in self.refs:
            if r not in self._done:
                ray.cancel(r, force=True)
        if self._started_ray:
            ray.shutdown()
