"""Bad input, table-driven: every case is refused with exit status 2 and ONE line on stderr.

Each row is a command line of the ``scaling`` console script (run in-process through
:func:`scaling.cli.main`, in a scratch directory holding the files the rows name), the
words that line must contain (the field or file, and the fix), and nothing else: no
traceback, nothing trained, nothing written into an existing run directory.  The first
block are the cases a 97-input battery found accepted silently or answered with a traceback
(issue 21); the rest cover every sub-command (``train count plan sweep status fit fit-hp prepare``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling import cli
from scaling.config import to_dict
from scaling.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = str(REPO / "experiments" / "quickstart.py")
RESULTS = REPO / "experiments" / "results" / "quickstart" / "results.csv"
B = ("train --task pystdlib --vocab byte --lr 3e-3 --n-layers 2 --n-heads 2 --seq-len 64 --batch 8 "
     "--tokens 20480").split()
CORRUPT = '{"batch_size": 8, "model": {'

CASES = [
    # ---- the run-identity holes: a run directory must never hold another cell's numbers
    ("finished_run_other_cell", B + ["--d-model", "48", "--out", "finished"], ["finished", "another cell", "fresh --out"]),
    ("partial_corrupt_config_other_lr", B + ["--d-model", "32", "--lr", "5e-3", "--out", "partial_corrupt"],
     ["partial_corrupt", "checkpoint at step 20 belongs to another cell", "fresh --out"]),
    ("partial_corrupt_config_other_shape", B + ["--d-model", "48", "--out", "partial_corrupt"],
     ["checkpoint at step 20 belongs to another cell"]),
    ("finished_corrupt_config_other_cell", B + ["--d-model", "48", "--out", "finished_corrupt"],
     ["summary.json belongs to another cell"]),
    ("metrics_without_any_cell", B + ["--d-model", "32", "--out", "orphan_metrics"],
     ["config.json is unreadable", "nothing else names the cell", "fresh --out"]),
    ("sweep_workers_0", ["sweep", QUICKSTART, "--out", "s", "--workers", "0"], ["--workers 0", ">= 1"]),
    ("sweep_workers_negative", ["sweep", QUICKSTART, "--out", "s", "--workers", "-2"], ["--workers -2", ">= 1"]),
    ("status_not_a_sweep", ["status", "plain_dir"], ["status plain_dir", "not a sweep directory", "--out of `scaling sweep`"]),
    ("status_of_a_run_dir", ["status", "finished"], ["not a sweep directory", "it is a run directory"]),
    ("fit_one_model_size", ["fit", "one_n.csv", "--bootstrap", "0"], ["no approach could be fitted", "same N", "add runs at other model sizes"]),
    ("fit_one_token_count", ["fit", "one_d.csv", "--bootstrap", "0"], ["no approach could be fitted", "same D"]),
    ("fit_one_budget", ["fit", "one_budget.csv", "--bootstrap", "0"],
     ["one compute budget", ">= 2 budgets", "log N and log D lie on one line"]),
    ("fit_a3_one_budget", ["fit", "one_budget.csv", "--approach", "3", "--bootstrap", "0"], ["lie on one line", "add runs at other budgets"]),
    # ---- were tracebacks
    ("config_invalid_json", ["train", "--config", "bad.json", "--out", "o"], ["--config bad.json", "not valid JSON", "line 2"]),
    ("config_not_a_cell", ["train", "--config", "array.json", "--out", "o"], ["--config array.json", "not a cell JSON"]),
    ("train_out_is_a_file", B + ["--d-model", "32", "--out", "a_file"], ["--out a_file", "existing file"]),
    ("sweep_out_is_a_file", ["sweep", QUICKSTART, "--out", "a_file"], ["--out a_file", "existing file"]),
    ("train_out_unwritable", B + ["--d-model", "32", "--out", "/proc/x"], ["--out /proc/x", "cannot create", "writable path"]),
    ("sweep_out_unwritable", ["sweep", QUICKSTART, "--out", "/proc/x/y"], ["--out /proc/x/y", "writable path"]),
    ("plan_only_bad_regex", ["plan", QUICKSTART, "--only", "("], ["--only '('", "not a regular expression"]),
    ("experiment_syntax_error", ["plan", "syntax_error.py"], ["experiment syntax_error.py, line 3", "SyntaxError", "--debug"]),
    ("experiment_missing_import", ["plan", "missing_import.py"],
     ["experiment missing_import.py, line 2", "ModuleNotFoundError", "no_such_module_xyz"]),
    ("experiment_raises", ["sweep", "raises.py", "--out", "s"], ["experiment raises.py, line 3", "ZeroDivisionError"]),
    # ---- were misleading
    ("duplicate_budgets", ["plan", "duplicate_budgets.py"], ["grid.budgets", "duplicate budget 4e+10", "once"]),
    ("fit_empty_csv", ["fit", "empty.csv"], ["empty.csv", "is empty"]),
    ("fit_all_diverged", ["fit", "all_diverged.csv"], ["every run was excluded for its state", "15 diverged"]),
    ("fit_one_row", ["fit", "one_row.csv", "--bootstrap", "0"], ["one_row.csv", "no approach could be fitted"]),
    # ---- more of our own, across every sub-command
    ("train_eval_every_negative", B + ["--d-model", "32", "--eval-every", "-1", "--out", "o"], ["eval_every=-1", ">= 0"]),
    ("train_task_every_off_evals", B + ["--d-model", "32", "--eval-every", "3", "--task-every", "4", "--out", "o"],
     ["task_every=4", "multiple of eval_every=3"]),
    ("train_task_every_negative", B + ["--d-model", "32", "--task-every", "-2", "--out", "o"], ["task_every=-2", ">= 0"]),
    ("train_mesh_not_int", B + ["--d-model", "32", "--mesh", "data=abc", "--out", "o"], ["--mesh", "integer"]),
    ("train_mesh_unknown_axis", B + ["--d-model", "32", "--mesh", "foo=2", "--out", "o"], ["unknown axis 'foo'"]),
    ("train_batch_zero", [a if a != "8" else "0" for a in B] + ["--d-model", "32", "--out", "o"], ["batch_size=0"]),
    ("train_lr_nan", B + ["--d-model", "32", "--lr", "nan", "--out", "o"], ["peak_lr=nan", "positive"]),
    ("train_heads_do_not_divide", B + ["--d-model", "33", "--out", "o"], ["--d-model 33", "--n-heads 2"]),
    ("train_grad_accum", B + ["--d-model", "32", "--grad-accum", "3", "--out", "o"], ["grad_accum=3", "divide"]),
    ("train_unknown_task", B + ["--d-model", "32", "--task", "nope", "--out", "o"], ["data.task='nope'"]),
    ("train_missing_tokenizer", B + ["--d-model", "32", "--vocab", "/no/tok.json", "--out", "o"], ["data.vocab", "not found"]),
    ("train_unknown_member", ["train", "--member", "nosuch", "--seq-len", "64", "--batch", "8", "--tokens", "20480", "--out", "o"],
     ["member='nosuch'", "list_members"]),
    ("train_checkpoint_every_zero", B + ["--d-model", "32", "--checkpoint-every", "0", "--out", "o"], ["checkpoint_every=0"]),
    ("train_config_missing", ["train", "--config", "nope.json", "--out", "o"], ["--config nope.json", "no such file"]),
    ("count_vocab_zero", "count --d-model 64 --n-layers 2 --n-heads 2 --vocab 0 --seq-len 64".split(), ["vocab_size=0"]),
    ("count_missing_shape", "count --d-model 64 --vocab 256 --seq-len 64".split(), ["missing --n-layers", "--member"]),
    ("plan_no_such_experiment", ["plan", "nofile.py"], ["experiment nofile.py", "no such file"]),
    ("plan_not_python", ["plan", "one_n.csv"], ["experiment one_n.csv", "not a Python file"]),
    ("plan_no_sweep_defined", ["plan", "no_sweep.py"], ["experiment no_sweep.py", "define SWEEP"]),
    ("plan_unknown_target", ["plan", QUICKSTART, "--target", "tpu9-8"], ["--target 'tpu9-8'", "v5p-N"]),
    ("plan_gpu_count_zero", ["plan", QUICKSTART, "--target", "h100-x0"], ["--target h100-x0", "use e.g. h100-x8"]),
    ("plan_tpu_cores_zero", ["plan", QUICKSTART, "--target", "v5p-0"], ["--target v5p-0", "positive multiple of 2",
                                                                         "v5p-16"]),
    ("plan_gpu_count_without_x", ["plan", QUICKSTART, "--target", "h100-8"], ["'h100-8'", "h100-x8"]),
    ("sweep_gpu_count_not_hosts_x_8", ["sweep", QUICKSTART, "--out", "s", "--target", "h100-x12"],
     ["--target h100-x12", "hosts x 8"]),
    ("plan_negative_hbm", ["plan", QUICKSTART, "--target", "v5p-8", "--hbm-gib", "-1"], ["--hbm-gib", "positive"]),
    ("plan_out_is_a_file", ["plan", QUICKSTART, "--out", "a_file"], ["--out a_file", "not a sweep directory"]),
    ("status_no_such_dir", ["status", "nodir"], ["status nodir", "no such sweep directory"]),
    ("fit_no_such_table", ["fit", "nofile.csv"], ["nofile.csv does not exist"]),
    ("fit_not_a_table", ["fit", "garbage.parquet"], ["garbage.parquet cannot be read as parquet"]),
    ("fit_header_only", ["fit", "header_only.csv"], ["header_only.csv", "no rows"]),
    ("fit_non_numeric_loss", ["fit", "non_numeric.csv"], ["eval_loss", "not numeric"]),
    ("fit_unknown_column", ["fit", "one_n.csv", "--loss-col", "nope"], ["column 'nope' not in table"]),
    ("fit_unknown_convention", ["fit", "one_n.csv", "--convention", "9X"], ["convention", "'9X'", "6N"]),
    ("fit_unknown_law", ["fit", "one_n.csv", "--law", "nolaw"], ["law", "'nolaw'", "chinchilla"]),
    ("fit_law_module_missing", ["fit", "one_n.csv", "--law", "nomod:x"], ["--law", "MODULE:ATTR"]),
    ("fit_negative_target_c", ["fit", "mixed.csv", "--target-c", "-5"], ["--target-c -5", "positive"]),
    ("fit_negative_near_optimum", ["fit", "mixed.csv", "--near-optimum", "-0.1"], ["--near-optimum -0.1", "positive fraction"]),
    ("fit_negative_bootstrap", ["fit", "mixed.csv", "--bootstrap", "-1"], ["--bootstrap", ">= 0"]),
    ("fit_one_label", ["fit", "mixed.csv", "--compare", "mixed.csv", "--labels", "A"], ["--labels", "two names"]),
    ("fit_compare_empty", ["fit", "mixed.csv", "--compare", "empty.csv", "--bootstrap", "0"], ["empty.csv", "is empty"]),
    ("predict_at_not_numbers", ["predict", "mixed.csv", "--at", "abc"], ["--at 'abc'", "N,D"]),
    ("predict_at_one_number", ["predict", "mixed.csv", "--at", "1e5"], ["--at '1e5'", "two numbers"]),
    ("predict_at_negative", ["predict", "mixed.csv", "--at=-1,1e6"], ["--at '-1,1e6'", "positive"]),
    ("predict_at_below_one_batch", ["predict", "mixed.csv", "--at", "1e5,100"], ["below one batch", "2048"]),
    ("predict_all_diverged", ["predict", "all_diverged.csv", "--at", "1e5,1e7"], ["no run whose state is done"]),
    ("train_mup_without_base", B + ["--d-model", "32", "--parametrization", "mup", "--out", "o"],
     ["model.parametrization='mup' needs a base shape", "--base-width"]),
    ("train_base_width_without_mup", B + ["--d-model", "32", "--base-width", "16", "--out", "o"],
     ["model.base_width=16", "does not use it"]),
    ("fit_hp_one_lr_per_group", ["fit-hp", "mixed.csv"], ["'peak_lr' holds one value per", "not an LR sweep", "--lr-col"]),
    ("fit_hp_unknown_lr_col", ["fit-hp", "hp.csv", "--lr-col", "nope"], ["column 'nope' not in table", "--lr-col"]),
    ("fit_hp_non_positive_lr", ["fit-hp", "hp_zero_lr.csv"], ["'peak_lr'", "non-positive", "> 0"]),
    ("fit_hp_two_lrs_per_group", ["fit-hp", "hp_two_lrs.csv"], ["no (n_total, tokens) group has 3", ">= 3"]),
    ("fit_hp_two_parametrizations", ["fit-hp", "hp_two_params.csv"], ["'parametrization' holds mup, standard",
                                                                        "--parametrization"]),
    ("fit_hp_bad_at", ["fit-hp", "hp.csv", "--at", "1e5"], ["--at '1e5'", "N,D"]),
    ("fit_hp_collinear", ["fit-hp", "hp_one_ratio.csv", "--bootstrap", "0"], ["collinear", "--law n"]),
    ("fit_hp_no_such_table", ["fit-hp", "nofile.csv"], ["nofile.csv does not exist"]),
    ("fit_curves_no_such_dir", ["fit-curves", "nodir"], ["SWEEP_DIR nodir", "not a directory"]),
    ("fit_curves_no_trajectories", ["fit-curves", "plain_dir"], ["no finished run directory with a trajectory",
                                                                  "metrics.jsonl"]),
    ("fit_curves_predict_without_measured", ["fit-curves", "plain_dir", "--predict", "x.py"],
     ["--predict/--measured", "give both"]),
    ("fit_curves_negative_fork_index", ["fit-curves", "plain_dir", "--fork-index", "-1"], ["--fork-index -1", ">= 0"]),
    ("fit_curves_fork_index_not_int", ["fit-curves", "plain_dir", "--fork-index", "0,x"], ["--fork-index 0,x", "comma list"]),
    ("fit_curves_fork_index_twice", ["fit-curves", "plain_dir", "--fork-index", "1,1"], ["--fork-index 1,1", "listed twice"]),
    ("fit_curves_area_power_zero", ["fit-curves", "plain_dir", "--law", "multipower", "--area-power", "0"],
     ["--area-power 0", "in (0, 2]"]),
    ("fit_curves_area_power_not_a_number", ["fit-curves", "plain_dir", "--law", "multipower", "--area-power", "x"],
     ["--area-power x", "in (0, 2]"]),
    ("fit_curves_area_power_annealing_law", ["fit-curves", "plain_dir", "--area-power", "0.6"],
     ["--area-power 0.6", "only the multipower law", "--law multipower"]),
    ("fit_curves_predict_no_such_experiment", ["fit-curves", "plain_dir", "--predict", "nofile.py", "--measured", "hp.csv"],
     ["experiment nofile.py: no such file"]),
    ("fit_curves_measured_without_run_ids", ["fit-curves", "plain_dir", "--predict", QUICKSTART, "--measured", "hp.csv"],
     ["--measured hp.csv", "no 'run_id' column"]),
    ("prepare_unknown_task", ["prepare", "--task", "nope"], ["data.task='nope'"]),
    ("prepare_unknown_vocab", ["prepare", "--task", "pystdlib", "--vocab", "bogus"], ["data.vocab='bogus'"]),
    # ---- downstream-task fits (scaling fit --task, analysis.tasks): refused before anything is fitted
    ("fit_task_absent", ["fit", "tasks.csv", "--task", "nope"], ["--task 'nope'", "not in the table", "tasks present: demo"]),
    ("fit_task_table_without_tasks", ["fit", "mixed.csv", "--task", "demo"], ["--task 'demo'", "tasks present: none",
                                                                              "--eval-task NAME=PATH"]),
    ("fit_task_all_nan", ["fit", "task_nan.csv", "--task", "demo"], ["task/demo/acc", "every value is empty"]),
    ("fit_task_too_few_runs", ["fit", "task_few.csv", "--task", "demo"], ["task/demo/acc", "needs >= 6 runs",
                                                                          "found 4 run(s)"]),
    ("fit_task_one_budget", ["fit", "task_one_budget.csv", "--task", "demo"], [">= 2 budgets", "found 8 run(s) at 1 budget(s)"]),
    ("fit_task_acc_percent", ["fit", "task_percent.csv", "--task", "demo"], ["task/demo/acc", "outside [0, 1]",
                                                                             "divide percentages by 100"]),
    ("fit_task_no_bpb", ["fit", "task_no_bpb.csv", "--task", "demo"], ["task/demo/bpb", "--task-method gadre"]),
    ("fit_at_without_task", ["fit", "tasks.csv", "--at", "1e5,1e7"], ["--at/--at-c", "--task NAME"]),
    ("fit_task_bad_chance", ["fit", "tasks.csv", "--task", "demo", "--chance", "4"], ["--chance 4", "(0, 1)"]),
    # ---- downstream task files (issue 25): file, line and field, before any compute
    ("task_missing_field", B + ["--d-model", "32", "--eval-task", "t=task_missing.jsonl", "--out", "o"],
     ["task_missing.jsonl, line 2", "missing field 'gold'"]),
    ("task_gold_out_of_range", B + ["--d-model", "32", "--eval-task", "t=task_gold.jsonl", "--out", "o"],
     ["task_gold.jsonl, line 1", "'gold' is 2, out of range", "[0, 1]"]),
    ("task_one_choice", B + ["--d-model", "32", "--eval-task", "t=task_one_choice.jsonl", "--out", "o"],
     ["task_one_choice.jsonl, line 1", "'choices' has 1 entries", "at least 2"]),
    ("task_empty_context", B + ["--d-model", "32", "--eval-task", "t=task_empty_context.jsonl", "--out", "o"],
     ["task_empty_context.jsonl, line 1", "'context' is empty"]),
    ("task_empty_choice", B + ["--d-model", "32", "--eval-task", "t=task_empty_choice.jsonl", "--out", "o"],
     ["task_empty_choice.jsonl, line 1", "'choices[1]' is empty"]),
    ("task_malformed_json", B + ["--d-model", "32", "--eval-task", "t=task_torn.jsonl", "--out", "o"],
     ["task_torn.jsonl, line 2", "not valid JSON"]),
    ("task_longer_than_seq_len", B + ["--d-model", "32", "--eval-task", "t=task_long.jsonl", "--out", "o"],
     ["task_long.jsonl, line 2", "(id 'long')", "'choices[0]'", "seq_len=64", "larger --seq-len", "shorten"]),
    ("task_name_used_twice", B + ["--d-model", "32", "--eval-task", "t=task_ok.jsonl", "--eval-task", "t=task_gold.jsonl",
                                  "--out", "o"], ["task name 't' is used twice"]),
    ("task_not_a_builtin", B + ["--d-model", "32", "--eval-task", "nosuch", "--out", "o"], ["'nosuch' is not a built-in"]),
    ("task_file_missing", B + ["--d-model", "32", "--eval-task", "t=nofile.jsonl", "--out", "o"],
     ["nofile.jsonl", "no such task file"]),
    ("task_on_synthetic_data", ["train", "--task", "synthetic_markov", "--d-model", "32", "--n-layers", "1", "--n-heads",
                                "2", "--seq-len", "64", "--batch", "8", "--tokens", "20480", "--eval-task",
                                "t=task_ok.jsonl", "--out", "o"], ["no text tokenizer", "text task"]),
    ("sweep_task_gold_out_of_range", ["sweep", QUICKSTART, "--out", "s", "--eval-task", "t=task_gold.jsonl"],
     ["task_gold.jsonl, line 1", "'gold'"]),
    ("sweep_task_name_twice", ["sweep", QUICKSTART, "--out", "s", "--eval-task", "pystdlib_nextline=task_ok.jsonl"],
     ["'pystdlib_nextline' is used twice"]),
    ("make_task_no_corpus", ["make-task", "nodir", "--out", "t.jsonl"], ["nodir", "matches no files"]),
    ("make_task_too_many_items", ["make-task", "corpus.txt", "--n-items", "100000", "--out", "t.jsonl"],
     ["candidate lines", "lower --n-items"]),
]


def _digest(d: Path) -> dict:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def _cell(*extra):
    """The cell ``scaling train B --d-model 32 ...`` builds (as the CLI resolves it for CPU)."""
    parser = cli.build_parser()
    return cli.build_cell(parser.parse_args(B + ["--d-model", "32", "--out", "x", *extra]))


def _fake_run(d: Path, cell, *, finished: bool, config: str | None = "ok") -> None:
    """A run directory as the trainer leaves it, without training: config.json, a checkpoint's
    meta (the record that names its cell), metrics rows, and for a finished run summary + SUCCESS."""
    rd = RunDir(d)
    rd.write_cell(cell)
    meta = d / "checkpoints" / "20" / "meta" / "metadata"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"step": 20, "cell": to_dict(cell), "run_id": cell.run_id}))
    rd.write_metrics([{"step": s, "train_loss": 5.0 - 0.01 * s} for s in range(1, 21)])
    if finished:
        rd.finish({"run_id": cell.run_id, "state": "done", "steps": 20, "final_eval_loss": 4.8})
    if config == "corrupt":
        (d / "config.json").write_text(CORRUPT)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")
    cell = _cell()
    _fake_run(root / "finished", cell, finished=True)
    _fake_run(root / "finished_corrupt", cell, finished=True, config="corrupt")
    _fake_run(root / "partial_corrupt", cell, finished=False, config="corrupt")
    _fake_run(root / "orphan_metrics", cell, finished=False, config="corrupt")
    for p in (root / "orphan_metrics" / "checkpoints").rglob("metadata"):
        p.write_text("{torn")  # the only record naming the cell is unreadable
    (root / "plain_dir").mkdir()
    (root / "a_file").write_text("not a directory\n")
    (root / "bad.json").write_text('{"a": \n')
    (root / "array.json").write_text("[1, 2]\n")
    (root / "syntax_error.py").write_text("from scaling.sweep import Sweep\n\nSWEEP = (\n")
    (root / "missing_import.py").write_text("# an experiment importing a module that is not installed\n"
                                            "import no_such_module_xyz\n")
    (root / "raises.py").write_text("import math\n\nSCALE = 1 / 0\n")
    (root / "no_sweep.py").write_text("X = 1\n")
    (root / "duplicate_budgets.py").write_text(
        "import dataclasses, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('qs', {QUICKSTART!r})\n"
        "qs = importlib.util.module_from_spec(spec); spec.loader.exec_module(qs)\n"
        "SWEEP = dataclasses.replace(qs.SWEEP, grid=dataclasses.replace(qs.SWEEP.grid, budgets=(4e10, 4e10)))\n")
    df = pd.read_csv(RESULTS)
    df.assign(n_total=33024).to_csv(root / "one_n.csv", index=False)
    df.assign(tokens=1e6).to_csv(root / "one_d.csv", index=False)
    # one budget, 8 sizes: enough runs for every law, but N and D on one line
    one = df[df["budget"] == 2.5e12].iloc[:1]
    sizes = [2e4, 3e4, 4.5e4, 7e4, 1e5, 1.5e5, 2.2e5, 3.3e5]
    pd.concat([one.assign(n_total=n, tokens=2.5e12 / (6 * n), eval_loss=1.5 + 0.1 * abs(i - 3.5))
               for i, n in enumerate(sizes)]).to_csv(root / "one_budget.csv", index=False)
    df.assign(state="diverged").to_csv(root / "all_diverged.csv", index=False)
    df.head(1).to_csv(root / "one_row.csv", index=False)
    df.head(0).to_csv(root / "header_only.csv", index=False)
    df.assign(eval_loss=["x"] + list(df["eval_loss"][1:])).to_csv(root / "non_numeric.csv", index=False)
    df.to_csv(root / "mixed.csv", index=False)
    hp = pd.DataFrame([dict(n_total=n, tokens=d, peak_lr=lr, eval_loss=2 + (np.log(lr) + 5) ** 2, state="done")
                       for n in (1e4, 4e4, 1.6e5) for d in (1e6, 4e6) for lr in (2e-3, 4e-3, 8e-3, 1.6e-2)])
    hp.to_csv(root / "hp.csv", index=False)
    hp.assign(peak_lr=np.where(hp.index == 2, 0.0, hp.peak_lr)).to_csv(root / "hp_zero_lr.csv", index=False)
    hp.groupby(["n_total", "tokens"]).head(2).to_csv(root / "hp_two_lrs.csv", index=False)
    pd.concat([hp.assign(parametrization="standard"), hp.assign(parametrization="mup")]).to_csv(
        root / "hp_two_params.csv", index=False)
    hp.assign(tokens=20 * hp.n_total).to_csv(root / "hp_one_ratio.csv", index=False)
    # a task's columns on the quickstart's runs (accuracy falling with the loss)
    tk = df.assign(**{"task/demo/acc": (0.25 + 0.4 * (1.95 - df["eval_loss"])).clip(0.25, 1),
                      "task/demo/acc_norm": 0.3, "task/demo/bpb": 0.7 * df["eval_loss"], "task/demo/n_items": 500,
                      "task/demo/sha": "abc"})
    tk.to_csv(root / "tasks.csv", index=False)
    tk.assign(**{"task/demo/acc": np.nan}).to_csv(root / "task_nan.csv", index=False)
    tk.assign(**{"task/demo/acc": np.where(tk.index < 4, tk["task/demo/acc"], np.nan)}).to_csv(root / "task_few.csv",
                                                                                              index=False)
    tk.assign(**{"task/demo/acc": 100 * tk["task/demo/acc"]}).to_csv(root / "task_percent.csv", index=False)
    tk.drop(columns=["task/demo/bpb"]).to_csv(root / "task_no_bpb.csv", index=False)
    ob = pd.read_csv(root / "one_budget.csv")
    ob.assign(**{"task/demo/acc": 0.3, "task/demo/bpb": 1.0}).to_csv(root / "task_one_budget.csv", index=False)
    ok = '{"context": "x = 1\\n", "choices": ["y = 2", "import os"], "gold": 0}\n'
    (root / "task_ok.jsonl").write_text(ok)
    (root / "corpus.txt").write_text("".join(f"line number {i}\n" for i in range(50)))
    (root / "task_missing.jsonl").write_text(ok + '{"context": "a", "choices": ["b", "c"]}\n')
    (root / "task_gold.jsonl").write_text('{"context": "a", "choices": ["b", "c"], "gold": 2}\n')
    (root / "task_one_choice.jsonl").write_text('{"context": "a", "choices": ["b"], "gold": 0}\n')
    (root / "task_empty_context.jsonl").write_text('{"context": "", "choices": ["b", "c"], "gold": 0}\n')
    (root / "task_empty_choice.jsonl").write_text('{"context": "a", "choices": ["b", ""], "gold": 0}\n')
    (root / "task_torn.jsonl").write_text(ok + '{"context": "a", "choi\n')
    (root / "task_long.jsonl").write_text(ok + json.dumps({"id": "long", "context": "c" * 60, "choices": ["d" * 10, "e"],
                                                           "gold": 0}) + "\n")
    (root / "empty.csv").write_text("")
    (root / "garbage.parquet").write_text("garbage")
    return root


@pytest.mark.filterwarnings("error::RuntimeWarning")  # a numpy warning is a second stderr line for a user
@pytest.mark.parametrize("argv, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_with_one_clean_line(scratch, argv, words, monkeypatch, capsys):
    monkeypatch.chdir(scratch)
    before = {d: _digest(scratch / d) for d in ("finished", "finished_corrupt", "partial_corrupt", "orphan_metrics")}
    rc = cli.main(list(argv))
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], f"{w!r} not in {lines[0]!r}"
    assert {d: _digest(scratch / d) for d in before} == before  # no run directory was touched
    assert not (scratch / "o" / "checkpoints").exists()  # nothing trained


def test_debug_adds_the_traceback(scratch, monkeypatch, capsys):
    monkeypatch.chdir(scratch)
    assert cli.main(["--debug", "plan", "missing_import.py"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "import no_such_module_xyz" in err
    assert err.strip().splitlines()[-1].startswith("error: experiment missing_import.py, line 2")


def test_same_cell_with_a_corrupt_config_is_rebuilt_in_one_line(scratch, tmp_path, monkeypatch, capsys):
    """The finished run's own cell: exit 0 with the stored summary, one note, config.json whole again."""
    import shutil

    shutil.copytree(scratch / "finished_corrupt", tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    assert cli.main(B + ["--d-model", "32", "--out", "run"]) == 0
    err = capsys.readouterr().err
    assert [ln for ln in err.splitlines() if ln.startswith("note:")] == [
        f"note: run_dir run: config.json was unreadable; rebuilt it from its summary.json, which names the same "
        f"cell ({_cell().run_id})"]
    assert RunDir(tmp_path / "run").read_cell().config_hash == _cell().config_hash


def test_the_cases_are_many_and_distinct():
    assert len(CASES) >= 48 and len({c[0] for c in CASES}) == len(CASES)
    assert len({tuple(c[1]) for c in CASES}) == len(CASES)
    assert {c[1][0] for c in CASES} >= {"train", "count", "plan", "sweep", "status", "fit", "predict", "prepare",
                                        "make-task"}
    assert isinstance(cli.build_parser(), argparse.ArgumentParser)
