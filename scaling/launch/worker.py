"""The worker loop every backend runs: claim a cell, train it, move on.

A worker reads ``OUT/cells.jsonl`` and walks the cells in a fixed order (largest FLOPs first,
so a pool finishes evenly), skipping finished ones and trying each unfinished cell's lock.
The lock, not a central queue, decides who trains what — so K local workers, a SLURM array,
Ray tasks, a relaunched sweep and a second launcher started by mistake all coordinate the
same way, and a cell is never trained twice at once.  A worker trains many cells in one
process, so Python imports and (through the persistent compilation cache) XLA compilation
are paid once per worker, not once per cell.

Training is :func:`scaling.train.train` unless ``SCALING_TRAIN_FN=module:function`` names
another callable with the same signature (tests use this to count executions).  An
exception in training writes ``FAILED`` (with the traceback) and the worker moves on; a
diverged cell is marked ``DIVERGED`` by the trainer and the sweep goes on.

**Stacking.**  On an accelerator tiny cells spend most of a step on overhead (kernel launches,
host round trips), so when a worker claims a cell it also tries, without waiting, the locks of up to
``SCALING_STACK_MAX - 1`` (default: 8 on accelerators, off on CPU, where it measured slower;
see :func:`stack_max`) other unfinished cells with the
same :func:`scaling.stacked.stack_key` (an LR sweep's cells of one size), and trains the
ones it got together with :func:`scaling.stacked.train_stacked`: one vmapped program, each
member still writing its own run directory.  Every member keeps its own lock, attempts
log and ``FAILED`` on an exception, so the on-disk protocol is unchanged.  A custom
``SCALING_TRAIN_FN`` is never stacked (it trains one cell per call), nor is the multi-host
lockstep mode.

Run directly: ``python -m scaling.launch.worker OUT [--index I --count K]``.
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

from scaling.launch import state


def setup_jax_cache(out: str | os.PathLike | None = None) -> str:
    """Turn on JAX's persistent compilation cache (min compile time 0), shared by all workers.

    Directory: ``$SCALING_COMPILE_CACHE`` or ``OUT/.jax_cache``.  Set through environment
    variables *and* ``jax.config`` so it works whether or not jax is already imported.
    """
    d = os.environ.get("SCALING_COMPILE_CACHE") or str(Path(out or ".") / ".jax_cache")
    os.environ["SCALING_COMPILE_CACHE"] = d
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", d)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
    if "jax" in sys.modules:
        import jax

        jax.config.update("jax_compilation_cache_dir", d)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return d


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


DEFAULT_TRAIN_FN = "scaling.train:train"


def _train_fn():
    spec = os.environ.get("SCALING_TRAIN_FN", DEFAULT_TRAIN_FN)
    mod, _, fn = spec.partition(":")
    return getattr(importlib.import_module(mod), fn)


def stack_max() -> int:
    """How many same-key cells one worker trains together: ``$SCALING_STACK_MAX``, else by backend.

    Default: 1 (no stacking) on CPU, 8 on accelerators.  ``benchmarks/stacked.py`` measured
    stacking the LR sweep's 5-LR groups on 2 CPU cores at 0.73-0.92x the speed of training
    them one after another: a tiny model's CPU step is elementwise work that grows with K,
    not per-step overhead that stacking would share.  On a GPU/TPU a tiny step is dominated
    by kernel launches and host round trips, which K members share.  Always 1 when
    ``SCALING_TRAIN_FN`` names a custom trainer (it has ``train``'s one-cell signature) and in
    a multi-process JAX job (:func:`scaling.stacked.train_stacked` is single-process).
    """
    if os.environ.get("SCALING_TRAIN_FN", DEFAULT_TRAIN_FN) != DEFAULT_TRAIN_FN:
        return 1
    v = os.environ.get("SCALING_STACK_MAX")
    try:
        n = None if v is None else max(1, int(v))
    except ValueError:
        from scaling.config import ConfigError

        raise ConfigError(f"SCALING_STACK_MAX={v!r}: must be an integer (1 disables stacking)") from None
    if n == 1:
        return 1
    import jax

    from scaling import sharding

    # Join a multi-process job (if the environment asks for one) before touching the backend:
    # jax.distributed.initialize must come first.  Stacking is single-process only.
    sharding.initialize_distributed()
    if jax.process_count() > 1:
        return 1
    return n if n is not None else (1 if jax.default_backend() == "cpu" else 8)


def run_worker(out: str | os.PathLike, index: int = 0, count: int = 1, *, retry_failed: bool = True) -> dict:
    """Train every unfinished cell of ``OUT/cells.jsonl`` this worker can claim; return counts."""
    out = Path(out)
    setup_jax_cache(out)
    cells = state.read_cells(out)
    flops = {}
    for c in cells:
        flops[c.run_id] = c.tokens_trained * c.model.d_model ** 2 * c.model.n_layers  # order only
    order = sorted(cells, key=lambda c: -flops[c.run_id])
    if os.environ.get("SCALING_MULTIHOST") == "1":
        return _run_lockstep(out, order, index)
    train = None
    counts = {"trained": 0, "skipped": 0, "failed": 0}
    t_start = time.time()
    attempted: set[str] = set()
    n_stack = stack_max()

    def may_try(cell, rdir) -> bool:
        """Not tried by us yet, and not failed before (retries off) or during this launch."""
        failed = rdir / "FAILED"
        return cell.run_id not in attempted and not (
            failed.exists() and (not retry_failed or failed.stat().st_mtime >= t_start))

    pending = list(order)
    # Keep going until every cell is finished, failed, or tried by us: cells locked by another
    # worker are revisited, so if that worker dies (stale lock) this one takes the cell over.
    while pending:
        waiting = []
        for cell in pending:
            rdir = state.run_dir(out, cell.run_id)
            if state.is_finished(rdir):
                counts["skipped"] += cell.run_id not in attempted
                continue
            if not may_try(cell, rdir):
                continue
            lock = state.CellLock(rdir)
            if not lock.acquire():
                waiting.append(cell)
                continue
            group = [(cell, rdir, lock)]
            try:
                if state.is_finished(rdir):  # finished by someone else while we looked
                    counts["skipped"] += 1
                    continue
                if n_stack > 1:
                    group += _claim_companions(out, cell, order, n_stack - 1, may_try)
                if train is None:
                    train = _train_fn()
                stacked = {"stacked": len(group)} if len(group) > 1 else {}
                for c, rd, _ in group:
                    attempted.add(c.run_id)
                    (rd / "FAILED").unlink(missing_ok=True)
                    state.log_attempt(rd, event="start", worker=index, **stacked)
                t0 = time.time()
                try:
                    if len(group) > 1:
                        from scaling.stacked import train_stacked

                        summaries = train_stacked([c for c, _, _ in group], [str(rd) for _, rd, _ in group])
                    else:
                        summaries = [train(cell, str(rdir))]
                except Exception:  # noqa: BLE001 - one bad cell (or stack) must not stop the sweep
                    tb = traceback.format_exc()
                    for c, rd, _ in group:
                        (rd / "FAILED").write_text(tb)
                        state.log_attempt(rd, event="failed", worker=index, wall_s=time.time() - t0)
                    names = ", ".join(c.run_id for c, _, _ in group)
                    print(f"[worker {index}] {names} FAILED:\n{tb}", file=sys.stderr, flush=True)
                    counts["failed"] += len(group)
                    continue
                for (c, rd, _), summary in zip(group, summaries):
                    st = (summary or {}).get("state", "done")
                    state.log_attempt(rd, event=st, worker=index, wall_s=time.time() - t0)
                counts["trained"] += len(group)
            finally:
                for _, _, lk in group:
                    lk.release()
        pending = waiting
        if pending:
            time.sleep(float(os.environ.get("SCALING_WORKER_POLL_S", "2")))
    return counts


def _claim_companions(out: Path, cell, order, n: int, may_try) -> list:
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
        if c.run_id == cell.run_id or stack_key(c) != key or state.is_finished(rd) or not may_try(c, rd):
            continue
        lock = state.CellLock(rd)
        if not lock.acquire():
            continue
        if state.is_finished(rd):  # finished by someone else between the look and the lock
            lock.release()
            continue
        got.append((c, rd, lock))
    return got


def prepare_data(out: str | os.PathLike) -> None:
    """Prepare every dataset/vocabulary/token cache the sweep's cells read, once, up front.

    Run by the local launcher in one process before the pool starts, so K workers never race
    to build the same TFDS dataset or SentencePiece model, and data preparation is not billed
    to the first cell of each worker.
    """
    from scaling import data as data_mod

    seen = set()
    for c in state.read_cells(out):
        key = (c.data, c.model.seq_len)
        if key in seen:
            continue
        seen.add(key)
        for split in ("train", "validation"):
            data_mod.open_source(c.data, split, c.model.seq_len)


def _run_lockstep(out: Path, order, index: int) -> dict:
    """Multi-host mode (TPU pods): every host trains the same cells in the same order.

    One cell is one SPMD program over all hosts (``jax.distributed``), so hosts must not
    claim cells independently.  The unfinished list is taken once at start from the shared
    sweep directory (identical on every host); no locks: run one pod job per sweep.
    """
    from scaling import sharding

    sharding.initialize_distributed()
    todo = [c for c in order if not state.is_finished(state.run_dir(out, c.run_id))]
    train = _train_fn()
    for cell in todo:
        rdir = state.run_dir(out, cell.run_id)
        rdir.mkdir(parents=True, exist_ok=True)
        train(cell, str(rdir))
    return {"trained": len(todo), "skipped": len(order) - len(todo), "failed": 0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scaling.launch.worker")
    ap.add_argument("out")
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--pin", action="store_true", help="pin this worker to its slice of the CPUs")
    ap.add_argument("--no-retry-failed", action="store_true")
    ap.add_argument("--die-with-parent", action="store_true")
    ap.add_argument("--prepare", action="store_true", help="only prepare the sweep's data, then exit")
    a = ap.parse_args(argv)
    if a.prepare:
        prepare_data(a.out)
        return 0
    if a.die_with_parent:
        _die_with_parent()
    if a.pin:
        pin_cpus(a.index, a.count)
    run_worker(a.out, a.index, a.count, retry_failed=not a.no_retry_failed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
