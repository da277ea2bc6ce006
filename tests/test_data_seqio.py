"""scaling.data against seqio/TFDS: packing semantics, task streams, offline prepare, C4 mock."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from scaling.config import ConfigError, DataConfig
from scaling import data as D
from scaling.data import features, pystdlib
from scaling.data import vocab as V

from test_data import REPO, check_relations, make_root


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("seqio")
    return {"root": make_root(base / "root"), "data_dir": str(base / "dd")}


def _seqio_pack(pieces, L):
    import seqio
    import tensorflow as tf
    ds = tf.data.Dataset.from_generator(lambda: ({"targets": np.asarray(p, np.int32)} for p in pieces),
                                        output_signature={"targets": tf.TensorSpec([None], tf.int32)})
    out = seqio.DecoderFeatureConverter(pack=True)(ds, task_feature_lengths={"targets": L})
    return {k: np.stack([ex[k] for ex in out.as_numpy_iterator()]) for k in
            ("decoder_target_tokens", "decoder_input_tokens", "decoder_segment_ids", "decoder_positions",
             "decoder_loss_weights")}


def test_windows_equal_seqio_packing():
    """Our rows == seqio pack=True over the same pieces (stream cut at rows and after EOS)."""
    rng = np.random.default_rng(0)
    L = 16
    docs = [np.append(rng.integers(3, 50, size=n), 1) for n in rng.integers(1, 30, size=8)]
    stream = np.concatenate(docs)
    rows = stream[: (len(stream) // L) * L].reshape(-1, L)
    ours = features.window_features(rows, None)
    per_row = []
    for r in rows:  # seqio's packer does not fill rows across its internal batches, so pack per row
        cut = [0] + [i + 1 for i in np.flatnonzero(r == 1) if i + 1 < L] + [L]
        per_row.append(_seqio_pack([r[a:b] for a, b in zip(cut[:-1], cut[1:])], L))
    theirs = {k: np.concatenate([p[k] for p in per_row]) for k in per_row[0]}
    assert theirs["decoder_target_tokens"].shape == rows.shape
    for k, v in theirs.items():
        assert (ours[k] == v).all(), k
    check_relations(theirs)


def test_seqio_task_stream_matches_cache(env, monkeypatch):
    monkeypatch.setenv("SCALING_PYSTDLIB_ROOT", env["root"])
    monkeypatch.setenv("SCALING_DATA_DIR", env["data_dir"])
    import seqio
    from scaling.data import tasks
    names = tasks.register_all()
    assert {"pystdlib_byte", "pystdlib_sp512", "synthetic_markov", "c4_en"} <= set(names)
    for vocab in ("byte", "sp512"):
        name = f"pystdlib_{vocab}"
        tasks.ensure_prepared(name)
        task = seqio.get_mixture_or_task(name)
        chunks = [ex["targets"] for ex in task.get_dataset(sequence_length={"targets": 128}, split="validation",
                                                           shuffle=False, num_epochs=1).as_numpy_iterator()]
        assert max(len(c) for c in chunks) <= 128  # split_tokens chunks, nothing truncated
        src = D.open_source(DataConfig(task="pystdlib", vocab=vocab), "validation", 16)
        assert (np.concatenate(chunks) == np.asarray(src.tokens)).all()  # same ids, same order
        assert task.scaling_metadata["corpus_hash"] == src.info.corpus_hash
        b = next(features.seqio_dataset(name, "train", 64, 4, shuffle=False).as_numpy_iterator())
        check_relations(b)
    mk = seqio.get_mixture_or_task("synthetic_markov").scaling_metadata
    assert mk["entropy_rate"] > 0


def test_tfds_prepare_offline_real_stdlib(tmp_path):
    """download_and_prepare of the real stdlib inside a network namespace with no interfaces."""
    code = ("import sys, seqio; from scaling.data import pystdlib as p; import os;"
            # seqio already imported -> importing scaling.data registers the seqio tasks
            "assert 'pystdlib_sp1024' in seqio.TaskRegistry.names() and 'c4_en' in seqio.TaskRegistry.names();"
            "root = p.default_root(); h = p.manifest_hash(root);"
            f"b = p.prepare({str(tmp_path)!r}, root, h);"
            "n = b.info.splits['train'].num_examples + b.info.splits['validation'].num_examples;"
            "assert n == len(p.list_files(root)), n;"
            "assert b.info.metadata['manifest_hash'] == h;"
            "print('OK', n, b.info.splits['validation'].num_examples)")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("SCALING_PYSTDLIB_ROOT", None)
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode == 0:
        cmd = ["unshare", "-n", sys.executable, "-c", code]
    else:  # no namespaces here: forbid any socket connect instead
        cmd = [sys.executable, "-c", "import socket\ndef _no(*a, **k): raise OSError('network used')\n"
               "socket.socket.connect = _no\n" + code.replace(";", "\n")]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "OK" in out.stdout


def test_c4_on_mock_data(env, tmp_path):
    import tensorflow_datasets as tfds
    from scaling.data import vocab as V
    src = D.open_source(DataConfig(task="pystdlib", vocab="sp512", data_dir=env["data_dir"],
                                   options=(("root", env["root"]),)), "train", 16)
    model = V.sp_model_path(env["data_dir"], "pystdlib", src.info.corpus_hash, 512)
    d = DataConfig(task="c4_en", vocab=model, data_dir=str(tmp_path),
                   options=(("max_train_docs", 6), ("max_validation_docs", 3)))
    assert D.vocab_size(d) <= 512
    with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
        tr = D.open_source(d, "train", 16)
        va = D.open_source(d, "validation", 16)
        docs = list(__import__("scaling.data.c4", fromlist=["x"]).iter_documents("train", None, 6))
    assert tr.info.num_docs == 6 and va.info.num_docs == 3 and tr.info.has_bytes
    toks = np.asarray(tr.tokens)
    assert (toks == 1).sum() == 6 and (toks != 0).all()
    vocab = V.load_file_vocab(model)
    ends = np.flatnonzero(toks == 1)
    starts = np.concatenate([[0], ends[:-1] + 1])
    for s, e, text in zip(starts, ends, docs):
        assert int(vocab.bytes_per_id[toks[s:e]].sum()) == len(text.encode("utf-8"))
    check_relations(tr.batch(0, 2, seed=0))


def test_importing_scaling_data_first_registers_tasks_when_seqio_loads():
    """The other import order: scaling.data (cheap, no TF) first, seqio later."""
    code = ("import sys, scaling.data; assert 'seqio' not in sys.modules; "
            "import seqio; names = set(seqio.TaskRegistry.names()); "
            "assert {'pystdlib_sp1024', 'synthetic_markov', 'c4_en'} <= names, sorted(names)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    # and the task module itself first (it imports seqio while half-initialized: no circular import)
    code = ("import scaling.data.tasks, seqio; "
            "assert 'pystdlib_sp1024' in seqio.TaskRegistry.names()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


# ------------------------------------------------------------------ your own data through seqio

def _seqio_rows(src, vocab_seqio, texts, starts, L):
    """seqio's packing of the documents covering each window, the documents tokenized by seqio."""
    import tensorflow as tf
    ids = [vocab_seqio.encode_tf(tf.constant(t)).numpy().tolist() + [1] for t in texts]  # seqio append_eos
    stream = np.concatenate([np.asarray(x, np.int32) for x in ids])
    ends = np.cumsum([len(x) for x in ids])
    assert (np.asarray(src.doc_ends) == ends).all()
    per_row = []
    for s in starts:
        cut = sorted({0, L} | {int(e - s) for e in ends if s < e < s + L})
        per_row.append(_seqio_pack([stream[s + a:s + b] for a, b in zip(cut[:-1], cut[1:])], L))
    return {k: np.concatenate([p[k] for p in per_row]) for k in per_row[0]}


@pytest.mark.parametrize("vocab", ["byte", "sp512"])
def test_text_task_batches_equal_seqio_packing(tmp_path, vocab):
    """A text task's training batches == seqio DecoderFeatureConverter(pack=True) on the same documents."""
    import seqio
    from test_data_text import docs, write_jsonl
    texts = docs(160, seed=11)
    tr = write_jsonl(tmp_path / "train.jsonl", texts)
    va = write_jsonl(tmp_path / "val.jsonl", texts[:10])
    d = DataConfig(task="text", vocab=vocab, data_dir=str(tmp_path / "dd"),
                   options=(("data", tr), ("validation_data", va)))
    L, Bsz = 48, 6
    src = D.open_source(d, "train", L)
    if vocab == "byte":
        sv = seqio.ByteVocabulary()
    else:
        from scaling.data import store
        key = store.read_meta(os.path.dirname(src.tokens.parts[0].filename))["fingerprint"]
        sv = seqio.SentencePieceVocabulary(V.sp_model_path(str(tmp_path / "dd"), "text", key, 512), extra_ids=0)
    for step in (0, 7):
        starts = src.row_starts(step, Bsz, seed=4)
        ours = src.batch(step, Bsz, seed=4)
        theirs = _seqio_rows(src, sv, texts, starts, L)
        for k, v in theirs.items():
            assert (ours[k] == v).all(), (vocab, step, k)


USER_TASKS = '''
import functools
import seqio
import tensorflow as tf

TEXTS = {"train": [f"document {i}: " + "lorem ipsum dolor sit amet " * (i % 7 + 1) for i in range(400)],
         "validation": [f"held out {i} " * 5 for i in range(40)]}


def _source(split, shuffle_files=False, seed=None):
    return tf.data.Dataset.from_tensor_slices({"text": TEXTS[split]})


seqio.TaskRegistry.add(
    "my_user_lm",
    source=seqio.FunctionDataSource(_source, splits=("train", "validation")),
    preprocessors=[functools.partial(seqio.preprocessors.rekey, key_map={"targets": "text"}),
                   seqio.preprocessors.tokenize, seqio.preprocessors.append_eos],
    output_features={"targets": seqio.Feature(seqio.ByteVocabulary(), add_eos=True, dtype=tf.int32)})
'''


def test_user_seqio_task_trains_from_cli(tmp_path, capsys):
    mod = tmp_path / "my_user_tasks.py"
    mod.write_text(USER_TASKS)
    d = DataConfig(task="seqio:my_user_lm", data_dir=str(tmp_path / "dd"), options=(("module", str(mod)),))
    assert D.vocab_size(d) == 259
    src = D.open_source(d, "train", 32)
    import seqio
    ref = [ex["targets"] for ex in seqio.get_mixture_or_task("my_user_lm").get_dataset(
        sequence_length={"targets": 32}, split="train", shuffle=False, num_epochs=1,
        trim_output_features=False).as_numpy_iterator()]
    assert (np.asarray(src.tokens) == np.concatenate(ref)).all() and src.info.num_docs == 400
    assert src.info.has_bytes and len(src.info.corpus_hash) == 64
    b = src.batch(0, 4, seed=0)
    check_relations(b)
    assert (b["decoder_target_bytes"] == (b["decoder_target_tokens"] >= 3)).all()
    with pytest.raises(ConfigError, match="no seqio Task or Mixture 'nope'"):
        D.vocab_size(DataConfig(task="seqio:nope"))
    with pytest.raises(ConfigError, match="import failed"):
        D.vocab_size(DataConfig(task="seqio:x", options=(("module", "no_such_module_xyz"),)))
    from scaling import cli
    rc = cli.main(["train", "--out", str(tmp_path / "run"), "--task", f"seqio:my_user_lm", "--data-module", str(mod),
                   "--d-model", "32", "--n-layers", "1", "--n-heads", "2", "--seq-len", "32", "--batch", "8",
                   "--tokens", str(8 * 32 * 6), "--eval-batches", "1", "--checkpoint-every", "100"])
    out = capsys.readouterr().out
    assert rc == 0, out
    summary = json.loads(out[out.index("{"):])
    assert summary["state"] == "done" and summary["steps"] == 6 and summary["final_eval_bpb"] > 0
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["data"]["task"] == "seqio:my_user_lm" and ["module", str(mod)] in cfg["data"]["options"]


def test_own_seqio_tasks_prepare_themselves_on_first_get_dataset(tmp_path):
    """A fresh data dir: plain get_dataset on pystdlib_byte works (no ensure_prepared)."""
    code = ("import seqio, scaling.data;"
            "ds = seqio.get_mixture_or_task('pystdlib_byte').get_dataset(sequence_length={'targets': 64},"
            " split='validation', shuffle=False, num_epochs=1);"
            "print('N', sum(1 for _ in ds.as_numpy_iterator()))")
    env = dict(os.environ, SCALING_DATA_DIR=str(tmp_path / "fresh"), TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.split("N")[-1]) > 100


def test_tfds_by_name_on_mock_data(tmp_path):
    import tensorflow_datasets as tfds
    d = DataConfig(task="tfds:lm1b", vocab="byte", data_dir=str(tmp_path),
                   options=(("validation_split", "test"), ("max_train_docs", 50)))
    assert D.vocab_size(d) == 259
    with tfds.testing.mock_data(num_examples=60, policy=tfds.testing.MockPolicy.USE_CODE):
        tr = D.open_source(d, "train", 16)
        va = D.open_source(d, "validation", 16)
        texts = list(__import__("scaling.data.text_tasks", fromlist=["x"]).iter_tfds_documents(
            "lm1b", "train", None, "text", 50))
        with pytest.raises(ConfigError, match="no feature 'body'"):
            D.open_source(DataConfig(task="tfds:lm1b", vocab="byte", data_dir=str(tmp_path / "b"),
                                     options=(("text_field", "body"),)), "train", 16)
    assert tr.info.num_docs == 50 and va.info.num_docs == 60 and tr.info.name == "tfds:lm1b"
    from scaling.data import vocab as V
    got = V.Vocab("byte", 259).decode(np.asarray(tr.tokens)[: int(np.asarray(tr.doc_ends)[0]) - 1])
    assert got == texts[0]
    with pytest.raises(ConfigError, match="unknown option"):
        D.vocab_size(DataConfig(task="tfds:lm1b", options=(("colour", 1),)))
