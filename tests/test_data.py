"""scaling.data fast path: tasks, vocabularies, caches, packed windows, accounting (no seqio)."""

import math
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import warnings

import numpy as np
import pytest

from scaling.config import ConfigError, DataConfig
from scaling import data as D
from scaling.data import features, pystdlib, synthetic_markov as M
from scaling.data import vocab as V

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_FILES = ["json/__init__.py", "json/decoder.py", "json/encoder.py", "json/scanner.py", "textwrap.py",
               "string.py", "shlex.py", "fnmatch.py", "glob.py", "heapq.py", "bisect.py", "colorsys.py",
               "keyword.py", "this.py", "contextlib.py", "abc.py", "copy.py", "csv.py", "difflib.py",
               "random.py", "statistics.py", "dataclasses.py", "enum.py", "functools.py"]


def make_root(dst):
    src = sysconfig.get_paths()["stdlib"]
    for f in SMALL_FILES:
        os.makedirs(os.path.dirname(os.path.join(dst, f)), exist_ok=True)
        shutil.copy(os.path.join(src, f), os.path.join(dst, f))
    os.makedirs(os.path.join(dst, "site-packages", "pkg"), exist_ok=True)
    with open(os.path.join(dst, "site-packages", "pkg", "mod.py"), "w") as f:
        f.write("PRUNED = True\n")
    return str(dst)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("data")
    root = make_root(base / "root")
    return {"root": root, "data_dir": str(base / "dd")}


def cfg(env, vocab="byte", **kw):
    return DataConfig(task="pystdlib", vocab=vocab, data_dir=env["data_dir"], options=(("root", env["root"]),), **kw)


MK = (("train_tokens", 400_000), ("validation_tokens", 100_000), ("symbols", 32), ("order", 2))


def test_corpus_listing_and_split(env):
    files = pystdlib.list_files(env["root"])
    assert len(files) == len(SMALL_FILES) and not any("site-packages" in f for f in files)
    assert files == sorted(files)
    splits = [pystdlib.split_of(f) for f in files]
    assert splits == [pystdlib.split_of(f) for f in files]  # deterministic
    real = pystdlib.list_files(sysconfig.get_paths()["stdlib"])
    frac = sum(pystdlib.split_of(f) == "validation" for f in real) / len(real)
    assert 0.005 < frac < 0.05 and not any("site-packages" in f or "__pycache__" in f for f in real)
    h1 = pystdlib.manifest_hash(env["root"])
    assert h1 == pystdlib.manifest_hash(env["root"], cache_dir=env["data_dir"])  # memo agrees


def test_vocab_size_is_pure():
    assert D.vocab_size(DataConfig(task="pystdlib", vocab="byte")) == 259
    assert D.vocab_size(DataConfig(task="pystdlib", vocab="sp4096")) == 4096
    assert D.vocab_size(DataConfig(task="synthetic_markov", options=(("symbols", 64),))) == 66


def test_bad_input(env, tmp_path):
    with pytest.raises(ConfigError, match="data.task"):
        D.open_source(DataConfig(task="nope"), "train", 16)
    with pytest.raises(ConfigError, match="seq_len"):
        D.open_source(cfg(env), "train", 1)
    with pytest.raises(ConfigError, match="not found"):
        D.open_source(cfg(env, vocab=str(tmp_path / "missing.model")), "train", 16)
    with pytest.raises(ConfigError, match="data.vocab"):
        D.vocab_size(DataConfig(task="pystdlib", vocab="wordpiece"))
    with pytest.raises(ConfigError, match="split"):
        D.open_source(cfg(env), "test", 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no .py files"):
        D.open_source(DataConfig(task="pystdlib", data_dir=str(tmp_path / "dd"),
                                 options=(("root", str(tmp_path / "empty")),)), "train", 16)
    with pytest.raises(ConfigError, match="unknown synthetic_markov option"):
        D.vocab_size(DataConfig(task="synthetic_markov", options=(("colour", 1),)))
    with pytest.raises(ConfigError, match="c4_en needs"):
        D.vocab_size(DataConfig(task="c4_en", vocab="sp1024"))


@pytest.mark.parametrize("vocab", ["byte", "sp512"])
def test_text_source_bytes_and_roundtrip(env, vocab):
    src = D.open_source(cfg(env, vocab), "train", 64)
    info = src.info
    assert info.has_bytes and info.entropy_rate is None and info.num_docs == len(SMALL_FILES) - 1
    assert info.vocab_size == (259 if vocab == "byte" else 512)
    toks = np.asarray(src.tokens)
    assert toks.max() < info.vocab_size and (toks != 0).all()  # id 0 never a real token
    assert (toks == V.EOS_ID).sum() == info.num_docs and toks[-1] == V.EOS_ID
    # every document: token bytes sum to the UTF-8 length of its text, and decoding is exact
    vocab_obj = V.get_vocab(vocab, data_dir=env["data_dir"], task="pystdlib", corpus_hash=info.corpus_hash)
    docs = {pystdlib.read_text(env["root"], f) for f in pystdlib.list_files(env["root"])
            if pystdlib.split_of(f) == "train"}
    ends = np.flatnonzero(toks == V.EOS_ID)
    starts = np.concatenate([[0], ends[:-1] + 1])
    seen = set()
    for s, e in zip(starts, ends):
        ids = toks[s:e]
        text = vocab_obj.decode(ids)
        assert text in docs
        assert int(vocab_obj.bytes_per_id[ids].sum()) == len(text.encode("utf-8"))
        seen.add(text)
    assert seen == docs
    # the batch carries the same byte counts: total bytes of a batch = bytes of its targets
    b = src.batch(0, 4, seed=0)
    assert (b["decoder_target_bytes"] == vocab_obj.bytes_per_id[b["decoder_target_tokens"]]).all()
    assert (b["decoder_target_bytes"][b["decoder_target_tokens"] == V.EOS_ID] == 0).all()


def check_relations(b):
    """seqio DecoderFeatureConverter(pack=True) relations between the five features."""
    tgt, inp = b["decoder_target_tokens"], b["decoder_input_tokens"]
    seg, pos, w = b["decoder_segment_ids"], b["decoder_positions"], b["decoder_loss_weights"]
    real = tgt != 0
    assert ((w > 0) == real).all()
    new_seg = np.ones_like(seg, bool)
    new_seg[:, 1:] = seg[:, 1:] != seg[:, :-1]
    assert ((pos == 0)[real] == new_seg[real]).all()
    assert (np.diff(seg, axis=1)[real[:, 1:]] >= 0).all()
    shifted = np.zeros_like(tgt)
    shifted[:, 1:] = tgt[:, :-1]
    expect = np.where(new_seg, 0, shifted)
    assert (inp[real] == expect[real]).all()
    assert (pos[real] == (np.arange(tgt.shape[1]) - np.maximum.accumulate(
        np.where(new_seg, np.arange(tgt.shape[1]), 0), axis=1))[real]).all()


def test_window_features_semantics():
    rows = np.array([[5, 6, 1, 7, 8, 9, 1, 4], [3, 1, 1, 9, 9, 9, 9, 9]])
    b = features.window_features(rows, np.arange(10, dtype=np.int32))
    assert b["decoder_segment_ids"].tolist() == [[1, 1, 1, 2, 2, 2, 2, 3], [1, 1, 2, 3, 3, 3, 3, 3]]
    assert b["decoder_positions"].tolist() == [[0, 1, 2, 0, 1, 2, 3, 0], [0, 1, 0, 0, 1, 2, 3, 4]]
    assert b["decoder_input_tokens"].tolist() == [[0, 5, 6, 0, 7, 8, 9, 0], [0, 3, 0, 0, 9, 9, 9, 9]]
    assert b["decoder_target_bytes"].tolist() == rows.tolist()
    for k in ("decoder_input_tokens", "decoder_target_tokens", "decoder_segment_ids", "decoder_positions"):
        assert b[k].dtype == np.int32
    assert b["decoder_loss_weights"].dtype == np.float32 and b["decoder_target_bytes"].dtype == np.int32
    check_relations(b)


def test_batches_pure_sharded_and_epoch_permutation(env):
    src = D.open_source(cfg(env, "byte"), "train", 32)
    again = D.open_source(cfg(env, "byte"), "train", 32)
    b1 = src.batch(7, 8, seed=3)
    check_relations(b1)
    for k, v in b1.items():
        assert v.shape == (8, 32)
        assert (again.batch(7, 8, seed=3)[k] == v).all()  # pure function of (seed, step)
    assert not (src.batch(7, 8, seed=4)["decoder_target_tokens"] == b1["decoder_target_tokens"]).all()
    assert not (src.batch(8, 8, seed=3)["decoder_target_tokens"] == b1["decoder_target_tokens"]).all()
    # union over processes == single-process batch, each process gets its contiguous slice
    parts = [src.batch(7, 8, seed=3, process_index=p, process_count=4) for p in range(4)]
    for k in b1:
        assert parts[0][k].shape == (2, 32)
        assert (np.concatenate([p[k] for p in parts]) == b1[k]).all()
    with pytest.raises(ConfigError, match="batch_size"):
        src.batch(0, 6, seed=0, process_count=4)
    # one epoch visits every row exactly once; a far step is O(1) and wraps into a later epoch
    R = src.rows_per_epoch
    starts = np.concatenate([src.row_starts(s, 1, seed=3) for s in range(R)])
    assert len(set(starts.tolist())) == R and (np.diff(np.sort(starts)) == 32).all()
    t = time.perf_counter()
    far = src.batch(10 ** 9, 8, seed=3)
    assert time.perf_counter() - t < 0.5 and far["decoder_target_tokens"].shape == (8, 32)
    assert src.epochs_at(10 ** 9, 8) > 1


def test_check_budget(env):
    info = D.open_source(cfg(env, "byte"), "train", 16).info
    assert D.check_budget(info, info.num_tokens // 2, repeat=False) == pytest.approx(0.5, rel=1e-6)
    with pytest.raises(ConfigError, match="--repeat"):
        D.check_budget(info, 3 * info.num_tokens, repeat=False)
    assert D.check_budget(info, 3 * info.num_tokens, repeat=True) == pytest.approx(3.0)


def test_corrupt_cache_is_rebuilt(env):
    src = D.open_source(cfg(env, "byte"), "validation", 16)
    ref = np.array(src.tokens)
    path = os.path.join(env["data_dir"], "cache", "pystdlib", "byte")
    (d,) = [os.path.join(path, x) for x in os.listdir(path) if x.startswith("validation-") and os.path.isdir(os.path.join(path, x))]
    with open(os.path.join(d, "tokens-00000.bin"), "r+b") as f:
        f.seek(-10, 2)
        f.write(b"\xff\xff\xff\xff")
    with pytest.warns(RuntimeWarning, match="corrupt"):
        src2 = D.open_source(cfg(env, "byte"), "validation", 16)
    assert (np.asarray(src2.tokens) == ref).all()


def test_segments_from_document_index_equal_eos_segments(env):
    """Segments come from the document index; for text tasks they equal the EOS-derived ones."""
    src = D.open_source(cfg(env, "sp512"), "train", 64)
    for step in (0, 3, 999):
        starts = src.row_starts(step, 16, seed=1)
        rows = src.tokens.windows(starts, 64)
        by_eos = features.window_features(rows, src.bytes_per_id, doc_eos=True)
        by_index = src.batch(step, 16, seed=1)
        assert all((by_eos[k] == by_index[k]).all() for k in by_eos)


def test_warm_open_is_fast_and_tf_free(env):
    D.open_source(cfg(env, "sp512"), "train", 64)  # warm the cache
    code = (
        "import sys, time; t=time.perf_counter();"
        "from scaling.config import DataConfig; from scaling.data import open_source;"
        f"s=open_source(DataConfig(task='pystdlib', vocab='sp512', data_dir={env['data_dir']!r},"
        f" options=(('root', {env['root']!r}),)), 'train', 64); s.batch(0, 8, seed=0);"
        "print(time.perf_counter()-t, 'tensorflow' in sys.modules, 'seqio' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    secs, tf_loaded, seqio_loaded = out.stdout.split()
    assert tf_loaded == "False" and seqio_loaded == "False"
    assert float(secs) < 5.0  # typically ~0.1 s; generous for a loaded 2-core machine


# ------------------------------------------------------------------ synthetic_markov

def test_markov_source_and_entropy(tmp_path):
    d = DataConfig(task="synthetic_markov", data_dir=str(tmp_path), options=MK)
    tr = D.open_source(d, "train", 64)
    va = D.open_source(d, "validation", 64)
    spec = M.MarkovSpec.from_options(MK)
    H = tr.info.entropy_rate
    assert H == pytest.approx(M.entropy_rate(spec)) and not tr.info.has_bytes
    assert 0 < H < math.log(spec.symbols)
    assert tr.info.corpus_hash == va.info.corpus_hash and tr.info.num_tokens == 400_000
    b = tr.batch(0, 4, seed=0)
    assert (b["decoder_segment_ids"] == 1).all() and (b["decoder_target_bytes"] == 0).all()
    assert (b["decoder_loss_weights"] == 1).all()
    check_relations(b)
    x = np.asarray(tr.tokens).astype(np.int64) - M.FIRST_ID
    y = np.asarray(va.tokens).astype(np.int64) - M.FIRST_ID
    Vs = spec.symbols
    assert x.min() >= 0 and x.max() < Vs
    # plug-in trigram entropy estimate of the sample is close to the analytic rate
    ctx = x[:-2] * Vs + x[1:-1]
    counts = np.bincount(ctx * Vs + x[2:], minlength=Vs ** 3).reshape(Vs * Vs, Vs).astype(float)
    p = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    H_hat = -(counts * np.log(np.where(p > 0, p, 1))).sum() / counts.sum()
    assert abs(H_hat - H) < 0.05, (H_hat, H)
    # a count-based (add-0.5) optimal-order predictor cannot beat the entropy rate on held-out data
    q = (counts + 0.5) / (counts + 0.5).sum(1, keepdims=True)
    yc = y[:-2] * Vs + y[1:-1]
    ce = -np.log(q[yc, y[2:]]).mean()
    se = np.log(q[yc, y[2:]]).std() / math.sqrt(len(yc))
    assert ce >= H - 4 * se, (ce, H, se)
    assert ce < H + 0.3  # and it learns most of the structure
    # a bigram predictor is strictly worse: higher order carries information
    c2 = np.bincount(x[:-1] * Vs + x[1:], minlength=Vs * Vs).reshape(Vs, Vs) + 0.5
    q2 = c2 / c2.sum(1, keepdims=True)
    assert -np.log(q2[y[1:-1], y[2:]]).mean() > ce + 0.05


def test_markov_deterministic_from_seed():
    s = M.MarkovSpec(symbols=16, order=2, train_tokens=1000)
    assert (M.sample(s, 1000, 1) == M.sample(s, 1000, 1)).all()
    assert not (M.sample(s, 1000, 1) == M.sample(M.MarkovSpec(symbols=16, order=2, chain_seed=1), 1000, 1)).all()
    P = M.transitions(s)
    pi = M.stationary(s, P)
    # stationarity: pushing pi through one step gives pi back
    flow = (pi[:, None] * P).reshape(16, 16, 16).sum(0).reshape(-1)
    assert np.allclose(flow, pi, atol=1e-10) and abs(pi.sum() - 1) < 1e-9


def test_store_shards_windows_and_concurrent_publish(tmp_path):
    from scaling.data import store
    p = str(tmp_path / "c" / "train-x-y")
    a = np.arange(3, 1000, dtype=np.uint16)
    w = store.SplitWriter(p, np.uint16, shard_tokens=100)
    w.add(a[:250], [100, 150])
    w.add(a[250:], [a.size - 250])
    s = w.commit({"who": "first"})
    assert len(s.meta["shards"]) == 10 and s.meta["num_docs"] == 3 and (np.asarray(s.tokens) == a).all()
    assert (s.tokens.windows(np.array([0, 95, 899]), 50) == a[np.array([0, 95, 899])[:, None] + np.arange(50)]).all()
    assert np.asarray(s.doc_ends).tolist() == [100, 250, a.size]
    w2 = store.SplitWriter(p, np.uint16, shard_tokens=100)
    w2.add(a[::-1].copy(), [a.size])
    os.makedirs(p, exist_ok=True)  # the publish target exists: a valid one is replaced by the new build
    s2 = w2.commit({"who": "second"})
    assert s2.meta["who"] == "second" and store.load(p).meta["who"] == "second"
    bad = store.SplitWriter(p + "-bad", np.uint16)
    bad.add(a, [10])
    with pytest.raises(AssertionError, match="covers 10"):
        bad.commit({})
    assert not os.path.exists(p + "-bad")
