"""What a parametrization changes: init scales, multipliers and per-parameter Adam settings.

A parametrization says how a model's numbers scale with its shape relative to a **base
shape** (``ModelConfig.base_width``, ``base_depth``, ``base_kv_size``), so that hyperparameters
tuned at the base (peak LR above all) transfer to other shapes.  With ``m = d_model /
base_width`` (width ratio) and ``l = n_layers / base_depth`` (depth ratio):

=================================  ===============  ===========================  ====================================
quantity                           ``standard``     ``mup`` (Yang et al. 2022,   ``completep`` (Dey et al. 2025,
                                                    Adam)                        alpha = 1)
=================================  ===============  ===========================  ====================================
embedding / readout init std       ``d^-0.5``       ``base_width^-0.5``          ``base_width^-0.5``
hidden init std                    ``fan_in^-0.5``  ``fan_in^-0.5``              ``fan_in^-0.5``
residual output init extra factor  ``(2L)^-0.5``    ``(2L)^-0.5``                ``(2 base_depth)^-0.5``
residual branch multiplier         1                1                            ``1 / l``
attention logit scale              ``D^-0.5``       ``sqrt(D_base) / D``         ``sqrt(D_base) / D``
logit (output) multiplier          1                ``1 / m``                    ``1 / m``
Adam LR, hidden matrices           x1               x ``1 / m``                  x ``1 / m`` (``l^(alpha-1) = 1``)
Adam LR, embeddings/readout/norms  x1               x1                           x1
weight decay, hidden matrices      x1               x1                           x ``m`` (so ``lr * wd`` is width-free)
Adam epsilon, hidden (and norms)   x1               x ``1 / m``                  x ``1 / (m l)``
Adam epsilon, embeddings/readout   x1               x ``1 / m``                  x ``1 / m``
=================================  ===============  ===========================  ====================================

``D`` is the head size (``kv_size``) and ``D_base`` the base's (``base_kv_size``, default
``kv_size * base_width / d_model``: the base has this model's head count).  Hidden matrices are
the attention and MLP projections; "norms" the norm scales inside the blocks (the final norm
goes with the embeddings).  At the base shape (``m = l = 1``) every row is the standard one, so
a base model computes exactly what the standard model computes.

**Tied embeddings** follow the muP reading of a shared readout (the ``mup`` package's
``MuSharedReadout``; EleutherAI's nanoGPT-mup): the one matrix is treated as an embedding (init
and LR independent of width) and the logits carry the ``1 / m`` output multiplier, as an untied
readout's would.

The per-parameter Adam settings are applied by :func:`scaling.optim.make_optimizer` without
changing the optimizer state's structure: an epsilon multiplier ``k`` is the same as dividing
that parameter's (clipped) gradient by ``k`` before Adam (Adam's direction is scale-free but for
epsilon), and LR and weight-decay multipliers rescale its update.  This module imports no JAX.
"""

from __future__ import annotations

import math

from scaling.config import ModelConfig

# Parameter groups by name (the naming contract of scaling.model): the attention and MLP
# projections are "hidden"; norm parameters inside a block are "block_norm"; everything else
# (token/position embeddings, untied readout, final norm) is "vector" (width-independent LR).
HIDDEN_MODULES = ("attn", "mlp")


def width_mult(cfg: ModelConfig) -> float:
    """``m = d_model / base_width`` (1 under ``standard``)."""
    return 1.0 if cfg.parametrization == "standard" else cfg.d_model / cfg.base_width


def depth_mult(cfg: ModelConfig) -> float:
    """``l = n_layers / base_depth`` under ``completep``, else 1."""
    return cfg.n_layers / cfg.base_depth if cfg.parametrization == "completep" else 1.0


def embed_std(cfg: ModelConfig) -> float:
    """Init std of the token/position embeddings and of an untied readout."""
    return cfg.d_model ** -0.5 if cfg.parametrization == "standard" else cfg.base_width ** -0.5


def init_depth(cfg: ModelConfig) -> int:
    """The ``L`` in the residual output projections' extra ``(2 L)^-0.5`` init factor."""
    return cfg.base_depth if cfg.parametrization == "completep" else cfg.n_layers


def residual_multiplier(cfg: ModelConfig) -> float:
    """What each block's attention and MLP output is multiplied by before joining the residual stream."""
    return 1.0 / depth_mult(cfg)


def base_kv_size(cfg: ModelConfig) -> float:
    return float(cfg.base_kv_size) if cfg.base_kv_size is not None else cfg.kv_size * cfg.base_width / cfg.d_model


def attention_scale(cfg: ModelConfig) -> float:
    """The factor on the queries: ``D^-0.5`` (standard), ``sqrt(D_base) / D`` (muP's ``1/D``, equal at the base)."""
    D = cfg.kv_size
    if cfg.parametrization == "standard":
        return D ** -0.5
    return math.sqrt(base_kv_size(cfg)) / D


def output_multiplier(cfg: ModelConfig) -> float:
    """The factor on the logits: ``1 / m`` under mup and completep."""
    return 1.0 / width_mult(cfg)


def group_of(path: tuple[str, ...]) -> str:
    """``hidden``, ``block_norm`` or ``vector`` for a parameter's key path (e.g. ``('layers_0', 'attn', 'q')``)."""
    if any(k in HIDDEN_MODULES for k in path):
        return "hidden"
    if any(k == "layers" or k.startswith("layers_") for k in path):
        return "block_norm"
    return "vector"


def adam_multipliers(cfg: ModelConfig, group: str) -> tuple[float, float, float]:
    """``(lr, weight_decay, epsilon)`` multipliers of a parameter group (all 1 under ``standard``)."""
    p = cfg.parametrization
    if p == "standard":
        return 1.0, 1.0, 1.0
    m, l = width_mult(cfg), depth_mult(cfg)
    if p == "mup":
        return (1.0 / m, 1.0, 1.0 / m) if group == "hidden" else (1.0, 1.0, 1.0 / m)
    # completep, alpha = 1: no depth factor on any LR (l^(alpha-1) = 1)
    if group == "hidden":
        return 1.0 / m, m, 1.0 / (m * l)
    if group == "block_norm":
        return 1.0, 1.0, 1.0 / (m * l)
    return 1.0, 1.0, 1.0 / m
