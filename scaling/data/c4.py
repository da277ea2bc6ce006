"""``c4_en``: TFDS ``c4/en`` at a pinned version (3.1.0: the oldest 3.x this TFDS 4.9.10 builds; 3.0.1 is gone), for cloud runs.

The dataset is never downloaded by this code: point ``DataConfig.options``
``tfds_data_dir`` (or ``$TFDS_DATA_DIR``) at a prepared copy (e.g. ``gs://...``).  The
vocabulary is a SentencePiece model given as ``DataConfig.vocab`` (a ``.model`` path) or
option ``vocab_path``; the T5 vocabulary ``gs://t5-data/vocabs/cc_all.32000/sentencepiece.model``
follows the same id convention (pad 0, eos 1, unk 2).

The fast path caches the first ``max_docs`` documents of each split (options
``max_train_docs``, default 1,000,000 ~ 0.5B tokens, ``max_validation_docs``, default
10,000).  Streaming all of C4 through seqio (``scaling.data.features.seqio_dataset``) is
available but has no O(1) resume.  Tests run on ``tfds.testing.mock_data``.

Bytes per token for an external model come from its pieces; T5's model has a dummy
prefix, so the first token of a document is counted one byte high (bpb slightly low,
by ~1 byte per document).
"""

from __future__ import annotations

import hashlib
import os

from scaling.config import ConfigError

TFDS_NAME = "c4/en:3.1.0"
DEFAULT_VOCAB = "gs://t5-data/vocabs/cc_all.32000/sentencepiece.model"
_OPTS = {"vocab_path", "tfds_data_dir", "max_train_docs", "max_validation_docs"}


def _opts(data) -> dict:
    o = dict(data.options)
    unknown = set(o) - _OPTS
    if unknown:
        raise ConfigError(f"data.options {sorted(unknown)}: unknown c4_en option; known: {sorted(_OPTS)}")
    return o


def vocab_path(data) -> str:
    o = _opts(data)
    if o.get("vocab_path"):
        return str(o["vocab_path"])
    v = data.vocab or ""
    if v.endswith(".model") or "/" in v:
        return v
    raise ConfigError(f"data.vocab={data.vocab!r}: c4_en needs a SentencePiece .model path, e.g. "
                      f"--vocab {DEFAULT_VOCAB}")


def iter_documents(split: str, tfds_data_dir: str | None, max_docs: int):
    import tensorflow as tf
    import tensorflow_datasets as tfds
    tf.config.set_visible_devices([], "GPU")
    b = tfds.builder(TFDS_NAME, data_dir=tfds_data_dir)
    ds = b.as_dataset(split=split, shuffle_files=False).take(max_docs)
    for ex in ds.as_numpy_iterator():
        yield ex["text"].decode("utf-8")


def open_c4(data, split: str, data_dir: str):
    from scaling.data import TaskInfo
    from scaling.data import vocab as V
    from scaling.data.text_tasks import build_or_load
    o = _opts(data)
    vocab = V.load_file_vocab(vocab_path(data))
    tdir = o.get("tfds_data_dir") or os.environ.get("TFDS_DATA_DIR")
    n = int(o.get(f"max_{split}_docs", 1_000_000 if split == "train" else 10_000))
    corpus_hash = hashlib.sha256(f"{TFDS_NAME}|{split}|{n}|{tdir}".encode()).hexdigest()
    tokens, meta = build_or_load(task="c4_en", split=split, data_dir=data_dir, corpus_hash=corpus_hash,
                                 vocab=vocab, vocab_tag="file-" + vocab.hash[:12],
                                 documents=lambda: iter_documents(split, tdir, n),
                                 extra_meta={"tfds": TFDS_NAME, "max_docs": n})
    info = TaskInfo(name="c4_en", split=split, vocab_size=vocab.size, num_tokens=int(meta["num_tokens"]),
                    corpus_hash=corpus_hash, vocab_hash=vocab.hash, entropy_rate=None, has_bytes=True,
                    num_docs=int(meta["num_docs"]), vocab=vocab.path)
    return info, tokens, vocab
