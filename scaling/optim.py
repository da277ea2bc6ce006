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


def make_optimizer(hp):
    """optax AdamW (decay on matrices only) after global-norm clipping, with hyperparameters ``hp``.

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
    return optax.chain(
        optax.clip_by_global_norm(hp["clip_norm"]),
        optax.adamw(hp["learning_rate"], b1=hp["b1"], b2=hp["b2"], eps=hp["eps"], weight_decay=hp["weight_decay"],
                    mask=lambda p: jax.tree.map(lambda x: x.ndim >= 2, p)),
    )


def init_opt_state(params):
    """The optimizer state for ``params`` (independent of every hyperparameter; see :func:`make_optimizer`)."""
    return make_optimizer(dict.fromkeys(HPARAMS, 0.0)).init(params)
