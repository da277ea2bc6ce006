"""A decoder-only transformer in Flax linen, configured by :class:`scaling.config.ModelConfig`.

The model is deliberately plain: token embedding -> ``n_layers`` pre-norm blocks (causal
self-attention, then an MLP, each added to a float32 residual stream) -> final norm ->
logits.  What makes it fit for scaling-law work is not cleverness but bookkeeping:

* **Every parameter carries logical axis names** (``vocab``, ``embed``, ``heads``, ``kv``,
  ``mlp``, ``position``) through :func:`flax.linen.with_logical_partitioning`.
  :mod:`scaling.sharding` maps those names onto mesh axes, so the same model code runs
  data-parallel, FSDP or tensor-parallel without change.
* **Parameter names are a contract** with :func:`scaling.accounting.count_params_tree`,
  which splits the tree into embedding / head / non-embedding bases by name:
  ``token_embed/embedding`` (input embedding, also the readout when tied),
  ``pos_embed/embedding`` (learned positions), ``lm_head/kernel`` (untied readout), and per
  block ``attn/{q,k,v,o}``, ``mlp/{wi | wi_0, wi_1, wo}`` and norm ``scale`` (+ ``bias``
  for LayerNorm).  Dense layers have no biases.
* **Packed sequences.**  Several examples share a row; ``segment_ids`` tell them apart and
  attention never crosses a segment boundary (nor looks ahead).  ``positions`` restart at
  0 in each segment and drive RoPE or the learned position table.  Token id 0 is padding
  (segment id 0); its loss weight is zero, so what it attends to is irrelevant.
* **Dtype policy.**  Parameters are always float32.  With ``compute_dtype='bfloat16'`` the
  matmul *inputs* are cast to bf16 while every dot accumulates and returns float32
  (``preferred_element_type``): on this CPU that is the only bf16 path that is faster
  than f32 (a bf16 -> bf16 dot is upcast and slower).  Norms, softmax, the residual
  stream and the logits stay float32.
* **Parametrization** (``standard`` | ``mup`` | ``completep``): the embedding and readout
  init std, the residual-projection init depth, the residual branch multiplier, the attention
  scale and the logit multiplier come from :mod:`scaling.parametrization` (its per-parameter
  Adam multipliers from :func:`scaling.optim.make_optimizer`); under ``standard`` they are the
  numbers this module always used.
* **Execution choices** (``scan_layers``, ``remat``, ``attention``; see
  :class:`scaling.config.ModelConfig`) change how the same function is computed, never its
  value.  The model runs a *resolved* config: one whose per-backend choices were made by
  :meth:`ModelConfig.resolve` for the backend it is lowered for (the platform of the mesh in
  context, else JAX's default backend).  Resolving belongs where a run records its config
  (the trainer, before it writes ``config.json``); the model repeats that idempotent step so
  that a direct ``Decoder(cfg).apply`` sees the same choices and the same refusals.
* **Two parameter layouts.**  Unrolled: one subtree ``layers_{i}`` per block.  Scanned
  (``scan_layers``): one subtree ``layers`` whose leaves carry a leading ``layers`` axis.
  Both initialise to the same values (the scanned init is the unrolled one, stacked), so a
  run's numbers do not depend on the layout; :func:`param_layout`, :func:`stack_layers`,
  :func:`unstack_layers` and :func:`convert_layout` detect and convert them (also inside
  optimizer states and abstract trees), e.g. for a checkpoint written in the other layout.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from scaling import parametrization as pz
from scaling.attention import attend
from scaling.config import ConfigError, ModelConfig

Array = Any


def _param(module: nn.Module, name: str, init_fn, axes: tuple, shape: tuple) -> Array:
    """A float32 parameter annotated with logical axis names."""
    return module.param(name, nn.with_logical_partitioning(init_fn, axes), shape, jnp.float32)


# Off only to measure what scanning cost before (benchmarks/gpu_plan.py); the values do not change.
RECOMPUTE_UNDER_SCAN = True


def _elementwise(fn, recompute: bool):
    """``fn``, or ``fn`` rematerialised in the backward pass when ``recompute`` (scanned layers).

    Why: in the unrolled layout XLA fuses an elementwise chain (RMSNorm, RoPE, tanh-GELU) into
    the backward kernels that consume it, so its f32 intermediates never occupy memory.  Inside
    ``nn.scan`` every value the backward pass needs must leave the forward loop body as a
    stacked ``[layers, ...]`` residual, which XLA cannot fuse across the loop boundary: tanh-GELU
    alone left five f32 ``[B, L, ffw]`` buffers per layer, and the scanned 124M train step took
    2.5x the memory of the unrolled one on XLA:GPU (docs/planning-gpu.md).  Recomputing these
    cheap chains from their input keeps only that input (a matmul output both layouts keep
    anyway); the values computed are unchanged.
    """
    if not (recompute and RECOMPUTE_UNDER_SCAN):
        return fn
    return jax.checkpoint(fn, prevent_cse=False, policy=jax.checkpoint_policies.nothing_saveable)


def _dot(spec: str, a: Array, b: Array, dtype) -> Array:
    """einsum with inputs cast to the compute dtype and a float32 result (f32 accumulation)."""
    return jnp.einsum(spec, a.astype(dtype), b.astype(dtype), preferred_element_type=jnp.float32)


class Norm(nn.Module):
    """RMSNorm (scale only) or LayerNorm (scale and bias); always computed in float32."""

    kind: str
    eps: float = 1e-6
    recompute: bool = False  # rematerialise in the backward pass (:func:`_elementwise`)

    @nn.compact
    def __call__(self, x: Array) -> Array:
        d = x.shape[-1]
        scale = _param(self, "scale", nn.initializers.ones, ("embed",), (d,))
        bias = _param(self, "bias", nn.initializers.zeros, ("embed",), (d,)) if self.kind != "rmsnorm" else None
        eps, kind = self.eps, self.kind

        def norm(x, scale, bias):
            x = x.astype(jnp.float32)
            if kind == "rmsnorm":
                return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps) * scale
            x = x - jnp.mean(x, axis=-1, keepdims=True)
            x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)
            return x * scale + bias

        return _elementwise(norm, self.recompute)(x, scale, bias)


def rope(x: Array, positions: Array, base: float = 10000.0) -> Array:
    """Rotary position embedding on [B, L, H, D] with per-token positions [B, L] (half-split form)."""
    d = x.shape[-1]
    half = d // 2
    freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    ang = positions.astype(jnp.float32)[:, :, None, None] * freq  # [B, L, 1, half]
    sin, cos = jnp.sin(ang), jnp.cos(ang)
    x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


class Attention(nn.Module):
    """Causal multi-head self-attention with separate q/k/v/o projections (no biases)."""

    cfg: ModelConfig
    dtype: Any

    @nn.compact
    def __call__(self, x: Array, segment_ids: Array, positions: Array) -> Array:
        cfg = self.cfg
        d, H, D = cfg.d_model, cfg.n_heads, cfg.kv_size
        in_init = nn.initializers.normal(d**-0.5)
        out_init = nn.initializers.normal((H * D) ** -0.5 / math.sqrt(2 * pz.init_depth(cfg)))
        wq = _param(self, "q", in_init, ("embed", "heads", "kv"), (d, H, D))
        wk = _param(self, "k", in_init, ("embed", "heads", "kv"), (d, H, D))
        wv = _param(self, "v", in_init, ("embed", "heads", "kv"), (d, H, D))
        wo = _param(self, "o", out_init, ("heads", "kv", "embed"), (H, D, d))
        q = _dot("bld,dhk->blhk", x, wq, self.dtype)
        k = _dot("bld,dhk->blhk", x, wk, self.dtype)
        v = _dot("bld,dhk->blhk", x, wv, self.dtype)
        dtype = self.dtype
        scale = pz.attention_scale(cfg)  # D**-0.5 under the standard parametrization

        def prepare(q, k, v, positions):  # RoPE, the attention scale and the kernel's input dtype
            if cfg.position == "rope":
                q, k = rope(q, positions), rope(k, positions)
            return (q * scale).astype(dtype), k.astype(dtype), v.astype(dtype)

        q, k, v = _elementwise(prepare, bool(cfg.scan_layers))(q, k, v, positions)
        kernel = lambda q, k, v, seg: attend(q, k, v, seg, cfg.attention)  # noqa: E731
        if cfg.scan_layers and cfg.attention in ("einsum", "dot_product") and RECOMPUTE_UNDER_SCAN:
            # XLA's attention under scan: keep the two matmul outputs (the scores), recompute the
            # mask and softmax chain from them (as _elementwise does for the other chains)
            kernel = jax.checkpoint(kernel, prevent_cse=False, policy=jax.checkpoint_policies.dots_saveable)
        o = kernel(q, k, v, segment_ids)
        return _dot("blhk,hkd->bld", o, wo, self.dtype)


class MLP(nn.Module):
    """Feed-forward block: gelu/relu (``wi``, ``wo``) or SwiGLU (``wi_0`` gate, ``wi_1``, ``wo``)."""

    cfg: ModelConfig
    dtype: Any

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.cfg
        d, f = cfg.d_model, cfg.ffw_size
        in_init = nn.initializers.normal(d**-0.5)
        out_init = nn.initializers.normal(f**-0.5 / math.sqrt(2 * pz.init_depth(cfg)))
        if cfg.activation == "swiglu":
            w0 = _param(self, "wi_0", in_init, ("embed", "mlp"), (d, f))
            w1 = _param(self, "wi_1", in_init, ("embed", "mlp"), (d, f))
            h = _elementwise(lambda a, b: jax.nn.silu(a) * b, bool(cfg.scan_layers))(
                _dot("bld,df->blf", x, w0, self.dtype), _dot("bld,df->blf", x, w1, self.dtype))
        else:
            wi = _param(self, "wi", in_init, ("embed", "mlp"), (d, f))
            h = _dot("bld,df->blf", x, wi, self.dtype)
            act = (lambda y: jax.nn.gelu(y, approximate=True)) if cfg.activation == "gelu" else jax.nn.relu
            h = _elementwise(act, bool(cfg.scan_layers))(h)
        wo = _param(self, "wo", out_init, ("mlp", "embed"), (f, d))
        return _dot("blf,fd->bld", h, wo, self.dtype)


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x)).

    ``scanned``: the ``nn.scan`` body form, ``(carry, None)`` out instead of ``x``.
    """

    cfg: ModelConfig
    dtype: Any
    scanned: bool = False

    @nn.compact
    def __call__(self, x: Array, segment_ids: Array, positions: Array):
        r = pz.residual_multiplier(self.cfg)  # 1 except under completep (1 / depth ratio)
        recompute = bool(self.cfg.scan_layers)  # see _elementwise
        h = Norm(self.cfg.norm, recompute=recompute, name="pre_attn_norm")(x)
        a = Attention(self.cfg, self.dtype, name="attn")(h, segment_ids, positions)
        x = x + (a if r == 1.0 else r * a)
        h = Norm(self.cfg.norm, recompute=recompute, name="pre_mlp_norm")(x)
        m = MLP(self.cfg, self.dtype, name="mlp")(h)
        x = x + (m if r == 1.0 else r * m)
        x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
        return (x, None) if self.scanned else x


# What each remat policy lets the backward pass keep (everything else is recomputed).
REMAT_POLICIES = {
    "dots": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,  # the projections' outputs
    "full": jax.checkpoint_policies.nothing_saveable,  # only the block's input
}


def _blocks(cfg: ModelConfig, dtype, x: Array, segment_ids: Array, positions: Array) -> Array:
    """The ``n_layers`` blocks in the config's layout and remat policy (called inside ``Decoder``)."""
    block = Block
    if cfg.remat != "none":
        # prevent_cse only matters unrolled: under scan XLA cannot CSE across iterations anyway,
        # and the barrier it inserts would slow the loop (flax/JAX guidance).
        block = nn.remat(Block, policy=REMAT_POLICIES[cfg.remat], prevent_cse=not cfg.scan_layers)
    if not cfg.scan_layers:
        for i in range(cfg.n_layers):
            x = block(cfg, dtype, name=f"layers_{i}")(x, segment_ids, positions)
        return x
    stack = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True},
                    in_axes=(nn.broadcast, nn.broadcast), length=cfg.n_layers,
                    metadata_params={nn.PARTITION_NAME: "layers"})
    x, _ = stack(cfg, dtype, scanned=True, name="layers")(x, segment_ids, positions)
    return x


class Embed(nn.Module):
    """A [rows, d_model] table; ``attend`` reuses it as the tied readout."""

    rows: int
    d_model: int
    axes: tuple
    std: float | None = None  # init std; None: d_model**-0.5 (the parametrization's, scaling.parametrization)

    def setup(self):
        std = self.d_model**-0.5 if self.std is None else self.std
        self.embedding = _param(self, "embedding", nn.initializers.normal(std), self.axes, (self.rows, self.d_model))

    def __call__(self, ids: Array) -> Array:
        return jnp.take(self.embedding, ids, axis=0)

    def attend(self, x: Array, dtype) -> Array:
        return readout_logits(x, self.embedding, True, dtype)


class Decoder(nn.Module):
    """Decoder-only LM: ``apply({'params': p}, tokens, segment_ids, positions)`` -> f32 logits [B, L, V].

    ``segment_ids`` default to one segment per row, ``positions`` to ``arange(L)``.
    ``return_hidden=True`` returns the final-norm hidden states [B, L, d_model] (float32)
    instead, for a loss that applies the readout itself (:func:`readout`).
    """

    cfg: ModelConfig

    @nn.compact
    def __call__(self, tokens: Array, segment_ids: Array | None = None, positions: Array | None = None,
                 return_hidden: bool = False) -> Array:
        cfg = resolved(self.cfg)
        dtype = compute_dtype(cfg)
        B, L = tokens.shape
        if segment_ids is None:
            segment_ids = jnp.ones((B, L), jnp.int32)
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(L, dtype=jnp.int32), (B, L))
        std = pz.embed_std(cfg)
        embed = Embed(cfg.vocab_size, cfg.d_model, ("vocab", "embed"), std, name="token_embed")
        x = embed(tokens)
        if cfg.position == "learned":
            x = x + Embed(cfg.seq_len, cfg.d_model, ("position", "embed"), std, name="pos_embed")(positions)
        x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
        x = _blocks(cfg, dtype, x, segment_ids, positions)
        x = Norm(cfg.norm, name="final_norm")(x)
        if return_hidden:
            return x
        if cfg.tied_embeddings:
            logits = embed.attend(x, dtype)
        else:
            logits = LMHead(cfg.vocab_size, dtype, std, name="lm_head")(x)
        return nn.with_logical_constraint(_output_multiplier(cfg, logits), ("batch", "length", "act_vocab"))

    def init(self, rngs, *args, method=None, **kwargs):
        """Flax ``init``; the scanned layout is initialised as the unrolled one, then stacked.

        So a seed gives the same parameters in both layouts (``nn.scan`` would otherwise
        split the RNG differently from per-layer module names).  Parameters do not depend on
        the input length, so the unrolled init runs on the first position only.
        """
        cfg = resolved(self.cfg)
        if method is not None or not cfg.scan_layers:
            return super().init(rngs, *args, method=method, **kwargs)
        flat = self.clone(cfg=dataclasses.replace(cfg, scan_layers=False, remat="none", attention="einsum"))
        args = tuple(a[:, :1] if hasattr(a, "shape") and a.ndim == 2 else a for a in args)
        variables = dict(super(Decoder, flat).init(rngs, *args, **kwargs))
        variables["params"] = stack_layers(variables["params"])
        return variables


def lowering_backend() -> str:
    """The platform the model is being traced for: the mesh in context's devices, else JAX's default backend.

    (An AOT compile for a TPU topology on a CPU host traces under a mesh of TPU devices.)
    """
    dev = getattr(jax.sharding.get_abstract_mesh(), "abstract_device", None)
    return dev.platform if dev is not None else jax.default_backend()


def resolved(cfg: ModelConfig) -> ModelConfig:
    """``cfg.resolve(lowering_backend())``: concrete execution choices, or a ConfigError if unavailable."""
    platform = lowering_backend()
    return cfg.resolve("gpu" if platform in ("cuda", "rocm") else platform)


def compute_dtype(cfg: ModelConfig):
    """The jnp dtype matmul inputs are cast to."""
    return jnp.bfloat16 if cfg.dtype == "bfloat16" else jnp.float32


def readout_logits(x: Array, w: Array, tied: bool, dtype) -> Array:
    """f32 logits of hidden states ``x`` [..., d] through the readout ``w`` ([V, d] tied, [d, V] untied)."""
    if tied:
        return _dot("bld,vd->blv", x, w, dtype)
    return _dot("bld,dv->blv", x, w, dtype)


def readout(cfg: ModelConfig, params, x: Array) -> Array:
    """The model's logits for final hidden states ``x`` (from ``return_hidden=True``), identical to its own readout."""
    dtype = compute_dtype(cfg)
    if cfg.tied_embeddings:
        return _output_multiplier(cfg, readout_logits(x, params["token_embed"]["embedding"], True, dtype))
    return _output_multiplier(cfg, readout_logits(x, params["lm_head"]["kernel"], False, dtype))


def _output_multiplier(cfg: ModelConfig, logits: Array) -> Array:
    """The logits times the parametrization's output multiplier (1 under standard: returned as they are)."""
    mult = pz.output_multiplier(cfg)
    return logits if mult == 1.0 else logits * mult


class LMHead(nn.Module):
    """Untied readout ``lm_head/kernel`` [d_model, vocab]."""

    vocab_size: int
    dtype: Any
    std: float | None = None  # init std; None: d_model**-0.5

    @nn.compact
    def __call__(self, x: Array) -> Array:
        d = x.shape[-1]
        std = d**-0.5 if self.std is None else self.std
        w = _param(self, "kernel", nn.initializers.normal(std), ("embed", "vocab"), (d, self.vocab_size))
        return readout_logits(x, w, False, self.dtype)


# ----------------------------------------------------------------------------------------
# Parameter layouts: unrolled ``layers_{i}`` subtrees vs one stacked ``layers`` subtree
# ----------------------------------------------------------------------------------------

LAYOUTS = ("unrolled", "scanned")
_LAYER_KEY = re.compile(r"layers_(\d+)")


def layout_of(cfg: ModelConfig) -> str:
    """The parameter layout a (resolved) config's model holds."""
    if cfg.scan_layers is None:
        raise ConfigError("model.scan_layers=None: resolve the config for its backend first (ModelConfig.resolve)")
    return "scanned" if cfg.scan_layers else "unrolled"


def _layer_keys(d) -> list:
    keys = [k for k in d if isinstance(k, str) and _LAYER_KEY.fullmatch(k)]
    return sorted(keys, key=lambda k: int(_LAYER_KEY.fullmatch(k).group(1)))


def _is_params(d) -> bool:
    return isinstance(d, dict) and "token_embed" in d


def param_layout(params) -> str:
    """``'scanned'`` or ``'unrolled'``: which layout a parameter tree (or a train state holding one) has."""
    found = set()

    def visit(node):
        if _is_params(node):
            found.add("scanned" if "layers" in node else "unrolled")
        elif isinstance(node, dict):
            for v in node.values():
                visit(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                visit(v)

    visit(params if not hasattr(params, "items") else dict(params))
    if len(found) != 1:
        raise ConfigError(f"param_layout: expected one decoder parameter tree (with 'token_embed'), found layouts "
                          f"{sorted(found) or 'none'}")
    return found.pop()


def _stack_leaves(*xs):
    x0 = xs[0]
    if isinstance(x0, nn.Partitioned):
        return x0.replace_boxed(_stack_leaves(*(x.value for x in xs))).replace(names=("layers",) + tuple(x0.names))
    if isinstance(x0, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct((len(xs),) + x0.shape, x0.dtype, sharding=_shift_sharding(x0.sharding, +1))
    return jnp.stack(xs)


def _unstack_leaf(x, i):
    if isinstance(x, nn.Partitioned):
        return x.replace_boxed(_unstack_leaf(x.value, i)).replace(names=tuple(x.names[1:]))
    if isinstance(x, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct(x.shape[1:], x.dtype, sharding=_shift_sharding(x.sharding, -1))
    return x[i]


def _shift_sharding(sh, delta: int):
    """A NamedSharding with a replicated leading axis added (+1) or dropped (-1); other shardings as they are."""
    if not isinstance(sh, jax.sharding.NamedSharding):
        return sh
    spec = tuple(sh.spec)
    spec = (None,) + spec if delta > 0 else spec[1:]
    return jax.sharding.NamedSharding(sh.mesh, jax.sharding.PartitionSpec(*spec))


def _is_leaf(x) -> bool:
    return isinstance(x, (nn.Partitioned, jax.ShapeDtypeStruct))


def stack_layers(params: dict) -> dict:
    """Unrolled parameters (``layers_0`` ... ``layers_{n-1}``) -> scanned (one ``layers`` subtree, leading axis n).

    Works on arrays, flax ``Partitioned`` boxes (the ``layers`` logical axis is prepended)
    and ``ShapeDtypeStruct`` (a replicated leading axis is added to a NamedSharding).
    """
    keys = _layer_keys(params)
    if not keys or "layers" in params:
        raise ConfigError("stack_layers: the tree is not in the unrolled layout (no layers_{i} subtrees)")
    out = {k: v for k, v in params.items() if k not in keys}
    out["layers"] = jax.tree.map(_stack_leaves, *(params[k] for k in keys), is_leaf=_is_leaf)
    return out


def unstack_layers(params: dict) -> dict:
    """Scanned parameters (one ``layers`` subtree) -> unrolled (``layers_{i}``); the inverse of :func:`stack_layers`."""
    if "layers" not in params:
        raise ConfigError("unstack_layers: the tree is not in the scanned layout (no 'layers' subtree)")
    stacked = params["layers"]
    lead = jax.tree.leaves(stacked, is_leaf=_is_leaf)[0]
    n = (lead.value if isinstance(lead, nn.Partitioned) else lead).shape[0]
    out = {k: v for k, v in params.items() if k != "layers"}
    for i in range(n):
        out[f"layers_{i}"] = jax.tree.map(lambda x, i=i: _unstack_leaf(x, i), stacked, is_leaf=_is_leaf)
    return out


def convert_layout(tree, to: str):
    """``tree`` with every decoder parameter tree inside it in layout ``to`` (``'scanned'``/``'unrolled'``).

    ``tree`` may be the parameters, or a whole train state: the optimizer's moment trees
    (optax namedtuples of parameter-shaped dicts) are converted too.  Trees already in ``to``
    are returned as they are, so the call is idempotent.
    """
    if to not in LAYOUTS:
        raise ConfigError(f"convert_layout: to={to!r}; choose one of {LAYOUTS}")

    def conv(node):
        if _is_params(node):
            have = "scanned" if "layers" in node else "unrolled"
            if have == to:
                return node
            return stack_layers(node) if to == "scanned" else unstack_layers(node)
        if isinstance(node, dict):
            return type(node)((k, conv(v)) for k, v in node.items())
        if isinstance(node, tuple) and hasattr(node, "_fields"):  # namedtuple (optax states)
            return type(node)(*(conv(v) for v in node))
        if isinstance(node, (list, tuple)):
            return type(node)(conv(v) for v in node)
        return node

    return conv(tree)
