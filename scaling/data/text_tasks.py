"""Stream sources: tasks whose documents come from one iterator (pystdlib, ``tfds:NAME``, c4_en).

Each split is tokenized once into the token store (:mod:`.store`), keyed by the task's
corpus key and the vocabulary hash.  ``pystdlib`` keeps its documents in TFDS order and its
cache key (the manifest hash), so its token stream, and every batch, is the one earlier
versions built.

``tfds:NAME[/CONFIG][:VERSION]`` reads a dataset already prepared in ``tfds_data_dir`` (option)
or ``$TFDS_DATA_DIR``/the TFDS default; it is never downloaded.  Options: ``text_field``
(default ``text``), ``train_split`` / ``validation_split`` (TFDS split names or slices,
default ``train`` / ``validation``), ``max_train_docs`` / ``max_validation_docs``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

from scaling.config import ConfigError
from scaling.data import build as B
from scaling.data import store

TFDS_OPTIONS = ("text_field", "train_split", "validation_split", "tfds_data_dir", "max_train_docs",
                "max_validation_docs")


def build_or_load(*, task: str, split: str, data_dir: str, corpus_hash: str, vocab, vocab_tag: str,
                  documents, extra_meta: dict | None = None, workers: int = 1, force: bool = False,
                  progress: bool | None = None, key: str | None = None):
    """The split cache of a stream task, tokenizing ``documents()`` (an iterator of str) on a miss."""
    path = store.split_dir(data_dir, task, vocab_tag, split, key or corpus_hash, vocab.hash)
    got = None if force else store.load(path)
    if got is not None:
        return got
    with store.build_lock(path):
        got = None if force else store.load(path, quiet=True)
        if got is not None:
            return got
        t0 = time.perf_counter()
        writer = store.SplitWriter(path, store.token_dtype(vocab.size), with_bytes=not vocab.exact_table)
        bar = B.Progress(f"prepare {task}/{split} ({vocab_tag})", enabled=progress if progress is not None else True)
        try:
            stats = B.tokenize_stream(documents(), vocab, writer, workers=workers, progress=bar)
        except BaseException:
            writer.abort()
            raise
        bar.done()
        if stats["num_docs"] == 0:
            writer.abort()
            raise ConfigError(f"data.task={task!r}: split {split!r} holds no documents; "
                              f"check the corpus directory / dataset")
        meta = {"task": task, "split": split, "corpus_hash": corpus_hash, "vocab_hash": vocab.hash,
                "vocab": vocab_tag, "num_bytes": stats["num_bytes"],
                "prepare_s": round(time.perf_counter() - t0, 3), **(extra_meta or {})}
        return writer.commit(meta)


def _vocab_tag(spec: str, vocab) -> str:
    return spec if vocab.kind not in ("file", "hf-file") else f"{vocab.kind}-{vocab.hash[:12]}"


def open_pystdlib(data, split: str, data_dir: str, **kw):
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
    got = build_or_load(
        task="pystdlib", split=split, data_dir=data_dir, corpus_hash=corpus_hash, vocab=vocab,
        vocab_tag=data.vocab if vocab.kind not in ("file", "hf-file") else "file-" + vocab.hash[:12],
        documents=lambda: pystdlib.iter_documents(data_dir, root, corpus_hash, split),
        extra_meta={"root": root}, progress=kw.get("progress", False), force=kw.get("force", False))
    m = got.meta
    info = TaskInfo(name="pystdlib", split=split, vocab_size=vocab.size, num_tokens=int(m["num_tokens"]),
                    corpus_hash=corpus_hash, vocab_hash=vocab.hash, entropy_rate=None, has_bytes=True,
                    num_docs=int(m["num_docs"]), vocab=data.vocab, num_bytes=int(m["num_bytes"]))
    return info, got, vocab


# ---------------------------------------------------------------------------------------- TFDS
def parse_tfds_name(task: str) -> str:
    name = task.split(":", 1)[1] if task.startswith("tfds:") else task
    if not name or name.startswith("/"):
        raise ConfigError(f"data.task={task!r}: write tfds:NAME[/CONFIG][:VERSION], e.g. tfds:lm1b or "
                          f"tfds:c4/en:3.1.0")
    return name


def tfds_options(data, known=TFDS_OPTIONS) -> dict:
    o = dict(data.options)
    unknown = sorted(set(o) - set(known))
    if unknown:
        raise ConfigError(f"data.options {unknown}: unknown option for {data.task}; known: {list(known)}")
    return o


def _tfds_builder(name: str, tdir: str | None):
    import tensorflow_datasets as tfds
    try:
        return tfds.builder(name, data_dir=tdir)
    except Exception as e:  # noqa: BLE001 - DatasetNotFoundError, bad version, bad config
        raise ConfigError(f"data.task=tfds:{name}: {type(e).__name__}: {str(e).splitlines()[0][:160]}; "
                          f"check the name (tfds.list_builders()), config and version") from None


def iter_tfds_documents(name: str, split: str, tdir: str | None, field: str, max_docs: int | None):
    """Texts of a prepared TFDS split, in file order; never downloads."""
    import tensorflow as tf
    tf.config.set_visible_devices([], "GPU")
    b = _tfds_builder(name, tdir)
    try:
        ds = b.as_dataset(split=split, shuffle_files=False)
    except Exception as e:  # noqa: BLE001 - AssertionError "call download_and_prepare", bad split
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise ConfigError(f"data.task=tfds:{name}: cannot read split {split!r} from "
                          f"{tdir or os.environ.get('TFDS_DATA_DIR') or 'the TFDS data dir'} ({first}); prepare it "
                          f"first (tfds build / download_and_prepare) and pass data.options tfds_data_dir, or "
                          f"set train_split / validation_split") from None
    feats = b.info.features
    if field not in feats:
        raise ConfigError(f"data.task=tfds:{name}: no feature {field!r} (features: {', '.join(list(feats)[:8])}); "
                          f"set data.options text_field (--text-field)")
    if max_docs:
        ds = ds.take(int(max_docs))
    for ex in ds.as_numpy_iterator():
        v = ex[field]
        yield v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def tfds_corpus_hash(name: str, split: str, tdir: str | None, field: str, max_docs) -> str:
    """Identity of a TFDS split: name, version, split spec, field, cap and the prepared files' info."""
    info = ""
    b = _tfds_builder(name, tdir)
    try:
        info = json.dumps({k: [s.num_examples, s.num_bytes] for k, s in b.info.splits.items()}, sort_keys=True)
    except Exception:  # noqa: BLE001 - unprepared (mock data): the name and version identify it
        pass
    blob = f"{name}|{b.info.full_name}|{split}|{field}|{max_docs}|{info}"
    return hashlib.sha256(blob.encode()).hexdigest()


def open_tfds(data, split: str, data_dir: str, *, name: str | None = None, task_label: str | None = None,
              vocab=None, defaults: dict | None = None, **kw):
    """A TFDS text dataset as a stream task (also serves ``c4_en``)."""
    from scaling.data import TaskInfo
    from scaling.data import vocab as V
    if name is None:
        tfds_options(data)
        name = parse_tfds_name(data.task)
    o = {**(defaults or {}), **{k: v for k, v in data.options}}
    tdir = o.get("tfds_data_dir") or os.environ.get("TFDS_DATA_DIR")
    field = str(o.get("text_field", "text"))
    tsplit = str(o.get(f"{split}_split", split))
    max_docs = o.get(f"max_{split}_docs")
    max_docs = int(max_docs) if max_docs not in (None, "") else None
    label = task_label or "tfds-" + name
    corpus_hash = tfds_corpus_hash(name, tsplit, tdir, field, max_docs)
    if vocab is None:
        train_split = str(o.get("train_split", "train"))
        train_cap = o.get("max_train_docs")
        vocab = V.get_vocab(data.vocab, data_dir=data_dir, task=label.replace("/", "_"),
                            corpus_hash=tfds_corpus_hash(name, train_split, tdir, field, train_cap),
                            train_texts=lambda: _capped(iter_tfds_documents(name, train_split, tdir, field,
                                                                            train_cap)))
    got = build_or_load(task=label, split=split, data_dir=data_dir, corpus_hash=corpus_hash, vocab=vocab,
                        vocab_tag=_vocab_tag(data.vocab, vocab),
                        documents=lambda: iter_tfds_documents(name, tsplit, tdir, field, max_docs),
                        extra_meta={"tfds": name, "tfds_split": tsplit, "max_docs": max_docs},
                        workers=kw.get("workers") or B.default_workers(), force=kw.get("force", False),
                        progress=kw.get("progress"))
    m = got.meta
    info = TaskInfo(name=data.task, split=split, vocab_size=vocab.size, num_tokens=int(m["num_tokens"]),
                    corpus_hash=corpus_hash, vocab_hash=vocab.hash, entropy_rate=None, has_bytes=True,
                    num_docs=int(m["num_docs"]), vocab=data.vocab, num_bytes=int(m["num_bytes"]))
    return info, got, vocab


def _capped(texts, cap: int = 256 << 20):
    """The first ~``cap`` bytes of documents (a vocabulary's training sample from a stream)."""
    n = 0
    for t in texts:
        yield t
        n += len(t)
        if n >= cap:
            return
