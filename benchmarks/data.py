"""Packed tokens/s of the data path, per task and vocabulary.

Usage: ``python3 benchmarks/data.py [--data-dir DIR] [--vocabs byte,sp1024,sp4096] [--seq-len 256]
[--batch 32] [--steps 300] [--no-seqio]``

For each (task, vocab) it prints: cold/warm ``open_source`` time (cold = first ever call:
prepare TFDS, train the vocabulary, tokenize; warm = the cached array, in a fresh process
without TensorFlow), and the fast-path throughput of ``TokenSource.batch`` in packed tokens
per second.  For reference it then measures the seqio on-the-fly path
(``features.seqio_dataset``: tokenize -> split -> pack in tf.data) for the same task.
Target: >= 300k tokens/s for the fast path (10x the smallest model's training speed).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def fast(data, seq_len, batch, steps):
    from scaling.data import open_source
    t = time.perf_counter()
    src = open_source(data, "train", seq_len)
    open_s = time.perf_counter() - t
    warm = subprocess.run(
        [sys.executable, "-c",
         "import time,sys;t=time.perf_counter();from scaling.config import DataConfig;"
         "from scaling.data import open_source;"
         f"open_source(DataConfig(task={data.task!r}, vocab={data.vocab!r}, data_dir={data.data_dir!r}),"
         f" 'train', {seq_len});print(time.perf_counter()-t, 'tensorflow' in sys.modules)"],
        cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    src.batch(0, batch, seed=0)
    t, c = time.perf_counter(), cpu()
    ntok = 0
    for s in range(steps):
        b = src.batch(s, batch, seed=0)
        ntok += int((b["decoder_loss_weights"] > 0).sum())
    dt = time.perf_counter() - t
    return src.info, open_s, float(warm[0]), warm[1], ntok / dt, (cpu() - c) / dt


def seqio_path(task_name, seq_len, batch, steps):
    from scaling.data.features import seqio_dataset
    t = time.perf_counter()
    it = seqio_dataset(task_name, "train", seq_len, batch, seed=0).as_numpy_iterator()
    next(it)
    first = time.perf_counter() - t
    t, c = time.perf_counter(), cpu()
    ntok = 0
    for _ in range(steps):
        b = next(it)
        ntok += int((b["decoder_loss_weights"] > 0).sum())
    dt = time.perf_counter() - t
    return first, ntok / dt, (cpu() - c) / dt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--vocabs", default="byte,sp1024,sp4096")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--no-seqio", action="store_true")
    a = ap.parse_args(argv)
    from scaling.config import DataConfig
    from scaling.data import default_data_dir
    data_dir = a.data_dir or default_data_dir(None)
    print(f"data_dir={data_dir} seq_len={a.seq_len} batch={a.batch} steps={a.steps}")
    cells = [DataConfig(task="pystdlib", vocab=v, data_dir=data_dir) for v in a.vocabs.split(",")]
    cells.append(DataConfig(task="synthetic_markov", data_dir=data_dir))
    print(f"{'task':18s} {'vocab':7s} {'train_tokens':>12s} {'open_s':>7s} {'warm_open_s':>11s} "
          f"{'warm_tf':>7s} {'fast_tok/s':>11s} {'cpu_util':>8s}")
    for d in cells:
        info, open_s, warm_s, warm_tf, tps, util = fast(d, a.seq_len, a.batch, a.steps)
        print(f"{d.task:18s} {d.vocab if d.task == 'pystdlib' else '-':7s} {info.num_tokens:12d} "
              f"{open_s:7.2f} {warm_s:11.3f} {warm_tf:>7s} {tps:11.0f} {util:8.2f}", flush=True)
    if not a.no_seqio:
        os.environ["SCALING_DATA_DIR"] = data_dir
        import scaling.data.tasks  # noqa: F401  registers the seqio tasks
        print(f"\nseqio on-the-fly reference ({a.steps // 3} batches after the first):")
        print(f"{'seqio task':18s} {'first_batch_s':>13s} {'tok/s':>11s} {'cpu_util':>8s}")
        names = [f"pystdlib_{v}" for v in a.vocabs.split(",")][:2] + ["synthetic_markov"]
        for name in names:
            first, tps, util = seqio_path(name, a.seq_len, a.batch, a.steps // 3)
            print(f"{name:18s} {first:13.2f} {tps:11.0f} {util:8.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
