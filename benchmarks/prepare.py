"""Preparation throughput and peak memory of ``scaling prepare`` on a generated jsonl corpus.

Usage: ``python3 benchmarks/prepare.py [--sizes-gb 1,4] [--workers 2] [--dir /tmp/scaling-prepare-bench]
[--tok-mb 256] [--sp sp32000] [--hf hf-bpe:32000] [--skip-tokenizers]``

1. Generates (once, reused) JSON Lines corpora of the given sizes: documents of ~2 KB
   (log-normal lengths) cut from a Zipf word stream with some non-ASCII text, each with a
   unique prefix, ``{"text": ..., "id": ...}`` per line.
2. Runs ``python3 -m scaling.cli prepare --task text --data F --vocab byte --workers W --force``
   in a subprocess per corpus, sampling the RSS of its whole process tree (head + tokenizer
   workers) every 0.1 s.  Prints input MB/s, tokens/s, the peak tree RSS, the largest single
   process RSS and ``cpu_util`` (CPU-seconds of the tree per wall second).
   Acceptance: >= 20 MB/s on 2 cores with a peak RSS <= 2 GiB, the same RSS at 4 GB.
3. SentencePiece and HF-BPE on the first ``--tok-mb`` MB: cold (train the vocabulary on the
   train split + tokenize) and warm (``--force``: tokenize only) throughputs.

A reference measured in the same run, ``ref_parse_MBps`` (one process reading and
``json.loads``-ing 128 MB of the corpus), tells a contended machine from a slow build.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYLL = ["ka", "to", "ri", "mu", "sen", "la", "qu", "bro", "ve", "di", "ost", "an", "el", "ith", "or", "pe"]
EXTRA = ["café", "naïve", "日本語", "données", "Straße", "ñandú", "½", "—"]


def _base_text(rng: np.random.Generator, n_words: int = 3_000_000) -> str:
    words = ["".join(rng.choice(SYLL, size=rng.integers(1, 4))) for _ in range(8000)] + EXTRA
    ranks = np.minimum(rng.zipf(1.2, size=n_words), len(words)) - 1
    toks = [words[i] for i in ranks]
    for i in range(0, n_words, 17):
        toks[i] += "." if i % 3 else ",\n"
    return " ".join(toks)


def generate(path: str, size_bytes: int, seed: int = 0) -> None:
    """A JSON Lines corpus of ``size_bytes`` (documents are slices of one Zipf word stream)."""
    if os.path.exists(path) and os.path.getsize(path) >= size_bytes:
        return
    rng = np.random.default_rng(seed)
    base = _base_text(rng)
    r = random.Random(seed)
    tmp = path + ".tmp"
    n, i = 0, 0
    with open(tmp, "w", encoding="utf-8", buffering=1 << 22) as f:
        while n < size_bytes:
            L = int(min(20000, max(50, r.lognormvariate(7.3, 0.8))))
            a = r.randrange(0, len(base) - L)
            line = json.dumps({"text": f"[{i}] " + base[a:a + L], "id": i}, ensure_ascii=False) + "\n"
            f.write(line)
            n += len(line.encode("utf-8")) if i % 64 == 0 else len(line) + (len(line) >> 6)
            i += 1
    os.replace(tmp, path)


def ref_parse(path: str, nbytes: int = 128 << 20) -> float:
    t, n = time.perf_counter(), 0
    with open(path, "rb") as f:
        for line in f:
            json.loads(line)
            n += len(line)
            if n >= nbytes:
                break
    return n / 1e6 / (time.perf_counter() - t)


def run_prepare(args: list[str], env: dict) -> dict:
    import psutil
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "scaling.cli", "prepare", *args, "--format", "json"], cwd=REPO,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_tree = peak_one = 0
    proc = psutil.Process(p.pid)
    while p.poll() is None:
        try:
            procs = [proc] + proc.children(recursive=True)
            rss = [q.memory_info().rss for q in procs if q.is_running()]
            peak_tree, peak_one = max(peak_tree, sum(rss)), max(peak_one, max(rss))
        except psutil.Error:
            pass
        time.sleep(0.1)
    out, err = p.communicate()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode:
        raise SystemExit(f"prepare failed ({p.returncode}):\n{err[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "peak_tree": peak_tree, "peak_one": peak_one,
            "cpu_util": cpu / wall, "summary": json.loads(out)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes-gb", default="1,4")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dir", default="/tmp/scaling-prepare-bench")
    ap.add_argument("--tok-mb", type=int, default=256)
    ap.add_argument("--sp", default="sp32000")
    ap.add_argument("--hf", default="hf-bpe:32000")
    ap.add_argument("--skip-tokenizers", action="store_true")
    a = ap.parse_args(argv)
    os.makedirs(a.dir, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
               TF_CPP_MIN_LOG_LEVEL="3")
    dd = os.path.join(a.dir, "data")
    print(f"cores={os.cpu_count()} workers={a.workers} dir={a.dir}")
    rows = []
    for gb in [float(x) for x in a.sizes_gb.split(",") if x]:
        path = os.path.join(a.dir, f"corpus-{gb:g}GB.jsonl")
        t = time.perf_counter()
        generate(path, int(gb * 1e9))
        size = os.path.getsize(path)
        print(f"corpus {path}: {size / 1e9:.2f} GB (ready in {time.perf_counter() - t:.0f}s); "
              f"ref_parse_MBps={ref_parse(path):.1f}", flush=True)
        r = run_prepare(["--task", "text", "--data", path, "--vocab", "byte", "--data-dir", dd,
                         "--workers", str(a.workers), "--force"], env)
        toks = sum(s["tokens"] for s in r["summary"].values())
        rows.append((f"{gb:g}GB", "byte", size, r, toks))
        _print_row(*rows[-1])
    if not a.skip_tokenizers:
        small = os.path.join(a.dir, f"corpus-{a.tok_mb}MB.jsonl")
        generate(small, a.tok_mb * 1_000_000, seed=1)
        size = os.path.getsize(small)
        for vocab in (a.sp, a.hf):
            for phase in ("cold", "warm"):
                args = ["--task", "text", "--data", small, "--vocab", vocab, "--data-dir", dd, "--workers", str(a.workers)]
                if phase == "cold":
                    import shutil
                    shutil.rmtree(os.path.join(dd, "vocab"), ignore_errors=True)
                r = run_prepare(args + ["--force"], env)
                toks = sum(s["tokens"] for s in r["summary"].values())
                rows.append((f"{a.tok_mb}MB", f"{vocab} {phase}", size, r, toks))
                _print_row(*rows[-1])
    print("\nsummary (MB/s = input bytes / wall; cold = train the vocabulary + tokenize):")
    print(f"{'corpus':8s} {'vocab':18s} {'MB/s':>7s} {'Mtok/s':>7s} {'peak_tree_GiB':>13s} "
          f"{'max_proc_GiB':>12s} {'cpu_util':>8s} {'wall_s':>7s}")
    for row in rows:
        _print_row(*row, header=False)
    byte = [r for r in rows if r[1] == "byte"]
    if byte:
        ok = all(r[2] / 1e6 / r[3]["wall"] >= 20 and r[3]["peak_tree"] <= 2 * 2 ** 30 for r in byte)
        print(f"acceptance (byte: >= 20 MB/s, peak tree RSS <= 2 GiB at every size): {'PASS' if ok else 'FAIL'}")
    return 0


def _print_row(corpus, vocab, size, r, toks, header=True):
    line = (f"{corpus:8s} {vocab:18s} {size / 1e6 / r['wall']:7.1f} {toks / 1e6 / r['wall']:7.2f} "
            f"{r['peak_tree'] / 2 ** 30:13.2f} {r['peak_one'] / 2 ** 30:12.2f} {r['cpu_util']:8.2f} {r['wall']:7.1f}")
    print(line if not header else "  " + line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
