"""Your own corpus: the quickstart's IsoFLOP sweep on a directory of JSON Lines files.

Point ``DATA`` (and optionally ``VALIDATION``) at your files - ``.jsonl[.gz|.zst]``,
``.parquet`` or ``.txt`` - and run::

    scaling prepare --task text --data 'my_corpus/*.jsonl.gz' --vocab byte   # optional: tokenize once, with progress
    scaling sweep experiments/own_corpus.py --out runs/own_corpus

To try it without a corpus of your own, write a demo one first (the running interpreter's
standard library as gzipped JSON Lines shards plus a separate validation file, offline)::

    python3 experiments/own_corpus.py runs/own_corpus_data

Every run records the corpus hash (file names, sizes and the content hashes of the documents
read) in its summary and in the results table, so a fit never mixes corpora silently.  Swap
``vocab="byte"`` for ``"hf-bpe:8192"`` / ``"sp8192"`` (trained offline on the train split) or a
``tokenizer.json`` you have on disk; the model's embedding follows ``scaling.data.vocab_size``.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from scaling.config import DataConfig
from scaling.sweep import IsoFLOP, Prior, Sweep

import quickstart  # experiments/ is on sys.path while scaling.sweep.load_sweep runs this file

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO = os.path.normpath(os.path.join(HERE, "..", "runs", "own_corpus_data"))
DATA = os.path.join(DEMO, "train-*.jsonl.gz")
VALIDATION = os.path.join(DEMO, "validation.jsonl")  # None: ~2% of documents by content hash

DATA_CONFIG = DataConfig(task="text", vocab="byte", repeat=True,
                         options=(("data", DATA),) + ((("validation_data", VALIDATION),) if VALIDATION else ()))

SWEEP = Sweep(
    name="own_corpus",
    recipe=dataclasses.replace(quickstart.RECIPE, data=DATA_CONFIG),
    grid=IsoFLOP(budgets=(2.5e11, 8e11), n_sizes=4, span=2.5, prior=Prior(tokens_per_param=50.0)),
    family=quickstart.shape,
    n_basis="total",
    description="IsoFLOP on your own JSON Lines corpus (bytes)",
)


def write_demo_corpus(out: str, shards: int = 4) -> None:
    """The interpreter's standard library as ``train-0000N.jsonl.gz`` shards + ``validation.jsonl``."""
    import gzip
    import json

    from scaling.data import pystdlib
    root = pystdlib.default_root()
    os.makedirs(out, exist_ok=True)
    files = pystdlib.list_files(root)
    outs = [gzip.open(os.path.join(out, f"train-{i:05d}.jsonl.gz"), "wt", encoding="utf-8") for i in range(shards)]
    with open(os.path.join(out, "validation.jsonl"), "w", encoding="utf-8") as val:
        for k, rel in enumerate(files):
            line = json.dumps({"text": pystdlib.read_text(root, rel), "path": rel}, ensure_ascii=False) + "\n"
            (val if pystdlib.split_of(rel) == "validation" else outs[k % shards]).write(line)
    for f in outs:
        f.close()
    print(f"wrote {len(files)} documents to {out}/train-*.jsonl.gz and {out}/validation.jsonl")


if __name__ == "__main__":
    write_demo_corpus(sys.argv[1] if len(sys.argv) > 1 else DEMO)
