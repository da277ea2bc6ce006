"""Shared cold/warm logic for text tasks: vocabulary + token cache for one split."""

from __future__ import annotations

import os
import time

import numpy as np

from scaling.config import ConfigError


def build_or_load(*, task: str, split: str, data_dir: str, corpus_hash: str, vocab, vocab_tag: str,
                  documents, extra_meta: dict | None = None):
    """Load the (task, vocab, split, corpus) cache, or tokenize ``documents()`` into it."""
    from scaling.data import cache
    path = cache.cache_dir(data_dir, task, vocab_tag, split, corpus_hash, vocab.hash)
    got = cache.load(path)
    if got is not None:
        return got
    t0 = time.perf_counter()
    ids, ndocs, nbytes = [], 0, 0
    for text in documents():
        ids.append(vocab.encode(text))
        ndocs += 1
        nbytes += len(text.encode("utf-8"))
    if ndocs == 0:
        raise ConfigError(f"data.task={task!r}: split {split!r} holds no documents; "
                          f"check the corpus directory / dataset")
    arr = cache.pack_documents(ids)
    meta = {"task": task, "split": split, "corpus_hash": corpus_hash, "vocab_hash": vocab.hash,
            "vocab": vocab_tag, "num_docs": ndocs, "num_bytes": nbytes,
            "tokenize_s": round(time.perf_counter() - t0, 3), **(extra_meta or {})}
    return cache.write(path, arr, meta)


def open_pystdlib(data, split: str, data_dir: str):
    from scaling.data import TaskInfo, pystdlib
    from scaling.data import vocab as V
    opts = dict(data.options)
    unknown = set(opts) - {"root"}
    if unknown:
        raise ConfigError(f"data.options {sorted(unknown)}: unknown pystdlib option; known: ['root']")
    root = os.path.abspath(opts.get("root") or pystdlib.default_root())
    corpus_hash = pystdlib.manifest_hash(root, cache_dir=data_dir)

    def train_docs():
        return pystdlib.iter_documents(data_dir, root, corpus_hash, "train")

    vocab = V.get_vocab(data.vocab, data_dir=data_dir, task="pystdlib", corpus_hash=corpus_hash,
                        train_texts=train_docs)
    tokens, meta = build_or_load(
        task="pystdlib", split=split, data_dir=data_dir, corpus_hash=corpus_hash, vocab=vocab,
        vocab_tag=data.vocab if vocab.kind != "file" else "file-" + vocab.hash[:12],
        documents=lambda: pystdlib.iter_documents(data_dir, root, corpus_hash, split),
        extra_meta={"root": root})
    info = TaskInfo(name="pystdlib", split=split, vocab_size=vocab.size, num_tokens=int(meta["num_tokens"]),
                    corpus_hash=corpus_hash, vocab_hash=vocab.hash, entropy_rate=None, has_bytes=True,
                    num_docs=int(meta["num_docs"]), vocab=data.vocab)
    return info, tokens, vocab
