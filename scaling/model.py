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
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from scaling.config import ModelConfig

Array = Any


def _param(module: nn.Module, name: str, init_fn, axes: tuple, shape: tuple) -> Array:
    """A float32 parameter annotated with logical axis names."""
    return module.param(name, nn.with_logical_partitioning(init_fn, axes), shape, jnp.float32)


def _dot(spec: str, a: Array, b: Array, dtype) -> Array:
    """einsum with inputs cast to the compute dtype and a float32 result (f32 accumulation)."""
    return jnp.einsum(spec, a.astype(dtype), b.astype(dtype), preferred_element_type=jnp.float32)


class Norm(nn.Module):
    """RMSNorm (scale only) or LayerNorm (scale and bias); always computed in float32."""

    kind: str
    eps: float = 1e-6

    @nn.compact
    def __call__(self, x: Array) -> Array:
        d = x.shape[-1]
        x = x.astype(jnp.float32)
        scale = _param(self, "scale", nn.initializers.ones, ("embed",), (d,))
        if self.kind == "rmsnorm":
            x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + self.eps)
            return x * scale
        mean = jnp.mean(x, axis=-1, keepdims=True)
        x = x - mean
        x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + self.eps)
        bias = _param(self, "bias", nn.initializers.zeros, ("embed",), (d,))
        return x * scale + bias


def rope(x: Array, positions: Array, base: float = 10000.0) -> Array:
    """Rotary position embedding on [B, L, H, D] with per-token positions [B, L] (half-split form)."""
    d = x.shape[-1]
    half = d // 2
    freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    ang = positions.astype(jnp.float32)[:, :, None, None] * freq  # [B, L, 1, half]
    sin, cos = jnp.sin(ang), jnp.cos(ang)
    x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def attention_mask(segment_ids: Array) -> Array:
    """[B, 1, L, L] boolean: query i may attend key j iff j <= i and both share a segment."""
    L = segment_ids.shape[1]
    causal = jnp.tril(jnp.ones((L, L), dtype=jnp.bool_))
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    return (causal[None] & same)[:, None]


class Attention(nn.Module):
    """Causal multi-head self-attention with separate q/k/v/o projections (no biases)."""

    cfg: ModelConfig
    dtype: Any

    @nn.compact
    def __call__(self, x: Array, mask: Array, positions: Array) -> Array:
        cfg = self.cfg
        d, H, D = cfg.d_model, cfg.n_heads, cfg.kv_size
        in_init = nn.initializers.normal(d**-0.5)
        out_init = nn.initializers.normal((H * D) ** -0.5 / math.sqrt(2 * cfg.n_layers))
        wq = _param(self, "q", in_init, ("embed", "heads", "kv"), (d, H, D))
        wk = _param(self, "k", in_init, ("embed", "heads", "kv"), (d, H, D))
        wv = _param(self, "v", in_init, ("embed", "heads", "kv"), (d, H, D))
        wo = _param(self, "o", out_init, ("heads", "kv", "embed"), (H, D, d))
        q = _dot("bld,dhk->blhk", x, wq, self.dtype)
        k = _dot("bld,dhk->blhk", x, wk, self.dtype)
        v = _dot("bld,dhk->blhk", x, wv, self.dtype)
        if cfg.position == "rope":
            q, k = rope(q, positions), rope(k, positions)
        q = q * (D**-0.5)
        s = _dot("bqhk,bshk->bhqs", q, k, self.dtype)  # float32 scores
        s = jnp.where(mask, s, jnp.finfo(jnp.float32).min)
        p = jax.nn.softmax(s, axis=-1)
        o = _dot("bhqs,bshk->bqhk", p, v, self.dtype)
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
        out_init = nn.initializers.normal(f**-0.5 / math.sqrt(2 * cfg.n_layers))
        if cfg.activation == "swiglu":
            w0 = _param(self, "wi_0", in_init, ("embed", "mlp"), (d, f))
            w1 = _param(self, "wi_1", in_init, ("embed", "mlp"), (d, f))
            h = jax.nn.silu(_dot("bld,df->blf", x, w0, self.dtype)) * _dot("bld,df->blf", x, w1, self.dtype)
        else:
            wi = _param(self, "wi", in_init, ("embed", "mlp"), (d, f))
            h = _dot("bld,df->blf", x, wi, self.dtype)
            h = jax.nn.gelu(h, approximate=True) if cfg.activation == "gelu" else jax.nn.relu(h)
        wo = _param(self, "wo", out_init, ("mlp", "embed"), (f, d))
        return _dot("blf,fd->bld", h, wo, self.dtype)


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    cfg: ModelConfig
    dtype: Any

    @nn.compact
    def __call__(self, x: Array, mask: Array, positions: Array) -> Array:
        h = Norm(self.cfg.norm, name="pre_attn_norm")(x)
        x = x + Attention(self.cfg, self.dtype, name="attn")(h, mask, positions)
        h = Norm(self.cfg.norm, name="pre_mlp_norm")(x)
        x = x + MLP(self.cfg, self.dtype, name="mlp")(h)
        return nn.with_logical_constraint(x, ("batch", "length", "act_embed"))


class Embed(nn.Module):
    """A [rows, d_model] table; ``attend`` reuses it as the tied readout."""

    rows: int
    d_model: int
    axes: tuple

    def setup(self):
        self.embedding = _param(self, "embedding", nn.initializers.normal(self.d_model**-0.5),
                                self.axes, (self.rows, self.d_model))

    def __call__(self, ids: Array) -> Array:
        return jnp.take(self.embedding, ids, axis=0)

    def attend(self, x: Array, dtype) -> Array:
        return _dot("bld,vd->blv", x, self.embedding, dtype)


class Decoder(nn.Module):
    """Decoder-only LM: ``apply({'params': p}, tokens, segment_ids, positions)`` -> f32 logits [B, L, V].

    ``segment_ids`` default to one segment per row, ``positions`` to ``arange(L)``.
    """

    cfg: ModelConfig

    @nn.compact
    def __call__(self, tokens: Array, segment_ids: Array | None = None, positions: Array | None = None) -> Array:
        cfg = self.cfg
        dtype = jnp.bfloat16 if cfg.compute_dtype == "bfloat16" else jnp.float32
        B, L = tokens.shape
        if segment_ids is None:
            segment_ids = jnp.ones((B, L), jnp.int32)
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(L, dtype=jnp.int32), (B, L))
        embed = Embed(cfg.vocab_size, cfg.d_model, ("vocab", "embed"), name="token_embed")
        x = embed(tokens)
        if cfg.position == "learned":
            x = x + Embed(cfg.seq_len, cfg.d_model, ("position", "embed"), name="pos_embed")(positions)
        x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
        mask = attention_mask(segment_ids)
        for i in range(cfg.n_layers):
            x = Block(cfg, dtype, name=f"layers_{i}")(x, mask, positions)
        x = Norm(cfg.norm, name="final_norm")(x)
        if cfg.tied_embeddings:
            logits = embed.attend(x, dtype)
        else:
            logits = LMHead(cfg.vocab_size, dtype, name="lm_head")(x)
        return nn.with_logical_constraint(logits, ("batch", "length", "act_vocab"))


class LMHead(nn.Module):
    """Untied readout ``lm_head/kernel`` [d_model, vocab]."""

    vocab_size: int
    dtype: Any

    @nn.compact
    def __call__(self, x: Array) -> Array:
        d = x.shape[-1]
        w = _param(self, "kernel", nn.initializers.normal(d**-0.5), ("embed", "vocab"), (d, self.vocab_size))
        return _dot("bld,dv->blv", x, w, self.dtype)
