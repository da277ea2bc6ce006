"""Hugging Face ``tokenizers`` vocabularies: ``tokenizer.json`` files and offline byte-level BPE.

**Ids.** Our convention is pad 0 and EOS 1.  A tokenizer whose id 0 is a special padding token
and id 1 a special token (T5-style, or our own ``hf-bpe:N``) keeps its ids; any other (GPT-2,
Llama-3: id 0 is ``"!"``) has every id shifted up by 2, so the embedding has ``n + 2`` rows.
Special tokens are never produced from text (``encode_special_tokens``): a document that
contains ``"<|endoftext|>"`` is tokenized as those characters, so no text can end a document
early or pose as padding.

**Bytes.** A plain byte-level BPE (no normaliser, ``ByteLevel`` pre-tokenizer without a prefix
space, no stripping added tokens) maps every id to a fixed byte string, so the table is exact.
Anything else gets per-token bytes from the encoding's character offsets into the original
text (:func:`scaling.data.vocab.bytes_from_starts`), exact by construction.

``hf-bpe:N`` trains a byte-level BPE of N ids (``<pad>`` = 0, ``</s>`` = 1, the 256 byte
symbols, merges) on the train split, offline, and caches it as a ``tokenizer.json``.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from scaling.config import ConfigError
from scaling.data.vocab import EOS_ID, bytes_from_starts, join_docs as join, read_bytes

PAD_NAMES = ("<pad>", "[PAD]", "<|pad|>", "<|padding|>")
_PLAIN_PRETOK = ("Split", "Digits", "Punctuation", "WhitespaceSplit", "ByteLevel")


def _import():
    try:
        import tokenizers
    except ImportError:
        raise ConfigError("data.vocab: tokenizer.json and hf-bpe:N need the 'tokenizers' package; "
                          "pip install tokenizers") from None
    return tokenizers


def _byte_decoder() -> dict[str, int]:
    """The inverse of GPT-2's bytes_to_unicode: byte-level symbol -> byte value."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _is_plain_byte_level(cfg: dict) -> bool:
    if cfg.get("normalizer") is not None:
        return False
    pre = cfg.get("pre_tokenizer") or {}
    items = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    if not items or items[-1].get("type") != "ByteLevel" or items[-1].get("add_prefix_space"):
        return False
    if any(p.get("type") not in _PLAIN_PRETOK for p in items):
        return False
    if (cfg.get("model") or {}).get("type") != "BPE":
        return False
    for t in cfg.get("added_tokens", []):
        if not t.get("special") and (t.get("lstrip") or t.get("rstrip") or t.get("normalized")):
            return False
    return True


class HFVocab:
    """A ``tokenizers.Tokenizer`` behind the :class:`scaling.data.vocab.Vocab` interface."""

    def __init__(self, json_text: str, path: str | None = None, *, nominal: int | None = None, kind: str = "hf-file"):
        tk = _import()
        self.kind, self.path, self._json = kind, path, json_text
        self._nominal = nominal
        try:
            tok = tk.Tokenizer.from_str(json_text)
            cfg = json.loads(json_text)
        except Exception as e:  # noqa: BLE001 - a Rust panic, a JSON error...: the same fix
            raise ConfigError(f"data.vocab={path!r}: not a valid Hugging Face tokenizer.json "
                              f"({type(e).__name__}: {str(e)[:120]}); give a file saved by "
                              f"tokenizers.Tokenizer.save") from None
        tok.encode_special_tokens = True
        self._tok = tok
        self.hash = hashlib.sha256(json_text.encode("utf-8")).hexdigest()
        n = tok.get_vocab_size(with_added_tokens=True)
        special = {t["id"] for t in cfg.get("added_tokens", []) if t.get("special")}
        keep = tok.id_to_token(0) in PAD_NAMES and 0 in special and 1 in special
        self.shift = 0 if keep else 2
        self.n = n
        size = n + self.shift
        self.nominal_size = max(size, nominal or 0)
        self.exact_table = _is_plain_byte_level(cfg)
        table = np.zeros(self.nominal_size, np.int32)
        added = {t["id"]: t for t in cfg.get("added_tokens", [])}
        dec = _byte_decoder()
        for i in range(n):
            if i in added:
                t = added[i]
                table[i + self.shift] = 0 if t.get("special") else len(t["content"].encode("utf-8"))
                continue
            s = tok.id_to_token(i) or ""
            if self.exact_table and all(c in dec for c in s):
                table[i + self.shift] = len(s)
            elif self.exact_table:
                self.exact_table = False  # a symbol outside the byte alphabet: use offsets
        self.bytes_per_id = table

    def __reduce__(self):
        return (_rebuild, (self._json, self.path, self._nominal, self.kind))

    @property
    def size(self) -> int:
        return self.nominal_size

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, np.int64) + self.shift

    def encode_docs(self, texts: list[str]):
        encs = self._tok.encode_batch(texts, add_special_tokens=False)
        ids = [e.ids for e in encs]
        out = join(ids)
        if self.shift:
            eos = np.cumsum([len(x) + 1 for x in ids]) - 1
            out += self.shift
            out[eos] = EOS_ID
        lens = np.fromiter((len(x) + 1 for x in ids), np.int64, len(ids))
        if self.exact_table:
            return out, lens, None
        nbytes = []
        for t, e in zip(texts, encs):
            starts = np.fromiter((o[0] for o in e.offsets), np.int64, len(e.offsets))
            if not t.isascii():  # offsets are in characters: convert to UTF-8 byte positions
                cp = np.frombuffer(t.encode("utf-32-le"), np.uint32)
                width = 1 + (cp >= 0x80) + (cp >= 0x800) + (cp >= 0x10000)
                pos = np.concatenate([[0], np.cumsum(width)])
                starts = pos[np.minimum(starts, cp.size)]
            nbytes.append(bytes_from_starts(starts, len(t.encode("utf-8"))))
        return out, lens, join(nbytes, eos=0)

    def decode(self, ids) -> str:
        ids = [int(i) - self.shift for i in ids if int(i) > EOS_ID]
        return self._tok.decode([i for i in ids if i >= 0], skip_special_tokens=True)

    def seqio_vocabulary(self):
        raise ConfigError(f"data.vocab={self.path!r}: seqio has no Hugging Face vocabulary; the cached "
                          f"fast path (scaling.data.open_source) serves this tokenizer")


def _rebuild(json_text, path, nominal, kind):
    return HFVocab(json_text, path, nominal=nominal, kind=kind)


def load(path: str, *, nominal: int | None = None, kind: str = "hf-file") -> HFVocab:
    blob = read_bytes(path, "tokenizer.json")
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"data.vocab={path!r}: not a valid Hugging Face tokenizer.json (not UTF-8 text); "
                          f"give a file saved by tokenizers.Tokenizer.save") from None
    return HFVocab(text, path, nominal=nominal, kind=kind)


def train_bpe(texts, path: str, size: int) -> str:
    """Train a byte-level BPE of ``size`` ids (pad 0, EOS 1) on an iterable of documents."""
    tk = _import()
    from tokenizers import decoders, models, pre_tokenizers, trainers
    tok = tk.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=["<pad>", "</s>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2)
    tok.train_from_iterator(texts, trainer)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    tok.save(tmp)
    os.replace(tmp, path)
    return path
