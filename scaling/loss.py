"""The training and evaluation loss: token NLL sums over a packed batch.

One function, shared by the train step, the eval step and the stacked trainer, so that what
is optimised and what is reported can never drift apart.
"""

from __future__ import annotations


def loss_sums(model, params, batch):
    """(sum of weighted token NLL in nats, sum of weights) over a batch."""
    import jax
    import jax.numpy as jnp

    logits = model.apply({"params": params}, batch["decoder_input_tokens"], batch["decoder_segment_ids"],
                         batch["decoder_positions"])
    lse = jax.nn.logsumexp(logits, axis=-1)
    tgt = jnp.take_along_axis(logits, batch["decoder_target_tokens"][..., None], axis=-1)[..., 0]
    w = batch["decoder_loss_weights"].astype(jnp.float32)
    return jnp.sum((lse - tgt) * w), jnp.sum(w)
