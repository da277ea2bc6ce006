"""Run directories -> one tidy results table (``results.parquet`` + ``results.csv``).

The table is *derived*: it is rebuilt from every finished run's ``summary.json``
(:mod:`scaling.rundir`) each time, so it is never the only copy of anything and it can never
hold two rows for one run.  One row per
finished cell (state ``done`` or ``diverged``; analysis filters on ``state == "done"``).

Columns (``COLUMNS``; ``flops_<conv>`` once per FLOP convention in
:data:`scaling.accounting.CONVENTIONS`):

=================== =====================================================================
run_id              readable name + hash of the fields that change results (config.py)
state               done | diverged
n_total             all parameters (tied embedding counted once)
n_non_embedding     parameters outside the input embedding and the output head
n_embedding         input embedding parameters
n_head              output projection parameters (0 when tied)
tied                input embedding and output head shared
tokens              tokens trained on (steps x batch x seq_len)
tokens_unique       distinct training tokens seen (< tokens when data repeats)
epochs              passes over the train split
budget              the IsoFLOP / allocation budget the cell was planned for (empty for N x D)
flops_convention    convention budgets were spent in (6N | kaplan | chinchilla | chinchilla_no_embed)
flops_planned       the budget, or tokens x FLOPs/token when there is none
flops_achieved      FLOPs actually trained in ``flops_convention``
flops_<conv>        FLOPs actually trained, in each convention
eval_loss           final held-out loss (nats/token)
eval_bpb            final held-out bits per UTF-8 byte (empty if the task has no bytes)
train_loss          final training loss
steps, batch_size, seq_len, schedule, peak_lr, warmup_steps
tokens_per_s, mfu   training throughput and model FLOPs utilisation
wall_s, compile_s   cell wall time and compile time (seconds)
git_sha, corpus_hash, vocab_hash, group (isoflop | nxd | lr_sweep | chinchilla_rule | kaplan_rule | wsd_trunk | wsd_fork | ladder)
task                the data task the cell trained on
entropy_rate        the task's exact entropy rate in nats/token (synthetic sources only; else empty)
trunk, fork_step    a WSD fork's trunk run id and the trunk step it started from (empty otherwise);
                    its tokens and FLOPs are the whole horizon's (the trunk's part included),
                    and trunk rows (group wsd_trunk, never annealed) are excluded from fits
predicted_loss      a Ladder rung (group ladder): the loss pre-registered in its prediction.json,
predicted_pi_lo/hi  its prediction interval, and prediction_inside: the measured eval_loss in it
parametrization     standard | mup | completep (the model's; ``scaling fit-hp`` groups by it)
=================== =====================================================================

Then, for every downstream task ``<name>`` any run was scored on (:mod:`scaling.evaltasks`;
empty for runs without it), sorted by name:

========================= ===============================================================
task/<name>/acc           final accuracy: the choice of highest summed log-probability
task/<name>/acc_norm      final accuracy with log-probabilities per UTF-8 byte of the choice
task/<name>/bpb           the correct choices' loss in bits per UTF-8 byte (sum NLL / ln 2 / sum bytes)
task/<name>/n_items       items in the task
task/<name>/sha           sha256 of the task's content (rows of one task must agree on it)
========================= ===============================================================
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from scaling.accounting import CONVENTIONS  # one list of conventions, owned by accounting
from scaling.recorder import PHASES
from scaling.rundir import in_sweep, sweep_runs

BASE_COLUMNS = ["run_id", "state", "n_total", "n_non_embedding", "n_embedding", "n_head", "tied",
                "tokens", "tokens_unique", "epochs", "budget", "flops_convention", "flops_planned",
                "flops_achieved"]
TAIL_COLUMNS = ["eval_loss", "eval_bpb", "train_loss", "steps", "batch_size", "seq_len", "schedule",
                "peak_lr", "warmup_steps", "tokens_per_s", "mfu", "wall_s", "compile_s", "git_sha",
                "corpus_hash", "vocab_hash", "group", "task", "entropy_rate", "trunk", "fork_step", "parametrization",
                "predicted_loss", "predicted_pi_lo", "predicted_pi_hi", "prediction_inside"]
COLUMNS = BASE_COLUMNS + [f"flops_{c}" for c in CONVENTIONS] + TAIL_COLUMNS
TASK_FIELDS = ("acc", "acc_norm", "bpb", "n_items", "sha")  # task/<name>/<field> columns, per task


def task_columns(rows: list[dict]) -> list[str]:
    """The ``task/<name>/<field>`` columns of these rows: tasks sorted by name, fields in TASK_FIELDS order."""
    names = sorted({c.split("/")[1] for r in rows for c in r if c.startswith("task/")})
    return [f"task/{n}/{f}" for n in names for f in TASK_FIELDS]


def read_summaries(out: str | os.PathLike) -> list[dict]:
    """Every parseable ``summary.json`` of the sweep's finished runs, sorted by run id."""
    found = []
    for rd in sweep_runs(out):
        s = rd.finished_summary()
        if s is None:
            continue
        s.setdefault("run_id", rd.name)
        found.append(s)
    return found


def summary_row(s: dict) -> dict:
    """Flatten one summary.json into a results row (see module docstring for the columns)."""
    p = s.get("params") or {}
    fa = s.get("flops_achieved") or {}
    conv = s.get("flops_convention") or "chinchilla"
    budget = s.get("budget")
    achieved = fa.get(conv)
    row = dict(run_id=s.get("run_id"), state=s.get("state", "done"),
               n_total=p.get("total"), n_non_embedding=p.get("non_embedding"), n_embedding=p.get("embedding"),
               n_head=p.get("head"), tied=p.get("tied"), tokens=s.get("tokens_seen"),
               tokens_unique=s.get("tokens_unique"), epochs=s.get("epochs"), budget=budget,
               flops_convention=conv, flops_planned=budget if budget else achieved, flops_achieved=achieved)
    for c in CONVENTIONS:
        row[f"flops_{c}"] = fa.get(c)
    row.update(eval_loss=s.get("final_eval_loss"), eval_bpb=s.get("final_eval_bpb"),
               train_loss=s.get("final_train_loss"), steps=s.get("steps"), batch_size=s.get("batch_size"),
               seq_len=s.get("seq_len"), schedule=s.get("schedule"), peak_lr=s.get("peak_lr"),
               warmup_steps=s.get("warmup_steps"), tokens_per_s=s.get("tokens_per_s"), mfu=s.get("mfu"),
               wall_s=s.get("wall_s"), compile_s=s.get("compile_s"), git_sha=s.get("git_sha"),
               corpus_hash=s.get("corpus_hash"), vocab_hash=s.get("vocab_hash"), group=s.get("group", ""),
               task=s.get("task"), entropy_rate=s.get("entropy_rate"), trunk=s.get("trunk"),
               fork_step=s.get("fork_step"),
               parametrization=(s.get("model") or {}).get("parametrization", "standard"))
    for name, t in sorted((s.get("tasks") or {}).items()):
        for f in TASK_FIELDS:
            row[f"task/{name}/{f}"] = (t or {}).get(f)
    return row


def build_table(out: str | os.PathLike, run_ids=None):
    """The results DataFrame for a sweep directory (optionally only the given run ids)."""
    import pandas as pd

    rows = [summary_row(s) for s in read_summaries(out)]
    for r in rows:  # a Ladder rung: its pre-registered prediction, scored against the measured loss
        pred = in_sweep(out, r["run_id"]).read_prediction()
        if pred and r.get("eval_loss") is not None:
            lo, hi = pred["pi"]
            r.update(predicted_loss=pred["loss"], predicted_pi_lo=lo, predicted_pi_hi=hi,
                     prediction_inside=bool(lo <= r["eval_loss"] <= hi))
    if run_ids is not None:
        keep = set(run_ids)
        rows = [r for r in rows if r["run_id"] in keep]
    df = pd.DataFrame(rows, columns=COLUMNS + task_columns(rows))
    return df.drop_duplicates("run_id").reset_index(drop=True)


def write_table(out: str | os.PathLike, run_ids=None):
    """Rebuild ``OUT/results.parquet`` and ``OUT/results.csv`` atomically; return the table."""
    out = Path(out)
    df = build_table(out, run_ids)
    tag = uuid.uuid4().hex[:6]
    tmp_csv, tmp_pq = out / f".results.{tag}.csv", out / f".results.{tag}.parquet"
    df.to_csv(tmp_csv, index=False)
    os.replace(tmp_csv, out / "results.csv")
    try:
        df.to_parquet(tmp_pq, index=False)
        os.replace(tmp_pq, out / "results.parquet")
    except ImportError:  # pyarrow missing: the CSV still holds everything
        pass
    return df


def timing_breakdown(summaries: list[dict]) -> dict[str, float]:
    """Seconds per phase (startup, compile, data, train, eval, checkpoint) summed over runs."""
    tot = dict.fromkeys(PHASES, 0.0)
    for s in summaries:
        for k, v in (s.get("timing") or {}).items():
            if k in tot and v is not None:
                tot[k] += float(v)
    return tot


def format_breakdown(tot: dict[str, float], wall_s: float | None = None) -> str:
    s = sum(tot.values()) or 1.0
    parts = [f"{k} {v:.1f}s ({100 * v / s:.1f}%)" for k, v in tot.items()]
    line = "time in cells: " + ", ".join(parts)
    if wall_s:
        line += f"; sweep wall {wall_s:.1f}s"
    return line
