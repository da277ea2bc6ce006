"""The ``text`` task: your own corpus of .txt / .jsonl(.gz|.zst) / .parquet files.

Options (``DataConfig.options``; CLI flags in brackets):

* ``data`` [``--data``]: glob(s) of corpus files (a tuple, or one string of comma-separated
  globs; a directory means every file under it);
* ``validation_data`` [``--validation-data``]: explicit validation files; without it the
  validation split is a deterministic ``validation_percent`` (default 2) of documents, chosen
  by the blake2b hash of each document's text (duplicates always land in the same split);
* ``text_field`` [``--text-field``] (default ``text``): the JSON field / parquet column;
* ``txt_lines`` [``--txt-lines``]: a ``.txt`` line is a document (default: a whole file is);
* ``skip_bad_lines`` [``--skip-bad-lines``]: skip and count unparsable JSON lines and records
  without a string text field, instead of stopping at the first with ``file:line``.

**Identity.** The cache is keyed by a *fingerprint* of the options and every file's
(absolute path, size, mtime), so any edit, added or removed file makes a new cache.  The
*corpus hash* recorded in every run (``TaskInfo.corpus_hash``) covers the options and each
file's (relative path, size, content hash), the content hash being an order-sensitive hash of
the blake2b digests of the file's documents as they are read (the same however the file was
cut into work units); the full manifest is kept beside the cache.
Both splits are built in one pass.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
import warnings

from scaling.config import ConfigError
from scaling.data import build as B
from scaling.data import files as F
from scaling.data import store

OPTIONS = ("data", "validation_data", "text_field", "txt_lines", "skip_bad_lines", "validation_percent")
VOCAB_SAMPLE_BYTES = 256 << 20  # spN / hf-bpe:N train on at most this much text, spread over the corpus


def _bool(k, v) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"data.options {k}={v!r}: must be true or false")


@dataclasses.dataclass(frozen=True)
class TextSpec:
    data: tuple
    validation_data: tuple = ()
    text_field: str = "text"
    txt_lines: bool = False
    skip_bad_lines: bool = False
    validation_percent: float = 2.0

    @classmethod
    def from_options(cls, options) -> "TextSpec":
        o = dict(options)
        unknown = sorted(set(o) - set(OPTIONS))
        if unknown:
            raise ConfigError(f"data.options {unknown}: unknown text option; known: {list(OPTIONS)}")
        data = tuple(F.split_globs(o.get("data")))
        if not data:
            raise ConfigError("data.options data: the text task needs corpus files; pass --data GLOB "
                              "(e.g. --data 'corpus/*.jsonl')")
        pct = float(o.get("validation_percent", 2.0))
        if not 0 < pct < 50:
            raise ConfigError(f"data.options validation_percent={pct}: must be in (0, 50)")
        field = str(o.get("text_field", "text"))
        if not field:
            raise ConfigError("data.options text_field: must name the JSON field / parquet column")
        return cls(data=data, validation_data=tuple(F.split_globs(o.get("validation_data"))), text_field=field,
                   txt_lines=_bool("txt_lines", o.get("txt_lines", False)),
                   skip_bad_lines=_bool("skip_bad_lines", o.get("skip_bad_lines", False)), validation_percent=pct)

    def params(self) -> dict:
        """What changes the documents read (not where the files are)."""
        return {"reader": 1, "text_field": self.text_field, "txt_lines": self.txt_lines,
                "skip_bad_lines": self.skip_bad_lines,
                "validation": "files" if self.validation_data else f"hash{self.validation_percent}"}

    def opts(self) -> dict:
        return {"text_field": self.text_field, "txt_lines": self.txt_lines, "skip_bad_lines": self.skip_bad_lines,
                "validation_percent": None if self.validation_data else self.validation_percent}


def fingerprint(spec: TextSpec, files) -> str:
    blob = json.dumps({"params": spec.params(),
                       "files": [[f.path, f.size, f.mtime_ns, f.role] for f in files]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _vocab_tag(data, vocab) -> str:
    return data.vocab if vocab.kind not in ("file", "hf-file") else f"{vocab.kind}-{vocab.hash[:12]}"


def sample_train_texts(spec: TextSpec, files, units, cap: int = VOCAB_SAMPLE_BYTES):
    """Train-split documents for training a vocabulary: every k-th unit, ~``cap`` bytes in all."""
    data_units = [u for u in units if files[u[0].file].role == "data"]
    total = sum(B.piece_bytes(files[p.file], p) for u in data_units for p in u) or 1
    stride = max(1, math.ceil(total / cap))
    counts = F.Counts()
    for u in data_units[::stride]:
        for p in u:
            for t in F.read_piece(files[p.file], p, text_field=spec.text_field, txt_lines=spec.txt_lines,
                                  skip_bad_lines=spec.skip_bad_lines, counts=counts):
                if spec.validation_data or not B.validation_bucket(
                        hashlib.blake2b(t.encode("utf-8"), digest_size=16).digest(), spec.validation_percent):
                    yield t


def open_text(data, split: str, data_dir: str, *, workers: int | None = None, backend: str = "local",
              ray_address: str | None = None, progress: bool | None = None, force: bool = False,
              unit_bytes: int = F.DEFAULT_UNIT_BYTES, shard_tokens: int = store.DEFAULT_SHARD_TOKENS):
    """(TaskInfo, store.Split, vocab) for ``split`` of a text task, building both splits on a miss."""
    from scaling.data import TaskInfo
    from scaling.data import vocab as V
    spec = TextSpec.from_options(data.options)
    files = F.list_files(list(spec.data), list(spec.validation_data))
    key = fingerprint(spec, files)
    plan: list = []

    def units():  # planned only when something is built (a warm open reads no file)
        if not plan:
            plan.append(F.plan_units(files, txt_lines=spec.txt_lines, unit_bytes=unit_bytes))
        return plan[0]
    vocab = V.get_vocab(data.vocab, data_dir=data_dir, task="text", corpus_hash=key,
                        train_texts=lambda: sample_train_texts(spec, files, units()))
    tag = _vocab_tag(data, vocab)
    paths = {s: store.split_dir(data_dir, "text", tag, s, key, vocab.hash) for s in ("train", "validation")}
    got = None if force else store.load(paths[split])
    if got is None:
        with store.build_lock(paths["train"]):
            got = None if force else store.load(paths[split], quiet=True)
            if got is None:
                built = _build(spec, files, units(), vocab, paths, key, data, data_dir, workers=workers,
                               backend=backend, ray_address=ray_address, progress=progress,
                               shard_tokens=shard_tokens)
                got = built[split]
    m = got.meta
    info = TaskInfo(name="text", split=split, vocab_size=vocab.size, num_tokens=int(m["num_tokens"]),
                    corpus_hash=m["corpus_hash"], vocab_hash=vocab.hash, entropy_rate=None, has_bytes=True,
                    num_docs=int(m["num_docs"]), vocab=data.vocab, num_bytes=int(m["num_bytes"]))
    return info, got, vocab


def _build(spec, files, units, vocab, paths, key, data, data_dir, *, workers, backend, ray_address, progress,
           shard_tokens):
    t0 = time.perf_counter()
    workers = workers or B.default_workers()
    if backend == "local":
        workers = max(1, min(workers, len(units)))
    dtype = store.token_dtype(vocab.size)
    with_bytes = not vocab.exact_table
    parts_root = os.path.join(data_dir, "cache", "text", ".parts")
    os.makedirs(parts_root, exist_ok=True)
    parts_dir = tempfile.mkdtemp(dir=parts_root, prefix=key[:16] + "-")
    writers = {s: store.SplitWriter(p, dtype, shard_tokens=shard_tokens, with_bytes=with_bytes) for s, p in paths.items()}
    total = sum(f.size for f in files)
    bar = B.Progress(f"prepare text ({data.vocab}, {workers} {backend} worker{'s' * (workers > 1)})", total,
                     enabled=progress if progress is not None else True)
    counts = F.Counts().as_dict()
    per_split = {s: {"docs": 0, "tokens": 0, "bytes": 0} for s in writers}
    piece_digests: dict[int, list] = {}
    opts = spec.opts()

    def args():
        for i, u in enumerate(units):
            yield i, {p.file: files[p.file] for p in u}, u, vocab, opts, parts_dir, dtype.name
    try:
        for res in B.ordered_map(B.tokenize_unit, args(), workers=workers, backend=backend, ray_address=ray_address):
            for s, part in res["parts"].items():
                B.copy_parts(writers[s], part, dtype, with_bytes)
                for k in ("docs", "tokens", "bytes"):
                    per_split[s][k] += part[k]
            for k, v in res["counts"].items():
                if isinstance(v, int):
                    counts[k] += v
                elif v and not counts[k]:
                    counts[k] = v
            for fi, h, n in res["digests"]:
                piece_digests.setdefault(fi, []).append((h, n))
            bar.update(docs=sum(p["docs"] for p in res["parts"].values()), nbytes=res["input_bytes"],
                       tokens=sum(p["tokens"] for p in res["parts"].values()))
        _check_counts(spec, files, per_split, counts)
    except BaseException:
        for w in writers.values():
            w.abort()
        shutil.rmtree(parts_dir, ignore_errors=True)
        raise
    shutil.rmtree(parts_dir, ignore_errors=True)
    bar.done()
    manifest = [{"rel": f.rel, "path": f.path, "size": f.size, "mtime_ns": f.mtime_ns, "role": f.role,
                 "content": "%032x-%d" % B.combine_hashes(piece_digests.get(i, []))}
                for i, f in enumerate(files)]
    corpus_hash = hashlib.sha256(json.dumps({"params": spec.params(), "files": [
        [m["rel"], m["size"], m["content"], m["role"]] for m in manifest]}, sort_keys=True).encode()).hexdigest()
    secs = round(time.perf_counter() - t0, 3)
    out = {}
    for s, w in writers.items():
        meta = {"task": "text", "split": s, "corpus_hash": corpus_hash, "fingerprint": key, "vocab_hash": vocab.hash,
                "vocab": data.vocab, "num_bytes": per_split[s]["bytes"], "stats": counts, "prepare_s": secs,
                "workers": workers, "backend": backend, "units": len(units), "input_bytes": total,
                "files": len(files)}
        out[s] = w.commit(meta, manifest)
    return out


def _check_counts(spec, files, per_split, counts) -> None:
    where = spec.data[0] if len(spec.data) == 1 else f"{len(spec.data)} globs"
    if counts["bad_lines"]:
        warnings.warn(f"data: skipped {counts['bad_lines']} bad lines (first: {counts['first_bad']})",
                      RuntimeWarning, stacklevel=4)
    if counts["invalid_utf8_docs"]:
        warnings.warn(f"data: {counts['invalid_utf8_docs']} documents had invalid UTF-8 ({counts['replaced_chars']} "
                      f"sequences replaced by U+FFFD; first: {counts['first_invalid']})", RuntimeWarning, stacklevel=4)
    if per_split["train"]["docs"] == 0:
        extra = f" ({counts['bad_lines']} bad lines skipped)" if counts["bad_lines"] else ""
        raise ConfigError(f"--data {where}: no training documents in {len(files)} files{extra}; check "
                          f"--text-field / the files' contents")
    if per_split["validation"]["docs"] == 0:
        if spec.validation_data:
            raise ConfigError(f"--validation-data {spec.validation_data[0]}: holds no documents; check the files")
        n = per_split["train"]["docs"]
        raise ConfigError(f"--data {where}: the {spec.validation_percent:g}% document-hash validation split of "
                          f"{n} documents is empty; pass --validation-data GLOB, add documents, or raise "
                          f"data.options validation_percent")
