"""Run directories, cell states and per-cell locks: the on-disk protocol every backend shares.

Layout of a sweep directory ``OUT``::

    OUT/sweep.json            the sweep's plan rows (what `scaling status` lists as planned)
    OUT/cells.jsonl           one cell JSON per line: what workers train
    OUT/runs/<run_id>/        one directory per cell, written by scaling.train.train
        config.json metrics.jsonl checkpoints/ tb/ summary.json
        SUCCESS | DIVERGED    terminal markers, written last by the trainer
        FAILED                written by the worker with the traceback when training raised
        LOCK                  held while a worker trains the cell (pid, host, heartbeat)
        attempts.jsonl        one line per training attempt (who, when, outcome)

States: ``done`` (SUCCESS), ``diverged`` (DIVERGED), ``failed`` (FAILED), ``running`` (a live
LOCK), ``planned`` (none of these; ``partial`` in the status table when checkpoints exist).

The lock is a file created with ``O_CREAT | O_EXCL`` (atomic on local and NFS v3+ file
systems) holding ``{pid, host, started}``; its holder touches it every ``HEARTBEAT_S``
seconds. A lock is stale when its pid is dead on this host, or its heartbeat is older than
``STALE_S`` (a crashed node). A stale lock is broken by *renaming* it to a unique name —
only one contender's rename succeeds — and then re-creating it, so two launchers never both
train one cell.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

HEARTBEAT_S = float(os.environ.get("SCALING_LOCK_HEARTBEAT_S", "10"))
STALE_S = float(os.environ.get("SCALING_LOCK_STALE_S", "120"))
TERMINAL = {"SUCCESS": "done", "DIVERGED": "diverged"}
STATES = ("planned", "running", "done", "failed", "diverged")


def run_dir(out: str | os.PathLike, run_id: str) -> Path:
    return Path(out) / "runs" / run_id


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


def lock_is_stale(info: dict, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    if info.get("host") == socket.gethostname() and "pid" in info and not _pid_alive(int(info["pid"])):
        return True
    return now - info.get("mtime", now) > STALE_S


class CellLock:
    """An exclusive, heartbeated claim on one run directory (context manager)."""

    def __init__(self, rdir: Path):
        self.rdir = Path(rdir)
        self.path = self.rdir / "LOCK"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.held = False

    def acquire(self) -> bool:
        """Try once (breaking a stale lock if needed); True if we now hold the lock."""
        self.rdir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = read_lock(self.path)
                if info is None:
                    continue  # released meanwhile: retry
                if not lock_is_stale(info):
                    return False
                grave = self.rdir / f"LOCK.stale.{uuid.uuid4().hex[:8]}"
                try:
                    os.rename(self.path, grave)  # only one contender wins this rename
                except FileNotFoundError:
                    continue
                # A contender may have renamed the stale lock and created a fresh one between
                # our read and our rename; if what we moved is live, put it back and yield.
                moved = read_lock(grave)
                if moved is not None and not lock_is_stale(moved):
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
        while not self._stop.wait(HEARTBEAT_S):
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


def cell_state(rdir: Path) -> str:
    """One of STATES for a run directory (see module docstring)."""
    rdir = Path(rdir)
    for marker, state in TERMINAL.items():
        if (rdir / marker).exists():
            return state
    lock = read_lock(rdir / "LOCK")
    if lock is not None and not lock_is_stale(lock):
        return "running"
    if (rdir / "FAILED").exists():
        return "failed"
    return "planned"


def is_finished(rdir: Path) -> bool:
    return any((Path(rdir) / m).exists() for m in TERMINAL)


def log_attempt(rdir: Path, **fields) -> None:
    rec = {"time": time.time(), "host": socket.gethostname(), "pid": os.getpid(), **fields}
    with open(Path(rdir) / "attempts.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")


def write_cells(out: str | os.PathLike, cells, rows) -> Path:
    """Write OUT/cells.jsonl and OUT/sweep.json atomically (what workers and status read)."""
    from scaling.config import to_dict

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".cells.{uuid.uuid4().hex[:6]}"
    tmp.write_text("".join(json.dumps(to_dict(c), sort_keys=True) + "\n" for c in cells))
    os.replace(tmp, out / "cells.jsonl")
    tmp = out / f".sweep.{uuid.uuid4().hex[:6]}"
    tmp.write_text(json.dumps({"rows": list(rows)}, default=str, indent=1))
    os.replace(tmp, out / "sweep.json")
    return out / "cells.jsonl"


def read_cells(out: str | os.PathLike):
    from scaling.config import cell_from_dict

    p = Path(out) / "cells.jsonl"
    if not p.exists():
        return []
    return [cell_from_dict(json.loads(line)) for line in p.read_text().splitlines() if line.strip()]
