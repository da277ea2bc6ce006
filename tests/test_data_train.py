"""No trained model beats the synthetic_markov entropy rate (uses scaling.train end to end).

A tiny decoder trains on a small chain (16 symbols, order 2: 256 contexts) until its eval
loss is close to the entropy rate.  We then compute the Bayes-optimal loss of the *true*
chain on exactly the eval tokens the trainer used (stationary marginals for the first
positions of each row, which have less context) and check that the model does not beat it,
nor the analytic entropy rate, by more than sampling noise - while having learnt most of
the structure (its loss is well below the unigram entropy).
"""

import math

import numpy as np
import pytest

from scaling.config import Cell, DataConfig, ModelConfig, OptimConfig
from scaling import data as D
from scaling.data import synthetic_markov as M

OPTS = (("symbols", 16), ("order", 2), ("alpha", 0.3), ("train_tokens", 1_000_000),
        ("validation_tokens", 50_000))


def bayes_nll(rows, spec, P):
    V, k = spec.symbols, spec.order
    pi = M.stationary(spec, P).reshape(V, V)
    p1 = pi.sum(0)                                   # marginal of a symbol
    p21 = pi / pi.sum(1, keepdims=True)              # P(b | a) at stationarity
    x = rows.astype(np.int64) - M.FIRST_ID
    nll = np.empty(x.shape)
    nll[:, 0] = -np.log(p1[x[:, 0]])
    nll[:, 1] = -np.log(p21[x[:, 0], x[:, 1]])
    nll[:, 2:] = -np.log(P[x[:, :-2] * V + x[:, 1:-1], x[:, 2:]])
    return nll


def test_trained_model_does_not_beat_entropy_rate(tmp_path):
    from scaling import train
    from scaling.inputs import EVAL_SEED
    data = DataConfig(task="synthetic_markov", options=OPTS, data_dir=str(tmp_path / "data"))
    spec = M.MarkovSpec.from_options(OPTS)
    model = ModelConfig(vocab_size=D.vocab_size(data), seq_len=32, d_model=64, n_layers=2, n_heads=2,
                        kv_size=32, ffw_size=256)
    B, steps = 32, 400
    cell = Cell(model=model, tokens=steps * B * 32, batch_size=B, data=data,
                optim=OptimConfig(peak_lr=3e-3, warmup_steps=20, weight_decay=0.0), name="entropy",
                eval_batches=8, checkpoint_every=10_000)
    summary = train.train(cell, tmp_path / "run")
    H = summary["entropy_rate"]
    loss = summary["final_eval_loss"]
    assert H == pytest.approx(M.entropy_rate(spec))
    # the very eval tokens the trainer saw
    val = D.open_source(data, "validation", 32)
    rows = np.concatenate([val.batch(i, B, seed=EVAL_SEED)["decoder_target_tokens"]
                           for i in range(cell.eval_batches)])
    nll = bayes_nll(rows, spec, M.transitions(spec))
    bayes, se = nll.mean(), nll.std() / math.sqrt(nll.size)
    assert bayes >= H - 4 * se  # first positions have less context: the Bayes loss is >= H
    assert loss >= bayes - 4 * se, (loss, bayes, se, H)
    assert loss >= H - 4 * se, (loss, H, se)
    x = np.asarray(val.tokens).astype(np.int64) - M.FIRST_ID
    print(f"eval_loss={loss:.4f} bayes_on_eval={bayes:.4f} se={se:.4f} H={H:.4f}")
    p = np.bincount(x, minlength=spec.symbols) / x.size
    unigram = -(p * np.log(np.where(p > 0, p, 1))).sum()
    print(f"unigram={unigram:.4f}")
    assert loss < H + 0.5 * (unigram - H), (loss, H, unigram)  # and it did learn the chain


def test_tokenizer_larger_than_model_vocab_is_refused_before_compiling(tmp_path):
    """A tokenizer whose size exceeds model.vocab_size: one-line ConfigError, no data read, no compile."""
    train = pytest.importorskip("scaling.train")
    from scaling.config import ConfigError
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "hello"}\n')
    data = DataConfig(task="text", vocab="hf-bpe:512", data_dir=str(tmp_path / "dd"), options=(("data", str(corpus)),))
    assert D.vocab_size(data) == 512
    model = ModelConfig(vocab_size=259, seq_len=16, d_model=32, n_layers=1, n_heads=2, kv_size=16, ffw_size=64)
    cell = Cell(model=model, tokens=16 * 8 * 2, batch_size=8, data=data)
    with pytest.raises(ConfigError, match=r"model.vocab_size=259: .*'hf-bpe:512' has 512 tokens; set vocab_size >= 512"):
        train.train(cell, tmp_path / "run")
    assert not (tmp_path / "dd" / "cache").exists()
