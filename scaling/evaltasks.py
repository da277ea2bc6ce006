"""Downstream multiple-choice tasks: task files, the built-in task, packing and scoring.

A task file is JSON Lines in the lm-eval-harness convention, one item per line::

    {"context": "def add(a, b):\\n", "choices": ["    return a + b", "import os"], "gold": 0, "id": "x:1"}

``context`` and every choice are non-empty strings, ``choices`` has at least 2 entries, ``gold``
indexes the correct one (``id`` is optional).  :func:`load_task` reads and checks a file and
raises one :class:`~scaling.config.ConfigError` naming the file, the line and the field for each
kind of bad input; :func:`check_fit` checks, once the run's vocabulary is known, that every
(context + choice) fits ``seq_len`` tokens.  Both run before anything is compiled.

**Names and identity.**  A cell lists its tasks as ``eval_tasks = (("name", "path"), ...)``
(``scaling train/sweep --eval-task NAME=PATH``; ``--eval-task pystdlib_nextline`` is the
built-in).  Tasks do not change training, so they are not part of the run id; instead each
task's content hash (``sha``: sha256 of the file's bytes, or of the built-in's generated JSONL)
is recorded in every checkpoint's meta and in ``summary.json``, and a run never mixes versions:
resuming from a checkpoint scored with another version of a task, or asking a finished run for a
task version other than the one it was scored with, is refused with one line (train into a fresh
``--out``).  A run that finished before a task was listed is not rescored: it keeps its numbers,
without that task's, and a one-line note says so.

**Scoring** (:class:`PackedTask`, :meth:`PackedTask.metrics`).  Each (context, choice) pair is
tokenized as the text ``context + choice``; the choice's tokens are those after the longest
common prefix of ``encode(context + choice)`` and ``encode(context)``, so a token that a
tokenizer merges across the boundary is scored with the choice (for a byte vocabulary the split
is exact).  The score of a choice is its summed log-probability given the context, computed by
the run's own eval program (which also returns the per-token NLL): sequences are packed
first-fit-decreasing into rows of ``seq_len`` with one segment each (attention never crosses a
segment, positions restart), batched ``eval_batch_size`` rows at a time like the eval set.
Per task:

* ``acc``: fraction of items whose highest-scoring choice is ``gold``;
* ``acc_norm``: the same with each score divided by the choice's UTF-8 bytes (from the text,
  so exact for every tokenizer);
* ``bpb``: the correct choices' NLL in bits per UTF-8 byte, ``sum NLL / ln 2 / sum bytes`` over
  items, the convention of the LM ``eval_bpb`` (the "task loss" of the two-step method);
* ``n_items`` and ``sha``.

Ties go to the lower choice index (``argmax``).  Everything is deterministic.

**Built-in** ``pystdlib_nextline`` (:func:`builtin_task`): "which of 4 lines is the real next
line", made by :func:`make_items` from the *validation* files of the embedded ``pystdlib``
corpus (the files ``scaling.data.pystdlib.split_of`` holds out of training), distractors from
other files, length-matched, seed 0.  ``scaling make-task`` builds the same kind of task from
any corpus.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import json
import math
import os
import re

import numpy as np

from scaling.config import ConfigError

BUILTIN_PREFIX = "builtin:"
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
METRICS = ("acc", "acc_norm", "bpb")


def column(name: str, metric: str) -> str:
    """The metrics-row / results-table name of one task metric: ``task/<name>/<metric>``."""
    return f"task/{name}/{metric}"


# ----------------------------------------------------------------------------------------
# Specs: NAME=PATH, NAME (built-in)
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Builtin:
    """A built-in task: :func:`make_items` on a corpus, with fixed options."""

    corpus: str
    n_items: int
    n_choices: int = 4
    seed: int = 0
    context_bytes: int = 56
    min_choice_bytes: int = 8
    max_choice_bytes: int = 32


# Sized for the quickstart (128-byte sequences: context <= 56 + choice <= 32 bytes fit, and two
# sequences often share a packed row) so its models land between chance and ceiling at a few percent
# of a cell's time; 300 items put the standard error of an accuracy near 0.5 at ~3 points.
BUILTINS = {"pystdlib_nextline": Builtin(corpus="pystdlib", n_items=300)}


def parse_spec(spec) -> tuple[str, str]:
    """``"NAME=PATH"`` -> (NAME, absolute PATH); ``"NAME"`` (a built-in) -> (NAME, ``builtin:NAME``).

    A pair ``(name, path)`` is normalised the same way.  ConfigError for a malformed spec.
    """
    if isinstance(spec, (tuple, list)):
        if len(spec) != 2 or not all(isinstance(x, str) for x in spec):
            raise ConfigError(f"eval_tasks: {spec!r}: each task is a (name, path) pair of strings")
        name, path = spec
    elif isinstance(spec, str):
        name, _, path = spec.partition("=")
    else:
        raise ConfigError(f"eval_tasks: {spec!r}: give 'NAME=PATH' or a built-in name ({', '.join(BUILTINS)})")
    name, path = name.strip(), path.strip()
    if not NAME_RE.match(name or ""):
        raise ConfigError(f"--eval-task {spec!r}: task name {name!r} must be letters, digits, '_', '-' or '.' "
                          f"(it names the columns task/<name>/acc...); write NAME=PATH")
    if not path or path == BUILTIN_PREFIX + name:
        if name not in BUILTINS:
            raise ConfigError(f"--eval-task {spec!r}: {name!r} is not a built-in task ({', '.join(BUILTINS)}); "
                              f"give a task file as NAME=PATH (JSONL: context, choices, gold)")
        return name, BUILTIN_PREFIX + name
    if path.startswith(BUILTIN_PREFIX):
        b = path[len(BUILTIN_PREFIX):]
        if b not in BUILTINS:
            raise ConfigError(f"--eval-task {spec!r}: {b!r} is not a built-in task ({', '.join(BUILTINS)})")
        return name, path
    return name, os.path.abspath(os.path.expanduser(path))


def normalize(specs) -> tuple[tuple[str, str], ...]:
    """Specs (strings or pairs) as ``((name, path), ...)``; ConfigError for a name used twice."""
    out, seen = [], {}
    for s in specs or ():
        name, path = parse_spec(s)
        if name in seen:
            raise ConfigError(f"--eval-task {name}: task name {name!r} is used twice ({seen[name]} and {path}); "
                              f"give each task its own name")
        seen[name] = path
        out.append((name, path))
    return tuple(out)


# ----------------------------------------------------------------------------------------
# Loading and validating
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Item:
    context: str
    choices: tuple[str, ...]
    gold: int
    line: int  # 1-based line of the task file
    id: str | None = None


@dataclasses.dataclass(frozen=True)
class Task:
    """A loaded, validated task: its items and the sha256 of its content."""

    name: str
    path: str
    items: tuple[Item, ...]
    sha: str

    @property
    def n_items(self) -> int:
        return len(self.items)


def parse_items(text: str, where: str) -> tuple[Item, ...]:
    """Validate JSONL task text (see the module docstring); ``where`` names it in errors."""
    items = []
    for i, raw in enumerate(text.split("\n"), 1):
        if not raw.strip():
            continue
        at = f"{where}, line {i}"
        try:
            d = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ConfigError(f"task file {at}: not valid JSON ({e.msg}, column {e.colno}); one item per line: "
                              f'{{"context": str, "choices": [str, ...], "gold": int}}') from None
        if not isinstance(d, dict):
            raise ConfigError(f"task file {at}: a JSON {type(d).__name__}, not an object; one item per line: "
                              f'{{"context": str, "choices": [str, ...], "gold": int}}')
        for field in ("context", "choices", "gold"):
            if field not in d:
                raise ConfigError(f"task file {at}: missing field {field!r}; every item needs context, choices "
                                  f"and gold")
        ctx, choices, gold = d["context"], d["choices"], d["gold"]
        if not isinstance(ctx, str):
            raise ConfigError(f"task file {at}: field 'context' is a {type(ctx).__name__}; it must be a string")
        if not ctx:
            raise ConfigError(f"task file {at}: field 'context' is empty; a choice is scored given its context, "
                              f"so give a non-empty context")
        if not isinstance(choices, list) or len(choices) < 2:
            n = len(choices) if isinstance(choices, list) else type(choices).__name__
            raise ConfigError(f"task file {at}: field 'choices' has {n} entries; a multiple-choice item needs "
                              f"a list of at least 2 strings")
        for j, c in enumerate(choices):
            if not isinstance(c, str):
                raise ConfigError(f"task file {at}: field 'choices[{j}]' is a {type(c).__name__}; choices must "
                                  f"be strings")
            if not c:
                raise ConfigError(f"task file {at}: field 'choices[{j}]' is empty; an empty choice has nothing "
                                  f"to score (and no bytes for acc_norm)")
        if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < len(choices):
            raise ConfigError(f"task file {at}: field 'gold' is {gold!r}, out of range; it must be the index of "
                              f"the correct choice, an integer in [0, {len(choices) - 1}]")
        iid = d.get("id")
        items.append(Item(context=ctx, choices=tuple(choices), gold=gold, line=i,
                          id=None if iid is None else str(iid)))
    if not items:
        raise ConfigError(f"task file {where}: holds no items; one JSON object per line: "
                          f'{{"context": str, "choices": [str, ...], "gold": int}}')
    return tuple(items)


def load_task(name: str, path: str, *, data_dir: str | None = None) -> Task:
    """Read and validate one task (a JSONL file, or ``builtin:NAME``)."""
    if path.startswith(BUILTIN_PREFIX):
        text = builtin_text(path[len(BUILTIN_PREFIX):], data_dir=data_dir)
    else:
        if not os.path.isfile(path):
            raise ConfigError(f"--eval-task {name}={path}: no such task file; give a JSONL file (one item per "
                              f"line: context, choices, gold) or a built-in name ({', '.join(BUILTINS)})")
        with open(path, "rb") as f:
            blob = f.read()
        try:
            text = blob.decode("utf-8")
        except UnicodeDecodeError as e:
            line = blob[:e.start].count(b"\n") + 1
            raise ConfigError(f"task file {path}, line {line}: not valid UTF-8; save the task file as UTF-8") \
                from None
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Task(name=name, path=path, items=parse_items(text, path), sha=sha)


def load_tasks(pairs, *, data_dir: str | None = None) -> tuple[Task, ...]:
    return tuple(load_task(n, p, data_dir=data_dir) for n, p in normalize(pairs))


def precheck(eval_tasks, data, seq_len: int) -> tuple[Task, ...]:
    """What an entry point checks before anything runs: every task file, and the fit in ``seq_len``
    where the vocabulary needs no corpus (``byte``, a tokenizer file); trained vocabularies
    (``spN``, ``hf-bpe:N``) are checked by the sweep's data-preparation step
    (:func:`scaling.launch.worker.prepare_data`) and by the trainer once the data is prepared, still before
    any compile."""
    from scaling.data import default_data_dir
    from scaling.data import vocab as V

    tasks = load_tasks(eval_tasks, data_dir=default_data_dir(data))
    if not tasks:
        return tasks
    if data.task == "synthetic_markov":
        raise ConfigError(f"--eval-task {tasks[0].name}: data task 'synthetic_markov' has no text tokenizer; "
                          f"downstream tasks need a text task (pystdlib, text, tfds:..., c4_en)")
    if data.task in ("pystdlib", "text") or data.task.startswith("tfds:"):
        kind, _ = V.parse_vocab(data.vocab)
        if kind in ("byte", "file", "hf-file"):
            vocab = V.get_vocab(data.vocab, data_dir=default_data_dir(data), task=data.task, corpus_hash=None)
            check_fit(tasks, vocab, seq_len)
    return tasks


def check_finished(cell, summary: dict, where) -> None:
    """A finished run asked for its tasks: refuse (one line) one scored with another version of a task.

    A finished run is not rescored.  One that was never scored on a configured task (it finished
    before the task was listed) keeps its numbers: a one-line note says so, and its results have
    no ``task/<name>/...`` values (nothing is mixed: it holds no version of the task at all).
    """
    import sys

    from scaling.data import default_data_dir

    recorded = {n: (d or {}).get("sha") for n, d in (summary.get("tasks") or {}).items()}
    for t in load_tasks(cell.eval_tasks, data_dir=default_data_dir(cell.data)):
        then = recorded.get(t.name)
        if then is None:
            print(f"note: run_dir {where}: finished before task {t.name!r} was configured; it is not rescored (its "
                  f"task/{t.name}/... columns stay empty): train into a fresh --out directory to score it",
                  file=sys.stderr, flush=True)
        elif then != t.sha:
            raise ConfigError(f"run_dir {where}: finished with another version of task {t.name!r} (sha {then[:12]}, "
                              f"now {t.sha[:12]}), and a run never mixes task versions; train into a fresh --out "
                              f"directory, or give the new version another name")


# ----------------------------------------------------------------------------------------
# Tokenizing, fitting and packing
# ----------------------------------------------------------------------------------------


def _ids(vocab, text: str) -> list[int]:
    return [int(x) for x in vocab.encode(text)]


def choice_tokens(vocab, context: str, choice: str) -> tuple[list[int], int]:
    """``(ids of context + choice, k)``: the choice is scored on ``ids[k:]`` (see the module docstring)."""
    full = _ids(vocab, context + choice)
    ctx = _ids(vocab, context)
    k = 0
    for a, b in zip(full, ctx):
        if a != b:
            break
        k += 1
    k = min(k, len(ctx), max(len(full) - 1, 0))
    return full, k


@dataclasses.dataclass(frozen=True)
class Seq:
    """One (item, choice) sequence: its token ids and the first scored position."""

    item: int
    choice: int
    ids: tuple[int, ...]
    k: int


def encode_task(task: Task, vocab, seq_len: int) -> list[Seq]:
    """Every (item, choice) of ``task`` tokenized; ConfigError naming the first item longer than ``seq_len``."""
    if not hasattr(vocab, "encode"):
        raise ConfigError(f"--eval-task {task.name}: this data task has no text tokenizer ({type(vocab).__name__}); "
                          f"downstream tasks need a text vocabulary (byte, spN, hf-bpe:N, a tokenizer file)")
    seqs = []
    for i, it in enumerate(task.items):
        for j, c in enumerate(it.choices):
            ids, k = choice_tokens(vocab, it.context, c)
            if len(ids) > seq_len:
                what = "" if it.id is None else f" (id {it.id!r})"
                raise ConfigError(
                    f"task file {task.path}, line {it.line}{what}: field 'choices[{j}]' with its context is "
                    f"{len(ids)} tokens, more than seq_len={seq_len}; train with a larger --seq-len or shorten "
                    f"the task's contexts (scaling make-task --context-bytes)")
            seqs.append(Seq(i, j, tuple(ids), k))
    return seqs


def check_fit(tasks, vocab, seq_len: int) -> None:
    for t in tasks:
        encode_task(t, vocab, seq_len)


def pack_rows(lengths, seq_len: int) -> list[list[int]]:
    """First-fit decreasing: sequence indices per row (each row's lengths sum to <= ``seq_len``); deterministic."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    free: list[int] = []
    for i in order:
        n = lengths[i]
        for r, f in enumerate(free):
            if f >= n:
                rows[r].append(i)
                free[r] -= n
                break
        else:
            rows.append([i])
            free.append(seq_len - n)
    return rows


class PackedTask:
    """One task packed into eval batches for a run (host numpy), and the scorer of their outputs.

    ``batches``: global numpy batches of ``rows_per_batch`` x ``seq_len`` with the eval program's
    keys; ``metrics(outs)`` turns the eval program's outputs on them (``token_nll`` per batch)
    into ``{acc, acc_norm, bpb}``.
    """

    def __init__(self, task: Task, vocab, seq_len: int, rows_per_batch: int, *, pack: bool = True):
        from scaling.programs import EVAL_KEYS

        self.task = task
        seqs = encode_task(task, vocab, seq_len)
        L = seq_len
        rows = pack_rows([len(s.ids) for s in seqs], L) if pack else [[i] for i in range(len(seqs))]
        n_batches = max(1, -(-len(rows) // rows_per_batch))
        shape = (n_batches * rows_per_batch, L)
        tgt = np.zeros(shape, np.int32)
        inp = np.zeros(shape, np.int32)
        seg = np.ones(shape, np.int32)  # an unused tail keeps a segment of its own (weight 0)
        pos = np.broadcast_to(np.arange(L, dtype=np.int32), shape).copy()
        # flat positions (row * L + col) of every scored token, and the sequence each belongs to
        flat, owner = [], []
        for r, members in enumerate(rows):
            col = 0
            for s_no, i in enumerate(members, 1):
                s = seqs[i]
                n = len(s.ids)
                tgt[r, col:col + n] = s.ids
                inp[r, col + 1:col + n] = s.ids[:-1]
                seg[r, col:col + n] = s_no
                pos[r, col:col + n] = np.arange(n)
                flat.append(r * L + col + np.arange(s.k, n))
                owner.append(np.full(n - s.k, i))
                col += n
            if col < L:
                seg[r, col:] = len(members) + 1
                pos[r, col:] = np.arange(L - col)
        weights = np.zeros(shape, np.float32)
        flat = np.concatenate(flat)
        weights.flat[flat] = 1.0
        self.flat, self.owner = flat, np.concatenate(owner)
        self.n_seqs = len(seqs)
        self.rows, self.rows_per_batch, self.seq_len = len(rows), rows_per_batch, L
        arrays = {"decoder_input_tokens": inp, "decoder_target_tokens": tgt, "decoder_segment_ids": seg,
                  "decoder_positions": pos, "decoder_loss_weights": weights,
                  "decoder_target_bytes": np.zeros(shape, np.int32)}
        assert set(arrays) == set(EVAL_KEYS)
        self.batches = [{k: v[b * rows_per_batch:(b + 1) * rows_per_batch] for k, v in arrays.items()}
                        for b in range(n_batches)]
        n_items = task.n_items
        width = max(len(it.choices) for it in task.items)
        self.item_of = np.array([s.item for s in seqs])
        self.choice_of = np.array([s.choice for s in seqs])
        self.gold = np.array([it.gold for it in task.items])
        self.nbytes = np.full((n_items, width), np.nan)
        for s in seqs:
            self.nbytes[s.item, s.choice] = len(task.items[s.item].choices[s.choice].encode("utf-8"))
        self.tokens = int(sum(len(s.ids) for s in seqs))

    def host_batch(self, b: int, process_index: int = 0, process_count: int = 1) -> dict:
        """This process's rows of batch ``b`` (rows split like the eval set's)."""
        per = self.rows_per_batch // process_count
        return {k: v[process_index * per:(process_index + 1) * per] for k, v in self.batches[b].items()}

    def choice_nll(self, token_nll) -> np.ndarray:
        """``[items, max choices]`` summed NLL (nats) of each choice (NaN where an item has fewer choices)."""
        tok = np.concatenate([np.asarray(t, np.float64).reshape(-1) for t in token_nll])
        per_seq = np.bincount(self.owner, weights=tok[self.flat], minlength=self.n_seqs)
        out = np.full(self.nbytes.shape, np.nan)
        out[self.item_of, self.choice_of] = per_seq
        return out

    def metrics(self, token_nll) -> dict:
        """``{acc, acc_norm, bpb}`` from the eval program's ``token_nll`` of each batch, in order."""
        return score(self.choice_nll(token_nll), self.nbytes, self.gold)


def score(nll: np.ndarray, nbytes: np.ndarray, gold: np.ndarray) -> dict:
    """acc, acc_norm and bpb from per-choice NLL ``[items, choices]`` (NaN = no such choice)."""
    ll = np.where(np.isnan(nll), -np.inf, -nll)
    acc = float(np.mean(np.argmax(ll, axis=1) == gold))
    acc_norm = float(np.mean(np.argmax(ll / np.where(np.isnan(nbytes), 1.0, nbytes), axis=1) == gold))
    rows = np.arange(len(gold))
    bpb = float(np.sum(nll[rows, gold]) / math.log(2) / np.sum(nbytes[rows, gold]))
    return {"acc": acc, "acc_norm": acc_norm, "bpb": bpb}


# ----------------------------------------------------------------------------------------
# Making tasks: "which of N lines is the real next line"
# ----------------------------------------------------------------------------------------


def make_items(docs, *, n_items: int, n_choices: int = 4, seed: int = 0, context_bytes: int = 80,
               min_choice_bytes: int = 8, max_choice_bytes: int = 40) -> list[dict]:
    """Next-line items from ``docs`` (``[(doc id, text)]``), deterministic in (docs, options).

    A candidate is a line of ``min_choice_bytes``..``max_choice_bytes`` UTF-8 bytes (not blank)
    with at least one preceding non-blank line; its context is the longest run of whole
    preceding lines (each ending in ``\\n``) of at most ``context_bytes`` bytes.  ``n_items``
    candidates are drawn without replacement (seed ``seed``); each gets ``n_choices - 1``
    distractors: distinct lines of other documents, different from the real line, whose length
    is within a tolerance of the real line's (2 bytes, doubled until enough are found).  The
    real line sits at a seeded position.  Choices carry no newline.
    """
    if n_choices < 2:
        raise ConfigError(f"--n-choices {n_choices}: a multiple-choice task needs at least 2 choices")
    if n_items < 1:
        raise ConfigError(f"--n-items {n_items}: must be >= 1")
    if not 1 <= min_choice_bytes <= max_choice_bytes:
        raise ConfigError(f"choice bytes {min_choice_bytes}..{max_choice_bytes}: need 1 <= min <= max")
    cands = []  # (doc index, context, line)
    pool = []   # (byte length, doc index, line)
    for d, (_, text) in enumerate(docs):
        lines = text.split("\n")
        for i, line in enumerate(lines):
            n = len(line.encode("utf-8"))
            if not line.strip() or not min_choice_bytes <= n <= max_choice_bytes:
                continue
            pool.append((n, d, line))
            ctx, size, j = [], 0, i - 1
            while j >= 0:
                b = len(lines[j].encode("utf-8")) + 1
                if size + b > context_bytes:
                    break
                ctx.append(lines[j])
                size += b
                j -= 1
            if any(c.strip() for c in ctx):
                cands.append((d, "".join(c + "\n" for c in reversed(ctx)), line, i + 1))
    if len(cands) < n_items:
        raise ConfigError(f"corpus: only {len(cands)} candidate lines ({min_choice_bytes}-{max_choice_bytes} bytes "
                          f"after at most {context_bytes} bytes of context); lower --n-items or use a larger corpus")
    if len({d for _, d, _ in pool}) < 2:
        raise ConfigError("corpus: distractors come from other documents, and it has only one; give more files")
    pool.sort()
    lengths = [p[0] for p in pool]
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(cands), size=n_items, replace=False).tolist())
    items = []
    for ci in pick:
        d, ctx, line, line_no = cands[ci]
        n = len(line.encode("utf-8"))
        tol, found = 2, []
        while True:
            lo, hi = bisect.bisect_left(lengths, n - tol), bisect.bisect_right(lengths, n + tol)
            found = list(dict.fromkeys(p[2] for p in pool[lo:hi] if p[1] != d and p[2] != line))
            if len(found) >= n_choices - 1 or (lo == 0 and hi == len(pool)):
                break
            tol *= 2
        if len(found) < n_choices - 1:
            raise ConfigError(f"corpus: fewer than {n_choices - 1} distinct distractor lines; lower --n-choices")
        distract = [found[k] for k in rng.choice(len(found), size=n_choices - 1, replace=False)]
        gold = int(rng.integers(n_choices))
        choices = distract[:gold] + [line] + distract[gold:]
        items.append({"id": f"{docs[d][0]}:{line_no}", "context": ctx, "choices": choices, "gold": gold})
    return items


def items_jsonl(items) -> str:
    return "".join(json.dumps(it, ensure_ascii=False, sort_keys=True) + "\n" for it in items)


def pystdlib_docs(root: str | None = None) -> list[tuple[str, str]]:
    """The held-out documents of the ``pystdlib`` corpus: its validation split, by relative path."""
    from scaling.data import pystdlib

    root = root or pystdlib.default_root()
    return [(rel, pystdlib.read_text(root, rel)) for rel in pystdlib.list_files(root)
            if pystdlib.split_of(rel) == "validation"]


def corpus_docs(corpus: str, text_field: str = "text") -> list[tuple[str, str]]:
    """Documents of ``corpus``: ``pystdlib`` (its held-out validation files), or a file, directory or glob.

    Files the project's corpus readers know (``.txt/.md``: one document per file, ``.jsonl``
    with a ``text`` field, ``.parquet``; :mod:`scaling.data.files`) are read by them; any other
    file that decodes as UTF-8 text (source code, ...) is one document.  Binary files are skipped.
    ``text_field``: the JSONL / parquet field holding the text.
    """
    if corpus == "pystdlib":
        return pystdlib_docs()
    from scaling.data import files as F

    out = []
    for p in F.expand(F.split_globs(corpus), "make-task CORPUS"):
        rel = os.path.basename(p)
        try:
            fmt, codec = F.classify(p)
        except ConfigError:
            with open(p, "rb") as fh:
                blob = fh.read()
            if b"\0" in blob[:8192]:
                continue
            out.append((rel, blob.decode("utf-8", "replace")))
            continue
        st = os.stat(p)
        entry = F.FileEntry(p, rel, fmt, codec, st.st_size, st.st_mtime_ns, "data")
        for k, t in enumerate(F.read_piece(entry, F.Piece(0), text_field=text_field, txt_lines=False,
                                           skip_bad_lines=False, counts=F.Counts())):
            out.append((f"{rel}#{k}" if fmt != "txt" else rel, t))
    if not out:
        raise ConfigError(f"make-task {corpus}: no text documents found; give text files, a directory or 'pystdlib'")
    return out


def builtin_text(name: str, *, data_dir: str | None = None) -> str:
    """The JSONL of a built-in task, generated from its corpus (cached under ``data_dir``, keyed by corpus hash)."""
    spec = BUILTINS[name]
    from scaling.data import pystdlib

    root = pystdlib.default_root()
    cache = None
    if data_dir:
        corpus = pystdlib.manifest_hash(root, data_dir)
        key = hashlib.sha256(json.dumps([name, dataclasses.asdict(spec), corpus]).encode()).hexdigest()[:16]
        cache = os.path.join(data_dir, "tasks", f"{name}-{key}.jsonl")
        try:
            with open(cache, encoding="utf-8") as f:
                return f.read()
        except OSError:
            pass
    text = items_jsonl(make_items(pystdlib_docs(root), n_items=spec.n_items, n_choices=spec.n_choices,
                                  seed=spec.seed, context_bytes=spec.context_bytes,
                                  min_choice_bytes=spec.min_choice_bytes, max_choice_bytes=spec.max_choice_bytes))
    if cache:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        tmp = f"{cache}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, cache)
    return text


def builtin_task(name: str = "pystdlib_nextline", *, data_dir: str | None = None) -> Task:
    return load_task(name, BUILTIN_PREFIX + name, data_dir=data_dir)
