"""The `scaling` console script: count output, one-line errors before any compute."""

import json

import pytest

from scaling import accounting
from scaling.cli import main
from scaling.config import ModelConfig


def _run(capsys, argv):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_count_json_matches_accounting(capsys):
    rc, out, _ = _run(capsys, ["count", "--d-model", "640", "--n-layers", "10", "--n-heads", "10",
                               "--kv-size", "64", "--ffw-size", "2560", "--vocab", "32000", "--seq-len", "2048",
                               "--tied-embeddings", "--relative-position-projection", "--format", "json"])
    assert rc == 0
    got = json.loads(out)
    cfg = ModelConfig(vocab_size=32000, seq_len=2048, d_model=640, n_layers=10, n_heads=10, kv_size=64,
                      ffw_size=2560, tied_embeddings=True)
    want = accounting.count_params(cfg, relative_position_projection=True)
    assert got["params"] == {"total": want.total, "non_embedding": want.non_embedding,
                             "embedding": want.embedding, "head": want.head}
    assert set(got["flops_per_token"]) == {"6N", "kaplan", "chinchilla", "chinchilla_no_embed"}
    # Chinchilla Table A4, 73M row: chinchilla_no_embed / 6N = 1.03 (see accounting docs)
    assert round(got["flops_per_token"]["chinchilla_no_embed"] / got["flops_per_token"]["6N"], 2) == 1.03


def test_count_member(capsys):
    rc, out, _ = _run(capsys, ["count", "--member", "chinchilla-44M", "--vocab", "32000", "--seq-len", "2048",
                               "--tied-embeddings", "--format", "json"])
    assert rc == 0 and json.loads(out)["params"]["total"] > 40e6


@pytest.mark.parametrize("argv, needle", [
    (["--d-model", "100", "--n-layers", "2", "--n-heads", "3"], "not divisible by --n-heads"),
    (["--d-model", "96", "--n-layers", "2", "--n-heads", "3", "--ffw-size", "0"], "ffw_size"),
    (["--member", "chinchilla-45M"], "unknown family member; did you mean"),
    (["--d-model", "96"], "--n-layers"),
])
def test_bad_shapes_give_one_line_errors(capsys, argv, needle):
    rc, _, err = _run(capsys, ["count", *argv, "--vocab", "1024", "--seq-len", "64"])
    assert rc == 2
    assert needle in err and err.count("\n") == 1


def test_train_rejects_bad_input_before_compiling(capsys, tmp_path):
    base = ["train", "--out", str(tmp_path / "r"), "--d-model", "32", "--n-layers", "1", "--n-heads", "2",
            "--task", "synthetic_markov", "--seq-len", "32", "--lr", "1e-3"]
    rc, _, err = _run(capsys, base + ["--tokens", "100", "--batch", "8"])
    assert rc == 2 and "below one batch" in err
    rc, _, err = _run(capsys, base + ["--tokens", "100000", "--batch", "8", "--mesh", "data=3"])
    assert rc == 2 and "mesh" in err
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_model_option_flags_apply_on_top_of_a_config(tmp_path):
    from scaling.cli import build_cell, build_parser
    from scaling.config import Cell, cell_to_json

    cfg = ModelConfig(vocab_size=259, seq_len=32, d_model=16, n_layers=2, n_heads=2, kv_size=8, ffw_size=64)
    p = tmp_path / "c.json"
    p.write_text(cell_to_json(Cell(model=cfg, tokens=4096, batch_size=8)))
    args = build_parser().parse_args(["train", "--out", str(tmp_path / "o"), "--config", str(p), "--remat", "full",
                                      "--attention", "dot_product", "--scan-layers"])
    m = build_cell(args).model
    assert (m.remat, m.attention, m.scan_layers, m.d_model) == ("full", "dot_product", True, 16)
