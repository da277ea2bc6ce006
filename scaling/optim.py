"""Learning-rate schedule and AdamW: the optimiser numbers of one run, and how they enter the step.

The schedule's length is always the run's own step count (``Cell.steps``), so a cosine ends at
``final_lr_frac x peak`` on exactly the last update of the run's budget.  Every optimiser number
is computed on the host and fed to the compiled step as one traced float32 vector
(:func:`hyperparams`), never as a compile-time constant: the compiled program then depends only
on shapes, and every cell of a sweep with the same shape shares it whatever its budget,
schedule, peak LR, betas, weight decay or clip norm.
"""

from __future__ import annotations

import math

import numpy as np

from scaling.config import OptimConfig

# Order of the traced hyperparameter vector the compiled step receives.
HPARAMS = ("learning_rate", "b1", "b2", "eps", "weight_decay", "clip_norm")


def effective_warmup(optim: OptimConfig, steps: int) -> int:
    """Warmup steps actually used: capped at ``steps - 1`` so the decay always gets >= 1 step."""
    return max(0, min(optim.warmup_steps, steps - 1))


def decay_steps(optim: OptimConfig, steps: int) -> int:
    """Steps of a ``wsd`` run's final decay: ``round(decay_frac * steps)``, at least 1.

    The decay covers updates ``steps - D + 1 .. steps``; a WSD fork starts from its trunk's
    state after step ``steps - D`` (:func:`decay_start`), where the LR is still the peak.
    """
    return max(1, int(round(optim.decay_frac * steps)))


def decay_start(optim: OptimConfig, steps: int) -> int:
    """The last step of a ``wsd`` run at the stable LR (the step a fork branches off its trunk)."""
    return steps - decay_steps(optim, steps)


def learning_rate(optim: OptimConfig, steps: int, step):
    """Learning rate (float32 numpy) used by the update of 1-based ``step`` of a ``steps``-step run.

    * warmup (all schedules): ``peak * step / W`` for ``step <= W``;
    * ``cosine``: ``final + (peak - final) * (1 + cos(pi * p)) / 2`` with
      ``p = (step - W) / (steps - W)``, so it is exactly ``final_lr_frac * peak`` at ``step == steps``;
    * ``wsd``: ``peak`` until the last ``decay_frac`` of the run, then to ``final`` with
      ``q = 1 - p`` (``linear``), ``1 - sqrt(p)`` (``1-sqrt``) or ``(1 + cos(pi * p)) / 2``
      (``cosine``) as the remaining fraction of ``peak - final``, ``p`` going 0 -> 1 over the decay;
    * ``constant``: ``peak``.
    """
    peak = optim.peak_lr
    final = optim.final_lr_frac * peak
    W = effective_warmup(optim, steps)
    t = np.asarray(step, dtype=np.float32)
    warm = peak * t / max(W, 1)
    if optim.schedule == "cosine":
        p = np.clip((t - W) / max(steps - W, 1), 0.0, 1.0)
        main = final + (peak - final) * 0.5 * (1.0 + np.cos(math.pi * p))
    elif optim.schedule == "wsd":
        D = decay_steps(optim, steps)
        p = np.clip((t - (steps - D)) / D, 0.0, 1.0)
        if optim.decay_shape == "linear":
            main = peak + (final - peak) * p
        elif optim.decay_shape == "1-sqrt":
            main = final + (peak - final) * (1.0 - np.sqrt(p))
        else:
            main = final + (peak - final) * 0.5 * (1.0 + np.cos(math.pi * p))
    else:
        main = peak + 0.0 * t
    return np.where(t <= W, warm, main)


def hyperparams(optim: OptimConfig, steps: int, step: int) -> np.ndarray:
    """float32 vector (``HPARAMS`` order) fed to the compiled step for the update of 1-based ``step``.

    ``hp[0]`` is exactly the learning rate the update applies (and the one logged).
    """
    return np.array([learning_rate(optim, steps, step), optim.b1, optim.b2, optim.eps, optim.weight_decay,
                     optim.clip_norm], dtype=np.float32)


def make_optimizer(hp, cfg=None):
    """optax AdamW (decay on matrices only) after global-norm clipping, with hyperparameters ``hp``.

    ``cfg`` (the model's :class:`~scaling.config.ModelConfig`): under a ``mup`` or
    ``completep`` parametrization, every parameter's LR, weight decay and Adam epsilon are
    multiplied by its group's factors (:func:`scaling.parametrization.adam_multipliers`); the
    state keeps the structure of the standard optimizer (see :func:`_per_parameter`).
    ``hp`` maps the names in ``HPARAMS`` to scalars, or is a vector in that order; inside the
    jitted step they are traced values, so the transformation is rebuilt from them on every
    update (building it is pure Python, free).  This is ``optax.adamw`` itself, so the
    decoupled weight decay is multiplied by the learning rate exactly as optax does:
    ``update = -lr * (adam_direction + wd * param)``.  The state's structure and values at
    init do not depend on ``hp`` (Adam's moments and count; empty states for the rest), which
    is why :func:`init_opt_state` needs no hyperparameters.
    """
    import jax
    import optax

    if not isinstance(hp, dict):
        hp = {k: hp[i] for i, k in enumerate(HPARAMS)}
    clip = optax.clip_by_global_norm(hp["clip_norm"])
    adamw = optax.adamw(hp["learning_rate"], b1=hp["b1"], b2=hp["b2"], eps=hp["eps"], weight_decay=hp["weight_decay"],
                        mask=lambda p: jax.tree.map(lambda x: x.ndim >= 2, p))
    if cfg is None or cfg.parametrization == "standard":
        return optax.chain(clip, adamw)
    return _per_parameter(clip, adamw, cfg, hp)


def _per_parameter(clip, adamw, cfg, hp):
    """``chain(clip, adamw)`` with per-parameter (lr, weight decay, eps) multipliers ``(a, w, k)``.

    Same state as the chain (a tuple of the two states), so checkpoints and
    :func:`init_opt_state` do not depend on the parametrization.  Adam's direction
    ``m / (sqrt(v) + eps)`` is invariant to the gradient's scale except through eps, so
    dividing a parameter's clipped gradient by ``k`` is Adam with epsilon ``k * eps``; the
    update ``u = -lr (dir + wd p)`` then becomes ``a u - a lr wd (w - 1) p`` (decayed
    parameters only), i.e. AdamW with LR ``a lr`` and weight decay ``w wd``.
    """
    import jax
    import optax

    from scaling.parametrization import adam_multipliers, group_of

    def mults(params):
        def one(path, x):
            keys = tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
            return adam_multipliers(cfg, group_of(keys))
        return jax.tree_util.tree_map_with_path(one, params)

    def init(params):
        return optax.chain(clip, adamw).init(params)

    def update(grads, state, params):
        m = mults(params)
        is_m = lambda t: isinstance(t, tuple) and len(t) == 3 and all(isinstance(v, float) for v in t)  # noqa: E731
        g, s_clip = clip.update(grads, state[0], params)
        g = jax.tree.map(lambda mk, x: x if mk[2] == 1.0 else x / mk[2], m, g, is_leaf=is_m)
        u, s_adam = adamw.update(g, state[1], params)

        def scale(mk, x, p):
            a, w, _ = mk
            out = x if a == 1.0 else a * x
            if w != 1.0 and p.ndim >= 2:
                out = out - (a * (w - 1.0)) * hp["learning_rate"] * hp["weight_decay"] * p
            return out

        u = jax.tree.map(scale, m, u, params, is_leaf=is_m)
        return u, (s_clip, s_adam)

    return optax.GradientTransformation(init, update)


def init_opt_state(params):
    """The optimizer state for ``params`` (independent of every hyperparameter; see :func:`make_optimizer`)."""
    return make_optimizer(dict.fromkeys(HPARAMS, 0.0)).init(params)
