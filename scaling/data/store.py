"""The token store: one split of a task as fixed-size memory-mapped shards plus a document index.

This module is the only owner of the on-disk cache format.  A split lives in

    <data_dir>/cache/<task tag>/<vocab tag>/<split>-<key[:16]>-<vocab hash[:16]>/
        meta.json            format, dtype, shard size, per-file sha256, counts, hashes, stats
        tokens-00000.bin     raw token ids (uint16 when the vocabulary fits, else uint32),
        tokens-00001.bin     every shard exactly ``shard_tokens`` long except the last
        bytes-00000.bin      (only for tokenizers whose bytes are not a function of the id)
        docs.bin             int64 end offset of every document in the token stream
        manifest.json        (text tasks) the files read, with sizes, mtimes and content hashes

The stream is the documents in order, each followed by EOS (id 1) for text tasks.  Token
``t`` is at offset ``t % shard_tokens`` of shard ``t // shard_tokens``, so reading a window is
O(1) whatever the corpus size, and a window crosses at most one shard boundary.

**Integrity.** Every file's sha256 is computed while it is written.  Opening checks every size
(a truncated shard is caught at once) and re-hashes any file whose (size, mtime, inode) differs
from the stamp taken when it was last verified, so a warm open costs a few ``stat`` calls, and
any edit (which changes mtime) is re-hashed.  A mismatch warns and the caller rebuilds.

**Publishing.** A build writes into a temporary sibling directory and renames it into place;
:func:`build_lock` serialises builders of one cache (readers never wait).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import warnings

import numpy as np

FORMAT = 2
DEFAULT_SHARD_TOKENS = 1 << 26  # 64M tokens: 128 MB per uint16 shard
_CHUNK = 1 << 22


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)


def split_dir(data_dir: str, task_tag: str, vocab_tag: str, split: str, key: str, vocab_hash: str) -> str:
    def safe(s):
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in s)
    return os.path.join(data_dir, "cache", safe(task_tag), safe(vocab_tag), f"{split}-{key[:16]}-{vocab_hash[:16]}")


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(_CHUNK)
            if not b:
                return h.hexdigest()
            h.update(b)


@contextlib.contextmanager
def build_lock(path: str):
    """An exclusive lock for building the cache at ``path`` (and its sibling splits)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class _Stream:
    """Append-only writer of one logical array cut into fixed-size files, hashing as it goes."""

    def __init__(self, dirpath: str, prefix: str, dtype, shard_tokens: int):
        self.dir, self.prefix, self.dtype, self.S = dirpath, prefix, np.dtype(dtype), int(shard_tokens)
        self.files: list[dict] = []
        self.n = 0
        self._f = None
        self._h = None
        self._in = 0

    def _open_next(self):
        name = f"{self.prefix}-{len(self.files):05d}.bin"
        self._f = open(os.path.join(self.dir, name), "wb")
        self._h = hashlib.sha256()
        self._in = 0
        self.files.append({"file": name})

    def _close_current(self):
        if self._f is not None:
            self._f.close()
            self.files[-1].update(tokens=self._in, sha256=self._h.hexdigest())
            self._f = None

    def append(self, arr: np.ndarray) -> None:
        arr = np.ascontiguousarray(arr, dtype=self.dtype)
        i = 0
        while i < arr.size:
            if self._f is None or self._in == self.S:
                self._close_current()
                self._open_next()
            take = min(self.S - self._in, arr.size - i)
            b = arr[i:i + take].tobytes()
            self._f.write(b)
            self._h.update(b)
            self._in += take
            i += take
        self.n += arr.size

    def close(self) -> list[dict]:
        self._close_current()
        return self.files


class SplitWriter:
    """Streams documents into a new split directory; :meth:`commit` publishes it atomically.

    ``add(tokens, doc_lengths, token_bytes=None)`` appends a block (token ids include each
    document's EOS; a stream without documents, ``synthetic_markov``, passes no lengths).
    Memory is one block.
    """

    def __init__(self, path: str, dtype, *, shard_tokens: int = DEFAULT_SHARD_TOKENS, with_bytes: bool = False):
        self.path = path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.tmp = tempfile.mkdtemp(dir=os.path.dirname(path), prefix=".tmp-" + os.path.basename(path) + "-")
        self.tokens = _Stream(self.tmp, "tokens", dtype, shard_tokens)
        self.bytes = _Stream(self.tmp, "bytes", np.uint16, shard_tokens) if with_bytes else None
        self._docs = open(os.path.join(self.tmp, "docs.bin"), "wb")
        self._docs_h = hashlib.sha256()
        self.num_docs = 0
        self._doc_total = 0

    def add(self, tokens: np.ndarray, doc_lengths: np.ndarray, token_bytes: np.ndarray | None = None) -> None:
        """Append tokens (and their byte counts) and the lengths of the documents they complete.

        Blocks need not align with documents; :meth:`commit` checks that the lengths cover the stream.
        """
        if tokens.size:
            self.tokens.append(tokens)
            if self.bytes is not None:
                self.bytes.append(token_bytes)
        if len(doc_lengths):
            ends = self._doc_total + np.cumsum(np.asarray(doc_lengths, np.int64))
            self._doc_total = int(ends[-1])
            b = ends.astype(np.int64).tobytes()
            self._docs.write(b)
            self._docs_h.update(b)
            self.num_docs += ends.size

    def abort(self) -> None:
        self._docs.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def commit(self, meta: dict, manifest: list | None = None):
        """Write meta (and manifest), publish, and return the opened :class:`Split`."""
        self._docs.close()
        if self.num_docs and self._doc_total != self.tokens.n:
            self.abort()
            raise AssertionError(f"document index covers {self._doc_total} of {self.tokens.n} tokens")
        meta = dict(meta, format=FORMAT, dtype=self.tokens.dtype.name, shard_tokens=self.tokens.S,
                    num_tokens=int(self.tokens.n), num_docs=int(self.num_docs),
                    shards=self.tokens.close(), bytes_shards=self.bytes.close() if self.bytes else None,
                    docs={"file": "docs.bin", "sha256": self._docs_h.hexdigest()})
        if manifest is not None:
            with open(os.path.join(self.tmp, "manifest.json"), "w") as f:
                json.dump(manifest, f)
        with open(os.path.join(self.tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
        _stamp(self.tmp, meta)
        if os.path.exists(self.path):  # a stale or corrupt cache being replaced
            shutil.rmtree(self.path, ignore_errors=True)
        try:
            os.rename(self.tmp, self.path)
        except OSError:  # a concurrent builder (without the lock) published first: keep a valid one
            if load(self.path, quiet=True) is None:
                shutil.rmtree(self.path, ignore_errors=True)
                os.rename(self.tmp, self.path)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)
        return load(self.path)


def _files(meta: dict) -> list[tuple[str, int | None, str]]:
    """(file, expected size in bytes or None, sha256) of every data file of a split."""
    item = np.dtype(meta["dtype"]).itemsize
    out = [(s["file"], s["tokens"] * item, s["sha256"]) for s in meta["shards"]]
    out += [(s["file"], s["tokens"] * 2, s["sha256"]) for s in (meta.get("bytes_shards") or [])]
    out.append((meta["docs"]["file"], meta["num_docs"] * 8, meta["docs"]["sha256"]))
    return out


def _stat_key(path: str) -> list:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _stamp(path: str, meta: dict) -> None:
    stamp = {f: _stat_key(os.path.join(path, f)) for f, _, _ in _files(meta)}
    tmp = os.path.join(path, f".verified.{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(stamp, f)
    os.replace(tmp, os.path.join(path, ".verified"))


def _verify(path: str, meta: dict) -> None:
    try:
        with open(os.path.join(path, ".verified")) as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        stamp = {}
    rehashed = False
    for name, size, sha in _files(meta):
        p = os.path.join(path, name)
        key = _stat_key(p)
        if key[0] != size:
            raise ValueError(f"{name} is {key[0]} bytes, expected {size} (truncated or overwritten)")
        if stamp.get(name) != key:
            if file_sha256(p) != sha:
                raise ValueError(f"{name}: sha256 mismatch (edited)")
            rehashed = True
    if rehashed:
        _stamp(path, meta)


def read_meta(path: str) -> dict | None:
    try:
        with open(os.path.join(path, "meta.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def load(path: str, *, quiet: bool = False) -> "Split | None":
    """The split at ``path`` if present and intact, else None (warning when it was corrupt)."""
    if not os.path.isdir(path):
        return None
    meta = read_meta(path)
    if meta is None or meta.get("format") != FORMAT:
        return None  # an older format or a half-written directory: rebuilt silently
    try:
        _verify(path, meta)
        return Split(path, meta)
    except (OSError, ValueError, KeyError) as e:
        if not quiet:
            warnings.warn(f"token cache {path} is corrupt ({e}); rebuilding it", RuntimeWarning, stacklevel=3)
        return None


class ShardedArray:
    """A read-only 1-D array over fixed-size memory-mapped shard files.

    Supports ``len``, ``shape``, ``dtype``, slices and integer-array indexing (returning numpy
    arrays), ``np.asarray`` (materialises: small splits only) and :meth:`windows`.
    """

    def __init__(self, dirpath: str, shards: list[dict], dtype, shard_tokens: int):
        self.dtype = np.dtype(dtype)
        self.S = int(shard_tokens)
        self.parts = [np.memmap(os.path.join(dirpath, s["file"]), dtype=self.dtype, mode="r", shape=(s["tokens"],))
                      if s["tokens"] else np.zeros(0, self.dtype) for s in shards]
        self.n = int(sum(s["tokens"] for s in shards))
        self.shape = (self.n,)

    def __len__(self) -> int:
        return self.n

    def _range(self, a: int, b: int) -> np.ndarray:
        if len(self.parts) == 1:
            return np.asarray(self.parts[0][a:b])
        out = []
        while a < b:
            i, o = divmod(a, self.S)
            take = min(b - a, self.S - o)
            out.append(self.parts[i][o:o + take])
            a += take
        return np.concatenate(out) if out else np.zeros(0, self.dtype)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            a, b, step = idx.indices(self.n)
            r = self._range(a, max(a, b))
            return r[::step] if step != 1 else r
        if isinstance(idx, (int, np.integer)):
            i = int(idx) + (self.n if idx < 0 else 0)
            return self.parts[i // self.S][i % self.S]
        idx = np.asarray(idx)
        if len(self.parts) == 1:
            return np.asarray(self.parts[0][idx])
        flat = idx.reshape(-1)
        out = np.empty(flat.shape, self.dtype)
        sh = flat // self.S
        for i in np.unique(sh):
            m = sh == i
            out[m] = self.parts[int(i)][flat[m] - int(i) * self.S]
        return out.reshape(idx.shape)

    def __array__(self, dtype=None, copy=None):
        a = self._range(0, self.n)
        if dtype is not None and np.dtype(dtype) != a.dtype:
            return a.astype(dtype)
        return np.array(a) if copy else a

    def windows(self, starts: np.ndarray, length: int) -> np.ndarray:
        """``[len(starts), length]`` rows ``self[s : s + length]``."""
        starts = np.asarray(starts, np.int64)
        if len(self.parts) == 1:
            return np.asarray(self.parts[0][starts[:, None] + np.arange(length)])
        out = np.empty((starts.size, length), self.dtype)
        for r, s in enumerate(starts):
            out[r] = self._range(int(s), int(s) + length)
        return out


class Split:
    """An opened split: ``tokens`` (ShardedArray), ``doc_ends`` (int64 memmap), ``token_bytes``, ``meta``."""

    def __init__(self, path: str, meta: dict):
        self.path, self.meta = path, meta
        S = meta["shard_tokens"]
        self.tokens = ShardedArray(path, meta["shards"], meta["dtype"], S)
        self.token_bytes = (ShardedArray(path, meta["bytes_shards"], np.uint16, S)
                            if meta.get("bytes_shards") else None)
        n = meta["num_docs"]
        self.doc_ends = (np.memmap(os.path.join(path, "docs.bin"), dtype=np.int64, mode="r", shape=(n,))
                         if n else None)

    def manifest(self) -> list | None:
        try:
            with open(os.path.join(self.path, "manifest.json")) as f:
                return json.load(f)
        except OSError:
            return None
