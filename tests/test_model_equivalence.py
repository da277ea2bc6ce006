"""Execution choices do not change a run: layout, remat and attention give the reference's losses.

Every run here goes through the public ``scaling.train.train`` for 20 steps and is compared on
its ``metrics.jsonl`` train losses (rtol 1e-5, float32) with the reference (unrolled, no remat,
einsum attention: today's model) trained on ONE device in a fresh process.  Each option alone
runs on one device in that same process; combinations of them run on the 8 fake devices of
this process with data, FSDP and tensor parallel meshes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scaling.config import Cell, DataConfig, MeshConfig, ModelConfig, OptimConfig, cell_to_json
from scaling.rundir import read_metrics
from scaling.train import train

REPO = Path(__file__).resolve().parents[1]
STEPS = 20
MODEL = ModelConfig(vocab_size=130, seq_len=32, d_model=32, n_layers=3, n_heads=2, kv_size=16, ffw_size=64,
                    scan_layers=False, remat="none", attention="einsum")
CELL = Cell(model=MODEL, tokens=STEPS * 16 * 32, batch_size=16, data=DataConfig(task="synthetic_markov"),
            optim=OptimConfig(peak_lr=3e-3, warmup_steps=5), name="equiv", eval_batches=1, eval_batch_size=16,
            checkpoint_every=1000)
ONE_DEVICE = {"reference": {}, "scanned": {"scan_layers": True}, "remat_dots": {"remat": "dots"},
              "remat_full": {"remat": "full"}, "dot_product": {"attention": "dot_product"}}
MESHES = [
    ("data=8", {"scan_layers": True, "remat": "dots"}),
    ("data=2,fsdp=4", {"scan_layers": True, "remat": "full", "attention": "dot_product"}),
    ("data=2,fsdp=2,tensor=2", {"scan_layers": True, "remat": "dots", "attention": "dot_product"}),
]
DRIVER = ("import json, sys; from scaling.config import cell_from_json; from scaling.train import train\n"
          "for cell_path, out in json.load(open(sys.argv[1])): train(cell_from_json(open(cell_path).read()), out)")


def _cell(mesh: str, **model):
    return dataclasses.replace(CELL, mesh=MeshConfig.parse(mesh), model=dataclasses.replace(MODEL, **model))


def _losses(run_dir) -> np.ndarray:
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    return np.array([r["train_loss"] for r in rows])


@pytest.fixture(scope="module")
def one_device(tmp_path_factory) -> dict:
    """Each option alone, trained on one device in a fresh process: name -> losses."""
    tmp = tmp_path_factory.mktemp("one")
    jobs = []
    for name, kw in ONE_DEVICE.items():
        p = tmp / f"{name}.json"
        p.write_text(cell_to_json(_cell("data=1", **kw)))
        jobs.append((str(p), str(tmp / name)))
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", DRIVER, str(tmp / "jobs.json")], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return {name: _losses(tmp / name) for name in ONE_DEVICE}


@pytest.mark.parametrize("name", [n for n in ONE_DEVICE if n != "reference"])
def test_option_matches_reference_on_one_device(name, one_device):
    ref = one_device["reference"]
    assert ref[-1] < ref[0] - 0.5  # it trains: the comparison is not between two flat lines
    np.testing.assert_allclose(one_device[name], ref, rtol=1e-5)


@pytest.mark.parametrize("mesh, options", MESHES, ids=[f"{m}-{'-'.join(f'{k}={v}' for k, v in o.items())}"
                                                       for m, o in MESHES])
def test_options_match_reference_on_meshes(mesh, options, one_device, tmp_path):
    train(_cell(mesh, **options), tmp_path / "run")
    np.testing.assert_allclose(_losses(tmp_path / "run"), one_device["reference"], rtol=1e-5)
