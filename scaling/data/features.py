"""Packed decoder-LM features, two ways: numpy windows (fast path) and seqio (reference).

The fast path cuts the cached token stream into rows of ``seq_len`` tokens.  A row may
hold the end of one document and the start of the next (documents end with EOS = 1), so
within a row:

* ``decoder_segment_ids`` start at 1 and increase by one after every EOS;
* ``decoder_positions`` restart at 0 at each segment start;
* ``decoder_input_tokens`` are the targets shifted right *within each segment*, with 0 at
  each segment start (a document continued from the previous row starts fresh);
* ``decoder_loss_weights`` are 1 on real tokens (every token here; 0 only on padding).

These are exactly the semantics of ``seqio.DecoderFeatureConverter(pack=True)`` applied to
documents chopped at row boundaries (``tests/test_data_seqio.py`` compares them), so the
model masks attention across segments with ``decoder_segment_ids``.

:func:`seqio_dataset` builds the reference seqio stream for a registered task.
"""

from __future__ import annotations

import numpy as np

EOS_ID = 1


def doc_start_mask(doc_ends: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """[B, L] bool: True where a document starts inside row ``[s, s + L)`` (column 0 always).

    ``doc_ends`` are the documents' exclusive end offsets (sorted), so document starts are the
    ends of their predecessors; each row costs two binary searches.
    """
    starts = np.asarray(starts, np.int64)
    B = starts.size
    mask = np.zeros((B, length), bool)
    mask[:, 0] = True
    lo = np.searchsorted(doc_ends, starts, side="right")
    hi = np.searchsorted(doc_ends, starts + length, side="left")
    n = np.maximum(hi - lo, 0)
    if n.sum():
        rows = np.repeat(np.arange(B), n)
        first = np.repeat(lo, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
        cols = np.asarray(doc_ends[first], np.int64) - starts[rows]
        mask[rows, cols] = True
    return mask


def window_features(rows: np.ndarray, bytes_per_id: np.ndarray | None, *, doc_eos: bool = True,
                    segment_starts: np.ndarray | None = None, target_bytes: np.ndarray | None = None) -> dict:
    """Features of a [B, L] array of target token rows (see module docstring).

    Segments start where ``segment_starts`` is True (the document index), else after each EOS
    when ``doc_eos``, else only at column 0.  Target bytes come from ``target_bytes`` (per-token
    counts), else the ``bytes_per_id`` table, else zeros.
    """
    t = rows.astype(np.int32, copy=False)
    B, L = t.shape
    idx = np.broadcast_to(np.arange(L, dtype=np.int32), (B, L))
    if segment_starts is not None or doc_eos:
        if segment_starts is not None:
            start = np.asarray(segment_starts, bool).copy()
        else:
            start = np.zeros((B, L), bool)
            start[:, 1:] = t[:, :-1] == EOS_ID
        start[:, 0] = True
        seg = np.cumsum(start, axis=1, dtype=np.int32)
        seg_start = np.maximum.accumulate(np.where(start, idx, 0), axis=1)
        pos = (idx - seg_start).astype(np.int32)
    else:
        start = np.zeros((B, L), bool)
        start[:, 0] = True
        seg = np.ones((B, L), np.int32)
        pos = idx.copy()
    inp = np.empty_like(t)
    inp[:, 0] = 0
    inp[:, 1:] = t[:, :-1]
    inp[start] = 0
    out = {
        "decoder_input_tokens": inp,
        "decoder_target_tokens": t,
        "decoder_segment_ids": seg,
        "decoder_positions": pos,
        "decoder_loss_weights": (t != 0).astype(np.float32),
    }
    if target_bytes is not None:
        out["decoder_target_bytes"] = np.asarray(target_bytes).astype(np.int32)
    elif bytes_per_id is not None:
        out["decoder_target_bytes"] = bytes_per_id[t]
    else:
        out["decoder_target_bytes"] = np.zeros((B, L), np.int32)
    return out


def seqio_dataset(task_name: str, split: str, seq_len: int, batch_size: int, *, seed: int = 0,
                  shuffle: bool = True, num_epochs=None, pack: bool = True):
    """The seqio stream for a registered task: tokenize -> EOS -> split -> pack -> batch.

    Returns a ``tf.data.Dataset`` of batches with the five decoder features.  This is the
    reference path (``benchmarks/data.py`` measures it); training uses the cached windows.
    """
    import seqio
    from scaling.data import tasks as _tasks  # registers tasks
    _tasks.ensure_prepared(task_name)
    task = seqio.get_mixture_or_task(task_name)
    ds = task.get_dataset(sequence_length={"targets": seq_len}, split=split, shuffle=shuffle,
                          seed=seed, num_epochs=num_epochs)
    ds = seqio.DecoderFeatureConverter(pack=pack)(ds, task_feature_lengths={"targets": seq_len})
    return ds.batch(batch_size, drop_remainder=True)
