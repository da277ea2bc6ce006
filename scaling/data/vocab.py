"""Vocabularies: byte-level, SentencePiece and Hugging Face ``tokenizers``, all offline.

Specs (``DataConfig.vocab`` / ``--vocab``):

* ``byte`` - ``seqio.ByteVocabulary`` ids (byte ``b`` is id ``b + 3``), 259 ids;
* ``spN`` - a SentencePiece BPE model of N pieces trained offline on the task's train split;
* ``hf-bpe:N`` - a byte-level BPE of N ids trained offline with ``tokenizers`` on the train split;
* a path ending in ``.json`` - a Hugging Face ``tokenizer.json`` (GPT-2, Llama-3 style, ...);
* any other path (``.model``) - a SentencePiece model file.

Two ids are reserved everywhere, following seqio/T5: **0 is padding** (seqio's packing and the
model treat 0 as "no token") and **1 is EOS** (ends every document).  SentencePiece models are
trained with ``pad_id=0, eos_id=1, unk_id=2, bos_id=-1``; a ``tokenizer.json`` whose id 0 is not
a padding token has every id shifted up by 2 (:mod:`.hf_vocab`).

SentencePiece models are trained with **BPE** (2-5 s on the 31 MB stdlib for any size; unigram
took 20-230 s).  Options keep text intact: identity normalisation, no whitespace collapsing,
no dummy prefix, ``\\n``/``\\t`` as user symbols and byte fallback (nothing is ever ``<unk>``).
Trained models are cached by (task, corpus key, size) under ``<data_dir>/vocab/``.
``vocab_hash`` is the sha256 of the serialized model (or of the string ``"byte"``).

**Bits per byte** need the UTF-8 bytes behind each token, summing over a document to exactly
``len(text.encode())``.  Where that is a function of the id (``exact_table``: byte, our trained
models, plain byte-level BPE files, SentencePiece files with identity normalisation, no dummy
prefix and byte fallback) it is the table ``bytes_per_id`` (0 for pad, EOS and unk; 1 for a
byte piece; else the piece's UTF-8 length with ``▁`` read as a space).  For every other
tokenizer :meth:`Vocab.encode_docs` returns per-token byte counts from the tokenizer's offsets
into the original text (each token owns the bytes from its start to the next token's start),
which the token cache stores beside the ids.  Both are tested to sum exactly.
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
_HF_RE = re.compile(r"^hf-bpe:(\d+)$")
_TRAINED = (  # (kind, spec pattern, smallest size, why)
    ("sp", _SP_RE, 300, "SentencePiece needs >= 300 pieces (256 byte-fallback pieces + specials); use e.g. "
                        "sp512 or byte"),
    ("hf-bpe", _HF_RE, 260, "a byte-level BPE needs >= 260 ids (256 bytes + pad, EOS and merges); use e.g. "
                            "hf-bpe:4096"),
)
VOCAB_HELP = ("'byte', 'spN' (e.g. sp1024), 'hf-bpe:N' (e.g. hf-bpe:32000), a tokenizer.json path "
              "or a SentencePiece .model path")


def parse_vocab(spec: str) -> tuple[str, int | str]:
    """``byte`` -> ('byte', 259); ``sp1024`` -> ('sp', 1024); ``hf-bpe:N`` -> ('hf-bpe', N);
    ``x.json`` -> ('hf-file', path); ``x.model`` (or any path) -> ('file', path)."""
    if spec == "byte":
        return "byte", BYTE_VOCAB_SIZE
    for kind, regex, least, why in _TRAINED:
        m = regex.match(spec or "")
        if m:
            n = int(m.group(1))
            if n < least:
                raise ConfigError(f"data.vocab={spec!r}: {why}")
            return kind, n
    if spec and spec.endswith(".json"):
        return "hf-file", spec
    if spec and (spec.endswith(".model") or "/" in spec):
        return "file", spec
    raise ConfigError(f"data.vocab={spec!r}: use {VOCAB_HELP}")


def bytes_from_starts(starts: np.ndarray, total: int) -> np.ndarray:
    """Per-token byte counts from each token's start offset: token i owns [start_i, start_i+1).

    The first token also owns any bytes before it, so the counts sum to ``total`` exactly.
    Counts are stored as uint16; a (pathological) token spanning more carries the rest forward.
    """
    s = np.maximum.accumulate(np.asarray(starts, np.int64)) if len(starts) else np.zeros(0, np.int64)
    if s.size == 0:
        return np.zeros(0, np.int64)
    s[0] = 0
    out = np.diff(np.append(np.minimum(s, total), total))
    if out.size and out.max() > 65535:
        carry = 0
        for i in range(out.size):
            v = out[i] + carry
            out[i] = min(v, 65535)
            carry = v - out[i]
        out[-1] += carry
    return out


class Vocab:
    """A tokenizer without TensorFlow: text -> ids, ids -> text, ids -> UTF-8 byte counts.

    ``size``: embedding rows (ids are always < size).  ``exact_table``: ``bytes_per_id`` is
    exact (else :meth:`encode_docs` returns per-token bytes).  ``seqio_vocabulary()`` gives the
    equivalent ``seqio.Vocabulary`` for byte and SentencePiece (identical ids).  Picklable, so
    tokenizer processes receive it whole.
    """

    def __init__(self, kind: str, size: int, model_bytes: bytes | None = None, path: str | None = None):
        self.kind = kind
        self.nominal_size = size
        self.path = path
        self._blob = model_bytes
        self._sp = None
        self.exact_table = True
        if kind == "byte":
            self.hash = hashlib.sha256(b"byte").hexdigest()
            table = np.ones(BYTE_VOCAB_SIZE, np.int32)
            table[:3] = 0
        else:
            import sentencepiece as spm
            self._sp = spm.SentencePieceProcessor()
            self._sp.LoadFromSerializedProto(model_bytes)
            self.hash = hashlib.sha256(model_bytes).hexdigest()
            if kind == "file":
                self.exact_table = _sp_is_exact(model_bytes)
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

    def __reduce__(self):
        return (Vocab, (self.kind, self.nominal_size, self._blob, self.path))

    @property
    def size(self) -> int:
        """Embedding size: ids are always < size."""
        return self.nominal_size

    def encode(self, text: str) -> np.ndarray:
        if self.kind == "byte":
            return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32) + 3
        return np.asarray(self._sp.EncodeAsIds(text), np.int32)

    def encode_docs(self, texts: list[str]):
        """Tokenize documents, each followed by EOS: (ids int64, lengths incl. EOS, per-token bytes or None)."""
        if not texts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), None
        if self.kind == "byte":
            raw = [t.encode("utf-8") for t in texts]
            lens = np.fromiter((len(b) + 1 for b in raw), np.int64, len(raw))
            body = np.frombuffer(b"".join(raw), np.uint8)
            out = np.empty(int(lens.sum()), np.int64)
            eos = np.cumsum(lens) - 1
            mask = np.ones(out.size, bool)
            mask[eos] = False
            out[mask] = body.astype(np.int64) + 3
            out[eos] = EOS_ID
            return out, lens, None
        if self.exact_table:
            pieces = self._sp.EncodeAsIds(texts)
            return join_docs(pieces), np.fromiter((len(p) + 1 for p in pieces), np.int64, len(pieces)), None
        protos = self._sp.encode(texts, return_type="proto")
        ids, nbytes = [], []
        for t, pr in zip(texts, protos):
            ids.append([p.id for p in pr.pieces])
            nbytes.append(bytes_from_starts(np.array([p.begin for p in pr.pieces], np.int64),
                                            len(t.encode("utf-8"))))
        return (join_docs(ids), np.fromiter((len(p) + 1 for p in ids), np.int64, len(ids)),
                join_docs(nbytes, eos=0))

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


def join_docs(lists, eos: int = EOS_ID) -> np.ndarray:
    """Concatenate per-document id lists, each followed by ``eos``."""
    n = sum(len(x) for x in lists) + len(lists)
    out = np.empty(n, np.int64)
    i = 0
    for x in lists:
        k = len(x)
        out[i:i + k] = x
        out[i + k] = eos
        i += k + 1
    return out


def _sp_is_exact(blob: bytes) -> bool:
    """Whether a SentencePiece model's piece lengths are exactly the bytes of the original text."""
    try:
        from sentencepiece import sentencepiece_model_pb2 as pb
        mp = pb.ModelProto()
        mp.ParseFromString(blob)
    except Exception:  # noqa: BLE001 - unknown layout: use offsets, which are always exact
        return False
    ns = mp.normalizer_spec
    return (ns.name == "identity" and not ns.add_dummy_prefix and not ns.remove_extra_whitespaces
            and mp.trainer_spec.byte_fallback)


def read_bytes(path: str, what: str = "SentencePiece model") -> bytes:
    if "://" in path:
        try:
            import tensorflow as tf
            with tf.io.gfile.GFile(path, "rb") as f:
                return f.read()
        except Exception as e:  # noqa: BLE001 - any failure means the same fix
            raise ConfigError(f"data.vocab={path!r}: cannot read the {what} ({type(e).__name__}); "
                              f"check the path or copy the file locally") from None
    if not os.path.isfile(path):
        raise ConfigError(f"data.vocab={path!r}: {what} file not found; give an existing path or use "
                          f"'byte' / 'spN' / 'hf-bpe:N'")
    with open(path, "rb") as f:
        return f.read()


def load_file_vocab(path: str) -> Vocab:
    blob = read_bytes(path)
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(blob)
    except Exception:  # noqa: BLE001
        raise ConfigError(f"data.vocab={path!r}: not a valid SentencePiece model; "
                          f"give a .model file written by SentencePieceTrainer (or a tokenizer.json)") from None
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


def nominal_size(spec: str) -> int:
    """Embedding rows of ``spec`` without training anything (loads a file spec)."""
    kind, arg = parse_vocab(spec)
    if kind == "file":
        return load_file_vocab(arg).size
    if kind == "hf-file":
        from scaling.data import hf_vocab
        return hf_vocab.load(arg).size
    return arg


def get_vocab(spec: str, *, data_dir: str, task: str, corpus_hash: str | None, train_texts=None):
    """The vocabulary ``spec`` for a task; trains and caches ``spN`` / ``hf-bpe:N`` if needed.

    ``train_texts`` is a zero-argument callable returning an iterable of train documents
    (only called on a cache miss).  ``corpus_hash`` keys the trained model.
    """
    kind, arg = parse_vocab(spec)
    if kind == "byte":
        return Vocab("byte", BYTE_VOCAB_SIZE)
    if kind == "file":
        return load_file_vocab(arg)
    from scaling.data import hf_vocab
    if kind == "hf-file":
        return hf_vocab.load(arg)
    if kind == "hf-bpe":
        path = os.path.join(data_dir, "vocab", f"{task}-{corpus_hash[:16]}", f"hf-bpe{arg}.json")
        if not os.path.isfile(path):
            if train_texts is None:
                raise ConfigError(f"data.vocab={spec!r}: no trained tokenizer for task {task!r}; "
                                  f"use 'byte' or a tokenizer.json path")
            hf_vocab.train_bpe(train_texts(), path, arg)
        return hf_vocab.load(path, nominal=arg, kind="hf-bpe")
    path = sp_model_path(data_dir, task, corpus_hash, arg)
    if not os.path.isfile(path):
        if train_texts is None:
            raise ConfigError(f"data.vocab={spec!r}: no trained model for task {task!r}; "
                              f"use 'byte' or a .model path")
        train_sentencepiece(train_texts(), path[: -len(".model")], arg)
    with open(path, "rb") as f:
        blob = f.read()
    return Vocab("sp", arg, blob, path=path)
