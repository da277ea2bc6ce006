"""The training and evaluation loss: token NLL sums over a packed batch.

One function, shared by the train step, the eval step and the stacked trainer, so that what
is optimised and what is reported can never drift apart.

Large vocabularies.  The plain loss materialises float32 logits ``[B, L, V]`` and keeps them
(and their gradient) alive through the backward pass: at V = 32k, L = 2048 that is 256 MiB
per sequence, more than the activations of a small model's blocks.  When the logits of one
device's share of the batch would exceed :data:`CHUNK_BYTES`, the loss instead takes the
final hidden states from the model and applies the readout one sequence chunk at a time
inside a ``lax.scan`` whose body is rematerialised (``jax.checkpoint``): only one chunk's
logits exist at a time, forward or backward, for one extra readout matmul in the backward
pass.  The value and gradient are the plain loss's (the same per-token logits; only the order
of the final sums differs), which tests/test_loss.py checks.
"""

from __future__ import annotations

import math

# Per-device bytes of float32 logits above which the loss is computed in sequence chunks of at
# most this size.  Below it the logits are small next to what an accelerator holds, and the
# plain path (one matmul, no recompute) is the faster one.
CHUNK_BYTES = 256 * 2**20


def loss_chunk_len(cfg, rows: int, seq_len: int, shards: int = 1) -> int:
    """Sequence positions per loss chunk for a batch of ``rows`` x ``seq_len`` split ``shards`` ways; 0: no chunking.

    The rule is a pure function of the shapes, so it is fixed when a program is traced and
    the same for every step.  ``shards`` is how many devices share the batch (the loss
    reads it from the mesh in context).  The chunk length is the largest divisor of
    ``seq_len`` whose per-device logits fit :data:`CHUNK_BYTES`.
    """
    per_pos = max(1, rows // max(1, shards)) * cfg.vocab_size * 4  # f32 bytes per sequence position
    if per_pos * seq_len <= CHUNK_BYTES:
        return 0
    fits = max(1, CHUNK_BYTES // per_pos)
    return max(c for c in range(1, min(fits, seq_len) + 1) if seq_len % c == 0)


def _batch_shards() -> int:
    """Devices the batch dimension is split over in the mesh in context (1 without one)."""
    import flax.linen as nn
    import jax

    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return 1
    from scaling import sharding

    axes = nn.logical_to_mesh_axes(("batch",), nn.get_logical_axis_rules() or sharding.RULES)[0]
    axes = (axes,) if isinstance(axes, str) else (axes or ())
    return math.prod(mesh.shape[a] for a in axes if a in mesh.shape)


def loss_sums(model, params, batch, *, chunk_len: int | None = None):
    """(sum of weighted token NLL in nats, sum of weights) over a batch.

    ``chunk_len``: sequence positions per readout chunk; ``None`` picks it by
    :func:`loss_chunk_len` (0 = plain, for tiny logits), ``0`` forces the plain path.
    """
    import jax.numpy as jnp

    tokens = batch["decoder_input_tokens"]
    B, L = tokens.shape
    if chunk_len is None:
        chunk_len = loss_chunk_len(model.cfg, B, L, _batch_shards())
    w = batch["decoder_loss_weights"].astype(jnp.float32)
    targets = batch["decoder_target_tokens"]
    args = (tokens, batch["decoder_segment_ids"], batch["decoder_positions"])
    if not chunk_len or chunk_len >= L:
        logits = model.apply({"params": params}, *args)
        return jnp.sum(_token_nll(logits, targets) * w), jnp.sum(w)
    if L % chunk_len:
        raise ValueError(f"loss chunk_len={chunk_len} does not divide the sequence length {L}")
    hidden = model.apply({"params": params}, *args, return_hidden=True)
    return _chunked_nll_sum(model.cfg, params, hidden, targets, w, chunk_len), jnp.sum(w)


def token_nll(model, params, batch):
    """``[B, L]`` weighted token NLL in nats (what :func:`loss_sums` sums), for per-sequence scores.

    The plain path for small logits; above :data:`CHUNK_BYTES` the readout runs one sequence
    chunk at a time (forward only: nothing is kept for a backward pass).
    """
    import jax
    import jax.numpy as jnp

    from scaling.model import readout

    tokens = batch["decoder_input_tokens"]
    B, L = tokens.shape
    chunk_len = loss_chunk_len(model.cfg, B, L, _batch_shards())
    w = batch["decoder_loss_weights"].astype(jnp.float32)
    targets = batch["decoder_target_tokens"]
    args = (tokens, batch["decoder_segment_ids"], batch["decoder_positions"])
    if not chunk_len or chunk_len >= L:
        return _token_nll(model.apply({"params": params}, *args), targets) * w
    hidden = model.apply({"params": params}, *args, return_hidden=True)
    n = L // chunk_len

    def chunks(x):  # [B, L, ...] -> [n, B, chunk_len, ...]
        return jnp.swapaxes(x.reshape(B, n, chunk_len, *x.shape[2:]), 0, 1)

    def body(_, xs):
        h, t, wt = xs
        return None, _token_nll(readout(model.cfg, params, h), t) * wt

    _, out = jax.lax.scan(body, None, (chunks(hidden), chunks(targets), chunks(w)))
    return jnp.swapaxes(out, 0, 1).reshape(B, L)


def _token_nll(logits, targets):
    import jax
    import jax.numpy as jnp

    lse = jax.nn.logsumexp(logits, axis=-1)
    tgt = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return lse - tgt


def _chunked_nll_sum(cfg, params, hidden, targets, w, chunk_len: int):
    """sum(w * nll) with the readout applied ``chunk_len`` positions at a time (scanned, rematerialised)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from scaling.model import readout

    B, L, d = hidden.shape
    n = L // chunk_len

    def chunks(x):  # [B, L, ...] -> [n, B, chunk_len, ...]
        return jnp.swapaxes(x.reshape(B, n, chunk_len, *x.shape[2:]), 0, 1)

    @jax.checkpoint  # the backward pass recomputes this chunk's logits instead of storing them
    def chunk_sum(h, t, wt):
        logits = nn.with_logical_constraint(readout(cfg, params, h), ("batch", "length", "act_vocab"))
        return jnp.sum(_token_nll(logits, t) * wt)

    def body(acc, xs):
        return acc + chunk_sum(*xs), None

    total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), (chunks(hidden), chunks(targets), chunks(w)))
    return total
