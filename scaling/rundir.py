"""The run directory: the one module that knows its file names and markers.

One cell trains into one directory, and everything that can resume or report reads only
that directory.  Trainer, stacked trainer, launcher state, ``scaling status``, the results
table and the tests' fake trainers all go through :class:`RunDir`, so the layout below is
spelled here and nowhere else::

    <run_dir>/
      config.json      the cell, written first; a different cell in the same dir is refused
                       (so is one that config.json, summary.json or a checkpoint's meta names)
      checkpoints/     Orbax checkpoints (scaling.checkpoint owns what is inside)
      metrics.jsonl    one JSON row per logged step (rows after a restored step are dropped)
      tb/              TensorBoard events
      trackers.json    the W&B / MLflow run ids of this run (``--tracker``; scaling.trackers)
      prediction.json  a Ladder rung's pre-registered prediction, written before training, never rewritten
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

from scaling.config import Cell, ConfigError, cell_from_dict, cell_from_json, cell_to_json

CONFIG = "config.json"
CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
TENSORBOARD = "tb"
SUMMARY = "summary.json"
PREDICTION = "prediction.json"
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
    def check_cell(self, cell: Cell) -> str | None:
        """Refuse (ConfigError) unless everything in the directory belongs to ``cell``.

        A run directory must never hold the metrics or checkpoints of two cells: a stale
        ``--out`` reused by mistake would otherwise return someone else's summary (finished)
        or resume someone else's checkpoint (partial).  Every record that names a cell is
        compared by config hash (execution choices and the readable name are not part of it):
        ``config.json``, ``summary.json``'s run id and each checkpoint's meta.

        An unreadable or missing ``config.json`` is rebuilt from ``cell`` only when another
        record names the same cell (or when the directory holds no numbers at all); then the
        one-line note returned says so.  A directory whose numbers name no cell is refused.
        """
        records = self.cell_records()
        for source, cell_hash, run_id in records:
            if cell_hash != cell.config_hash:
                raise ConfigError(f"run_dir {self.path}: its {source} belongs to another cell ({run_id}, not "
                                  f"{cell.run_id}); use a fresh --out directory, or delete {self.path} to retrain")
        if any(source == CONFIG for source, _, _ in records):
            return None
        config = self.path / CONFIG
        what = "unreadable" if config.exists() else "missing"
        if records:
            self.write_cell(cell, replace=True)
            return (f"run_dir {self.path}: config.json was {what}; rebuilt it from its {records[0][0]}, "
                    f"which names the same cell ({cell.run_id})")
        held = self.held_results()
        if held:
            raise ConfigError(f"run_dir {self.path}: config.json is {what} and nothing else names the cell of its "
                              f"{', '.join(held)}; move {self.path} aside and use a fresh --out directory")
        if config.exists():
            self.write_cell(cell, replace=True)
            return f"run_dir {self.path}: config.json was unreadable and nothing was trained yet; rewrote it"
        return None

    def cell_records(self) -> list[tuple[str, str, str]]:
        """``(source, config hash, run id)`` of every readable record here that names a cell."""
        from scaling import checkpoint

        out = []
        cfg = self.read_cell()
        if cfg is not None:
            out.append((CONFIG, cfg.config_hash, cfg.run_id))
        summary = self.read_summary()
        if summary is not None and isinstance(summary.get("run_id"), str) and "-" in summary["run_id"]:
            out.append((SUMMARY, summary["run_id"].rsplit("-", 1)[1], summary["run_id"]))
        for step, meta in checkpoint.step_metas(self.checkpoints):
            named = _cell_of_meta(meta)
            if named is not None:
                out.append((f"checkpoint at step {step}", *named))
        return out

    def held_results(self) -> list[str]:
        """What in this directory holds a run's numbers (empty for a fresh directory)."""
        held = []
        if (self.path / METRICS).is_file() and (self.path / METRICS).stat().st_size:
            held.append(METRICS)
        if (self.path / SUMMARY).exists():
            held.append(SUMMARY)
        held += [m for m in MARKERS if (self.path / m).exists()]
        if self.has_checkpoints():
            held.append(CHECKPOINTS + "/")
        if self.tensorboard.is_dir() and any(self.tensorboard.iterdir()):
            held.append(TENSORBOARD + "/")
        return held

    def read_cell(self) -> Cell | None:
        """The cell in ``config.json``; None when there is none or it does not parse."""
        try:
            return cell_from_json((self.path / CONFIG).read_text())
        except (OSError, ConfigError, KeyError, TypeError, ValueError, AttributeError):
            return None

    def write_cell(self, cell: Cell, *, replace: bool = False) -> None:
        """Create the directory and ``config.json`` (kept if it already exists, unless ``replace``).

        Atomic: a process killed mid-write leaves the old file or the new one, never a torn one.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        p = self.path / CONFIG
        if replace or not p.exists():
            tmp = p.with_name(f".{CONFIG}.{os.getpid()}.tmp")
            tmp.write_text(cell_to_json(cell))
            os.replace(tmp, p)

    # ---- a pre-registered prediction ---------------------------------------------------
    def write_prediction(self, prediction: dict) -> bool:
        """Record ``prediction`` (with the time) unless one is already there; True if written.

        Pre-registration: the file is written before the cell's first step and a relaunch or
        resume never rewrites it, so the number the run is scored against cannot move.
        """
        p = self.path / PREDICTION
        if p.exists():
            return False
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(p, {**prediction, "registered": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        return True

    def read_prediction(self) -> dict | None:
        try:
            return json.loads((self.path / PREDICTION).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

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


def check_out_dir(path: str | os.PathLike, flag: str = "--out", *, create: bool = True) -> Path:
    """``path`` as a directory this process can write (created if missing), or a one-line ConfigError.

    Checked before any compute, so a typo'd or read-only ``--out`` fails at once rather than
    after a compile, or as a traceback from deep inside the checkpointer.  ``create=False``
    only refuses an existing file (for checks that must write nothing yet).
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{flag} {path}: is an existing file, not a directory; name a directory (new or "
                          f"an earlier run's)")
    if not create:
        return p
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{flag} {path}: cannot create the directory ({e.strerror or e}); "
                          f"choose a writable path") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: the directory is not writable by this user; choose a writable path")
    return p


def _cell_of_meta(meta: dict) -> tuple[str, str] | None:
    """``(config hash, run id)`` of the cell a checkpoint's meta names, or None if it names none."""
    try:
        c = cell_from_dict(meta["cell"])
        return c.config_hash, c.run_id
    except (KeyError, TypeError, ValueError, AttributeError):
        rid = meta.get("run_id") if isinstance(meta, dict) else None
        return (rid.rsplit("-", 1)[1], rid) if isinstance(rid, str) and "-" in rid else None


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
