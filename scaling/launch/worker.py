"""The worker loop every backend runs: claim a cell, train it, move on.

A worker reads ``OUT/cells.jsonl`` and walks the cells in a fixed order (largest planned FLOPs
first, so a pool finishes evenly), skipping finished ones and trying each unfinished cell's lock.
The lock, not a central queue, decides who trains what, so K local workers, a SLURM array,
Ray tasks, a relaunched sweep and a second launcher started by mistake all coordinate the
same way, and a cell is never trained twice at once.  A worker trains many cells in one
process, so Python imports and (through the persistent compilation cache) XLA compilation
are paid once per worker, not once per cell.

Training is :func:`scaling.train.train` unless ``train_fn`` (a callable, or ``"module:function"``;
``--train-fn`` on the command line) names another callable with the same signature (tests use
this to count executions).  An exception in training writes ``FAILED`` (with the traceback)
and the worker moves on; a diverged cell is marked ``DIVERGED`` by the trainer and the sweep
goes on.

**Stacking.**  On an accelerator tiny cells spend most of a step on overhead (kernel launches,
host round trips), so when a worker claims a cell it also tries, without waiting, the locks of
up to ``stack_max - 1`` other unfinished cells with the same :func:`scaling.stacked.stack_key`
(an LR sweep's cells of one size), and trains the ones it got together with
:func:`scaling.stacked.train_stacked`: one vmapped program, each member still writing its own
run directory.  Every member keeps its own lock, attempts log and ``FAILED`` on an exception,
so the on-disk protocol is unchanged.  A custom ``train_fn`` is never stacked (it trains one
cell per call), nor is the multi-host lockstep mode.

Run directly: ``python -m scaling.launch.worker OUT [--index I --count K]``; settings come
from the environment (:class:`scaling.settings.Settings`), read once here.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import threading
import time
import traceback
from pathlib import Path

from scaling.config import ConfigError
from scaling.launch import state
from scaling.settings import Settings


def worker_settings(out: str | os.PathLike, settings: Settings | None = None) -> Settings:
    """The settings a sweep worker trains with: the compile cache defaults to ``OUT/.jax_cache``,
    shared by every worker of the sweep."""
    settings = settings or Settings.from_environ()
    if settings.compile_cache is None:
        settings = settings.replace(compile_cache=str(Path(out).resolve() / ".jax_cache"))
    return settings


def pin_cpus(index: int, count: int) -> list[int] | None:
    """Give worker ``index`` of ``count`` its own slice of this process's CPUs (Linux).

    Must run before jax/TF start their thread pools: they size them from the affinity mask.
    Also sets OMP/TF thread-count variables to the slice size.  No-op with fewer CPUs than
    workers (they then share).
    """
    if not hasattr(os, "sched_getaffinity") or count <= 1:
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < count:
        return None
    per = len(cpus) // count
    mine = cpus[index * per:(index + 1) * per]
    os.sched_setaffinity(0, mine)
    for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[var] = str(len(mine))
    return mine


def _die_with_parent() -> None:
    """Exit if the launcher dies (SIGKILL included), so its cells' locks become stale."""
    parent = os.getppid()
    try:  # Linux: the kernel kills us when the parent exits
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001
        pass

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def resolve_train_fn(train_fn):
    """``train_fn`` as a callable: None -> :func:`scaling.train.train`; ``"module:function"`` -> imported."""
    if train_fn is None:
        from scaling.train import train

        return train
    if callable(train_fn):
        return train_fn
    mod, _, fn = str(train_fn).partition(":")
    return getattr(importlib.import_module(mod), fn)


def stack_max(settings: Settings, *, custom_trainer: bool = False) -> int:
    """How many same-key cells one worker trains together: ``settings.stack_max``, else by backend.

    Default: 1 (no stacking) on CPU, 8 on accelerators.  On CPU a tiny model's step is
    elementwise work that grows with K, not per-step overhead that stacking would share
    (``benchmarks/stacked.py`` measures it); on a GPU/TPU a tiny step is dominated by kernel
    launches and host round trips, which K members share.  Always 1 with a custom trainer (it
    has ``train``'s one-cell signature) and in a multi-process JAX job
    (:func:`scaling.stacked.train_stacked` is single-process).
    """
    if custom_trainer or settings.stack_max == 1:
        return 1
    import jax

    from scaling import sharding
    from scaling.settings import is_cpu

    # Join a multi-process job (if the settings ask for one) before touching the backend:
    # jax.distributed.initialize must come first.  Stacking is single-process only.
    sharding.initialize_distributed(settings)
    if jax.process_count() > 1:
        return 1
    if settings.stack_max is not None:
        return settings.stack_max
    return 1 if is_cpu() else 8


def run_worker(out: str | os.PathLike, index: int = 0, *, retry_failed: bool = True, settings: Settings | None = None,
               train_fn=None) -> dict:
    """Train every unfinished cell of ``OUT/cells.jsonl`` this worker can claim; return counts."""
    out = Path(out)
    settings = worker_settings(out, settings)
    lines = state.read_cell_lines(out)
    # WSD trunks before the forks that wait on them, then the largest FLOPs first (ties keep the file's order)
    order = [ln["cell"] for ln in sorted(lines, key=lambda ln: (bool(ln["cell"].trunk), -(ln["flops"] or 0.0)))]
    if settings.multihost:
        return _run_lockstep(out, order, settings, train_fn)
    custom = train_fn is not None
    train = None
    counts = {"trained": 0, "skipped": 0, "failed": 0}
    t_start = time.time()
    attempted: set[str] = set()
    n_stack = stack_max(settings, custom_trainer=custom)

    def lock_of(rdir):
        return state.CellLock.for_settings(rdir, settings)

    def may_try(cell, rdir) -> bool:
        """Not tried by us yet, and not failed before (retries off) or during this launch."""
        failed_at = rdir.failed_mtime()
        return cell.run_id not in attempted and not (
            failed_at is not None and (not retry_failed or failed_at >= t_start))

    def trunk_retried(fork) -> bool:
        """Whether a failed trunk gets another attempt in this launch (it failed before it, retries on)."""
        failed_at = state.run_dir(out, fork.trunk).failed_mtime()
        return retry_failed and failed_at is not None and failed_at < t_start

    pending = list(order)
    # Keep going until every cell is finished, failed, or tried by us: cells locked by another
    # worker are revisited, so if that worker dies (stale lock) this one takes the cell over.
    while pending:
        waiting = []
        for cell in pending:
            rdir = state.run_dir(out, cell.run_id)
            if rdir.is_finished():
                counts["skipped"] += cell.run_id not in attempted
                continue
            if not may_try(cell, rdir):
                continue
            dep = state.fork_dependency(out, cell, settings.lock_stale_s) if cell.trunk else "ready"
            if dep == "trunk_failed" and trunk_retried(cell):
                dep = "waiting"  # this launch retries the trunk first
            if dep == "waiting":  # a WSD fork whose trunk has not passed the fork step: other work first
                waiting.append(cell)
                continue
            lock = lock_of(rdir)
            if not lock.acquire():
                waiting.append(cell)
                continue
            group = [(cell, rdir, lock)]
            try:
                if rdir.is_finished():  # finished by someone else while we looked
                    counts["skipped"] += 1
                    continue
                if dep in ("trunk_diverged", "trunk_failed"):
                    attempted.add(cell.run_id)
                    counts["failed" if dep == "trunk_failed" else "trained"] += 1
                    _trunk_lost(out, cell, dep, index)
                    continue
                if n_stack > 1 and not cell.trunk:
                    group += _claim_companions(out, cell, order, n_stack - 1, may_try, lock_of)
                if train is None:
                    train = resolve_train_fn(train_fn)
                stacked = {"stacked": len(group)} if len(group) > 1 else {}
                for c, rd, _ in group:
                    attempted.add(c.run_id)
                    rd.clear_failed()
                    rd.log_attempt(event="start", worker=index, **stacked)
                t0 = time.time()
                try:
                    if len(group) > 1:
                        from scaling.stacked import train_stacked

                        summaries = train_stacked([c for c, _, _ in group], [rd.path for _, rd, _ in group],
                                                  settings=settings)
                    elif custom:
                        summaries = [train(cell, str(rdir.path))]
                    else:
                        summaries = [train(cell, str(rdir.path), settings=settings)]
                except Exception:  # noqa: BLE001 - one bad cell (or stack) must not stop the sweep
                    tb = traceback.format_exc()
                    for c, rd, _ in group:
                        rd.write_failed(tb)
                        rd.log_attempt(event="failed", worker=index, wall_s=time.time() - t0)
                    names = ", ".join(c.run_id for c, _, _ in group)
                    print(f"[worker {index}] {names} FAILED:\n{tb}", file=sys.stderr, flush=True)
                    counts["failed"] += len(group)
                    continue
                for (c, rd, _), summary in zip(group, summaries):
                    rd.log_attempt(event=(summary or {}).get("state", "done"), worker=index, wall_s=time.time() - t0)
                counts["trained"] += len(group)
            finally:
                for _, _, lk in group:
                    lk.release()
        pending = waiting
        if pending:
            time.sleep(settings.worker_poll_s)
    return counts


def _trunk_lost(out: Path, fork, dep: str, index: int) -> None:
    """A fork whose trunk will not reach its fork step: DIVERGED with the trunk, or FAILED (retried next launch)."""
    rd = state.run_dir(out, fork.run_id)
    trunk = state.run_dir(out, fork.trunk)
    if dep == "trunk_diverged":
        at = (trunk.read_summary() or {}).get("steps")
        rd.write_cell(fork)
        rd.finish({"run_id": fork.run_id, "state": "diverged", "steps": 0, "group": fork.group,
                   "budget": fork.budget, "flops_convention": fork.flops_convention, "trunk": fork.trunk,
                   "fork_step": fork.fork_step,
                   "reason": f"trunk {fork.trunk} diverged at step {at}, before the fork step {fork.fork_step}"})
        rd.log_attempt(event="diverged", worker=index, reason="trunk diverged")
    else:
        rd.write_failed(f"trunk {fork.trunk} failed before the fork step {fork.fork_step} (see its FAILED); "
                        f"fix it and relaunch: the trunk is retried first, then this fork\n")
        rd.log_attempt(event="failed", worker=index, reason="trunk failed")


def _claim_companions(out: Path, cell, order, n: int, may_try, lock_of) -> list:
    """Lock (without waiting) up to ``n`` other unfinished cells stackable with ``cell``: ``[(cell, rdir, lock)]``.

    A cell another worker holds is simply passed over: it is that worker's (or, if its lock
    goes stale, a later pass's), never waited for.
    """
    from scaling.stacked import stack_key

    key, got = stack_key(cell), []
    for c in order:
        if len(got) >= n:
            break
        rd = state.run_dir(out, c.run_id)
        if (c.run_id == cell.run_id or c.trunk or stack_key(c) != key or rd.is_finished()
                or not may_try(c, rd)):
            continue
        lock = lock_of(rd)
        if not lock.acquire():
            continue
        if rd.is_finished():  # finished by someone else between the look and the lock
            lock.release()
            continue
        got.append((c, rd, lock))
    return got


def prepare_data(out: str | os.PathLike, settings: Settings | None = None) -> None:
    """Prepare every dataset/vocabulary/token cache the sweep's cells read, once, up front.

    Run by the local launcher in one process before the pool starts, so K workers never race
    to build the same TFDS dataset or SentencePiece model, and data preparation is not billed
    to the first cell of each worker.

    Downstream tasks are checked here too, against the vocabulary just prepared: with a trained
    vocabulary (``spN``, ``hf-bpe:N``) an item longer than ``seq_len`` can only be found once the
    vocabulary exists, and finding it here refuses the launch before any worker compiles.
    """
    from scaling import data as data_mod
    from scaling import evaltasks

    settings = settings or Settings.from_environ()
    seen = set()
    for c in state.read_cells(out):
        data = settings.resolve_data(c.data)
        key = (data, c.model.seq_len, c.eval_tasks)
        if key in seen:
            continue
        seen.add(key)
        for split in ("train", "validation"):
            src = data_mod.open_source(data, split, c.model.seq_len)
        if c.eval_tasks:
            tasks = evaltasks.load_tasks(c.eval_tasks, data_dir=data_mod.default_data_dir(data))
            evaltasks.check_fit(tasks, src.vocab, c.model.seq_len)


def _run_lockstep(out: Path, order, settings: Settings, train_fn) -> dict:
    """Multi-host mode (TPU pods): every host trains the same cells in the same order.

    One cell is one SPMD program over all hosts (``jax.distributed``), so hosts must not
    claim cells independently.  The unfinished list is taken once at start from the shared
    sweep directory (identical on every host); no locks: run one pod job per sweep.
    """
    from scaling import sharding

    sharding.initialize_distributed(settings)
    todo = [c for c in order if not state.run_dir(out, c.run_id).is_finished()]
    train = resolve_train_fn(train_fn)
    kw = {} if train_fn is not None else {"settings": settings}
    import jax

    for cell in todo:  # trunks come before their forks in ``order``
        rdir = state.run_dir(out, cell.run_id)
        dep = state.fork_dependency(out, cell, settings.lock_stale_s) if cell.trunk else "ready"
        if dep in ("trunk_diverged", "trunk_failed"):
            if jax.process_index() == 0:
                _trunk_lost(out, cell, dep, 0)
            continue
        rdir.path.mkdir(parents=True, exist_ok=True)
        train(cell, str(rdir.path), **kw)
    return {"trained": len(todo), "skipped": len(order) - len(todo), "failed": 0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scaling.launch.worker")
    ap.add_argument("out")
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--count", type=int, default=1, help="workers in the pool (for --pin)")
    ap.add_argument("--pin", action="store_true", help="pin this worker to its slice of the CPUs")
    ap.add_argument("--no-retry-failed", action="store_true")
    ap.add_argument("--die-with-parent", action="store_true")
    ap.add_argument("--prepare", action="store_true", help="only prepare the sweep's data, then exit")
    ap.add_argument("--train-fn", help="module:function with train()'s signature, used instead of it")
    a = ap.parse_args(argv)
    if a.prepare:
        try:
            prepare_data(a.out, Settings.from_environ())
        except ConfigError as e:  # the launcher relays this line and refuses to start any worker
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    if a.die_with_parent:
        _die_with_parent()
    if a.pin:
        pin_cpus(a.index, a.count)
    run_worker(a.out, a.index, retry_failed=not a.no_retry_failed, settings=Settings.from_environ(),
               train_fn=a.train_fn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
