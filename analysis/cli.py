"""``scaling fit``: Chinchilla Approaches 1-3 on a results table, from the shell.

    scaling fit TABLE_OR_SWEEP_DIR [--approach 1|2|3|all] [--law chinchilla|kaplan|data_constrained|MODULE:NAME]
                [--n-col C] [--d-col C] [--c-col C] [--u-col C] [--flops-per-token-col C]
                [--convention 6N|8N|K] [--loss-col C] [--budget-col C] [--near-optimum FRAC]
                [--bootstrap K] [--target-c C] [--compare TABLE_B] [--labels A,B]
                [--format text|json] [--plots DIR] [--out DIR]
                [--task NAME ... [--task-metric acc|acc_norm] [--task-method two_step|gadre] [--chance P]
                 [--at N,D ...] [--at-c C ...]]

TABLE_OR_SWEEP_DIR is a .csv/.parquet file or a sweep directory holding results.parquet
(or results.csv).  Defaults match our results table (n_total, tokens, eval_loss, budget).
Any two of N, D, C are enough: with only ``--c-col`` tokens are D = C / (6 N); with
``--c-col`` and ``--d-col`` and no N column, N = C / (6 D) (``--convention`` or
``--flops-per-token-col`` for other FLOP counts).  JSON output has a key per approach
(``approach3``: the law's parameters, objective, a, b, convergence; ``approach2`` and
``approach1``: a, b), with intervals under ``ci`` inside each (``--bootstrap K``, default
200; 0 turns them off) and ``prediction`` (residual-bootstrap intervals at the largest
budget and ``--target-c``).  ``--compare B`` adds the compute-equivalent gain of table B's
recipe over this one.  ``--out DIR`` writes ``fits.json``, ``fits.md`` and the figures there.
``--task NAME`` (repeatable) adds ``tasks``: the task's accuracy law from the table's
``task/NAME/*`` columns, chained to predictions at each budget, ``--at N,D`` and ``--at-c C``,
with bootstrap intervals through every step and a backtest on the largest budget
(:mod:`analysis.tasks`).  No JAX.

``scaling fit-hp TABLE_OR_SWEEP_DIR`` fits hyperparameter laws (:mod:`analysis.hp`): the best
LR per (N, D[, B]) group with a bootstrap interval, then ``LR* = c N^a D^b`` (``--law``) with
intervals on every exponent; ``--at N,D`` predicts, ``--save`` writes the law file a recipe
reads (``Recipe(lr_rule=HPLaw.load(path))``), ``--plots DIR`` draws the figures.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from pathlib import Path


def add_commands(subparsers) -> None:
    """Register ``fit`` on an argparse sub-parsers object."""
    p = subparsers.add_parser("fit", help="fit scaling laws (Chinchilla Approaches 1-3) to a results table",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("table", metavar="TABLE_OR_SWEEP_DIR")
    p.add_argument("--approach", choices=("1", "2", "3", "all"), default="all")
    p.add_argument("--law", default="chinchilla", help="law of Approach 3: chinchilla, kaplan, "
                   "data_constrained, a registered name, or MODULE:ATTR naming an analysis.laws.Law")
    p.add_argument("--starts", default="full", choices=("full", "small"), help="Approach 3 start grid")
    p.add_argument("--n-col", default=None, help="parameters column (default: n_total when the table has it)")
    p.add_argument("--d-col", default=None, help="tokens column (default: tokens, unless "
                   "--c-col is given alone, then D = C/(6N))")
    p.add_argument("--c-col", default=None, help="training FLOPs column")
    p.add_argument("--u-col", default=None, help="unique tokens column (data_constrained law; "
                   "default tokens_unique)")
    p.add_argument("--flops-per-token-col", default=None, help="FLOPs per token column F: C = F D")
    p.add_argument("--convention", default="6N", help="C = k N D factor: 6N (default), 8N or a number")
    p.add_argument("--loss-col", default="eval_loss")
    p.add_argument("--budget-col", default=None, help="IsoFLOP budget column (default: "
                   "budget if the table has it, else C binned into budgets)")
    p.add_argument("--near-optimum", type=float, default=None, metavar="FRAC",
                   help="keep only runs within FRAC (e.g. 0.05) of their budget's lowest loss")
    p.add_argument("--bootstrap", type=int, default=200, metavar="K")
    p.add_argument("--target-c", type=float, default=None, help="extrapolation target in FLOPs "
                   "(default: 100x the largest budget)")
    p.add_argument("--compare", default=None, metavar="TABLE_B", help="a second table (same columns): "
                   "report the compute-equivalent gain of its recipe over this one")
    p.add_argument("--labels", default="A,B", help="names of the two recipes for --compare")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--plots", default=None, metavar="DIR", help="write the figures here")
    p.add_argument("--out", default=None, metavar="DIR", help="write fits.json, fits.md and the figures here "
                   "(the report a sweep writes)")
    g = p.add_argument_group("downstream tasks (analysis.tasks; the table's task/NAME/acc, acc_norm, bpb columns)")
    g.add_argument("--task", action="append", default=[], metavar="NAME",
                   help="fit this task's accuracy law (repeatable; 'all': every task in the table): task loss law + "
                        "sigmoid, chained predictions with bootstrap intervals through both steps, and a backtest "
                        "on the largest budget")
    g.add_argument("--task-metric", choices=("acc", "acc_norm"), default="acc",
                   help="accuracy column: acc, or acc_norm (choices scored per byte)")
    g.add_argument("--task-method", choices=("two_step", "gadre"), default="two_step",
                   help="two_step: task loss(N, D) then a sigmoid of it (OLMo ladder); gadre: error as "
                        "epsilon - k exp(-gamma L) of the LM loss (Gadre et al. 2024)")
    g.add_argument("--chance", type=float, default=None, metavar="P",
                   help="chance accuracy 1/n_choices, the sigmoid's floor (default 0.25: 4 choices)")
    g.add_argument("--at", action="append", default=[], metavar="N,D",
                   help="with --task: predict the accuracy of a model of N parameters trained on D tokens (repeatable)")
    g.add_argument("--at-c", action="append", default=[], type=float, metavar="C",
                   help="with --task: predict the accuracy at the compute-optimal point of C FLOPs (repeatable)")
    p.set_defaults(func=run_fit)
    add_fit_hp(subparsers)
    add_predict(subparsers)


def add_fit_hp(subparsers) -> None:
    """Register ``fit-hp`` (hyperparameter laws, :mod:`analysis.hp`)."""
    p = subparsers.add_parser("fit-hp", help="fit learning-rate (and batch) laws to an HP sweep's table",
                              description="Best LR per (N, D[, B]) group (parabola vertex in log LR, bootstrap "
                                          "interval), then LR* = c N^a D^b with intervals (analysis.hp).")
    p.add_argument("table", metavar="TABLE_OR_SWEEP_DIR")
    p.add_argument("--n-col", default="n_total", help="parameters column (default n_total)")
    p.add_argument("--d-col", default="tokens", help="tokens column (default tokens)")
    p.add_argument("--lr-col", default="peak_lr", help="learning-rate column (default peak_lr)")
    p.add_argument("--loss-col", default="eval_loss")
    p.add_argument("--batch-col", default=None, help="batch-size column: groups per (N, D, B), an LR law with a "
                   "B term and a B*(N, D) law (default: batch fixed)")
    p.add_argument("--law", default="nd", choices=("nd", "n", "d", "c"),
                   help="nd: c N^a D^b (default); n: c N^a; d: c D^b; c: c C^a with C = 6 N D (DeepSeek)")
    p.add_argument("--parametrization", default=None, help="which parametrization's runs to fit (needed when "
                   "the table's parametrization column holds several)")
    p.add_argument("--at", action="append", default=[], metavar="N,D[,B]",
                   help="predict LR* with its interval here (repeatable)")
    p.add_argument("--local", action="store_true", help="vertex of the lowest LR and its two neighbours only "
                   "(coarse scans whose ends are far off)")
    p.add_argument("--bootstrap", type=int, default=200, metavar="K")
    p.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--plots", default=None, metavar="DIR", help="write loss_vs_lr and lr_law figures here")
    p.add_argument("--save", default=None, metavar="LAW.json", help="write the law file a recipe reads")
    p.set_defaults(func=run_fit_hp)


def add_predict(subparsers) -> None:
    """Register ``predict`` (:mod:`analysis.prediction`) and ``fit-curves`` (:mod:`analysis.curves`)."""
    p = subparsers.add_parser("predict", help="a law's loss at any (N, D), with intervals calibrated by rollouts",
                              description="Fit Approach 3 and predict the loss of one run at each --at N,D: the "
                                          "law's loss, a parameter interval and a prediction interval for one "
                                          "run's measured loss that widens with extrapolation distance, as "
                                          "measured by rollouts inside the table (see analysis.prediction).")
    p.add_argument("table", metavar="TABLE_OR_SWEEP_DIR")
    p.add_argument("--at", action="append", required=True, metavar="N,D",
                   help="a point to predict, parameters and tokens (repeatable), e.g. --at 1e9,2e10")
    p.add_argument("--law", default="chinchilla", help="as for `scaling fit`")
    p.add_argument("--starts", default="full", choices=("full", "small"))
    for flag, helptext in (("--n-col", "parameters column (default: n_total when the table has it)"),
                           ("--d-col", "tokens column (default: tokens unless --c-col is given alone)"),
                           ("--c-col", "training FLOPs column"), ("--flops-per-token-col", "FLOPs per token column"),
                           ("--budget-col", "IsoFLOP budget column (default: budget if present)")):
        p.add_argument(flag, default=None, help=helptext)
    p.add_argument("--convention", default="6N", help="C = k N D factor: 6N (default), 8N or a number")
    p.add_argument("--loss-col", default="eval_loss")
    p.add_argument("--bootstrap", type=int, default=200, metavar="K", help="resamples for the parameter interval")
    p.add_argument("--level", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=run_predict, near_optimum=None, target_c=None, u_col=None)

    p = subparsers.add_parser("fit-curves", help="schedule-aware loss curves: predict a size's other runs from two",
                              description="Per model size of a sweep (WSD trunk + forks, or any runs of several "
                                          "schedules): fit a loss-curve law (the LR-annealing law of Tissue et al. "
                                          "2024, L = L0 + A*S1^-alpha - C*S2, or the multi-power law of Luo et al. "
                                          "2025) to the trunk's and one fork's trajectories, then predict every "
                                          "other run's final loss from its LR schedule, or with --predict every "
                                          "run of another experiment of the same sizes (analysis.curves).")
    p.add_argument("sweep_dir", metavar="SWEEP_DIR")
    p.add_argument("--law", choices=("annealing", "multipower"), default="annealing",
                   help="annealing: Tissue et al. 2024 (4 constants); multipower: Luo et al. 2025 (7 constants)")
    p.add_argument("--loss", choices=("auto", "eval_loss", "train_loss"), default="auto",
                   help="which trajectory (auto: eval_loss when a run logged >= 6 evals, else train_loss)")
    p.add_argument("--fork-index", default="0",
                   help="which fork (by horizon, 0 = shortest) joins the trunk; a comma list (e.g. 0,1) fits the "
                        "trunk with several cooldowns at once")
    p.add_argument("--difference", action="store_true",
                   help="fit the fork's points as fork-minus-trunk gaps at steps both were evaluated "
                        "(cancels the noise they share)")
    p.add_argument("--area-power", default="1", metavar="P",
                   help="multipower law: forward area S1 = sum eta^P instead of sum eta (1, the published law); a "
                        "constant of the model family, calibrated on other cosine runs "
                        "(benchmarks/curves_area_power.py), not fitted")
    p.add_argument("--predict", metavar="EXPERIMENT", default=None,
                   help="predict this experiment's cells (same sizes and peak LRs) instead of SWEEP_DIR's other runs")
    p.add_argument("--measured", metavar="TABLE", default=None,
                   help="with --predict: that experiment's results (sweep dir or results.csv); eval_loss by run_id")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=run_fit_curves)


def _points(specs) -> list[tuple]:
    from analysis.errors import ConfigError

    out = []
    for spec in specs:
        try:
            vals = tuple(float(v) for v in spec.split(","))
        except ValueError:
            vals = ()
        if len(vals) not in (2, 3) or not all(math.isfinite(v) and v > 0 for v in vals):
            raise ConfigError(f"--at {spec!r}: give N,D (or N,D,B) as positive numbers, e.g. --at 1e5,2e6")
        out.append(vals)
    return out


def run_fit_hp(args) -> int:
    from analysis import hp
    from analysis.data import load_table
    from analysis.errors import ConfigError

    try:
        if args.bootstrap < 0:
            raise ConfigError("--bootstrap: K must be >= 0")
        if not 0 < args.level < 1:
            raise ConfigError(f"--level {args.level:g}: must be in (0, 1), e.g. 0.95")
        at = _points(args.at)
        df = load_table(args.table)
        summary = hp.fit_hp(df, n_col=args.n_col, d_col=args.d_col, lr_col=args.lr_col, loss_col=args.loss_col,
                            batch_col=args.batch_col, law=args.law, bootstrap=args.bootstrap, seed=args.seed,
                            level=args.level, at=at, parametrization=args.parametrization, local=args.local,
                            table=args.table)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = hp.to_json(summary)
    if args.save:
        out["saved"] = summary["law"].save(args.save)
    if args.plots:
        from analysis import hp_plots

        cols = summary["law"].columns
        data = df if "parametrization" not in df.columns else df[df["parametrization"] == summary["law"].parametrization]
        out["plots"] = (hp_plots.loss_vs_lr(data, summary["groups"], Path(args.plots) / "loss_vs_lr", **cols)
                        + hp_plots.lr_law(summary["groups"], summary["law"], Path(args.plots) / "lr_law"))
    if args.format == "json":
        print(json.dumps(out, indent=2))
    else:
        print(hp.to_markdown(summary), end="")
        for k in ("saved",):
            if k in out:
                print(f"\nlaw file: {out[k]}")
        if "plots" in out:
            print("figures: " + ", ".join(out["plots"]))
    return 0


def resolve_law(name: str):
    """A law by name, or ``module:attr`` importing a user-defined analysis.laws.Law."""
    from analysis import laws
    from analysis.errors import ConfigError

    if ":" in name:
        mod, _, attr = name.partition(":")
        try:
            obj = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"--law: cannot import {name!r} ({e}); use MODULE:ATTR on PYTHONPATH") from None
        return laws.get(obj)
    return laws.get(name)


def _columns(args, df) -> dict:
    from analysis.errors import ConfigError

    d_col = args.d_col
    if d_col is None and args.c_col is None and args.flops_per_token_col is None:
        d_col = "tokens"
    n_col = args.n_col if args.n_col is not None else ("n_total" if "n_total" in df.columns else None)
    budget_col = args.budget_col
    if budget_col is None and "budget" in df.columns:
        budget_col = "budget"
    if args.bootstrap < 0:
        raise ConfigError("--bootstrap: K must be >= 0")
    if args.target_c is not None and not (math.isfinite(args.target_c) and args.target_c > 0):
        raise ConfigError(f"--target-c {args.target_c:g}: must be a positive number of FLOPs, e.g. 1e24")
    if args.near_optimum is not None and not (math.isfinite(args.near_optimum) and args.near_optimum > 0):
        raise ConfigError(f"--near-optimum {args.near_optimum:g}: must be a positive fraction, e.g. 0.05 "
                          f"(runs within 5% of their budget's lowest loss)")
    conv = args.convention
    try:
        conv = float(conv)
    except ValueError:
        pass
    return dict(n_col=n_col, d_col=d_col, c_col=args.c_col, loss_col=args.loss_col, budget_col=budget_col,
                flops_per_token_col=args.flops_per_token_col, convention=conv)


def _near(df, args, cols, warns):
    if args.near_optimum is None:
        return df
    from analysis.data import near_optimum

    key = cols["budget_col"] or cols["c_col"]
    if key is None:
        from analysis.errors import ConfigError
        raise ConfigError("--near-optimum: needs --budget-col or --c-col to group runs by budget")
    return near_optimum(df, budget_col=key, loss_col=cols["loss_col"], within=args.near_optimum, warnings=warns)


def _task_args(args) -> list:
    """Checks of the --task options that need no table: (N, D) points of --at."""
    from analysis.errors import ConfigError

    if (args.at or args.at_c) and not args.task:
        raise ConfigError("--at/--at-c: predict a task's accuracy with --task NAME (for the loss at N, D use "
                          "`scaling predict`)")
    for c in args.at_c:
        if not (math.isfinite(c) and c > 0):
            raise ConfigError(f"--at-c {c:g}: must be a positive number of FLOPs, e.g. 1e18")
    if args.chance is not None and not 0 < args.chance < 1:
        raise ConfigError(f"--chance {args.chance:g}: the chance accuracy 1/n_choices must be in (0, 1), e.g. 0.25")
    if len(set(args.task)) != len(args.task):
        raise ConfigError(f"--task: {', '.join(sorted({t for t in args.task if args.task.count(t) > 1}))} given twice")
    if not args.at:
        return []
    from analysis.prediction import parse_points

    return parse_points(args.at)


def run_fit(args) -> int:
    from analysis.data import load_table
    from analysis.report import compare_section, fit_all, make_plots, task_section, to_markdown

    try:
        at = _task_args(args)
        df = load_table(args.table)
        notes: list[str] = []  # runs excluded for their state are fit_all's to list (excluded_runs)
        law = resolve_law(args.law)
        cols = _columns(args, df)
        df = _near(df, args, cols, notes)
        if args.task:  # every task's columns and runs are checked before anything is fitted
            from analysis import tasks

            if args.task == ["all"] and "all" not in tasks.task_names(df):
                args.task = tasks.task_names(df) or ["all"]
            for name in args.task:
                tasks.task_frame(df, name, metric=args.task_metric, method=args.task_method, law=law, **cols)
        approaches = (1, 2, 3) if args.approach == "all" else (int(args.approach),)
        extra = {"u_col": args.u_col} if args.u_col else {}
        summary, objs = fit_all(df, **cols, approaches=approaches, bootstrap=args.bootstrap, seed=args.seed,
                                law=law, target_c=args.target_c, starts=args.starts, **extra)
        summary["warnings"] = notes + summary["warnings"]
        if args.compare:
            df_b = _near(load_table(args.compare), args, cols, notes)
            labels = tuple(s.strip() for s in args.labels.split(","))
            if len(labels) != 2:
                from analysis.errors import ConfigError
                raise ConfigError(f"--labels: give two names separated by a comma, got {args.labels!r}")
            summary.update(compare_section(df, df_b, args.plots, labels=labels, law=law,
                                           K=args.bootstrap or 200, seed=args.seed, **cols))
            if "error" in summary["compare"]:
                raise ValueError(summary["compare"]["error"])
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    plots_dir = args.plots or args.out
    if plots_dir:
        summary["plots"] = make_plots(objs, plots_dir) + summary.pop("plots_compare", [])
    if args.task:
        summary["tasks"] = task_section(df, args.task, plots_dir, metric=args.task_metric, method=args.task_method,
                                        chance=args.chance, K=args.bootstrap, seed=args.seed, starts=args.starts,
                                        law=law, at=at, at_c=args.at_c, **cols)
        for t in summary["tasks"].values():
            summary.setdefault("plots", []).extend(t.get("plots", []))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "fits.json").write_text(json.dumps(summary, indent=2))
        (out / "fits.md").write_text(to_markdown(summary))
    if args.format == "json":
        print(json.dumps(summary, indent=2))
    else:
        print(to_markdown(summary), end="")
    bad = [t for t, d in summary.get("tasks", {}).items() if "error" in d]
    if args.task and len(bad) == len(args.task):
        print(f"error: {args.table}: no task could be fitted ({'; '.join(f'{t}: ' + summary['tasks'][t]['error'] for t in bad)})",
              file=sys.stderr)
        return 2
    failed = [k for k in ("approach1", "approach2", "approach3") if "error" in summary.get(k, {})]
    if failed and len(failed) == len(approaches):  # nothing was fitted: say why on one line, like a ConfigError
        why = "; ".join(f"{k}: {summary[k]['error']}" for k in failed)
        print(f"error: {args.table}: no approach could be fitted ({why})", file=sys.stderr)
        return 2
    return 0


def _fork_ranks(text: str) -> tuple[int, ...]:
    """``--fork-index`` as a tuple of distinct ranks (one fork, or several cooldowns)."""
    from analysis.errors import ConfigError

    parts = [p.strip() for p in str(text).split(",")]
    try:
        ranks = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"--fork-index {text}: not an integer or a comma list of integers; e.g. 2, or 0,1 "
                          f"(0 = the shortest fork)") from None
    if any(r < 0 for r in ranks):
        raise ConfigError(f"--fork-index {text}: must be >= 0 (0 = the shortest fork)")
    if len(set(ranks)) != len(ranks):
        raise ConfigError(f"--fork-index {text}: a fork is listed twice; list each rank once (e.g. 0,1)")
    return tuple(ranks)


def run_fit_curves(args) -> int:
    from analysis import curves
    from analysis.errors import ConfigError

    try:
        if (args.predict is None) != (args.measured is None):
            raise ConfigError("--predict/--measured: give both (the experiment file to predict and its results "
                              "table with the measured eval_loss) or neither")
        fork_index = _fork_ranks(args.fork_index)
        area_power = curves.check_law(args.law, args.area_power)
        if args.predict is not None:
            rows = curves.predict_experiment(curves._path_ok(args.sweep_dir), args.predict, args.measured,
                                             loss=args.loss, fork_index=fork_index, law=args.law,
                                             difference=args.difference, area_power=area_power)
        else:
            rows = curves.fit_sweep_curves(curves._path_ok(args.sweep_dir), loss=args.loss,
                                           fork_index=fork_index, law=args.law, difference=args.difference,
                                           area_power=area_power)
        if not rows:
            raise ConfigError(f"SWEEP_DIR {args.sweep_dir}: no size has a trunk (or a run) plus >= 2 other finished "
                              f"runs with trajectories; fit-curves predicts a size's other runs from two of them")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps({"predictions": rows, "summary": curves.summarize(rows), "difference": args.difference},
                         indent=2))
    else:
        print(curves.to_markdown(rows), end="")
        if args.difference:
            print("(the fork's points fitted as fork-minus-trunk gaps: --difference)")
    return 0


def run_predict(args) -> int:
    from analysis.data import done_runs, load_table
    from analysis.prediction import parse_points, predict, to_markdown

    try:
        parse_points(args.at)  # before the table is read: a typo'd point costs nothing
        df, _ = done_runs(load_table(args.table))
        if not len(df):
            from analysis.errors import ConfigError
            raise ConfigError(f"state: {args.table} has no run whose state is done; nothing to fit")
        cols = _columns(args, df)
        batch = None
        if {"batch_size", "seq_len"} <= set(df.columns):  # our results table: one batch is the least D
            batch = float((df["batch_size"] * df["seq_len"]).min())
        res = predict(df, args.at, law=resolve_law(args.law), starts=args.starts, K=args.bootstrap, seed=args.seed,
                      level=args.level, min_tokens=batch, **cols)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(res, indent=2))
    else:
        print(to_markdown(res), end="")
    return 0


def main(argv=None) -> int:
    """Stand-alone entry (``python -m analysis.cli fit ...``)."""
    parser = argparse.ArgumentParser(prog="scaling")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
