"""Results table: rebuilt from run directories, one row per finished cell, documented columns."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from scaling import results
from scaling.rundir import SUMMARY, in_sweep, write_json_atomic


def _run(out: Path, rid: str, *, state="done", finished=True, loss=3.0, budget=1e12, timing=None):
    """A run directory as the trainer leaves it (through scaling.rundir, like the trainer)."""
    rd = in_sweep(out, rid)
    rd.path.mkdir(parents=True)
    s = {"run_id": rid, "state": state, "steps": 10, "tokens_seen": 20480, "tokens_unique": 10240, "epochs": 2.0,
         "params": {"total": 5000, "non_embedding": 3000, "embedding": 2000, "head": 0, "tied": True},
         "flops_per_token": {"chinchilla": 4e4}, "budget": budget, "flops_convention": "chinchilla",
         "flops_achieved": {"6N": 6e8, "kaplan": 5e8, "chinchilla": 8.2e8, "chinchilla_no_embed": 7e8},
         "final_eval_loss": loss, "final_eval_bpb": 1.2, "final_train_loss": loss - 0.1, "tokens_per_s": 1e4,
         "mfu": 0.2, "wall_s": 5.0, "compile_s": 1.0, "git_sha": "abc", "corpus_hash": "c", "vocab_hash": "v",
         "schedule": "cosine", "peak_lr": 1e-3, "batch_size": 8, "seq_len": 256, "warmup_steps": 3,
         "group": "isoflop",
         "timing": timing or {"startup": 0.5, "compile": 1.0, "data": 0.1, "train": 3.0, "eval": 0.2,
                              "checkpoint": 0.2}}
    if finished:
        rd.finish(s)
    else:  # killed between writing the summary and the marker
        write_json_atomic(rd.path / SUMMARY, s)
    return rd


def test_table_rows_columns_and_files(tmp_path):
    _run(tmp_path, "a-1", loss=3.0)
    _run(tmp_path, "b-2", loss=4.0, state="diverged")
    _run(tmp_path, "c-3", finished=False)  # summary but no SUCCESS: not finished, no row
    (tmp_path / "runs" / "d-4").mkdir()  # planned, nothing written
    df = results.write_table(tmp_path)
    assert list(df.columns) == results.COLUMNS
    assert sorted(df["run_id"]) == ["a-1", "b-2"] and df["run_id"].is_unique
    a = df.set_index("run_id").loc["a-1"]
    assert a["n_total"] == 5000 and a["n_non_embedding"] == 3000 and a["n_embedding"] == 2000
    assert a["flops_achieved"] == 8.2e8 and a["flops_planned"] == 1e12 and a["flops_6N"] == 6e8
    assert a["tokens"] == 20480 and a["tokens_unique"] == 10240 and a["eval_loss"] == 3.0
    assert a["group"] == "isoflop" and a["warmup_steps"] == 3 and a["state"] == "done"
    assert df.set_index("run_id").loc["b-2", "state"] == "diverged"
    for name in ("results.csv", "results.parquet"):
        assert (tmp_path / name).exists()
    pq = pd.read_parquet(tmp_path / "results.parquet")
    assert list(pq["run_id"]) == list(df["run_id"])
    # rebuilt, never appended: writing twice gives the same rows
    again = results.write_table(tmp_path)
    assert len(again) == 2 and len(pd.read_csv(tmp_path / "results.csv")) == 2
    assert not list(tmp_path.glob(".results.*")), "temp files cleaned up"


def test_timing_breakdown_sums_phases():
    s = [{"timing": {"startup": 1, "compile": 2, "data": 0, "train": 17, "eval": 0, "checkpoint": 0}},
         {"timing": {"train": 20, "compile": 0.0}}]
    tot = results.timing_breakdown(s)
    assert tot["train"] == 37 and tot["compile"] == 2
    line = results.format_breakdown(tot, 50.0)
    assert "train 37.0s (92.5%)" in line and "sweep wall 50.0s" in line
