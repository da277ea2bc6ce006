"""Train K same-shape cells together as ONE compiled program: ``jax.vmap`` over stacked parameters.

Why stack?  The cells of a small sweep (an LR sweep: one model shape, five peak LRs) are tiny.
One optimizer step of a 20k-parameter decoder is a handful of small matmuls; its wall time
is dominated by what surrounds the FLOPs: dispatching the program, copying the batch in,
reading the loss back, Python bookkeeping.  Training K such cells one after another pays
that overhead K times per step.  Stacking them along a new leading *member* axis turns K
small steps into one step of K-times-larger batched matmuls: one dispatch, one host round
trip, and kernels big enough to keep the vector units (or an accelerator) busy.

That is an accelerator argument.  On CPU a tiny model's step is mostly elementwise and
softmax work that grows with K, so stacking there does not pay (``benchmarks/stacked.py``
measures it; the README has the numbers) and the local worker stacks on CPU only when asked
(``Settings.stack_max``; see :func:`scaling.launch.worker.stack_max`).

Why it is *correct* to stack follows from how :mod:`scaling.programs` compiles.  Its programs
depend only on shapes: every optimizer number enters the step as the traced ``hp`` vector
and the seed's PRNG key is an argument of ``init``.  Cells with the same :func:`stack_key`
therefore differ only in *values*, and ``vmap`` gives each member its own values:

=======  ==================================  ====================================================
program  vmapped over                        why
=======  ==================================  ====================================================
init     K PRNG keys (one per member seed)   ``jax.random`` is vmap-invariant: member i's state is
                                             bit-for-bit what ``train`` builds for that cell alone
step     (state, batch, hp)                  per-member LR/schedule/weight decay...; the batch has
                                             ``in_axes=None`` when all seeds are equal (then every
                                             member reads the same rows: they are fed once, not K
                                             times), else 0 (each member its own rows)
eval     params                              the eval set is the same for every cell (``EVAL_SEED``)
=======  ==================================  ====================================================

No operation mixes members (gradients, clipping norms and Adam moments are all per member),
so member i's losses equal ``train(cell_i)``'s up to the float reassociation of batched
versus unbatched kernels (``tests/test_stacked.py`` checks rtol 1e-5 over 16 steps); over
long runs at high learning rates Adam amplifies that rounding noise, as it does between any
two differently-fused programs.

**Run directories.**  Each member writes exactly what ``train`` writes, in its own run
directory, *by the same code*: ``train_stacked`` builds one :class:`scaling.inputs.RunInputs`
(validation, data, accounting) and one :class:`scaling.recorder.Recorder` (config, metrics
rows, TensorBoard, checkpoints, summary, SUCCESS/DIVERGED) per member and calls the
recorders from the stacked loop, exactly as ``train`` calls its one.
Two numbers are necessarily shared: a member's tokens/s (and MFU) is *its* tokens over the
wall time of the stacked loop, and its ``timing``/``compile_s`` are its 1/K share of the
stack's phase seconds, so that summing ``timing`` over a sweep's summaries (the sweep
report's "time in cells") still adds up to real time.  ``summary["stacked"]`` is K.

**Checkpoints and resume.**  Member i's checkpoint is its own unstacked slice of the state,
saved with ``train``'s layout and meta, so a stacked member can be resumed by plain
``train(cell, run_dir)`` and vice versa.  On entry finished members return their summary;
the rest are stacked from scratch if none has a checkpoint, restored and stacked if all have
the same latest step, and otherwise (a partly resumed mix) trained one by one with ``train``.

**Divergence.**  A member whose loss is non-finite, or spikes (``max_loss_spike``), is
marked DIVERGED at that step (its bad state is never checkpointed) and the others go on.
The dead member keeps riding along in the vmapped step: dropping it would mean compiling a
(K-1)-member program mid-run, and its NaNs cannot leak into the other members.

**SIGTERM** checkpoints every live member at the step boundary and exits with status 143,
as ``train`` does.

**Sharding.**  The stacked state takes the cell's own parameter shardings with a leading,
replicated member axis (``P(None, *spec)``), so every mesh a cell can train on works
(tiny cells are usually trained on one device or a data-only mesh); a per-member batch is
``(K, rows, seq_len)`` with its rows split like ``train``'s.  Single process only: the
worker's multi-host lockstep mode trains one cell at a time.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from typing import Any, Sequence

from scaling.config import Cell, ConfigError
from scaling.optim import HPARAMS, hyperparams
from scaling.programs import (EVAL_KEYS, TRAIN_KEYS, ProgramCache, abstract_batch, abstract_train_state,
                              compile_init, make_eval_step, make_init, make_train_step, program_key, unboxed)
from scaling.rundir import RunDir
from scaling.train import check_entry, prepare_process, train

# What cells must share to be stacked: the compiled program's shape (model, batches, mesh), the
# step count (one loop drives all members), the data (one shared eval set, one source), and the
# eval/log/checkpoint cadence (members log, evaluate and checkpoint at the same steps).
STACK_FIELDS = ("model", "batch_size", "grad_accum", "eval_batch_size", "mesh", "steps", "data",
                "eval_every", "eval_batches", "log_every", "checkpoint_every", "eval_tasks", "task_every")


def stack_key(cell: Cell) -> tuple:
    """The hashable key under which cells can be trained together by :func:`train_stacked`.

    Cells with equal keys may still differ in every optimizer number (peak LR, schedule,
    warmup, weight decay ...), seed, token budget rounding, name, group, budget, checkpoint
    retention and divergence threshold.
    """
    return tuple(getattr(cell, f) for f in STACK_FIELDS)


def check_stackable(cells: Sequence[Cell]) -> None:
    """ConfigError (one line) naming the first field in which a cell differs from the first cell."""
    ref = cells[0]
    forks = [c.run_id for c in cells if c.trunk]
    if forks:
        raise ConfigError(f"train_stacked: {forks[0]} is a WSD fork; forks start from their trunk's checkpoint "
                          "and train alone (scaling.train.train)")
    for c in cells[1:]:
        for f in STACK_FIELDS:
            a, b = getattr(ref, f), getattr(c, f)
            if a != b:
                raise ConfigError(f"train_stacked: cell {c.run_id} differs from {ref.run_id} in {f} "
                                  f"({_short(b)} vs {_short(a)}); stacked cells must share "
                                  f"{', '.join(STACK_FIELDS)}")


def _short(x, n: int = 80) -> str:
    r = repr(x)
    return r if len(r) <= n else r[:n - 3] + "..."


# ----------------------------------------------------------------------------------------
# Stacked programs
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StackedPrograms:
    """The compiled programs of K stacked members of one shape, plus the shardings they use.

    ``init(keys[K]) -> state``, ``step(state, batch, hp[K]) -> (state, {'loss'[K], 'grad_norm'[K]})``,
    ``eval(params, batch) -> sums[K]``; ``take(state, i) -> member i's state`` (with ``train``'s
    own shardings: what a checkpoint holds) and ``stack([state_0 .. state_K-1]) -> state``
    (after restoring members one by one).  ``batch_sharding`` is the train batch's: rows of one
    shared batch, or ``(K, rows, seq_len)`` per-member batches; ``rows_sharding`` is ``train``'s.
    """

    members: int
    shared_batch: bool
    member_state: Any  # abstract unstacked state with the cell's shardings: the checkpoint restore target
    state_sharding: Any
    batch_sharding: Any
    rows_sharding: Any
    replicated: Any
    init: Any
    step: Any
    eval: Any
    take: Any
    stack: Any


_STACKED = ProgramCache(4)  # (program key, K, shared batch) -> StackedPrograms


def _member_axis(sh):
    """``sh`` with a leading replicated axis: where the stacked array keeps its K members."""
    from jax.sharding import NamedSharding, PartitionSpec as P

    return NamedSharding(sh.mesh, P(None, *sh.spec))


def for_stacking(cell: Cell) -> Cell:
    """``cell`` with the attention kernel a stack can run: XLA's ``dot_product`` instead of cuDNN.

    jax 0.10.2's cuDNN attention cannot be vmapped over members here: its batching rule reshapes
    our head-broadcast segment mask ``[B, 1, L, L]`` as if it had every head (``TypeError: cannot
    reshape array of shape (8, 16, 1, 128, 128) ... into shape (128, 2, 128, 128)``), and with a
    shared batch its sharding rule refuses a mask sharded unlike the query ("Query and bias should
    have same sharding on batch and num_head dim"); both found by deviceless compiles for H100
    (tests/test_gpu_aot.py).  Attention is an execution choice (same values, same run id), so
    each member's config.json records ``dot_product``.
    """
    if cell.model.attention != "cudnn":
        return cell
    return dataclasses.replace(cell, model=dataclasses.replace(cell.model, attention="dot_product"))


def lower_stacked(cell: Cell, mesh, members: int, shared_batch: bool) -> StackedPrograms:
    """Lower and compile the K-member programs of ``cell``'s shape on ``mesh`` (see the module docstring)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from scaling import sharding
    from scaling.model import Decoder

    K, L = members, cell.model.seq_len
    model = Decoder(cell.model)
    _, member_sh, member_state = abstract_train_state(model, L, mesh)
    state_sh = jax.tree.map(_member_axis, member_sh)
    state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct((K, *x.shape), x.dtype, sharding=s), member_state, state_sh)
    rep, rows_sh = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    batch_sh = rows_sh if shared_batch else _member_axis(rows_sh)
    batch = abstract_batch((cell.batch_size, L) if shared_batch else (K, cell.batch_size, L), TRAIN_KEYS, batch_sh)
    key0 = jax.random.PRNGKey(0)
    keys = jax.ShapeDtypeStruct((K, *key0.shape), key0.dtype, sharding=rep)
    hp = jax.ShapeDtypeStruct((K, len(HPARAMS)), jnp.float32, sharding=rep)
    index = jax.ShapeDtypeStruct((), jnp.int32, sharding=rep)

    step_fn = jax.vmap(make_train_step(model, cell.grad_accum), in_axes=(0, None if shared_batch else 0, 0))
    eval_fn = jax.vmap(make_eval_step(model), in_axes=(0, None))
    with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
        lowered = {
            "init": jax.jit(jax.vmap(unboxed(make_init(model, L))), out_shardings=state_sh).lower(keys),
            "step": jax.jit(step_fn, in_shardings=(state_sh, batch_sh, rep), out_shardings=(state_sh, rep),
                            donate_argnums=0).lower(state, batch, hp),
            "eval": jax.jit(eval_fn, in_shardings=(state_sh["params"], rows_sh), out_shardings=rep).lower(
                state["params"], abstract_batch((cell.eval_batch_size, L), EVAL_KEYS, rows_sh)),
            "take": jax.jit(lambda s, i: jax.tree.map(lambda x: x[i], s), out_shardings=member_sh).lower(state, index),
        }
    stack = jax.jit(lambda states: jax.tree.map(lambda *xs: jnp.stack(xs), *states), out_shardings=state_sh)
    return StackedPrograms(members=K, shared_batch=shared_batch, member_state=member_state, state_sharding=state_sh,
                           batch_sharding=batch_sh, rows_sharding=rows_sh, replicated=rep, stack=stack,
                           init=compile_init(lowered.pop("init")),
                           **{name: low.compile() for name, low in lowered.items()})


def compiled_stacked(cell: Cell, mesh, members: int, shared_batch: bool) -> StackedPrograms:
    """:func:`lower_stacked`, reused within the process per (program key, K, shared batch).

    Like ``train``'s programs they depend only on shapes, so the persistent compilation cache
    (``SCALING_COMPILE_CACHE``) serves them across processes too.
    """
    return _STACKED.get((program_key(cell, mesh), members, shared_batch),
                        lambda: lower_stacked(cell, mesh, members, shared_batch))


# ----------------------------------------------------------------------------------------
# train_stacked()
# ----------------------------------------------------------------------------------------


def train_stacked(cells: Sequence[Cell], run_dirs: Sequence, *, stop_after_step: int | None = None,
                  settings=None) -> list[dict]:
    """Train ``cells`` (same :func:`stack_key`) together, each into its own run dir; return their summaries.

    Behaves, per member, like ``train(cell, run_dir, stop_after_step=...)`` (see the module
    docstring for what is shared and how resume works); the summaries come back in the order
    of ``cells`` and carry ``"stacked": K``, except those of members that were already
    finished (their stored summary) or trained alone (one left, or mismatched checkpoints).
    """
    from scaling.settings import Settings

    t_entry = time.perf_counter()
    settings = settings or Settings.from_environ()
    cells, run_dirs = list(cells), [RunDir(d) for d in run_dirs]
    if not cells or len(cells) != len(run_dirs):
        raise ConfigError(f"train_stacked: got {len(cells)} cells and {len(run_dirs)} run dirs; "
                          "pass one run dir per cell (at least one)")
    if len({d.path.resolve() for d in run_dirs}) != len(run_dirs):
        raise ConfigError("train_stacked: run dirs must be distinct (one per cell)")
    for c in cells:
        c.validate()
    check_stackable(cells)
    summaries = [check_entry(c, d, stop_after_step) for c, d in zip(cells, run_dirs)]
    todo = [i for i, s in enumerate(summaries) if s is None]

    def alone(i):
        return train(cells[i], run_dirs[i].path, stop_after_step=stop_after_step, settings=settings)

    if len(todo) == 1:  # a stack of one is just a run: share train's compiled programs
        summaries[todo[0]] = alone(todo[0])
    if len(todo) <= 1:
        return summaries

    prepare_process(settings)
    import jax

    from scaling.inputs import RunInputs
    from scaling.recorder import Recorder, Timer

    if jax.process_count() > 1:
        raise ConfigError(f"train_stacked: {jax.process_count()} processes; stacking is single-process only "
                          "(multi-host sweeps train one cell at a time)")
    from scaling.programs import for_this_backend

    cells = [for_stacking(for_this_backend(c)) for c in cells]  # concrete layout/attention (same run ids)
    timer = Timer()  # phase seconds accrue once for the stack; each member gets its share at the end
    recorders: list[Recorder] = []
    for i in todo:
        inputs = RunInputs(cells[i], settings, like=recorders[0].inputs if recorders else None)
        recorders.append(Recorder(cells[i], run_dirs[i], inputs, stop_after_step=stop_after_step, t_entry=t_entry,
                                  timer=timer))
    got = _Stack(recorders, timer, t_entry).run()
    if got is None:  # members stand at different steps: resume each one alone
        got = [alone(i) for i in todo]
    for i, s in zip(todo, got):
        summaries[i] = s
    return summaries


class _Stack:
    """One train_stacked() call over K members: the stacked state, the loop, one clock for all."""

    def __init__(self, members, timer, t_entry: float):
        self.members, self.K, self.t_entry = members, len(members), t_entry
        self.lead = members[0]
        self.timer = timer
        self.shared_batch = len({m.cell.seed for m in members}) == 1

    def _batch(self, step_index: int) -> dict:
        import jax
        import numpy as np

        if self.shared_batch:
            return self.lead.inputs.train_batch(step_index, self.progs.rows_sharding)
        host = [m.inputs.host_train_batch(step_index) for m in self.members]
        return {k: jax.make_array_from_process_local_data(self.progs.batch_sharding, np.stack([h[k] for h in host]))
                for k in TRAIN_KEYS}

    def _init_or_restore(self):
        """``(stacked state, start step)``, or None when the members' checkpoints stand at different steps."""
        import jax

        progs, members = self.progs, self.members
        latest = {m.latest_step() for m in members}
        if latest == {None}:
            with self.timer("compile"):
                state = progs.init(jax.numpy.stack([jax.random.PRNGKey(m.cell.seed) for m in members]))
            for m in members:
                m.resume(0, {})
            return state, 0
        if len(latest) > 1:
            return None
        restored = [m.restore(progs.member_state) for m in members]
        starts = {start for _, start, _ in restored}
        if len(starts) > 1:  # a corrupt newest step made one member fall back to an older one
            return None
        for m, (_, start, meta) in zip(members, restored):
            m.resume(start, meta)
        with self.timer("checkpoint"):
            return progs.stack([s for s, _, _ in restored]), starts.pop()

    def _finish(self, i: int, state_name: str, step: int, tput) -> dict:
        m = self.members[i]
        m.close()
        return m.finish(state_name, step, tput.overall(), timer=self.timer.share(self.K), extra={"stacked": self.K})

    def run(self) -> list[dict] | None:
        import jax
        import numpy as np

        from scaling.checkpoint import install_sigterm_handler

        members, lead, timer = self.members, self.lead, self.timer
        try:
            for m in members:
                m.open()
            with timer("compile"):
                self.progs = progs = compiled_stacked(lead.cell, lead.inputs.mesh, self.K, self.shared_batch)
            got = self._init_or_restore()
            if got is None:
                return None
            state, start = got
            with timer("data"):
                eval_data = lead.inputs.eval_batches(progs.rows_sharding)
                self.task_data = lead.inputs.task_batches(progs.rows_sharding)
            params0 = jax.device_get(progs.take(state, np.int32(0))["params"])
            for m in members:
                m.count_params(params0)
                m.open_writers(start)
            timer.t["startup"] = max(0.0, (time.perf_counter() - self.t_entry) - sum(timer.t.values()))
            return self._loop(state, start, eval_data, install_sigterm_handler(None))
        finally:
            for m in members:
                m.close()

    def _loop(self, state, start: int, eval_data, guard) -> list[dict]:
        import jax
        import numpy as np

        from scaling.recorder import Throughput

        members, progs, timer = self.members, self.progs, self.timer
        tput = Throughput(self.lead.cell.tokens_per_step)
        alive = list(range(self.K))
        done: dict[int, dict] = {}
        step = start
        try:
            while step < self.lead.end_step and alive:
                step += 1
                t_step = time.perf_counter()
                with timer("data"):
                    batch = self._batch(step - 1)
                    hp_np = np.stack([hyperparams(m.cell.optim, m.steps, step) for m in members])
                    hp = jax.make_array_from_process_local_data(progs.replicated, hp_np)
                with timer("train"):
                    state, out = progs.step(state, batch, hp)
                    out = jax.device_get(out)
                tput.add(time.perf_counter() - t_step)

                sums: list = []  # the stacked eval runs once per eval step, for every member at once

                def evaluate(i, params=state["params"]):
                    if not sums:
                        sums.extend(jax.device_get([progs.eval(params, b) for b in eval_data]))
                    return members[i].inputs.eval_numbers([{k: v[i] for k, v in o.items()} for o in sums])

                tsums: list = []  # likewise the tasks: per task, per batch, token_nll [K, rows, seq_len]

                def score_tasks(i, params=state["params"]):
                    if not tsums:
                        tsums.extend(jax.device_get([[progs.eval(params, b)["token_nll"] for b in bs]
                                                     for bs in self.task_data]))
                    return members[i].inputs.task_numbers([[t[i] for t in per] for per in tsums])

                stopping, logged_any = guard.requested, False
                for i in list(alive):
                    diverged, logged = members[i].after_step(
                        step, float(hp_np[i, 0]), float(out["loss"][i]), float(out["grad_norm"][i]),
                        lambda i=i: evaluate(i), tput.window(), lambda i=i: score_tasks(i))
                    if diverged:  # finished here; its bad state is not checkpointed, the others go on
                        alive.remove(i)
                        done[i] = self._finish(i, "diverged", step, tput)
                        continue
                    logged_any |= logged
                    members[i].checkpoint(step, lambda i=i: progs.take(state, np.int32(i)), stopping)
                if logged_any:
                    tput.reset_window()
                if stopping:
                    raise SystemExit(128 + signal.SIGTERM)  # every live member saved this step; the finally closes them
        finally:
            guard.uninstall()
        for i in alive:
            done[i] = self._finish(i, "done", step, tput)
        return [done[i] for i in range(self.K)]
