"""``scaling fit``: Chinchilla Approaches 1-3 on a results table, from the shell.

    scaling fit TABLE_OR_SWEEP_DIR [--approach 1|2|3|all] [--n-col C] [--d-col C]
                [--c-col C] [--loss-col C] [--budget-col C] [--bootstrap K]
                [--format text|json] [--plots DIR]

TABLE_OR_SWEEP_DIR is a .csv/.parquet file or a sweep directory holding results.parquet
(or results.csv).  Defaults match our results table (n_total, tokens, eval_loss, budget).
With only ``--c-col`` (no ``--d-col``), tokens are D = C / (6 N).  JSON output has a key
per approach (``approach3``: E, A, B, alpha, beta, objective, a, b, G; ``approach2`` and
``approach1``: a, b), with intervals under ``ci`` inside each when ``--bootstrap K`` > 0.
This module imports only numpy/pandas/scipy at call time: no JAX.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_commands(subparsers) -> None:
    """Register ``fit`` on an argparse sub-parsers object."""
    p = subparsers.add_parser("fit", help="fit Chinchilla Approaches 1-3 to a results table",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("table", metavar="TABLE_OR_SWEEP_DIR")
    p.add_argument("--approach", choices=("1", "2", "3", "all"), default="all")
    p.add_argument("--n-col", default="n_total")
    p.add_argument("--d-col", default=None, help="tokens column (default: tokens, unless "
                   "--c-col is given alone, then D = C/(6N))")
    p.add_argument("--c-col", default=None)
    p.add_argument("--loss-col", default="eval_loss")
    p.add_argument("--budget-col", default=None, help="IsoFLOP budget column (default: "
                   "budget if the table has it, else C binned into budgets)")
    p.add_argument("--bootstrap", type=int, default=0, metavar="K")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--plots", default=None, metavar="DIR")
    p.set_defaults(func=run_fit)


def run_fit(args) -> int:
    from analysis.data import ConfigError, load_table
    from analysis.report import fit_all, make_plots, to_markdown

    try:
        df = load_table(args.table)
        d_col = args.d_col
        if d_col is None and args.c_col is None:
            d_col = "tokens"
        budget_col = args.budget_col
        if budget_col is None and "budget" in df.columns:
            budget_col = "budget"
        approaches = (1, 2, 3) if args.approach == "all" else (int(args.approach),)
        if args.bootstrap < 0:
            raise ConfigError("--bootstrap: K must be >= 0")
        summary, objs = fit_all(df, n_col=args.n_col, d_col=d_col, c_col=args.c_col,
                                loss_col=args.loss_col, budget_col=budget_col,
                                approaches=approaches, bootstrap=args.bootstrap, seed=args.seed)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.plots:
        summary["plots"] = make_plots(objs, args.plots)
    if args.format == "json":
        print(json.dumps(summary, indent=2))
    else:
        print(to_markdown(summary), end="")
    failed = [k for k in ("approach1", "approach2", "approach3") if "error" in summary.get(k, {})]
    return 1 if failed and len(failed) == len(approaches) else 0


def main(argv=None) -> int:
    """Stand-alone entry (``python -m analysis.cli fit ...``) until ``scaling fit`` is wired."""
    parser = argparse.ArgumentParser(prog="scaling")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
