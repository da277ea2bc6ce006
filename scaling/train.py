"""Train one cell into its own run directory, resumably, on any mesh.

``train(cell, run_dir)`` is the single entry point used by ``scaling train`` and by every
launch backend.  The run directory is the whole truth about a run::

    run_dir/
      config.json        the cell (written first; a different cell in the same dir is an error)
      checkpoints/       Orbax checkpoints: params, optimizer state, step, PRNG key (+ meta)
      metrics.jsonl      one JSON row per logged step
      tb/                TensorBoard events (tensorboardX)
      summary.json       final numbers (see the brief's seam for its keys)
      SUCCESS | DIVERGED last: marks the run finished

Lifecycle of a call:

1. **Validate before compiling.**  ``cell.validate()``, the mesh against the device count,
   the batch against ``data x fsdp`` and the process count, sharded parameter dims against
   their mesh axes, the task's vocabulary against the model's, and the token budget
   against the split (``scaling.data.check_budget``).  Any failure is a one-line
   :class:`~scaling.config.ConfigError`.
2. **Finished?**  A directory with ``SUCCESS`` or ``DIVERGED`` returns its ``summary.json``.
3. **Init or restore.**  The train state is ``{step, params, opt_state, rng}``; its
   shardings come from the model's logical axis names (:mod:`scaling.sharding`).  If the
   checkpoint manager has a step, the state is restored onto *this* mesh and
   ``metrics.jsonl`` is truncated to rows ``step <= restored step``; the data position is
   the step itself, because every batch is a pure function of (task, seed, step).
4. **Loop.**  One jitted step per optimizer update (``grad_accum`` micro-batches are
   scanned inside it and their gradient *sums* added, so accumulation equals one big batch
   up to float reassociation).  The learning rate (and every other optimizer number) is
   computed on the host and passed in as a traced float32 vector, so the compiled programs
   depend only on shapes (:func:`lower_programs`): the cells of a sweep that share a model,
   batch and mesh compile once (then reuse them in-process, or hit the persistent compilation
   cache ``SCALING_COMPILE_CACHE`` in a new process) whatever their budgets and peak LRs.
   Eval runs every ``eval_every`` steps and at the end on a fixed set of validation batches.
   Checkpoints every ``checkpoint_every`` steps (async), at the end, and on SIGTERM (then the
   process exits with status 143).
5. **Divergence.**  A non-finite train loss, or one more than ``max_loss_spike`` nats above
   the running minimum (when that is > 0), writes ``DIVERGED`` and a summary with state
   ``"diverged"``; the bad state is never checkpointed.

Numbers such as parameter counts, FLOPs per token and the device peak come from
:mod:`scaling.accounting` only.  Step ``s`` (1-based) trains on batch ``s - 1``; its row
logs the loss of that batch *before* the update and the learning rate used by the update.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from scaling.config import Cell, ConfigError, OptimConfig, cell_from_json, cell_to_json, to_dict
from scaling.loss import loss_sums

EVAL_SEED = 1_000_003  # validation batches are the same for every cell of a task
TRAIN_KEYS = ("decoder_input_tokens", "decoder_target_tokens", "decoder_segment_ids",
              "decoder_positions", "decoder_loss_weights")
EVAL_KEYS = TRAIN_KEYS + ("decoder_target_bytes",)


# ----------------------------------------------------------------------------------------
# Learning-rate schedule
# ----------------------------------------------------------------------------------------


def effective_warmup(optim: OptimConfig, steps: int) -> int:
    """Warmup steps actually used: capped at ``steps - 1`` so the decay always gets >= 1 step."""
    return max(0, min(optim.warmup_steps, steps - 1))


def learning_rate(optim: OptimConfig, steps: int, step, xp=None):
    """Learning rate used by the update of 1-based ``step`` (``xp``: numpy or jax.numpy).

    * warmup (all schedules): ``peak * step / W`` for ``step <= W``;
    * ``cosine``: ``final + (peak - final) * (1 + cos(pi * p)) / 2`` with
      ``p = (step - W) / (steps - W)``, so it is exactly ``final_lr_frac * peak`` at ``step == steps``;
    * ``wsd``: ``peak`` until the last ``decay_frac`` of the run, then linear to ``final``;
    * ``constant``: ``peak``.
    """
    import numpy as np

    xp = np if xp is None else xp
    peak = optim.peak_lr
    final = optim.final_lr_frac * peak
    W = effective_warmup(optim, steps)
    t = xp.asarray(step, dtype=xp.float32)
    warm = peak * t / max(W, 1)
    if optim.schedule == "cosine":
        p = xp.clip((t - W) / max(steps - W, 1), 0.0, 1.0)
        main = final + (peak - final) * 0.5 * (1.0 + xp.cos(math.pi * p))
    elif optim.schedule == "wsd":
        D = max(1, int(round(optim.decay_frac * steps)))
        p = xp.clip((t - (steps - D)) / D, 0.0, 1.0)
        main = peak + (final - peak) * p
    else:
        main = peak + 0.0 * t
    return xp.where(t <= W, warm, main)


# The optimizer's numbers travel into the compiled step as ONE traced float32 vector, never as
# constants: the compiled train step then depends only on shapes (model, batch, grad_accum, mesh),
# so every cell of a sweep with the same shape hits the same persistent-compilation-cache entry
# whatever its token budget, schedule, peak LR, betas, weight decay or clip norm.
HPARAMS = ("learning_rate", "b1", "b2", "eps", "weight_decay", "clip_norm")


def hyperparams(optim: OptimConfig, steps: int, step: int):
    """float32 vector (``HPARAMS`` order) fed to the compiled step for the update of 1-based ``step``.

    The learning rate is :func:`learning_rate` evaluated on the host; the rest are the cell's
    constants.  ``hp[0]`` is exactly the learning rate the update applies (and the one logged).
    """
    import numpy as np

    return np.array([learning_rate(optim, steps, step), optim.b1, optim.b2, optim.eps, optim.weight_decay,
                     optim.clip_norm], dtype=np.float32)


def make_optimizer(hp):
    """optax AdamW (decay on matrices only) after global-norm clipping, with hyperparameters ``hp``.

    ``hp`` maps the names in ``HPARAMS`` to scalars, or is a vector in that order; inside the
    jitted step they are traced values, so the transformation is rebuilt from them on every
    update (building it is free; it is pure Python).  This is ``optax.adamw`` itself, so the
    decoupled weight decay is multiplied by the learning rate exactly as optax does:
    ``update = -lr * (adam_direction + wd * param)``.  The state's structure and values at init
    do not depend on ``hp`` (Adam's moments and count; empty states for the rest), which is
    why :func:`init_opt_state` needs no hyperparameters.
    """
    import jax
    import optax

    if not isinstance(hp, dict):
        hp = {k: hp[i] for i, k in enumerate(HPARAMS)}
    return optax.chain(
        optax.clip_by_global_norm(hp["clip_norm"]),
        optax.adamw(hp["learning_rate"], b1=hp["b1"], b2=hp["b2"], eps=hp["eps"], weight_decay=hp["weight_decay"],
                    mask=lambda p: jax.tree.map(lambda x: x.ndim >= 2, p)),
    )


def init_opt_state(params):
    """The optimizer state for ``params`` (independent of every hyperparameter; see :func:`make_optimizer`)."""
    return make_optimizer(dict.fromkeys(HPARAMS, 0.0)).init(params)


# ----------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default))
    os.replace(tmp, path)


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
    except ImportError:  # pragma: no cover
        pass
    return str(o)


def _finite_or_none(x):
    return float(x) if x is not None and math.isfinite(float(x)) else None


def read_metrics(run_dir) -> list[dict]:
    """Rows of ``metrics.jsonl`` (a torn last line from a killed process is ignored)."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def _truncate_metrics(path: Path, max_step: int) -> list[dict]:
    rows = [r for r in read_metrics(path.parent) if r.get("step", 0) <= max_step]
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)
    return rows


_GIT_SHA: list = []


def git_sha() -> str | None:
    if not _GIT_SHA:
        try:
            out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                                 capture_output=True, text=True, timeout=10)
            _GIT_SHA.append(out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None)
        except (OSError, subprocess.SubprocessError):
            _GIT_SHA.append(None)
    return _GIT_SHA[0]


def _versions() -> dict:
    from importlib import metadata

    out = {}
    for k, dist in (("jax", "jax"), ("flax", "flax"), ("optax", "optax"), ("orbax", "orbax-checkpoint")):
        try:
            out[k] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[k] = None
    return out


def mfu_device_count() -> int:
    """Devices whose peaks add up: all devices, except on CPU where the (virtual) devices of one
    process share the same cores and the measured peak already covers the whole host."""
    import jax

    if jax.devices()[0].platform == "cpu":
        return jax.process_count()
    return jax.device_count()


def _setup_compile_cache() -> None:
    d = os.environ.get("SCALING_COMPILE_CACHE")
    if not d:
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", d)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


class _Timer:
    """Accumulates wall seconds per phase: ``with timer('data'): ...``."""

    def __init__(self):
        self.t = {k: 0.0 for k in ("startup", "compile", "data", "train", "eval", "checkpoint")}

    def __call__(self, key):
        timer = self

        class _Ctx:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                timer.t[key] += time.perf_counter() - self.t0

        return _Ctx()


# ----------------------------------------------------------------------------------------
# Model functions (pure; jitted by train())
# ----------------------------------------------------------------------------------------


def make_train_step(model, grad_accum: int):
    """``step(state, batch, hp) -> (state, {'loss', 'grad_norm'})`` with ``grad_accum`` scanned micro-batches.

    ``hp`` is the float32 vector of :func:`hyperparams` for this update (a traced argument, so
    one compiled step serves every schedule, budget and peak LR of the same shape).

    Each micro-batch contributes the gradient of its NLL *sum* divided by the token weight
    of the whole batch, so the accumulated gradient is the gradient of the full-batch mean.
    Micro-batch ``i`` takes rows ``i, i + A, i + 2A, ...`` so every data shard feeds every
    micro-batch.
    """
    import jax
    import jax.numpy as jnp
    import optax

    def step(state, batch, hp):
        params = state["params"]
        denom = jnp.maximum(jnp.sum(batch["decoder_loss_weights"].astype(jnp.float32)), 1.0)

        def micro(p, mb):
            s, _ = loss_sums(model, p, mb)
            return s / denom

        grad_fn = jax.value_and_grad(micro)
        if grad_accum == 1:
            loss, grads = grad_fn(params, batch)
        else:
            mbs = jax.tree.map(lambda x: jnp.swapaxes(x.reshape(x.shape[0] // grad_accum, grad_accum, *x.shape[1:]),
                                                      0, 1), batch)

            def body(carry, mb):
                g_acc, l_acc = carry
                l, g = grad_fn(params, mb)
                return (jax.tree.map(jnp.add, g_acc, g), l_acc + l), None

            zeros = jax.tree.map(jnp.zeros_like, params)
            (grads, loss), _ = jax.lax.scan(body, (zeros, jnp.zeros((), jnp.float32)), mbs)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = make_optimizer(hp).update(grads, state["opt_state"], params)
        new = dict(state, step=state["step"] + 1, params=optax.apply_updates(params, updates), opt_state=opt_state)
        return new, {"loss": loss, "grad_norm": grad_norm}

    return step


def make_eval_step(model):
    import jax.numpy as jnp

    def step(params, batch):
        s, w = loss_sums(model, params, batch)
        nbytes = jnp.sum(jnp.where(batch["decoder_loss_weights"] > 0, batch["decoder_target_bytes"], 0)
                         .astype(jnp.float32))
        return {"nll": s, "weight": w, "bytes": nbytes}

    return step


@dataclasses.dataclass(frozen=True)
class Programs:
    """The three lowered (not yet compiled) programs of a cell, plus the shardings they use.

    ``init(rng) -> state``, ``step(state, batch, hp) -> (state, metrics)`` and
    ``eval(params, batch) -> sums`` depend only on the model config, the batch sizes,
    ``grad_accum`` and the mesh: never on the token budget, the schedule or any optimizer
    number (those are the traced ``hp`` vector), nor on the seed (``rng`` is an argument).
    So two cells of a sweep that share a shape lower to the same text and the second one's
    ``.compile()`` is a persistent-compilation-cache hit (``SCALING_COMPILE_CACHE``).
    """

    model: Any
    abstract_state: Any
    state_sharding: Any
    batch_sharding: Any
    replicated: Any
    init: Any
    step: Any
    eval: Any


def make_init(model, seq_len: int):
    """``init(rng) -> state`` for ``model``: the train state ``{step, params, opt_state, rng}`` of one cell.

    The parameters keep flax's logical-axis boxes (``nn.Partitioned``) so that
    ``jax.eval_shape`` of this function tells :func:`scaling.sharding.logical_shardings` how
    every leaf is laid out; the compiled init program unboxes them (:func:`unboxed`).
    ``rng`` is the seed's key: the whole state is a pure function of it, which is what lets
    :mod:`scaling.stacked` build K members' states with one ``vmap`` over K keys and still get,
    for each member, exactly the state ``train`` would build for that cell alone.
    """
    import jax
    import jax.numpy as jnp

    def init_boxed(rng):
        init_rng, _ = jax.random.split(rng)
        z = jnp.zeros((1, seq_len), jnp.int32)
        params = model.init(init_rng, z, jnp.ones((1, seq_len), jnp.int32), z)["params"]
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": init_opt_state(params), "rng": rng}

    return init_boxed


def unboxed(fn):
    """``fn`` with flax's logical-axis boxes stripped from its output (what the compiled programs return)."""
    import flax.linen as nn

    return lambda *a: nn.meta.unbox(fn(*a))


def abstract_train_state(model, seq_len: int, mesh):
    """``(boxed abstract state, its shardings on mesh, unboxed abstract state carrying those shardings)``.

    Shapes only (``jax.eval_shape``): nothing is computed or allocated.  The last is the
    target :meth:`scaling.checkpoint.Checkpointer.restore` needs to place a restored state.
    """
    import flax.linen as nn
    import jax

    from scaling import sharding

    rng0 = jax.random.PRNGKey(0)  # only its shape matters: the seed's key is the init program's argument
    with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
        boxed = jax.eval_shape(make_init(model, seq_len), rng0)
        state_sh = sharding.logical_shardings(boxed, mesh)
    abstract_state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                  nn.meta.unbox(boxed), state_sh)
    return boxed, state_sh, abstract_state


def abstract_batch(shape: tuple, keys, sharding) -> dict:
    """Shape-only batch of ``keys`` of ``shape`` ``(rows, seq_len)`` (or with leading axes); int32 but the weights."""
    import jax
    import jax.numpy as jnp

    return {k: jax.ShapeDtypeStruct(shape, jnp.float32 if k == "decoder_loss_weights" else jnp.int32,
                                    sharding=sharding) for k in keys}


def lower_programs(cell: Cell, mesh) -> Programs:
    """Trace and lower ``cell``'s init, train and eval programs for ``mesh`` (no compile, no data)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from scaling import sharding
    from scaling.model import Decoder

    cfg = cell.model
    model = Decoder(cfg)
    L = cfg.seq_len
    init_state = unboxed(make_init(model, L))
    rng0 = jax.random.PRNGKey(0)
    _, state_sh, abstract_state = abstract_train_state(model, L, mesh)
    batch_sh = sharding.batch_sharding(mesh)
    rep = sharding.replicated(mesh)
    abstract_hp = jax.ShapeDtypeStruct((len(HPARAMS),), jnp.float32, sharding=rep)
    with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
        init = jax.jit(init_state, out_shardings=state_sh).lower(rng0)
        train_batch = abstract_batch((cell.batch_size, L), TRAIN_KEYS, batch_sh)
        step = jax.jit(make_train_step(model, cell.grad_accum), in_shardings=(state_sh, batch_sh, rep),
                       out_shardings=(state_sh, rep), donate_argnums=0).lower(abstract_state, train_batch, abstract_hp)
        eval_batch = abstract_batch((cell.eval_batch_size, L), EVAL_KEYS, batch_sh)
        ev = jax.jit(make_eval_step(model), in_shardings=(state_sh["params"], batch_sh), out_shardings=rep
                     ).lower(abstract_state["params"], eval_batch)
    return Programs(model=model, abstract_state=abstract_state, state_sharding=state_sh,
                    batch_sharding=batch_sh, replicated=rep, init=init, step=step, eval=ev)


_COMPILED: dict = {}  # program key -> (Programs, (init, step, eval) compiled); insertion order = LRU order
_COMPILED_MAX = 4


def program_key(cell: Cell, mesh) -> tuple:
    """Everything the compiled programs depend on (see :class:`Programs`): nothing else of the cell."""
    return (cell.model, cell.batch_size, cell.grad_accum, cell.eval_batch_size, mesh)


def compiled_programs(cell: Cell, mesh):
    """``(Programs, (init, step, eval))`` compiled for ``cell`` on ``mesh``, reused within the process.

    A worker that trains several cells of one shape (the local sweep backend) lowers and
    compiles them once; across processes the persistent cache does the same job.  The last
    ``_COMPILED_MAX`` shapes are kept.
    """
    def build():
        progs = lower_programs(cell, mesh)
        return progs, (compile_init(progs.init), progs.step.compile(), progs.eval.compile())

    return lru_get(_COMPILED, program_key(cell, mesh), build, _COMPILED_MAX)


def compile_init(lowered):
    """Compile a lowered ``init`` program: on CPU without LLVM optimisation.

    Init runs once per cell, so optimising its code is wasted work: on a 2-core CPU, backend
    optimisation level 0 halves its compile time (2.0 s -> 1.1 s for a quickstart shape),
    which is most of a tiny cell's non-training time.  The values it produces agree with the
    optimised program's to float rounding (1e-10 relative); accelerators compile as usual.
    """
    import jax

    if jax.default_backend() == "cpu":
        return lowered.compile(compiler_options={"xla_backend_optimization_level": 0})
    return lowered.compile()


def lru_get(cache: dict, key, build, max_size: int):
    """``cache[key]``, built by ``build()`` on a miss; the dict's insertion order is its LRU order."""
    hit = cache.pop(key, None)
    if hit is None:
        hit = build()
        while len(cache) >= max_size:
            cache.pop(next(iter(cache)))
    cache[key] = hit
    return hit


# ----------------------------------------------------------------------------------------
# train()
# ----------------------------------------------------------------------------------------


def _load_finished(run_dir: Path) -> dict | None:
    if (run_dir / "SUCCESS").exists() or (run_dir / "DIVERGED").exists():
        p = run_dir / "summary.json"
        if p.exists():
            return json.loads(p.read_text())
    return None


def check_entry(cell: Cell, run_dir: Path, stop_after_step: int | None = None) -> dict | None:
    """The checks every training call makes first; returns the stored summary of a finished run, else None.

    Validates the cell, refuses a run directory that already holds a *different* cell (a
    stale ``--out`` reused by mistake would otherwise silently resume someone else's
    checkpoint), and checks ``stop_after_step``.
    """
    cell.validate()
    done = _load_finished(run_dir)
    if done is not None:
        return done
    cfg_path = run_dir / "config.json"
    if cfg_path.exists():
        try:
            old = cell_from_json(cfg_path.read_text())
        except (ConfigError, KeyError, TypeError, json.JSONDecodeError):
            old = None
        if old is not None and old.config_hash != cell.config_hash:
            raise ConfigError(f"run_dir {run_dir} holds a different cell ({old.run_id}, not {cell.run_id}); "
                              f"use a fresh --out directory")
    if stop_after_step is not None and stop_after_step < 1:
        raise ConfigError(f"stop_after_step={stop_after_step}: must be >= 1")
    return None


def train(cell: Cell, run_dir, *, stop_after_step: int | None = None) -> dict:
    """Train ``cell`` into ``run_dir`` (resuming or returning a finished summary); return the summary.

    ``stop_after_step`` ends the call after that step with a checkpoint, as a preemption
    would (summary state ``"partial"``, nothing marked finished); calling again resumes.
    """
    t_entry = time.perf_counter()
    run_dir = Path(run_dir)
    done = check_entry(cell, run_dir, stop_after_step)
    if done is not None:
        return done

    _setup_compile_cache()
    from scaling import sharding

    sharding.initialize_distributed()
    return _Trainer(cell, run_dir, stop_after_step, t_entry).run()


class _Throughput:
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


class _Trainer:
    """One train() call: holds the compiled functions, the state and the bookkeeping.

    The run-directory bookkeeping is split into methods (``_prepare_dir``, ``_restore``,
    ``_resume``, ``_open_writers``, ``_after_step``, ``_checkpoint``, ``_close``, ``_finish``)
    because :mod:`scaling.stacked` drives the very same methods for each member of a stack from
    its own (vmapped) loop: a stacked member's run directory is written by this code, so it
    cannot drift from what ``train`` writes.  ``like`` is another trainer of a same-shape cell
    whose mesh, data sources and device peak are reused instead of opened/measured again.
    """

    def __init__(self, cell: Cell, run_dir: Path, stop_after_step, t_entry: float, like: "_Trainer | None" = None):
        import jax

        from scaling import accounting, sharding
        from scaling import data as sdata

        self.cell, self.run_dir, self.stop_after_step = cell, run_dir, stop_after_step
        self.timer = _Timer()
        self.t_entry = t_entry
        cfg = cell.model
        self.steps = cell.steps
        self.pi, self.pc = jax.process_index(), jax.process_count()
        self.lead = self.pi == 0
        self.ckpt = self.tb = self.mf = None

        # ---- validation (no compile, no data read yet) -------------------------------
        self.mesh = like.mesh if like else sharding.make_mesh(cell.mesh)
        sharding.check_divisibility(self.mesh, batch_size=cell.batch_size, grad_accum=cell.grad_accum,
                                    model_cfg=cfg, process_count=self.pc, eval_batch_size=cell.eval_batch_size)
        v = sdata.vocab_size(cell.data)
        if v > cfg.vocab_size:
            raise ConfigError(f"model.vocab_size={cfg.vocab_size}: task {cell.data.task!r} with vocab "
                              f"{cell.data.vocab!r} has {v} tokens; set vocab_size >= {v}")
        self.task_vocab = v

        # ---- data ------------------------------------------------------------------
        self.train_src = like.train_src if like else sdata.open_source(cell.data, "train", cfg.seq_len)
        self.val_src = like.val_src if like else sdata.open_source(cell.data, "validation", cfg.seq_len)
        self.info = self.train_src.info
        self.epochs_planned = sdata.check_budget(self.info, cell.tokens_trained, cell.data.repeat)

        # ---- accounting --------------------------------------------------------------
        self.acc = accounting
        self.flops_per_token = accounting.flops_per_token_all(cfg)
        self.peak, self.peak_source = (like.peak, like.peak_source) if like else accounting.peak_flops(jax.devices()[0])
        self.n_devices = jax.device_count()
        self.mfu_devices = mfu_device_count()

    # ------------------------------------------------------------------------------
    def _build(self):
        import jax

        progs, (self.init_fn, self.step_fn, self.eval_fn) = compiled_programs(self.cell, self.mesh)
        self.model, self.rng0 = progs.model, jax.random.PRNGKey(self.cell.seed)
        self.state_sh, self.abstract_state = progs.state_sharding, progs.abstract_state
        self.batch_sh, self.rep = progs.batch_sharding, progs.replicated

    def _global_batch(self, np_batch: dict, keys) -> dict:
        import jax

        return {k: jax.make_array_from_process_local_data(self.batch_sh, np_batch[k]) for k in keys}

    def _host_train_batch(self, step_index: int) -> dict:
        """This process's rows of train batch ``step_index`` as numpy arrays (a pure function of seed and step)."""
        return self.train_src.batch(step_index, self.cell.batch_size, seed=self.cell.seed,
                                    process_index=self.pi, process_count=self.pc)

    def _train_batch(self, step_index: int) -> dict:
        return self._global_batch(self._host_train_batch(step_index), TRAIN_KEYS)

    def _eval_batches(self) -> list:
        eB = self.cell.eval_batch_size
        return [self._global_batch(self.val_src.batch(i, eB, seed=EVAL_SEED, process_index=self.pi,
                                                      process_count=self.pc), EVAL_KEYS)
                for i in range(self.cell.eval_batches)]

    def _evaluate(self, params) -> tuple[float, float | None]:
        return self._eval_numbers([self.eval_fn(params, b) for b in self.eval_data])

    def _eval_numbers(self, outs) -> tuple[float, float | None]:
        """(mean eval loss in nats, bits per byte or None) from the eval program's per-batch sums."""
        nll = w = nbytes = 0.0
        for o in outs:
            nll += float(o["nll"]); w += float(o["weight"]); nbytes += float(o["bytes"])
        loss = nll / max(w, 1.0)
        bpb = nll / math.log(2) / nbytes if (self.info.has_bytes and nbytes > 0) else None
        return loss, bpb

    # ------------------------------------------------------------------------------
    def run(self) -> dict:
        import jax

        from scaling.checkpoint import install_sigterm_handler

        cell, timer = self.cell, self.timer
        self._prepare_dir()
        t0 = time.perf_counter()
        self._build()
        timer.t["compile"] += time.perf_counter() - t0
        self._open_checkpoints()

        # ---- init or restore -------------------------------------------------------
        state, start, meta = self._restore(self.abstract_state)
        if state is None:
            with timer("compile"):
                state = self.init_fn(self.rng0)
        self._resume(start, meta)
        with timer("data"):
            self.eval_data = self._eval_batches()
        self.param_counts = self.acc.count_params_tree(jax.device_get(state["params"]), cell.model)
        timer.t["startup"] = max(0.0, (time.perf_counter() - self.t_entry) - sum(timer.t.values()))
        self._open_writers(start)

        # ---- SIGTERM -> checkpoint and exit -----------------------------------------
        guard = install_sigterm_handler(None)  # the loop polls guard.requested and saves itself

        state_name = "done"
        tput = _Throughput(cell.tokens_per_step)
        end_step = self.end_step
        step = start
        try:
            while step < end_step:
                step += 1
                t_a = time.perf_counter()
                with timer("data"):
                    batch = self._train_batch(step - 1)
                    hp_np = hyperparams(cell.optim, self.steps, step)
                    hp = jax.make_array_from_process_local_data(self.rep, hp_np)
                with timer("train"):
                    state, out = self.step_fn(state, batch, hp)
                    loss = float(out["loss"])
                    grad_norm = float(out["grad_norm"])
                tput.add(time.perf_counter() - t_a)
                diverged, logged = self._after_step(step, float(hp_np[0]), loss, grad_norm,
                                                    lambda: self._evaluate(state["params"]), tput.window())
                if logged:
                    tput.reset_window()
                if diverged:
                    state_name = "diverged"
                    break
                stopping = guard.requested  # read once: a signal arriving later is seen after the next step
                self._checkpoint(step, lambda: state, stopping)
                if stopping:
                    state_name = "sigterm"
                    break
        finally:
            guard.uninstall()
            self._close()

        if state_name == "sigterm":
            raise SystemExit(128 + signal.SIGTERM)
        return self._finish(state_name, step, tput.overall())

    # ---- run-directory bookkeeping (also driven by scaling.stacked, once per member) ----
    @property
    def end_step(self) -> int:
        """The last step this call trains: the run's last, or ``stop_after_step``."""
        return self.steps if self.stop_after_step is None else min(self.steps, self.stop_after_step)

    def _prepare_dir(self) -> None:
        if self.lead:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not (self.run_dir / "config.json").exists():
                (self.run_dir / "config.json").write_text(cell_to_json(self.cell))

    def _open_checkpoints(self) -> None:
        from scaling.checkpoint import Checkpointer

        self.ckpt = Checkpointer(self.run_dir / "checkpoints", keep_last=self.cell.keep_last,
                                 keep_every=self.cell.keep_every)

    def _restore(self, abstract_state) -> tuple[Any, int, dict]:
        """``(state, its step, meta)`` from the newest good checkpoint, or ``(None, 0, {})`` without one."""
        import jax

        with self.timer("checkpoint"):
            latest = self.ckpt.latest_step()
            if latest is None:
                return None, 0, {}
            state, meta = self.ckpt.restore(latest, abstract_state)
            return state, int(jax.device_get(state["step"])), meta

    def _resume(self, start: int, meta: dict) -> None:
        """Drop metrics rows after ``start``; recover the running-min loss and the last logged values."""
        rows = _truncate_metrics(self.run_dir / "metrics.jsonl", start) if self.lead else []
        self.running_min = meta.get("running_min_loss", None) if meta else None
        if self.running_min is None:
            losses = [r["train_loss"] for r in rows if r.get("train_loss") is not None]
            self.running_min = min(losses) if losses else math.inf
        # a resumed run reports the last logged values until it logs new ones (e.g. when the final
        # checkpoint was written but the process died before SUCCESS: nothing is left to train)
        self.last = {"loss": rows[-1].get("train_loss") if rows else None, "eval_loss": None, "eval_bpb": None}
        for r in reversed(rows):
            if r.get("eval_loss") is not None:
                self.last["eval_loss"], self.last["eval_bpb"] = r["eval_loss"], r.get("eval_bpb")
                break

    def _open_writers(self, start: int) -> None:
        if not self.lead:
            return
        try:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=start + 1 if start else None)
        except ImportError:  # pragma: no cover - tensorboardX is a hard dependency
            self.tb = None
        self.mf = open(self.run_dir / "metrics.jsonl", "a")

    def _after_step(self, step: int, lr: float, loss: float, grad_norm: float, evaluate,
                    tokens_per_s) -> tuple[bool, bool]:
        """Bookkeeping of one finished update: divergence check, eval, metrics row; ``(diverged, logged)``.

        ``evaluate()`` returns ``(eval_loss, eval_bpb)`` of the updated parameters; it is only
        called on eval steps, never for a diverged state.  ``tokens_per_s`` is the throughput
        since the last row; the caller restarts that window when a row was logged.
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
        ev_loss = ev_bpb = None
        if do_eval:
            with self.timer("eval"):
                ev_loss, ev_bpb = evaluate()
            self.last["eval_loss"], self.last["eval_bpb"] = ev_loss, ev_bpb

        logged = diverged or do_eval or is_last or step % cell.log_every == 0 or step == self.end_step
        if logged and self.lead:
            row = self._row(step, lr, loss, grad_norm, ev_loss, ev_bpb, tokens_per_s)
            self.mf.write(json.dumps(row) + "\n")
            self.mf.flush()
            if self.tb is not None:
                for k, v in row.items():
                    if k != "step" and isinstance(v, (int, float)) and v is not None:
                        self.tb.add_scalar(k, v, step)
        return diverged, logged

    def _checkpoint(self, step: int, get_state, stopping: bool) -> None:
        """Save ``get_state()`` after ``step`` on the cadence, at the end of this call, or when ``stopping``
        (SIGTERM: then also wait until it is durable, because the process exits next)."""
        if stopping or step % self.cell.checkpoint_every == 0 or step == self.end_step:
            with self.timer("checkpoint"):
                self._save(step, get_state())
                if stopping:
                    self.ckpt.wait()

    def _close(self) -> None:
        """Close the metrics file, TensorBoard and the checkpointer (durable on return); idempotent."""
        if self.mf is not None:
            self.mf.close()
            self.mf = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.ckpt is not None:
            with self.timer("checkpoint"):
                self.ckpt.wait()
                self.ckpt.close()
            self.ckpt = None

    def _finish(self, state_name: str, step: int, tokens_per_s, extra: dict | None = None) -> dict:
        """The summary after ``step``; for a finished run also ``summary.json`` and, last, its marker."""
        if state_name == "done" and step < self.steps:
            state_name = "partial"
        summary = self._summary(state_name, step, self.last, tokens_per_s)
        summary.update(extra or {})
        if self.lead and state_name in ("done", "diverged"):
            _write_json_atomic(self.run_dir / "summary.json", summary)
            (self.run_dir / ("SUCCESS" if state_name == "done" else "DIVERGED")).write_text(
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + "\n")
        return summary

    def _save(self, step: int, state) -> None:
        meta = {"step": step, "data_position": step, "running_min_loss": _finite_or_none(self.running_min),
                "cell": to_dict(self.cell), "run_id": self.cell.run_id}
        self.ckpt.save(step, state, meta)

    def _row(self, step, lr, loss, grad_norm, ev_loss, ev_bpb, tps) -> dict:
        cell = self.cell
        tokens = step * cell.tokens_per_step
        row = {"step": step, "train_loss": _finite_or_none(loss),
               "lr": lr,  # the float32 learning rate the update applied
               "grad_norm": _finite_or_none(grad_norm), "tokens_seen": tokens,
               "epoch": tokens / self.info.num_tokens if self.info.num_tokens else None}
        if ev_loss is not None:
            row["eval_loss"] = ev_loss
            row["eval_bpb"] = ev_bpb
        for conv, f in self.flops_per_token.items():
            row[f"flops_{conv}"] = f * tokens
        row["tokens_per_s"] = tps
        row["mfu"] = (self.acc.mfu(tps, self.flops_per_token[cell.flops_convention], self.mfu_devices, self.peak)
                      if tps else None)
        return row

    def _summary(self, state_name: str, step: int, last: dict, tokens_per_s) -> dict:
        cell, cfg = self.cell, self.cell.model
        tokens = step * cell.tokens_per_step
        wall = time.perf_counter() - self.t_entry
        fpt = self.flops_per_token
        return {
            "run_id": cell.run_id, "state": state_name, "steps": step, "steps_planned": self.steps,
            "tokens_seen": tokens,
            "tokens_unique": min(tokens, self.info.num_tokens) if self.info.num_tokens else tokens,
            "epochs": tokens / self.info.num_tokens if self.info.num_tokens else None,
            "params": self.param_counts.as_dict(),
            "flops_per_token": dict(fpt),
            "flops_achieved": {k: v * tokens for k, v in fpt.items()},
            "budget": cell.budget, "flops_convention": cell.flops_convention,
            "final_eval_loss": last["eval_loss"], "final_eval_bpb": last["eval_bpb"],
            "final_train_loss": _finite_or_none(last["loss"]),
            "tokens_per_s": tokens_per_s,
            "mfu": (self.acc.mfu(tokens_per_s, fpt[cell.flops_convention], self.mfu_devices, self.peak)
                    if tokens_per_s else None),
            "peak_flops": self.peak, "peak_flops_source": self.peak_source, "n_devices": self.n_devices,
            "wall_s": wall, "compile_s": self.timer.t["compile"], "timing": dict(self.timer.t),
            "git_sha": git_sha(), "versions": _versions(),
            "task": self.info.name, "corpus_hash": self.info.corpus_hash, "vocab_hash": self.info.vocab_hash,
            "entropy_rate": self.info.entropy_rate,
            "schedule": cell.optim.schedule, "peak_lr": cell.optim.peak_lr,
            "warmup_steps": effective_warmup(cell.optim, self.steps),
            "batch_size": cell.batch_size, "seq_len": cfg.seq_len, "grad_accum": cell.grad_accum,
            "mesh": dict(self.mesh.shape), "model": dataclasses.asdict(cfg),
        }
