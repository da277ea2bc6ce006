"""Causal self-attention over packed rows, four implementations of one function.

``attend(q, k, v, segment_ids, implementation)`` takes ``q, k, v`` as ``[B, L, H, D]`` (``q``
already scaled by ``D ** -0.5``) and returns ``[B, L, H, D]``: query ``i`` attends key ``j`` iff
``j <= i`` and both carry the same segment id (several examples share a row; padding is its
own segment 0, so a padded query attends only padding and its loss weight is zero anyway).

=============  =========================================================  =============
name           what runs                                                  backends
=============  =========================================================  =============
einsum         explicit f32 scores, ``where`` mask, softmax, ``p @ v``    any (reference)
dot_product    ``jax.nn.dot_product_attention``, XLA implementation       any
cudnn          ``jax.nn.dot_product_attention``, cuDNN fused kernel        GPU, bf16
flash          Pallas TPU flash kernel, per shard under ``jax.shard_map``  TPU
=============  =========================================================  =============

Which ones a config may use on which backend is decided (and refused with a one-line
error) by :meth:`scaling.config.ModelConfig.resolve`, never here.  Every implementation
keeps the softmax in float32; matmul inputs are whatever dtype ``q, k, v`` arrive in.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Array = Any
IMPLEMENTATIONS = ("einsum", "dot_product", "cudnn", "flash")


def attention_mask(segment_ids: Array) -> Array:
    """[B, 1, L, L] boolean: query i may attend key j iff j <= i and both share a segment."""
    L = segment_ids.shape[1]
    causal = jnp.tril(jnp.ones((L, L), dtype=jnp.bool_))
    return causal[None, None] & same_segment(segment_ids)


def same_segment(segment_ids: Array) -> Array:
    """[B, 1, L, L] boolean: query i and key j share a segment (no causality)."""
    return (segment_ids[:, :, None] == segment_ids[:, None, :])[:, None]


def attend(q: Array, k: Array, v: Array, segment_ids: Array, implementation: str) -> Array:
    """Causal, segment-respecting attention; see the module docstring for the contract."""
    if implementation == "einsum":
        return _einsum(q, k, v, segment_ids)
    if implementation in ("dot_product", "cudnn"):
        # The causal part goes in ``is_causal`` (cuDNN then skips the blocks above the
        # diagonal); the boolean segment mask carries the packing.
        return jax.nn.dot_product_attention(q, k, v, mask=same_segment(segment_ids), scale=1.0, is_causal=True,
                                            implementation="xla" if implementation == "dot_product" else "cudnn")
    if implementation == "flash":
        return _flash_sharded(q, k, v, segment_ids)
    raise ValueError(f"attention implementation {implementation!r}: choose one of {IMPLEMENTATIONS}")


def _einsum(q, k, v, segment_ids):
    s = jnp.einsum("bqhk,bshk->bhqs", q, k, preferred_element_type=jnp.float32)  # float32 scores
    s = jnp.where(attention_mask(segment_ids), s, jnp.finfo(jnp.float32).min)
    p = jax.nn.softmax(s, axis=-1)
    return jnp.einsum("bhqs,bshk->bqhk", p.astype(v.dtype), v, preferred_element_type=jnp.float32)


def flash_block_sizes(seq_len: int):
    """Tiles for the flash kernel: the largest of 512/256/128 dividing ``seq_len`` (512 is MaxText's TPU choice)."""
    from jax.experimental.pallas.ops.tpu import flash_attention as fa

    b = next(s for s in (512, 256, 128) if seq_len % s == 0)
    return fa.BlockSizes(block_q=b, block_k_major=b, block_k=b, block_b=1,
                         block_q_major_dkv=b, block_k_major_dkv=b, block_k_dkv=b, block_q_dkv=b,
                         block_k_major_dq=b, block_k_dq=b, block_q_dq=b)


def flash(q: Array, k: Array, v: Array, segment_ids: Array) -> Array:
    """The Pallas TPU flash kernel on one shard ([B, L, H, D] in and out; the kernel wants [B, H, L, D])."""
    from jax.experimental.pallas.ops.tpu import flash_attention as fa

    qt, kt, vt = (jnp.swapaxes(t, 1, 2) for t in (q, k, v))
    seg = segment_ids.astype(jnp.int32)
    o = fa.flash_attention(qt, kt, vt, segment_ids=fa.SegmentIds(q=seg, kv=seg), causal=True, sm_scale=1.0,
                           block_sizes=flash_block_sizes(q.shape[1]))
    return jnp.swapaxes(o, 1, 2)


def _flash_sharded(q, k, v, segment_ids):
    """``flash`` per device: a Pallas kernel is not partitioned by GSPMD, so it runs under ``shard_map``.

    The specs come from the logical-axis rules in force (``batch`` over data/fsdp, ``heads``
    over tensor), the same ones the activations are constrained with, so entering and leaving
    the map moves no data.  Without a mesh (a plain ``apply``) the kernel runs on the whole array.
    """
    import flax.linen as nn

    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return flash(q, k, v, segment_ids)
    from scaling import sharding

    rules = nn.get_logical_axis_rules() or sharding.RULES
    qspec = nn.logical_to_mesh_axes(("batch", "length", "heads", "kv"), rules)
    sspec = nn.logical_to_mesh_axes(("batch", "length"), rules)
    return jax.shard_map(flash, mesh=mesh, in_specs=(qspec, qspec, qspec, sspec), out_specs=qspec,
                         check_vma=False)(q, k, v, segment_ids)
