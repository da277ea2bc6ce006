"""The loss: chunked large-vocabulary cross-entropy equals the plain one, and is what saves memory."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling import loss as loss_mod
from scaling.config import ModelConfig
from scaling.loss import CHUNK_BYTES, loss_chunk_len, loss_sums
from scaling.model import Decoder

CFG = ModelConfig(vocab_size=211, seq_len=32, d_model=32, n_layers=2, n_heads=2, kv_size=16, ffw_size=64,
                  compute_dtype="float32")


def _batch(cfg, B=4, seed=0):
    rng = np.random.default_rng(seed)
    L = cfg.seq_len
    toks = rng.integers(1, cfg.vocab_size, (B, L + 1)).astype(np.int32)
    seg = np.ones((B, L), np.int32)
    seg[:, L // 2:] = 2
    seg[0, -5:] = 0  # padding: zero weight
    pos = np.where(seg == 2, np.arange(L) - L // 2, np.arange(L)).astype(np.int32)
    w = (seg > 0).astype(np.float32)
    return {"decoder_input_tokens": jnp.asarray(toks[:, :-1]), "decoder_target_tokens": jnp.asarray(toks[:, 1:]),
            "decoder_segment_ids": jnp.asarray(seg), "decoder_positions": jnp.asarray(pos),
            "decoder_loss_weights": jnp.asarray(w)}


@pytest.mark.parametrize("tied,chunk", [(True, 1), (True, 8), (False, 16)])
def test_chunked_value_and_gradient_equal_plain(tied, chunk):
    cfg = dataclasses.replace(CFG, tied_embeddings=tied)
    model = Decoder(cfg)
    batch = _batch(cfg)
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), batch["decoder_input_tokens"])["params"])

    def f(p, c):
        s, w = loss_sums(model, p, batch, chunk_len=c)
        return s / w

    (plain, g_plain) = jax.jit(jax.value_and_grad(lambda p: f(p, 0)))(params)
    (chunked, g_chunk) = jax.jit(jax.value_and_grad(lambda p: f(p, chunk)))(params)
    np.testing.assert_allclose(chunked, plain, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g_chunk), jax.tree.leaves(g_plain)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert loss_sums(model, params, batch, chunk_len=chunk)[1] == float(jnp.sum(batch["decoder_loss_weights"]))


def test_chunk_rule():
    small = dataclasses.replace(CFG, vocab_size=259, seq_len=128)
    assert loss_chunk_len(small, 32, 128) == 0  # the quickstart's logits: plain path
    big = dataclasses.replace(CFG, vocab_size=32000, seq_len=2048)
    c = loss_chunk_len(big, 16, 2048)  # 4 GiB of logits on one device
    assert 0 < c < 2048 and 2048 % c == 0 and 16 * c * 32000 * 4 <= CHUNK_BYTES
    assert 2048 % (2 * c) or 16 * 2 * c * 32000 * 4 > CHUNK_BYTES  # the largest chunk that fits
    assert loss_chunk_len(big, 16, 2048, shards=8) == 1024  # 2 rows per device: 500 MiB -> two chunks
    assert loss_chunk_len(big, 16, 2048, shards=16) == 0  # 1 row per device: 250 MiB fits


def test_chunking_removes_full_logits_from_memory(monkeypatch):
    """Compiled gradient of the loss: temporaries shrink by about the [B, L, V] f32 logits and their gradient."""
    cfg = dataclasses.replace(CFG, vocab_size=8192, seq_len=256, d_model=32, n_layers=1)
    model = Decoder(cfg)
    batch = _batch(cfg, B=4)
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), batch["decoder_input_tokens"])["params"])
    logits_bytes = 4 * cfg.seq_len * cfg.vocab_size * 4  # 32 MiB

    def temp_bytes(chunk_len):
        fn = jax.jit(jax.grad(lambda p: loss_sums(model, p, batch, chunk_len=chunk_len)[0]))
        return fn.lower(params).compile().memory_analysis().temp_size_in_bytes

    plain, chunked = temp_bytes(0), temp_bytes(16)
    assert plain > 2 * logits_bytes  # the logits and their gradient are both alive
    assert chunked < plain / 4, (plain, chunked)

    # The automatic rule picks chunking for this batch once the threshold is below its logits.
    monkeypatch.setattr(loss_mod, "CHUNK_BYTES", logits_bytes // 8)
    assert loss_chunk_len(cfg, 4, cfg.seq_len) == cfg.seq_len // 8
