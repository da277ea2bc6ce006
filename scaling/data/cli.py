"""``scaling prepare`` and the data-source flags ``scaling train`` shares with it.

``scaling prepare --task T [--data GLOB ...] --vocab V`` tokenizes and caches both splits
without training (progress on stderr: documents, MB, tokens/s; then a summary), so a sweep's
workers, or a cluster's hosts, find the cache warm.  ``--backend ray`` runs the per-unit
tokenizer as Ray tasks (``--ray-address`` joins a cluster; the data dir must be shared).
"""

from __future__ import annotations

import dataclasses
import json
import sys

from scaling.config import ConfigError, DataConfig

# flag dest -> (DataConfig option, tasks it applies to)
_FLAGS = {
    "data": ("data", ("text",)),
    "validation_data": ("validation_data", ("text",)),
    "text_field": ("text_field", ("text", "tfds:")),
    "txt_lines": ("txt_lines", ("text",)),
    "skip_bad_lines": ("skip_bad_lines", ("text",)),
    "data_module": ("module", ("seqio:",)),
    "tfds_data_dir": ("tfds_data_dir", ("tfds:", "c4_en")),
}


def add_source_flags(p) -> None:
    """The flags that point a task at your own data (``scaling train`` and ``scaling prepare``)."""
    g = p.add_argument_group("your own data (--task text | tfds:NAME | seqio:NAME)")
    g.add_argument("--data", action="append", metavar="GLOB",
                   help="--task text: corpus files (.txt/.md, .jsonl[.gz|.zst], .parquet); repeat or comma-separate")
    g.add_argument("--validation-data", action="append", metavar="GLOB",
                   help="--task text: explicit validation files (default: ~2%% of documents by content hash)")
    g.add_argument("--text-field", help="JSON field / parquet column / TFDS feature holding the text (default: text)")
    g.add_argument("--txt-lines", action="store_true", default=None, help="--task text: one document per .txt line")
    g.add_argument("--skip-bad-lines", action="store_true", default=None,
                   help="--task text: skip and count bad JSON lines instead of stopping at the first")
    g.add_argument("--data-module", metavar="MODULE",
                   help="--task seqio:NAME: module (or .py file) that registers the seqio task, imported first")
    g.add_argument("--tfds-data-dir", help="--task tfds:NAME: where the prepared TFDS dataset lives")


def _applies(task: str, kinds) -> bool:
    return any(task == k or (k.endswith(":") and task.startswith(k)) for k in kinds)


def apply_source_flags(data: DataConfig, args, *, base_task: str | None = None) -> DataConfig:
    """``data`` with the source flags of ``args`` as options (options of another task dropped)."""
    opts = dict(data.options) if base_task in (None, data.task) else {}
    for dest, (key, kinds) in _FLAGS.items():
        v = getattr(args, dest, None)
        if v is None:
            continue
        flag = "--" + dest.replace("_", "-")
        if not _applies(data.task, kinds):
            raise ConfigError(f"{flag}: only for --task {' / '.join(k + ('NAME' if k.endswith(':') else '') for k in kinds)}, "
                              f"not {data.task!r}; drop the flag or change --task")
        opts[key] = ",".join(v) if isinstance(v, list) else v
    return dataclasses.replace(data, options=tuple(opts.items()))


def _prepare_parser(sub) -> None:
    p = sub.add_parser("prepare", help="tokenize and cache a task's splits without training",
                       description="Tokenize and cache both splits of a data task (offline), with progress and "
                                   "a summary. Training and sweeps then open the cache in well under a second.")
    p.add_argument("--task", required=True, help="text | tfds:NAME[/CONFIG][:VERSION] | seqio:NAME | pystdlib | "
                                                 "synthetic_markov | c4_en")
    p.add_argument("--vocab", default=DataConfig().vocab,
                   help="byte | spN | hf-bpe:N | path/to/tokenizer.json | path/to/sp.model (default %(default)s)")
    add_source_flags(p)
    p.add_argument("--seq-len", type=int, default=2048, help="seqio:NAME only: the sequence length its "
                                                             "preprocessors see (use the run's)")
    p.add_argument("--data-dir", help="cache directory (default $SCALING_DATA_DIR or ~/.cache/scaling/data)")
    p.add_argument("--workers", type=int, help="tokenizer processes / Ray tasks in flight (default: one per core)")
    p.add_argument("--backend", choices=("local", "ray"), default="local")
    p.add_argument("--ray-address", help="--backend ray: join this cluster (default: start a local Ray)")
    p.add_argument("--force", action="store_true", help="rebuild even if a valid cache exists")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_prepare)


def add_commands(sub) -> None:
    _prepare_parser(sub)


def cmd_prepare(args) -> int:
    from scaling import data as D
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: must be >= 1")
    data = apply_source_flags(DataConfig(task=args.task, vocab=args.vocab, data_dir=args.data_dir), args)
    D.vocab_size(data)  # every config error before any reading
    out = D.prepare(data, seq_len=args.seq_len, workers=args.workers, backend=args.backend,
                    ray_address=args.ray_address, progress=True, force=args.force)
    if args.format == "json":
        print(json.dumps(out, indent=2))
        return 0
    print(f"{'split':<11} {'documents':>11} {'tokens':>14} {'bytes':>15} {'skipped':>8} {'shards':>6} {'build_s':>8}")
    for split, s in out.items():
        sk = s["skipped"] or {}
        skipped = sk.get("bad_lines", 0) + sk.get("skipped_empty", 0)
        print(f"{split:<11} {s['documents']:>11,} {s['tokens']:>14,} {s['bytes']:>15,} {skipped:>8,} "
              f"{s['shards']:>6} {s['prepare_s'] or 0:>8.1f}")
    first = next(iter(out.values()))
    sk = first["skipped"] or {}
    if sk.get("invalid_utf8_docs"):
        print(f"invalid UTF-8: {sk['invalid_utf8_docs']:,} documents ({sk['replaced_chars']:,} sequences replaced)")
    print(f"vocab_size  {first['vocab_size']}\ncorpus_hash {first['corpus_hash']}\nvocab_hash  {first['vocab_hash']}")
    for split, s in out.items():
        print(f"cache       {s['cache']}")
    sys.stdout.flush()
    return 0
