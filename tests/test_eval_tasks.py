"""Downstream multiple-choice tasks (scaling.evaltasks): files, packing, scoring, the loop, make-task.

The scoring check is the definition: each choice's score must equal the log-likelihood of its
tokens computed by applying the model to (context + choice) alone, one sequence at a time,
although the scorer packs several sequences per row and runs them through the eval program.
Training runs use a tiny decoder (d 16, 1 layer, seq 64) on a small own text corpus.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from scaling import evaltasks as E
from scaling.config import Cell, ConfigError, DataConfig, ModelConfig, OptimConfig
from scaling.data.vocab import Vocab

BYTE = Vocab("byte", 259)
# multi-byte UTF-8 on both sides of the context/choice boundary
UNICODE_ITEMS = [
    {"context": "Größe = ", "choices": ["naïve café", "日本語のテキスト", "x"], "gold": 1},
    {"context": "def f(x):\n    return ", "choices": ["x + 1", " x*2 ", "λ → μ"], "gold": 0},
    {"context": "emoji: ", "choices": ["😀😀", "ok"], "gold": 1},
]


def _task(items, name="t") -> E.Task:
    return E.Task(name, "mem", E.parse_items(E.items_jsonl(items), "mem"), "0")


# ---- task files ------------------------------------------------------------------------
@pytest.mark.parametrize("line, words", [
    ('{"choices": ["a", "b"], "gold": 0}', ["line 2", "missing field 'context'"]),
    ('{"context": "c", "gold": 0}', ["line 2", "missing field 'choices'"]),
    ('{"context": "c", "choices": ["a", "b"]}', ["line 2", "missing field 'gold'"]),
    ('{"context": "c", "choices": ["a", "b"], "gold": 2}', ["line 2", "'gold'", "out of range", "[0, 1]"]),
    ('{"context": "c", "choices": ["a", "b"], "gold": true}', ["line 2", "'gold'"]),
    ('{"context": "c", "choices": ["a"], "gold": 0}', ["line 2", "'choices'", "at least 2"]),
    ('{"context": "", "choices": ["a", "b"], "gold": 0}', ["line 2", "'context' is empty"]),
    ('{"context": "c", "choices": ["a", ""], "gold": 0}', ["line 2", "'choices[1]' is empty"]),
    ('{"context": "c", "choices": ["a", 3], "gold": 0}', ["line 2", "'choices[1]'", "strings"]),
    ('{"context": "c", "choices": [', ["line 2", "not valid JSON"]),
    ('[1, 2]', ["line 2", "not an object"]),
])
def test_bad_lines_name_file_line_and_field(tmp_path, line, words):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"context": "ok", "choices": ["a", "b"], "gold": 1}\n' + line + "\n")
    with pytest.raises(ConfigError) as e:
        E.load_task("t", str(p))
    msg = str(e.value)
    assert str(p) in msg and "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_specs_names_and_fit():
    assert E.normalize(["pystdlib_nextline"]) == (("pystdlib_nextline", "builtin:pystdlib_nextline"),)
    name, path = E.parse_spec("mine=rel/x.jsonl")
    assert name == "mine" and path.endswith("/rel/x.jsonl") and path.startswith("/")
    with pytest.raises(ConfigError, match="used twice"):
        E.normalize(["a=x.jsonl", "a=y.jsonl"])
    with pytest.raises(ConfigError, match="not a built-in"):
        E.normalize(["nosuch"])
    with pytest.raises(ConfigError, match="task name"):
        E.normalize(["a/b=x.jsonl"])
    t = _task([{"context": "c" * 50, "choices": ["a", "b" * 20], "gold": 0, "id": "q7"}])
    with pytest.raises(ConfigError) as e:
        E.encode_task(t, BYTE, 64)
    assert all(w in str(e.value) for w in ("line 1", "q7", "choices[1]", "70 tokens", "seq_len=64", "--seq-len"))
    E.encode_task(t, BYTE, 70)


# ---- tokenization boundary and acc_norm bytes, for every tokenizer kind -----------------------
@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    """byte, a trained SentencePiece model (the project's own options) and a trained HF byte-level BPE."""
    from scaling.data import hf_vocab
    from scaling.data import vocab as V

    tmp = tmp_path_factory.mktemp("tok")
    texts = [it["context"] + c for it in UNICODE_ITEMS for c in it["choices"]] * 20
    texts += ["the quick brown fox jumps over the lazy dog %d éàü 日本 λμ" % i for i in range(200)]
    sp_path = V.train_sentencepiece(texts, str(tmp / "sp" / "m"), 400)
    sp = V.Vocab("sp", 400, open(sp_path, "rb").read(), path=sp_path)
    hf_path = hf_vocab.train_bpe(texts, str(tmp / "hf.json"), 400)
    return {"byte": BYTE, "sp": sp, "hf": hf_vocab.load(hf_path)}


@pytest.mark.parametrize("kind", ["byte", "sp", "hf"])
def test_choice_tokens_and_bytes_exact(tokenizers, kind):
    vocab = tokenizers[kind]
    task = _task(UNICODE_ITEMS)
    packed = E.PackedTask(task, vocab, 64, 4)
    for i, it in enumerate(task.items):
        for j, c in enumerate(it.choices):
            ids, k = E.choice_tokens(vocab, it.context, c)
            assert vocab.decode(ids) == it.context + c          # the pair is the text itself
            assert vocab.decode(ids[k:]).endswith(c)            # every byte of the choice is scored
            assert it.context.startswith(vocab.decode(ids[:k]))  # ... and only context before it
            if kind == "byte":
                assert vocab.decode(ids[k:]) == c
            assert packed.nbytes[i, j] == len(c.encode("utf-8"))  # acc_norm's bytes: exact, from the text
    assert np.isnan(packed.nbytes[2, 2])  # an item with fewer choices


# ---- scoring == a direct per-choice log-likelihood -------------------------------------------
def _init(model, seq_len: int, seed: int = 0):
    """Parameters of ``model`` (jitted: op-by-op init is slow), without flax's partitioning boxes."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    z = jnp.zeros((1, seq_len), jnp.int32)
    return jax.jit(lambda k: nn.meta.unbox(model.init(k, z)["params"]))(jax.random.PRNGKey(seed))


def test_scoring_equals_direct_log_likelihood(monkeypatch):
    import jax
    import jax.numpy as jnp

    from scaling.model import Decoder
    from scaling.programs import make_eval_step

    cfg = ModelConfig(vocab_size=259, seq_len=64, d_model=16, n_layers=1, n_heads=2, kv_size=8, ffw_size=32,
                      scan_layers=False, attention="einsum", compute_dtype="float32")
    model = Decoder(cfg)
    params = _init(model, 64, seed=3)
    items = UNICODE_ITEMS + [{"context": "ab" * (i + 3), "choices": ["c" * (i % 5 + 1), "d" * 3, "abab"],
                              "gold": i % 3} for i in range(5)]
    task = _task(items)
    packed = E.PackedTask(task, BYTE, 64, 4)
    assert packed.rows < packed.n_seqs  # several sequences share a row
    ev = jax.jit(make_eval_step(model))
    got = packed.choice_nll([ev(params, {k: jnp.asarray(v) for k, v in b.items()})["token_nll"]
                             for b in packed.batches])

    # each (context + choice) alone, one sequence per row from position 0, right-padded (causal:
    # the padding cannot change the positions before it); log-probabilities summed in numpy
    logprobs = jax.jit(lambda x: jax.nn.log_softmax(model.apply({"params": params}, x), axis=-1))
    want = np.full_like(got, np.nan)
    for i, it in enumerate(task.items):
        for j, c in enumerate(it.choices):
            ids, k = E.choice_tokens(BYTE, it.context, c)
            inp = np.zeros((1, 64), np.int32)
            inp[0, 1:len(ids)] = ids[:-1]
            logp = np.asarray(logprobs(inp))[0]
            want[i, j] = -sum(float(logp[t, ids[t]]) for t in range(k, len(ids)))
    np.testing.assert_allclose(got, want, rtol=2e-5, equal_nan=True)

    # large logits are read out in sequence chunks (scaling.loss): the same per-token NLL
    from scaling import loss

    monkeypatch.setattr(loss, "CHUNK_BYTES", 4 * 259 * 4 * 16)  # 16 positions per chunk
    assert loss.loss_chunk_len(cfg, 4, 64) == 16
    ev_chunked = jax.jit(make_eval_step(model))
    b0 = {k: jnp.asarray(v) for k, v in packed.batches[0].items()}
    np.testing.assert_allclose(np.asarray(ev_chunked(params, b0)["token_nll"]),
                               np.asarray(ev(params, b0)["token_nll"]), rtol=1e-5, atol=1e-6)
    monkeypatch.undo()

    m = packed.metrics([ev(params, {k: jnp.asarray(v) for k, v in b.items()})["token_nll"] for b in packed.batches])
    gold = np.array([it.gold for it in task.items])
    ll = np.where(np.isnan(want), -np.inf, -want)
    assert m["acc"] == pytest.approx(np.mean(np.argmax(ll, 1) == gold))
    nb = np.array([[len(c.encode()) for c in it.choices] + [1] * (3 - len(it.choices)) for it in task.items])
    assert m["acc_norm"] == pytest.approx(np.mean(np.argmax(ll / nb, 1) == gold))
    rows = np.arange(len(gold))
    assert m["bpb"] == pytest.approx(want[rows, gold].sum() / math.log(2) / nb[rows, gold].sum(), rel=1e-5)


def test_score_ties_and_ragged_choices():
    nll = np.array([[1.0, 1.0, np.nan], [3.0, 2.0, 1.0]])
    nb = np.array([[1.0, 4.0, np.nan], [1.0, 1.0, 1.0]])
    m = E.score(nll, nb, np.array([0, 2]))
    assert m["acc"] == 1.0                # the tie goes to the lower index, the missing choice never wins
    assert m["acc_norm"] == 0.5           # item 0: -1/4 beats -1/1
    assert m["bpb"] == pytest.approx((1.0 + 1.0) / math.log(2) / 2.0)


# ---- make-task ---------------------------------------------------------------------------
def _corpus(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    rng = np.random.default_rng(0)
    for f in range(4):
        lines = [("    " * int(rng.integers(3)))
                 + " ".join(f"w{int(x)}" for x in rng.integers(0, 50, rng.integers(2, 6))) for _ in range(60)]
        (d / f"f{f}.py").write_text("\n".join(lines) + "\n")
    return d


def test_make_task_is_deterministic_and_valid(tmp_path, capsys):
    from scaling import cli

    d = _corpus(tmp_path)
    args = [str(d), "--n-items", "40", "--seed", "3", "--context-bytes", "40"]
    assert cli.main(["make-task", *args, "--out", str(tmp_path / "a.jsonl")]) == 0
    assert cli.main(["make-task", *args, "--out", str(tmp_path / "b.jsonl")]) == 0
    assert cli.main(["make-task", *args[:-4], "--seed", "4", "--out", str(tmp_path / "c.jsonl")]) == 0
    a, b = (tmp_path / "a.jsonl").read_bytes(), (tmp_path / "b.jsonl").read_bytes()
    assert a == b and a != (tmp_path / "c.jsonl").read_bytes()
    t = E.load_task("mine", str(tmp_path / "a.jsonl"))
    assert t.n_items == 40
    for it in t.items:
        real = it.choices[it.gold]
        src = (d / it.id.split(":")[0]).read_text().split("\n")
        assert src[int(it.id.split(":")[1]) - 1] == real               # the gold choice is the real next line
        assert len(it.context.encode()) <= 40 and it.context.endswith("\n")
        assert len(set(it.choices)) == 4
        assert max(len(c.encode()) for c in it.choices) - min(len(c.encode()) for c in it.choices) <= 8
    assert "40 items x 4 choices" in capsys.readouterr().out


# ---- the training loop: rows, summary, table, resume, sha refusal ------------------------
MODEL = ModelConfig(vocab_size=259, seq_len=64, d_model=16, n_layers=1, n_heads=2, kv_size=8, ffw_size=32)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny cell with a task, trained straight through and with a stop/resume; their run dirs."""
    from scaling.train import train

    tmp = tmp_path_factory.mktemp("task_runs")
    d = _corpus(tmp)
    corpus = tmp / "c.jsonl"
    texts = [(d / f"f{i % 4}.py").read_text().split("\n") for i in range(40)]
    corpus.write_text("".join(json.dumps({"text": "\n".join(t[i % 7:i % 7 + 30])}) + "\n" for i, t in enumerate(texts)))
    items = E.make_items(E.corpus_docs(str(d)), n_items=24, context_bytes=32, max_choice_bytes=24)
    (tmp / "task.jsonl").write_text(E.items_jsonl(items))
    data = DataConfig(task="text", vocab="byte", data_dir=str(tmp / "dd"),
                      options=(("data", str(corpus)), ("validation_percent", 20)), repeat=True)
    cell = Cell(model=MODEL, tokens=8 * 8 * 64, batch_size=8, data=data, name="tasks",
                optim=OptimConfig(peak_lr=1e-2, warmup_steps=2), eval_every=2, eval_batches=1, eval_batch_size=8,
                checkpoint_every=4, eval_tasks=E.normalize([f"nl={tmp / 'task.jsonl'}"]), task_every=4)
    full = train(cell, tmp / "full")
    part = train(cell, tmp / "resumed", stop_after_step=5)
    assert part["state"] == "partial"
    resumed = train(cell, tmp / "resumed")
    return {"cell": cell, "tmp": tmp, "full": full, "resumed": resumed}


def test_loop_rows_summary_and_table(runs):
    from scaling import results
    from scaling.rundir import read_metrics

    evals = [r for r in read_metrics(runs["tmp"] / "full") if "eval_loss" in r]
    assert [r["step"] for r in evals] == [2, 4, 6, 8]
    rows = [r for r in evals if "task/nl/acc" in r]  # tasks every task_every=4 steps, not at every eval
    assert [r["step"] for r in rows] == [4, 8]
    assert all(0 <= r["task/nl/acc"] <= 1 and r["task/nl/bpb"] > 0 and "task/nl/acc_norm" in r for r in rows)
    s = runs["full"]
    t = s["tasks"]["nl"]
    assert t["n_items"] == 24 and t["acc"] == rows[-1]["task/nl/acc"] and len(t["sha"]) == 64
    assert s["timing"]["tasks"] > 0
    row = results.summary_row(s)
    assert row["task/nl/acc"] == t["acc"] and row["task/nl/sha"] == t["sha"]
    cols = results.task_columns([row])
    assert cols == [f"task/nl/{f}" for f in ("acc", "acc_norm", "bpb", "n_items", "sha")]


def test_resume_gives_identical_task_metrics(runs):
    from scaling.rundir import read_metrics

    def task_rows(p):
        return [{k: v for k, v in r.items() if k.startswith("task/") or k == "step"}
                for r in read_metrics(p) if "eval_loss" in r]

    assert task_rows(runs["tmp"] / "full") == task_rows(runs["tmp"] / "resumed")
    assert runs["full"]["tasks"] == runs["resumed"]["tasks"]


def test_changed_task_is_refused(runs, tmp_path, capsys):
    from scaling.train import train

    cell, tmp = runs["cell"], runs["tmp"]
    assert train(cell, tmp / "full")["tasks"] == runs["full"]["tasks"]  # finished: the same numbers back
    added = dataclasses.replace(cell, eval_tasks=cell.eval_tasks + E.normalize([f"nl2={tmp / 'task.jsonl'}"]))
    assert train(added, tmp / "full")["tasks"] == runs["full"]["tasks"]  # a task listed later: not rescored
    assert "finished before task 'nl2' was configured" in capsys.readouterr().err
    other = tmp_path / "other.jsonl"
    other.write_text((tmp / "task.jsonl").read_text().replace('"gold": 0', '"gold": 1', 1))
    changed = dataclasses.replace(cell, eval_tasks=E.normalize([f"nl={other}"]))
    assert changed.run_id == cell.run_id  # tasks are not part of the run identity ...
    with pytest.raises(ConfigError, match="another version"):  # ... so versions are checked by sha
        train(changed, tmp / "full")



def test_stacked_members_report_their_tasks(runs, tmp_path):
    """train_stacked scores each member's tasks from the one vmapped eval program, like train alone."""
    from scaling.stacked import train_stacked

    cell = runs["cell"]
    other = dataclasses.replace(cell, optim=dataclasses.replace(cell.optim, peak_lr=3e-3), name="tasks_b")
    a, b = train_stacked([cell, other], [tmp_path / "a", tmp_path / "b"])
    assert a["stacked"] == 2 and a["timing"]["tasks"] > 0
    want, got = runs["full"]["tasks"]["nl"], a["tasks"]["nl"]
    assert got["sha"] == want["sha"] and got["bpb"] == pytest.approx(want["bpb"], rel=1e-4)
    assert abs(got["acc"] - want["acc"]) <= 1 / 24 + 1e-9  # at most one near-tie flipped by batched kernels
    assert b["tasks"]["nl"]["bpb"] != got["bpb"]  # the other member's own parameters


def test_sweep_prepare_refuses_a_task_too_long_for_the_prepared_vocab(runs, tmp_path):
    """Trained vocabularies exist only once the data is prepared: the launcher's prepare step checks
    every task against the vocabulary it just built and refuses the launch in one line (here with the
    byte vocabulary, which takes the same path), before any worker starts."""
    from scaling.launch import commands, state, worker
    from scaling.settings import Settings

    long_task = tmp_path / "long.jsonl"
    long_task.write_text(E.items_jsonl([{"id": "big", "context": "c" * 60, "choices": ["d" * 10, "e"], "gold": 0}]))
    cell = dataclasses.replace(runs["cell"], eval_tasks=E.normalize([f"nl={long_task}"]))
    out = tmp_path / "sweep"
    state.write_cells(out, [cell], [{"run_id": cell.run_id}])
    assert worker.main([str(out), "--prepare"]) == 2
    with pytest.raises(ConfigError, match=r"long.jsonl, line 1.*'big'.*seq_len=64"):
        commands.prepare_data(out, Settings.from_environ())
    assert not (out / "runs").exists()
