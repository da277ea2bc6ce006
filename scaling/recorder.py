"""The bookkeeping of one run: checkpoints, metrics rows, divergence, summary, final marker.

:class:`Recorder` is what both training loops call around their compiled steps:
:func:`scaling.train.train` owns one, :func:`scaling.stacked.train_stacked` owns one per
member.  So a stacked member's run directory is written by exactly the code that writes a
plain run's, and cannot drift from it.  The call order is::

    rec.open()                                  # config.json, checkpointer
    state, start, meta = rec.restore(abstract)  # (None, 0, {}) without a checkpoint
    rec.resume(start, meta)                     # drop metrics rows after start
    rec.count_params(params); rec.open_writers(start)   # metrics.jsonl, TensorBoard, --tracker runs
    for step in ...:                            # 1-based; step s trains on batch s-1
        diverged, logged = rec.after_step(step, lr, loss, grad_norm, evaluate, tokens_per_s)
        rec.checkpoint(step, get_state, stopping)
    rec.close(); summary = rec.finish(state_name, step, tokens_per_s)

Every row written to ``metrics.jsonl`` also goes to TensorBoard and to the trackers the
settings name (``Settings.trackers``: W&B, MLflow; :mod:`scaling.trackers`), which get the
summary in :meth:`Recorder.finish`.

Numbers come from :mod:`scaling.accounting` through :class:`scaling.inputs.RunInputs`; the
file layout from :mod:`scaling.rundir`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from scaling.config import Cell, ConfigError, to_dict
from scaling.optim import effective_warmup
from scaling.rundir import RunDir, finite_or_none

PHASES = ("startup", "compile", "data", "train", "eval", "tasks", "checkpoint")


class Timer:
    """Wall seconds per phase (:data:`PHASES`): ``with timer('data'): ...``."""

    def __init__(self):
        self.t = dict.fromkeys(PHASES, 0.0)

    def __call__(self, key: str):
        timer = self

        class _Phase:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                timer.t[key] += time.perf_counter() - self.t0

        return _Phase()

    def share(self, k: int) -> "Timer":
        """A timer holding 1/k of these seconds (a stacked member's share of the stack's time)."""
        out = Timer()
        out.t = {key: v / k for key, v in self.t.items()}
        return out


class Throughput:
    """Seconds and tokens of the steps one call ran: overall (for the summary) and since the last row.

    A step's seconds are its data + train time (not eval or checkpointing), so tokens/s
    measures the training loop itself.
    """

    def __init__(self, tokens_per_step: int):
        self.tokens_per_step = tokens_per_step
        self.seconds, self.steps = 0.0, 0
        self.window_s, self.window_tokens = 0.0, 0

    def add(self, dt: float) -> None:
        self.seconds += dt
        self.steps += 1
        self.window_s += dt
        self.window_tokens += self.tokens_per_step

    def window(self) -> float | None:
        return self.window_tokens / self.window_s if self.window_s > 0 else None

    def reset_window(self) -> None:
        self.window_s, self.window_tokens = 0.0, 0

    def overall(self) -> float | None:
        return self.steps * self.tokens_per_step / self.seconds if self.seconds > 0 else None


_GIT_SHA: list = []


def git_sha() -> str | None:
    """The commit of the code that trained (None outside a git checkout); asked once per process."""
    if not _GIT_SHA:
        try:
            out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                                 capture_output=True, text=True, timeout=10)
            _GIT_SHA.append(out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None)
        except (OSError, subprocess.SubprocessError):
            _GIT_SHA.append(None)
    return _GIT_SHA[0]


def library_versions() -> dict:
    from importlib import metadata

    out = {}
    for k, dist in (("jax", "jax"), ("flax", "flax"), ("optax", "optax"), ("orbax", "orbax-checkpoint")):
        try:
            out[k] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[k] = None
    return out


# What a fork must share with its trunk to continue it: the state's shapes, the data order,
# and every optimiser number the two schedules agree on before the fork step.
_FORK_MATCHES = ("model", "batch_size", "grad_accum", "seed", "data")
_FORK_OPTIM_MATCHES = ("peak_lr", "warmup_steps", "b1", "b2", "eps", "weight_decay", "clip_norm")


def _check_fork_matches_trunk(cell: Cell, trunk: RunDir) -> None:
    tc = trunk.read_cell()
    if tc is None:
        return  # no readable trunk config: the restore itself checks the state's shapes
    diffs = [f for f in _FORK_MATCHES if getattr(tc, f) != getattr(cell, f)]
    diffs += [f"optim.{f}" for f in _FORK_OPTIM_MATCHES if getattr(tc.optim, f) != getattr(cell.optim, f)]
    if diffs:
        raise ConfigError(f"fork {cell.run_id}: differs from its trunk {tc.run_id} in {', '.join(diffs)}; "
                          f"a fork must continue its trunk's run (plan forks with scaling.grids.WSDFork)")


def _layout(cell: Cell) -> str:
    from scaling.model import layout_of

    return layout_of(cell.model)


def _in_layout(abstract_state, layout: str):
    """The restore target of a checkpoint holding ``layout`` (the abstract state, converted if it differs)."""
    from scaling.model import convert_layout

    return convert_layout(abstract_state, layout)


def _to_layout(state, abstract_state):
    """``state`` in the layout and shardings of ``abstract_state`` (a no-op when it already is)."""
    import jax

    from scaling.model import convert_layout, param_layout

    want = param_layout(abstract_state["params"])
    if param_layout(state["params"]) == want:
        return state
    state = convert_layout(state, want)
    return jax.tree.map(lambda x, a: jax.device_put(x, a.sharding), state, abstract_state)


class Recorder:
    """Run-directory bookkeeping of one run (see the module docstring for the call order).

    ``inputs`` is the run's :class:`scaling.inputs.RunInputs`; ``timer`` may be shared by the
    members of a stack (their phase seconds then accrue once, and each member's summary gets
    its share through ``finish(timer=...)``).  Only the lead process writes files.
    """

    def __init__(self, cell: Cell, run_dir: RunDir, inputs, *, stop_after_step: int | None, t_entry: float,
                 timer: Timer | None = None):
        self.cell, self.run_dir, self.inputs = cell, run_dir, inputs
        self.stop_after_step, self.t_entry = stop_after_step, t_entry
        self.timer = timer or Timer()
        self.steps = cell.steps
        self.writes = inputs.is_lead
        from scaling import trackers

        settings = getattr(inputs, "settings", None)
        self.tracker_names = trackers.parse(settings.trackers if settings is not None else None)
        trackers.require(self.tracker_names)   # a missing extra fails here, before any compile
        self.ckpt = self.tb = self.metrics_file = self.trackers = None
        self.param_counts = None
        self.running_min = math.inf
        self.last = {"loss": None, "eval_loss": None, "eval_bpb": None, "tasks": {}}

    @property
    def end_step(self) -> int:
        """The last step this call trains: the run's last, or ``stop_after_step``."""
        return self.steps if self.stop_after_step is None else min(self.steps, self.stop_after_step)

    # ---- opening --------------------------------------------------------------------
    def open(self) -> None:
        """Write ``config.json`` (lead process) and open the checkpointer."""
        from scaling.checkpoint import Checkpointer

        if self.writes:
            self.run_dir.write_cell(self.cell)
        self.ckpt = Checkpointer(self.run_dir.checkpoints, keep_last=self.cell.keep_last,
                                 keep_every=self.cell.keep_every, keep_steps=self.cell.checkpoint_steps)

    def latest_step(self) -> int | None:
        with self.timer("checkpoint"):
            return self.ckpt.latest_step()

    def restore(self, abstract_state) -> tuple[Any, int, dict]:
        """``(state, its step, meta)`` from the newest good checkpoint, or ``(None, 0, {})`` without one.

        A checkpoint of the other parameter layout (scanned vs unrolled layers: the run moved
        to a backend with another default) is restored in its own layout and converted.
        """
        import jax

        with self.timer("checkpoint"):
            latest = self.ckpt.latest_step()
            if latest is None:
                return None, 0, {}
            saved = self.ckpt.read_meta(latest).get("param_layout", "unrolled")
            state, meta = self.ckpt.restore(latest, _in_layout(abstract_state, saved))
            self._check_corpus(meta, f"its checkpoint at step {latest}")
            self._check_tasks(meta, f"its checkpoint at step {latest}")
            return _to_layout(state, abstract_state), int(jax.device_get(state["step"])), meta

    def _check_corpus(self, meta: dict, what: str) -> None:
        """A run may only continue on the data it started on: a corpus edited in place gets a new hash."""
        then, now = (meta or {}).get("corpus_hash"), self.inputs.info.corpus_hash
        if then and now and then != now:
            raise ConfigError(f"run {self.cell.run_id}: the corpus changed since {what} (corpus hash {then[:12]} -> "
                              f"{now[:12]}); restore the data, or train into a fresh --out directory")

    def _check_tasks(self, meta: dict, what: str) -> None:
        """A run never mixes two versions of a downstream task: one scored before ``what`` must be unchanged."""
        then, now = (meta or {}).get("eval_tasks") or {}, self.inputs.task_shas()
        for name, sha in now.items():
            if then.get(name) and then[name] != sha:
                raise ConfigError(f"run {self.cell.run_id}: task {name!r} changed since {what} (sha {then[name][:12]} "
                                  f"-> {sha[:12]}); its earlier scores used the old version: restore the task file, "
                                  f"give the new one another name, or train into a fresh --out directory")

    def restore_fork(self, abstract_state) -> tuple[Any, int, dict]:
        """A WSD fork's first start: ``(state, fork_step, meta)`` from its trunk's checkpoint at the fork step.

        Params, optimizer state, step (the data position) and PRNG key are the trunk's after
        ``fork_step`` updates, so the fork continues exactly as a run of its own schedule would
        (its LR equals the trunk's up to the fork step).  The trunk's metrics rows up to the
        fork step are copied in, so the fork's curve is complete.  The trunk's directory is
        only read.
        """
        from scaling.checkpoint import has_step, read_step_meta, restore_step
        from scaling.rundir import trunk_of

        cell, k = self.cell, self.cell.fork_step
        trunk = trunk_of(self.run_dir, cell.trunk)
        with self.timer("checkpoint"):
            if not has_step(trunk.checkpoints, k):
                raise ConfigError(
                    f"fork {cell.run_id}: trunk {cell.trunk} has no checkpoint at step {k} (in {trunk.checkpoints}); "
                    f"to regenerate it, delete {trunk.path} and relaunch the sweep (the trunk retrains and "
                    f"keeps every fork step)")
            _check_fork_matches_trunk(cell, trunk)
            saved = read_step_meta(trunk.checkpoints, k).get("param_layout", "unrolled")
            state, meta = restore_step(trunk.checkpoints, k, _in_layout(abstract_state, saved))
            self._check_corpus(meta, f"its trunk's checkpoint at step {k}")
            self._check_tasks(meta, f"its trunk's checkpoint at step {k}")
            state = _to_layout(state, abstract_state)
        if self.writes:
            self.run_dir.write_metrics([r for r in trunk.read_metrics() if r.get("step", 0) <= k])
        return state, k, meta

    def resume(self, start: int, meta: dict) -> None:
        """Drop metrics rows after ``start``; recover the running-min loss and the last logged values."""
        rows = self.run_dir.truncate_metrics(start) if self.writes else []
        self.running_min = meta.get("running_min_loss") if meta else None
        if self.running_min is None:
            losses = [r["train_loss"] for r in rows if r.get("train_loss") is not None]
            self.running_min = min(losses) if losses else math.inf
        # a resumed run reports the last logged values until it logs new ones (e.g. when the final
        # checkpoint was written but the process died before SUCCESS: nothing is left to train)
        self.last = {"loss": rows[-1].get("train_loss") if rows else None, "eval_loss": None, "eval_bpb": None,
                     "tasks": {}}
        for r in reversed(rows):
            if r.get("eval_loss") is not None:
                self.last["eval_loss"], self.last["eval_bpb"] = r["eval_loss"], r.get("eval_bpb")
                self.last["tasks"] = {k: v for k, v in r.items() if k.startswith("task/")}
                break

    def count_params(self, params) -> None:
        """Parameter bases counted from the real (host) parameter tree."""
        from scaling import accounting

        self.param_counts = accounting.count_params_tree(params, self.cell.model)

    def open_writers(self, start: int) -> None:
        """Open ``metrics.jsonl`` for appending, TensorBoard (events after ``start`` purged) and the
        tracker runs (a new one first gets the rows the directory already holds)."""
        if not self.writes:
            return
        from tensorboardX import SummaryWriter

        self.tb = SummaryWriter(str(self.run_dir.tensorboard), purge_step=start + 1 if start else None)
        self.metrics_file = self.run_dir.open_metrics()
        if self.tracker_names:
            from scaling.trackers import RunTrackers, sweep_group

            self.trackers = RunTrackers(self.tracker_names, self.cell.run_id, to_dict(self.cell), self.run_dir.trackers,
                                        group=sweep_group(self.run_dir.path), existing_rows=self.run_dir.read_metrics)

    # ---- per step -------------------------------------------------------------------
    def after_step(self, step: int, lr: float, loss: float, grad_norm: float, evaluate,
                   tokens_per_s, score_tasks=None) -> tuple[bool, bool]:
        """Bookkeeping of one finished update: divergence check, eval, metrics row; ``(diverged, logged)``.

        ``evaluate()`` returns ``(eval_loss, eval_bpb)`` of the updated parameters and
        ``score_tasks()`` the downstream task metrics (``{"task/<name>/acc": ...}``, timed as the
        ``tasks`` phase); both are only called on eval steps, never for a diverged state, and the
        tasks only at the last step and every ``task_every`` steps (scoring them at every eval of a
        dense loss trajectory would cost more than the evals: 27% of ``curves_constant``'s time).
        ``tokens_per_s`` is the throughput since the last row; the caller restarts that window
        when a row was logged.
        """
        cell = self.cell
        self.last["loss"] = loss
        diverged = not math.isfinite(loss) or (
            cell.max_loss_spike > 0 and math.isfinite(self.running_min)
            and loss > self.running_min + cell.max_loss_spike)
        if math.isfinite(loss):
            self.running_min = min(self.running_min, loss)

        is_last = step == self.steps
        do_eval = (not diverged) and (is_last or (cell.eval_every > 0 and step % cell.eval_every == 0))
        do_tasks = do_eval and score_tasks is not None and bool(self.inputs.tasks) and (
            is_last or (cell.task_every > 0 and step % cell.task_every == 0))
        ev_loss = ev_bpb = None
        if do_eval:
            with self.timer("eval"):
                ev_loss, ev_bpb = evaluate()
            self.last["eval_loss"], self.last["eval_bpb"] = ev_loss, ev_bpb
        if do_tasks:
            with self.timer("tasks"):
                self.last["tasks"] = score_tasks()

        logged = diverged or do_eval or is_last or step % cell.log_every == 0 or step == self.end_step
        if logged and self.writes:
            row = self._row(step, lr, loss, grad_norm, ev_loss, ev_bpb, tokens_per_s)
            if do_tasks:
                row.update(self.last["tasks"])
            self.metrics_file.write(json.dumps(row) + "\n")
            self.metrics_file.flush()
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, step)
            if self.trackers is not None:
                self.trackers.log_row(row)
        return diverged, logged

    def checkpoint(self, step: int, get_state, stopping: bool) -> None:
        """Save ``get_state()`` after ``step`` on the cadence, at the end of this call, or when ``stopping``
        (SIGTERM: then also wait until it is durable, because the process exits next)."""
        if (stopping or step % self.cell.checkpoint_every == 0 or step == self.end_step
                or step in self.cell.checkpoint_steps):
            with self.timer("checkpoint"):
                meta = {"step": step, "data_position": step, "running_min_loss": finite_or_none(self.running_min),
                        "cell": to_dict(self.cell), "run_id": self.cell.run_id,
                        "corpus_hash": self.inputs.info.corpus_hash, "param_layout": _layout(self.cell),
                        "eval_tasks": self.inputs.task_shas()}
                self.ckpt.save(step, get_state(), meta)
                if stopping:
                    self.ckpt.wait()

    # ---- closing --------------------------------------------------------------------
    def close(self) -> None:
        """Close the metrics file, TensorBoard and the checkpointer (durable on return); idempotent.

        The tracker runs stay open for :meth:`finish`'s summary, unless an exception is on its
        way out (then they end as failed)."""
        if self.trackers is not None and sys.exc_info()[0] is not None:
            self.trackers.close(exit_code=1)
            self.trackers = None
        if self.metrics_file is not None:
            self.metrics_file.close()
            self.metrics_file = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.ckpt is not None:
            with self.timer("checkpoint"):
                self.ckpt.wait()
                self.ckpt.close()
            self.ckpt = None

    def finish(self, state_name: str, step: int, tokens_per_s, *, timer: Timer | None = None,
               extra: dict | None = None) -> dict:
        """The summary after ``step``; for a finished run also ``summary.json`` and, last, its marker.

        ``state_name`` "done" before the run's last step becomes "partial" (``stop_after_step``).
        """
        if state_name == "done" and step < self.steps:
            state_name = "partial"
        summary = self._summary(state_name, step, tokens_per_s, timer or self.timer)
        summary.update(extra or {})
        if self.writes and state_name in ("done", "diverged"):
            self.run_dir.finish(summary)
        if self.trackers is not None:
            self.trackers.log_summary(summary)
            self.trackers.close()
            self.trackers = None
        return summary

    # ---- rows -----------------------------------------------------------------------
    def _row(self, step, lr, loss, grad_norm, ev_loss, ev_bpb, tokens_per_s) -> dict:
        tokens = step * self.cell.tokens_per_step
        row = {"step": step, "train_loss": finite_or_none(loss),
               "lr": lr,  # the float32 learning rate the update applied
               "grad_norm": finite_or_none(grad_norm), "tokens_seen": tokens, "epoch": self.inputs.epoch(tokens)}
        if ev_loss is not None:
            row["eval_loss"] = ev_loss
            row["eval_bpb"] = ev_bpb
        for conv, f in self.inputs.flops_per_token.items():
            row[f"flops_{conv}"] = f * tokens
        row["tokens_per_s"] = tokens_per_s
        row["mfu"] = self.inputs.mfu(tokens_per_s)
        return row

    def _summary(self, state_name: str, step: int, tokens_per_s, timer: Timer) -> dict:
        cell, cfg, inputs = self.cell, self.cell.model, self.inputs
        tokens = step * cell.tokens_per_step
        fpt = inputs.flops_per_token
        info = inputs.info
        return {
            "run_id": cell.run_id, "state": state_name, "steps": step, "steps_planned": self.steps,
            "tokens_seen": tokens, "tokens_unique": inputs.unique_tokens(tokens), "epochs": inputs.epoch(tokens),
            "params": self.param_counts.as_dict(),
            "flops_per_token": dict(fpt),
            "flops_achieved": {k: v * tokens for k, v in fpt.items()},
            "group": cell.group, "budget": cell.budget, "flops_convention": cell.flops_convention,
            "final_eval_loss": self.last["eval_loss"], "final_eval_bpb": self.last["eval_bpb"],
            "final_train_loss": finite_or_none(self.last["loss"]),
            "tokens_per_s": tokens_per_s, "mfu": inputs.mfu(tokens_per_s), **inputs.mfus(tokens_per_s),
            "peak_flops": inputs.peak, "peak_flops_source": inputs.peak_source, "n_devices": inputs.n_devices,
            "wall_s": time.perf_counter() - self.t_entry, "compile_s": timer.t["compile"], "timing": dict(timer.t),
            "git_sha": git_sha(), "versions": library_versions(),
            "task": info.name, "corpus_hash": info.corpus_hash, "vocab_hash": info.vocab_hash,
            "train_split_tokens": info.num_tokens, "train_split_bytes": info.num_bytes or None,
            "entropy_rate": info.entropy_rate,
            "schedule": cell.optim.schedule, "peak_lr": cell.optim.peak_lr,
            "warmup_steps": effective_warmup(cell.optim, self.steps),
            "batch_size": cell.batch_size, "seq_len": cfg.seq_len, "grad_accum": cell.grad_accum,
            "mesh": dict(inputs.mesh.shape), "model": dataclasses.asdict(cfg),
            "trunk": cell.trunk or None, "fork_step": cell.fork_step or None,
            "tasks": self._task_summary(),
        }

    def _task_summary(self) -> dict:
        """``{name: {acc, acc_norm, bpb, n_items, sha, path}}`` of the last scored eval (None: never scored)."""
        from scaling.evaltasks import METRICS, column

        last = self.last.get("tasks") or {}
        return {p.task.name: {**{m: last.get(column(p.task.name, m)) for m in METRICS}, "n_items": p.task.n_items,
                              "sha": p.task.sha, "path": p.task.path} for p in self.inputs.tasks}
