"""Train one cell into its own run directory, resumably, on any mesh.

``train(cell, run_dir)`` is the single entry point used by ``scaling train`` and by every
launch backend.  The run directory (:mod:`scaling.rundir`) is the whole truth about a run.

The loop below reads top to bottom:

1. **Validate before compiling** (:func:`check_entry`, :class:`scaling.inputs.RunInputs`):
   the cell, the mesh against the device count, every batch against ``data x fsdp`` and the
   process count, sharded parameter dims against their mesh axes, the task's vocabulary
   against the model's, and the token budget against the split.  Any failure is a one-line
   :class:`~scaling.config.ConfigError`.  So is a directory holding another cell's records
   (:meth:`scaling.rundir.RunDir.check_cell`); a finished directory of this cell returns its summary.
2. **Compile** the init, train and eval programs (:mod:`scaling.programs`; reused within the
   process and through the persistent compilation cache across processes).
3. **Init or restore.**  The train state is ``{step, params, opt_state, rng}``.  A checkpoint
   is restored onto *this* mesh, and ``metrics.jsonl`` loses its rows after that step; the
   data position is the step itself, because every batch is a pure function of (task, seed,
   step).  A WSD fork (``cell.trunk``) without a checkpoint of its own starts from its trunk's
   checkpoint at ``cell.fork_step``.
4. **Loop.**  One jitted step per optimiser update; the learning rate and every other
   optimiser number are host-computed and traced (:mod:`scaling.optim`).  Eval runs every
   ``eval_every`` steps and at the end, and scores the cell's downstream tasks with the same
   compiled program (:mod:`scaling.evaltasks`).  Checkpoints every ``checkpoint_every`` steps (async),
   at the end, and on SIGTERM (then the process exits with status 143).  A non-finite loss,
   or one ``max_loss_spike`` nats above the running minimum, ends the run as ``diverged``
   (the bad state is never checkpointed).
5. **Finish**: ``summary.json`` and, last, ``SUCCESS`` or ``DIVERGED`` (:mod:`scaling.recorder`).

Step ``s`` (1-based) trains on batch ``s - 1``; its metrics row logs the loss of that batch
*before* the update and the learning rate used by the update.
"""

from __future__ import annotations

import signal
import sys
import time

from scaling.config import Cell, ConfigError
from scaling.rundir import RunDir


def check_entry(cell: Cell, run_dir: RunDir, stop_after_step: int | None = None) -> dict | None:
    """The checks every training call makes first; returns the stored summary of a finished run, else None.

    The directory's cell is checked *before* a finished summary is returned: a finished run
    directory and a different cell is a ConfigError, never the old run's numbers.
    """
    cell.validate()
    if stop_after_step is not None and stop_after_step < 1:
        raise ConfigError(f"stop_after_step={stop_after_step}: must be >= 1")
    note = run_dir.check_cell(cell)
    if note:
        print(f"note: {note}", file=sys.stderr, flush=True)
    done = run_dir.finished_summary()
    if done is not None and cell.eval_tasks:
        from scaling.evaltasks import check_finished

        check_finished(cell, done, run_dir.path)
    return done


def prepare_process(settings) -> None:
    """What a process does once before its first program: the compile cache, a multi-process job."""
    from scaling import programs, sharding

    programs.setup_compile_cache(settings.compile_cache)
    sharding.initialize_distributed(settings)


def train(cell: Cell, run_dir, *, stop_after_step: int | None = None, settings=None) -> dict:
    """Train ``cell`` into ``run_dir`` (resuming, or returning a finished summary); return the summary.

    ``stop_after_step`` ends the call after that step with a checkpoint, as a preemption
    would (summary state ``"partial"``, nothing marked finished); calling again resumes.
    ``settings`` (:class:`scaling.settings.Settings`): the caller's; default: read from the
    environment now.
    """
    from scaling.settings import Settings

    t_entry = time.perf_counter()
    settings = settings or Settings.from_environ()
    rd = RunDir(run_dir)
    done = check_entry(cell, rd, stop_after_step)
    if done is not None:
        return done
    prepare_process(settings)

    import jax

    from scaling.checkpoint import install_sigterm_handler
    from scaling.inputs import RunInputs
    from scaling.optim import hyperparams
    from scaling.programs import compiled_programs, cudnn_fallback, for_this_backend
    from scaling.recorder import Recorder, Throughput

    cell = for_this_backend(cell)  # concrete layout/attention, recorded in config.json (same run id)
    inputs = RunInputs(cell, settings)  # validation, data sources, accounting: before any compile
    rec = Recorder(cell, rd, inputs, stop_after_step=stop_after_step, t_entry=t_entry)
    timer = rec.timer
    with timer("compile"):
        try:
            progs, (init_fn, step_fn, eval_fn) = compiled_programs(cell, inputs.mesh)
        except Exception as e:  # noqa: BLE001 - only a cuDNN failure of a cuDNN cell is retried (else re-raised)
            cell = rec.cell = cudnn_fallback(cell, e)
            progs, (init_fn, step_fn, eval_fn) = compiled_programs(cell, inputs.mesh)
    rec.open()

    def initial_state():
        state, start, meta = rec.restore(progs.abstract_state)
        if state is None and cell.trunk:  # a WSD fork's first start: continue from its trunk's fork step
            state, start, meta = rec.restore_fork(progs.abstract_state)
        if state is None:
            with timer("compile"):  # the init program's first (and only) call
                state = init_fn(jax.random.PRNGKey(cell.seed))
        return state, start, meta

    state, start, meta = initial_state()
    rec.resume(start, meta)
    with timer("data"):
        eval_data = inputs.eval_batches(progs.batch_sharding)
        task_data = inputs.task_batches(progs.batch_sharding)
    rec.count_params(jax.device_get(state["params"]))
    timer.t["startup"] = max(0.0, (time.perf_counter() - t_entry) - sum(timer.t.values()))
    rec.open_writers(start)

    def evaluate():
        return inputs.eval_numbers([eval_fn(state["params"], b) for b in eval_data])

    def score_tasks():  # the eval program again: its per-token NLL on each task's packed batches
        return inputs.task_numbers([[eval_fn(state["params"], b)["token_nll"] for b in bs] for bs in task_data])

    guard = install_sigterm_handler(None)  # the loop polls guard.requested and saves itself
    outcome = "done"
    tput = Throughput(cell.tokens_per_step)
    step = start
    try:
        while step < rec.end_step:
            step += 1
            t_step = time.perf_counter()
            with timer("data"):
                batch = inputs.train_batch(step - 1, progs.batch_sharding)
                hp_np = hyperparams(cell.optim, cell.steps, step)
                hp = jax.make_array_from_process_local_data(progs.replicated, hp_np)
            with timer("train"):
                try:
                    state, out = step_fn(state, batch, hp)
                    loss, grad_norm = float(out["loss"]), float(out["grad_norm"])  # waits for the step
                except Exception as e:  # noqa: BLE001 - the first step of a cuDNN cell falls back once (else re-raised)
                    if step != start + 1:
                        raise
                    cell = rec.cell = cudnn_fallback(cell, e, run_dir=rd)
                    progs, (init_fn, step_fn, eval_fn) = compiled_programs(cell, inputs.mesh)
                    state, _, _ = initial_state()  # the failed step may have consumed its donated state
                    state, out = step_fn(state, batch, hp)
                    loss, grad_norm = float(out["loss"]), float(out["grad_norm"])
            tput.add(time.perf_counter() - t_step)
            diverged, logged = rec.after_step(step, float(hp_np[0]), loss, grad_norm, evaluate, tput.window(),
                                              score_tasks)
            if logged:
                tput.reset_window()
            if diverged:
                outcome = "diverged"
                break
            stopping = guard.requested  # read once: a signal arriving later is seen after the next step
            rec.checkpoint(step, lambda: state, stopping)
            if stopping:
                outcome = "sigterm"
                break
    finally:
        guard.uninstall()
        rec.close()

    if outcome == "sigterm":
        raise SystemExit(128 + signal.SIGTERM)
    return rec.finish(outcome, step, tput.overall())
