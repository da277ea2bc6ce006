"""``synthetic_markov``: a token source whose irreducible loss is known exactly.

A k-th order Markov chain over ``V`` symbols (token ids ``2 .. V+1``; 0 is pad and 1 is
EOS, neither ever occurs).  Transitions are drawn from a seed in two levels so that models
of growing capacity keep finding structure:

* a Zipf base measure ``z`` over symbols,
* for every *last* symbol ``b`` a first-level distribution ``q_b ~ Dirichlet(beta * z)``,
* for every full context ``(a_1..a_{k-1}, b)`` the transition ``P(.|ctx) ~ Dirichlet(alpha * V * q_b)``.

A unigram model sees roughly ``z``, a bigram model sees ``q_b``, and only a model that
memorises all ``V**k`` contexts reaches the entropy rate.  With the defaults (``V=32``,
``k=2``: 1,024 contexts x 32 symbols, entropy rate 2.2333 nats/token, last-symbol model
2.663, unigram 2.838) the table is larger than the smallest CPU models can store but
learnable within CPU budgets: ``experiments/synthetic_isoflop.py`` (7e3-3e5 parameters,
<= 6.5M tokens) shows interior IsoFLOP minima and fits E within 1.6% of the entropy rate.
A richer source (``symbols=128``: 16,384 contexts, 3.236 nats/token) is too much for those
budgets: every such model stalled near its last-symbol entropy 3.68 (measured).

The **entropy rate** is computed analytically: the stationary distribution ``pi`` over
contexts (power iteration on the context chain; every transition is positive, so the
chain is irreducible and aperiodic) weights the per-context entropies,
``H = sum_ctx pi(ctx) * H(P(.|ctx))`` nats/token.  No model can beat it in expectation.

The sample is one long stream (no EOS, every loss weight 1, no bytes).  It is generated
as ``n_chains`` independent stationary chains laid end to end (vectorised sampling); at
each of the ``n_chains - 1`` joins the next symbol does not follow the previous context, a
fraction ~1/32768 of positions with the defaults, far below eval noise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

from scaling.config import ConfigError

FIRST_ID = 2  # symbol s has token id s + FIRST_ID


@dataclasses.dataclass(frozen=True)
class MarkovSpec:
    symbols: int = 32
    order: int = 2
    alpha: float = 0.5     # concentration of the per-context transitions (x V)
    beta: float = 4.0      # concentration of the per-last-symbol distributions (x V)
    zipf: float = 1.0      # exponent of the base measure
    chain_seed: int = 0
    train_tokens: int = 4_000_000
    validation_tokens: int = 262_144
    n_chains: int = 128

    @classmethod
    def from_options(cls, options) -> "MarkovSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {}
        for k, v in options:
            if k not in names:
                raise ConfigError(f"data.options {k!r}: unknown synthetic_markov option; "
                                  f"known: {sorted(names)}")
            kw[k] = type(getattr(cls(), k))(v)
        s = cls(**kw)
        if not (2 <= s.symbols <= 4096):
            raise ConfigError(f"data.options symbols={s.symbols}: must be in [2, 4096]")
        if not (1 <= s.order <= 3) or s.symbols ** s.order > 2 ** 22:
            raise ConfigError(f"data.options order={s.order}: must be 1..3 with symbols**order <= 4M contexts")
        if s.alpha <= 0 or s.beta <= 0:
            raise ConfigError("data.options alpha/beta: must be > 0")
        return s

    @property
    def vocab_size(self) -> int:
        return self.symbols + FIRST_ID

    @property
    def key(self) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


def transitions(spec: MarkovSpec) -> np.ndarray:
    """``P[ctx_index, next]`` with ctx_index = sum a_i V^(k-1-i), shape [V**k, V], float64."""
    V, k = spec.symbols, spec.order
    rng = np.random.default_rng([spec.chain_seed, 0x3A4B])
    z = 1.0 / np.arange(1, V + 1) ** spec.zipf
    z = z[rng.permutation(V)]
    z /= z.sum()
    q = rng.dirichlet(spec.beta * V * z, size=V)                 # [V(last), V]
    last = np.arange(V ** k) % V
    g = rng.standard_gamma(spec.alpha * V * q[last])             # Dirichlet via gammas
    g = np.maximum(g, 1e-300)
    P = g / g.sum(1, keepdims=True)
    return P


def stationary(spec: MarkovSpec, P: np.ndarray, tol: float = 1e-13) -> np.ndarray:
    """Stationary distribution over contexts of the context chain (power iteration)."""
    V, k = spec.symbols, spec.order
    n = V ** k
    pi = np.full(n, 1.0 / n)
    for _ in range(10_000):
        # mass of ctx (a_1..a_k) flows to ctx' = (a_2..a_k, c) with prob P[ctx, c]
        flow = pi[:, None] * P                                    # [n, V]
        new = flow.reshape(V, n // V, V).sum(0).reshape(n) if k > 1 else flow.sum(0)
        if np.abs(new - pi).sum() < tol:
            return new
        pi = new
    return pi


def entropy_rate(spec: MarkovSpec, P: np.ndarray | None = None) -> float:
    """Exact entropy rate (nats/token) of the stationary chain."""
    P = transitions(spec) if P is None else P
    pi = stationary(spec, P)
    H = -(P * np.log(P)).sum(1)
    return float(pi @ H)


def sample(spec: MarkovSpec, n_tokens: int, stream_seed: int, P: np.ndarray | None = None) -> np.ndarray:
    """``n_tokens`` token ids (uint16) from ``n_chains`` stationary chains laid end to end."""
    V, k = spec.symbols, spec.order
    P = transitions(spec) if P is None else P
    pi = stationary(spec, P)
    rng = np.random.default_rng([spec.chain_seed, stream_seed, 0x51])
    m = spec.n_chains
    T = -(-n_tokens // m)
    cdf = np.cumsum(P, 1)
    cdf[:, -1] = 1.0 + 1e-9
    ctx = rng.choice(V ** k, size=m, p=pi / pi.sum())
    out = np.empty((m, T + k), np.int64)
    for j in range(k):  # the first k symbols are the stationary context itself
        out[:, j] = (ctx // V ** (k - 1 - j)) % V
    u = rng.random((T, m))
    mod = V ** (k - 1) if k > 1 else 1
    for t in range(T):
        c = (cdf[ctx] < u[t][:, None]).sum(1)
        out[:, k + t] = c
        ctx = (ctx % mod) * V + c if k > 1 else c
    return (out.reshape(-1)[:n_tokens] + FIRST_ID).astype(np.uint16)


def open_cached(data, split: str, data_dir: str):
    """(TaskInfo, store.Split) for a split, from the hashed cache (generated on a miss, ~1 s)."""
    from scaling.data import TaskInfo, store
    spec = MarkovSpec.from_options(data.options)
    corpus_hash = spec.key
    vocab_hash = hashlib.sha256(f"identity:{spec.vocab_size}".encode()).hexdigest()
    path = store.split_dir(data_dir, "synthetic_markov", f"v{spec.symbols}", split, corpus_hash, vocab_hash)
    got = store.load(path)
    if got is None:
        with store.build_lock(path):
            got = store.load(path, quiet=True)
            if got is None:
                P = transitions(spec)
                H = entropy_rate(spec, P)
                n = spec.train_tokens if split == "train" else spec.validation_tokens
                w = store.SplitWriter(path, store.token_dtype(spec.vocab_size))
                w.add(sample(spec, n, stream_seed=1 if split == "train" else 2, P=P), ())
                got = w.commit({"task": "synthetic_markov", "split": split, "spec": dataclasses.asdict(spec),
                                "entropy_rate": H, "corpus_hash": corpus_hash, "vocab_hash": vocab_hash})
    m = got.meta
    info = TaskInfo(name="synthetic_markov", split=split, vocab_size=spec.vocab_size,
                    num_tokens=int(m["num_tokens"]), corpus_hash=corpus_hash, vocab_hash=vocab_hash,
                    entropy_rate=float(m["entropy_rate"]), has_bytes=False, num_docs=0,
                    vocab=f"identity{spec.vocab_size}")
    return info, got
