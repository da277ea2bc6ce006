"""``seqio:NAME``: any registered seqio Task or Mixture as training data (the t5x convention).

``DataConfig(task="seqio:my_lm", options=(("module", "my_pkg.tasks"),))`` imports the module
(a dotted name on ``sys.path``, or a path to a ``.py`` file; several separated by commas) so
that it registers its tasks, then reads ``get_dataset(split, shuffle=False, num_epochs=1,
trim_output_features=False)`` at ``sequence_length={feature: seq_len}`` (the run's length,
for preprocessors that chunk by it).  Each example's ``feature`` ids (default ``targets``)
are one document; nothing is truncated.  The ids are cached in the token store, so training
reads them as O(1) windows like every other task, and the vocabulary is the task's own
(``vocab_size`` = its ``vocab_size``; ``DataConfig.vocab`` is ignored).

Options: ``module``, ``feature``, ``train_split`` / ``validation_split`` (default ``train`` /
``validation``), ``max_train_docs`` / ``max_validation_docs``.

The cache key covers the task name, split, sequence length, the module files' contents and
the vocabulary; the corpus hash recorded in runs is a sha256 of the ids as read.  A source
whose output changes without any code change (a FunctionDataSource reading a moving file) is
not detected: re-run ``scaling prepare ... --force``.

Bits per byte: exact for ``ByteVocabulary`` and for SentencePiece models whose pieces are the
text's bytes (identity normalisation, no dummy prefix, byte fallback); other vocabularies
report no bpb (``has_bytes=False``) rather than an inexact one.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import sys
import time

import numpy as np

from scaling.config import ConfigError
from scaling.data import store

OPTIONS = ("module", "feature", "train_split", "validation_split", "max_train_docs", "max_validation_docs")
_BLOCK = 1 << 20


def task_name(data) -> str:
    name = data.task[len("seqio:"):]
    if not name:
        raise ConfigError(f"data.task={data.task!r}: write seqio:NAME with a registered Task or Mixture name")
    return name


def import_modules(spec: str | None) -> list[str]:
    """Import the user's task modules; returns the source files (for the cache key)."""
    srcs = []
    for m in [x.strip() for x in str(spec or "").split(",") if x.strip()]:
        try:
            if m.endswith(".py") or os.sep in m:
                path = os.path.abspath(os.path.expanduser(m))
                if not os.path.isfile(path):
                    raise ConfigError(f"data.options module={m!r}: no such file; give a module name on PYTHONPATH "
                                      f"or the path of a .py file (--data-module)")
                modname = "scaling_user_tasks_" + hashlib.sha256(path.encode()).hexdigest()[:12]
                mod = sys.modules.get(modname)
                if mod is None:
                    spec_ = importlib.util.spec_from_file_location(modname, path)
                    mod = importlib.util.module_from_spec(spec_)
                    sys.modules[modname] = mod
                    try:
                        spec_.loader.exec_module(mod)
                    except BaseException:
                        sys.modules.pop(modname, None)
                        raise
            else:
                mod = importlib.import_module(m)
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001 - any import failure has the same fix
            raise ConfigError(f"data.options module={m!r}: import failed ({type(e).__name__}: {str(e)[:160]}); "
                              f"check PYTHONPATH / the file (--data-module)") from None
        srcs.append(getattr(mod, "__file__", None) or m)
    return srcs


def get_task(data):
    """(seqio Task/Mixture, feature, options, module source files)."""
    o = dict(data.options)
    unknown = sorted(set(o) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"data.options {unknown}: unknown seqio option; known: {list(OPTIONS)}")
    srcs = import_modules(o.get("module"))
    import seqio

    import scaling.data.tasks  # noqa: F401  the project's own tasks are seqio:pystdlib_byte, ...
    name = task_name(data)
    try:
        task = seqio.get_mixture_or_task(name)
    except (ValueError, KeyError):
        names = sorted(set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names()))
        hint = "" if o.get("module") else "; pass the module that registers it with --data-module"
        raise ConfigError(f"data.task={data.task!r}: no seqio Task or Mixture {name!r} is registered{hint} "
                          f"(registered: {', '.join(names[:12])}{' ...' if len(names) > 12 else ''})") from None
    feature = str(o.get("feature", "targets"))
    if feature not in task.output_features:
        raise ConfigError(f"data.options feature={feature!r}: {name} has output features "
                          f"{sorted(task.output_features)}; set data.options feature")
    return task, feature, o, srcs


def vocab_size(data) -> int:
    task, feature, _, _ = get_task(data)
    return int(task.output_features[feature].vocabulary.vocab_size)


def _bytes_table(vocabulary):
    """(per-id byte table or None, vocabulary fingerprint)."""
    import seqio

    from scaling.data import vocab as V
    n = int(vocabulary.vocab_size)
    if isinstance(vocabulary, seqio.ByteVocabulary):
        t = np.zeros(n, np.int32)
        t[3:V.BYTE_VOCAB_SIZE] = 1
        return t, f"byte{n}"
    if isinstance(vocabulary, seqio.SentencePieceVocabulary):
        with open(vocabulary.sentencepiece_model_file, "rb") as f:
            blob = f.read()
        fp = "sp" + hashlib.sha256(blob).hexdigest()
        v = V.Vocab("file", n, blob, path=vocabulary.sentencepiece_model_file)
        if v.exact_table:
            t = np.zeros(n, np.int32)
            k = min(n, v.bytes_per_id.size)
            t[:k] = v.bytes_per_id[:k]
            return t, fp
        return None, fp
    return None, f"{type(vocabulary).__name__}{n}"


def _file_hash(p: str) -> str:
    try:
        return store.file_sha256(p)
    except OSError:
        return p


class SeqioVocabView:
    """What the trainer needs of a seqio task's vocabulary: size, hash and the byte table."""

    def __init__(self, size: int, table, fp: str):
        self.size = size
        self.bytes_per_id = table
        self.hash = hashlib.sha256(fp.encode()).hexdigest()
        self.exact_table = True


def open_seqio(data, split: str, data_dir: str, seq_len: int, *, force: bool = False, progress=None, **_):
    from scaling.data import TaskInfo
    from scaling.data.build import Progress
    task, feature, o, srcs = get_task(data)
    vocabulary = task.output_features[feature].vocabulary
    table, vfp = _bytes_table(vocabulary)
    vocab = SeqioVocabView(int(vocabulary.vocab_size), table, vfp)
    tsplit = str(o.get(f"{split}_split", split))
    cap = o.get(f"max_{split}_docs")
    cap = int(cap) if cap not in (None, "") else None
    key = hashlib.sha256(json.dumps({"task": task.name, "split": tsplit, "seq_len": int(seq_len), "feature": feature,
                                     "cap": cap, "modules": [_file_hash(s) for s in srcs], "vocab": vfp},
                                    sort_keys=True).encode()).hexdigest()
    path = store.split_dir(data_dir, "seqio-" + task.name, f"L{int(seq_len)}", split, key, vocab.hash)
    got = None if force else store.load(path)
    if got is None:
        with store.build_lock(path):
            got = None if force else store.load(path, quiet=True)
            if got is None:
                got = _build(task, feature, tsplit, cap, seq_len, vocab, path, key, data,
                             Progress(f"prepare {data.task}/{split}", enabled=progress if progress is not None else True))
    m = got.meta
    info = TaskInfo(name=data.task, split=split, vocab_size=vocab.size, num_tokens=int(m["num_tokens"]),
                    corpus_hash=m["corpus_hash"], vocab_hash=vocab.hash, entropy_rate=None,
                    has_bytes=table is not None, num_docs=int(m["num_docs"]), vocab=vfp[:40],
                    num_bytes=int(m.get("num_bytes", 0)))
    return info, got, vocab


def _build(task, feature, tsplit, cap, seq_len, vocab, path, key, data, bar):
    import tensorflow as tf
    tf.config.set_visible_devices([], "GPU")
    t0 = time.perf_counter()
    try:
        ds = task.get_dataset(sequence_length={feature: int(seq_len)}, split=tsplit, shuffle=False, seed=0,
                              num_epochs=1, trim_output_features=False)
        if cap:
            ds = ds.take(cap)
        it = ds.as_numpy_iterator()
    except Exception as e:  # noqa: BLE001 - missing split, unprepared TFDS data, a broken preprocessor
        raise ConfigError(f"data.task={data.task!r}: get_dataset(split={tsplit!r}) failed ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:160] if str(e) else ''}); check the task, or set "
                          f"data.options {'train' if tsplit == 'train' else 'validation'}_split") from None
    writer = store.SplitWriter(path, store.token_dtype(vocab.size))
    h = hashlib.sha256()
    buf, lens, n, nbytes = [], [], 0, 0
    try:
        for ex in it:
            ids = np.asarray(ex[feature]).reshape(-1)
            if ids.size == 0:
                continue
            if ids.min() < 0 or ids.max() >= vocab.size:
                raise ConfigError(f"data.task={data.task!r}: an example has id {int(ids.max())} outside the "
                                  f"vocabulary of {vocab.size}; fix the task's output feature vocabulary")
            h.update(ids.astype(np.int64).tobytes())
            buf.append(ids)
            lens.append(ids.size)
            n += ids.size
            if vocab.bytes_per_id is not None:
                nbytes += int(vocab.bytes_per_id[ids].sum())
            if n >= _BLOCK:
                writer.add(np.concatenate(buf), np.asarray(lens))
                bar.update(docs=len(lens), tokens=n)
                buf, lens, n = [], [], 0
        if buf:
            writer.add(np.concatenate(buf), np.asarray(lens))
            bar.update(docs=len(lens), tokens=n)
    except BaseException:
        writer.abort()
        raise
    bar.done()
    if writer.num_docs == 0:
        writer.abort()
        raise ConfigError(f"data.task={data.task!r}: split {tsplit!r} yielded no examples with {feature!r}; "
                          f"check the task's source and preprocessors")
    meta = {"task": data.task, "split": tsplit, "corpus_hash": h.hexdigest(), "fingerprint": key,
            "vocab_hash": vocab.hash, "num_bytes": nbytes, "seq_len": int(seq_len),
            "prepare_s": round(time.perf_counter() - t0, 3)}
    return writer.commit(meta)
