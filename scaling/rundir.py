"""The run directory: the one module that knows its file names and markers.

One cell trains into one directory, and everything that can resume or report reads only
that directory.  Trainer, stacked trainer, launcher state, ``scaling status``, the results
table and the tests' fake trainers all go through :class:`RunDir`, so the layout below is
spelled here and nowhere else::

    <run_dir>/
      config.json      the cell, written first; a different cell in the same dir is refused
      checkpoints/     Orbax checkpoints (scaling.checkpoint owns what is inside)
      metrics.jsonl    one JSON row per logged step (rows after a restored step are dropped)
      tb/              TensorBoard events
      trackers.json    the W&B / MLflow run ids of this run (``--tracker``; scaling.trackers)
      summary.json     final numbers, written before the marker
      SUCCESS          | DIVERGED   written last: either makes the directory final
      FAILED           the traceback of an attempt that raised (launcher)
      LOCK             a worker's claim while it trains the cell (scaling.launch.state)
      attempts.jsonl   one line per training attempt (launcher)

A sweep directory keeps its cells' run directories under ``<out>/runs/<run_id>/``.

``summary.json`` is self-contained: besides the trained numbers it carries the cell's
``group``, ``budget`` and ``flops_convention``, so the results table never reads
``config.json``.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from scaling.config import Cell, ConfigError, cell_from_json, cell_to_json

CONFIG = "config.json"
CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
TENSORBOARD = "tb"
SUMMARY = "summary.json"
SUCCESS = "SUCCESS"
DIVERGED = "DIVERGED"
FAILED = "FAILED"
LOCK = "LOCK"
ATTEMPTS = "attempts.jsonl"
TRACKERS = "trackers.json"  # also <sweep out>/trackers.json: the sweep-level tracker runs
RUNS = "runs"  # <sweep out>/runs/<run_id>/

# final marker -> run state; the trainer writes one of them last
MARKERS = {SUCCESS: "done", DIVERGED: "diverged"}
FINAL_STATES = tuple(MARKERS.values())


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON so that a reader sees the old file or the new one, never a torn one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default))
    os.replace(tmp, path)


def _json_default(o):
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    return str(o)


def finite_or_none(x) -> float | None:
    """JSON has no NaN/inf: a non-finite number is recorded as null."""
    return float(x) if x is not None and math.isfinite(float(x)) else None


class RunDir:
    """A run directory (it need not exist yet).  Reads are safe on a directory being written."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD

    @property
    def trackers(self) -> Path:
        return self.path / TRACKERS

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK

    # ---- the cell ---------------------------------------------------------------------
    def check_cell(self, cell: Cell) -> None:
        """ConfigError if the directory holds a *different* cell.

        A stale ``--out`` reused by mistake would otherwise silently resume someone else's
        checkpoint.  An unreadable ``config.json`` (e.g. written by an older version) is not
        an error: the checkpoint meta still names its run.
        """
        old = self.read_cell()
        if old is not None and old.config_hash != cell.config_hash:
            raise ConfigError(f"run_dir {self.path} holds a different cell ({old.run_id}, not {cell.run_id}); "
                              f"use a fresh --out directory")

    def read_cell(self) -> Cell | None:
        """The cell in ``config.json``; None when there is none or it does not parse."""
        try:
            return cell_from_json((self.path / CONFIG).read_text())
        except (OSError, ConfigError, KeyError, TypeError, ValueError):
            return None

    def write_cell(self, cell: Cell) -> None:
        """Create the directory and ``config.json`` (kept if it already exists)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if not (self.path / CONFIG).exists():
            (self.path / CONFIG).write_text(cell_to_json(cell))

    # ---- metrics ----------------------------------------------------------------------
    def read_metrics(self) -> list[dict]:
        """Rows of ``metrics.jsonl`` (a torn last line from a killed process is ignored)."""
        p = self.path / METRICS
        rows = []
        if p.exists():
            for line in p.read_text().splitlines():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return rows

    def truncate_metrics(self, max_step: int) -> list[dict]:
        """Keep only rows with ``step <= max_step`` (what a restored checkpoint has trained); return them."""
        rows = [r for r in self.read_metrics() if r.get("step", 0) <= max_step]
        self.write_metrics(rows)
        return rows

    def write_metrics(self, rows: list[dict]) -> None:
        """Replace ``metrics.jsonl`` with ``rows`` (atomically)."""
        self.path.mkdir(parents=True, exist_ok=True)
        p = self.path / METRICS
        tmp = p.with_name(f".{METRICS}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        os.replace(tmp, p)

    def open_metrics(self):
        """The metrics file, opened for appending rows (one ``json.dumps(row) + '\\n'`` each)."""
        return open(self.path / METRICS, "a")

    # ---- summary and final marker -----------------------------------------------------
    def finish(self, summary: dict) -> None:
        """Write ``summary.json``, then the marker of ``summary['state']`` (done | diverged), last."""
        state = summary.get("state")
        marker = {v: k for k, v in MARKERS.items()}.get(state)
        if marker is None:
            raise ValueError(f"RunDir.finish: state {state!r} is not final; one of {FINAL_STATES}")
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path / SUMMARY, summary)
        (self.path / marker).write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + "\n")

    def final_state(self) -> str | None:
        """``done`` / ``diverged`` when a final marker exists, else None."""
        for marker, state in MARKERS.items():
            if (self.path / marker).exists():
                return state
        return None

    def is_finished(self) -> bool:
        return self.final_state() is not None

    def read_summary(self) -> dict | None:
        try:
            return json.loads((self.path / SUMMARY).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def finished_summary(self) -> dict | None:
        """The summary of a finished run (final marker present), else None."""
        return self.read_summary() if self.is_finished() else None

    def has_checkpoints(self) -> bool:
        d = self.checkpoints
        return d.is_dir() and any(d.iterdir())

    # ---- launcher records -------------------------------------------------------------
    def write_failed(self, traceback_text: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / FAILED).write_text(traceback_text)

    def clear_failed(self) -> None:
        (self.path / FAILED).unlink(missing_ok=True)

    def failed_mtime(self) -> float | None:
        """When the last attempt failed (mtime of ``FAILED``), or None if it has not."""
        try:
            return (self.path / FAILED).stat().st_mtime
        except FileNotFoundError:
            return None

    def failure(self) -> str | None:
        """The stored traceback of a failed attempt, or None."""
        try:
            return (self.path / FAILED).read_text()
        except FileNotFoundError:
            return None

    def log_attempt(self, **fields) -> None:
        rec = {"time": time.time(), "host": socket.gethostname(), "pid": os.getpid(), **fields}
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ATTEMPTS, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def attempts(self) -> list[dict]:
        p = self.path / ATTEMPTS
        return [json.loads(x) for x in p.read_text().splitlines() if x.strip()] if p.exists() else []


def trunk_of(fork_dir: RunDir, trunk_run_id: str) -> RunDir:
    """The run directory of a fork's trunk: its sibling in the same sweep's ``runs/``."""
    return RunDir(fork_dir.path.parent / trunk_run_id)


def in_sweep(out: str | os.PathLike, run_id: str) -> RunDir:
    """The run directory of ``run_id`` inside sweep directory ``out``."""
    return RunDir(Path(out) / RUNS / run_id)


def sweep_runs(out: str | os.PathLike) -> Iterator[RunDir]:
    """Every run directory of a sweep directory, by name."""
    root = Path(out) / RUNS
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if d.is_dir():
                yield RunDir(d)


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The metrics rows of a run directory (see :meth:`RunDir.read_metrics`)."""
    return RunDir(run_dir).read_metrics()
