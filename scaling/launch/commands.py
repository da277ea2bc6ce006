"""``scaling plan | sweep | status``: dry-run a sweep, launch it anywhere, watch it.

* ``scaling plan EXP [--format text|json|csv] [--out DIR]``: the cells EXP expands to with
  every parameter basis, tokens, steps, batch, LR, warmup, FLOPs per convention, planned vs
  achieved FLOPs and an estimated wall time (from runs already in ``--out``, else the device
  peak x an assumed MFU), then the planner's warnings.  Pure: no JAX, no data.
* ``scaling sweep EXP --out DIR [--backend local|slurm|ray] [--workers K]``: plan, write
  ``DIR/cells.jsonl``, start the workers, show progress (cells, FLOPs, ETA), then write
  ``DIR/results.{parquet,csv}``, print where the time went, and write ``DIR/report/``;
  ``--tracker wandb|mlflow`` logs every run and the sweep (:mod:`scaling.trackers`).
  Relaunching the same command skips finished cells and resumes partial ones.
* ``scaling status DIR [--format text|json]``: per-cell state table.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
from pathlib import Path

from scaling.config import ConfigError

PLAN_TEXT_COLS = ("run_id", "group", "shape", "n_total", "n_non_embedding", "n_embedding", "tokens", "steps",
                  "batch_size", "peak_lr", "warmup_steps", "budget", "flops_achieved", "tokens_per_param",
                  "est_wall_s")


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,d}" if abs(v) < 1e7 else f"{v:.3g}"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.3g}"
    return str(v)


def _table(rows: list[dict], cols) -> str:
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(x[i]) for x in cells]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(x.ljust(w) for x, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _hms(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "?"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _settings(args):
    """The settings the ``scaling`` entry point read (a caller building its own args: read them now)."""
    from scaling.settings import Settings

    return getattr(args, "settings", None) or Settings.from_environ()


# ------------------------------------------------------------------------------ plan
def plan_sweep(sw, *, out_dir=None, settings=None, target: str | None = None, auto_fit: bool = True,
               only: str | None = None, all_programs: bool = False, estimate: bool = True, quiet: bool = False,
               hbm_gib: float | None = None):
    """The sweep's plan; with ``target`` (e.g. ``v5p-128``) resolved for it, AOT-compiled shape by
    shape and auto-fitted (:mod:`scaling.aot`), its rows carrying the target's columns."""
    import dataclasses
    import re

    from scaling import sweep as sweep_mod

    if only is not None:
        try:
            re.compile(only)
        except re.error as e:
            raise ConfigError(f"--only {only!r}: not a regular expression ({e}); e.g. --only 'N1e5' or "
                              f"--only '^quickstart-C2'") from None
    if target is None:
        return sweep_mod.plan(sw, out_dir=out_dir, estimate=estimate, settings=settings)
    from scaling import aot
    from scaling.targets import parse_target

    t = parse_target(target)
    if hbm_gib is not None:
        if not hbm_gib > 0:
            raise ConfigError(f"--hbm-gib {hbm_gib}: must be a positive number of GiB per chip")
        t = dataclasses.replace(t, hbm_override=hbm_gib * 2**30)
    p = sweep_mod.plan(sw, estimate=False, settings=settings, backend=t.backend)
    # Compile for the target's topology; this process's own backend stays CPU.  Set before JAX starts
    # a backend: with the GPU compiler installed on a host without a GPU, JAX would otherwise try (and
    # fail) to open CUDA, and then cannot build the GPU topology either.  Only this process's JAX
    # config, never the environment: `scaling sweep --target` starts workers that must see the devices.
    import jax

    jax.config.update("jax_platforms", "cpu")
    say = None if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    t0 = time.time()
    cells, rows, _ = aot.plan_for_target(p.cells, p.rows, t, auto_fit=auto_fit, only=only,
                                         all_programs=all_programs, progress=say)
    if say:
        say(f"AOT plan for {t.name}: {time.time() - t0:.0f} s")
    return dataclasses.replace(p, cells=tuple(cells), rows=tuple(rows))


def cmd_plan(args) -> int:
    from scaling import sweep as sweep_mod

    if args.out is not None and not Path(args.out).is_dir():
        raise ConfigError(f"--out {args.out}: not a sweep directory; pass the --out of an earlier `scaling sweep` "
                          f"(its finished runs calibrate the wall-time estimate), or leave --out out")
    sw = sweep_mod.load_sweep(args.experiment)
    target = getattr(args, "target", None)
    p = plan_sweep(sw, out_dir=args.out, settings=_settings(args), target=target,
                   auto_fit=not getattr(args, "no_auto_fit", False), only=getattr(args, "only", None),
                   all_programs=getattr(args, "all_programs", False), hbm_gib=getattr(args, "hbm_gib", None))
    rows = list(p.rows)
    bad = [r for r in rows if r.get("target") and not r.get("fits")]
    if args.format == "json":
        doc = {"sweep": sw.name, "cells": rows, "warnings": list(p.warnings)}
        if p.savings:
            doc["savings"] = p.savings
        if target:
            from scaling import aot

            on = [r for r in rows if r.get("target")]
            doc["target"] = {"name": target, "fits": not bad, "est_wall_s": aot.total_time(rows),
                             "memory_source": sorted({r["memory_source"] for r in on}),
                             "step_model": sorted({r["step_model"] for r in on}),
                             "usable_gib_per_chip": on[0]["usable_gib_per_chip"] if on else None,
                             "reserve_gib_per_chip": on[0]["reserve_gib_per_chip"] if on else None}
        print(json.dumps(doc, indent=1, default=str))
    elif args.format == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
        sys.stdout.write(buf.getvalue())
    else:
        cols = PLAN_TEXT_COLS + (("fork_step", "flops_trained") if p.savings else ())
        cols += ("hbm_gib_per_chip", "fits", "remat", "grad_accum", "fit") if target else ()
        shown = rows
        if any(r.get("prediction") for r in rows):  # a Ladder rung: the number it is committing to
            cols += ("predicted_loss", "predicted_pi")
            shown = [dict(r, predicted_loss=f"{r['prediction']['loss']:.4f}",
                          predicted_pi=f"[{r['prediction']['pi'][0]:.4f}, {r['prediction']['pi'][1]:.4f}]")
                     if r.get("prediction") else r for r in rows]
        print(_table(shown, cols))
        if target:
            print(f"\n{len(rows)} cells, {p.total_flops:.3g} FLOPs ({sw.recipe.flops_convention})")
        else:
            rate, src = sweep_mod.throughput_estimate(args.out, _settings(args))
            est = sum(r["est_wall_s"] or 0 for r in rows) if rate else None
            print(f"\n{len(rows)} cells, {p.total_flops:.3g} FLOPs ({sw.recipe.flops_convention}); "
                  f"estimated {_hms(est)} of compute at {rate or 0:.3g} FLOP/s ({src})")
        if p.savings:
            sv = p.savings
            print(f"WSD forks: {sv['flops']:.3g} FLOPs planned vs {sv['flops_independent']:.3g} for the same horizons "
                  f"as independent runs ({100 * sv['flops'] / sv['flops_independent']:.0f}%)")
        if target:
            from scaling import aot

            print(f"\non {target}:\n" + aot.shape_table(rows))
            n = sum(1 for r in rows if r.get("target"))
            on = [r for r in rows if r.get("target")]
            sources = "/".join(sorted({r["memory_source"] for r in on}))
            print(f"{n - len(bad)}/{n} cells fit (memory {sources}); estimated accelerator time of the sweep "
                  f"{aot.hours(aot.total_time(rows))} ({'/'.join(sorted({r['step_model'] for r in on}))})")
    for w in p.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if target and bad and getattr(args, "require_fit", False):
        worst = max(bad, key=lambda r: r["hbm_gib_per_chip"])
        print(f"error: {len(bad)} cell(s) do not fit {target}, e.g. {worst['run_id']} needs "
              f"{worst['hbm_gib_per_chip']:.1f} GiB per chip{'' if not worst.get('target_error') else ' (' + worst['target_error'] + ')'}; "
              f"plan with auto-fit (no --no-auto-fit), a larger target, or smaller cells", file=sys.stderr)
        return 3
    return 0


# ------------------------------------------------------------------------------ status
def status_rows(out, settings=None) -> list[dict]:
    from scaling import rundir
    from scaling.launch import state

    stale_s = settings.lock_stale_s if settings else state.DEFAULT_STALE_S
    out = Path(out)
    ids = [c.run_id for c in state.read_cells(out)]
    known = set(ids)
    ids += [rd.name for rd in rundir.sweep_runs(out) if rd.name not in known]
    rows = []
    for rid in ids:
        d = state.run_dir(out, rid)
        st = state.cell_state(d, stale_s=stale_s)
        row = {"run_id": rid, "state": st}
        if st == "planned" and d.has_checkpoints():
            row["state"] = "partial"
        s = d.read_summary()
        if s is not None:
            row.update(steps=s.get("steps"), eval_loss=s.get("final_eval_loss"), wall_s=s.get("wall_s"))
        if st == "failed":
            row["error"] = ((d.failure() or "").strip().splitlines() or [""])[-1][:120]
        rows.append(row)
    return rows


def cmd_status(args) -> int:
    out = Path(args.dir)
    if not out.is_dir():
        raise ConfigError(f"status {args.dir}: no such sweep directory; pass the --out of `scaling sweep`")
    from scaling import rundir
    from scaling.launch import state

    if not (out / state.CELLS).exists() and not any(True for _ in rundir.sweep_runs(out)):
        hint = (" (it is a run directory: see its summary.json, or `scaling train --out` it again)"
                if (out / rundir.CONFIG).exists() else "")
        raise ConfigError(f"status {args.dir}: not a sweep directory (no cells.jsonl, no runs/){hint}; "
                          f"pass the --out of `scaling sweep`")
    rows = status_rows(out, _settings(args))
    if args.format == "json":
        print(json.dumps(rows, indent=1, default=str))
        return 0
    print(_table(rows, ("run_id", "state", "steps", "eval_loss", "wall_s", "error")))
    counts = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    print("\n" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    return 0


# ------------------------------------------------------------------------------ sweep
def default_workers(n_cells: int) -> int:
    """``--workers`` default: on a CPU-only machine one worker per core (at most 8, at most one
    per cell) since tiny models use one core well; with a GPU/TPU visible, one worker."""
    from scaling.settings import is_cpu

    if not is_cpu():
        return 1
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(ncpu, 8, n_cells))


def progress(out, cells, flops: dict, stale_s: float) -> tuple[int, float, dict]:
    from scaling.launch import state

    done, fdone, counts = 0, 0.0, {}
    for c in cells:
        st = state.cell_state(state.run_dir(out, c.run_id), stale_s=stale_s)
        counts[st] = counts.get(st, 0) + 1
        if st in ("done", "diverged"):
            done += 1
            fdone += flops[c.run_id]
    return done, fdone, counts


def prepare_data(out: Path, settings) -> float:
    """Prepare every dataset, vocabulary and token cache the sweep reads, once, before any worker
    starts (so K workers, array tasks or Ray tasks never race to build them and no cell is billed
    for it); in a child process, so the launcher never imports TensorFlow.  Returns its seconds.
    On a cluster the data directory must be shared, like the sweep directory."""
    import subprocess

    from scaling.launch.local import worker_environ

    t0 = time.time()
    with open(out / "prepare.log", "ab") as log:
        rc = subprocess.call([sys.executable, "-m", "scaling.launch.worker", str(out), "--prepare"],
                             env=worker_environ(settings), stdout=log, stderr=subprocess.STDOUT)
    if rc == 2:  # bad input found once the data existed (a task item too long for a trained vocabulary)
        lines = [ln for ln in (out / "prepare.log").read_text(errors="replace").splitlines() if ln.startswith("error: ")]
        raise ConfigError(lines[-1][len("error: "):] if lines else f"data preparation refused the sweep (see {out}/prepare.log)")
    if rc != 0:
        print(f"warning: data preparation failed (see {out}/prepare.log); each worker will prepare its own",
              file=sys.stderr)
    return time.time() - t0


def run_sweep(experiment, out, *, backend: str = "local", workers: int | None = None, address: str | None = None,
              report: bool = True, retry_failed: bool = True, poll_s: float = 1.0, quiet: bool = False,
              settings=None, train_fn: str | None = None, target: str | None = None, auto_fit: bool = True,
              eval_tasks=()) -> dict:
    """Plan ``experiment`` (a path or a Sweep), train every cell on ``backend``, build results.

    ``settings``: the entry point's (default: read from the environment now); the workers get
    them.  ``train_fn``: ``"module:function"`` trained instead of :func:`scaling.train.train`
    (tests).  ``target`` (e.g. ``v5p-128``): plan for it first (AOT compile, auto-fit) and
    refuse to launch, naming the HBM it needs, if any cell does not fit.  ``eval_tasks``: downstream tasks
    (``"NAME=PATH"`` or a built-in name) scored in every cell besides the recipe's own.  Returns ``{"plan", "results" (DataFrame), "states", "breakdown", "report",
    "errors"}``.  Raises ConfigError for a malformed experiment before any worker starts.
    """
    from scaling import results as results_mod
    from scaling import sweep as sweep_mod
    from scaling import trackers
    from scaling.launch import state
    from scaling.launch.backend import make_backend
    from scaling.settings import Settings

    settings = settings or Settings.from_environ()
    trackers.require(settings.trackers)  # before planning: a missing extra must not cost a sweep
    stale_s = settings.lock_stale_s
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"--workers {workers}: must be a whole number >= 1 (or leave it out: one worker per "
                          f"core on CPU, 1 with an accelerator)")
    from scaling.rundir import check_out_dir

    check_out_dir(out, "--out", create=False)  # nothing is written before the experiment is known to be valid

    t_start = time.time()
    sw = sweep_mod.load_sweep(experiment) if not isinstance(experiment, sweep_mod.Sweep) else experiment
    if eval_tasks:
        import dataclasses

        sw = dataclasses.replace(sw, recipe=dataclasses.replace(
            sw.recipe, eval_tasks=tuple(sw.recipe.eval_tasks) + tuple(eval_tasks)))
    if sw.recipe.eval_tasks:  # every task file read and checked before anything is written
        from scaling.evaltasks import normalize, precheck

        precheck(normalize(sw.recipe.eval_tasks), settings.resolve_data(sw.recipe.data), sw.recipe.seq_len)
    out = Path(out)
    p = plan_sweep(sw, out_dir=out if out.exists() else None, estimate=False, settings=settings, target=target,
                   auto_fit=auto_fit, quiet=quiet)
    bad = [r for r in p.rows if r.get("target") and not r.get("fits")]
    if bad:
        worst = max(bad, key=lambda r: r["hbm_gib_per_chip"])
        raise ConfigError(f"--target {target}: {len(bad)} cell(s) do not fit, e.g. {worst['run_id']} needs "
                          f"{worst['hbm_gib_per_chip']:.1f} GiB per chip; see `scaling plan EXP --target {target}`")
    for w in p.warnings:
        print(f"warning: {w}", file=sys.stderr)
    check_out_dir(out, "--out")  # created here, after planning: a plan error leaves no directory behind
    state.write_cells(out, p.cells, p.rows)
    from scaling import rundir

    for row in p.rows:  # a Ladder rung's prediction is on disk before any worker starts (never rewritten)
        if row.get("prediction"):
            rundir.in_sweep(out, row["run_id"]).write_prediction(row["prediction"])
    flops = {r["run_id"]: r["flops_trained"] for r in p.rows}  # progress counts what cells themselves train
    total_f = sum(flops.values())
    n = len(p.cells)
    done0, f0, _ = progress(out, p.cells, flops, stale_s)
    if workers is None:
        workers = default_workers(n - done0) if backend == "local" else 1
    be = make_backend(backend, out, workers, settings, address=address, retry_failed=retry_failed, train_fn=train_fn)
    tty = sys.stderr.isatty()
    last_line, last_print = "", 0.0
    errors: list[str] = []
    prepare_s = 0.0
    if done0 < n:
        if train_fn is None:
            prepare_s = prepare_data(out, settings)
        be.start()
        try:
            while True:
                alive = be.poll()
                done, fdone, counts = progress(out, p.cells, flops, stale_s)
                el = time.time() - t_start
                rate = (fdone - f0) / el if fdone > f0 else 0.0
                eta = (total_f - fdone) / rate if rate > 0 else None
                width = 24
                fill = int(width * done / max(n, 1))
                line = (f"[{'#' * fill}{'.' * (width - fill)}] cells {done}/{n}  FLOPs {fdone:.3g}/{total_f:.3g} "
                        f"({100 * fdone / max(total_f, 1e-30):.0f}%)  elapsed {_hms(el)}  ETA {_hms(eta)}"
                        + (f"  failed {counts['failed']}" if counts.get("failed") else ""))
                key = (done, counts.get("failed", 0))
                if not quiet and tty:
                    print("\r" + line, end="", file=sys.stderr, flush=True)
                elif not quiet and (key != last_line or time.time() - last_print > 30):
                    print(line, file=sys.stderr, flush=True)  # logs: on progress or every 30 s
                    last_line, last_print = key, time.time()
                if not alive:
                    break
                time.sleep(poll_s)
        finally:
            errors = be.errors()
            be.stop()
        if tty and not quiet:
            print(file=sys.stderr)
    _, _, counts = progress(out, p.cells, flops, stale_s)
    ids = [c.run_id for c in p.cells]
    df = results_mod.write_table(out, run_ids=ids)
    summaries = [s for s in results_mod.read_summaries(out) if s.get("run_id") in set(ids)]
    tot = results_mod.timing_breakdown(summaries)
    tot["startup"] += prepare_s  # data preparation, once, before any worker
    for k, v in be.overhead().items():
        tot[k] = tot.get(k, 0.0) + v
    wall = time.time() - t_start
    if not quiet:
        print(f"{len(df)} of {n} cells finished -> {out / 'results.parquet'}; states: "
              + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        print(results_mod.format_breakdown(tot, wall))
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
    rep = None
    done_df = df[df["state"] == "done"] if len(df) else df
    if report and len(done_df):
        try:
            from analysis.report import write_report

            # the whole table: the report fits the done runs and lists the diverged ones it excluded
            rep = write_report(df, out / "report", **sw.report_columns())
            if not quiet:
                print(f"report -> {out / 'report'}")
        except Exception as e:  # noqa: BLE001 - a fit failure must not lose the trained sweep
            import traceback

            errors.append(f"report: {type(e).__name__}: {e}")
            print(f"error: report failed: {e}\n{traceback.format_exc()}", file=sys.stderr)
    if settings.trackers and len(df):
        try:
            trackers.log_sweep(settings.trackers, out, table=df, report=out / "report")
        except Exception as e:  # noqa: BLE001 - the sweep is on disk; the tracker copy is extra
            errors.append(f"trackers: {type(e).__name__}: {e}")
            print(f"error: logging the sweep to {settings.trackers} failed: {e}", file=sys.stderr)
    return {"plan": p, "results": df, "states": counts, "breakdown": tot, "report": rep, "errors": errors,
            "wall_s": wall}


def cmd_sweep(args) -> int:
    settings = _settings(args).with_trackers(getattr(args, "tracker", None))  # the workers get them too
    res = run_sweep(args.experiment, args.out, backend=args.backend, workers=args.workers, address=args.address,
                    report=not args.no_report, retry_failed=not args.no_retry_failed, settings=settings,
                    target=args.target, auto_fit=not args.no_auto_fit, eval_tasks=tuple(args.eval_task))
    st = res["states"]
    return 0 if st.get("done", 0) + st.get("diverged", 0) == len(res["plan"].cells) and not res["errors"] else 1


def _target_flags(p) -> None:
    p.add_argument("--target", help="plan for an accelerator, AOT-compiled on this host: v4-N, v5p-N, v5litepod-N, "
                                    "v6e-N (libtpu) or a100-80gb-xN, h100-xN, h200-xN (XLA:GPU deviceless)")
    p.add_argument("--no-auto-fit", action="store_true", help="report cells that do not fit instead of refitting them")
    p.add_argument("--only", metavar="REGEX", help="compile only cells whose run id matches")
    p.add_argument("--hbm-gib", type=float, help="plan against this much HBM per chip instead of the chip's (headroom)")
    p.add_argument("--all-programs", action="store_true",
                   help="compile init and eval for every shape (default: the train step, and all three for the largest)")


def backend_names() -> tuple:
    from scaling.launch.backend import NAMES

    return NAMES


def add_commands(sub) -> None:
    p = sub.add_parser("plan", help="dry-run a sweep: cells, parameter bases, tokens, FLOPs, wall-time estimate")
    p.add_argument("experiment", help="an experiment file, e.g. experiments/quickstart.py")
    p.add_argument("--format", choices=("text", "json", "csv"), default="text")
    p.add_argument("--out", help="a sweep directory whose finished runs calibrate the wall-time estimate")
    _target_flags(p)
    p.add_argument("--require-fit", action="store_true", help="exit 3 unless every cell fits the target")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("sweep", help="train every cell of a sweep (resumable), then results table and report")
    p.add_argument("experiment", help="an experiment file, e.g. experiments/quickstart.py")
    p.add_argument("--out", required=True, help="the sweep directory (runs/, results.*, report/)")
    p.add_argument("--backend", choices=backend_names(), default="local")
    p.add_argument("--workers", type=int, default=None,
                   help="parallel workers: local processes, SLURM array tasks, Ray tasks (default: local on CPU, "
                        "one per core up to 8; with a GPU/TPU, 1; slurm/ray: 1)")
    p.add_argument("--address", help="Ray cluster address (ray backend; default: start a local Ray)")
    p.add_argument("--no-report", action="store_true", help="skip analysis.report at the end")
    p.add_argument("--no-retry-failed", action="store_true", help="leave FAILED cells alone on relaunch")
    p.add_argument("--target", help="plan for this accelerator first (see `scaling plan --target`); refuse cells "
                                    "that do not fit")
    p.add_argument("--no-auto-fit", action="store_true", help="with --target: do not refit cells that do not fit")
    from scaling.cli import add_eval_task_flag, add_tracker_flag

    add_eval_task_flag(p)
    add_tracker_flag(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("status", help="per-cell state of a sweep directory")
    p.add_argument("dir")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_status)
