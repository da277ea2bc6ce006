"""Published families as data (Chinchilla A9, Gopher, GPT-3) and the size -> shape rule."""

import csv

import numpy as np
import pytest

from scaling import accounting as A
from scaling import families as F
from scaling.config import ConfigError


def test_family_sizes_and_unique_names():
    assert len(F.CHINCHILLA_A9) == 50 and len(F.GOPHER) == 6 and len(F.GPT3) == 8
    names = F.list_members()
    assert len(names) == len(set(n.lower() for n in names)) == 64
    assert F.list_members("chinchilla")[0] == "chinchilla-44M"
    assert F.list_members("kaplan") == F.list_members("gpt3")
    with pytest.raises(ConfigError, match="family"):
        F.list_members("llama")


def test_a9_transcription_matches_reference_csv(reference_data_dir):
    with open(reference_data_dir / "chinchilla_tableA9_architectures.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(F.CHINCHILLA_A9)
    for r, m in zip(rows, F.CHINCHILLA_A9):
        assert (round(float(r["params_million"]) * 1e6), int(r["d_model"]), int(r["ffw_size"]), int(r["kv_size"]),
                int(r["n_heads"]), int(r["n_layers"])) == (
            m.reported_params, m.d_model, m.ffw_size, m.kv_size, m.n_heads, m.n_layers), m.name


@pytest.mark.parametrize("member", F.CHINCHILLA_A9, ids=lambda m: m.name)
def test_a9_analytic_size_within_one_percent(member):
    c = F.member_config(member.name, vocab_size=32000, seq_len=2048, tied_embeddings=True)
    n = A.count_params(c, relative_position_projection=True).total
    formula = 32000 * member.d_model + member.n_layers * (
        5 * member.d_model * member.d_attn + 2 * member.d_model * member.ffw_size)
    assert n - formula == (2 * member.n_layers + 1) * member.d_model  # only the norm scales differ
    assert abs(n / member.reported_params - 1) < 0.01, (member.name, n)


@pytest.mark.parametrize("member", F.GOPHER + F.GPT3, ids=lambda m: m.name)
def test_gopher_and_gpt3_sizes_close_to_reported(member):
    # Gopher: 32k SentencePiece vocab, relative positions; GPT-3: 50257 BPE vocab, learned positions.
    gpt = member.family == "gpt3"
    c = F.member_config(member.name, vocab_size=50257 if gpt else 32000, seq_len=2048,
                        position="learned" if gpt else "rope")
    n = A.count_params(c, relative_position_projection=not gpt).total
    assert member.ffw_size == 4 * member.d_model
    assert abs(n / member.reported_params - 1) < 0.02, (member.name, n)  # papers round to 2 digits


def test_get_member_lookup_and_errors():
    assert F.get_member("CHINCHILLA-44m").d_model == 512
    assert F.get_member("gpt3-small") == F.get_member("gpt3-125M")
    assert F.get_member("44M", family="gopher").n_heads == 16
    assert F.get_member("1.4B", family="gopher").name == "gopher-1.4B"
    with pytest.raises(ConfigError, match="chinchilla-44M"):
        F.get_member("chinchila-44M")
    with pytest.raises(ConfigError, match="unknown family member"):
        F.get_member("nonsense")
    with pytest.raises(ConfigError, match="unknown family member"):
        F.get_member("gpt3-125M", family="chinchilla")


def test_member_config_overrides():
    c = F.member_config("chinchilla-3530M", 1024, 512,
                        activation="swiglu", norm="layernorm", tied_embeddings=False)
    assert (c.d_model, c.n_heads, c.kv_size, c.n_layers, c.ffw_size) == (2688, 22, 128, 36, 10752)
    assert (c.activation, c.norm, c.tied_embeddings, c.name) == ("swiglu", "layernorm", False, "chinchilla-3530M")
    assert F.member_config("gopher-44M", 256, 64, n_layers=2).n_layers == 2
    with pytest.raises(ConfigError, match="not ModelConfig fields"):
        F.member_config("gopher-44M", 256, 64, depth=3)


# ---------------------------------------------------------------- size -> shape rule

GRID = np.logspace(4, 10, 49)


def _n(c, basis="non_embedding"):
    return getattr(A.count_params(c), basis)


def test_shape_rule_hits_target_and_is_monotone():
    prev = (0, 0)
    for target in GRID:
        c = F.shape_for_params(target, vocab_size=1024, seq_len=256)
        n = _n(c)
        assert abs(n / target - 1) <= F.SHAPE_TOLERANCE, (target, n)
        assert n >= prev[0], (target, n, prev)
        assert c.d_model == c.n_heads * c.kv_size and c.ffw_size == 4 * c.d_model
        assert c.kv_size % 2 == 0
        prev = (n, c.d_model)
    # deterministic
    assert F.shape_for_params(3.3e6, vocab_size=1024, seq_len=256) == F.shape_for_params(
        3.3e6, vocab_size=1024, seq_len=256)


def test_shape_rule_dense_grid_worst_error():
    errs = [abs(_n(F.shape_for_params(t, vocab_size=512, seq_len=128)) / t - 1) for t in np.logspace(4, 11, 400)]
    assert max(errs) <= F.SHAPE_TOLERANCE
    assert np.median(errs) < 0.03


def test_tiny_models_are_shallow_and_16_aligned():
    for target in np.logspace(4, 7, 13):
        c = F.shape_for_params(target, vocab_size=256, seq_len=128)
        assert 1 <= c.n_layers <= 8 and c.d_model % 16 == 0, c
        assert 16 <= c.kv_size <= 64


def test_aspect_ratio_grows_with_size():
    def mean_ratio(lo, hi):
        cs = [F.shape_for_params(t, vocab_size=1024, seq_len=256) for t in np.logspace(lo, hi, 7)]
        return np.mean([c.d_model / c.n_layers for c in cs])

    r = [mean_ratio(4, 6), mean_ratio(7, 8), mean_ratio(9, 10)]
    assert r[0] < r[1] < r[2], r
    big = F.shape_for_params(1e9, vocab_size=32000, seq_len=2048)
    assert 40 <= big.d_model / big.n_layers <= 130  # Chinchilla 1.1B: 1792 / 26 = 69


@pytest.mark.parametrize("over", [dict(activation="swiglu"), dict(norm="layernorm", position="learned"),
                                  dict(tied_embeddings=False)])
def test_shape_rule_variants_and_total_basis(over):
    for target in (2e5, 3e6, 4e7):
        c = F.shape_for_params(target, vocab_size=2048, seq_len=256, **over)
        for k, v in over.items():
            assert getattr(c, k) == v
        assert abs(_n(c) / target - 1) <= F.SHAPE_TOLERANCE
        t = F.shape_for_params(target, vocab_size=2048, seq_len=256, basis="total", **over)
        assert abs(_n(t, "total") / target - 1) <= F.SHAPE_TOLERANCE
        assert _n(t) <= _n(c)  # part of a total budget goes to the embedding
        if target < 1e6:
            assert _n(t) < _n(c)


def test_shape_rule_bad_input():
    with pytest.raises(ConfigError, match="positive"):
        F.shape_for_params(-5, vocab_size=256, seq_len=64)
    with pytest.raises(ConfigError, match="basis"):
        F.shape_for_params(1e6, vocab_size=256, seq_len=64, basis="head")
    with pytest.raises(ConfigError, match="d_model"):
        F.shape_for_params(1e6, vocab_size=256, seq_len=64, d_model=64)
    with pytest.raises(ConfigError, match="range"):
        F.shape_for_params(100, vocab_size=256, seq_len=64)
    with pytest.raises(ConfigError, match="range"):
        F.shape_for_params(1e4, vocab_size=32000, seq_len=64, basis="total")  # below one 32k x 16 table
