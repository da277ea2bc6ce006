"""Every attention implementation against the einsum reference on random packed rows.

Packed rows hold several segments and trailing padding (segment 0).  Each implementation
must give the reference's output and input gradients, never look ahead (changing future
keys/values leaves earlier outputs unchanged) and never cross a segment boundary (changing
another segment leaves a segment's outputs unchanged).  The Pallas TPU flash kernel runs
here in Pallas's TPU interpret mode (the same kernel code, executed on the CPU); cuDNN
needs a GPU and runs only where there is one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling.attention import attend


def _has_gpu() -> bool:
    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


IMPLS = ["dot_product", "flash",
         pytest.param("cudnn", marks=pytest.mark.skipif(not _has_gpu(), reason="cuDNN attention needs a GPU"))]


def _packed(B=2, L=128, H=2, D=32, seed=0):
    """q, k, v [B, L, H, D] (q pre-scaled) and segment ids: rows of 3 / 2 segments then padding."""
    rng = np.random.default_rng(seed)
    q, k, v = (jnp.asarray(rng.standard_normal((B, L, H, D)), jnp.float32) for _ in range(3))
    seg = np.zeros((B, L), np.int32)
    seg[0, :40], seg[0, 40:90], seg[0, 90:120] = 1, 2, 3  # 8 padding positions at the end
    seg[1, :77], seg[1, 77:] = 1, 2
    return q * D**-0.5, k, v, jnp.asarray(seg)


def _run(impl, q, k, v, seg):
    if impl == "cudnn":  # the cuDNN kernel takes bf16 inputs
        q, k, v = (t.astype(jnp.bfloat16) for t in (q, k, v))
    return attend(q, k, v, seg, impl).astype(jnp.float32)


@pytest.fixture(autouse=True)
def _tpu_kernels_interpreted(request):
    """Pallas TPU kernels (flash) run in interpret mode for the whole test, backward pass included."""
    from jax.experimental.pallas import tpu as pltpu

    if "flash" in request.node.name:
        with pltpu.force_tpu_interpret_mode():
            yield
    else:
        yield


def _tol(impl):
    return dict(rtol=3e-2, atol=3e-2) if impl == "cudnn" else dict(rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_matches_einsum_reference_value_and_gradient(impl):
    q, k, v, seg = _packed()
    cast = (lambda t: t.astype(jnp.bfloat16).astype(jnp.float32)) if impl == "cudnn" else (lambda t: t)
    ref = attend(cast(q), cast(k), cast(v), seg, "einsum")
    np.testing.assert_allclose(_run(impl, q, k, v, seg), ref, **_tol(impl))

    # gradients through q, k and v of a fixed random projection of the output
    proj = jnp.asarray(np.random.default_rng(1).standard_normal(q.shape), jnp.float32)

    def loss(impl_, q, k, v):
        return jnp.sum(_run(impl_, q, k, v, seg) * proj)

    g = jax.jit(jax.grad(lambda *a: loss(impl, *a), argnums=(0, 1, 2)))(q, k, v)
    g_ref = jax.jit(jax.grad(lambda *a: loss("einsum", *(cast(t) for t in a)), argnums=(0, 1, 2)))(q, k, v)
    for a, b in zip(g, g_ref):
        np.testing.assert_allclose(a, b, **_tol(impl))


@pytest.mark.parametrize("impl", ["einsum"] + IMPLS)
def test_causal_and_segment_isolated(impl):
    q, k, v, seg = _packed()
    base = _run(impl, q, k, v, seg)
    # causality: rewrite keys/values from position 60 on; outputs before 60 must not move
    k2 = k.at[:, 60:].set(k[:, 60:] * -3.0 + 1.0)
    v2 = v.at[:, 60:].set(v[:, 60:] * 5.0 - 2.0)
    moved = _run(impl, q, k2, v2, seg)
    np.testing.assert_array_equal(np.asarray(moved[:, :60]), np.asarray(base[:, :60]))
    assert not np.allclose(moved[:, 60:], base[:, 60:])
    # segments: rewrite row 0's segment 1 (positions 0..39); segments 2 and 3 must not move
    k3 = k.at[0, :40].set(-k[0, :40])
    v3 = v.at[0, :40].set(v[0, :40] * 7.0)
    other = _run(impl, q, k3, v3, seg)
    np.testing.assert_array_equal(np.asarray(other[0, 40:120]), np.asarray(base[0, 40:120]))
    np.testing.assert_array_equal(np.asarray(other[1]), np.asarray(base[1]))
    assert not np.allclose(other[0, :40], base[0, :40])


def test_unknown_implementation_is_refused():
    q, k, v, seg = _packed(L=8)
    with pytest.raises(ValueError, match="choose one of"):
        attend(q, k, v, seg, "magic")
