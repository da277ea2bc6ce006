"""``--tracker wandb|mlflow``: a 20-step run logged offline carries every metrics.jsonl field and the summary.

W&B runs in offline mode (``WANDB_MODE=offline``, its directory under tmp) and is read back from
the run's ``.wandb`` transaction log; MLflow writes to a ``file:`` store under tmp and is read
back through its client.  The tiny decoder of test_train.py trains 20 steps once per test.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import sys

import pytest

from scaling.config import Cell, ConfigError, DataConfig, ModelConfig, OptimConfig
from scaling.rundir import RunDir, read_metrics
from scaling.settings import Settings
from scaling.train import train

STEPS = 20
MODEL = ModelConfig(vocab_size=130, seq_len=32, d_model=32, n_layers=2, n_heads=2, kv_size=16, ffw_size=64)
CELL = Cell(model=MODEL, tokens=STEPS * 16 * 32, batch_size=16, data=DataConfig(task="synthetic_markov"),
            optim=OptimConfig(peak_lr=3e-3, warmup_steps=5), name="tracked", eval_every=10, eval_batches=2,
            checkpoint_every=10)


def _numeric(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float))
            and not isinstance(v, bool) and math.isfinite(v)}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}/") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _wandb_records(path):
    """Records of a W&B offline run file: a LevelDB-style log of 32 KiB blocks, each record a
    7-byte header (crc32, length, type FULL/FIRST/MIDDLE/LAST) and a wandb_internal_pb2.Record."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, buf, block = 7, b"", 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:
            break
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            yield rec


def _wandb_logged(wandb_dir):
    """(run record, {step: history fields}, summary fields) of the one offline run under ``wandb_dir``."""
    (f,) = list(wandb_dir.glob("wandb/offline-run-*/run-*.wandb"))
    run, history, summary = None, {}, {}
    for rec in _wandb_records(f):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run = rec.run
        elif kind == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
            history[items.pop("_step")] = {k: v for k, v in items.items() if not k.startswith("_")}
        elif kind == "summary":
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.summary.update})
    return run, history, summary


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_PROJECT", "scaling-test")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")   # MLflow 3 refuses file stores without it
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "scaling-test")
    (tmp_path / "wb").mkdir()
    return tmp_path


def test_20_step_run_logged_to_wandb_and_mlflow(offline):
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    run_dir = offline / "sweep" / "runs" / CELL.run_id
    summary = train(CELL, run_dir, settings=Settings.from_environ().with_trackers(["wandb", "mlflow"]))
    assert summary["state"] == "done" and summary["steps"] == STEPS
    rows = read_metrics(run_dir)
    assert rows[-1]["step"] == STEPS and any("eval_loss" in r for r in rows)
    ids = json.loads(RunDir(run_dir).trackers.read_text())
    assert set(ids) == {"wandb", "mlflow"}

    # W&B: the run under the run id, grouped by sweep; every row's fields at its step; the summary
    run, history, wsummary = _wandb_logged(offline / "wb")
    assert run.display_name == CELL.run_id and run.run_group == "sweep" and run.run_id == ids["wandb"]
    config = {i.key: json.loads(i.value_json) for i in run.config.update}
    assert config["tokens"] == CELL.tokens and config["model"]["d_model"] == 32
    assert sorted(history) == [r["step"] for r in rows]
    for r in rows:
        assert history[r["step"]] == pytest.approx(_numeric(r), rel=1e-12), r["step"]
    for k, v in _flat(summary).items():
        if isinstance(v, (int, float, str, bool)):
            assert wsummary[f"summary/{k}"] == (pytest.approx(v) if isinstance(v, float) else v), k
    assert wsummary["summary/final_eval_loss"] == pytest.approx(summary["final_eval_loss"])

    # MLflow: the same rows as metric histories, the summary as metrics and as summary.json
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    mrun = client.get_run(ids["mlflow"])
    assert mrun.info.run_name == CELL.run_id and mrun.info.status == "FINISHED"
    assert mrun.data.tags["scaling.sweep"] == "sweep" and mrun.data.params["tokens"] == str(CELL.tokens)
    fields = sorted({k for r in rows for k in _numeric(r)})
    for k in fields:
        got = {m.step: m.value for m in client.get_metric_history(ids["mlflow"], k)}
        want = {r["step"]: float(r[k]) for r in rows if k in _numeric(r)}
        assert got == pytest.approx(want, rel=1e-12), k
    for k, v in _flat(summary).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            assert mrun.data.metrics[f"summary/{k}"] == pytest.approx(v), k
    local = client.download_artifacts(ids["mlflow"], "summary.json", str(offline / "dl"))
    assert json.loads(open(local).read())["final_eval_loss"] == pytest.approx(summary["final_eval_loss"])


def test_sweep_level_run_holds_results_and_figures(offline):
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    import matplotlib.image
    import numpy as np
    import pandas as pd

    from scaling import trackers

    out = offline / "sw"
    (out / "report").mkdir(parents=True)
    (out / "report" / "fits.json").write_text(json.dumps({"approach3": {"a": 0.5, "b": 0.5, "E": 1.7}}))
    matplotlib.image.imsave(out / "report" / "isoflop.png", np.zeros((4, 4, 3)))
    table = pd.DataFrame({"run_id": ["a", "b"], "eval_loss": [2.0, 1.9]})
    trackers.log_sweep(["wandb", "mlflow"], out, table=table)
    ids = json.loads((out / "trackers.json").read_text())

    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run = client.get_run(ids["mlflow"])
    assert run.info.run_name == "sw (sweep)" and run.data.tags["scaling.kind"] == "sweep"
    assert run.data.metrics["summary/approach3/a"] == 0.5
    names = {a.path for a in client.list_artifacts(ids["mlflow"])}
    names |= {a.path for a in client.list_artifacts(ids["mlflow"], "report")}
    assert {"results.csv", "report/fits.json", "report/isoflop.png"} <= names

    wrun, history, wsummary = _wandb_logged(offline / "wb")
    assert wrun.display_name == "sw (sweep)" and wrun.run_group == "sw" and wrun.job_type == "sweep"
    logged = {k: v for step in history.values() for k, v in step.items()}
    assert logged["results/_type"] == "table-file" and logged["results/nrows"] == 2
    assert logged["report/isoflop/_type"] == "image-file"
    assert wsummary["summary/fits/approach3/E"] == 1.7


def test_flags_are_repeatable_on_train_and_sweep():
    from scaling.cli import build_parser

    p = build_parser()
    assert p.parse_args(["sweep", "e.py", "--out", "o", "--tracker", "wandb", "--tracker", "mlflow"]).tracker == [
        "wandb", "mlflow"]
    assert p.parse_args(["train", "--out", "o"]).tracker == []
    with pytest.raises(SystemExit):
        p.parse_args(["train", "--out", "o", "--tracker", "neptune"])


def test_missing_extra_is_one_line_before_training(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)   # as if `pip install` had never happened
    from scaling import cli

    with pytest.raises(ConfigError) as e:
        train(dataclasses.replace(CELL, name="untracked"), tmp_path / "run",
              settings=Settings().with_trackers(["wandb"]))
    msg = str(e.value)
    assert "\n" not in msg and "pip install 'scaling[wandb]'" in msg
    assert not (tmp_path / "run" / "metrics.jsonl").exists()   # nothing trained
    rc = cli.main(["train", "--out", str(tmp_path / "cli"), "--tracker", "wandb", "--d-model", "32",
                   "--n-layers", "2", "--n-heads", "2", "--seq-len", "32", "--tokens", "1024", "--batch", "4"])
    assert rc == 2 and not (tmp_path / "cli").exists()


def test_tracker_is_not_part_of_the_run_identity(monkeypatch):
    monkeypatch.setenv("SCALING_TRACKERS", "wandb,mlflow")
    s = Settings.from_environ()
    assert s.trackers == "wandb,mlflow" and s.with_trackers(["mlflow", "tensorboard"]).trackers == "wandb,mlflow"
    assert Settings.from_environ(s.environ()).trackers == "wandb,mlflow"   # reaches sweep workers
    assert CELL.run_id == dataclasses.replace(CELL).run_id   # the cell has no tracker field to hash
    assert not any("tracker" in f.name for f in dataclasses.fields(Cell))
    with pytest.raises(ConfigError, match="SCALING_TRACKERS"):
        Settings.from_environ({"SCALING_TRACKERS": "neptune"})


def test_a_tracker_failing_mid_run_is_dropped_with_a_warning(tmp_path, monkeypatch, capsys):
    """A tracker is a copy of the run directory: one that fails while the run trains must not stop it."""
    from scaling import trackers

    calls = []

    class Flaky:
        resumed = False

        def __init__(self, key, name, config, group):
            self.key = key or "k1"

        def log_row(self, row):
            calls.append(row["step"])
            if row["step"] == 2:
                raise ConnectionError("server gone")

        def finish(self, exit_code=0):
            calls.append("finish")

    monkeypatch.setitem(trackers._BACKENDS, "wandb", Flaky)
    rt = trackers.RunTrackers(["wandb"], "r", {}, tmp_path / "trackers.json", existing_rows=lambda: [{"step": 1}])
    assert calls == [1] and json.loads((tmp_path / "trackers.json").read_text()) == {"wandb": "k1"}
    rt.log_row({"step": 2})
    rt.log_row({"step": 3})
    rt.close()
    assert calls == [1, 2]                       # dropped after the failure: no step 3, no finish
    assert "--tracker wandb stopped logging run r (ConnectionError: server gone)" in capsys.readouterr().err
