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

Bytes per token are exact: T5's model normalises text and adds a dummy prefix, so its
pieces' lengths are not the text's bytes; the cache stores per-token byte counts taken from
SentencePiece's offsets into the original text instead (:mod:`scaling.data.vocab`).
"""

from __future__ import annotations

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
    from scaling.data.text_tasks import iter_tfds_documents
    return iter_tfds_documents(TFDS_NAME, split, tfds_data_dir, "text", max_docs)


def open_c4(data, split: str, data_dir: str, **kw):
    """C4 through the generic TFDS stream source, with this task's vocabulary and document caps."""
    import dataclasses

    from scaling.data import vocab as V
    from scaling.data.text_tasks import open_tfds
    o = _opts(data)
    vocab = V.load_file_vocab(vocab_path(data))
    rest = tuple((k, v) for k, v in data.options if k != "vocab_path")
    d = dataclasses.replace(data, options=rest)
    return open_tfds(d, split, data_dir, name=TFDS_NAME, task_label="c4_en", vocab=vocab,
                     defaults={"max_train_docs": 1_000_000, "max_validation_docs": 10_000,
                               **{k: o[k] for k in ("tfds_data_dir",) if k in o}}, **kw)
