"""Experiment trackers beside TensorBoard: Weights & Biases and MLflow (``--tracker``).

TensorBoard event files are always written into the run directory (``tb/``).  ``scaling train
--tracker wandb`` or ``--tracker mlflow`` (repeatable; ``Settings.trackers``, i.e.
``SCALING_TRACKERS=wandb,mlflow``) adds, for every run:

* one tracker run named after the run id, grouped by sweep (the sweep directory's name),
  holding the cell as its config, every ``metrics.jsonl`` row at its step (the numeric fields,
  as TensorBoard gets them) and the summary (``summary/<key>``, nested keys joined by ``/``);
* for a sweep, one sweep-level run (``<sweep> (sweep)``) holding the results table, the report's
  ``fits.json`` / ``fits.md`` and its figures.

Trackers are an output choice, not part of a run: they are not in the cell, so they never
change a run id, and a run trains and resumes the same with or without them.  The tracker run
ids are recorded in the run directory (``trackers.json``), so a resumed run logs into the run
it started; a new tracker run of a directory that already holds rows (a WSD fork's copied
trunk rows, or a run resumed with a tracker added) first replays them.

Both libraries are optional extras (``pip install 'scaling[wandb]'``, ``'scaling[mlflow]'``)
configured the way their users already configure them: ``WANDB_PROJECT`` (default
``scaling``), ``WANDB_MODE=offline``, ``WANDB_DIR``; ``MLFLOW_TRACKING_URI``,
``MLFLOW_EXPERIMENT_NAME`` (default ``scaling``).  :func:`require` checks, before any training,
that each named tracker is installed and can log, and says in one line what fixes it.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import uuid
from pathlib import Path

from scaling.config import ConfigError

NAMES = ("tensorboard", "wandb", "mlflow")
EXTERNAL = ("wandb", "mlflow")   # tensorboard is always written (recorder.py)
PIP = {"wandb": "pip install 'scaling[wandb]'", "mlflow": "pip install 'scaling[mlflow]'"}
DEFAULT_PROJECT = "scaling"


def parse(spec) -> tuple[str, ...]:
    """The external trackers named by ``spec`` (``"wandb,mlflow"``, a list of names, or None), in
    order, without repeats; ``tensorboard`` is accepted and dropped (it is always on)."""
    if spec is None:
        return ()
    names = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    bad = [n for n in names if n and n not in NAMES]
    if bad:
        raise ConfigError(f"--tracker {bad[0]}: unknown tracker; choose from {', '.join(NAMES)}")
    return tuple(dict.fromkeys(n for n in names if n in EXTERNAL))


def require(names) -> None:
    """ConfigError, naming the fix, unless every tracker in ``names`` is installed and can log."""
    for name in parse(names):
        try:
            __import__(name)
        except ImportError:
            raise ConfigError(f"--tracker {name}: the {name} package is not installed; {PIP[name]}") from None
        if name == "wandb":
            _check_wandb()
        else:
            _check_mlflow()


def _check_wandb() -> None:
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun") or os.environ.get("WANDB_API_KEY"):
        return
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    if netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="replace"):
        return
    if os.environ.get("WANDB_BASE_URL"):   # a self-hosted server: its own login
        return
    raise ConfigError("--tracker wandb: not logged in to Weights & Biases; run `wandb login`, set "
                      "WANDB_API_KEY, or log locally with WANDB_MODE=offline (then `wandb sync`)")


def _check_mlflow() -> None:
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient()._tracking_client.store  # noqa: B018 - resolving the store is the check
    except Exception as e:  # noqa: BLE001 - any failure to open the store is the user's to fix
        import mlflow

        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"--tracker mlflow: cannot open the tracking store {mlflow.get_tracking_uri()!r} "
                          f"({msg[:160]}); set MLFLOW_TRACKING_URI to your server, or to file:./mlruns "
                          f"with MLFLOW_ALLOW_FILE_STORE=true") from None


def scalars(row: dict) -> dict:
    """The fields of a metrics row that trackers log: finite numbers except ``step`` (as TensorBoard)."""
    return {k: v for k, v in row.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dicts as one level, keys joined by ``/``."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        else:
            out[key] = v
    return out


def _json_value(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v if isinstance(v, (str, int, float, bool, type(None))) else json.dumps(v, default=str)


# ------------------------------------------------------------------------------ backends
class _Wandb:
    """One W&B run; ``run_key`` is the W&B run id (recorded, so a resume logs into the same run)."""

    def __init__(self, run_key: str | None, name: str, config: dict, group: str | None, job_type: str = "train"):
        import wandb

        self.key = run_key or uuid.uuid4().hex[:12]
        # W&B reads its environment once per process; read WANDB_MODE / WANDB_DIR per run instead
        env = {k: os.environ[v] for k, v in (("mode", "WANDB_MODE"), ("dir", "WANDB_DIR")) if os.environ.get(v)}
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT, id=self.key, name=name,
                              group=group, job_type=job_type, config=config, resume="allow", reinit="create_new",
                              settings=wandb.Settings(silent=True, console="off"), **env)
        self.resumed = bool(run_key) and bool(getattr(self.run, "resumed", False))

    def log_row(self, row: dict) -> None:
        self.run.log(scalars(row), step=int(row["step"]))

    def log_summary(self, summary: dict) -> None:
        self.run.summary.update({f"summary/{k}": _json_value(v) for k, v in flatten(summary).items()})

    def log_sweep(self, table, report: Path) -> None:
        import wandb

        if table is not None:
            self.run.log({"results": wandb.Table(dataframe=table.astype(object).where(table.notna(), None))})
        images = {f"report/{p.stem}": wandb.Image(str(p)) for p in sorted(report.glob("*.png"))}
        if images:
            self.run.log(images)
        fits = report / "fits.json"
        if fits.is_file():
            self.log_summary({"fits": json.loads(fits.read_text())})

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)


class _Mlflow:
    """One MLflow run (explicit client: a stacked worker holds several runs at once)."""

    def __init__(self, run_key: str | None, name: str, config: dict, group: str | None, job_type: str = "train"):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = c = MlflowClient()
        exp_name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_PROJECT
        exp = c.get_experiment_by_name(exp_name)
        if exp is None:
            try:
                exp_id = c.create_experiment(exp_name)
            except Exception:  # noqa: BLE001 - another worker created it first
                exp_id = c.get_experiment_by_name(exp_name).experiment_id
        else:
            exp_id = exp.experiment_id
        self.resumed = False
        if run_key:
            try:
                self.key = c.get_run(run_key).info.run_id
                c.update_run(self.key, status="RUNNING")
                self.resumed = True
            except Exception:  # noqa: BLE001 - a store that lost the run: start a new one
                run_key = None
        if not run_key:
            tags = {"scaling.run_id": name, "scaling.kind": job_type, **({"scaling.sweep": group} if group else {})}
            self.key = c.create_run(exp_id, run_name=name, tags=tags).info.run_id
            params = [Param(k[:250], str(v)[:6000]) for k, v in flatten(config).items()]
            for i in range(0, len(params), 100):   # the tracking API takes 100 params per batch
                c.log_batch(self.key, params=params[i:i + 100])
            c.log_dict(self.key, config, "config.json")

    def log_row(self, row: dict) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self.client.log_batch(self.key, metrics=[Metric(k, float(v), ts, int(row["step"]))
                                                 for k, v in scalars(row).items()])

    def log_summary(self, summary: dict) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        step = int(summary.get("steps") or 0)
        metrics = [Metric(f"summary/{k}", float(v), ts, step) for k, v in scalars(flatten(summary)).items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.key, metrics=metrics[i:i + 1000])
        self.client.log_dict(self.key, summary, "summary.json")

    def log_sweep(self, table, report: Path) -> None:
        if table is not None:
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                p = Path(tmp) / "results.csv"
                table.to_csv(p, index=False)
                self.client.log_artifact(self.key, str(p))
        if report.is_dir():
            self.client.log_artifacts(self.key, str(report), "report")
        fits = report / "fits.json"
        if fits.is_file():
            summary = json.loads(fits.read_text())
            self.log_summary({k: {q: summary[k][q] for q in ("a", "b") if q in summary[k]}
                              for k in ("approach1", "approach2", "approach3") if isinstance(summary.get(k), dict)})

    def finish(self, exit_code: int = 0) -> None:
        self.client.set_terminated(self.key, "FINISHED" if exit_code == 0 else "FAILED")


_BACKENDS = {"wandb": _Wandb, "mlflow": _Mlflow}


# ------------------------------------------------------------------------------ a run's trackers
class RunTrackers:
    """The external trackers of one run: opened by the recorder with its writers, fed every row
    it writes to ``metrics.jsonl``, given the summary, closed with the run (lead process only).
    ``existing_rows()`` returns the rows already in the directory, replayed into a new tracker run.

    A tracker is a copy of the run directory, so one that fails while the run trains (a server
    gone away) is dropped with a warning and training goes on; its configuration was checked
    by :func:`require` before anything trained.
    """

    def __init__(self, names, run_id: str, config: dict, ids_path: Path, *, group: str | None = None,
                 existing_rows=list):
        self.run_id, self.runs = run_id, []
        ids = json.loads(ids_path.read_text()) if ids_path.is_file() else {}
        for name in parse(names):
            def start(name=name):
                t = _BACKENDS[name](ids.get(name), run_id, config, group)
                ids[name] = t.key
                if not t.resumed:   # a new tracker run holds the rows the directory already has
                    for row in existing_rows():
                        t.log_row(row)
                self.runs.append((name, t))

            self._guard(name, start)
        if self.runs:
            ids_path.write_text(json.dumps(ids))

    def _guard(self, name: str, fn) -> bool:
        try:
            fn()
            return True
        except Exception as e:  # noqa: BLE001 - see the class docstring
            print(f"warning: --tracker {name} stopped logging run {self.run_id} ({type(e).__name__}: {e}); "
                  f"its run directory holds every row", file=sys.stderr, flush=True)
            return False

    def _each(self, call) -> None:
        self.runs = [(n, t) for n, t in self.runs if self._guard(n, lambda: call(t))]

    def log_row(self, row: dict) -> None:
        self._each(lambda t: t.log_row(row))

    def log_summary(self, summary: dict) -> None:
        self._each(lambda t: t.log_summary(summary))

    def close(self, exit_code: int = 0) -> None:
        self._each(lambda t: t.finish(exit_code))
        self.runs = []


def sweep_group(run_dir) -> str | None:
    """The sweep a run directory belongs to (``<sweep>/runs/<run_id>``): the sweep directory's name."""
    p = Path(run_dir).resolve()
    return p.parent.parent.name if p.parent.name == "runs" else None


def log_sweep(names, out, *, table=None, report=None) -> None:
    """One sweep-level run per tracker: the results table, the report's figures and fits."""
    out = Path(out).resolve()
    report = Path(report) if report is not None else out / "report"
    config = {"sweep_dir": str(out), "n_runs": 0 if table is None else int(len(table))}
    ids_path = out / "trackers.json"
    ids = json.loads(ids_path.read_text()) if ids_path.is_file() else {}
    for name in parse(names):
        t = _BACKENDS[name](ids.get(name), f"{out.name} (sweep)", config, out.name, job_type="sweep")
        ids[name] = t.key
        ids_path.write_text(json.dumps(ids))
        t.log_sweep(table, report)
        t.finish()
