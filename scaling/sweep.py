"""Sweeps: an experiment written once as data, expanded into cells by a pure planner.

An experiment file (``experiments/*.py``) builds one frozen :class:`Sweep`::

    SWEEP = Sweep(name="quickstart",
                  recipe=Recipe(data=DataConfig(task="pystdlib", vocab="sp1024"), seq_len=128,
                                batch_size=16, optim=OptimConfig(peak_lr=3e-3, warmup_steps=20)),
                  grid=IsoFLOP(budgets=(1e13, 3e13, 1e14), n_sizes=5, span=3.0))

A sweep has three parts:

* a **recipe** (:class:`Recipe`): task, vocabulary, sequence length, batch, optimiser and
  schedule, evaluation cadence, the FLOP convention budgets are spent in, and an optional
  per-size learning-rate rule ``lr_rule(model_config, param_counts) -> peak_lr`` (issue 6
  fits one on ``experiments/lr_sweep.py``);
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
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence, Union

from scaling.config import Cell, ConfigError, DataConfig, MeshConfig, ModelConfig, OptimConfig

# Chinchilla's fitted law (Hoffmann et al. 2022, rounded): the default prior optimum.
CHINCHILLA_LAW = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
KAPLAN_EXPONENT = 0.73  # Kaplan et al. 2020: N_opt ∝ C^0.73
DEFAULT_MFU = 0.25  # used for wall-time estimates until a sweep directory holds measured runs


# ----------------------------------------------------------------------------------------
# Recipe, prior and grids
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything about a cell except its size and its token budget.

    ``warmup_frac``: if set, warmup is ``round(warmup_frac * steps)`` capped at
    ``optim.warmup_steps`` (long warmups bias small-model sweeps; Porian et al. 2024).
    ``lr_rule(model_config, param_counts) -> float`` overrides ``optim.peak_lr`` per size.
    """

    data: DataConfig = DataConfig()
    seq_len: int = 256
    batch_size: int = 32
    optim: OptimConfig = OptimConfig()
    vocab_size: int | None = None  # embedding rows; None: scaling.data.vocab_size(data) (set it for gs:// vocabs)
    warmup_frac: float | None = None
    lr_rule: Callable[[ModelConfig, Any], float] | None = None
    flops_convention: str = "chinchilla"
    model_overrides: tuple[tuple[str, Any], ...] = ()  # e.g. (("activation", "relu"),)
    tied_embeddings: bool = True
    mesh: MeshConfig = MeshConfig()
    seed: int = 0
    grad_accum: int = 1
    eval_every: int = 0
    eval_batches: int = 4
    log_every: int = 10
    checkpoint_every: int = 200
    keep_last: int = 2
    max_loss_spike: float = 0.0

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len


@dataclasses.dataclass(frozen=True)
class Prior:
    """The compute-optimal size a grid is centred on before any of our runs exist.

    Either a tokens-per-parameter ratio r (``N_opt = sqrt(C / (6 r))``, from C = 6 N D and
    D = r N), or a law ``N_opt = G (C/6)^a`` (``G`` and ``a``), e.g.
    :meth:`chinchilla` derived from Hoffmann et al.'s fitted L(N, D), or :meth:`from_results`
    fitted on the IsoFLOP minima of smaller budgets already trained.
    """

    tokens_per_param: float = 20.0
    G: float | None = None
    a: float | None = None

    @classmethod
    def chinchilla(cls) -> "Prior":
        p = CHINCHILLA_LAW
        G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1.0 / (p["alpha"] + p["beta"]))
        return cls(G=G, a=p["beta"] / (p["alpha"] + p["beta"]))

    @classmethod
    def from_results(cls, path: str | os.PathLike, *, n_col: str = "n_non_embedding", loss_col: str = "eval_loss",
                     budget_col: str = "budget", max_budget: float | None = None) -> "Prior":
        """A prior fitted on finished smaller budgets (a results.csv of an earlier sweep).

        Per budget, a parabola in log N through (log N, loss) gives the IsoFLOP minimum; a line
        through (log C, log N_opt) gives ``N_opt = G (C/6)^a``.  Needs >= 2 budgets with an
        interior minimum; raises ConfigError otherwise.  Pure numpy (planning stays instant).
        """
        import csv

        import numpy as np

        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"Prior.from_results({path!r}): no such file; point it at a sweep's results.csv")
        groups: dict[float, list[tuple[float, float]]] = {}
        with open(p) as f:
            for row in csv.DictReader(f):
                try:
                    if row.get("state", "done") != "done":
                        continue
                    C, n, loss = float(row[budget_col]), float(row[n_col]), float(row[loss_col])
                except (KeyError, TypeError, ValueError):
                    continue
                if max_budget is None or C <= max_budget:
                    groups.setdefault(C, []).append((math.log(n), loss))
        opt = []
        for C, pts in sorted(groups.items()):
            if len(pts) < 3:
                continue
            x, y = np.array(pts).T
            c2, c1, _ = np.polyfit(x, y, 2)
            xm = -c1 / (2 * c2) if c2 > 0 else None
            if xm is not None and x.min() < xm < x.max():
                opt.append((math.log(C / 6.0), xm))
        if len(opt) < 2:
            raise ConfigError(f"Prior.from_results({path!r}): fewer than 2 budgets with an interior IsoFLOP "
                              f"minimum; use Prior(tokens_per_param=...) instead")
        a, logG = np.polyfit(*np.array(opt).T, 1)
        return cls(G=float(math.exp(logG)), a=float(a))

    def n_opt(self, budget: float) -> float:
        if self.G is not None and self.a is not None:
            return self.G * (budget / 6.0) ** self.a
        return math.sqrt(budget / (6.0 * self.tokens_per_param))


Size = Union[float, int, str]


@dataclasses.dataclass(frozen=True)
class NxD:
    """Approach 1: every size trained at several token horizons (separate cosine runs).

    Give either ``tokens`` (absolute horizons, same for every size) or ``tokens_per_param``
    (horizons relative to each model's parameter count in the sweep's basis).  With
    ``peak_lrs`` every (size, horizon) runs once per learning rate (``experiments/lr_sweep.py``).
    """

    sizes: tuple[Size, ...]
    tokens: tuple[float, ...] = ()
    tokens_per_param: tuple[float, ...] = ()
    peak_lrs: tuple[float, ...] = ()  # non-empty: every (size, horizon) at each LR (an LR sweep)


@dataclasses.dataclass(frozen=True)
class IsoFLOP:
    """Approach 2/3: per budget C, ``n_sizes`` sizes log-spaced over ``[N*/span, N* span]``.

    N* is the prior optimum (or ``centres[i]`` when given). Each size trains for
    ``C / flops_per_token`` tokens rounded to whole batches; the achieved FLOPs are recorded.
    """

    budgets: tuple[float, ...]
    n_sizes: int = 7
    span: float = 4.0
    prior: Prior = Prior()
    centres: tuple[float, ...] = ()


@dataclasses.dataclass(frozen=True)
class Allocation:
    """Chinchilla vs Kaplan at equal compute: per budget, two cells.

    ``chinchilla_rule``: N = prior.n_opt(C). ``kaplan_rule``: N = prior.n_opt(anchor) *
    (C / anchor)^0.73 — both rules pass through the same point at the anchor budget (default:
    the smallest budget divided by ``anchor_factor``), so they diverge as C grows.
    """

    budgets: tuple[float, ...]
    prior: Prior = Prior()
    anchor: float | None = None
    anchor_factor: float = 10.0
    kaplan_exponent: float = KAPLAN_EXPONENT


Grid = Union[NxD, IsoFLOP, Allocation]


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
        return sum(r["flops_achieved"] for r in self.rows)


def _accounting():
    from scaling import accounting

    return accounting


def _n_of(counts, basis: str) -> int:
    return int(getattr(counts, basis))


def _vocab_size(data: DataConfig) -> int:
    from scaling import data as data_mod

    return int(data_mod.vocab_size(data))


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


def _fmt_num(x: float) -> str:
    return f"{x:.2g}".replace("e+0", "e").replace("e+", "e")


def _make_cell(sweep: Sweep, cfg: ModelConfig, counts, steps: int, *, budget: float | None,
               group: str, label: str, peak_lr: float | None = None) -> Cell:
    r = sweep.recipe
    optim = r.optim
    if peak_lr is not None:
        optim = dataclasses.replace(optim, peak_lr=float(peak_lr))
    elif r.lr_rule is not None:
        optim = dataclasses.replace(optim, peak_lr=float(r.lr_rule(cfg, counts)))
    if r.warmup_frac is not None:
        optim = dataclasses.replace(optim, warmup_steps=min(optim.warmup_steps, int(round(r.warmup_frac * steps))))
    if optim.warmup_steps >= steps:
        optim = dataclasses.replace(optim, warmup_steps=max(0, steps // 10))
    return Cell(model=cfg, tokens=steps * r.tokens_per_step, batch_size=r.batch_size, optim=optim,
                data=r.data, mesh=r.mesh, name=f"{sweep.name}-{label}", seed=r.seed,
                grad_accum=r.grad_accum, eval_every=r.eval_every, eval_batches=r.eval_batches,
                log_every=r.log_every, checkpoint_every=r.checkpoint_every, keep_last=r.keep_last,
                max_loss_spike=r.max_loss_spike, budget=budget, flops_convention=r.flops_convention,
                group=group)


def _validate_sweep(sweep: Sweep) -> None:
    acc = _accounting()
    r = sweep.recipe
    if not isinstance(sweep.name, str) or not sweep.name:
        raise ConfigError("sweep.name: must be a non-empty string")
    if r.flops_convention not in acc.CONVENTIONS:
        raise ConfigError(f"recipe.flops_convention={r.flops_convention!r}: choose one of {acc.CONVENTIONS}")
    if sweep.n_basis not in ("total", "non_embedding"):
        raise ConfigError(f"sweep.n_basis={sweep.n_basis!r}: choose 'total' or 'non_embedding'")
    if r.batch_size < 1 or r.seq_len < 2:
        raise ConfigError(f"recipe.batch_size={r.batch_size}, seq_len={r.seq_len}: need batch >= 1 and seq_len >= 2")
    r.optim.validate()
    g = sweep.grid
    budgets = getattr(g, "budgets", None)
    if budgets is not None:
        if len(budgets) == 0:
            raise ConfigError(f"grid.budgets: empty; give at least one FLOP budget, e.g. budgets=(1e13, 3e13, 1e14)")
        for b in budgets:
            if not (isinstance(b, (int, float)) and math.isfinite(b) and b > 0):
                raise ConfigError(f"grid.budgets: {b:g} is not a positive FLOP budget; use e.g. 1e14" if isinstance(b, (int, float)) else f"grid.budgets: {b!r} is not a positive FLOP budget; use e.g. 1e14")
    if isinstance(g, IsoFLOP):
        if g.n_sizes < 1:
            raise ConfigError(f"grid.n_sizes={g.n_sizes}: must be >= 1 (5-9 recommended)")
        if not g.span > 1:
            raise ConfigError(f"grid.span={g.span}: must be > 1 (ratio of the largest size to the centre)")
        if g.centres and len(g.centres) != len(g.budgets):
            raise ConfigError(f"grid.centres: {len(g.centres)} given for {len(g.budgets)} budgets; give one per budget")
    elif isinstance(g, NxD):
        if not g.sizes:
            raise ConfigError("grid.sizes: empty; give at least one size (a parameter count or member name)")
        if bool(g.tokens) == bool(g.tokens_per_param):
            raise ConfigError("grid: give exactly one of tokens=(...) or tokens_per_param=(...), non-empty")
        for t in g.tokens + g.tokens_per_param:
            if not (isinstance(t, (int, float)) and t > 0):
                raise ConfigError(f"grid token horizon {t!r}: must be positive")
        for lr in g.peak_lrs:
            if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
                raise ConfigError(f"grid.peak_lrs: {lr!r} is not a positive learning rate")
    elif isinstance(g, Allocation):
        if g.anchor is not None and not g.anchor > 0:
            raise ConfigError(f"grid.anchor={g.anchor}: must be a positive FLOP budget")
    else:
        raise ConfigError(f"sweep.grid: {type(g).__name__} is not a grid; use NxD, IsoFLOP or Allocation")


def _row(cell: Cell, counts, fpt: dict, *, target: float | None, budget: float | None, est_rate: float | None) -> dict:
    m = cell.model
    tokens = cell.tokens_trained
    conv = cell.flops_convention
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
    row["est_wall_s"] = (tokens * fpt["6N"] / est_rate) if est_rate else None
    return row


def throughput_estimate(out_dir: str | os.PathLike | None = None) -> tuple[float | None, str]:
    """Effective FLOP/s (6N convention) for wall-time estimates, and where it came from.

    Uses runs already finished under ``out_dir`` (measured tokens/s x 6N); otherwise the
    device peak from :func:`scaling.accounting.peak_flops` (if cheaply known) x ``DEFAULT_MFU``.
    """
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
    acc = _accounting()
    try:
        if os.environ.get(acc.PEAK_ENV) or "jax" in sys.modules:
            peak, src = acc.peak_flops()
        else:  # planning must not import jax: read the cached CPU probe if there is one
            entry = acc._read_cache(acc._cache_path()).get(acc.probe_key("float32"))
            if not (isinstance(entry, dict) and float(entry.get("flops", 0)) > 0):
                return None, (f"no estimate: no measured runs and no cached peak; set ${acc.PEAK_ENV} "
                              f"or train one cell first")
            peak, src = float(entry["flops"]), "cached CPU matmul probe"
        return peak * DEFAULT_MFU, f"peak {peak:.3g} FLOP/s ({src}) x assumed MFU {DEFAULT_MFU}"
    except Exception as e:  # noqa: BLE001 - an estimate must never stop planning
        return None, f"no estimate ({type(e).__name__}: {e})"


def plan(sweep: Sweep, *, out_dir: str | os.PathLike | None = None, estimate: bool = True) -> Plan:
    """Expand ``sweep`` into cells, one row of numbers per cell, and warnings (pure)."""
    if not isinstance(sweep, Sweep):
        raise ConfigError(f"experiment: expected a scaling.sweep.Sweep, got {type(sweep).__name__}")
    _validate_sweep(sweep)
    acc = _accounting()
    r = sweep.recipe
    g = sweep.grid
    conv = r.flops_convention
    tpb = r.tokens_per_step
    vocab = r.vocab_size or _vocab_size(r.data)
    rate, _ = throughput_estimate(out_dir) if estimate else (None, "")
    warnings: list[str] = []
    cells: list[Cell] = []
    rows: list[dict] = []
    seen: set[str] = set()
    model_cache: dict = {}

    def model(size):
        if size not in model_cache:
            cfg = _model_for(sweep, size, vocab)
            model_cache[size] = (cfg, acc.count_params(cfg), acc.flops_per_token_all(cfg))
        return model_cache[size]

    def add(cfg, counts, fpt, steps, *, budget, group, label, target, peak_lr=None):
        cell = _make_cell(sweep, cfg, counts, steps, budget=budget, group=group, label=label, peak_lr=peak_lr)
        cell.validate()
        if cell.run_id in seen:
            warnings.append(f"dropped duplicate cell {cell.run_id} ({label}: same shape and tokens as another cell)")
            return None
        seen.add(cell.run_id)
        cells.append(cell)
        rows.append(_row(cell, counts, fpt, target=target, budget=budget, est_rate=rate))
        return cell

    def check_moved(target, counts, label):
        n = _n_of(counts, sweep.n_basis)
        if target and abs(math.log(n / target)) > math.log(1.25):
            warnings.append(f"{label}: shape rounding moved N from {target:.3g} to {n:.3g} ({sweep.n_basis})")

    if isinstance(g, NxD):
        for size in g.sizes:
            cfg, counts, fpt = model(size)
            target = float(size) if not isinstance(size, str) else None
            check_moved(target, counts, f"size {size}")
            n = _n_of(counts, sweep.n_basis)
            horizons = [float(t) for t in g.tokens] or [k * n for k in g.tokens_per_param]
            for t in horizons:
                steps = int(t // tpb)
                if steps < 1:
                    raise ConfigError(f"grid tokens={t:.3g} for size {size}: below one batch ({r.batch_size} x "
                                      f"{r.seq_len} = {tpb} tokens); raise the horizon or lower recipe.batch_size")
                label = f"{cfg.name or _fmt_num(n)}-D{_fmt_num(t)}"
                for lr in (g.peak_lrs or (None,)):
                    add(cfg, counts, fpt, steps, budget=None, group="nxd" if lr is None else "lr_sweep",
                        label=label if lr is None else f"{label}-lr{lr:.2g}", target=target, peak_lr=lr)
    elif isinstance(g, IsoFLOP):
        k = g.n_sizes
        for bi, C in enumerate(g.budgets):
            centre = g.centres[bi] if g.centres else g.prior.n_opt(C)
            exps = [0.0] if k == 1 else [-1 + 2 * i / (k - 1) for i in range(k)]
            kept_n: list[float] = []
            for e in exps:
                target = centre * g.span ** e
                try:
                    cfg, counts, fpt = model(target)
                except ConfigError as err:
                    warnings.append(f"budget {C:.3g}: dropped size {target:.3g} ({err})")
                    continue
                steps = int(round(C / fpt[conv] / tpb))
                label = f"C{_fmt_num(C)}-N{_fmt_num(target)}"
                if steps < 1:
                    warnings.append(f"budget {C:.3g}: dropped size {target:.3g} (tokens {C / fpt[conv]:.3g} below "
                                    f"one batch of {tpb})")
                    continue
                check_moved(target, counts, f"budget {C:.3g} size {target:.3g}")
                if add(cfg, counts, fpt, steps, budget=C, group="isoflop", label=label, target=target):
                    kept_n.append(_n_of(counts, sweep.n_basis))
                    a = steps * tpb * fpt[conv]
                    if abs(a / C - 1) > 0.05:
                        warnings.append(f"budget {C:.3g} size {target:.3g}: whole batches give {a:.3g} FLOPs "
                                        f"({100 * (a / C - 1):+.0f}%)")
            if not kept_n:
                raise ConfigError(f"grid.budgets: budget {C:.3g} leaves no size with at least one batch of "
                                  f"{tpb} tokens; raise the budget or lower recipe.batch_size")
            if len(set(kept_n)) < 3:
                warnings.append(f"budget {C:.3g}: only {len(set(kept_n))} distinct sizes; a parabola needs >= 3 "
                                f"to bracket an interior minimum")
            lo, hi = min(kept_n), max(kept_n)
            if not (lo < centre < hi):
                warnings.append(f"budget {C:.3g}: sizes [{lo:.3g}, {hi:.3g}] cannot bracket the predicted "
                                f"optimum {centre:.3g}; widen span or move the centre")
            elif hi > lo:
                mid = math.sqrt(lo * hi)
                if abs(math.log(centre / mid)) > 0.25 * math.log(hi / lo):
                    warnings.append(f"budget {C:.3g}: grid off-centre: predicted optimum {centre:.3g} vs grid "
                                    f"middle {mid:.3g}")
    elif isinstance(g, Allocation):
        anchor = g.anchor if g.anchor is not None else min(g.budgets) / g.anchor_factor
        n_anchor = g.prior.n_opt(anchor)
        for C in g.budgets:
            for group, target in (("chinchilla_rule", g.prior.n_opt(C)),
                                  ("kaplan_rule", n_anchor * (C / anchor) ** g.kaplan_exponent)):
                cfg, counts, fpt = model(target)
                steps = int(round(C / fpt[conv] / tpb))
                label = f"C{_fmt_num(C)}-{group.split('_')[0]}"
                if steps < 1:
                    raise ConfigError(f"grid.budgets: budget {C:.3g} gives the {group} size {target:.3g} fewer "
                                      f"tokens than one batch ({tpb}); raise the budget or lower the batch")
                check_moved(target, counts, f"budget {C:.3g} {group}")
                add(cfg, counts, fpt, steps, budget=C, group=group, label=label, target=target)
    if not cells:
        raise ConfigError("grid: expands to no cells; check sizes and budgets")
    return Plan(sweep=sweep, cells=tuple(cells), rows=tuple(rows), warnings=tuple(warnings))


# ----------------------------------------------------------------------------------------
# Loading experiment files
# ----------------------------------------------------------------------------------------


def load_sweep(path: str | os.PathLike) -> Sweep:
    """Load an experiment file by path; it defines ``SWEEP = Sweep(...)`` or ``def sweep()``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"experiment {path}: no such file; pass a path such as experiments/quickstart.py")
    mod_name = f"_scaling_experiment_{p.stem}"
    spec = importlib.util.spec_from_file_location(mod_name, p)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    folder = str(p.resolve().parent)
    sys.path.insert(0, folder)  # experiments may import their neighbours (e.g. a shared recipe)
    try:
        spec.loader.exec_module(mod)
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
