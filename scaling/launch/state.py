"""The sweep directory's shared protocol: the cell list, cell states and per-cell locks.

Layout of a sweep directory ``OUT`` (a run directory's own files belong to :mod:`scaling.rundir`)::

    OUT/sweep.json       the sweep's plan rows (what `scaling status` lists as planned)
    OUT/cells.jsonl      one line per cell: {"run_id", "flops", "cell"}: what workers train
    OUT/runs/<run_id>/   one run directory per cell

States: ``done`` / ``diverged`` (the trainer's final markers), ``failed`` (the last attempt
raised), ``running`` (a live lock), ``planned`` (none of these; ``partial`` in the status
table when checkpoints exist).

The lock is a file created with ``O_CREAT | O_EXCL`` (atomic on local and NFS v3+ file
systems) holding ``{pid, host, started}``; its holder touches it every
``Settings.lock_heartbeat_s`` seconds.  A lock is stale when its pid is dead on this host, or
its heartbeat is older than ``Settings.lock_stale_s`` (a crashed node).  A stale lock is
broken by *renaming* it to a unique name (only one contender's rename succeeds) and then
re-creating it, so two launchers never both train one cell.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from scaling.rundir import FINAL_STATES, RunDir, in_sweep

STATES = ("planned", "running") + FINAL_STATES + ("failed",)
CELLS = "cells.jsonl"
PLAN = "sweep.json"
DEFAULT_HEARTBEAT_S, DEFAULT_STALE_S = 10.0, 120.0  # Settings' defaults, for callers without settings


def run_dir(out: str | os.PathLike, run_id: str) -> RunDir:
    return in_sweep(out, run_id)


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs on this host (a zombie, e.g. an orphan nobody reaped, is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def read_lock(path: Path) -> dict | None:
    try:
        info = json.loads(path.read_text() or "{}")
        info["mtime"] = path.stat().st_mtime
        return info
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, OSError):
        try:  # being written right now: treat as live until the heartbeat timeout
            return {"mtime": path.stat().st_mtime}
        except FileNotFoundError:
            return None


def lock_is_stale(info: dict, now: float | None = None, stale_s: float = DEFAULT_STALE_S) -> bool:
    now = time.time() if now is None else now
    if info.get("host") == socket.gethostname() and "pid" in info and not _pid_alive(int(info["pid"])):
        return True
    return now - info.get("mtime", now) > stale_s


class CellLock:
    """An exclusive, heartbeated claim on one run directory (context manager)."""

    def __init__(self, rdir: RunDir | str | os.PathLike, *, heartbeat_s: float = DEFAULT_HEARTBEAT_S,
                 stale_s: float = DEFAULT_STALE_S):
        self.rdir = rdir if isinstance(rdir, RunDir) else RunDir(rdir)
        self.path = self.rdir.lock_path
        self.heartbeat_s, self.stale_s = heartbeat_s, stale_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.held = False

    @classmethod
    def for_settings(cls, rdir, settings) -> "CellLock":
        return cls(rdir, heartbeat_s=settings.lock_heartbeat_s, stale_s=settings.lock_stale_s)

    def acquire(self) -> bool:
        """Try once (breaking a stale lock if needed); True if we now hold the lock."""
        self.rdir.path.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = read_lock(self.path)
                if info is None:
                    continue  # released meanwhile: retry
                if not lock_is_stale(info, stale_s=self.stale_s):
                    return False
                grave = self.path.with_name(f"{self.path.name}.stale.{uuid.uuid4().hex[:8]}")
                try:
                    os.rename(self.path, grave)  # only one contender wins this rename
                except FileNotFoundError:
                    continue
                # A contender may have renamed the stale lock and created a fresh one between
                # our read and our rename; if what we moved is live, put it back and yield.
                moved = read_lock(grave)
                if moved is not None and not lock_is_stale(moved, stale_s=self.stale_s):
                    try:
                        os.link(grave, self.path)
                    except FileExistsError:
                        pass
                    os.unlink(grave)
                    return False
                os.unlink(grave)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}, f)
            self.held = True
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
            return True
        return False

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                return

    def release(self) -> None:
        self._stop.set()
        if self.held:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.held = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def cell_state(rdir: RunDir | str | os.PathLike, stale_s: float = DEFAULT_STALE_S) -> str:
    """One of STATES for a run directory (see module docstring)."""
    rdir = rdir if isinstance(rdir, RunDir) else RunDir(rdir)
    final = rdir.final_state()
    if final is not None:
        return final
    lock = read_lock(rdir.lock_path)
    if lock is not None and not lock_is_stale(lock, stale_s=stale_s):
        return "running"
    if rdir.failed_mtime() is not None:
        return "failed"
    return "planned"


def fork_dependency(out: str | os.PathLike, cell, stale_s: float = DEFAULT_STALE_S) -> str:
    """Where a WSD fork stands on its trunk: ``ready`` | ``waiting`` | ``trunk_diverged`` | ``trunk_failed``.

    ``ready``: the trunk has committed its checkpoint at the fork step (the trunk need not have
    finished), or it finished without one (then training the fork reports the missing step).
    ``waiting``: the trunk is planned or running and has not reached the fork step yet.
    """
    from scaling.checkpoint import has_step

    trunk = run_dir(out, cell.trunk)
    if has_step(trunk.checkpoints, cell.fork_step):
        return "ready"
    st = cell_state(trunk, stale_s=stale_s)
    if st == "diverged":
        return "trunk_diverged"
    if st == "failed":
        return "trunk_failed"
    return "ready" if st == "done" else "waiting"


def write_cells(out: str | os.PathLike, cells, rows) -> Path:
    """Write OUT/cells.jsonl and OUT/sweep.json atomically (what workers and status read).

    Each cells.jsonl line carries the FLOPs the cell itself trains (``flops_trained``, else
    ``flops_achieved``), which workers use to order their work (largest first, so a pool
    finishes evenly).
    """
    from scaling.config import to_dict

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    # what each cell itself trains (a WSD fork only its cooldown), for ordering and progress
    flops = {r["run_id"]: r.get("flops_trained", r.get("flops_achieved")) for r in rows}
    tmp = out / f".cells.{uuid.uuid4().hex[:6]}"
    tmp.write_text("".join(json.dumps({"run_id": c.run_id, "flops": flops.get(c.run_id), "cell": to_dict(c)},
                                      sort_keys=True) + "\n" for c in cells))
    os.replace(tmp, out / CELLS)
    tmp = out / f".sweep.{uuid.uuid4().hex[:6]}"
    tmp.write_text(json.dumps({"rows": rows}, default=str, indent=1))
    os.replace(tmp, out / PLAN)
    return out / CELLS


def read_cell_lines(out: str | os.PathLike) -> list[dict]:
    """``[{"run_id", "flops", "cell": Cell}]`` from OUT/cells.jsonl, in file order."""
    from scaling.config import cell_from_dict

    p = Path(out) / CELLS
    if not p.exists():
        return []
    lines = []
    for line in p.read_text().splitlines():
        if line.strip():
            d = json.loads(line)
            lines.append({"run_id": d["run_id"], "flops": d.get("flops"), "cell": cell_from_dict(d["cell"])})
    return lines


def read_cells(out: str | os.PathLike):
    return [line["cell"] for line in read_cell_lines(out)]
