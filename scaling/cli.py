"""The ``scaling`` console script.

One entry point, one sub-command per job, each a thin layer over a library function so that
notebooks and scripts can do the same without the shell:

* ``scaling train``  one cell into one run directory (:func:`scaling.train.train`;
  ``--tracker wandb|mlflow`` also logs it there, :mod:`scaling.trackers`);
* ``scaling count``  parameter bases and FLOPs per token (:mod:`scaling.accounting`);
* ``scaling make-task``  a multiple-choice task file from a corpus (:mod:`scaling.evaltasks`);
* ``scaling plan | sweep | status``  sweeps (:mod:`scaling.launch.commands`);
* ``scaling fit``  Chinchilla Approaches 1-3 on any table (:mod:`analysis.cli`);
* ``scaling fit-hp``  learning-rate (and batch) laws on an HP sweep's table (:mod:`analysis.hp`).

Heavy libraries (JAX, TensorFlow) are imported inside the commands that need them, so
``scaling fit`` and ``scaling plan`` start in well under a second.  Configuration mistakes
are reported as one line (``error: <field>: <fix>``) with exit status 2, before any compute.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from scaling.config import (ATTENTIONS, DTYPES, PARAMETRIZATIONS, REMATS, Cell, ConfigError, DataConfig, MeshConfig,
                            ModelConfig, OptimConfig, cell_from_json)

SHAPE_FLAGS = ("d_model", "n_layers", "n_heads", "kv_size", "ffw_size")
# Model fields settable by flag besides the shape (None = not given: the config's default).
MODEL_OPTION_FLAGS = ("norm", "position", "activation", "compute_dtype", "scan_layers", "remat", "attention",
                     "parametrization", "base_width", "base_depth", "base_kv_size")


def _add_shape_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model shape (a family member, or explicit shape flags)")
    g.add_argument("--member", help="a family member, e.g. from `scaling.families.list_members()`")
    for f in SHAPE_FLAGS:
        g.add_argument("--" + f.replace("_", "-"), dest=f, type=int,
                       help={"kv_size": "head dim (default d_model / n_heads)",
                             "ffw_size": "MLP width (default 4 * d_model)"}.get(f))
    g.add_argument("--norm", choices=("rmsnorm", "layernorm"))
    g.add_argument("--position", choices=("rope", "learned"))
    g.add_argument("--activation", choices=("gelu", "swiglu", "relu"))
    g.add_argument("--dtype", dest="compute_dtype", choices=DTYPES,
                   help="matmul input dtype (f32 params and accumulation either way); default: per backend "
                        "(ModelConfig.for_backend: bf16 on GPU/TPU)")
    g.add_argument("--parametrization", choices=PARAMETRIZATIONS,
                   help="standard (default) | mup | completep: init, multipliers and per-parameter Adam "
                        "settings scaled from a base shape (docs: hyperparameters)")
    g.add_argument("--base-width", dest="base_width", type=int, help="d_model of the base shape (mup, completep)")
    g.add_argument("--base-depth", dest="base_depth", type=int, help="n_layers of the base shape (completep)")
    g.add_argument("--base-kv-size", dest="base_kv_size", type=int,
                   help="head size of the base shape (default: kv_size * base_width / d_model)")
    g = p.add_argument_group("model execution (same numbers, different speed/memory; default: per backend)")
    g.add_argument("--scan-layers", dest="scan_layers", action=argparse.BooleanOptionalAction, default=None,
                   help="layers as one scanned block (compile time independent of depth); default: on GPU/TPU")
    g.add_argument("--remat", choices=REMATS,
                   help="rematerialisation: none | dots (keep matmul outputs) | full (keep block inputs)")
    g.add_argument("--attention", choices=ATTENTIONS,
                   help="einsum (reference) | dot_product (XLA) | cudnn (GPU) | flash (TPU); default per backend")


def _model_from_args(args, *, vocab_size: int, seq_len: int, tied: bool) -> ModelConfig:
    """Build a ModelConfig from ``--member`` or the explicit shape flags (not both)."""
    given = {f: getattr(args, f) for f in SHAPE_FLAGS if getattr(args, f) is not None}
    extra = {k: getattr(args, k) for k in MODEL_OPTION_FLAGS if getattr(args, k, None) is not None}
    if args.member:
        from scaling import families

        return families.member_config(args.member, vocab_size=vocab_size, seq_len=seq_len,
                                      tied_embeddings=tied, **given, **extra).validate()
    if "kv_size" not in given and "d_model" in given and "n_heads" in given:
        if given["d_model"] % given["n_heads"]:
            raise ConfigError(f"--d-model {given['d_model']} is not divisible by --n-heads {given['n_heads']}; "
                              f"pick n_heads dividing d_model, or give --kv-size explicitly")
        given["kv_size"] = given["d_model"] // given["n_heads"]
    if "ffw_size" not in given and "d_model" in given:
        given["ffw_size"] = 4 * given["d_model"]
    missing = [f for f in SHAPE_FLAGS if f not in given]
    if missing:
        flags = ", ".join("--" + m.replace("_", "-") for m in missing)
        raise ConfigError(f"model shape: missing {flags}; give all shape flags or --member NAME")
    return ModelConfig(vocab_size=vocab_size, seq_len=seq_len, tied_embeddings=tied,
                       **given, **extra).validate()


# ------------------------------------------------------------------------------ train
def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train one cell into a run directory (resumes; no-op if finished)",
                       description="Train one cell. Re-running the same command resumes from the latest "
                                   "checkpoint, or does nothing if the run finished.")
    p.add_argument("--out", required=True, help="the run directory")
    p.add_argument("--config", help="a cell JSON (e.g. a run's config.json); flags below override it")
    _add_shape_flags(p)
    p.add_argument("--tokens", type=int, help="training tokens (rounded down to whole batches)")
    p.add_argument("--batch", type=int, help="global batch size in sequences")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--warmup", type=int, help="warmup steps")
    p.add_argument("--schedule", choices=("cosine", "wsd", "constant"))
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--task", help="data task: pystdlib | synthetic_markov | c4_en | text | tfds:NAME | seqio:NAME")
    p.add_argument("--vocab", help="byte | spN (e.g. sp1024) | hf-bpe:N | path to a tokenizer.json or SentencePiece .model")
    from scaling.data import cli as data_cli

    data_cli.add_source_flags(p)
    p.add_argument("--repeat", action="store_true", default=None,
                   help="allow more tokens than the train split holds (epochs are logged)")
    p.add_argument("--seq-len", type=int)
    p.add_argument("--untied", action="store_true", help="untied input embedding and output head")
    p.add_argument("--mesh", help="e.g. data=2,fsdp=4,tensor=1 (one axis may be -1)")
    p.add_argument("--seed", type=int)
    p.add_argument("--grad-accum", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--eval-batches", type=int)
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--name", help="readable run name (the run id adds a hash)")
    add_eval_task_flag(p)
    p.add_argument("--task-every", type=int, metavar="STEPS",
                   help="also score the --eval-task tasks every STEPS steps (a multiple of --eval-every; "
                        "default: only at the end)")
    add_tracker_flag(p)
    p.set_defaults(func=cmd_train)


def add_eval_task_flag(p: argparse.ArgumentParser) -> None:
    """``--eval-task NAME=PATH`` (repeatable), shared by ``scaling train`` and ``scaling sweep``."""
    from scaling.evaltasks import BUILTINS

    p.add_argument("--eval-task", action="append", default=[], metavar="NAME=PATH", dest="eval_task",
                   help="a multiple-choice task scored at the end (JSONL lines {context, choices, gold}; "
                        f"repeatable; a built-in by NAME alone: {', '.join(BUILTINS)}); not part of the run id "
                        "(docs: tasks)")


def add_tracker_flag(p: argparse.ArgumentParser) -> None:
    """``--tracker NAME`` (repeatable), shared by ``scaling train`` and ``scaling sweep``."""
    from scaling.trackers import NAMES

    p.add_argument("--tracker", action="append", choices=NAMES, default=[], metavar="NAME",
                   help="also log to wandb or mlflow (repeatable; TensorBoard is always written; "
                        "extras: pip install 'scaling[wandb]' / 'scaling[mlflow]'); not part of the run id")


def build_cell(args) -> Cell:
    """The cell a ``scaling train`` command line describes (``--config`` first, flags on top)."""
    base: Cell | None = None
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise ConfigError(f"--config {args.config}: no such file; pass a cell JSON such as a run's config.json")
        try:
            base = cell_from_json(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"--config {args.config}: not valid JSON (line {e.lineno}, column {e.colno}: "
                              f"{e.msg}); pass a cell JSON such as a run's config.json") from None
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ConfigError(f"--config {args.config}: not a cell JSON ({type(e).__name__}: {e}); pass a cell "
                              f"JSON such as a run's config.json (it needs model, tokens and batch_size)") from None

    data = base.data if base else DataConfig()
    data_kw = {k: v for k, v in (("task", args.task), ("vocab", args.vocab), ("repeat", args.repeat))
               if v is not None}
    data = dataclasses.replace(data, **data_kw)
    from scaling.data import cli as data_cli

    data = data_cli.apply_source_flags(data, args, base_task=base.data.task if base else None)

    shape_given = args.member or any(getattr(args, f) is not None for f in SHAPE_FLAGS)
    if base is not None and not shape_given:
        model = base.model
        if args.seq_len is not None:
            model = dataclasses.replace(model, seq_len=args.seq_len)
        options = {k: getattr(args, k) for k in MODEL_OPTION_FLAGS if getattr(args, k, None) is not None}
        model = dataclasses.replace(model, **options).validate()
    else:
        if args.seq_len is None:
            raise ConfigError("--seq-len: required (the training sequence length, e.g. 256)")
        from scaling import data as data_mod

        model = _model_from_args(args, vocab_size=data_mod.vocab_size(data), seq_len=args.seq_len,
                                 tied=not args.untied)

    optim = base.optim if base else OptimConfig()
    optim_kw = {k: v for k, v in (("peak_lr", args.lr), ("warmup_steps", args.warmup),
                                  ("schedule", args.schedule), ("weight_decay", args.weight_decay))
                if v is not None}
    optim = dataclasses.replace(optim, **optim_kw)

    if base is None:
        for flag in ("tokens", "batch"):
            if getattr(args, flag) is None:
                raise ConfigError(f"--{flag}: required (or pass --config with a cell JSON)")
        base = Cell(model=model, tokens=args.tokens, batch_size=args.batch)
    kw = dict(model=model, optim=optim, data=data)
    for attr, field in (("tokens", "tokens"), ("batch", "batch_size"), ("seed", "seed"),
                        ("grad_accum", "grad_accum"), ("eval_every", "eval_every"),
                        ("eval_batches", "eval_batches"), ("checkpoint_every", "checkpoint_every"),
                        ("task_every", "task_every"), ("name", "name")):
        if getattr(args, attr) is not None:
            kw[field] = getattr(args, attr)
    if args.mesh is not None:
        kw["mesh"] = MeshConfig.parse(args.mesh)
    if getattr(args, "eval_task", None):
        from scaling.evaltasks import normalize

        kw["eval_tasks"] = normalize(tuple(base.eval_tasks) + tuple(args.eval_task))
    if "name" not in kw and base.name == "run":
        kw["name"] = model.name or f"d{model.d_model}-l{model.n_layers}"
    return dataclasses.replace(base, **kw).validate()


def cmd_train(args) -> int:
    from scaling import trackers
    from scaling.rundir import check_out_dir

    args.settings = args.settings.with_trackers(args.tracker)
    trackers.require(args.settings.trackers)  # a missing extra: one line, before the cell is built
    cell = build_cell(args)
    if cell.eval_tasks:  # task files read and checked before anything is written or compiled
        from scaling.evaltasks import precheck

        precheck(cell.eval_tasks, args.settings.resolve_data(cell.data), cell.model.seq_len)
    check_out_dir(args.out, "--out")
    from scaling import train as train_mod
    from scaling.programs import backend_name

    # a model left at compute_dtype 'default' computes in bf16 on an accelerator (float32 on CPU)
    cell = dataclasses.replace(cell, model=cell.model.for_backend(backend_name()))
    summary = train_mod.train(cell, args.out, settings=args.settings)
    keys = ("run_id", "state", "steps", "tokens_seen", "final_eval_loss", "final_eval_bpb",
            "tokens_per_s", "mfu", "wall_s")
    print(json.dumps({k: summary.get(k) for k in keys}, indent=2))
    return 0 if summary.get("state") == "done" else 3


# ------------------------------------------------------------------------------ count
def _count_parser(sub) -> None:
    p = sub.add_parser("count", help="parameter bases and FLOPs per token of a model shape")
    _add_shape_flags(p)
    p.add_argument("--vocab", type=int, required=True, help="vocabulary size, e.g. 32000")
    p.add_argument("--seq-len", type=int, required=True)
    p.add_argument("--tied-embeddings", action="store_true", help="output head shares the input embedding")
    p.add_argument("--relative-position-projection", action="store_true",
                   help="count one d_model x (heads*kv) relative-position projection per layer (Chinchilla)")
    p.add_argument("--format", choices=("json", "text"), default="text")
    p.set_defaults(func=cmd_count)


def cmd_count(args) -> int:
    from scaling import accounting

    cfg = _model_from_args(args, vocab_size=args.vocab, seq_len=args.seq_len, tied=args.tied_embeddings)
    kw = {"relative_position_projection": args.relative_position_projection}
    counts = accounting.count_params(cfg, **kw).as_dict()
    flops = accounting.flops_per_token_all(cfg, **kw)
    out = {"params": {k: counts[k] for k in ("total", "non_embedding", "embedding", "head")},
           "tied": cfg.tied_embeddings,
           "flops_per_token": flops}
    if args.format == "json":
        print(json.dumps(out, indent=2))
    else:
        for k, v in out["params"].items():
            print(f"params.{k:<15} {v:>18,d}")
        print(f"tied               {cfg.tied_embeddings}")
        for k, v in flops.items():
            print(f"flops_per_token.{k:<20} {v:>14.6g}")
    return 0


# ------------------------------------------------------------------------------ make-task
def _make_task_parser(sub) -> None:
    from scaling.evaltasks import BUILTINS

    b = BUILTINS["pystdlib_nextline"]
    p = sub.add_parser("make-task", help="build a 'which line comes next' multiple-choice task file from a corpus",
                       description="Write a JSONL task ({context, choices, gold} per line) for --eval-task: each item "
                                   "is a line of a document, its preceding lines as context, and distractor lines of "
                                   "the same length from other documents. Same arguments, same file.")
    p.add_argument("corpus", help="'pystdlib' (its held-out files), or a file, directory or glob of text "
                                  "(.txt/.md, .jsonl with a text field, .parquet, or any UTF-8 text such as code)")
    p.add_argument("--out", required=True, help="the task file to write (.jsonl)")
    p.add_argument("--n-items", type=int, default=b.n_items, help=f"items (default {b.n_items})")
    p.add_argument("--n-choices", type=int, default=b.n_choices, help=f"choices per item (default {b.n_choices})")
    p.add_argument("--seed", type=int, default=b.seed, help=f"sampling seed (default {b.seed})")
    p.add_argument("--context-bytes", type=int, default=b.context_bytes,
                   help=f"most UTF-8 bytes of context (whole preceding lines; default {b.context_bytes})")
    p.add_argument("--text-field", default="text", help="the field holding the text in .jsonl/.parquet files")
    p.add_argument("--min-choice-bytes", type=int, default=b.min_choice_bytes)
    p.add_argument("--max-choice-bytes", type=int, default=b.max_choice_bytes)
    p.set_defaults(func=cmd_make_task)


def cmd_make_task(args) -> int:
    import hashlib

    from scaling import evaltasks

    if args.context_bytes < 1:
        raise ConfigError(f"--context-bytes {args.context_bytes}: must be >= 1")
    out = Path(args.out)
    if out.is_dir():
        raise ConfigError(f"--out {args.out}: is a directory; name the task file to write, e.g. task.jsonl")
    docs = evaltasks.corpus_docs(args.corpus, args.text_field)
    items = evaltasks.make_items(docs, n_items=args.n_items, n_choices=args.n_choices, seed=args.seed,
                                 context_bytes=args.context_bytes, min_choice_bytes=args.min_choice_bytes,
                                 max_choice_bytes=args.max_choice_bytes)
    text = evaltasks.items_jsonl(items)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"--out {args.out}: cannot write ({e.strerror or e}); choose a writable path") from None
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    print(f"{len(items)} items x {args.n_choices} choices from {len(docs)} documents -> {out} (sha {sha[:12]}); "
          f"use: --eval-task NAME={out}")
    return 0


# ------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scaling", description=__doc__.split("\n\n")[0],
                                     epilog="--debug (anywhere): print the traceback behind an error line")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _count_parser(sub)
    _make_task_parser(sub)
    from scaling.launch import commands as launch_commands

    launch_commands.add_commands(sub)
    from scaling.data import cli as data_cli

    data_cli.add_commands(sub)
    from analysis import cli as analysis_cli

    analysis_cli.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; a ConfigError is one line on stderr and exit status 2.

    ``--debug`` (anywhere on the command line) adds the traceback behind that line, e.g. of
    the experiment file's own error.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    from scaling.settings import Settings

    try:
        args.settings = Settings.from_environ()  # read once, here, and handed to the command
        return int(args.func(args) or 0)
    except ConfigError as e:
        if debug:
            import traceback

            traceback.print_exception(e.__cause__ or e, file=sys.stderr)
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
