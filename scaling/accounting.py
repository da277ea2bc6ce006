"""Parameter bases, FLOPs-per-token conventions and device peaks: the only place they are computed.

Scaling-law fits are sensitive to *which* N and *which* C they are given (Kaplan et al. 2020
and Hoffmann et al. 2022 disagree partly because they count differently), so every planner,
trainer and analysis in this project asks this module, and the conventions are spelled out.

Parameter bases (:class:`ParamCounts`)
--------------------------------------
The model (:mod:`scaling.model`) is: a token embedding ``[vocab, d_model]``; a learned
position table ``[seq_len, d_model]`` when ``cfg.position == 'learned'``; per layer the
q/k/v projections ``d_model x (n_heads*kv_size)`` each, the output projection
``(n_heads*kv_size) x d_model``, the MLP (``wi [d, ffw]``, ``wo [ffw, d]``; SwiGLU adds a
second input matrix ``wi_1``), two norms (RMSNorm: a scale ``[d]``; LayerNorm: scale and
bias); a final norm; and the readout.  Dense layers have no biases.

* ``embedding``: the input embedding, i.e. the token table plus the learned position table
  if there is one.
* ``head``: the readout matrix ``[d_model, vocab]``, i.e. ``vocab * d_model``.  **When the
  embeddings are tied** the readout *is* the token table, so ``head`` still reports
  ``vocab * d_model`` (the size of the readout) but it is **not** added to ``total`` a
  second time; ``tied`` says which case you are in.
* ``non_embedding``: ``total - embedding - (head if untied)``: the transformer blocks plus
  the final norm (Kaplan's N).  With ``relative_position_projection=True`` it also counts
  one ``d_model x (n_heads*kv_size)`` matrix per layer, the Transformer-XL relative-position
  projection that Gopher/Chinchilla models carry (our model uses RoPE or a learned table
  instead, so this is an *accounting* option for comparing with published sizes).
* ``total``: everything, each shared matrix once.

FLOPs per token (training = forward + backward, at ``cfg.seq_len``)
-------------------------------------------------------------------
``"6N"``
    ``6 * total`` (the classic ``C = 6ND``; N is the ``total`` basis above).
``"kaplan"``
    ``6 * non_embedding + 6 * n_layers * seq_len * d_attn`` (Kaplan et al. 2020, Table 1:
    forward ``2N + 2 n_layer n_ctx d_attn``, backward twice the forward).
``"chinchilla"``
    Hoffmann et al. 2022, Appendix F, per sequence of length S, forward pass:
    embeddings ``2 S V d``; per layer QKV ``2*3 S d (kv*H)``, QK logits ``2 S S (kv*H)``,
    softmax ``3 H S S``, softmax@V ``2 S S (kv*H)``, output projection ``2 S (kv*H) d``,
    dense block ``2 S (2 d ffw)`` (SwiGLU: ``3 d ffw``); final logits ``2 S d V``.
    Training = 3 x forward (backward = 2 x forward), divided by S.  Attention is counted
    over the full S x S square, as in the paper (no causal halving).  The relative-position
    projection is not an Appendix F term, so ``relative_position_projection`` does not
    change the two Chinchilla conventions (it changes N, hence ``6N`` and ``kaplan``).
``"chinchilla_no_embed"``
    The same without the embedding and final-logits terms.

Chinchilla Table A4, reproduced (tests/test_accounting.py)
---------------------------------------------------------
Table A4 lists the ratio of Appendix F FLOPs to ``6ND`` for six models (1.03, 1.10, 1.08,
1.04, 1.03, 0.99) at S=2048, V=32000.  All six round to the published value only with
``chinchilla_no_embed`` FLOPs divided by ``6N`` where N = the Table A9 size formula:
blocks **plus one relative-position projection per layer plus one V x d matrix** (the
output matrix; the input embedding is not counted separately, i.e. tied).  Here that is
``flops_per_token(cfg, "chinchilla_no_embed") / flops_per_token(cfg, "6N",
relative_position_projection=True)`` with ``tied_embeddings=True``: e.g. 73M -> 1.026,
305M -> 1.102, 6.8B -> 0.994.  Leaving out the projection gives 1.09 for 73M; counting the
embedding and logit FLOPs gives 1.58; counting N without any V x d matrix gives 1.42.

Device peaks
------------
:func:`peak_flops` returns per-device peak FLOP/s: vendor dense bf16 figures for
TPU v4/v5e/v5p/v6e, A100, H100, H200 (matched on ``device.device_kind``); on CPU (and any
unknown device) a jitted matmul probe measured once and cached on disk.
``$SCALING_PEAK_FLOPS`` overrides everything.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Mapping

from scaling.config import ConfigError, ModelConfig
from scaling.settings import Settings, env_name

CONVENTIONS = ("6N", "kaplan", "chinchilla", "chinchilla_no_embed")


# ----------------------------------------------------------------------------------------
# Parameter bases
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ParamCounts:
    """Parameter bases of one model; see the module docstring for what each counts.

    ``head`` is ``vocab * d_model`` in both cases; when ``tied`` it is the same matrix as
    the token embedding and is included in ``total`` only once (inside ``embedding``).
    """

    total: int
    non_embedding: int
    embedding: int
    head: int
    tied: bool

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _norm_params(d_model: int, norm: str) -> int:
    return d_model if norm == "rmsnorm" else 2 * d_model


def block_params(d_model: int, d_attn: int, ffw_size: int, *, norm: str = "rmsnorm",
                 activation: str = "gelu", relative_position_projection: bool = False) -> int:
    """Parameters of one transformer block: attention, MLP and its two norms."""
    attn = 4 * d_model * d_attn + (d_model * d_attn if relative_position_projection else 0)
    mlp = (3 if activation == "swiglu" else 2) * d_model * ffw_size
    return attn + mlp + 2 * _norm_params(d_model, norm)


def count_params(cfg: ModelConfig, *, relative_position_projection: bool = False) -> ParamCounts:
    """Analytic parameter bases of ``cfg`` (exactly what :mod:`scaling.model` allocates).

    ``relative_position_projection=True`` adds one ``d_model x d_attn`` matrix per layer to
    ``non_embedding`` (Chinchilla/Gopher's Transformer-XL relative positions), which is how
    the published Table A9 sizes are counted.
    """
    cfg.validate()
    d = cfg.d_model
    embedding = cfg.vocab_size * d + (cfg.seq_len * d if cfg.position == "learned" else 0)
    body = cfg.n_layers * block_params(d, cfg.d_attn, cfg.ffw_size, norm=cfg.norm,
                                       activation=cfg.activation,
                                       relative_position_projection=relative_position_projection)
    non_embedding = body + _norm_params(d, cfg.norm)  # + the final norm
    head = cfg.vocab_size * d
    tied = bool(cfg.tied_embeddings)
    total = embedding + non_embedding + (0 if tied else head)
    return ParamCounts(total=total, non_embedding=non_embedding, embedding=embedding, head=head, tied=tied)


# Names (path components, compared lower-case) that mark the special leaves of a param tree.
TOKEN_EMBED_NAMES = ("token_embed", "embed", "embedder", "wte", "embed_tokens")
POSITION_EMBED_NAMES = ("pos_embed", "position_embed", "pos_embedding", "position_embedding", "wpe")
HEAD_NAMES = ("lm_head", "head", "unembed")


def _path_names(path) -> list[str]:
    out = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                out.append(str(getattr(k, attr)).lower())
                break
        else:
            out.append(str(k).lower())
    return out


def count_params_tree(params_pytree: Any, cfg: ModelConfig) -> ParamCounts:
    """Parameter bases counted from a real parameter tree (arrays, boxed params or ShapeDtypeStructs).

    Leaves are classified by the names on their path (any component, lower-case):

    * a component in ``POSITION_EMBED_NAMES`` (``pos_embed``, ...): learned positions -> ``embedding``;
    * else a component in ``TOKEN_EMBED_NAMES`` (``token_embed``, ``embed``, ...): the token
      table -> ``embedding``;
    * else a component in ``HEAD_NAMES`` (``lm_head``, ``head``, ``unembed``): the untied
      readout -> ``head``;
    * everything else (blocks, norms, the final norm) -> ``non_embedding``.

    :mod:`scaling.model` uses ``token_embed/embedding``, ``pos_embed/embedding`` and
    ``lm_head/kernel``.  A tree without a head leaf is tied; ``head`` is then the size of
    the token table.  Works on ``{"params": ...}`` or the bare params, boxed
    (``nn.LogicallyPartitioned``) or not.  Raises :class:`ConfigError` if the tree's tying
    disagrees with ``cfg.tied_embeddings`` or no token embedding is found.
    """
    import jax

    leaves, _ = jax.tree_util.tree_flatten_with_path(params_pytree)
    token = pos = head = body = 0
    for path, leaf in leaves:
        shape = getattr(leaf, "shape", None)
        if shape is None:
            continue
        size = int(math.prod(shape))
        names = set(_path_names(path))
        if names & set(POSITION_EMBED_NAMES):
            pos += size
        elif names & set(TOKEN_EMBED_NAMES):
            token += size
        elif names & set(HEAD_NAMES):
            head += size
        else:
            body += size
    if token == 0:
        raise ConfigError(f"count_params_tree: no token-embedding leaf found; name its module one of "
                          f"{TOKEN_EMBED_NAMES}")
    tied = head == 0
    if tied != bool(cfg.tied_embeddings):
        raise ConfigError(f"count_params_tree: the tree is {'tied' if tied else 'untied'} but "
                          f"model.tied_embeddings={cfg.tied_embeddings}; make the model and config agree")
    embedding = token + pos
    return ParamCounts(total=embedding + body + head, non_embedding=body, embedding=embedding,
                       head=token if tied else head, tied=tied)


# ----------------------------------------------------------------------------------------
# FLOPs per token
# ----------------------------------------------------------------------------------------


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ConfigError(f"flops_convention={convention!r}: choose one of {CONVENTIONS}")


def chinchilla_forward_flops(cfg: ModelConfig, *, embeddings: bool = True) -> float:
    """Forward-pass FLOPs of ONE sequence of ``cfg.seq_len`` tokens, Hoffmann et al. Appendix F."""
    S, V, d, H = cfg.seq_len, cfg.vocab_size, cfg.d_model, cfg.n_heads
    da = cfg.d_attn
    attention = (2 * 3 * S * d * da      # q, k, v projections
                 + 2 * S * S * da        # q @ k logits
                 + 3 * H * S * S         # softmax
                 + 2 * S * S * da        # softmax @ v
                 + 2 * S * da * d)       # output projection
    dense = 2 * S * (3 if cfg.activation == "swiglu" else 2) * d * cfg.ffw_size
    fwd = float(cfg.n_layers) * (attention + dense)
    if embeddings:
        fwd += 2 * S * V * d  # embeddings (one-hot matmul)
        fwd += 2 * S * d * V  # final logits
    return fwd


def flops_per_token(cfg: ModelConfig, convention: str = "chinchilla", *,
                    relative_position_projection: bool = False) -> float:
    """Training (forward + backward) FLOPs per token at ``cfg.seq_len`` under ``convention``."""
    _check_convention(convention)
    if convention in ("6N", "kaplan"):
        n = count_params(cfg, relative_position_projection=relative_position_projection)
        if convention == "6N":
            return 6.0 * n.total
        return 6.0 * n.non_embedding + 6.0 * cfg.n_layers * cfg.seq_len * cfg.d_attn
    cfg.validate()
    fwd = chinchilla_forward_flops(cfg, embeddings=(convention == "chinchilla"))
    return 3.0 * fwd / cfg.seq_len


def flops_per_token_all(cfg: ModelConfig, **kw) -> dict[str, float]:
    """``{convention: flops_per_token(cfg, convention, **kw)}`` for every convention."""
    return {c: flops_per_token(cfg, c, **kw) for c in CONVENTIONS}


def count_summary(cfg: ModelConfig, *, relative_position_projection: bool = False) -> dict:
    """What ``scaling count --format json`` prints: ``{"params": {...}, "flops_per_token": {...}}``."""
    p = count_params(cfg, relative_position_projection=relative_position_projection).as_dict()
    return {"params": {k: p[k] for k in ("total", "non_embedding", "embedding", "head")},
            "tied": p["tied"],
            "flops_per_token": flops_per_token_all(cfg, relative_position_projection=relative_position_projection)}


def tokens_for_budget(cfg: ModelConfig, budget_flops: float, convention: str = "chinchilla", *,
                      relative_position_projection: bool = False) -> float:
    """Tokens that spend ``budget_flops`` training FLOPs on ``cfg`` under ``convention`` (not rounded)."""
    if not (isinstance(budget_flops, (int, float)) and math.isfinite(budget_flops) and budget_flops > 0):
        raise ConfigError(f"budget={budget_flops!r}: a FLOP budget must be a positive finite number")
    return float(budget_flops) / flops_per_token(cfg, convention,
                                                 relative_position_projection=relative_position_projection)


def mfu(tokens_per_s: float, flops_per_token: float, n_devices: int, peak: float) -> float:
    """Model FLOPs utilisation: achieved FLOP/s over ``n_devices * peak`` (per-device peak)."""
    if n_devices < 1:
        raise ConfigError(f"mfu: n_devices={n_devices}: must be >= 1")
    if not (peak > 0 and math.isfinite(peak)):
        raise ConfigError(f"mfu: peak={peak!r}: must be a positive finite FLOP/s figure")
    return float(tokens_per_s) * float(flops_per_token) / (n_devices * float(peak))


# ----------------------------------------------------------------------------------------
# Device peaks
# ----------------------------------------------------------------------------------------

# (substring of the lower-cased device_kind, peak FLOP/s, description). First match wins, so
# more specific patterns come first.  Vendor figures, bf16 dense (no sparsity).
PEAK_TABLE: tuple[tuple[str, float, str], ...] = (
    ("v6 lite", 918e12, "TPU v6e (Trillium) bf16 dense, vendor"),
    ("v6e", 918e12, "TPU v6e (Trillium) bf16 dense, vendor"),
    ("v5 lite", 197e12, "TPU v5e bf16 dense, vendor"),
    ("v5e", 197e12, "TPU v5e bf16 dense, vendor"),
    ("v5p", 459e12, "TPU v5p bf16 dense, vendor"),
    ("tpu v5", 459e12, "TPU v5p bf16 dense, vendor"),
    ("tpu v4", 275e12, "TPU v4 bf16 dense, vendor"),
    ("h200", 989e12, "NVIDIA H200 bf16 dense, vendor"),
    ("h100", 989e12, "NVIDIA H100 SXM bf16 dense, vendor"),
    ("a100", 312e12, "NVIDIA A100 bf16 dense, vendor"),
)

PEAK_ENV = env_name("peak_flops")  # the variable that overrides every peak (read by scaling.settings)


def _resolve(settings: Settings | None) -> Settings:
    # A direct library call (a notebook, a benchmark) is its own entry point: it reads the
    # environment then; the trainer and planner pass the settings of their entry point.
    return settings if settings is not None else Settings.from_environ()


def _cache_path(settings: Settings) -> Path:
    return Path(settings.cache_dir) / "peak_flops.json"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown-cpu"


def _n_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def probe_key(dtype: str = "float32") -> str:
    """Cache key of the CPU probe: CPU model, usable core count and dtype."""
    return f"{_cpu_model()}|{_n_cores()} cores|{dtype}"


def measure_matmul_flops(device=None, *, dtype: str = "float32", sizes=(1024, 2048),
                         max_seconds: float = 2.0) -> tuple[float, dict]:
    """Measured matmul FLOP/s on ``device``: best over ``sizes`` of the median of several calls.

    A jitted ``n x n @ n x n`` with ``2 n^3`` FLOPs; ``dtype='bfloat16'`` feeds bf16 inputs
    and accumulates/returns float32 (the fast path on AVX512-BF16 CPUs).  The first call per
    size compiles and warms up and is not timed; timing stops early after ``max_seconds``.
    One jitted matmul on one device: XLA:CPU already spreads a single dot over every core
    (fake devices from ``--xla_force_host_platform_device_count`` do not split the cores).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    if dtype not in ("float32", "bfloat16"):
        raise ConfigError(f"peak probe dtype={dtype!r}: choose 'float32' or 'bfloat16'")
    dev = device if device is not None else jax.devices()[0]
    in_dt = jnp.float32 if dtype == "float32" else jnp.bfloat16
    f = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
    rng = np.random.default_rng(0)
    best, info = 0.0, {}
    t_start, cpu_start = time.perf_counter(), time.process_time()
    budget_each = max_seconds / len(sizes)
    for n in sizes:
        a = jax.device_put(jnp.asarray(rng.standard_normal((n, n), dtype=np.float32), in_dt), dev)
        b = jax.device_put(jnp.asarray(rng.standard_normal((n, n), dtype=np.float32), in_dt), dev)
        f(a, b).block_until_ready()  # compile + warm up
        times: list[float] = []
        t_n = time.perf_counter()
        while len(times) < 9 and (len(times) < 3 or time.perf_counter() - t_n < budget_each):
            t0 = time.perf_counter()
            f(a, b).block_until_ready()
            times.append(time.perf_counter() - t0)
        rate = 2.0 * n**3 / statistics.median(times)
        if rate > best:
            best, info = rate, {"n": n, "calls": len(times)}
    wall = time.perf_counter() - t_start
    info["probe_s"] = round(wall, 3)
    # CPU seconds per wall second of this process: ~n_cores when the probe had the machine
    # to itself; much less means other jobs were competing and the rate is an underestimate.
    info["cpu_util"] = round((time.process_time() - cpu_start) / wall, 2)
    if getattr(dev, "platform", "cpu") == "cpu":
        info["contended"] = info["cpu_util"] < 0.75 * _n_cores()
    return best, info


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(path: Path, data: Mapping) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs a re-probe next time


def table_peak(device_kind: str) -> tuple[float, str] | None:
    """Vendor peak for a ``device_kind`` string (e.g. ``'TPU v5 lite'``, ``'NVIDIA H100 80GB HBM3'``)."""
    kind = device_kind.lower()
    for pattern, peak, desc in PEAK_TABLE:
        if pattern in kind:
            return peak, f"{desc} ({device_kind})"
    return None


def cached_peak_flops(dtype: str = "float32", *, settings: Settings | None = None) -> tuple[float, str] | None:
    """The CPU peak if it is already known (``$SCALING_PEAK_FLOPS`` or the on-disk cache), else None.

    Never imports jax and never measures: for planners that want an estimate instantly.
    """
    settings = _resolve(settings)
    if settings.peak_flops is not None:
        return settings.peak_flops, f"${PEAK_ENV}"
    path = _cache_path(settings)
    entry = _read_cache(path).get(probe_key(dtype))
    if isinstance(entry, dict) and float(entry.get("flops", 0)) > 0:
        note = ", contended" if entry.get("contended") else ""
        return float(entry["flops"]), f"cached {dtype} matmul probe ({probe_key(dtype)}{note}) from {path}"
    return None


def peak_flops(device=None, *, dtype: str = "float32", refresh: bool = False,
               settings: Settings | None = None) -> tuple[float, str]:
    """Per-device peak FLOP/s and a one-line description of where the number came from.

    Order: ``$SCALING_PEAK_FLOPS`` (a number) if set; else the vendor table (bf16 dense) for a
    known accelerator ``device_kind``; else (CPU, unknown accelerators) a matmul probe
    (:func:`measure_matmul_flops`, ``dtype`` float32 by default: the MFU denominator for CPU
    runs) measured once and cached in ``$SCALING_CACHE_DIR/peak_flops.json`` (default
    ``~/.cache/scaling``) under :func:`probe_key`; ``refresh=True`` re-measures.  ``device``
    is a jax device or a device-kind string; None means ``jax.devices()[0]``.  The probe
    records its CPU utilisation, because a probe that shares the cores with other jobs reads
    low: a *contended* measurement (the process got less than 3/4 of the cores) is cached but
    re-measured on later calls, keeping the highest value, until an uncontended one replaces
    it.  ``refresh=True`` forces a new measurement.  ``settings``: where the cache lives and
    the override (default: read from the environment now).
    """
    settings = _resolve(settings)
    if settings.peak_flops is not None:
        return settings.peak_flops, f"${PEAK_ENV}"
    if isinstance(device, str):
        hit = table_peak(device)
        if hit is None:
            raise ConfigError(f"peak_flops: unknown device kind {device!r}; pass a jax device or set ${PEAK_ENV}")
        return hit
    if device is None:
        import jax

        device = jax.devices()[0]
    platform_name = getattr(device, "platform", "cpu")
    kind = getattr(device, "device_kind", "") or ""
    if platform_name != "cpu":
        hit = table_peak(kind)
        if hit is not None:
            return hit
    key = probe_key(dtype) if platform_name == "cpu" else f"{kind}|{platform_name}|{dtype}"
    path = _cache_path(settings)
    cache = _read_cache(path)
    entry = cache.get(key)
    valid = isinstance(entry, dict) and float(entry.get("flops", 0)) > 0
    if valid and not refresh and not entry.get("contended"):
        return float(entry["flops"]), (f"cached {dtype} matmul probe ({key}, n={entry.get('n')}, "
                                       f"measured {entry.get('measured_at', '?')}) from {path}")
    rate, info = measure_matmul_flops(device, dtype=dtype)
    new = {"flops": rate, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **info}
    cache = _read_cache(path)  # re-read: another process may have written meanwhile
    old = cache.get(key)
    if (not refresh and isinstance(old, dict) and old.get("contended")
            and float(old.get("flops", 0)) > rate):
        new = old  # a contended probe only ever raises a contended cached value
    cache[key] = new
    _write_cache(path, cache)
    note = " (contended: CPU shared with other jobs, re-measured on later calls)" if new.get("contended") else ""
    return float(new["flops"]), (f"measured {dtype} matmul probe ({key}, n={new.get('n')}, "
                                 f"{new.get('calls')} calls){note}, cached in {path}")


# ----------------------------------------------------------------------------------------
# Two MFUs, and a step-time model for GPUs (XLA:GPU has no cost analysis)
# ----------------------------------------------------------------------------------------


def palm_flops_per_token(cfg: ModelConfig) -> float:
    """Training FLOPs per token with attention counted, PaLM's MFU numerator (Chowdhery et al. 2022,
    App. B): ``6 N + 12 L H Q T`` with N the ``total`` parameters, L layers, H heads, Q the head size
    and T the sequence length (the full T x T square, no causal halving).  Next to it every report
    shows ``6 N`` alone (:func:`flops_per_token` with ``"6N"``)."""
    return 6.0 * count_params(cfg).total + 12.0 * cfg.n_layers * cfg.n_heads * cfg.kv_size * cfg.seq_len


def mfus(cfg: ModelConfig, tokens_per_s: float, n_devices: int, peak: float) -> dict[str, float]:
    """``{"mfu_6n": ..., "mfu_palm": ...}``: the two model-FLOPs utilisations every MFU report shows."""
    return {"mfu_6n": mfu(tokens_per_s, flops_per_token(cfg, "6N"), n_devices, peak),
            "mfu_palm": mfu(tokens_per_s, palm_flops_per_token(cfg), n_devices, peak)}


# Assumed fractions of the bf16 peak the step-time model lets GPU kernels reach (assumptions, to be
# replaced by benchmarks/gpu_check.py's measurements): large cuBLAS/Triton bf16 GEMMs run at about
# 70% of an H100's 989 TFLOP/s, fused attention kernels (cuDNN, FlashAttention-2/3) at about 50%.
GPU_MATMUL_EFFICIENCY = 0.7
GPU_ATTENTION_EFFICIENCY = 0.5


def executed_flops_per_token(cfg: ModelConfig, *, split: bool = False):
    """FLOPs a GPU actually executes per trained token (not a convention: what the step model times).

    Matmuls: ``6 x`` the matmul parameters (the blocks and the readout; an embedding lookup is
    not a matmul).  Attention: ``QK^T`` and ``PV`` are ``4 T d_attn`` per token forward over the
    full square; the cuDNN kernel skips the blocks above the causal diagonal (half) and its
    backward recomputes ``QK^T`` (5 matmuls against the forward's 2), XLA's ``dot_product``
    computes the full square with a 2x backward.  Remat recomputes what it dropped: ``dots``
    the attention scores, ``full`` the whole forward pass.  ``split=True``: ``(matmuls, attention)``.
    """
    n = count_params(cfg)
    matmul_params = n.non_embedding + n.head
    attn_fwd = 4.0 * cfg.seq_len * cfg.d_attn * cfg.n_layers
    if cfg.attention == "cudnn":
        attn = 0.5 * attn_fwd * (1 + 2.5)
    else:
        attn = attn_fwd * 3
    half = 0.5 if cfg.attention == "cudnn" else 1.0
    attn += {"none": 0.0, "dots": half, "full": half}[cfg.remat] * attn_fwd
    mm = 6.0 * matmul_params + (2.0 * matmul_params if cfg.remat == "full" else 0.0)
    return (mm, attn) if split else mm + attn


def gpu_step_model(cell, mesh_shape: Mapping[str, int], target) -> dict:
    """A roofline-style model of one train step on a GPU target: ``{step_s, t_compute, t_memory, t_comm, ...}``.

    XLA:GPU has no cost analysis (``compiled.cost_analysis()`` is unimplemented), so the step is
    counted here, per GPU: **compute** = :func:`executed_flops_per_token` x the GPU's tokens,
    matmuls at :data:`GPU_MATMUL_EFFICIENCY` and attention at :data:`GPU_ATTENTION_EFFICIENCY` of
    the bf16 peak (``target.peak_flops``); **memory** = HBM bytes at the card's bandwidth (the
    GpuTargetConfig's ``memory_bandwidth``): AdamW's 28 bytes per local parameter (read p, g,
    m, v; write p, m, v, f32), the gathered bf16 weights read in the forward and twice in the
    backward, and the activations written forward and read backward (Korthikanti et al. 2022:
    ``34 T b d`` bytes per layer, less with remat); **collectives** = bytes each GPU sends
    (FSDP: all-gather the parameters forward and backward in the compute dtype, as XLA:GPU does after
    moving the bf16 cast before the gather (seen in the compiled HLO), and reduce-scatter the f32
    gradients, per micro-batch; data parallel: all-reduce f32 gradients; tensor parallel: 4 all-reduces of ``[b, T, d]`` f32 per layer
    and micro-batch) over NVLink inside a host, or the host's network when the axis spans hosts.
    ``step_s = max(t_compute, t_memory, t_comm)``: perfect overlap, so an optimistic model, not a
    measurement (``benchmarks/gpu_check.py`` measures the real step on a GPU).
    """
    import re as _re

    cfg = cell.model
    d, f, t = mesh_shape["data"], mesh_shape["fsdp"], mesh_shape["tensor"]
    chips = d * f * t
    tokens = cell.batch_size * cfg.seq_len / (d * f)  # per GPU (tensor shards work on the same tokens)
    mm, attn = (x * cell.batch_size * cfg.seq_len / chips for x in executed_flops_per_token(cfg, split=True))
    flops = mm + attn
    t_compute = (mm / GPU_MATMUL_EFFICIENCY + attn / GPU_ATTENTION_EFFICIENCY) / target.peak_flops
    n = count_params(cfg).total
    n_local = n / (f * t)
    micro_rows = cell.batch_size / cell.grad_accum / (d * f)
    act_factor = {"none": 34.0, "dots": 24.0, "full": 2.0}[cfg.remat]
    act_bytes = 2.0 * act_factor * cfg.seq_len * micro_rows * cfg.d_model / t * cfg.n_layers * cell.grad_accum
    weight_bytes = 3 * 2.0 * n / t * cell.grad_accum
    hbm = 28.0 * n_local + weight_bytes + act_bytes
    bw = float(_re.search(r"memory_bandwidth:\s*(\d+)", target.target_config_text()).group(1))
    t_memory = hbm / bw
    per_host = target.gen.chips_per_host

    def link(group: int, stride: int) -> float:  # an axis of `group` devices, `stride` apart in the device order
        return target.gen.network_bw if group * stride > per_host else target.gen.nvlink_bw

    comm = {}
    gather = 2.0 if cfg.dtype == "bfloat16" else 4.0
    if f > 1:
        comm["fsdp"] = (2 * gather * n / t + 4.0 * n / t) * cell.grad_accum * (f - 1) / f / link(f, t)
    if d > 1:
        comm["data"] = 2 * 4.0 * n_local * (d - 1) / d / link(d, f * t)
    if t > 1:
        comm["tensor"] = (4 * cfg.n_layers * 2 * 4.0 * micro_rows * cfg.seq_len * cfg.d_model * (t - 1) / t
                          * cell.grad_accum / link(t, 1))
    t_comm = sum(comm.values())
    step = max(t_compute, t_memory, t_comm)
    bound = max((("compute", t_compute), ("memory", t_memory), ("collectives", t_comm)), key=lambda x: x[1])[0]
    return {"step_s": step, "t_compute": t_compute, "t_memory": t_memory, "t_comm": t_comm, "bound": bound,
            "flops_per_gpu": flops, "hbm_bytes_moved": hbm, "tokens_per_gpu": tokens}


def cudnn_workspace_bytes(cfg: ModelConfig, rows_per_device: float, tensor: int = 1) -> float:
    """The cuDNN attention workspace a deviceless compile cannot see (its ``u8[0]`` output).

    cuDNN builds its fused-attention graph only on a real GPU, so the compiled module reports
    the workspace as zero bytes.  cuDNN-frontend's SDPA backward asks for a float32 ``dQ``
    accumulator and the softmax row sums, ``4 B H T (Q + 1)`` bytes for B local rows and H local
    heads; the forward needs less.  One layer's attention runs at a time, so this is added
    once to the compiled bytes (an estimate until ``benchmarks/gpu_check.py`` measures it).
    """
    if cfg.attention != "cudnn":
        return 0.0
    return 4.0 * rows_per_device * (cfg.n_heads / tensor) * cfg.seq_len * (cfg.kv_size + 1)
