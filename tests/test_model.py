"""The decoder: logical axis names, packed-segment masking, causality, dtype policy, accounting names."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling import accounting
from scaling.config import ModelConfig
from scaling.model import Decoder

BASE = ModelConfig(vocab_size=97, seq_len=24, d_model=32, n_layers=2, n_heads=4, kv_size=8, ffw_size=48)
VARIANTS = {
    "rope-rms-gelu-tied": BASE,
    "learned-ln-swiglu-untied": dataclasses.replace(BASE, position="learned", norm="layernorm",
                                                    activation="swiglu", tied_embeddings=False),
    "rope-relu-attn-wider": dataclasses.replace(BASE, activation="relu", n_heads=2, kv_size=24),
}
AXES = {"vocab", "embed", "heads", "kv", "mlp", "layers", "position"}


def _init(cfg):
    m = Decoder(cfg)
    boxed = m.init(jax.random.PRNGKey(0), jnp.ones((1, cfg.seq_len), jnp.int32))["params"]
    return m, boxed, nn.meta.unbox(boxed)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_param_has_logical_axes_and_accounting_agrees(name):
    cfg = VARIANTS[name]
    _, boxed, params = _init(cfg)
    leaves = jax.tree_util.tree_leaves_with_path(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
    for path, leaf in leaves:
        assert isinstance(leaf, nn.Partitioned), jax.tree_util.keystr(path)
        assert len(leaf.names) == leaf.value.ndim and set(leaf.names) <= AXES
        assert leaf.value.dtype == jnp.float32
    flat = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)}
    assert ("['lm_head']['kernel']" in flat) == (not cfg.tied_embeddings)
    assert ("['pos_embed']['embedding']" in flat) == (cfg.position == "learned")
    assert not any("bias" in k and "norm" not in k for k in flat)  # no dense biases
    assert accounting.count_params_tree(params, cfg) == accounting.count_params(cfg)


def _segments():
    # row 0: segments 1 (len 9), 2 (len 10), padding (5); positions restart per segment
    seg = np.array([[1] * 9 + [2] * 10 + [0] * 5], np.int32)
    pos = np.array([list(range(9)) + list(range(10)) + [0] * 5], np.int32)
    tok = np.random.default_rng(0).integers(1, 97, size=(1, 24)).astype(np.int32)
    tok[seg == 0] = 0
    return tok, seg, pos


@pytest.mark.parametrize("name", list(VARIANTS))
def test_packed_segments_do_not_see_each_other(name):
    cfg = VARIANTS[name]
    m, _, params = _init(cfg)
    f = jax.jit(lambda t, s, p: m.apply({"params": params}, t, s, p))
    tok, seg, pos = _segments()
    base = np.asarray(f(tok, seg, pos))
    # 1) changing segment 1's tokens leaves segment 2's logits unchanged, and vice versa
    t2 = tok.copy(); t2[0, :9] = (t2[0, :9] % 96) + 1
    out = np.asarray(f(t2, seg, pos))
    np.testing.assert_array_equal(out[0, 9:19], base[0, 9:19])
    assert np.abs(out[0, :9] - base[0, :9]).max() > 1e-3
    t3 = tok.copy(); t3[0, 9:19] = (t3[0, 9:19] % 96) + 1
    np.testing.assert_array_equal(np.asarray(f(t3, seg, pos))[0, :9], base[0, :9])
    # 2) a packed segment gives the same logits as the same example alone at the row start
    alone_t = np.zeros_like(tok); alone_t[0, :10] = tok[0, 9:19]
    alone_s = np.zeros_like(seg); alone_s[0, :10] = 1
    alone_p = np.zeros_like(pos); alone_p[0, :10] = np.arange(10)
    np.testing.assert_allclose(np.asarray(f(alone_t, alone_s, alone_p))[0, :10], base[0, 9:19], atol=2e-5)


def test_causal():
    m, _, params = _init(BASE)
    tok = np.random.default_rng(1).integers(1, 97, size=(2, 24)).astype(np.int32)
    a = np.asarray(m.apply({"params": params}, tok))
    tok2 = tok.copy(); tok2[:, 15:] = 5
    b = np.asarray(m.apply({"params": params}, tok2))
    np.testing.assert_array_equal(a[:, :15], b[:, :15])
    assert np.abs(a[:, 15:] - b[:, 15:]).max() > 1e-3
    assert a.dtype == np.float32 and a.shape == (2, 24, 97)


def test_bf16_compute_keeps_f32_params_and_logits():
    cfg = dataclasses.replace(BASE, compute_dtype="bfloat16")
    m, _, params = _init(cfg)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    tok = np.random.default_rng(2).integers(1, 97, size=(2, 24)).astype(np.int32)
    lo = m.apply({"params": params}, tok)
    hi = Decoder(BASE).apply({"params": params}, tok)
    assert lo.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(lo), np.asarray(hi), atol=0.1)
    assert not np.array_equal(np.asarray(lo), np.asarray(hi))  # really computed in bf16
    # the dots are bf16 x bf16 -> f32 (f32 accumulation), not bf16 -> bf16
    hlo = jax.jit(lambda t: m.apply({"params": params}, t)).lower(tok).as_text()
    import re

    dots = [line for line in hlo.splitlines() if "dot_general" in line]
    assert len(dots) >= 8
    for line in dots:
        assert re.search(r"\(tensor<[0-9x]+xbf16>, tensor<[0-9x]+xbf16>\) -> tensor<[0-9x]+xf32>", line), line
