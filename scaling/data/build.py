"""Building token caches: tokenizer processes (or Ray tasks), part files, assembly, progress.

Two shapes of input:

* **units** (files, :mod:`.files`): each unit is read *and* tokenized by one worker, which writes
  its documents' ids (and per-token bytes, doc lengths) to part files under the build's
  temporary directory and returns counters.  :func:`tokenize_unit` is the per-unit function,
  run in a process pool (``spawn``: safe after TensorFlow was imported) or as Ray tasks
  writing to the same directory, which must then be shared by the Ray nodes.
* **streams** (TFDS, seqio, pystdlib): documents come from one iterator in this process;
  batches of them are tokenized by the pool and come back in order.

The head consumes results in plan order and streams them into :class:`.store.SplitWriter`,
so the cache is the same whatever the number of workers, and peak memory is a few units'
buffers, independent of the corpus size.  At most ``2 * workers`` results are in flight.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time

import numpy as np

from scaling.config import ConfigError
from scaling.data import files as F

_FLUSH_BYTES = 1 << 20   # tokenize documents in batches of ~1 MB of text
_COPY = 1 << 23          # tokens per copy block when assembling parts


def default_workers() -> int:
    """One tokenizer process per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------- map
def ordered_map(fn, args_list, *, workers: int, backend: str = "local", ray_address: str | None = None):
    """Yield ``fn(*args)`` for each args tuple, in order, with bounded work in flight.

    ``backend='local'``: a spawn process pool of ``workers`` (inline when ``workers <= 1``);
    ``'ray'``: Ray tasks (joins ``ray_address``, else starts a local Ray of ``workers`` CPUs).
    A worker's ConfigError is re-raised here as is.
    """
    it = iter(args_list)
    if backend == "ray":
        yield from _ray_map(fn, it, workers, ray_address)
        return
    if backend != "local":
        raise ConfigError(f"--backend {backend!r}: choose local or ray")
    if workers <= 1:
        for a in it:
            yield fn(*a)
        return
    import concurrent.futures as cf
    import multiprocessing as mp
    from collections import deque
    ex = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
    pending: deque = deque()
    try:
        for a in it:
            pending.append(ex.submit(fn, *a))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for p in pending:
            p.cancel()
        ex.shutdown(wait=True, cancel_futures=True)


def _ray_map(fn, it, workers, address):
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray: ray is not installed; pip install 'scaling[ray]'") from None
    started = False
    if not ray.is_initialized():
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        os.environ["PYTHONPATH"] = os.pathsep.join([repo] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        kw = dict(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
        ray.init(address=address, **kw) if address else ray.init(num_cpus=max(1, workers), **kw)
        started = True
    remote = ray.remote(num_cpus=1, max_retries=1)(fn)
    from collections import deque
    pending: deque = deque()
    width = 2 * max(1, workers if not address else int(ray.cluster_resources().get("CPU", workers)))

    def get(ref):
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, ConfigError):
                raise ConfigError(str(cause)) from None
            raise
    try:
        for a in it:
            pending.append(remote.remote(*a))
            if len(pending) >= width:
                yield get(pending.popleft())
        while pending:
            yield get(pending.popleft())
    finally:
        for r in pending:
            ray.cancel(r, force=True)
        if started:
            ray.shutdown()


# ---------------------------------------------------------------------------------------- units
class _Parts:
    """A worker's output for one split: token ids, doc lengths and optional per-token bytes."""

    def __init__(self, prefix: str, dtype, with_bytes: bool):
        self.prefix, self.dtype, self.with_bytes = prefix, np.dtype(dtype), with_bytes
        self.f = {k: open(f"{prefix}.{k}", "wb") for k in (("tok", "len", "bytes") if with_bytes else ("tok", "len"))}
        self.docs = self.tokens = self.bytes = 0

    def write(self, vocab, texts: list[str], nbytes: int) -> None:
        ids, lens, tb = vocab.encode_docs(texts)
        if ids.size and ids.max() >= np.iinfo(self.dtype).max + 1:
            raise AssertionError("token id does not fit the cache dtype")
        self.f["tok"].write(ids.astype(self.dtype).tobytes())
        self.f["len"].write(lens.astype(np.int64).tobytes())
        if self.with_bytes:
            self.f["bytes"].write(tb.astype(np.uint16).tobytes())
        self.docs += len(texts)
        self.tokens += int(ids.size)
        self.bytes += nbytes

    def close(self) -> dict:
        for f in self.f.values():
            f.close()
        return {"prefix": self.prefix, "docs": self.docs, "tokens": self.tokens, "bytes": self.bytes}


# Content hashes are polynomial hashes over the documents' blake2b digests, mod a Mersenne prime:
# order-sensitive, and the hash of a file is the same however it was cut into units, because
# hash(A + B) = hash(A) * BASE ** len(B) + hash(B).
HASH_MOD = (1 << 127) - 1
HASH_BASE = 0x9E3779B97F4A7C15F39CC0605CEDC835 % HASH_MOD


def combine_hashes(pieces) -> tuple[int, int]:
    """(hash, count) of the concatenation of pieces given as (hash, count) in order."""
    h, n = 0, 0
    for ph, pn in pieces:
        h = (h * pow(HASH_BASE, pn, HASH_MOD) + ph) % HASH_MOD
        n += pn
    return h, n


def validation_bucket(digest: bytes, percent: float) -> bool:
    """Whether a document (by the blake2b digest of its UTF-8) is in the ~``percent``% validation split."""
    return int.from_bytes(digest[:8], "little") % 10_000 < int(round(percent * 100))


def tokenize_unit(index: int, files: list, pieces: list, vocab, opts: dict, out_dir: str, dtype: str) -> dict:
    """Read and tokenize one unit into part files under ``out_dir`` (the per-unit function).

    ``opts``: text_field, txt_lines, skip_bad_lines, validation_percent (None: explicit
    validation files).  Returns per-split part info, per-piece content digests and counters.
    """
    counts = F.Counts()
    with_bytes = not vocab.exact_table
    parts = {s: _Parts(os.path.join(out_dir, f"u{index:06d}-{s}"), dtype, with_bytes) for s in ("train", "validation")}
    buf = {"train": [], "validation": []}
    size = {"train": 0, "validation": 0}
    digests = []
    pct = opts.get("validation_percent")
    for piece in pieces:
        f = files[piece.file]
        h, count = 0, 0
        for text in F.read_piece(f, piece, text_field=opts["text_field"], txt_lines=opts["txt_lines"],
                                 skip_bad_lines=opts["skip_bad_lines"], counts=counts):
            b = text.encode("utf-8")
            d = hashlib.blake2b(b, digest_size=16).digest()
            h = (h * HASH_BASE + int.from_bytes(d, "little")) % HASH_MOD
            count += 1
            if f.role == "validation":
                split = "validation"
            elif pct is not None and validation_bucket(d, pct):
                split = "validation"
            else:
                split = "train"
            buf[split].append(text)
            size[split] += len(b)
            if size[split] >= _FLUSH_BYTES:
                parts[split].write(vocab, buf[split], size[split])
                buf[split], size[split] = [], 0
        digests.append([piece.file, h, count])
    for s in parts:
        if buf[s]:
            parts[s].write(vocab, buf[s], size[s])
    return {"index": index, "parts": {s: p.close() for s, p in parts.items()}, "digests": digests,
            "counts": counts.as_dict(), "input_bytes": sum(piece_bytes(files[p.file], p) for p in pieces)}


def piece_bytes(f, piece) -> int:
    return (piece.end - piece.start) if piece.end is not None else f.size


def copy_parts(writer, part: dict, dtype, with_bytes: bool) -> None:
    """Stream one worker's part files into a SplitWriter, then delete them."""
    prefix = part["prefix"]
    dt = np.dtype(dtype)
    with open(prefix + ".tok", "rb") as ft, open(prefix + ".len", "rb") as fl:
        fb = open(prefix + ".bytes", "rb") if with_bytes else None
        try:
            lens = np.frombuffer(fl.read(), np.int64)
            writer.add(np.zeros(0, dt), lens)
            while True:
                t = np.frombuffer(ft.read(_COPY * dt.itemsize), dt)
                if not t.size:
                    break
                tb = np.frombuffer(fb.read(t.size * 2), np.uint16) if fb else None
                writer.add(t, (), tb)
        finally:
            if fb:
                fb.close()
    for k in ("tok", "len", "bytes"):
        try:
            os.remove(f"{prefix}.{k}")
        except FileNotFoundError:
            pass


# ---------------------------------------------------------------------------------------- streams
def _encode_batch(vocab, texts):
    return vocab.encode_docs(texts)


def stream_batches(docs, flush_bytes: int = _FLUSH_BYTES):
    """Group an iterator of texts into lists of ~``flush_bytes`` (yields (texts, utf8 bytes))."""
    buf, n = [], 0
    for t in docs:
        buf.append(t)
        n += len(t.encode("utf-8"))
        if n >= flush_bytes:
            yield buf, n
            buf, n = [], 0
    if buf:
        yield buf, n


def tokenize_stream(docs, vocab, writer, *, workers: int, progress=None) -> dict:
    """Tokenize an iterator of documents into ``writer`` (a pool tokenizes when workers > 1)."""
    batches = stream_batches(docs)
    sizes: list[int] = []
    ndocs = nbytes = 0

    def args():
        for texts, n in batches:
            sizes.append(n)
            yield vocab, texts
    for i, (ids, lens, tb) in enumerate(ordered_map(_encode_batch, args(), workers=workers)):
        writer.add(ids.astype(writer.tokens.dtype), lens, tb)
        ndocs += len(lens)
        nbytes += sizes[i]
        if progress:
            progress.update(docs=len(lens), nbytes=sizes[i], tokens=int(ids.size))
    return {"num_docs": ndocs, "num_bytes": nbytes}


# ---------------------------------------------------------------------------------------- progress
class Progress:
    """Documents, MB and tokens/s on stderr: a live line on a terminal, else a line every 10 s."""

    def __init__(self, label: str, total_bytes: int | None = None, *, stream=None, enabled: bool = True):
        self.label, self.total = label, total_bytes
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self.last = self.t0
        self.printed = False
        self.docs = self.nbytes = self.tokens = 0
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def update(self, *, docs: int = 0, nbytes: int = 0, tokens: int = 0) -> None:
        self.docs += docs
        self.nbytes += nbytes
        self.tokens += tokens
        now = time.perf_counter()
        if self.enabled and now - self.last >= (0.5 if self.tty else 10.0):
            self.last = now
            self.printed = True
            self._print(end="\r" if self.tty else "\n")

    def line(self) -> str:
        dt = max(time.perf_counter() - self.t0, 1e-9)
        mb = self.nbytes / 1e6
        tot = f"/{self.total / 1e6:,.1f}" if self.total else ""
        return (f"{self.label}: {self.docs:,} docs  {mb:,.1f}{tot} MB  {self.tokens:,} tokens  "
                f"{mb / dt:,.1f} MB/s  {self.tokens / dt / 1e6:,.2f}M tok/s  {dt:,.0f}s")

    def _print(self, end="\n") -> None:
        print(self.line(), end=end, file=self.stream, flush=True)

    def done(self) -> None:
        if self.enabled and self.printed:
            self._print()
