"""A run directory never holds the numbers of two cells.

Every way a directory can meet a cell is tried: finished or partial, with ``config.json``
intact, corrupt or missing, and the same cell or one with a changed flag (a training number,
a shape).  Each is either refused before anything is written (ConfigError, the directory
byte-for-byte unchanged) or, for the same cell, an identical-cell resume whose losses equal
an uninterrupted run's.  Tiny cells on ``synthetic_markov``: a few seconds each.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from scaling.config import Cell, ConfigError, DataConfig, ModelConfig, OptimConfig
from scaling.rundir import RunDir, read_metrics
from scaling.train import train

MODEL = ModelConfig(vocab_size=130, seq_len=32, d_model=32, n_layers=2, n_heads=2, kv_size=16, ffw_size=64)
CELL = Cell(model=MODEL, tokens=20 * 8 * 32, batch_size=8, data=DataConfig(task="synthetic_markov"),
            optim=OptimConfig(peak_lr=3e-3, warmup_steps=2), name="ident", eval_batches=1, eval_batch_size=8,
            checkpoint_every=10)
CHANGES = {
    "same": {},
    "lr": {"optim": dataclasses.replace(CELL.optim, peak_lr=5e-3)},
    "d_model": {"model": dataclasses.replace(MODEL, d_model=48, kv_size=24)},
}
CORRUPT = '{"batch_size": 8, "model": {'


def _digest(d: Path) -> dict:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A finished run, a partial run (checkpoint at step 10 of 20) and an uninterrupted reference."""
    root = tmp_path_factory.mktemp("identity")
    full = train(CELL, root / "finished")
    partial = train(CELL, root / "partial", stop_after_step=10)
    assert full["state"] == "done" and partial["state"] == "partial"
    return root, [r["train_loss"] for r in read_metrics(root / "finished")]


@pytest.mark.parametrize("kind", ["finished", "partial"])
@pytest.mark.parametrize("config", ["ok", "corrupt", "missing"])
@pytest.mark.parametrize("change", list(CHANGES))
def test_every_way_a_directory_meets_a_cell(made, kind, config, change, tmp_path, capsys):
    root, reference = made
    run = tmp_path / "run"
    shutil.copytree(root / kind, run)
    if config == "corrupt":
        (run / "config.json").write_text(CORRUPT)
    elif config == "missing":
        (run / "config.json").unlink()
    before = _digest(run)
    cell = dataclasses.replace(CELL, **CHANGES[change])

    if change != "same":
        with pytest.raises(ConfigError, match="another cell") as e:
            train(cell, run)
        assert "\n" not in str(e.value) and "fresh --out" in str(e.value)
        assert _digest(run) == before  # refused before anything was written
        return

    summary = train(cell, run)
    assert summary["state"] == "done" and summary["run_id"] == CELL.run_id
    assert [r["train_loss"] for r in read_metrics(run)] == reference  # the same cell, bit for bit
    assert RunDir(run).read_cell().config_hash == CELL.config_hash  # config.json is whole again
    note = capsys.readouterr().err
    if config == "ok":
        assert "config.json" not in note
    else:
        assert f"config.json was {'unreadable' if config == 'corrupt' else 'missing'}" in note
        assert "same cell" in note


def test_numbers_that_name_no_cell_are_refused(made, tmp_path):
    """config.json unreadable and no summary or checkpoint to say whose metrics these are."""
    root, _ = made
    run = tmp_path / "run"
    shutil.copytree(root / "partial", run)
    shutil.rmtree(run / "checkpoints")
    (run / "config.json").write_text(CORRUPT)
    before = _digest(run)
    with pytest.raises(ConfigError, match="nothing else names the cell of its metrics.jsonl"):
        train(CELL, run)
    assert _digest(run) == before


def test_another_cells_checkpoint_beside_a_matching_config_is_refused(made, tmp_path):
    """Checkpoints copied in from another run are caught by their meta, whatever config.json says."""
    root, _ = made
    other = dataclasses.replace(CELL, seed=7)
    train(other, tmp_path / "other", stop_after_step=10)
    run = tmp_path / "run"
    shutil.copytree(root / "partial", run)
    shutil.rmtree(run / "checkpoints")
    shutil.copytree(tmp_path / "other" / "checkpoints", run / "checkpoints")
    with pytest.raises(ConfigError, match=r"checkpoint at step 10 belongs to another cell"):
        train(CELL, run)


def test_a_corrupt_config_alone_is_rewritten(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(CORRUPT)
    assert train(CELL, run, stop_after_step=1)["state"] == "partial"
    assert "nothing was trained yet; rewrote it" in capsys.readouterr().err
    assert json.loads((run / "config.json").read_text())["seed"] == CELL.seed
