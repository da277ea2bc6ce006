"""Data: tasks, vocabularies, token caches and packed batches for decoder LM training.

The seam the trainer uses is three functions and one class::

    vocab_size(data: DataConfig) -> int
    open_source(data: DataConfig, split: str, seq_len: int) -> TokenSource
    TokenSource.info / TokenSource.batch(step, batch_size, *, seed, process_index=0, process_count=1)
    check_budget(info: TaskInfo, tokens: int, repeat: bool) -> float

plus :func:`prepare` (tokenize and cache without training: ``scaling prepare``).

Tasks (``DataConfig.task``):

* ``pystdlib`` - the interpreter's standard library (:mod:`scaling.data.pystdlib`), offline.
* ``synthetic_markov`` - a Markov chain with an exact entropy rate (:mod:`.synthetic_markov`).
* ``c4_en`` - TFDS ``c4/en:3.1.0`` with a SentencePiece model path (:mod:`.c4`); cloud only.
* ``text`` - your own .txt / .jsonl(.gz|.zst) / .parquet files (:mod:`.text_source`, :mod:`.files`).
* ``tfds:NAME[/CONFIG][:VERSION]`` - a TFDS dataset already prepared (:mod:`.text_tasks`).
* ``seqio:NAME`` - any registered seqio Task or Mixture, its module imported first (:mod:`.seqio_source`).

Vocabularies (``byte``, ``spN``, ``hf-bpe:N``, a ``tokenizer.json`` or ``.model`` path) are in
:mod:`.vocab` and :mod:`.hf_vocab`.

**Fast path.** ``open_source`` tokenizes a split once into the token store (:mod:`.store`:
fixed-size memory-mapped shards plus a document index, built by :mod:`.build` with one
tokenizer process per core) and serves batches as windows of it.  Step ``s`` of epoch ``e``
reads rows ``perm_e[s*B : (s+1)*B]`` where ``perm_e`` is a permutation of the epoch's
``seq_len`` rows seeded by ``(seed, e)`` and the rows start at a seeded offset, so every epoch
sees differently cut windows.  A batch is therefore a pure function of (task, vocab, split,
seed, step, process shard), computed in O(1) (no replay on resume).  Process ``p`` of ``P``
gets rows ``[p*B/P, (p+1)*B/P)`` of the global batch: the union over processes is the
single-process batch.

A warm ``open_source`` (cache present) does not import TensorFlow or seqio (except for
``seqio:`` tasks): it fingerprints the corpus (memoised manifest hash / file stats), loads
the vocabulary and checks the cache files' sizes and stamps.

**seqio.** The built-in tasks exist as seqio tasks (``pystdlib_byte``, ``pystdlib_sp1024``, ...,
``synthetic_markov``, ``c4_en``), defined in :mod:`scaling.data.tasks`.  Importing
``seqio`` costs ~3.5 s (it imports TensorFlow), so ``import scaling.data`` registers them
at once if ``seqio`` is already imported, and otherwise through a one-shot import hook the
moment ``seqio`` is imported; nothing pays for seqio that does not use it.
:func:`scaling.data.features.seqio_dataset` gives the packed seqio stream
(``DecoderFeatureConverter(pack=True)``).

**Bits per byte.** ``decoder_target_bytes`` holds the UTF-8 bytes behind each target token;
EOS, pad and unk count 0 bytes (EOS is not text; its loss is still part of the loss).
``bpb = sum(loss_nats) / ln 2 / sum(target_bytes)``, exact for every tokenizer
(:mod:`.vocab`).  Tasks without text (``synthetic_markov``) have ``has_bytes=False`` and zeros.

Data directory: ``DataConfig.data_dir``, else ``$SCALING_DATA_DIR``, else
``~/.cache/scaling/data``.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np

from scaling.config import ConfigError, DataConfig

TASKS = ("pystdlib", "synthetic_markov", "c4_en", "text", "tfds:NAME", "seqio:NAME")
SPLITS = ("train", "validation")

__all__ = ["TASKS", "TaskInfo", "TokenSource", "vocab_size", "open_source", "check_budget", "prepare",
           "default_data_dir", "register_seqio_tasks"]


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """What a run records about its data.

    ``num_tokens``: unique tokens in the split (EOS included).  ``corpus_hash``: manifest
    hash of the corpus (or of the generator spec).  ``vocab_hash``: sha256 of the
    vocabulary.  ``entropy_rate``: nats/token if known exactly (``synthetic_markov``).
    ``has_bytes``: whether ``decoder_target_bytes`` is meaningful (bits per byte).
    ``num_bytes``: UTF-8 bytes of the split's text (0 where unknown).
    """

    name: str
    split: str
    vocab_size: int
    num_tokens: int
    corpus_hash: str
    vocab_hash: str
    entropy_rate: float | None
    has_bytes: bool
    num_docs: int = 0
    vocab: str = ""
    num_bytes: int = 0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def default_data_dir(data: DataConfig | None = None) -> str:
    """``data.data_dir`` if set (entry points set it from their settings), else the settings' data dir."""
    if data is not None and data.data_dir:
        return os.path.abspath(os.path.expanduser(data.data_dir))
    from scaling.settings import Settings

    return Settings.from_environ().data_dir


def _check_task(data: DataConfig) -> None:
    data.validate()
    t = data.task
    if t in ("pystdlib", "synthetic_markov", "c4_en", "text"):
        return
    if t.startswith("tfds:") or t.startswith("seqio:"):
        return
    raise ConfigError(f"data.task={t!r}: unknown task; choose one of {TASKS} (NAME a TFDS dataset or a "
                      f"registered seqio Task/Mixture)")


def vocab_size(data: DataConfig) -> int:
    """Embedding rows the model needs for ``data`` (no corpus is read).

    ``byte``: 259; ``spN`` / ``hf-bpe:N``: N (a trained model may hold fewer; ids stay < N);
    a ``.model`` / ``tokenizer.json`` path: its size (+2 for a shifted tokenizer.json);
    ``synthetic_markov``: symbols + 2; ``seqio:NAME``: the task vocabulary's size.
    """
    _check_task(data)
    if data.task == "synthetic_markov":
        from scaling.data.synthetic_markov import MarkovSpec
        return MarkovSpec.from_options(data.options).vocab_size
    if data.task.startswith("seqio:"):
        from scaling.data import seqio_source
        return seqio_source.vocab_size(data)
    if data.task == "text":
        from scaling.data.text_source import TextSpec
        TextSpec.from_options(data.options)
    if data.task.startswith("tfds:"):
        from scaling.data.text_tasks import parse_tfds_name, tfds_options
        tfds_options(data)
        parse_tfds_name(data.task)
    from scaling.data import vocab as V
    return V.nominal_size(_vocab_spec(data))


def _vocab_spec(data: DataConfig) -> str:
    if data.task == "c4_en":
        from scaling.data.c4 import vocab_path
        return vocab_path(data)
    return data.vocab


def check_budget(info: TaskInfo, tokens: int, repeat: bool) -> float:
    """Epochs over the split that ``tokens`` implies; ConfigError if > 1 without ``repeat``."""
    epochs = tokens / max(info.num_tokens, 1)
    if tokens > info.num_tokens and not repeat:
        raise ConfigError(
            f"tokens={tokens}: more than the {info.num_tokens} unique tokens in {info.name}/{info.split}; "
            f"set data.repeat=True (--repeat) to allow {epochs:.2f} epochs, or lower --tokens")
    return epochs


class TokenSource:
    """Packed batches as windows of a cached token stream (see the module docstring).

    ``tokens``: the split's token ids (:class:`scaling.data.store.ShardedArray`, indexable like
    an array); ``doc_ends``: end offset of every document (None for a stream without documents);
    ``token_bytes``: per-token UTF-8 bytes where the vocabulary's table is not exact.
    ``vocab``: the tokenizer (``encode(text) -> ids``; None for a task without text), which
    downstream tasks (:mod:`scaling.evaltasks`) are tokenized with.
    """

    def __init__(self, info: TaskInfo, tokens, seq_len: int, *, bytes_per_id: np.ndarray | None,
                 doc_eos: bool, doc_ends=None, token_bytes=None, vocab=None):
        self.info = info
        self.vocab = vocab
        self.tokens = tokens
        self.seq_len = seq_len
        self.bytes_per_id = bytes_per_id
        self.doc_eos = doc_eos
        self.doc_ends = doc_ends
        self.token_bytes = token_bytes
        n = int(tokens.shape[0])
        self.rows_per_epoch = (n - (seq_len - 1)) // seq_len
        if self.rows_per_epoch < 1:
            raise ConfigError(f"seq_len={seq_len}: longer than the {n} tokens of {info.name}/{info.split}; "
                              f"lower --seq-len or use a larger corpus")
        self._perm_cache: dict = {}

    def _epoch(self, seed: int, epoch: int):
        key = (seed, epoch)
        hit = self._perm_cache.get(key)
        if hit is None:
            rng = np.random.default_rng([seed & 0xFFFFFFFF, epoch, 0xDA7A])
            offset = int(rng.integers(self.seq_len))
            perm = rng.permutation(self.rows_per_epoch).astype(np.int64)
            hit = (offset, perm)
            if len(self._perm_cache) > 4:
                self._perm_cache.clear()
            self._perm_cache[key] = hit
        return hit

    def row_starts(self, step: int, batch_size: int, *, seed: int, process_index: int = 0,
                   process_count: int = 1) -> np.ndarray:
        """Token offsets of this process's rows at ``step`` (the batch is their windows)."""
        if step < 0:
            raise ConfigError(f"step={step}: must be >= 0")
        if process_count < 1 or not 0 <= process_index < process_count:
            raise ConfigError(f"process_index={process_index}, process_count={process_count}: "
                              f"need 0 <= process_index < process_count")
        if batch_size < 1 or batch_size % process_count:
            raise ConfigError(f"batch_size={batch_size}: must be a positive multiple of the "
                              f"{process_count} processes")
        per = batch_size // process_count
        g = step * batch_size + process_index * per + np.arange(per, dtype=np.int64)
        R = self.rows_per_epoch
        epochs = g // R
        out = np.empty(per, np.int64)
        for e in np.unique(epochs):
            offset, perm = self._epoch(seed, int(e))
            m = epochs == e
            out[m] = offset + perm[g[m] - e * R] * self.seq_len
        return out

    def segment_starts(self, starts: np.ndarray) -> np.ndarray | None:
        """[B, L] mask of positions where a document starts (from the document index)."""
        if self.doc_ends is None or not self.doc_eos:
            return None
        from scaling.data.features import doc_start_mask
        return doc_start_mask(self.doc_ends, starts, self.seq_len)

    def batch(self, step: int, batch_size: int, *, seed: int, process_index: int = 0,
              process_count: int = 1) -> dict:
        starts = self.row_starts(step, batch_size, seed=seed, process_index=process_index,
                                 process_count=process_count)
        rows = self.tokens.windows(starts, self.seq_len)
        from scaling.data.features import window_features
        tb = self.token_bytes.windows(starts, self.seq_len) if self.token_bytes is not None else None
        return window_features(rows, self.bytes_per_id if self.info.has_bytes else None, doc_eos=self.doc_eos,
                               segment_starts=self.segment_starts(starts), target_bytes=tb)

    def epochs_at(self, step: int, batch_size: int) -> float:
        return step * batch_size * self.seq_len / self.info.num_tokens


def _open(data: DataConfig, split: str, seq_len: int, **build):
    """(TaskInfo, store.Split, vocab or None) for one split, preparing it if needed."""
    data_dir = default_data_dir(data)
    t = data.task
    if t == "synthetic_markov":
        from scaling.data.synthetic_markov import open_cached
        info, got = open_cached(data, split, data_dir)
        return info, got, None
    if t == "pystdlib":
        from scaling.data.text_tasks import open_pystdlib
        return open_pystdlib(data, split, data_dir, **build)
    if t == "text":
        from scaling.data.text_source import open_text
        return open_text(data, split, data_dir, **build)
    if t.startswith("tfds:"):
        from scaling.data.text_tasks import open_tfds
        return open_tfds(data, split, data_dir, **build)
    if t.startswith("seqio:"):
        from scaling.data.seqio_source import open_seqio
        return open_seqio(data, split, data_dir, int(seq_len), **build)
    from scaling.data.c4 import open_c4
    return open_c4(data, split, data_dir, **build)


def _check_args(data: DataConfig, split: str, seq_len) -> None:
    _check_task(data)
    if split not in SPLITS:
        raise ConfigError(f"split={split!r}: choose one of {SPLITS}")
    if not isinstance(seq_len, (int, np.integer)) or seq_len < 2:
        raise ConfigError(f"seq_len={seq_len!r}: must be an integer >= 2 (--seq-len)")


def open_source(data: DataConfig, split: str, seq_len: int) -> TokenSource:
    """Prepare (offline, cached) and open ``split`` of ``data.task`` as packed windows."""
    _check_args(data, split, seq_len)
    info, got, vocab = _open(data, split, seq_len)
    if data.task == "synthetic_markov":
        return TokenSource(info, got.tokens, int(seq_len), bytes_per_id=None, doc_eos=False)
    return TokenSource(info, got.tokens, int(seq_len), bytes_per_id=vocab.bytes_per_id, doc_eos=True,
                       doc_ends=got.doc_ends, token_bytes=got.token_bytes, vocab=vocab)


def prepare(data: DataConfig, *, seq_len: int = 2048, splits=SPLITS, workers: int | None = None,
            backend: str = "local", ray_address: str | None = None, progress: bool = True,
            force: bool = False) -> dict:
    """Tokenize and cache ``splits`` of ``data`` without training; returns a summary per split.

    ``workers``: tokenizer processes (default one per core) or Ray tasks in flight
    (``backend='ray'``, joining ``ray_address`` or a local Ray; the data dir must then be
    shared).  ``force`` rebuilds even a valid cache.  ``seq_len`` matters for ``seqio:`` tasks
    only (their preprocessors may chunk by it).
    """
    import time
    out = {}
    for i, split in enumerate(splits):
        _check_args(data, split, seq_len)
        t0 = time.perf_counter()
        # a text task builds both splits in one pass: force only the first
        info, got, _ = _open(data, split, seq_len, workers=workers, backend=backend, ray_address=ray_address,
                             progress=progress, force=force and (i == 0 or data.task != "text"))
        m = got.meta
        out[split] = {"documents": info.num_docs, "tokens": info.num_tokens, "bytes": info.num_bytes,
                      "skipped": m.get("stats", {}), "shards": len(m["shards"]), "cache": got.path,
                      "corpus_hash": info.corpus_hash, "vocab_hash": info.vocab_hash, "vocab_size": info.vocab_size,
                      "prepare_s": m.get("prepare_s"), "open_s": round(time.perf_counter() - t0, 3)}
    return out


def register_seqio_tasks() -> list[str]:
    """Register every seqio task (imports seqio/TensorFlow); returns the task names."""
    from scaling.data import tasks
    return tasks.register_all()


class _RegisterWhenSeqioLoads:
    """A one-shot import hook: the moment ``seqio`` finishes importing, register our tasks.

    ``import scaling.data`` thus registers the seqio tasks whichever is imported first,
    without making every trainer process pay seqio's 3.5 s TensorFlow import.
    """

    def find_spec(self, name, path=None, target=None):
        if name != "seqio":
            return None
        sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec("seqio")
        if spec is None or spec.loader is None:
            return spec
        original = spec.loader

        class _Loader:
            def create_module(self, spec_):
                return original.create_module(spec_)

            def exec_module(self, module):
                original.exec_module(module)
                if "scaling.data.tasks" not in sys.modules:  # else tasks.py is importing seqio and registers itself
                    register_seqio_tasks()

        spec.loader = _Loader()
        return spec


if "seqio" in sys.modules:  # already imported: register now, as the seam promises
    register_seqio_tasks()
elif not any(isinstance(f, _RegisterWhenSeqioLoads) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenSeqioLoads())
