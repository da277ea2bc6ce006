"""The compiled programs of a cell: init, train step and eval, lowered for a mesh and cached.

``lower_programs(cell, mesh)`` traces and lowers three pure functions:

* ``init(rng) -> state``: the train state ``{step, params, opt_state, rng}``;
* ``step(state, batch, hp) -> (state, {'loss', 'grad_norm'})``: one optimiser update
  (``grad_accum`` micro-batches scanned inside it);
* ``eval(params, batch) -> {'nll', 'weight', 'bytes', 'token_nll'}``: held-out sums, and the
  weighted per-token NLL ``[rows, seq_len]`` that scores downstream tasks (:mod:`scaling.evaltasks`)
  with the same compiled program.

They depend only on the model config, the batch sizes, ``grad_accum`` and the mesh
(:func:`program_key`): never on the token budget, the schedule or any optimiser number (the
traced ``hp`` vector of :func:`scaling.optim.hyperparams`), nor on the seed (``rng`` is an
argument).  So the cells of a sweep that share a shape lower to the same program text: a
process reuses the compiled programs (:func:`compiled_programs`), and a new process gets them
from JAX's persistent compilation cache (:func:`setup_compile_cache`).  Nothing here reads
data or touches a run directory; :func:`lower_programs` needs only abstract shapes, so it can
lower for a mesh of devices this host does not have (TPU topologies, for AOT planning).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from scaling.config import Cell, ConfigError
from scaling.loss import loss_sums, token_nll
from scaling.optim import HPARAMS, init_opt_state, make_optimizer

# The packed-batch features a train step reads, and what eval reads on top (the UTF-8 bytes
# behind each target token, for bits per byte).
TRAIN_KEYS = ("decoder_input_tokens", "decoder_target_tokens", "decoder_segment_ids",
              "decoder_positions", "decoder_loss_weights")
EVAL_KEYS = TRAIN_KEYS + ("decoder_target_bytes",)


def setup_compile_cache(directory: str | None) -> None:
    """Turn on JAX's persistent compilation cache in ``directory`` (None: leave it off).

    The minimum compile time and entry size are zero: a tiny cell's programs compile in about
    a second, which is exactly what a sweep of many such cells wants to stop paying.
    """
    if not directory:
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def make_train_step(model, grad_accum: int):
    """``step(state, batch, hp) -> (state, {'loss', 'grad_norm'})`` with ``grad_accum`` scanned micro-batches.

    ``hp`` is the float32 vector of :func:`scaling.optim.hyperparams` for this update (a traced argument, so
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
        updates, opt_state = make_optimizer(hp, model.cfg).update(grads, state["opt_state"], params)
        new = dict(state, step=state["step"] + 1, params=optax.apply_updates(params, updates), opt_state=opt_state)
        return new, {"loss": loss, "grad_norm": grad_norm}

    return step


def make_eval_step(model):
    """``eval(params, batch) -> {nll, weight, bytes, token_nll}``: sums over the batch (bytes only where loss
    weight > 0) and the weighted NLL of every token.

    One program serves the held-out loss and the downstream tasks (whose batches weight only the
    choices' tokens), so scoring tasks costs no compile of its own.
    """
    import jax.numpy as jnp

    def step(params, batch):
        tok = token_nll(model, params, batch)
        w = jnp.sum(batch["decoder_loss_weights"].astype(jnp.float32))
        nbytes = jnp.sum(jnp.where(batch["decoder_loss_weights"] > 0, batch["decoder_target_bytes"], 0)
                         .astype(jnp.float32))
        return {"nll": jnp.sum(tok), "weight": w, "bytes": nbytes, "token_nll": tok}

    return step


@dataclasses.dataclass(frozen=True)
class Programs:
    """The three lowered (not yet compiled) programs of a cell, plus the shardings they use.

    See the module docstring for their signatures and what they depend on.
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

    # The attention kernel holds no parameters, so init traces the reference one: a fused
    # kernel sharded over the batch (flash under shard_map) cannot take init's one-row dummy batch.
    init_model = model.clone(cfg=dataclasses.replace(model.cfg, attention="einsum"))

    def init_boxed(rng):
        init_rng, _ = jax.random.split(rng)
        z = jnp.zeros((1, seq_len), jnp.int32)
        params = init_model.init(init_rng, z, jnp.ones((1, seq_len), jnp.int32), z)["params"]
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


def backend_name() -> str:
    """This process's JAX backend in the names ModelConfig.resolve takes: 'cpu', 'gpu' or 'tpu'."""
    import jax  # noqa: F401  (imported: local_backend then asks JAX itself)

    from scaling.settings import local_backend

    return local_backend()


def for_this_backend(cell: Cell) -> Cell:
    """``cell`` with its model's execution choices (layer scan, attention kernel) made concrete for
    this process's backend; the run id does not change (they are not part of it).  A choice the
    backend cannot run (flash attention on CPU, cuDNN without a GPU) is a ConfigError here,
    before anything is written or compiled."""
    return dataclasses.replace(cell, model=cell.model.resolve(backend_name()))


def cudnn_fallback(cell: Cell, err: BaseException, *, run_dir=None) -> Cell:
    """The cell to retry when its cuDNN attention failed (compiling, or in its first step); re-raises ``err`` otherwise.

    cuDNN refuses some masks, shapes and dtypes only on a real GPU (a deviceless compile never
    builds its graph), so a cell planned with ``cudnn`` may fail there.  Attention is an
    execution choice (same values, same run id), so the run goes on with XLA's ``dot_product``
    kernel: one warning line on stderr, and ``config.json`` records the kernel actually used
    (rewritten when ``run_dir``, a :class:`scaling.rundir.RunDir`, already holds the cuDNN one).
    Anything else (another error, a non-cuDNN cell) is re-raised unchanged.
    """
    import sys

    if cell.model.attention != "cudnn" or "cudnn" not in f"{type(err).__name__} {err}".lower():
        raise err
    new = dataclasses.replace(cell, model=dataclasses.replace(cell.model, attention="dot_product"))
    why = " ".join(str(err).split())[:160]
    print(f"warning: cell {cell.run_id}: cuDNN attention failed on this GPU ({type(err).__name__}: {why}); "
          f"continuing with attention='dot_product' (same run id; recorded in config.json)",
          file=sys.stderr, flush=True)
    if run_dir is not None:
        from scaling.config import cell_to_json
        from scaling.rundir import CONFIG

        (run_dir.path / CONFIG).write_text(cell_to_json(new))
    return new


class ProgramCache:
    """The last ``max_size`` builds by key, least recently used dropped first.

    A worker that trains several cells of one shape (the local sweep backend) lowers and
    compiles them once per process; across processes the persistent cache does the same job.
    """

    def __init__(self, max_size: int):
        self.max_size = max_size
        self._entries: dict = {}  # insertion order = LRU order

    def get(self, key, build):
        """``cache[key]``, built by ``build()`` on a miss."""
        hit = self._entries.pop(key, None)
        if hit is None:
            hit = build()
            while len(self._entries) >= self.max_size:
                self._entries.pop(next(iter(self._entries)))
        self._entries[key] = hit
        return hit


_COMPILED = ProgramCache(4)


def program_key(cell: Cell, mesh) -> tuple:
    """Everything the compiled programs depend on (see the module docstring): nothing else of the cell."""
    return (cell.model, cell.batch_size, cell.grad_accum, cell.eval_batch_size, mesh)


def compiled_programs(cell: Cell, mesh):
    """``(Programs, (init, step, eval))`` compiled for ``cell`` on ``mesh``, reused within the process."""
    def build():
        import jax

        progs = lower_programs(cell, mesh)
        try:
            return progs, (compile_init(progs.init), progs.step.compile(), progs.eval.compile())
        except jax.errors.JaxRuntimeError as e:
            if "RESOURCE_EXHAUSTED" not in str(e):
                raise
            # the compiler refuses a program that cannot fit the device: say so before any step
            what = " ".join(str(e).split())[:300]
            raise ConfigError(f"cell {cell.run_id} does not fit this device ({what}); plan it for its target with "
                              f"`scaling plan EXP --target TYPE`, whose auto-fit picks remat, grad_accum and mesh") \
                from None

    return _COMPILED.get(program_key(cell, mesh), build)


def compile_init(lowered):
    """Compile a lowered ``init`` program: on CPU without LLVM optimisation.

    Init runs once per cell, so optimising its code is wasted work: on a small CPU, backend
    optimisation level 0 roughly halves its compile time, which is most of a tiny cell's
    non-training time.  The values it produces agree with the optimised program's to float
    rounding; accelerators compile as usual.
    """
    from scaling.settings import is_cpu

    if is_cpu():
        return lowered.compile(compiler_options={"xla_backend_optimization_level": 0})
    return lowered.compile()
