"""Stacked training: K same-shape cells in one vmapped program must behave like K ``train`` calls.

The cells are the trainer tests' tiny decoder (d 32, 2 layers, seq 32) on ``synthetic_markov``,
16 steps of batch 8 on the 8 fake CPU devices.  The reference for every check is the same
cell trained alone by :func:`scaling.train.train` (module fixture ``alone``), so the tests
read as "stacking changes nothing but the wall time".  The four members of ``STACK`` differ
in peak LR, seed (so each member reads its own rows) and one diverges; the resume test uses
two same-seed members (one shared batch fed to both).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from scaling.config import Cell, ConfigError, DataConfig, ModelConfig, OptimConfig
from scaling.launch import state
from scaling.settings import Settings
from scaling.stacked import stack_key, train_stacked
from scaling.rundir import read_metrics
from scaling.train import train

STEPS = 16
MODEL = ModelConfig(vocab_size=130, seq_len=32, d_model=32, n_layers=2, n_heads=2, kv_size=16, ffw_size=64)
BASE = Cell(model=MODEL, tokens=STEPS * 8 * 32, batch_size=8, data=DataConfig(task="synthetic_markov"),
            optim=OptimConfig(peak_lr=3e-3, warmup_steps=3), name="a", eval_every=8, eval_batches=1,
            eval_batch_size=8, checkpoint_every=8, log_every=1)


def member(name, lr=3e-3, seed=0, **optim):
    return dataclasses.replace(BASE, name=name, seed=seed, optim=OptimConfig(peak_lr=lr, warmup_steps=3, **optim))


STACK = [member("a"), member("b", lr=1e-2, schedule="wsd"), member("c", seed=1, weight_decay=0.0),
         member("boom", lr=1e30, clip_norm=1e30)]


def _curve(run_dir):
    rows = read_metrics(run_dir)
    return [r["step"] for r in rows], [r["train_loss"] for r in rows], [r.get("eval_loss") for r in rows]


def _assert_same_run(stacked_dir, alone_dir):
    s1, l1, e1 = _curve(stacked_dir)
    s2, l2, e2 = _curve(alone_dir)
    assert s1 == s2
    np.testing.assert_allclose(np.array(l1, dtype=float), np.array(l2, dtype=float), rtol=1e-5)
    assert [e is None for e in e1] == [e is None for e in e2]
    np.testing.assert_allclose([e for e in e1 if e is not None], [e for e in e2 if e is not None], rtol=1e-5)


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """Every member of STACK trained by plain train(), one after another: the reference."""
    root = tmp_path_factory.mktemp("alone")
    return {c.name: (train(c, root / c.name), root / c.name) for c in STACK}


@pytest.fixture(scope="module")
def stacked(tmp_path_factory):
    root = tmp_path_factory.mktemp("stacked")
    return train_stacked(STACK, [root / c.name for c in STACK]), root


def test_stacked_members_match_training_alone(alone, stacked):
    summaries, root = stacked
    assert len({stack_key(c) for c in STACK}) == 1
    for c, s in zip(STACK, summaries):
        ref, ref_dir = alone[c.name]
        rd = root / c.name
        _assert_same_run(rd, ref_dir)
        assert s["stacked"] == len(STACK) and s["run_id"] == c.run_id and s["state"] == ref["state"]
        assert set(s) == set(ref) | {"stacked"}  # the same summary keys as train, plus "stacked"
        assert s == json.loads((rd / "summary.json").read_text())
        assert s["steps"] == ref["steps"] and s["peak_lr"] == c.optim.peak_lr
        assert [set(r) for r in read_metrics(rd)] == [set(r) for r in read_metrics(ref_dir)]
        assert json.loads((rd / "config.json").read_text()) == json.loads((ref_dir / "config.json").read_text())
        assert any(p.name.startswith("events.out.tfevents") for p in (rd / "tb").iterdir())
        if c.name == "boom":  # diverged at the same step, alone and stacked; the others went on
            assert s["state"] == "diverged" and (rd / "DIVERGED").exists() and not (rd / "SUCCESS").exists()
            assert s["steps"] < STEPS and read_metrics(rd)[-1]["train_loss"] is None
            assert all(int(p.name) < s["steps"] for p in (rd / "checkpoints").iterdir() if p.name.isdigit())
        else:
            assert s["state"] == "done" and (rd / "SUCCESS").exists() and s["steps"] == STEPS
            np.testing.assert_allclose(s["final_eval_loss"], ref["final_eval_loss"], rtol=1e-5)
            assert s["tokens_per_s"] > 0 and s["mfu"] > 0 and s["compile_s"] > 0
    assert train_stacked(STACK, [root / c.name for c in STACK]) == summaries  # all finished: nothing trains


def test_stop_resume_mixed_steps_and_plain_train_resume(alone, tmp_path):
    a, b = member("a"), member("b", lr=1e-2, schedule="wsd")  # one seed: one shared batch for both
    dirs = [tmp_path / "a", tmp_path / "b"]
    s = train_stacked([a, b], dirs, stop_after_step=6)
    assert [x["state"] for x in s] == ["partial", "partial"] and not any((d / "SUCCESS").exists() for d in dirs)
    s = train_stacked([a, b], dirs, stop_after_step=10)  # both at step 6: restored and stacked again
    assert [(x["state"], x["steps"], x["stacked"]) for x in s] == [("partial", 10, 2)] * 2
    assert train(b, dirs[1], stop_after_step=12)["steps"] == 12  # a stacked member's checkpoint, resumed alone
    s = train_stacked([a, b], dirs)  # a at 10, b at 12: each finishes alone
    assert [x["state"] for x in s] == ["done", "done"] and "stacked" not in s[0]
    for c, d in zip((a, b), dirs):
        _assert_same_run(d, alone[c.name][1])
        np.testing.assert_allclose(json.loads((d / "summary.json").read_text())["final_eval_loss"],
                                   alone[c.name][0]["final_eval_loss"], rtol=1e-5)


@pytest.mark.parametrize("change, field", [
    (dict(model=dataclasses.replace(MODEL, d_model=64, kv_size=32)), "model"),
    (dict(tokens=(STEPS + 5) * 8 * 32), "steps"),
    (dict(eval_every=5), "eval_every"),
])
def test_unstackable_cells_are_refused(change, field, tmp_path):
    other = dataclasses.replace(BASE, name="other", **change)
    assert stack_key(other) != stack_key(BASE)
    with pytest.raises(ConfigError, match=f"differs from .* in {field} ") as e:
        train_stacked([BASE, other], [tmp_path / "x", tmp_path / "y"])
    assert "\n" not in str(e.value) and not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="run dir"):
        train_stacked([BASE, BASE], [tmp_path / "x"])


def test_worker_stacks_same_key_cells(tmp_path):
    """Four same-key cells (LRs and seeds differ) are claimed and trained as one stack; a fifth
    cell with another step count is trained alone; each cell exactly once."""
    settings = Settings.from_environ().replace(stack_max=8)  # off by default on CPU (measured slower there)
    group = [member(f"w{i}", lr=lr, seed=i) for i, lr in enumerate((2e-3, 3e-3, 5e-3, 8e-3))]
    single = dataclasses.replace(member("long"), tokens=(STEPS + 2) * 8 * 32)
    out = tmp_path / "sweep"
    state.write_cells(out, group + [single], [])
    from scaling.launch.worker import run_worker

    assert run_worker(out, settings=settings) == {"trained": 5, "skipped": 0, "failed": 0}
    for c in group + [single]:
        rd = state.run_dir(out, c.run_id)
        s = rd.read_summary()
        assert s["state"] == "done" and rd.final_state() == "done"
        assert s.get("stacked") == (None if c is single else 4)
        assert [a["event"] for a in rd.attempts()] == ["start", "done"]
        assert not rd.lock_path.exists()


def test_stack_max_default_and_bad_value(monkeypatch):
    from scaling.launch.worker import stack_max

    monkeypatch.delenv("SCALING_STACK_MAX", raising=False)
    assert stack_max(Settings.from_environ()) == 1  # CPU: stacking measured slower (benchmarks/stacked.py), so off
    monkeypatch.setenv("SCALING_STACK_MAX", "5")
    assert stack_max(Settings.from_environ()) == 5
    assert stack_max(Settings.from_environ(), custom_trainer=True) == 1  # a custom trainer takes one cell per call
    monkeypatch.setenv("SCALING_STACK_MAX", "many")
    with pytest.raises(ConfigError, match="SCALING_STACK_MAX='many'"):
        Settings.from_environ()


def test_stack_max_is_one_in_a_multi_process_job(monkeypatch):
    """train_stacked is single-process: a worker in a multi-process JAX job must not claim stacks."""
    import jax

    from scaling.launch.worker import stack_max

    monkeypatch.setattr(jax, "process_count", lambda: 2)
    assert stack_max(Settings(stack_max=8)) == 1


def test_stacked_scanned_layers_with_remat_match_training_alone(tmp_path):
    """The accelerator layout (layers under one nn.scan, remat dots) stacks like the unrolled one:
    vmap over members of a scanned body gives each member's own curve, and a member's checkpoint
    (scanned layout) resumes with plain train."""
    model = dataclasses.replace(MODEL, scan_layers=True, remat="dots")
    cells = [dataclasses.replace(member(n, lr=lr, seed=i), model=model)
             for i, (n, lr) in enumerate((("s0", 3e-3), ("s1", 1e-2)))]
    alone_dirs = [tmp_path / "alone" / c.name for c in cells]
    refs = [train(c, d) for c, d in zip(cells, alone_dirs)]
    dirs = [tmp_path / "stacked" / c.name for c in cells]
    s = train_stacked(cells, dirs, stop_after_step=8)
    assert [(x["state"], x["stacked"]) for x in s] == [("partial", 2)] * 2
    assert json.loads((dirs[0] / "config.json").read_text())["model"]["scan_layers"] is True
    assert train(cells[1], dirs[1])["state"] == "done"  # a stacked scanned checkpoint, resumed alone
    assert train_stacked(cells[:1], dirs[:1])[0]["state"] == "done"
    for c, d, ref, ref_dir in zip(cells, dirs, refs, alone_dirs):
        _assert_same_run(d, ref_dir)
        np.testing.assert_allclose(json.loads((d / "summary.json").read_text())["final_eval_loss"],
                                   ref["final_eval_loss"], rtol=1e-5)
