"""Token caches: a task split tokenized once into a flat array on disk.

Layout: ``<data_dir>/cache/<task>/<vocab tag>/<split>-<corpus hash[:16]>-<vocab hash[:16]>/``
holding ``tokens.npy`` (uint16 when the vocabulary fits, else int32) and ``meta.json``
(``sha256`` of the array file, ``num_tokens``, ``num_docs``, hashes, provenance).  The array
is the stream of documents, each followed by EOS (id 1) for text tasks.

Writes are atomic (temp dir + rename; if a concurrent process wrote a valid cache first, it is kept).  On open the file's sha256 is checked against the
meta (~0.1 s for 30 MB); a mismatch or an unreadable file means a corrupt cache: we warn
and rebuild it rather than train on wrong data.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings

import numpy as np


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 22)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def cache_dir(data_dir: str, task: str, vocab_tag: str, split: str, corpus_hash: str, vocab_hash: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in vocab_tag)
    return os.path.join(data_dir, "cache", task, safe, f"{split}-{corpus_hash[:16]}-{vocab_hash[:16]}")


def load(path: str):
    """(tokens memmap, meta) if the cache at ``path`` exists and its hash matches, else None.

    Warns when a cache exists but is corrupt (the caller then rebuilds it).
    """
    meta_p, tok_p = os.path.join(path, "meta.json"), os.path.join(path, "tokens.npy")
    if not os.path.exists(path):
        return None
    try:
        with open(meta_p) as f:
            meta = json.load(f)
        if file_sha256(tok_p) != meta["sha256"]:
            raise ValueError("sha256 mismatch")
        tokens = np.load(tok_p, mmap_mode="r")
        if tokens.shape != (meta["num_tokens"],):
            raise ValueError("shape mismatch")
        return tokens, meta
    except (OSError, ValueError, KeyError) as e:
        warnings.warn(f"token cache {path} is corrupt ({e}); rebuilding it", RuntimeWarning, stacklevel=3)
        shutil.rmtree(path, ignore_errors=True)
        return None


def write(path: str, tokens: np.ndarray, meta: dict) -> tuple[np.ndarray, dict]:
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-")
    tok_p = os.path.join(tmp, "tokens.npy")
    np.save(tok_p, tokens)
    meta = dict(meta, sha256=file_sha256(tok_p), num_tokens=int(tokens.shape[0]), dtype=str(tokens.dtype))
    with open(os.path.join(tmp, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    try:
        os.rename(tmp, path)
    except OSError:  # the directory exists: a concurrent writer finished first
        if _valid(path):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            shutil.rmtree(path, ignore_errors=True)
            os.rename(tmp, path)
    with open(os.path.join(path, "meta.json")) as f:
        meta = json.load(f)
    return np.load(os.path.join(path, "tokens.npy"), mmap_mode="r"), meta


def _valid(path: str) -> bool:
    try:
        with open(os.path.join(path, "meta.json")) as f:
            return file_sha256(os.path.join(path, "tokens.npy")) == json.load(f)["sha256"]
    except (OSError, ValueError, KeyError):
        return False


def pack_documents(token_lists, eos_id: int = 1) -> np.ndarray:
    """Concatenate documents, each followed by ``eos_id``, as uint16 (or int32 if needed)."""
    parts = []
    eos = np.array([eos_id], np.int32)
    for t in token_lists:
        parts.append(np.asarray(t, np.int32))
        parts.append(eos)
    arr = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    return arr.astype(np.uint16) if (arr.size == 0 or arr.max() < 65536) else arr
