"""The ``text`` task: formats, splits, the sharded cache, parallel builds, tokenizers, bad input."""

import gzip
import hashlib
import json
import os
import random
import subprocess
import sys
import warnings

import numpy as np
import pytest

from scaling.config import ConfigError, DataConfig
from scaling import data as D
from scaling.data import store
from scaling.data import vocab as V

from test_data import REPO, check_relations

WORDS = ("the of and to in is was for on that with as by at from his her an which def return "
         "import class self None True café naïve 日本語 données ").split()


def docs(n, seed=0, lo=3, hi=120):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))) + ("\n" if i % 3 else "")
            for i in range(n)]


def write_jsonl(path, texts, field="text", opener=open):
    with opener(path, "wt", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({field: t, "id": i}) + "\n")
    return str(path)


def text_cfg(data_dir, data, vocab="byte", **opts):
    o = (("data", data),) + tuple(opts.items())
    return DataConfig(task="text", vocab=vocab, data_dir=str(data_dir), options=o)


def read_docs(src, vocab):
    """Documents of a cached split decoded back through the document index."""
    toks = np.asarray(src.tokens)
    ends = np.asarray(src.doc_ends)
    starts = np.concatenate([[0], ends[:-1]])
    assert (toks[ends - 1] == V.EOS_ID).all() and (toks != 0).all()
    return [vocab.decode(toks[a:b - 1]) for a, b in zip(starts, ends)], starts, ends


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    texts = docs(600)
    write_jsonl(d / "a.jsonl", texts[:300])
    write_jsonl(d / "b.jsonl", texts[300:])
    return {"dir": d, "texts": texts, "glob": str(d / "*.jsonl")}


def test_jsonl_split_bytes_and_manifest(corpus, tmp_path):
    d = text_cfg(tmp_path, corpus["glob"])
    tr, va = D.open_source(d, "train", 32), D.open_source(d, "validation", 32)
    vocab = V.get_vocab("byte", data_dir=str(tmp_path), task="text", corpus_hash=None)
    got_tr, s, e = read_docs(tr, vocab)
    got_va, _, _ = read_docs(va, vocab)
    assert got_tr + got_va != corpus["texts"] and sorted(got_tr + got_va) == sorted(corpus["texts"])
    assert [t for t in corpus["texts"] if t in set(got_tr)] == got_tr  # file order kept
    assert 0 < len(got_va) < 0.1 * len(corpus["texts"])  # ~2% by content hash
    assert tr.info.corpus_hash == va.info.corpus_hash and tr.info.num_docs == len(got_tr)
    assert tr.info.num_bytes == sum(len(t.encode()) for t in got_tr)
    b = tr.batch(3, 8, seed=1)
    check_relations(b)
    assert int(vocab.bytes_per_id[np.asarray(tr.tokens)].sum()) == tr.info.num_bytes
    man = store.load(os.path.dirname(tr.tokens.parts[0].filename)).manifest()
    assert [m["rel"] for m in man] == ["a.jsonl", "b.jsonl"] and all(m["content"].endswith(f"-{n}") for m, n in zip(man, (300, 300)))


def test_formats_read_the_same_documents(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    texts = [t.strip() for t in docs(120, seed=2)]
    variants = {}
    (tmp_path / "txt").mkdir()
    for i, t in enumerate(texts):
        (tmp_path / "txt" / f"{i:04d}.txt").write_text(t, encoding="utf-8")
    variants["txt"] = (str(tmp_path / "txt" / "*.txt"), {})
    (tmp_path / "lines.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    variants["lines"] = (str(tmp_path / "lines.txt"), {"txt_lines": True})
    write_jsonl(tmp_path / "c.jsonl.gz", texts, field="body", opener=gzip.open)
    variants["gz"] = (str(tmp_path / "c.jsonl.gz"), {"text_field": "body"})
    import zstandard
    with open(tmp_path / "c.json.zst", "wb") as f:
        f.write(zstandard.ZstdCompressor().compress("".join(json.dumps({"text": t}) + "\n" for t in texts).encode()))
    variants["zst"] = (str(tmp_path / "c.json.zst"), {})
    pq.write_table(pa.table({"text": texts, "n": list(range(len(texts)))}), tmp_path / "c.parquet", row_group_size=17)
    variants["parquet"] = (str(tmp_path / "c.parquet"), {})
    hashes = set()
    for name, (glob, opts) in variants.items():
        d = text_cfg(tmp_path / "dd", glob, validation_percent=10, **opts)
        src = D.open_source(d, "train", 16)
        val = D.open_source(d, "validation", 16)
        vocab = V.Vocab("byte", V.BYTE_VOCAB_SIZE)
        got = read_docs(src, vocab)[0] + read_docs(val, vocab)[0]
        assert sorted(got) == sorted(texts), name
        hashes.add(src.info.num_tokens)
    assert len(hashes) == 1  # the same documents and split whatever the container


def _shard_hashes(src):
    return [s["sha256"] for s in store.read_meta(os.path.dirname(src.tokens.parts[0].filename))["shards"]]


def test_parallel_build_identical_and_multishard_windows(corpus, tmp_path):
    from scaling.data.text_source import open_text
    d1 = text_cfg(tmp_path / "one", corpus["glob"])
    d2 = text_cfg(tmp_path / "two", corpus["glob"])
    _, one, _ = open_text(d1, "train", str(tmp_path / "one"), workers=1, unit_bytes=1 << 14, shard_tokens=1 << 30)
    info, two, _ = open_text(d2, "train", str(tmp_path / "two"), workers=2, unit_bytes=1 << 14, shard_tokens=5000)
    assert two.meta["units"] > 4 and len(two.meta["shards"]) > 4
    flat, sharded = np.asarray(one.tokens), np.asarray(two.tokens)
    assert (flat == sharded).all() and (np.asarray(one.doc_ends) == np.asarray(two.doc_ends)).all()
    assert one.meta["corpus_hash"] == two.meta["corpus_hash"]
    starts = np.array([0, 4990, 4999, 5000, 9995, len(flat) - 40])
    assert (two.tokens.windows(starts, 40) == flat[starts[:, None] + np.arange(40)]).all()
    assert (two.tokens[np.array([[3, 5001], [9999, 10001]])] == flat[[[3, 5001], [9999, 10001]]]).all()
    src = D.open_source(d2, "train", 64)  # the sharded cache serves batches identical to the flat one
    ref = D.open_source(d1, "train", 64)
    for step in (0, 5, 10 ** 6):
        a, b = src.batch(step, 8, seed=2), ref.batch(step, 8, seed=2)
        assert all((a[k] == b[k]).all() for k in a)


def test_batches_pure_across_restarts_and_processes(corpus, tmp_path):
    d = text_cfg(tmp_path, corpus["glob"])
    src = D.open_source(d, "train", 32)
    b = src.batch(11, 8, seed=5)
    parts = [src.batch(11, 8, seed=5, process_index=p, process_count=4) for p in range(4)]
    assert all((np.concatenate([p[k] for p in parts]) == b[k]).all() for k in b)
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(b[k]).tobytes() for k in sorted(b))).hexdigest()
    code = ("import hashlib, numpy as np; from scaling.config import DataConfig; from scaling.data import open_source;"
            f"s = open_source(DataConfig(task='text', vocab='byte', data_dir={str(tmp_path)!r}, "
            f"options=(('data', {corpus['glob']!r}),)), 'train', 32); b = s.batch(11, 8, seed=5);"
            "print(hashlib.sha256(b''.join(np.ascontiguousarray(b[k]).tobytes() for k in sorted(b))).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == digest


def test_changed_corpus_new_cache_and_touch_keeps_hash(tmp_path):
    p = write_jsonl(tmp_path / "c.jsonl", docs(200, seed=3))
    d = text_cfg(tmp_path / "dd", p)
    a = D.open_source(d, "train", 16)
    st = os.stat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    b = D.open_source(d, "train", 16)  # a new fingerprint (new cache), the same content: same corpus hash
    assert a.info.corpus_hash == b.info.corpus_hash
    assert os.path.dirname(a.tokens.parts[0].filename) != os.path.dirname(b.tokens.parts[0].filename)
    with open(p, "a") as f:
        f.write(json.dumps({"text": "one more document"}) + "\n")
    c = D.open_source(d, "train", 16)
    assert c.info.corpus_hash != a.info.corpus_hash


def test_truncated_or_edited_shard_is_rebuilt(corpus, tmp_path):
    d = text_cfg(tmp_path, corpus["glob"])
    ref = np.asarray(D.open_source(d, "train", 16).tokens).copy()
    path = os.path.dirname(D.open_source(d, "train", 16).tokens.parts[0].filename)
    shard = os.path.join(path, "tokens-00000.bin")
    with open(shard, "r+b") as f:  # edit in place: same size, new mtime
        f.seek(100)
        f.write(b"\x07\x00")
    with pytest.warns(RuntimeWarning, match="sha256 mismatch"):
        again = D.open_source(d, "train", 16)
    assert (np.asarray(again.tokens) == ref).all()
    with open(shard, "r+b") as f:
        f.truncate(1000)
    with pytest.warns(RuntimeWarning, match="truncated"):
        again = D.open_source(d, "train", 16)
    assert (np.asarray(again.tokens) == ref).all()
    assert not [x for x in os.listdir(os.path.dirname(path)) if x.startswith(".tmp-")]


# ------------------------------------------------------------------------------ tokenizers
def _gpt2_like(path, texts, *, normalized=False):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    if normalized:  # not byte-exact: lowercasing and NFKC change the bytes -> offsets are used
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        alphabet = []
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    tr = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=alphabet,
                             show_progress=False)
    tok.train_from_iterator(texts, tr)
    tok.save(str(path))
    return str(path)


@pytest.mark.parametrize("kind", ["tokenizer.json", "normalized.json", "hf-bpe:300", "sp-nfkc"])
def test_tokenizers_ids_and_exact_bytes(tmp_path, kind):
    texts = docs(150, seed=4) + ["<|endoftext|> and </s> are text here", "ÀÉÎ ﬁ ＡＢＣ ｶﾀｶﾅ"]
    p = write_jsonl(tmp_path / "c.jsonl", texts)
    if kind == "tokenizer.json":
        spec = _gpt2_like(tmp_path / kind, texts)
    elif kind == "normalized.json":
        spec = _gpt2_like(tmp_path / kind, texts, normalized=True)
    elif kind == "sp-nfkc":  # SentencePiece defaults: NFKC + dummy prefix: not byte-exact either
        import sentencepiece as spm
        (tmp_path / "t.txt").write_text("\n".join(texts))
        spm.SentencePieceTrainer.train(input=str(tmp_path / "t.txt"), model_prefix=str(tmp_path / "m"),
                                       vocab_size=120, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2,
                                       hard_vocab_limit=False)
        spec = str(tmp_path / "m.model")
    else:
        spec = kind
    d = text_cfg(tmp_path / "dd", p, vocab=spec, validation_percent=10)
    n = D.vocab_size(d)
    src = D.open_source(d, "train", 32)
    vocab = V.get_vocab(spec, data_dir=str(tmp_path / "dd"), task="text",
                        corpus_hash=store.read_meta(os.path.dirname(src.tokens.parts[0].filename))["fingerprint"])
    toks = np.asarray(src.tokens)
    assert src.info.vocab_size == n and toks.max() < n and (toks != 0).all()
    ends = np.asarray(src.doc_ends)
    assert ((toks == V.EOS_ID).sum() == len(ends)) and (toks[ends - 1] == V.EOS_ID).all()  # no EOS from text
    exact = {"tokenizer.json": True, "normalized.json": False, "hf-bpe:300": True, "sp-nfkc": False}[kind]
    assert vocab.exact_table == exact and (src.token_bytes is None) == exact
    per_tok = np.asarray(src.token_bytes) if not exact else vocab.bytes_per_id[toks]
    starts = np.concatenate([[0], ends[:-1]])
    train_texts = {t for t in texts}
    for a, b in zip(starts, ends):  # every document's token bytes sum to its UTF-8 length
        text = vocab.decode(toks[a:b - 1])
        nb = int(per_tok[a:b].sum())
        if exact:
            assert text in train_texts
        assert nb == len(text.encode()) if exact else nb in {len(t.encode()) for t in texts}
    assert int(per_tok.sum()) == src.info.num_bytes
    b = src.batch(0, 4, seed=0)
    assert (b["decoder_target_bytes"] == per_tok[src.row_starts(0, 4, seed=0)[:, None] + np.arange(32)]).all()
    if kind == "tokenizer.json":  # id 0 of a GPT-2-like file is a real token: everything shifts by 2
        assert vocab.shift == 2 and n == 400 + 2
    if kind == "hf-bpe:300":
        assert vocab.shift == 0 and n == 300


# ------------------------------------------------------------------------------ bad input
def _err(d, match, split="train"):
    with pytest.raises(ConfigError, match=match) as e:
        D.open_source(d, split, 16)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_bad_input(tmp_path):
    dd = tmp_path / "dd"
    _err(text_cfg(dd, str(tmp_path / "nothing" / "*.jsonl")), r"matches no files")
    (tmp_path / "empty.jsonl").write_text("")
    _err(text_cfg(dd, str(tmp_path / "empty.jsonl")), r"empty\.jsonl is empty; remove it")
    good = docs(100, seed=5)
    lines = [json.dumps({"text": t}) for t in good]
    bad = lines[:7] + ["{not json"] + lines[7:]
    (tmp_path / "bad.jsonl").write_text("\n".join(bad) + "\n")
    msg = _err(text_cfg(dd, str(tmp_path / "bad.jsonl")), r"bad\.jsonl:8: not valid JSON")
    assert "--skip-bad-lines" in msg
    with pytest.warns(RuntimeWarning, match="skipped 1 bad lines"):
        src = D.open_source(text_cfg(dd, str(tmp_path / "bad.jsonl"), skip_bad_lines=True, validation_percent=20), "train", 16)
    assert store.read_meta(os.path.dirname(src.tokens.parts[0].filename))["stats"]["bad_lines"] == 1
    (tmp_path / "field.jsonl").write_text("\n".join([json.dumps({"content": t}) for t in good]) + "\n")
    _err(text_cfg(dd, str(tmp_path / "field.jsonl")), r"field\.jsonl:1: field 'text' missing \(keys: content\); "
                                                      r"pass --text-field")
    (tmp_path / "num.jsonl").write_text("\n".join(lines[:3] + [json.dumps({"text": 5})]) + "\n")
    _err(text_cfg(dd, str(tmp_path / "num.jsonl")), r"num\.jsonl:4: field 'text' is a JSON int, not a string")
    (tmp_path / "arr.jsonl").write_text(json.dumps([{"text": "a"}]) + "\n")
    _err(text_cfg(dd, str(tmp_path / "arr.jsonl")), r"arr\.jsonl:1: a JSON list, not an object")
    (tmp_path / "pretty.json").write_text(json.dumps([{"text": "a"}], indent=1) + "\n")
    _err(text_cfg(dd, str(tmp_path / "pretty.json")), r"pretty\.json:1: .*looks like a JSON array\); convert the file to JSON Lines")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "a.txt").write_text(" ".join(good))
    (tmp_path / "bin" / "b.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    _err(text_cfg(dd, str(tmp_path / "bin" / "*.txt")), r"b\.txt looks binary \(NUL byte at offset 8\)")
    (tmp_path / "bin" / "c.png").write_bytes(b"\x89PNG")
    _err(text_cfg(dd, str(tmp_path / "bin")), r"c\.png: unsupported file type")
    few = write_jsonl(tmp_path / "few.jsonl", good[:3])
    _err(text_cfg(dd, few), r"validation split of 3 documents is empty; pass --validation-data")
    _err(text_cfg(dd, few, validation_data=few), r"also in --data")
    _err(DataConfig(task="text", data_dir=str(dd)), r"needs corpus files; pass --data")
    _err(text_cfg(dd, few, colour=1), r"unknown text option")
    (tmp_path / "tok.json").write_text('{"version": "1.0", "model": 5}')
    _err(text_cfg(dd, few, vocab=str(tmp_path / "tok.json")), r"tok\.json.*not a valid Hugging Face tokenizer\.json")
    _err(text_cfg(dd, few, vocab=str(tmp_path / "missing.json")), r"missing\.json.*not found")
    with pytest.raises(ConfigError, match="hf-bpe"):
        D.vocab_size(text_cfg(dd, few, vocab="hf-bpe:10"))


def test_invalid_utf8_is_replaced_counted_and_warned(tmp_path):
    good = docs(80, seed=6)
    raw = b"".join(json.dumps({"text": t}).encode() + b"\n" for t in good)
    raw += b'{"text": "caf\xe9 broken"}\n' + b'{"text": "lone \\ud800 surrogate"}\n'
    (tmp_path / "u.jsonl").write_bytes(raw)
    with pytest.warns(RuntimeWarning, match=r"2 documents had invalid UTF-8 .*u\.jsonl:81"):
        tr = D.open_source(text_cfg(tmp_path / "dd", str(tmp_path / "u.jsonl"), validation_percent=10), "train", 16)
    va = D.open_source(text_cfg(tmp_path / "dd", str(tmp_path / "u.jsonl"), validation_percent=10), "validation", 16)
    vocab = V.Vocab("byte", V.BYTE_VOCAB_SIZE)
    got = read_docs(tr, vocab)[0] + read_docs(va, vocab)[0]
    assert "caf\ufffd broken" in got and "lone ? surrogate" in got


def test_explicit_validation_files_and_cli_prepare(tmp_path, capsys):
    from scaling import cli
    tr = write_jsonl(tmp_path / "train.jsonl", docs(200, seed=7))
    va = write_jsonl(tmp_path / "val.jsonl", docs(20, seed=8))
    rc = cli.main(["prepare", "--task", "text", "--data", tr, "--validation-data", va, "--vocab", "byte",
                   "--data-dir", str(tmp_path / "dd"), "--workers", "2"])
    out = capsys.readouterr().out
    assert rc == 0 and "train" in out and "corpus_hash" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("train", "validation"))}
    assert rows["train"][1] == "200" and rows["validation"][1] == "20"
    src = D.open_source(DataConfig(task="text", vocab="byte", data_dir=str(tmp_path / "dd"),
                                   options=(("data", tr), ("validation_data", va))), "validation", 16)
    assert src.info.num_docs == 20
    assert cli.main(["prepare", "--task", "pystdlib", "--data", tr]) == 2  # flag of another task: one-line error
    assert "--data: only for --task text" in capsys.readouterr().err


def test_ray_backend_same_cache(corpus, tmp_path):
    from scaling.data.text_source import open_text
    ray = pytest.importorskip("ray")
    ref = D.open_source(text_cfg(tmp_path / "local", corpus["glob"]), "train", 16)
    d = text_cfg(tmp_path / "ray", corpus["glob"])
    try:
        _, got, _ = open_text(d, "train", str(tmp_path / "ray"), workers=2, backend="ray", unit_bytes=1 << 14)
    finally:
        if ray.is_initialized():
            ray.shutdown()
    assert got.meta["backend"] == "ray" and got.meta["units"] > 2
    assert (np.asarray(got.tokens) == np.asarray(ref.tokens)).all()
    assert got.meta["corpus_hash"] == ref.info.corpus_hash


def test_progress_line_reports_documents_mb_and_tokens_per_s():
    import io
    from scaling.data.build import Progress
    buf = io.StringIO()
    bar = Progress("prepare text (byte)", 2_000_000, stream=buf)
    bar.update(docs=10, nbytes=1_000_000, tokens=900_000)
    line = bar.line()
    assert "10 docs" in line and "1.0/2.0 MB" in line and "900,000 tokens" in line and "M tok/s" in line
    bar.printed = True
    bar.done()
    assert buf.getvalue().startswith("prepare text (byte): 10 docs")


def test_resume_on_an_edited_corpus_is_refused(tmp_path):
    """The run id hashes the glob, not the files: a corpus edited in place must not resume silently."""
    from scaling.config import Cell, ModelConfig, OptimConfig
    from scaling.train import train

    (tmp_path / "c").mkdir()
    write_jsonl(tmp_path / "c" / "a.jsonl", docs(300))
    cfg = text_cfg(tmp_path / "dd", str(tmp_path / "c" / "*.jsonl"))
    model = ModelConfig(vocab_size=260, seq_len=32, d_model=16, n_layers=1, n_heads=2, kv_size=8, ffw_size=32)
    cell = Cell(model=model, tokens=8 * 8 * 32, batch_size=8, data=cfg, optim=OptimConfig(warmup_steps=1),
                eval_batches=1, eval_batch_size=8, checkpoint_every=2)
    s = train(cell, tmp_path / "run", stop_after_step=4)
    assert s["state"] == "partial"
    write_jsonl(tmp_path / "c" / "a.jsonl", docs(300, seed=1))  # edited in place
    with pytest.raises(ConfigError, match="the corpus changed since its checkpoint at step 4"):
        train(cell, tmp_path / "run")
