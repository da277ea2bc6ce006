"""Sweeps: an experiment written once as data, expanded into cells by a pure planner.

An experiment file (``experiments/*.py``) builds one frozen :class:`Sweep`::

    SWEEP = Sweep(name="quickstart",
                  recipe=Recipe(data=DataConfig(task="pystdlib", vocab="sp1024"), seq_len=128,
                                batch_size=16, optim=OptimConfig(peak_lr=3e-3, warmup_steps=20)),
                  grid=IsoFLOP(budgets=(1e13, 3e13, 1e14), n_sizes=5, span=3.0))

A sweep has three parts:

* a **recipe** (:class:`Recipe`): task, vocabulary, sequence length, batch, optimiser and
  schedule, evaluation cadence, the FLOP convention budgets are spent in, and an optional
  per-size learning-rate rule ``lr_rule(model_config, param_counts) -> peak_lr``
  (``experiments/lr_sweep.py`` fits one);
* a **shape rule**: ``family="rule"`` turns any target size N into a sensible shape through
  :func:`scaling.families.shape_for_params`; any other family name (``"chinchilla"``,
  ``"gopher"``, ...) takes sizes as member names through :func:`scaling.families.member_config`;
  a callable ``(n_target, vocab_size, seq_len) -> ModelConfig`` is also accepted;
* a **grid**: :class:`NxD` (Chinchilla Approach 1: several token horizons per size, each a
  separate cosine-matched run), :class:`IsoFLOP` (Approach 2/3: per budget C, a handful of
  sizes log-spaced around a prior optimum, each trained for exactly C FLOPs) or
  :class:`Allocation` (per budget, the Chinchilla-rule size and the Kaplan-rule size).

:func:`plan` expands a sweep into a :class:`Plan`: the list of frozen
:class:`scaling.config.Cell` objects plus one row of numbers per cell (every parameter basis,
tokens, steps, FLOPs per convention, planned vs achieved FLOPs, wall-time estimate) and the
warnings a researcher should read before spending compute (cells dropped or moved by shape
rounding, grids off-centre, budgets whose sizes cannot bracket an interior minimum).
Planning is pure: it imports no JAX and reads no data, so ``scaling plan`` is instant.
Malformed experiments (negative budget, unknown member, empty grid, tokens below one batch)
raise one :class:`~scaling.config.ConfigError` here, before anything trains.

Planning is data-driven: every cell is ``dataclasses.replace`` of the recipe's template cell
(:meth:`Recipe.template`: every :class:`~scaling.config.Cell` field the recipe names, copied by
name, so a new Cell field is settable from a sweep as soon as the recipe has it), and each grid
type owns its ``validate()`` and its ``expand(planner)``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Union

from scaling.config import Cell, ConfigError, DataConfig, MeshConfig, ModelConfig, OptimConfig
from scaling.grids import Allocation, HPGrid, IsoFLOP, Ladder, NxD, Prior, Size, WSDFork  # noqa: F401  (experiments import them here)

DEFAULT_MFU = 0.25  # used for wall-time estimates until a sweep directory holds measured runs


# ----------------------------------------------------------------------------------------
# Recipe, prior and grids
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything about a cell except its size and its token budget.

    ``warmup_frac``: if set, warmup is ``round(warmup_frac * steps)`` capped at
    ``optim.warmup_steps`` (long warmups bias small-model sweeps; Porian et al. 2024).
    ``lr_rule(model_config, param_counts) -> float`` overrides ``optim.peak_lr`` per size; a
    rule with ``uses_tokens = True`` (a fitted :class:`analysis.hp.HPLaw`, e.g.
    ``HPLaw.load("runs/hp/hp_law.json")``) is called ``lr_rule(model_config, param_counts,
    tokens)``, so the LR can depend on the horizon too.  ``batch_rule`` (same two forms, returns
    a batch size in sequences) sets each cell's batch; its steps are the cell's tokens over the
    new batch (not with :class:`WSDFork`, whose forks share their trunk's steps).
    """

    data: DataConfig = DataConfig()
    seq_len: int = 256
    batch_size: int = 32
    optim: OptimConfig = OptimConfig()
    vocab_size: int | None = None  # embedding rows; None: scaling.data.vocab_size(data) (set it for gs:// vocabs)
    warmup_frac: float | None = None
    lr_rule: Callable[..., float] | None = None
    batch_rule: Callable[..., int] | None = None
    flops_convention: str = "chinchilla"
    model_overrides: tuple[tuple[str, Any], ...] = ()  # e.g. (("activation", "relu"),)
    tied_embeddings: bool = True
    mesh: MeshConfig = MeshConfig()
    seed: int = 0
    grad_accum: int = 1
    eval_every: int = 0
    eval_batches: int = 4
    eval_batch_size: int = 32
    log_every: int = 10
    checkpoint_every: int = 200
    keep_last: int = 2
    keep_every: int = 0
    max_loss_spike: float = 0.0
    eval_tasks: tuple = ()  # downstream tasks: "NAME=PATH" or a built-in "NAME" (or (name, path) pairs)
    task_every: int = 0  # >0: score the tasks every task_every steps too (a multiple of eval_every); 0: at the end

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    def template(self, model: ModelConfig, steps: int) -> Cell:
        """The cell this recipe makes of ``model`` trained for ``steps`` steps (before per-cell rules).

        Every Cell field the recipe has (by name: :data:`RECIPE_CELL_FIELDS`) is copied; the
        planner sets the rest (:data:`PLANNER_CELL_FIELDS`).
        """
        from scaling.evaltasks import normalize

        fields = {f: getattr(self, f) for f in RECIPE_CELL_FIELDS}
        fields["eval_tasks"] = normalize(self.eval_tasks)  # (name, absolute path): workers may run elsewhere
        return Cell(model=model, tokens=steps * self.tokens_per_step, **fields)


# Cell fields the planner (or a grid) decides per cell; every other Cell field comes from the recipe.
PLANNER_CELL_FIELDS = ("model", "tokens", "name", "budget", "group", "checkpoint_steps", "trunk", "fork_step")
RECIPE_CELL_FIELDS = tuple(f.name for f in dataclasses.fields(Cell)
                           if f.name in {g.name for g in dataclasses.fields(Recipe)})


Grid = Union[NxD, IsoFLOP, Allocation, WSDFork, HPGrid, Ladder]


@dataclasses.dataclass(frozen=True)
class Sweep:
    """One experiment: a name, a recipe, a shape rule and a grid (see the module docstring).

    ``n_basis``: which parameter count sizes, priors and fits refer to (``total`` or
    ``non_embedding``). ``analysis``: keyword overrides handed to ``analysis.report.write_report``
    (column names such as ``("n_col", "n_non_embedding")``, or ``("approaches", ())`` to skip
    the law fits of a sweep that only compares allocations).
    """

    name: str
    recipe: Recipe
    grid: Grid
    family: Union[str, Callable[..., ModelConfig]] = "rule"
    n_basis: str = "total"
    analysis: tuple[tuple[str, Any], ...] = ()  # write_report overrides: n_col/d_col/loss_col/..., approaches
    description: str = ""

    def report_columns(self) -> dict:
        cols = dict(n_col="n_" + self.n_basis, d_col="tokens", loss_col="eval_loss",
                    budget_col="budget", c_col="flops_achieved")
        cols.update(dict(self.analysis))
        return cols

    def validate(self) -> "Sweep":
        from scaling.accounting import CONVENTIONS

        r = self.recipe
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("sweep.name: must be a non-empty string")
        if r.flops_convention not in CONVENTIONS:
            raise ConfigError(f"recipe.flops_convention={r.flops_convention!r}: choose one of {CONVENTIONS}")
        if self.n_basis not in ("total", "non_embedding"):
            raise ConfigError(f"sweep.n_basis={self.n_basis!r}: choose 'total' or 'non_embedding'")
        if r.batch_size < 1 or r.seq_len < 2:
            raise ConfigError(f"recipe.batch_size={r.batch_size}, seq_len={r.seq_len}: need batch >= 1 and "
                              f"seq_len >= 2")
        r.optim.validate()
        from scaling.evaltasks import normalize

        normalize(r.eval_tasks)  # malformed specs and names used twice, before any cell
        if not (callable(getattr(self.grid, "validate", None)) and callable(getattr(self.grid, "expand", None))):
            raise ConfigError(f"sweep.grid: {type(self.grid).__name__} is not a grid; use NxD, IsoFLOP, Allocation, "
                              f"WSDFork, HPGrid or Ladder")
        self.grid.validate()
        if r.batch_rule is not None and isinstance(self.grid, WSDFork):
            raise ConfigError("recipe.batch_rule: a WSDFork's forks share their trunk's batch and steps; set "
                              "recipe.batch_size instead")
        return self


# ----------------------------------------------------------------------------------------
# Plan
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
    sweep: Sweep
    cells: tuple[Cell, ...]
    rows: tuple[dict, ...]
    warnings: tuple[str, ...]

    @property
    def total_flops(self) -> float:
        """FLOPs the sweep trains (a WSD fork counts only its cooldown)."""
        return sum(r["flops_trained"] for r in self.rows)

    @property
    def savings(self) -> dict | None:
        """For sweeps with WSD forks: ``{"flops": total planned, "flops_independent": the same
        horizons as independent runs}`` (trunks are not results, so they count only in "flops")."""
        if not any(r["trunk"] for r in self.rows):
            return None
        return {"flops": self.total_flops,
                "flops_independent": sum(r["flops_achieved"] for r in self.rows if r["group"] != "wsd_trunk")}


class Planner:
    """What a grid's ``expand`` builds cells with: shapes by size, per-cell rules, rows, warnings."""

    def __init__(self, sweep: Sweep, est_rate: float | None, backend: str):
        from scaling import data as data_mod

        self.sweep, self.recipe, self.est_rate, self.backend = sweep, sweep.recipe, est_rate, backend
        self.tokens_per_step = self.recipe.tokens_per_step
        self.vocab = self.recipe.vocab_size or int(data_mod.vocab_size(self.recipe.data))
        self.cells: list[Cell] = []
        self.rows: list[dict] = []
        self.warnings: list[str] = []
        self._models: dict = {}
        self._ids: set[str] = set()

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def n_of(self, counts) -> int:
        return int(getattr(counts, self.sweep.n_basis))

    def model(self, size: Size):
        """``(ModelConfig, ParamCounts, FLOPs per token by convention)`` of a grid size (cached)."""
        from scaling import accounting

        if size not in self._models:
            cfg = _model_for(self.sweep, size, self.vocab)
            self._models[size] = (cfg, accounting.count_params(cfg), accounting.flops_per_token_all(cfg))
        return self._models[size]

    def check_moved(self, target: float | None, counts, label: str) -> None:
        n = self.n_of(counts)
        if target and abs(math.log(n / target)) > math.log(1.25):
            self.warn(f"{label}: shape rounding moved N from {target:.3g} to {n:.3g} ({self.sweep.n_basis})")

    def rule_lr(self, cfg: ModelConfig, counts, tokens: float) -> float:
        """The recipe's LR rule at a model and horizon (``optim.peak_lr`` without a rule)."""
        return _call_rule(self.recipe.lr_rule, cfg, counts, tokens, self.recipe.optim.peak_lr)

    def make_cell(self, cfg: ModelConfig, counts, steps: int, *, budget: float | None, group: str, label: str,
                  peak_lr: float | None = None, optim: OptimConfig | None = None, batch_size: int | None = None,
                  **fields) -> Cell:
        """The recipe's template cell for ``cfg`` with this cell's own LR, warmup, name, budget and group.

        ``optim`` given: used as it is, with the recipe's per-size LR rule applied unless
        ``peak_lr`` is given, but no warmup rule (a grid that passes it has chosen the warmup).
        ``fields``: other Cell fields the grid sets (a fork's ``trunk``, ``fork_step``...).
        ``batch_size`` (or the recipe's ``batch_rule``): this cell's batch instead of the recipe's,
        ``steps`` counted in recipe batches and converted (the horizon in tokens is kept).
        """
        r = self.recipe
        tokens = steps * r.tokens_per_step
        if batch_size is None and r.batch_rule is not None:
            batch_size = int(round(_call_rule(r.batch_rule, cfg, counts, tokens, r.batch_size)))
            if batch_size < 1:
                raise ConfigError(f"recipe.batch_rule: gives batch {batch_size} for {label}; it must return >= 1")
        if batch_size is not None and batch_size != r.batch_size:
            steps_b = int(tokens // (batch_size * r.seq_len))
            if steps_b < 1:
                raise ConfigError(f"{label}: batch {batch_size} x {r.seq_len} is more than its {tokens} tokens; "
                                  f"lower the batch size or raise the horizon")
            if peak_lr is None and r.lr_rule is not None:  # the rule at this cell's own horizon
                peak_lr = _call_rule(r.lr_rule, cfg, counts, steps_b * batch_size * r.seq_len, r.optim.peak_lr)
            cell = self.make_cell(cfg, counts, steps_b, budget=budget, group=group, label=label, peak_lr=peak_lr,
                                  optim=optim, batch_size=r.batch_size, **fields)  # the recipe's: no recursion
            return dataclasses.replace(cell, batch_size=batch_size, tokens=steps_b * batch_size * r.seq_len)
        # execution choices (layer scan, attention kernel) and a 'default' compute dtype made
        # concrete for the backend the sweep will train on (bf16 on accelerators: another run id)
        cfg = cfg.for_backend(self.backend)
        if optim is not None:
            lr = peak_lr if peak_lr is not None else _call_rule(r.lr_rule, cfg, counts, tokens, optim.peak_lr)
            optim = dataclasses.replace(optim, peak_lr=float(lr))
            return dataclasses.replace(r.template(cfg, steps), optim=optim, name=f"{self.sweep.name}-{label}",
                                       budget=budget, group=group, **fields)
        optim = r.optim
        if peak_lr is not None:
            optim = dataclasses.replace(optim, peak_lr=float(peak_lr))
        elif r.lr_rule is not None:
            optim = dataclasses.replace(optim, peak_lr=_call_rule(r.lr_rule, cfg, counts, tokens, optim.peak_lr))
        if r.warmup_frac is not None:
            optim = dataclasses.replace(optim, warmup_steps=min(optim.warmup_steps, int(round(r.warmup_frac * steps))))
        if optim.warmup_steps >= steps:
            optim = dataclasses.replace(optim, warmup_steps=max(0, steps // 10))
        return dataclasses.replace(r.template(cfg, steps), optim=optim, name=f"{self.sweep.name}-{label}",
                                   budget=budget, group=group)

    def add(self, cfg, counts, fpt, steps, *, budget, group, label, target, peak_lr=None, **kw) -> Cell | None:
        """Plan one cell (None, with a warning, when an identical cell is already planned)."""
        cell = self.make_cell(cfg, counts, steps, budget=budget, group=group, label=label, peak_lr=peak_lr,
                              **kw).validate()
        if cell.run_id in self._ids:
            self.warn(f"dropped duplicate cell {cell.run_id} ({label}: same shape and tokens as another cell)")
            return None
        self._ids.add(cell.run_id)
        self.cells.append(cell)
        self.rows.append(plan_row(cell, counts, fpt, target=target, est_rate=self.est_rate))
        return cell


def _call_rule(rule, cfg: ModelConfig, counts, tokens: float, default: float) -> float:
    """A recipe rule's value: ``rule(cfg, counts)``, or ``rule(cfg, counts, tokens)`` for a rule with
    ``uses_tokens = True`` (a fitted law in N and D); ``default`` without a rule."""
    if rule is None:
        return float(default)
    if getattr(rule, "uses_tokens", False):
        return float(rule(cfg, counts, tokens))
    return float(rule(cfg, counts))


def _model_for(sweep: Sweep, size: Size, vocab_size: int) -> ModelConfig:
    """Turn a grid size (a target N or a member name) into a validated ModelConfig."""
    from scaling import families

    r = sweep.recipe
    over = {"tied_embeddings": r.tied_embeddings, **dict(r.model_overrides)}
    fam = sweep.family
    if callable(fam):
        cfg = fam(size, vocab_size, r.seq_len)
        cfg = dataclasses.replace(cfg, **over)
    elif isinstance(size, str):
        try:
            cfg = families.member_config(size, vocab_size, r.seq_len, family=None if fam == "rule" else fam, **over)
        except ConfigError as e:
            raise ConfigError(f"grid size {size!r}: {e}") from e
        except (KeyError, ValueError, TypeError) as e:
            raise ConfigError(f"grid size {size!r}: unknown member of family {fam!r} ({e}); "
                              f"list members with scaling.families.list_members()") from e
    else:
        if not (isinstance(size, (int, float)) and not isinstance(size, bool) and math.isfinite(size) and size > 0):
            raise ConfigError(f"grid size {size!r}: must be a positive parameter count or a member name")
        if fam != "rule":
            raise ConfigError(f"grid size {size!r}: family {fam!r} takes member names; use family='rule' "
                              f"for numeric sizes")
        cfg = families.shape_for_params(float(size), vocab_size=vocab_size, seq_len=r.seq_len,
                                        basis=sweep.n_basis, **over)
    return cfg.validate()


def plan_row(cell: Cell, counts, fpt: dict, *, target: float | None, est_rate: float | None) -> dict:
    """The planner's numbers for one cell (``scaling plan`` columns; ``sweep.json`` rows)."""
    m = cell.model
    tokens = cell.tokens_trained
    conv = cell.flops_convention
    budget = cell.budget
    row = dict(run_id=cell.run_id, group=cell.group, member=m.name or "",
               shape=f"d{m.d_model}-l{m.n_layers}-h{m.n_heads}x{m.kv_size}-f{m.ffw_size}",
               d_model=m.d_model, n_layers=m.n_layers, n_heads=m.n_heads, kv_size=m.kv_size,
               ffw_size=m.ffw_size, vocab_size=m.vocab_size, seq_len=m.seq_len,
               n_target=target, n_total=counts.total, n_non_embedding=counts.non_embedding,
               n_embedding=counts.embedding, n_head=counts.head, tied=counts.tied,
               tokens=tokens, steps=cell.steps, batch_size=cell.batch_size,
               peak_lr=cell.optim.peak_lr, warmup_steps=cell.optim.warmup_steps,
               schedule=cell.optim.schedule, budget=budget, flops_convention=conv,
               flops_planned=budget if budget is not None else tokens * fpt[conv],
               flops_achieved=tokens * fpt[conv],
               tokens_per_param=tokens / max(counts.total, 1))
    for k, v in fpt.items():
        row[f"flops_{k}"] = tokens * v
    # a WSD fork trains only its cooldown; its trunk trained (and paid for) the steps before
    own_tokens = tokens - cell.fork_step * cell.tokens_per_step
    row.update(trunk=cell.trunk or None, fork_step=cell.fork_step or None, flops_trained=own_tokens * fpt[conv])
    row["est_wall_s"] = (own_tokens * fpt["6N"] / est_rate) if est_rate else None
    return row


def throughput_estimate(out_dir: str | os.PathLike | None = None, settings=None) -> tuple[float | None, str]:
    """Effective FLOP/s (6N convention) for wall-time estimates, and where it came from.

    Uses runs already finished under ``out_dir`` (measured tokens/s x 6N); otherwise the
    device peak, if cheaply known (:func:`scaling.accounting.cached_peak_flops`, or a probe when
    JAX is already running in this process), x ``DEFAULT_MFU``.
    """
    from scaling import accounting

    if out_dir is not None:
        rates = []
        from scaling.results import read_summaries

        for s in read_summaries(out_dir):
            try:
                tps = float(s["tokens_per_s"])
                n = float(s["params"]["total"])
                if tps > 0 and n > 0:
                    rates.append(6.0 * n * tps)
            except (KeyError, TypeError, ValueError):
                continue
        if rates:
            rates.sort()
            return rates[len(rates) // 2], f"measured median over {len(rates)} finished runs"
    try:
        hit = accounting.cached_peak_flops(settings=settings)
        if hit is None and "jax" in sys.modules:  # planning must not import jax, but may use it if it is here
            hit = accounting.peak_flops(settings=settings)
        if hit is None:
            return None, (f"no estimate: no measured runs and no cached peak; set ${accounting.PEAK_ENV} "
                          f"or train one cell first")
        peak, src = hit
        return peak * DEFAULT_MFU, f"peak {peak:.3g} FLOP/s ({src}) x assumed MFU {DEFAULT_MFU}"
    except Exception as e:  # noqa: BLE001 - an estimate must never stop planning
        return None, f"no estimate ({type(e).__name__}: {e})"


def plan(sweep: Sweep, *, out_dir: str | os.PathLike | None = None, estimate: bool = True, settings=None,
         backend: str | None = None) -> Plan:
    """Expand ``sweep`` into cells, one row of numbers per cell, and warnings (pure).

    ``backend`` (``cpu`` | ``gpu`` | ``tpu``): what the cells will train on (default: this
    machine's, :func:`scaling.settings.local_backend`); a ``--target`` plan passes its own.
    """
    from scaling.settings import local_backend

    if not isinstance(sweep, Sweep):
        raise ConfigError(f"experiment: expected a scaling.sweep.Sweep, got {type(sweep).__name__}")
    sweep.validate()
    rate, _ = throughput_estimate(out_dir, settings) if estimate else (None, "")
    pl = Planner(sweep, rate, backend or local_backend())
    sweep.grid.expand(pl)
    if not pl.cells:
        raise ConfigError("grid: expands to no cells; check sizes and budgets")
    return Plan(sweep=sweep, cells=tuple(pl.cells), rows=tuple(pl.rows), warnings=tuple(pl.warnings))


# ----------------------------------------------------------------------------------------
# Loading experiment files
# ----------------------------------------------------------------------------------------


def load_sweep(path: str | os.PathLike) -> Sweep:
    """Load an experiment file by path; it defines ``SWEEP = Sweep(...)`` or ``def sweep()``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"experiment {path}: no such file; pass a path such as experiments/quickstart.py")
    if p.suffix != ".py":
        raise ConfigError(f"experiment {path}: not a Python file; pass an experiment .py file such as "
                          f"experiments/quickstart.py")
    mod_name = f"_scaling_experiment_{p.stem}"
    spec = importlib.util.spec_from_file_location(mod_name, p)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    folder = str(p.resolve().parent)
    sys.path.insert(0, folder)  # experiments may import their neighbours (e.g. a shared recipe)
    try:
        spec.loader.exec_module(mod)
    except ConfigError:
        raise
    except SyntaxError as e:  # the file itself does not parse
        raise ConfigError(f"experiment {path}, line {e.lineno}: SyntaxError: {e.msg}; fix the file "
                          f"(--debug shows the traceback)") from e
    except Exception as e:  # noqa: BLE001 - the experiment's own code raised while defining the sweep
        import traceback

        here = [f for f in traceback.extract_tb(e.__traceback__) if Path(f.filename).resolve() == p.resolve()]
        where = f", line {here[-1].lineno}" if here else ""
        raise ConfigError(f"experiment {path}{where}: {type(e).__name__}: {' '.join(str(e).split())}; fix the "
                          f"file (--debug shows the traceback)") from e
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    if hasattr(mod, "SWEEP"):
        sw = mod.SWEEP
    elif hasattr(mod, "sweep") and callable(mod.sweep):
        sw = mod.sweep()
    else:
        raise ConfigError(f"experiment {path}: define SWEEP = Sweep(...) or a function sweep() returning one")
    if not isinstance(sw, Sweep):
        raise ConfigError(f"experiment {path}: SWEEP is a {type(sw).__name__}, expected scaling.sweep.Sweep")
    return sw
