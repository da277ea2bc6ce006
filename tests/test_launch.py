"""Launcher reliability: locks, SIGKILL + relaunch, two launchers, diverging/failing cells,
status, and one end-to-end sweep through the real trainer.

Most tests swap the trainer for ``fake_train`` below (``train_fn="test_launch:fake_train"``), which logs every
start and finish to ``OUT/trainlog`` with O_APPEND, so "trained exactly once" is checked by
counting lines.  The worker processes import it from this file (tests/ is put on PYTHONPATH).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from scaling.config import ConfigError
from scaling.launch import state
from scaling.rundir import RunDir, sweep_runs

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


# ------------------------------------------------------------------------------ fake trainer
def fake_train(cell, run_dir):
    """Stand-in for scaling.train.train with the same on-disk contract (summary, SUCCESS/DIVERGED)."""
    rd = RunDir(run_dir)
    rd.path.mkdir(parents=True, exist_ok=True)
    log = rd.path.parent.parent / "trainlog"

    def note(ev):
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, f"{ev} {cell.run_id} {os.getpid()}\n".encode())
        os.close(fd)

    if rd.is_finished():
        return rd.finished_summary()
    note("start")
    if cell.optim.peak_lr >= 1000:
        raise FloatingPointError("fake: loss is NaN")
    time.sleep(float(os.environ.get("FAKE_TRAIN_SLEEP", "0.3")))
    diverged = cell.optim.peak_lr >= 10
    n = cell.model.d_model * cell.model.n_layers
    summary = {"run_id": cell.run_id, "state": "diverged" if diverged else "done", "steps": cell.steps,
               "tokens_seen": cell.tokens_trained, "tokens_unique": cell.tokens_trained, "epochs": 0.1,
               "params": {"total": n + 100, "non_embedding": n, "embedding": 100, "head": 0, "tied": True},
               "flops_achieved": {"chinchilla": 6.0 * n * cell.tokens_trained}, "budget": cell.budget,
               "flops_convention": cell.flops_convention, "final_eval_loss": 3.0 + 1.0 / n,
               "final_train_loss": 3.0, "timing": {"train": 0.3, "compile": 0.01}, "group": cell.group,
               "tokens_per_s": 1000.0}
    rd.finish(summary)
    note("finish")
    return summary


EXPERIMENT = '''
from scaling.config import DataConfig, ModelConfig, OptimConfig
from scaling.sweep import NxD, Recipe, Sweep

def shape(n, V, L):
    return ModelConfig(vocab_size=V, seq_len=L, d_model=16, n_layers=int(n), n_heads=2, kv_size=8, ffw_size=64)

SWEEP = Sweep(name="t", recipe=Recipe(data=DataConfig(task="synthetic_markov", repeat=True), seq_len=32,
              batch_size=4, optim=OptimConfig(peak_lr=3e-3, warmup_steps=2), eval_batches=1, log_every=5,
              checkpoint_every=50),
              family=shape, grid=NxD(sizes=SIZES, tokens=(1024, 2048), peak_lrs=LRS))
'''


def write_experiment(tmp_path, sizes=(1, 2, 3, 4), lrs=()) -> Path:
    p = tmp_path / "exp.py"
    p.write_text(EXPERIMENT.replace("SIZES", repr(tuple(sizes))).replace("LRS", repr(tuple(lrs))))
    return p


FAKE = "test_launch:fake_train"  # what the workers train instead of scaling.train.train


def fake_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTS), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


LAUNCHER = textwrap.dedent('''
    import sys
    from scaling.launch.commands import run_sweep
    r = run_sweep(sys.argv[1], sys.argv[2], backend=sys.argv[3], workers=int(sys.argv[4]), report=False, poll_s=0.2,
                  train_fn=sys.argv[5] or None)
    print("STATES", r["states"])
    sys.exit(0 if r["states"].get("done", 0) + r["states"].get("diverged", 0) == len(r["plan"].cells) else 1)
''')


def launch(exp, out, *, workers=2, backend="local", env=None, train_fn=FAKE) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", LAUNCHER, str(exp), str(out), backend, str(workers), train_fn or ""],
                            env=env or fake_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def trainlog(out) -> tuple[dict, dict]:
    starts, finishes = {}, {}
    p = Path(out) / "trainlog"
    for line in (p.read_text().splitlines() if p.exists() else []):
        ev, rid, _ = line.split()
        d = starts if ev == "start" else finishes
        d[rid] = d.get(rid, 0) + 1
    return starts, finishes


# ------------------------------------------------------------------------------ locks
def test_lock_is_exclusive_and_released(tmp_path):
    a, b = state.CellLock(tmp_path / "r"), state.CellLock(tmp_path / "r")
    assert a.acquire()
    assert not b.acquire()
    assert state.cell_state(tmp_path / "r") == "running"
    info = json.loads((tmp_path / "r" / "LOCK").read_text())
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    a.release()
    assert b.acquire()
    b.release()
    assert state.cell_state(tmp_path / "r") == "planned"


def test_stale_lock_dead_pid_and_old_heartbeat(tmp_path, monkeypatch):
    rd = tmp_path / "r"
    rd.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (rd / "LOCK").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": 0}))
    assert state.cell_state(rd) == "planned"
    lk = state.CellLock(rd)
    assert lk.acquire(), "a lock whose pid is dead on this host must be broken"
    lk.release()
    # another host's lock: live while its heartbeat is fresh, stale once it is old
    (rd / "LOCK").write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": 0}))
    assert not state.CellLock(rd).acquire()
    old = time.time() - state.DEFAULT_STALE_S - 5
    os.utime(rd / "LOCK", (old, old))
    lk = state.CellLock(rd)
    assert lk.acquire()
    lk.release()


# ------------------------------------------------------------------------------ reliability
def test_sigkill_launcher_then_relaunch_trains_each_cell_once(tmp_path):
    exp = write_experiment(tmp_path, sizes=(1, 2, 3, 4, 5))  # 10 cells
    out = tmp_path / "out"
    env = fake_env(FAKE_TRAIN_SLEEP="0.6")
    p = launch(exp, out, workers=2, env=env)
    deadline = time.time() + 60
    while time.time() < deadline and sum(trainlog(out)[1].values()) < 3:
        time.sleep(0.1)
    p.send_signal(signal.SIGKILL)
    p.wait()
    time.sleep(0.5)  # workers die with the launcher (PR_SET_PDEATHSIG)
    starts_before, fin_before = trainlog(out)
    # A cell is finished when its SUCCESS marker exists; the kill can land between the fake
    # trainer writing SUCCESS and logging "finish", so the markers are the truth here.
    done_before = {rd.name for rd in sweep_runs(out) if rd.final_state() == "done"}
    assert set(fin_before) <= done_before
    assert 3 <= len(done_before) < 10, "kill landed mid-sweep"
    p2 = launch(exp, out, workers=2, env=fake_env(FAKE_TRAIN_SLEEP="0.05"))
    txt, _ = p2.communicate(timeout=120)
    assert p2.returncode == 0, txt
    starts, fins = trainlog(out)
    assert all(v == 1 for v in fins.values()), fins  # no cell finished twice
    # every cell finished exactly once: logged, or finished (SUCCESS) just before the kill
    assert set(fins) | done_before == set(starts) and len(starts) == 10, (fins, done_before)
    # a cell finished before the kill is never started again; only the killed in-flight cells restart
    assert all(starts[r] == starts_before[r] == 1 for r in done_before)
    import pandas as pd

    df = pd.read_csv(out / "results.csv")
    assert len(df) == 10 and df["run_id"].is_unique
    assert set(df["state"]) == {"done"}


def test_two_launchers_at_once_train_each_cell_once(tmp_path):
    exp = write_experiment(tmp_path, sizes=(1, 2, 3, 4))  # 8 cells
    out = tmp_path / "out"
    env = fake_env(FAKE_TRAIN_SLEEP="0.4")
    ps = [launch(exp, out, workers=2, env=env) for _ in range(2)]
    for p in ps:
        txt, _ = p.communicate(timeout=120)
        assert p.returncode == 0, txt
    starts, fins = trainlog(out)
    assert len(fins) == 8
    assert all(v == 1 for v in starts.values()) and all(v == 1 for v in fins.values()), (starts, fins)
    att = [a for rd in sweep_runs(out) for a in rd.attempts()]
    assert len({a["pid"] for a in att}) >= 2, "work was shared between worker processes"


def test_diverging_and_failing_cells_do_not_stop_the_sweep(tmp_path, monkeypatch):
    # lr 3e-3 trains, 50 diverges (DIVERGED marker), 5000 raises (FAILED with traceback)
    exp = write_experiment(tmp_path, sizes=(1, 2), lrs=(3e-3, 50.0, 5000.0))
    out = tmp_path / "out"
    monkeypatch.setenv("FAKE_TRAIN_SLEEP", "0.01")
    monkeypatch.syspath_prepend(str(TESTS))
    from scaling.launch.worker import run_worker
    from scaling import sweep as sweep_mod

    p = sweep_mod.plan(sweep_mod.load_sweep(exp), estimate=False)
    state.write_cells(out, p.cells, p.rows)
    counts = run_worker(out, 0, train_fn=FAKE)
    assert counts == {"trained": 8, "skipped": 0, "failed": 4}
    from scaling.launch.commands import status_rows

    st = {r["run_id"]: r for r in status_rows(out)}
    by = {}
    for c in p.cells:
        by.setdefault(c.optim.peak_lr, []).append(st[c.run_id]["state"])
    assert by == {3e-3: ["done"] * 4, 50.0: ["diverged"] * 4, 5000.0: ["failed"] * 4}
    failed = next(r for r in st.values() if r["state"] == "failed")
    assert "FloatingPointError" in failed["error"]
    assert "Traceback" in state.run_dir(out, failed["run_id"]).failure()
    from scaling.results import build_table

    df = build_table(out)
    assert sorted(df["state"]) == ["diverged"] * 4 + ["done"] * 4


def test_malformed_experiments_fail_before_training(tmp_path):
    from scaling import sweep as S
    from scaling.launch.commands import run_sweep

    exp = tmp_path / "bad.py"
    exp.write_text(EXPERIMENT.replace("SIZES", "()").replace("LRS", "()"))
    with pytest.raises(ConfigError, match="grid.sizes: empty"):
        run_sweep(exp, tmp_path / "out", report=False)
    assert not (tmp_path / "out").exists(), "nothing may be written before the error"


def test_status_command_json(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    exp = write_experiment(tmp_path, sizes=(1,))
    from scaling import sweep as sweep_mod
    from scaling.launch import commands

    p = sweep_mod.plan(sweep_mod.load_sweep(exp), estimate=False)
    state.write_cells(out, p.cells, p.rows)
    rd = state.run_dir(out, p.cells[0].run_id)
    monkeypatch.syspath_prepend(str(TESTS))
    fake_train(p.cells[0], rd)
    import argparse

    rc = commands.cmd_status(argparse.Namespace(dir=str(out), format="json"))
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["state"] for r in rows} == {"done", "planned"} and len(rows) == 2
    with pytest.raises(ConfigError):
        commands.cmd_status(argparse.Namespace(dir=str(tmp_path / "nope"), format="json"))


# ------------------------------------------------------------------------------ real trainer
def test_real_trainer_sweep_with_a_diverging_cell(tmp_path):
    """Two real cells (d_model 16, seq 32) through the local pool; the absurd-LR cell diverges."""
    exp = tmp_path / "real.py"
    exp.write_text(EXPERIMENT.replace("SIZES", "(1,)").replace("LRS", "(3e-3, 1e6)")
                   .replace("tokens=(1024, 2048)", "tokens=(4096,)").replace("batch_size=4", "batch_size=8"))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.pop("JAX_PLATFORMS", None)  # as a user starts it: the launcher decides what its workers compute on
    p = launch(exp, tmp_path / "out", workers=1, env=env, train_fn=None)
    txt, _ = p.communicate(timeout=240)
    assert p.returncode == 0, txt
    import pandas as pd

    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(df) == 2 and df["run_id"].is_unique
    good = df[df["peak_lr"] < 1].iloc[0]
    assert good["state"] == "done" and 0 < good["eval_loss"] < 10 and good["tokens"] == 4096
    assert good["flops_achieved"] > 0 and good["n_non_embedding"] > 0
    bad = df[df["peak_lr"] > 1].iloc[0]
    assert bad["state"] == "diverged"
    assert "time in cells: startup" in txt
    # CPU workers start JAX on CPU alone: no plugin of the test extra (CUDA, libtpu) is initialised
    log = (tmp_path / "out" / "worker-0.log").read_text()
    assert "Traceback" not in log and "Unable to load CUDA" not in log, log[:2000]


def test_cpu_workers_are_told_cpu_before_jax_starts(tmp_path, monkeypatch):
    from scaling import settings as st
    from scaling.launch.local import worker_environ

    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    monkeypatch.setattr(st, "TPU_DEVICE_FILES", (str(tmp_path / "accel0"),))
    monkeypatch.setattr(st, "GPU_DEVICE_FILES", (str(tmp_path / "nvidia0"),))
    assert worker_environ(st.Settings())["JAX_PLATFORMS"] == "cpu"
    (tmp_path / "nvidia0").touch()  # a GPU machine: the workers must see it
    assert "JAX_PLATFORMS" not in worker_environ(st.Settings())
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")  # the user's choice is kept
    assert worker_environ(st.Settings())["JAX_PLATFORMS"] == "cuda"


def test_every_backend_implements_the_protocol(tmp_path):
    from scaling.launch.backend import NAMES, Backend, make_backend
    from scaling.settings import Settings

    for name in NAMES:
        be = make_backend(name, tmp_path, 1, Settings())
        assert isinstance(be, Backend) and be.name == name and be.overhead() == {}
    with pytest.raises(ConfigError, match="--backend 'gke': choose one of local, slurm, ray"):
        make_backend("gke", tmp_path, 1, Settings())
