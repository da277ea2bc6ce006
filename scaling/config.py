"""Frozen configuration dataclasses: the vocabulary every other module speaks.

A *cell* is everything needed to train one run of a sweep: the model shape, the data
task, the optimiser and its schedule, the device mesh, the token budget, the batch and the
seed.  Cells are plain frozen dataclasses so that they can be hashed, written to
``config.json`` and read back, and compared field by field.

Two rules keep run identity honest:

* ``Cell.run_id`` is ``<readable name>-<hash>`` where the hash covers every field that can
  change the numbers a run produces (model, data, optimiser, tokens, batch, seed ...).  It
  deliberately leaves out fields that only change *where* or *how fast* a run executes
  (the mesh, checkpoint cadence, logging cadence), so a cell re-launched on another
  machine shape resumes the same run directory instead of starting a new one.
* Every config validates itself (``validate()``) and raises :class:`ConfigError` with a
  one-line message that names the field and the fix, before anything is compiled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any, Mapping


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the field and the fix."""


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


# ----------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------

NORMS = ("rmsnorm", "layernorm")
POSITIONS = ("rope", "learned")
ACTIVATIONS = ("gelu", "swiglu", "relu")
DTYPES = ("default", "float32", "bfloat16")
REMATS = ("none", "dots", "full")
ATTENTIONS = ("default", "einsum", "dot_product", "cudnn", "flash")
BACKENDS = ("cpu", "gpu", "tpu")
# Attention implementations each backend can run ("default" resolves to the first).
BACKEND_ATTENTIONS = {"cpu": ("einsum", "dot_product"), "gpu": ("cudnn", "dot_product", "einsum"),
                      "tpu": ("flash", "dot_product", "einsum")}
FLASH_BLOCK = 128  # the Pallas TPU flash kernel tiles the sequence in blocks of 128
# Backends whose default is scanned layers.  Not CPU: there a scanned train step runs about 1.4x
# slower than the unrolled one at every depth measured (2 to 44 layers), and its compile is only
# shorter from about 8 layers on (benchmarks/compile_depth.py; README "Model options").
SCAN_BY_DEFAULT = ("gpu", "tpu")

# How a model is *executed*, not what it computes: the same function of the parameters (up to
# float reassociation, tested to rtol 1e-5) whichever value is chosen, like the device mesh.
# They are therefore not part of the run identity (``ModelConfig.identity_fields``), so a run
# may switch layout, remat policy or attention kernel across backends and keep its run id.
EXECUTION_FIELDS = ("scan_layers", "remat", "attention")

# How initialisation, multipliers and per-parameter Adam settings scale with the shape, relative
# to a base shape (scaling.parametrization says what each one changes).  It changes the numbers,
# so it is part of the run identity; "standard" with no base shape is hashed as before it existed.
PARAMETRIZATIONS = ("standard", "mup", "completep")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shape of a decoder-only transformer, and how it is executed.

    ``kv_size`` is the per-head dimension (Chinchilla's "kv_size"); the attention width is
    ``n_heads * kv_size`` and need not equal ``d_model``.  ``seq_len`` is the maximum
    context the model supports (it sizes learned position embeddings).  Parameters are
    always float32; ``compute_dtype='bfloat16'`` runs matmuls on bf16 inputs with float32
    accumulation (softmax, norms, residual stream and loss stay float32).

    Execution choices (:data:`EXECUTION_FIELDS`; none changes what is computed):

    * ``scan_layers``: the blocks as one ``nn.scan`` body (parameters stacked on a leading
      ``layers`` axis; compile time independent of depth) or unrolled (``layers_{i}``).
      ``None``: per backend (:meth:`resolve`).
    * ``remat``: ``none`` keeps every activation for the backward pass; ``dots`` saves only
      the matmul outputs without batch dimensions (the projections; attention scores and
      elementwise ops are recomputed); ``full`` saves only each block's input.
    * ``attention``: ``einsum`` (the reference: explicit scores and softmax),
      ``dot_product`` (``jax.nn.dot_product_attention``, XLA), ``cudnn`` (its cuDNN fused
      kernel, GPU, bf16), ``flash`` (the Pallas TPU flash kernel, ``seq_len`` a multiple of
      128); ``default``: per backend (:meth:`resolve`).

    ``compute_dtype='default'`` means "not chosen": :meth:`for_backend` (used where a cell
    is *built* for a known backend) makes it bf16 on GPU/TPU and float32 on CPU; a cell
    that reaches the trainer unresolved computes in float32 and is hashed as float32.

    ``parametrization``: ``standard``, ``mup`` (width-wise hyperparameter transfer, Yang et al.
    2022, for Adam) or ``completep`` (width and depth, Dey et al. 2025), relative to the base
    shape ``base_width`` (both), ``base_depth`` (completep) and ``base_kv_size`` (optional);
    :mod:`scaling.parametrization` lists what each changes.  At the base shape every
    parametrization computes what ``standard`` computes.
    """

    vocab_size: int
    seq_len: int
    d_model: int
    n_layers: int
    n_heads: int
    kv_size: int
    ffw_size: int
    norm: str = "rmsnorm"
    position: str = "rope"
    activation: str = "gelu"
    tied_embeddings: bool = True
    compute_dtype: str = "default"
    scan_layers: bool | None = None
    remat: str = "none"
    attention: str = "default"
    name: str = ""  # family member name, if any (informational, not hashed)
    parametrization: str = "standard"  # standard | mup | completep (scaling.parametrization)
    base_width: int | None = None  # d_model of the base shape (mup, completep)
    base_depth: int | None = None  # n_layers of the base shape (completep)
    base_kv_size: int | None = None  # head size of the base shape (None: kv_size * base_width / d_model)

    @property
    def d_attn(self) -> int:
        return self.n_heads * self.kv_size

    @property
    def dtype(self) -> str:
        """The compute dtype the model runs with ('default' unresolved computes in float32)."""
        return "float32" if self.compute_dtype == "default" else self.compute_dtype

    @property
    def is_resolved(self) -> bool:
        """True when no field is left for the backend to choose (see :meth:`resolve`)."""
        return self.scan_layers is not None and self.attention != "default" and self.compute_dtype != "default"

    def validate(self) -> "ModelConfig":
        for f in ("vocab_size", "seq_len", "d_model", "n_layers", "n_heads", "kv_size"):
            v = getattr(self, f)
            _require(isinstance(v, int) and v > 0, f"model.{f}={v!r}: must be a positive integer")
        _require(isinstance(self.ffw_size, int) and self.ffw_size > 0,
                 f"model.ffw_size={self.ffw_size!r}: must be a positive integer (e.g. 4 * d_model)")
        _require(self.seq_len >= 2, f"model.seq_len={self.seq_len}: must be at least 2")
        _require(self.norm in NORMS, f"model.norm={self.norm!r}: choose one of {NORMS}")
        _require(self.position in POSITIONS, f"model.position={self.position!r}: choose one of {POSITIONS}")
        _require(self.activation in ACTIVATIONS,
                 f"model.activation={self.activation!r}: choose one of {ACTIVATIONS}")
        _require(self.compute_dtype in DTYPES,
                 f"model.compute_dtype={self.compute_dtype!r}: choose one of {DTYPES}")
        _require(self.scan_layers in (None, True, False),
                 f"model.scan_layers={self.scan_layers!r}: choose True, False or None (per backend)")
        _require(self.remat in REMATS, f"model.remat={self.remat!r}: choose one of {REMATS}")
        _require(self.attention in ATTENTIONS,
                 f"model.attention={self.attention!r}: choose one of {ATTENTIONS}")
        if self.position == "rope":
            _require(self.kv_size % 2 == 0, f"model.kv_size={self.kv_size}: RoPE needs an even head size")
        self._validate_parametrization()
        return self

    def _validate_parametrization(self) -> None:
        p = self.parametrization
        _require(p in PARAMETRIZATIONS, f"model.parametrization={p!r}: choose one of {PARAMETRIZATIONS}")
        # a base field that the parametrization ignores would change the run id and nothing else
        uses = {"standard": (), "mup": ("base_width", "base_kv_size"),
                "completep": ("base_width", "base_depth", "base_kv_size")}[p]
        for f in ("base_width", "base_depth", "base_kv_size"):
            v = getattr(self, f)
            if f not in uses:
                who = "completep" if f == "base_depth" else "mup and completep"
                _require(v is None, f"model.{f}={v!r}: parametrization={p!r} does not use it; remove it "
                                    f"(only {who} scale from a base shape)")
            elif v is not None:
                _require(isinstance(v, int) and not isinstance(v, bool) and v > 0,
                         f"model.{f}={v!r}: must be a positive integer")
        if p != "standard":
            _require(self.base_width is not None,
                     f"model.parametrization={p!r} needs a base shape: set model.base_width (the d_model the base "
                     f"hyperparameters were tuned at; CLI --base-width, HPGrid(base=SIZE))")
        if p == "completep":
            _require(self.base_depth is not None,
                     "model.parametrization='completep' needs a base depth: set model.base_depth (the n_layers the "
                     "base hyperparameters were tuned at; CLI --base-depth, HPGrid(base=SIZE))")

    # -- per-backend choices --------------------------------------------------------------
    def resolve(self, backend: str) -> "ModelConfig":
        """This config with every execution choice concrete for ``backend`` ('cpu', 'gpu', 'tpu').

        Never changes the run identity (:meth:`identity_fields`): ``scan_layers=None`` becomes
        True on the backends of :data:`SCAN_BY_DEFAULT` (GPU, TPU), False on CPU; attention
        ``default`` the first of :data:`BACKEND_ATTENTIONS` the config can use;
        ``compute_dtype='default'`` float32 (what it is hashed as).  This is what a run
        records in its config.  Raises :class:`ConfigError` (before any compile) when a
        chosen implementation cannot run on ``backend``.
        """
        self.validate()
        _require(backend in BACKENDS, f"backend={backend!r}: choose one of {BACKENDS}")
        dtype = self.dtype
        scan = self.scan_layers
        if scan is None:
            scan = backend in SCAN_BY_DEFAULT
        attention = self.attention
        usable = BACKEND_ATTENTIONS[backend]
        if attention == "default":
            attention = next(a for a in usable if not self._attention_problem(a, dtype))
        _require(attention in usable, f"model.attention={attention!r}: not available on {backend!r}; "
                                      f"choose one of {('default',) + usable}")
        problem = self._attention_problem(attention, dtype)
        _require(problem is None, f"model.attention={attention!r}: {problem}")
        return dataclasses.replace(self, scan_layers=scan, attention=attention, compute_dtype=dtype)

    def for_backend(self, backend: str) -> "ModelConfig":
        """:meth:`resolve`, with ``compute_dtype='default'`` made bf16 on accelerators.

        For code that *builds* a cell for a known backend (the CLI, a planner with a
        target): bf16 compute is a different experiment from float32, so unlike
        :meth:`resolve` this can change the run id; the trainer never calls it.
        """
        if self.compute_dtype == "default" and backend in ("gpu", "tpu"):
            return dataclasses.replace(self, compute_dtype="bfloat16").resolve(backend)
        return self.resolve(backend)

    def _attention_problem(self, attention: str, dtype: str) -> str | None:
        if attention == "cudnn" and dtype != "bfloat16":
            return "the cuDNN kernel needs compute_dtype='bfloat16'; set it, or use attention='dot_product'"
        if attention == "flash" and self.seq_len % FLASH_BLOCK:
            return (f"the flash kernel needs seq_len a multiple of {FLASH_BLOCK} (got {self.seq_len}); "
                    f"change seq_len or use attention='dot_product'")
        return None

    def identity_fields(self) -> dict:
        """The fields that define what this model computes: the model part of the run hash.

        Leaves out ``name`` (a label) and :data:`EXECUTION_FIELDS`; an unresolved
        ``compute_dtype='default'`` is written as the float32 it computes in, so every cell
        planned before these fields existed keeps its run id.
        """
        d = to_dict(self)
        d.pop("name", None)
        for f in EXECUTION_FIELDS:
            d.pop(f, None)
        d["compute_dtype"] = self.dtype
        return d


# ----------------------------------------------------------------------------------------
# Optimiser and schedule
# ----------------------------------------------------------------------------------------

SCHEDULES = ("cosine", "wsd", "constant")
DECAY_SHAPES = ("linear", "1-sqrt", "cosine")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW with global-norm clipping and a schedule whose length is the run's own budget.

    ``schedule='cosine'``: linear warmup over ``warmup_steps`` then cosine decay to
    ``final_lr_frac * peak_lr`` at exactly the last step of the run (Chinchilla: 10%).
    ``schedule='wsd'``: warmup, constant, then a decay to ``final_lr_frac * peak_lr`` over
    the last ``decay_frac`` of the run, shaped ``decay_shape``: ``linear``, ``1-sqrt``
    (Hägele et al. 2024: ``1 - sqrt(p)``) or ``cosine``.
    """

    peak_lr: float = 1e-3
    warmup_steps: int = 100
    schedule: str = "cosine"
    final_lr_frac: float = 0.1
    decay_frac: float = 0.2
    decay_shape: str = "linear"
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    clip_norm: float = 1.0

    def validate(self) -> "OptimConfig":
        _require(self.peak_lr > 0 and math.isfinite(self.peak_lr),
                 f"optim.peak_lr={self.peak_lr}: must be a positive finite number")
        _require(self.warmup_steps >= 0, f"optim.warmup_steps={self.warmup_steps}: must be >= 0")
        _require(self.schedule in SCHEDULES, f"optim.schedule={self.schedule!r}: choose one of {SCHEDULES}")
        _require(0.0 <= self.final_lr_frac <= 1.0,
                 f"optim.final_lr_frac={self.final_lr_frac}: must be in [0, 1] (Chinchilla uses 0.1)")
        _require(0.0 < self.decay_frac <= 1.0, f"optim.decay_frac={self.decay_frac}: must be in (0, 1]")
        _require(self.decay_shape in DECAY_SHAPES,
                 f"optim.decay_shape={self.decay_shape!r}: choose one of {DECAY_SHAPES}")
        _require(0.0 <= self.b1 < 1.0 and 0.0 <= self.b2 < 1.0, "optim.b1/b2: must be in [0, 1)")
        _require(self.weight_decay >= 0, f"optim.weight_decay={self.weight_decay}: must be >= 0")
        _require(self.clip_norm > 0, f"optim.clip_norm={self.clip_norm}: must be > 0")
        return self


# ----------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which seqio task feeds a run.

    ``task``: a task name known to :mod:`scaling.data` (``pystdlib``, ``synthetic_markov``,
    ``c4_en``).  ``vocab``: ``byte`` or ``spN`` (a SentencePiece model of N pieces trained
    offline on the task's train split) or a path to a ``.model`` file; tasks with an
    intrinsic alphabet (``synthetic_markov``) ignore it.  ``repeat``: allow more tokens
    than the train split holds (epochs are then counted and logged).
    ``data_dir``: where prepared datasets and token caches live (None: the default cache
    directory, ``$SCALING_DATA_DIR`` or ``~/.cache/scaling``).
    """

    task: str = "pystdlib"
    vocab: str = "sp1024"
    repeat: bool = False
    data_dir: str | None = None
    options: tuple[tuple[str, Any], ...] = ()  # task-specific knobs, e.g. (("order", 2),)

    def validate(self) -> "DataConfig":
        _require(bool(self.task), "data.task: must name a task (e.g. 'pystdlib')")
        return self


# ----------------------------------------------------------------------------------------
# Mesh
# ----------------------------------------------------------------------------------------

MESH_AXES = ("data", "fsdp", "tensor")


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """A declarative device mesh: axes data, fsdp, tensor.

    ``ici_*`` are sizes within a slice, ``dcn_*`` across slices (multi-slice TPU); the
    mesh axis size is their product.  Exactly one ICI size may be -1: it absorbs the
    devices that remain.
    """

    data: int = -1
    fsdp: int = 1
    tensor: int = 1
    dcn_data: int = 1
    dcn_fsdp: int = 1
    dcn_tensor: int = 1

    @classmethod
    def parse(cls, spec: str | None) -> "MeshConfig":
        """Parse ``data=2,fsdp=4,tensor=1`` (missing axes keep their defaults)."""
        if not spec:
            return cls()
        kw: dict[str, int] = {}
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            _require("=" in part, f"--mesh {spec!r}: write axes as name=size, e.g. data=2,fsdp=4,tensor=1")
            k, v = part.split("=", 1)
            k = k.strip()
            _require(k in {f.name for f in dataclasses.fields(cls)},
                     f"--mesh {spec!r}: unknown axis {k!r}; use data, fsdp, tensor (or dcn_data, ...)")
            try:
                kw[k] = int(v)
            except ValueError as e:
                raise ConfigError(f"--mesh {spec!r}: size of {k!r} must be an integer") from e
        return cls(**kw)

    def validate(self) -> "MeshConfig":
        ici = (self.data, self.fsdp, self.tensor)
        _require(sum(1 for v in ici if v == -1) <= 1, "mesh: at most one axis may be -1")
        for name, v in zip(MESH_AXES, ici):
            _require(v == -1 or v >= 1, f"mesh.{name}={v}: must be a positive size or -1")
        for name in MESH_AXES:
            v = getattr(self, "dcn_" + name)
            _require(v >= 1, f"mesh.dcn_{name}={v}: must be >= 1")
        return self

    def resolve(self, n_devices: int) -> dict[str, int]:
        """Concrete axis sizes (ICI x DCN) for ``n_devices``; raises ConfigError if they do not divide."""
        self.validate()
        dcn = (self.dcn_data, self.dcn_fsdp, self.dcn_tensor)
        n_dcn = math.prod(dcn)
        _require(n_devices % n_dcn == 0,
                 f"mesh: DCN sizes {dcn} do not divide the {n_devices} devices; change dcn_* sizes")
        per_slice = n_devices // n_dcn
        ici = [self.data, self.fsdp, self.tensor]
        known = math.prod(v for v in ici if v != -1)
        if -1 in ici:
            _require(per_slice % known == 0,
                     f"mesh: fixed axes {tuple(ici)} do not divide {per_slice} devices per slice; "
                     f"pick sizes whose product divides {per_slice}")
            ici[ici.index(-1)] = per_slice // known
        _require(math.prod(ici) == per_slice,
                 f"mesh: data*fsdp*tensor = {math.prod(ici)} but there are {per_slice} devices per slice; "
                 f"make the product {per_slice} or set one axis to -1")
        return {name: i * d for name, i, d in zip(MESH_AXES, ici, dcn)}


# ----------------------------------------------------------------------------------------
# Cell: one training run
# ----------------------------------------------------------------------------------------

# Fields of Cell that do not change the numbers a run produces; left out of the run hash.
# ``eval_tasks`` only adds scores of the same parameters (scaling.evaltasks records each task's content
# hash in the checkpoints and the summary instead, so a run never mixes two versions of a task).
_NON_RESULT_FIELDS = ("name", "mesh", "log_every", "checkpoint_every", "checkpoint_steps", "keep_last",
                      "keep_every", "budget", "flops_convention", "group", "max_loss_spike", "eval_tasks",
                      "task_every")
# Fields added after run ids were first published: hashed only when they differ from these values,
# so every run id planned before they existed stays the same.
_HASHED_UNLESS = {("trunk",): "", ("fork_step",): 0, ("optim", "decay_shape"): "linear",
                  ("model", "parametrization"): "standard", ("model", "base_width"): None,
                  ("model", "base_depth"): None, ("model", "base_kv_size"): None}


@dataclasses.dataclass(frozen=True)
class Cell:
    """Everything needed to train one run.

    ``tokens`` is the training budget in tokens; the run trains for
    ``steps = tokens // (batch_size * model.seq_len)`` optimiser steps (``tokens`` must be
    at least one batch) and the LR schedule spans exactly those steps.  ``batch_size`` is
    the global number of sequences per optimiser step; ``grad_accum`` splits it into that
    many micro-batches.  ``eval_every`` (steps) and ``eval_batches`` x ``eval_batch_size``
    sequences control held-out evaluation, which also always runs at the final step; the
    eval set is independent of the training batch, so every cell of a sweep is scored on the
    same validation tokens.  ``eval_tasks``: downstream multiple-choice tasks ``((name, path), ...)``
    scored at the final step and, with ``task_every`` > 0 (a multiple of ``eval_every``), every
    ``task_every`` steps (:mod:`scaling.evaltasks`; neither is part of the run id).  ``budget`` and
    ``flops_convention`` record which IsoFLOP budget (if any) the cell was planned for.
    """

    model: ModelConfig
    tokens: int
    batch_size: int
    optim: OptimConfig = OptimConfig()
    data: DataConfig = DataConfig()
    mesh: MeshConfig = MeshConfig()
    name: str = "run"
    seed: int = 0
    grad_accum: int = 1
    eval_every: int = 0  # 0: only at the end
    eval_batches: int = 4
    eval_batch_size: int = 32  # sequences per eval batch: the same held-out tokens for every cell
    log_every: int = 1
    checkpoint_every: int = 100
    keep_last: int = 2
    keep_every: int = 0  # 0: keep no extra permanent checkpoints
    max_loss_spike: float = 0.0  # >0: a train loss this far above its running min marks divergence
    budget: float | None = None
    flops_convention: str = "chinchilla"
    group: str = ""  # free-form label, e.g. "isoflop" or "chinchilla_rule"
    checkpoint_steps: tuple[int, ...] = ()  # also checkpoint at these steps, and keep them
    trunk: str = ""  # run id of the WSD trunk this cell forks from ("" for a cell trained from scratch)
    fork_step: int = 0  # the trunk step this fork starts from
    eval_tasks: tuple[tuple[str, str], ...] = ()  # (name, JSONL path or builtin:NAME), scored at the end
    task_every: int = 0  # >0: also score the tasks every task_every steps (a multiple of eval_every)

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.model.seq_len

    @property
    def steps(self) -> int:
        return self.tokens // self.tokens_per_step

    @property
    def tokens_trained(self) -> int:
        """Tokens actually trained on (the budget rounded down to whole batches)."""
        return self.steps * self.tokens_per_step

    def validate(self) -> "Cell":
        self.model.validate()
        self.optim.validate()
        self.data.validate()
        self.mesh.validate()
        _require(self.batch_size >= 1, f"batch_size={self.batch_size}: must be >= 1")
        _require(self.grad_accum >= 1 and self.batch_size % self.grad_accum == 0,
                 f"grad_accum={self.grad_accum}: must divide batch_size={self.batch_size}")
        _require(self.tokens >= self.tokens_per_step,
                 f"tokens={self.tokens}: below one batch ({self.batch_size} x {self.model.seq_len} = "
                 f"{self.tokens_per_step} tokens); raise --tokens or lower --batch")
        _require(isinstance(self.eval_every, int) and self.eval_every >= 0,
                 f"eval_every={self.eval_every}: must be >= 0 (steps between evals; 0: only at the end)")
        _require(isinstance(self.task_every, int) and self.task_every >= 0,
                 f"task_every={self.task_every}: must be >= 0 (steps between task scorings; 0: only at the end)")
        _require(self.task_every == 0 or (self.eval_every > 0 and self.task_every % self.eval_every == 0),
                 f"task_every={self.task_every}: tasks are scored on eval steps, so it must be a multiple of "
                 f"eval_every={self.eval_every}; set eval_every to a divisor of it (e.g. eval_every={self.task_every})")
        _require(self.eval_batches >= 1, f"eval_batches={self.eval_batches}: must be >= 1")
        _require(self.eval_batch_size >= 1, f"eval_batch_size={self.eval_batch_size}: must be >= 1")
        _require(self.log_every >= 1, f"log_every={self.log_every}: must be >= 1")
        _require(self.checkpoint_every >= 1, f"checkpoint_every={self.checkpoint_every}: must be >= 1")
        _require(self.keep_last >= 1, f"keep_last={self.keep_last}: must be >= 1")
        _require(self.budget is None or self.budget > 0,
                 f"budget={self.budget}: a FLOP budget must be positive")
        _require(all(isinstance(s, int) and 1 <= s <= self.steps for s in self.checkpoint_steps),
                 f"checkpoint_steps={self.checkpoint_steps}: every step must be in [1, {self.steps}]")
        names = [t[0] if isinstance(t, tuple) and len(t) == 2 else None for t in self.eval_tasks]
        _require(isinstance(self.eval_tasks, tuple) and None not in names,
                 f"eval_tasks={self.eval_tasks!r}: must be a tuple of (name, path) pairs")
        dup = sorted({n for n in names if names.count(n) > 1})
        _require(not dup, f"eval_tasks: task name {dup[0] if dup else ''!r} is used twice; give each task its own name")
        if self.trunk:
            _require(isinstance(self.fork_step, int) and 1 <= self.fork_step < self.steps,
                     f"fork_step={self.fork_step}: a fork starts at a trunk step in [1, {self.steps - 1}] "
                     f"(its own steps: {self.steps}); it must leave at least one step to train")
        else:
            _require(self.fork_step == 0, f"fork_step={self.fork_step}: only a fork (trunk=run id) has a fork step")
        return self

    # -- identity ---------------------------------------------------------------------
    def result_fields(self) -> dict:
        d = to_dict(self)
        for f in _NON_RESULT_FIELDS:
            d.pop(f, None)
        d["model"] = self.model.identity_fields()
        d["data"].pop("data_dir", None)
        for path, unset in _HASHED_UNLESS.items():
            *outer, key = path
            box = d
            for k in outer:
                box = box[k]
            if box.get(key) == unset:
                box.pop(key)
        return d

    @property
    def config_hash(self) -> str:
        blob = json.dumps(self.result_fields(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:10]

    @property
    def run_id(self) -> str:
        safe = "".join(c if (c.isalnum() or c in "-_.") else "_" for c in self.name)
        return f"{safe}-{self.config_hash}"


# ----------------------------------------------------------------------------------------
# (De)serialisation
# ----------------------------------------------------------------------------------------


def to_dict(obj) -> dict:
    """A JSON-ready dict of a (nested) config dataclass."""
    d = dataclasses.asdict(obj)
    data = d if isinstance(obj, DataConfig) else d.get("data") if isinstance(obj, Cell) else None
    if data is not None:
        data["options"] = [list(kv) for kv in data.get("options", ())]
    return d


def _build(cls, d: Mapping[str, Any]):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    _require(not unknown, f"{cls.__name__}: unknown field(s) {sorted(unknown)}; known: {sorted(names)}")
    return cls(**d)


def _frozen(v):
    """JSON lists back to tuples (at any depth), so a config read from JSON is hashable like the original."""
    return tuple(_frozen(x) for x in v) if isinstance(v, list) else v


def cell_from_dict(d: Mapping[str, Any]) -> Cell:
    d = dict(d)
    d["model"] = _build(ModelConfig, d["model"])
    if "optim" in d:
        d["optim"] = _build(OptimConfig, d["optim"])
    if "data" in d:
        dd = dict(d["data"])
        dd["options"] = tuple((k, _frozen(v)) for k, v in dd.get("options", ()))
        d["data"] = _build(DataConfig, dd)
    if "mesh" in d:
        d["mesh"] = _build(MeshConfig, d["mesh"])
    if "checkpoint_steps" in d:
        d["checkpoint_steps"] = tuple(int(s) for s in d["checkpoint_steps"])
    if "eval_tasks" in d:
        d["eval_tasks"] = tuple(tuple(t) for t in d["eval_tasks"])
    return _build(Cell, d)


def cell_to_json(cell: Cell) -> str:
    return json.dumps(to_dict(cell), indent=2, sort_keys=True)


def cell_from_json(text: str) -> Cell:
    return cell_from_dict(json.loads(text))
