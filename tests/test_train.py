"""The trainer: sharding equivalence, multi-process, exact resume, schedule, accumulation, errors.

Runs use a tiny decoder (d 32, 2 layers, seq 32) on the ``synthetic_markov`` task so a
30-step run is a few seconds.  Cross-process and different-device-count checks run
``scaling`` in subprocesses (the in-process JAX has 8 fake CPU devices from conftest).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from scaling.config import Cell, ConfigError, DataConfig, MeshConfig, ModelConfig, OptimConfig, cell_to_json
from scaling.optim import learning_rate
from scaling.rundir import read_metrics
from scaling.train import train

REPO = Path(__file__).resolve().parents[1]
# Subprocess runs (and this process, if nothing compiled before) reuse compiled steps.
os.environ.setdefault("SCALING_COMPILE_CACHE",
                      os.path.join(os.environ.get("SCALING_CACHE_DIR", "/tmp"), "jax-compile-cache"))
STEPS = 30
MODEL = ModelConfig(vocab_size=130, seq_len=32, d_model=32, n_layers=2, n_heads=2, kv_size=16, ffw_size=64)
CELL = Cell(model=MODEL, tokens=STEPS * 16 * 32, batch_size=16, data=DataConfig(task="synthetic_markov"),
            optim=OptimConfig(peak_lr=3e-3, warmup_steps=5), name="tiny", eval_every=10, eval_batches=2,
            checkpoint_every=10)

DRIVER = ("import sys; from scaling.config import cell_from_json; from scaling.train import train; "
          "train(cell_from_json(open(sys.argv[1]).read()), sys.argv[2])")


def _env(n_devices: int, **extra) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n_devices}"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _losses(run_dir) -> tuple[list[int], list[float], list]:
    rows = read_metrics(run_dir)
    return [r["step"] for r in rows], [r["train_loss"] for r in rows], [r.get("eval_loss") for r in rows]


def _write_cell(tmp: Path, cell: Cell) -> Path:
    p = tmp / f"cell-{cell.config_hash}-{id(cell)}.json"
    p.write_text(cell_to_json(cell))
    return p


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same cell trained on ONE device in a fresh process: the losses every mesh must match."""
    tmp = tmp_path_factory.mktemp("ref")
    cfg = _write_cell(tmp, dataclasses.replace(CELL, mesh=MeshConfig(data=1)))
    r = subprocess.run([sys.executable, "-c", DRIVER, str(cfg), str(tmp / "run")], env=_env(1),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    steps, losses, evals = _losses(tmp / "run")
    assert steps == list(range(1, STEPS + 1))
    summary = json.loads((tmp / "run" / "summary.json").read_text())
    assert summary["n_devices"] == 1
    return np.array(losses), evals


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """CELL trained uninterrupted in this process on the default mesh (data=-1 -> 8/1/1)."""
    d = tmp_path_factory.mktemp("full") / "run"
    s = train(CELL, d)
    return s, _losses(d)


@pytest.mark.parametrize("mesh", ["data=8,fsdp=1,tensor=1", "data=2,fsdp=4,tensor=1", "data=2,fsdp=2,tensor=2"])
def test_meshes_match_single_device(mesh, reference, full_run, tmp_path):
    ref_losses, ref_evals = reference
    cell = dataclasses.replace(CELL, mesh=MeshConfig.parse(mesh))
    if cell.mesh.resolve(8) == CELL.mesh.resolve(8):
        s, (steps, losses, evals) = full_run
    else:
        s = train(cell, tmp_path / "run")
        steps, losses, evals = _losses(tmp_path / "run")
    assert s["state"] == "done" and s["n_devices"] == 8 and s["mesh"] == dict(MeshConfig.parse(mesh).resolve(8))
    assert steps == list(range(1, STEPS + 1))
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    ev = [(i, e) for i, e in enumerate(evals) if e is not None]
    assert [i + 1 for i, _ in ev] == [10, 20, 30]
    np.testing.assert_allclose([e for _, e in ev], [ref_evals[i] for i, _ in ev], rtol=1e-5)
    assert losses[-1] < losses[0] - 0.5  # it learns


def test_two_processes_match_single_device(reference, tmp_path):
    """Two OS processes (2 CPU devices each) joined by jax.distributed over gloo."""
    ref_losses, _ = reference
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = _write_cell(tmp_path, dataclasses.replace(CELL, mesh=MeshConfig(data=2, fsdp=2)))
    procs = [subprocess.Popen([sys.executable, "-c", DRIVER, str(cfg), str(tmp_path / "run")],
                              env=_env(2, SCALING_COORDINATOR=f"127.0.0.1:{port}", SCALING_NUM_PROCESSES="2",
                                       SCALING_PROCESS_ID=str(i)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["n_devices"] == 4 and summary["state"] == "done"
    steps, losses, _ = _losses(tmp_path / "run")
    assert steps == list(range(1, STEPS + 1))
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)


def _train_cmd(out: Path, cfg: Path) -> list[str]:
    """The user's command: ``scaling train --out DIR --config CELL.json`` (run as ``python -m scaling.cli``)."""
    return [sys.executable, "-m", "scaling.cli", "train", "--out", str(out), "--config", str(cfg)]


def _run_cli_until(out: Path, cfg: Path, step: int, sig) -> int:
    """Start ``scaling train``; once metrics reach ``step`` send ``sig``; return the exit code."""
    cmd = _train_cmd(out, cfg)
    p = subprocess.Popen(cmd, env=_env(8), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and p.poll() is None:
        rows = read_metrics(out) if (out / "metrics.jsonl").exists() else []
        if rows and rows[-1]["step"] >= step:
            p.send_signal(sig)
            break
        time.sleep(0.05)
    _, err = p.communicate(timeout=240)
    return p.returncode, err


def test_sigterm_then_sigkill_resume_is_bitwise_identical(full_run, tmp_path):
    """SIGTERM saves and exits 143; SIGKILL at a random later step; the same command resumes exactly.

    The uninterrupted reference is ``full_run`` (same cell up to checkpoint cadence, same
    8-device mesh, same XLA flags, trained in this process).
    """
    cell = dataclasses.replace(CELL, checkpoint_every=4)
    cfg = _write_cell(tmp_path, cell)

    out = tmp_path / "interrupted"
    rng = random.Random()
    k1 = rng.randint(3, 10)
    rc, err = _run_cli_until(out, cfg, k1, signal.SIGTERM)
    assert rc == 143, err[-3000:]
    steps_after_term = [r["step"] for r in read_metrics(out)]
    saved = sorted(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and saved[-1] == steps_after_term[-1]  # SIGTERM checkpointed the step it stopped at
    assert not (out / "SUCCESS").exists()

    k2 = rng.randint(saved[-1] + 2, STEPS - 3)
    rc, err = _run_cli_until(out, cfg, k2, signal.SIGKILL)
    assert rc == -signal.SIGKILL, (rc, err[-3000:])
    assert not (out / "SUCCESS").exists()

    r = subprocess.run(_train_cmd(out, cfg),
                       env=_env(8), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "SUCCESS").exists()
    s_full, l_full, e_full = full_run[1]
    s_int, l_int, e_int = _losses(out)
    assert s_int == list(range(1, STEPS + 1)) == s_full  # no duplicated or missing rows
    assert l_int == l_full and e_int == e_full  # bitwise (floats round-trip exactly through JSON)


def test_stop_resume_truncates_and_finished_dir_is_a_noop(full_run, tmp_path):
    cell = dataclasses.replace(CELL, checkpoint_every=5, name="stop")
    full = full_run[0]
    s = train(cell, tmp_path / "run", stop_after_step=12)
    assert s["state"] == "partial" and s["steps"] == 12 and not (tmp_path / "run" / "SUCCESS").exists()
    # rows written after the last checkpoint by a process that then died must be dropped on resume
    with open(tmp_path / "run" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 13, "train_loss": 123.0}) + "\n" + '{"step": 14, "trai')
    s2 = train(cell, tmp_path / "run")
    assert s2["state"] == "done" and s2["steps"] == STEPS
    steps, losses, _ = _losses(tmp_path / "run")
    assert steps == list(range(1, STEPS + 1))
    assert losses == full_run[1][1]
    assert s2["final_eval_loss"] == full["final_eval_loss"]
    mtime = (tmp_path / "run" / "metrics.jsonl").stat().st_mtime_ns
    s3 = train(cell, tmp_path / "run")  # finished: returns the stored summary, trains nothing
    assert s3 == json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (tmp_path / "run" / "metrics.jsonl").stat().st_mtime_ns == mtime
    # died after the final checkpoint but before SUCCESS: nothing to train, same final numbers
    (tmp_path / "run" / "SUCCESS").unlink()
    (tmp_path / "run" / "summary.json").unlink()
    s4 = train(cell, tmp_path / "run")
    assert s4["state"] == "done" and s4["steps"] == STEPS and (tmp_path / "run" / "SUCCESS").exists()
    assert s4["final_eval_loss"] == s2["final_eval_loss"] and s4["final_train_loss"] == s2["final_train_loss"]
    assert _losses(tmp_path / "run")[0] == list(range(1, STEPS + 1))


def test_run_dir_contents_and_metrics(tmp_path):
    from scaling import accounting

    cell = dataclasses.replace(CELL, tokens=8 * 16 * 32, eval_every=3, log_every=2, name="files",
                               model=dataclasses.replace(MODEL, tied_embeddings=False, position="learned",
                                                         activation="swiglu", norm="layernorm"))
    s = train(cell, tmp_path / "run")
    run = tmp_path / "run"
    assert {"config.json", "metrics.jsonl", "summary.json", "SUCCESS", "checkpoints", "tb"} <= {
        p.name for p in run.iterdir()}
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tb").iterdir())
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [2, 3, 4, 6, 8]  # log_every=2, plus eval steps 3 and 6, plus the end
    fpt = accounting.flops_per_token_all(cell.model)
    for r in rows:
        assert r["tokens_seen"] == r["step"] * 16 * 32
        for conv in accounting.CONVENTIONS:
            assert r[f"flops_{conv}"] == pytest.approx(fpt[conv] * r["tokens_seen"])
        assert r["lr"] == pytest.approx(float(learning_rate(cell.optim, 8, r["step"])))
        assert r["grad_norm"] > 0 and r["mfu"] > 0 and r["tokens_per_s"] > 0
        assert r["epoch"] == pytest.approx(r["tokens_seen"] / s["tokens_seen"] * s["epochs"])
    assert [r["step"] for r in rows if "eval_loss" in r] == [3, 6, 8]
    assert all(r["eval_bpb"] is None for r in rows if "eval_loss" in r)  # markov chain: no bytes
    counts = accounting.count_params(cell.model)
    assert s["params"] == counts.as_dict() and s["params"]["tied"] is False
    assert s["final_eval_loss"] == rows[-1]["eval_loss"] and s["state"] == "done"
    assert s["entropy_rate"] is not None and s["final_eval_bpb"] is None
    for k in ("startup", "compile", "data", "train", "eval", "checkpoint"):
        assert s["timing"][k] >= 0
    assert s["compile_s"] > 0 and s["wall_s"] >= sum(s["timing"].values()) * 0.99
    assert set(s["versions"]) == {"jax", "flax", "optax", "orbax"}


def test_bits_per_byte_on_text_task(tmp_path):
    model = ModelConfig(vocab_size=260, seq_len=32, d_model=32, n_layers=1, n_heads=2, kv_size=16, ffw_size=64)
    cell = Cell(model=model, tokens=3 * 8 * 32, batch_size=8, data=DataConfig(task="pystdlib", vocab="byte"),
                eval_batches=1, name="bpb")
    s = train(cell, tmp_path / "run")
    # byte vocabulary: every target token is one byte (specials are 0 bytes), so bpb ~ loss / ln 2
    assert s["final_eval_bpb"] is not None
    assert s["final_eval_bpb"] == pytest.approx(s["final_eval_loss"] / math.log(2), rel=0.05)


def test_divergence_writes_diverged(tmp_path):
    cell = dataclasses.replace(CELL, optim=OptimConfig(peak_lr=1e30, warmup_steps=0, clip_norm=1e30),
                               name="boom")
    s = train(cell, tmp_path / "run")
    assert s["state"] == "diverged" and s["steps"] < STEPS
    assert (tmp_path / "run" / "DIVERGED").exists() and not (tmp_path / "run" / "SUCCESS").exists()
    rows = read_metrics(tmp_path / "run")
    assert rows[-1]["train_loss"] is None and rows[-1]["step"] == s["steps"]
    assert train(cell, tmp_path / "run") == s  # terminal: not retried


def test_loss_spike_marks_divergence(tmp_path):
    # a spike threshold below any step-to-step noise triggers as soon as the loss rises at all
    cell = dataclasses.replace(CELL, max_loss_spike=1e-9, optim=OptimConfig(peak_lr=0.3, warmup_steps=0),
                               name="spike")
    s = train(cell, tmp_path / "run")
    losses = _losses(tmp_path / "run")[1]
    assert s["state"] == "diverged"
    assert losses[-1] > min(losses[:-1])


def test_schedules():
    n, peak = 100, 2e-3
    cos = OptimConfig(peak_lr=peak, warmup_steps=10, schedule="cosine", final_lr_frac=0.1)
    lr = np.array([float(learning_rate(cos, n, t)) for t in range(1, n + 1)])
    assert lr[0] == pytest.approx(peak / 10) and lr[9] == pytest.approx(peak)
    assert lr[-1] == pytest.approx(0.1 * peak, rel=1e-6)  # exactly 10% at the last step
    assert np.all(np.diff(lr[9:]) < 0) and np.all(np.diff(lr[:10]) > 0)
    assert lr[9 + 45] == pytest.approx(0.1 * peak + 0.9 * peak * 0.5, rel=1e-6)  # cosine midpoint
    wsd = OptimConfig(peak_lr=peak, warmup_steps=10, schedule="wsd", final_lr_frac=0.0, decay_frac=0.2)
    lw = np.array([float(learning_rate(wsd, n, t)) for t in range(1, n + 1)])
    assert np.all(lw[9:80] == pytest.approx(peak)) and lw[-1] == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(np.diff(lw[80:]), -peak / 20)
    const = OptimConfig(peak_lr=peak, warmup_steps=0, schedule="constant")
    assert all(float(learning_rate(const, n, t)) == pytest.approx(peak) for t in (1, 50, 100))

    # the optimizer really applies that schedule: with fresh Adam moments an update moves each
    # weight by lr * (g / (|g| + eps) + wd * w), the decay decoupled and scaled by lr as in optax;
    # hp is what the train loop feeds the compiled step at each 1-based step.
    import jax
    import jax.numpy as jnp

    from scaling.optim import HPARAMS, hyperparams, init_opt_state, make_optimizer

    wd = 0.1
    opt = dataclasses.replace(cos, weight_decay=wd)
    p = {"w": jnp.full((4, 4), 0.5), "b": jnp.full((4,), 0.5)}  # decay on matrices only
    g = {"w": jnp.full((4, 4), 1e-3), "b": jnp.full((4,), 1e-3)}
    update = jax.jit(lambda hp: make_optimizer(hp).update(g, init_opt_state(p), p)[0])
    applied = []
    for t in range(1, n + 1):
        hp = hyperparams(opt, n, t)
        assert dict(zip(HPARAMS, hp.tolist())) == pytest.approx(dict(
            learning_rate=lr[t - 1], b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=wd, clip_norm=opt.clip_norm))
        u = update(hp)
        direction = 1e-3 / (1e-3 + opt.eps)
        np.testing.assert_allclose(-np.asarray(u["b"]), lr[t - 1] * direction, rtol=1e-5)
        np.testing.assert_allclose(-np.asarray(u["w"]), lr[t - 1] * (direction + wd * 0.5), rtol=1e-5)
        applied.append(float(-u["b"][0]) / direction)
    applied = np.array(applied)
    assert applied[0] == pytest.approx(peak / 10, rel=1e-5) and applied[9] == pytest.approx(peak, rel=1e-5)
    assert applied[-1] == pytest.approx(0.1 * peak, rel=1e-5)  # 10% at the last step
    assert np.all(np.diff(applied[9:]) < 0) and np.all(np.diff(applied[:10]) > 0)


def test_train_step_program_is_independent_of_budget_and_optimizer_numbers():
    """Same shape, different budgets / peak LRs / schedules / optimizer numbers / seeds: the same
    lowered programs, so a sweep's second cell of a shape is a compilation-cache hit."""
    from scaling import sharding
    from scaling.programs import compiled_programs, lower_programs, program_key

    mesh = sharding.make_mesh(CELL.mesh)
    a = dataclasses.replace(CELL, tokens=7 * 16 * 32)
    b = dataclasses.replace(CELL, tokens=300 * 16 * 32, seed=3, optim=OptimConfig(
        peak_lr=1e-2, warmup_steps=50, schedule="wsd", final_lr_frac=0.0, b1=0.8, b2=0.99, eps=1e-6,
        weight_decay=0.3, clip_norm=0.5))
    assert a.steps != b.steps
    pa, pb = lower_programs(a, mesh), lower_programs(b, mesh)
    for name in ("init", "step", "eval"):
        assert getattr(pa, name).as_text() == getattr(pb, name).as_text(), name
    # ... while the text does see shapes: a different batch size is a different program
    c = dataclasses.replace(CELL, batch_size=32, tokens=CELL.tokens * 2)
    assert lower_programs(c, mesh).step.as_text() != pa.step.as_text()
    # within a process the compiled programs are simply reused for a same-shape cell
    assert program_key(a, mesh) == program_key(b, mesh) != program_key(c, mesh)
    assert compiled_programs(a, mesh) is compiled_programs(b, mesh)


def test_grad_accumulation_matches_one_big_batch():
    import jax
    import jax.numpy as jnp
    import flax.linen as nn

    from scaling import data as sdata
    from scaling.model import Decoder
    from scaling.optim import hyperparams, init_opt_state
    from scaling.programs import TRAIN_KEYS, make_train_step

    src = sdata.open_source(CELL.data, "train", MODEL.seq_len)
    b = src.batch(0, 16, seed=0)
    b["decoder_loss_weights"][3, 5:] = 0  # uneven token weights per micro-batch
    batch = {k: jnp.asarray(b[k]) for k in TRAIN_KEYS}
    model = Decoder(MODEL)
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), batch["decoder_input_tokens"])["params"])
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": init_opt_state(params)}
    hp = hyperparams(CELL.optim, 10, 1)
    outs = {a: jax.jit(make_train_step(model, a))(state, batch, hp) for a in (1, 4)}
    (s1, m1), (s4, m4) = outs[1], outs[4]
    np.testing.assert_allclose(m4["loss"], m1["loss"], rtol=1e-6)
    np.testing.assert_allclose(m4["grad_norm"], m1["grad_norm"], rtol=1e-5)
    for x, y in zip(jax.tree.leaves(s1["params"]), jax.tree.leaves(s4["params"])):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)  # Adam step 1 ~ lr*sign(g)


@pytest.mark.parametrize("change, message", [
    (dict(mesh=MeshConfig(data=3)), "mesh"),
    (dict(batch_size=12, tokens=12 * 32 * 4), "batch_size=12"),
    (dict(mesh=MeshConfig(data=4, tensor=2), model=dataclasses.replace(MODEL, n_heads=1, kv_size=32)), "n_heads"),
    (dict(model=dataclasses.replace(MODEL, vocab_size=16)), "vocab_size"),  # the source has 34 tokens
    (dict(tokens=100), "tokens"),
    (dict(grad_accum=3), "grad_accum"),
    (dict(model=dataclasses.replace(MODEL, ffw_size=0)), "ffw_size"),
    (dict(data=DataConfig(task="nope")), "task"),
    (dict(tokens=10**12), "tokens"),
])
def test_bad_input_fails_before_compiling(change, message, tmp_path):
    cell = dataclasses.replace(CELL, **change)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=message) as e:
        train(cell, tmp_path / "run")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing compiled, nothing trained
    assert time.perf_counter() - t0 < 20


def test_run_dir_of_another_cell_is_refused(tmp_path):
    train(dataclasses.replace(CELL, tokens=2 * 16 * 32), tmp_path / "run", stop_after_step=1)
    with pytest.raises(ConfigError, match="another cell"):
        train(dataclasses.replace(CELL, seed=1), tmp_path / "run")
