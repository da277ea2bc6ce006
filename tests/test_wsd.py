"""WSD trunks with forked cooldowns: planning, dependencies, exact continuation, kill + relaunch, bad input.

The model is the launcher tests' tiny decoder on ``synthetic_markov`` (d 16, seq 32, batch 8):
one trunk and three forks (20, 40 and 60 steps, cooldown 20%).  The reference for a fork is
the independent WSD run of its horizon: same cell, no trunk.  On CPU in float32 the fork must
match it exactly, because up to the fork step the trunk *is* that run (same LR to the bit, same
batches, same PRNG key) and a checkpoint round trip is bitwise.
"""

from __future__ import annotations

import dataclasses
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scaling.config import ConfigError, DataConfig, ModelConfig, OptimConfig
from scaling.launch import state
from scaling.rundir import read_metrics, sweep_runs
from scaling.sweep import Recipe, Sweep, WSDFork, plan

REPO = Path(__file__).resolve().parents[1]
TPS = 8 * 32  # tokens per step


def shape(n, V, L):
    return ModelConfig(vocab_size=V, seq_len=L, d_model=16, n_layers=int(n), n_heads=2, kv_size=8, ffw_size=64)


RECIPE = Recipe(data=DataConfig(task="synthetic_markov", repeat=True), seq_len=32, batch_size=8,
                optim=OptimConfig(peak_lr=3e-3, warmup_steps=4), eval_batches=1, eval_batch_size=8, log_every=4,
                checkpoint_every=8)


def sweep(lr=3e-3, sizes=(1,), **grid) -> Sweep:
    kw = dict(tokens=(20 * TPS, 40 * TPS, 60 * TPS))
    kw.update(grid)
    return Sweep(name="w", recipe=dataclasses.replace(RECIPE, optim=OptimConfig(peak_lr=lr, warmup_steps=4)),
                 family=shape, grid=WSDFork(sizes=sizes, **kw))


def test_plan_trunk_forks_steps_and_savings():
    p = plan(sweep(sizes=(1, 2)), estimate=False)
    trunks = [c for c in p.cells if c.group == "wsd_trunk"]
    forks = [c for c in p.cells if c.group == "wsd_fork"]
    assert len(trunks) == 2 and len(forks) == 6
    for t in trunks:
        mine = [f for f in forks if f.trunk == t.run_id]
        assert [f.steps for f in mine] == [20, 40, 60] and [f.fork_step for f in mine] == [16, 32, 48]
        assert t.steps == 48 and t.checkpoint_steps == (16, 32, 48) and t.optim.schedule == "constant"
        for f in mine:
            assert f.optim.schedule == "wsd" and f.optim.decay_frac == 0.2 and f.optim.warmup_steps == t.optim.warmup_steps
    rows = {r["run_id"]: r for r in p.rows}
    f = forks[0]
    assert rows[f.run_id]["flops_trained"] == pytest.approx(rows[f.run_id]["flops_achieved"] * (20 - 16) / 20)
    assert p.savings["flops"] == pytest.approx(sum(r["flops_trained"] for r in p.rows))
    assert p.savings["flops_independent"] == pytest.approx(sum(rows[c.run_id]["flops_achieved"] for c in forks))
    assert p.savings["flops"] / p.savings["flops_independent"] == pytest.approx((48 + 4 + 8 + 12) / 120)
    # a fork's identity hashes its trunk's: another trunk LR gives other fork ids
    other = plan(sweep(lr=4e-3), estimate=False)
    assert not {c.run_id for c in other.cells} & {c.run_id for c in p.cells}
    assert plan(sweep(decay_shape="1-sqrt"), estimate=False).cells[1].run_id != p.cells[1].run_id


def test_peak_lrs_give_one_trunk_per_lr_with_its_own_forks():
    p = plan(sweep(sizes=(1,), peak_lrs=(1e-3, 4e-3)), estimate=False)
    trunks = [c for c in p.cells if c.group == "wsd_trunk"]
    assert sorted(t.optim.peak_lr for t in trunks) == [1e-3, 4e-3]
    for t in trunks:
        mine = [c for c in p.cells if c.trunk == t.run_id]
        assert len(mine) == 3 and {c.optim.peak_lr for c in mine} == {t.optim.peak_lr}
        assert all(f"-lr{t.optim.peak_lr:.2g}-" in c.name + "-" for c in mine + [t])
    # without peak_lrs the recipe's LR (no tag): the LR sweep does not rename a plain grid's cells
    assert [c.optim.peak_lr for c in plan(sweep(), estimate=False).cells] == [3e-3] * 4
    with pytest.raises(ConfigError, match=r"grid.peak_lrs: -1 is not a positive learning rate"):
        plan(sweep(peak_lrs=(-1,)), estimate=False)


@pytest.mark.parametrize("grid, needle", [
    (dict(decay_frac=0.0), "grid.decay_frac=0.0: must be in (0, 1)"),
    (dict(decay_frac=1.0), "grid.decay_frac=1.0: must be in (0, 1)"),
    (dict(decay_shape="exp"), "grid.decay_shape='exp': choose one of"),
    (dict(tokens=(5 * TPS,)), "leave no stable phase"),
])
def test_bad_grids_fail_before_training(grid, needle):
    with pytest.raises(ConfigError) as e:
        plan(sweep(**grid), estimate=False)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_fork_step_must_lie_inside_the_fork():
    c = plan(sweep(), estimate=False).cells[1]
    with pytest.raises(ConfigError, match="fork_step=20: a fork starts at a trunk step in"):
        dataclasses.replace(c, fork_step=20).validate()
    with pytest.raises(ConfigError, match="only a fork"):
        dataclasses.replace(c, trunk="").validate()


def _run(out: Path, sw: Sweep, **kw) -> dict:
    from scaling.launch.worker import run_worker

    p = plan(sw, estimate=False)
    state.write_cells(out, p.cells, p.rows)
    return run_worker(out, **kw)


def _final(rd) -> float:
    return [r["eval_loss"] for r in read_metrics(rd) if r.get("eval_loss") is not None][-1]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """An uninterrupted sweep, plus every fork's independent WSD run (same cell, no trunk)."""
    from scaling.train import train

    root = tmp_path_factory.mktemp("wsd")
    sw = sweep()
    assert _run(root / "sweep", sw) == {"trained": 4, "skipped": 0, "failed": 0}
    indep = {}
    for c in plan(sw, estimate=False).cells:
        if c.trunk:
            alone = dataclasses.replace(c, trunk="", fork_step=0)
            indep[c.run_id] = train(alone, root / "alone" / c.run_id)
    return root, sw, indep


def test_forks_equal_independent_wsd_runs_and_trunk_keeps_fork_steps(swept):
    root, sw, indep = swept
    p = plan(sw, estimate=False)
    trunk = next(c for c in p.cells if not c.trunk)
    ckpts = state.run_dir(root / "sweep", trunk.run_id).checkpoints
    assert {16, 32, 48} <= {int(d.name) for d in ckpts.iterdir() if d.name.isdigit()}
    for c in p.cells:
        rd = state.run_dir(root / "sweep", c.run_id)
        s = rd.read_summary()
        assert s["state"] == "done"
        if c.trunk:
            assert s["trunk"] == trunk.run_id and s["fork_step"] == c.fork_step and s["steps"] == c.steps
            assert s["final_eval_loss"] == indep[c.run_id]["final_eval_loss"]  # exact: the same run
            assert s["flops_achieved"] == indep[c.run_id]["flops_achieved"]
            steps = [r["step"] for r in read_metrics(rd)]
            assert steps == sorted(set(steps)) and steps[0] < c.fork_step < steps[-1] == c.steps  # trunk rows copied in
    from scaling.results import build_table

    df = build_table(root / "sweep")
    forks = df[df["group"] == "wsd_fork"]
    assert len(forks) == 3 and set(forks["trunk"]) == {trunk.run_id} and sorted(forks["fork_step"]) == [16, 32, 48]
    assert list(forks.sort_values("tokens")["tokens"]) == [20 * TPS, 40 * TPS, 60 * TPS]
    assert (df["group"] == "wsd_trunk").sum() == 1


def test_sigkill_mid_sweep_then_relaunch_gives_the_same_forks(swept, tmp_path):
    root, sw, _ = swept
    exp = tmp_path / "exp.py"
    exp.write_text("import sys; sys.path.insert(0, %r)\nfrom test_wsd import sweep\nSWEEP = sweep()\n" % str(REPO / "tests"))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "scaling.cli", "sweep", str(exp), "--out", str(out), "--workers", "1", "--no-report"]
    env = dict(__import__("os").environ, PYTHONPATH=str(REPO))
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    forks_started = lambda: any(rd.read_metrics() and rd.read_cell() and rd.read_cell().trunk  # noqa: E731
                                for rd in sweep_runs(out))
    while time.time() < deadline and not forks_started():
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    time.sleep(0.5)
    assert forks_started(), "the kill landed after a fork had started"
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    for rd in sweep_runs(root / "sweep"):
        again = state.run_dir(out, rd.name)
        assert again.read_summary()["final_eval_loss"] == rd.read_summary()["final_eval_loss"], rd.name
        assert [a["event"] for a in again.attempts()].count("done") == 1  # finished once


def test_trunk_diverged_marks_its_forks_and_the_sweep_goes_on(tmp_path):
    counts = _run(tmp_path, sweep(lr=1e6))
    assert counts["failed"] == 0
    p = plan(sweep(lr=1e6), estimate=False)
    states = {c.run_id: state.cell_state(state.run_dir(tmp_path, c.run_id)) for c in p.cells}
    assert set(states.values()) == {"diverged"}
    fork = next(c for c in p.cells if c.trunk)
    assert "diverged at step" in state.run_dir(tmp_path, fork.run_id).read_summary()["reason"]


def test_missing_trunk_checkpoint_names_the_step_and_the_fix(swept, tmp_path):
    from scaling.train import train

    root, sw, _ = swept
    p = plan(sw, estimate=False)
    out = tmp_path / "copy"
    shutil.copytree(root / "sweep", out)
    trunk = next(c for c in p.cells if not c.trunk)
    fork = next(c for c in p.cells if c.trunk and c.fork_step == 32)
    shutil.rmtree(state.run_dir(out, trunk.run_id).checkpoints / "32")
    shutil.rmtree(state.run_dir(out, fork.run_id).path)
    assert state.fork_dependency(out, fork) == "ready"  # the trunk is done: training reports what is missing
    with pytest.raises(ConfigError) as e:
        train(fork, state.run_dir(out, fork.run_id).path)
    msg = str(e.value)
    assert "no checkpoint at step 32" in msg and f"delete {state.run_dir(out, trunk.run_id).path}" in msg


def test_fork_waits_while_its_trunk_has_not_reached_the_fork_step(tmp_path):
    p = plan(sweep(), estimate=False)
    fork = next(c for c in p.cells if c.trunk)
    assert state.fork_dependency(tmp_path, fork) == "waiting"  # trunk planned, nothing written
    lock = state.CellLock(state.run_dir(tmp_path, fork.trunk))
    assert lock.acquire()
    try:
        assert state.fork_dependency(tmp_path, fork) == "waiting"  # trunk running
    finally:
        lock.release()
    state.run_dir(tmp_path, fork.trunk).write_failed("boom")
    assert state.fork_dependency(tmp_path, fork) == "trunk_failed"


def test_report_reads_the_fork_table_and_drops_trunks(swept, tmp_path):
    from analysis.report import write_report
    from scaling.results import build_table

    root, sw, _ = swept
    df = build_table(root / "sweep")
    s = write_report(df, tmp_path / "report", **dict(sw.report_columns(), approaches=(), bootstrap=0))
    assert any("wsd_trunk" in w for w in s["warnings"])  # the trunk row is not an end-of-schedule loss
    assert (tmp_path / "report" / "wsd_forks.png").exists()
