"""Vocabularies: byte-level and SentencePiece models trained offline on a task's train split.

Two ids are reserved everywhere, following seqio/T5: **0 is padding** (seqio's packing and
the model treat id 0 as "no token", so it must never be a real token) and **1 is EOS**.
``seqio.ByteVocabulary`` already follows this (byte ``b`` has id ``b + 3``); our
SentencePiece models are trained with ``pad_id=0, eos_id=1, unk_id=2, bos_id=-1``.

SentencePiece models are trained with **BPE**: on the 31 MB stdlib corpus it trains in
2-5 s for any size, while unigram takes 20-230 s (and cannot reach 32k on a 200k-line
sample).  Options keep code intact: identity normalisation, no whitespace collapsing, no
dummy prefix (so a token's bytes are exactly the bytes of its piece), ``\\n``/``\\t`` as
user symbols, and byte fallback so nothing is ever ``<unk>``.

Models are cached by (corpus hash, vocab size) under ``<data_dir>/vocab/``.  ``vocab_hash``
is the sha256 of the serialized model (or of the string ``"byte"``).

Bits per byte need the UTF-8 bytes behind each token.  With the options above that is a
pure function of the id, so we keep a lookup table ``bytes_per_id`` (``0`` for pad, EOS
and unk; ``1`` for a byte-fallback piece; otherwise the UTF-8 length of the piece with
``▁`` read as a space).  Summed over a document's tokens it equals ``len(text.encode())``
(tested).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile

import numpy as np

from scaling.config import ConfigError

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
BYTE_VOCAB_SIZE = 259  # seqio.ByteVocabulary: 3 specials + 256 bytes

_SP_RE = re.compile(r"^sp(\d+)$")


def parse_vocab(spec: str) -> tuple[str, int | str]:
    """``'byte'`` -> ('byte', 259); ``'sp1024'`` -> ('sp', 1024); ``'x.model'`` -> ('file', path)."""
    if spec == "byte":
        return "byte", BYTE_VOCAB_SIZE
    m = _SP_RE.match(spec or "")
    if m:
        n = int(m.group(1))
        if n < 300:
            raise ConfigError(f"data.vocab={spec!r}: SentencePiece needs >= 300 pieces "
                              f"(256 byte-fallback pieces + specials); use e.g. sp512 or byte")
        return "sp", n
    if spec and (spec.endswith(".model") or "/" in spec):
        return "file", spec
    raise ConfigError(f"data.vocab={spec!r}: use 'byte', 'spN' (e.g. sp1024) or a path to a "
                      f"SentencePiece .model file")


class Vocab:
    """A tokenizer with no TensorFlow: encode text to ids; ids -> UTF-8 byte counts.

    ``seqio_vocabulary()`` gives the equivalent ``seqio.Vocabulary`` (ids are identical:
    the in-graph tf_text tokenizer and the Python sentencepiece library agree).
    """

    def __init__(self, kind: str, size: int, model_bytes: bytes | None = None, path: str | None = None):
        self.kind = kind
        self.nominal_size = size
        self.path = path
        self._sp = None
        if kind == "byte":
            self.hash = hashlib.sha256(b"byte").hexdigest()
            table = np.ones(BYTE_VOCAB_SIZE, np.int32)
            table[:3] = 0
        else:
            import sentencepiece as spm
            self._sp = spm.SentencePieceProcessor()
            self._sp.LoadFromSerializedProto(model_bytes)
            self.hash = hashlib.sha256(model_bytes).hexdigest()
            n = self._sp.GetPieceSize()
            table = np.zeros(max(n, size), np.int32)
            for i in range(n):
                if self._sp.IsControl(i) or self._sp.IsUnknown(i):
                    continue
                if self._sp.IsByte(i):
                    table[i] = 1
                else:
                    table[i] = len(self._sp.IdToPiece(i).replace("\u2581", " ").encode("utf-8"))
        self.bytes_per_id = table

    @property
    def size(self) -> int:
        """Embedding size: ids are always < size."""
        return self.nominal_size

    def encode(self, text: str) -> np.ndarray:
        if self.kind == "byte":
            return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32) + 3
        return np.asarray(self._sp.EncodeAsIds(text), np.int32)

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids if int(i) > EOS_ID]
        if self.kind == "byte":
            return bytes(i - 3 for i in ids if i >= 3).decode("utf-8", "replace")
        return self._sp.DecodeIds(ids)

    def seqio_vocabulary(self):
        import seqio
        if self.kind == "byte":
            return seqio.ByteVocabulary()
        return seqio.SentencePieceVocabulary(self.path, extra_ids=0)


def _read_bytes(path: str) -> bytes:
    if path.startswith("gs://") or "://" in path:
        try:
            import tensorflow as tf
            with tf.io.gfile.GFile(path, "rb") as f:
                return f.read()
        except Exception as e:  # noqa: BLE001 - any failure means the same fix
            raise ConfigError(f"data.vocab={path!r}: cannot read the SentencePiece model ({type(e).__name__}); "
                              f"check the path or copy the .model file locally") from None
    if not os.path.isfile(path):
        raise ConfigError(f"data.vocab={path!r}: SentencePiece model file not found; "
                          f"give an existing .model path or use 'byte' / 'spN'")
    with open(path, "rb") as f:
        return f.read()


def load_file_vocab(path: str) -> Vocab:
    blob = _read_bytes(path)
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(blob)
    except Exception:  # noqa: BLE001
        raise ConfigError(f"data.vocab={path!r}: not a valid SentencePiece model; "
                          f"give a .model file written by SentencePieceTrainer") from None
    if sp.pad_id() == 0 and sp.eos_id() == 1:
        pass
    elif sp.PieceToId("<pad>") != 0:
        raise ConfigError(f"data.vocab={path!r}: id 0 must be padding (pad_id=0, eos_id=1), "
                          f"as seqio packing treats 0 as pad; retrain with pad_id=0 eos_id=1")
    return Vocab("file", sp.GetPieceSize(), blob, path=path)


def sp_model_path(data_dir: str, task: str, corpus_hash: str, size: int) -> str:
    return os.path.join(data_dir, "vocab", f"{task}-{corpus_hash[:16]}", f"sp{size}.model")


def train_sentencepiece(texts, prefix: str, size: int) -> str:
    """Train a BPE SentencePiece model on an iterable of documents; returns the .model path."""
    import sentencepiece as spm
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(prefix)) as td:
        txt = os.path.join(td, "train.txt")
        with open(txt, "w", encoding="utf-8") as f:
            for t in texts:
                f.write(t if t.endswith("\n") else t + "\n")
        tmp_prefix = os.path.join(td, "m")
        spm.SentencePieceTrainer.train(
            input=txt, model_prefix=tmp_prefix, vocab_size=size, model_type="bpe",
            input_sentence_size=400_000, shuffle_input_sentence=True,
            normalization_rule_name="identity", remove_extra_whitespaces=False,
            add_dummy_prefix=False, allow_whitespace_only_pieces=True, split_digits=True,
            byte_fallback=True, character_coverage=0.9999, user_defined_symbols=["\n", "\t"],
            pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1, num_threads=2,
            max_sentencepiece_length=16, hard_vocab_limit=False, minloglevel=2)
        os.replace(tmp_prefix + ".model", prefix + ".model")
    return prefix + ".model"


def get_vocab(spec: str, *, data_dir: str, task: str, corpus_hash: str | None, train_texts=None) -> Vocab:
    """The vocabulary ``spec`` for a task; trains and caches an ``spN`` model if needed.

    ``train_texts`` is a zero-argument callable returning an iterable of train documents
    (only called on a cache miss).
    """
    kind, arg = parse_vocab(spec)
    if kind == "byte":
        return Vocab("byte", BYTE_VOCAB_SIZE)
    if kind == "file":
        return load_file_vocab(arg)
    path = sp_model_path(data_dir, task, corpus_hash, arg)
    if not os.path.isfile(path):
        if train_texts is None:
            raise ConfigError(f"data.vocab={spec!r}: no trained model for task {task!r}; "
                              f"use 'byte' or a .model path")
        train_sentencepiece(train_texts(), path[: -len(".model")], arg)
    with open(path, "rb") as f:
        blob = f.read()
    return Vocab("sp", arg, blob, path=path)
