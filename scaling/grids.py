"""Sweep grids: which (size, tokens) cells an experiment trains, and the prior they are centred on.

A grid is data (a frozen dataclass) with two methods: ``validate()`` raises one
:class:`~scaling.config.ConfigError` for a malformed grid, and ``expand(planner)`` asks the
:class:`scaling.sweep.Planner` for shapes (``planner.model(size)``) and adds cells
(``planner.add(...)``), with warnings for what a researcher should read before spending compute.

* :class:`NxD`: Chinchilla Approach 1 (several token horizons per size, each its own cosine run);
* :class:`IsoFLOP`: Approaches 2/3 (per budget, sizes log-spaced around a prior optimum);
* :class:`Allocation`: Chinchilla-rule vs Kaplan-rule size at equal compute;
* :class:`WSDFork`: Approach 1/3 data at a fraction of the cost (one constant-LR trunk per
  size, each horizon a fork that cools down from the trunk's checkpoint);
* :class:`Ladder`: a pre-registered run: the compute-optimal cell at a larger budget, its loss
  predicted (with an interval) from a smaller sweep's law before it trains.
* :class:`HPGrid`: hyperparameter sweeps (sizes x horizons x peak LRs, optionally x batch
  sizes and x parametrization), the data behind ``scaling fit-hp``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Union

from scaling.config import PARAMETRIZATIONS, ConfigError

if TYPE_CHECKING:
    from scaling.sweep import Planner

KAPLAN_EXPONENT = 0.73  # Kaplan et al. 2020: N_opt ∝ C^0.73


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
        """Hoffmann et al.'s fitted law, as printed (``analysis.published.CHINCHILLA_ROUNDED``)."""
        from analysis.published import CHINCHILLA_ROUNDED

        return cls(G=CHINCHILLA_ROUNDED.G, a=CHINCHILLA_ROUNDED.a)

    @classmethod
    def from_results(cls, path: str | os.PathLike, *, n_col: str = "n_non_embedding", loss_col: str = "eval_loss",
                     budget_col: str = "budget", max_budget: float | None = None) -> "Prior":
        """A prior fitted on finished smaller budgets (a results.csv of an earlier sweep).

        Per budget, a parabola in log N through (log N, loss) gives the IsoFLOP minimum; a line
        through (log C/6, log N_opt) gives ``N_opt = G (C/6)^a`` (:func:`analysis.vertices.vertex_power_law`).
        Needs >= 2 budgets with an interior minimum; raises ConfigError otherwise.  Pure numpy
        (planning stays instant).
        """
        import csv

        from analysis.vertices import vertex_power_law

        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"Prior.from_results({path!r}): no such file; point it at a sweep's results.csv")
        groups: dict[float, tuple[list[float], list[float]]] = {}
        with open(p) as f:
            for row in csv.DictReader(f):
                try:
                    if row.get("state", "done") != "done":
                        continue
                    C, n, loss = float(row[budget_col]), float(row[n_col]), float(row[loss_col])
                except (KeyError, TypeError, ValueError):
                    continue
                if max_budget is None or C <= max_budget:
                    xs, ys = groups.setdefault(C / 6.0, ([], []))
                    xs.append(math.log(n))
                    ys.append(loss)
        fit = vertex_power_law(groups)
        if len(fit.included) < 2:
            raise ConfigError(f"Prior.from_results({path!r}): fewer than 2 budgets with an interior IsoFLOP "
                              f"minimum; use Prior(tokens_per_param=...) instead")
        return cls(G=float(math.exp(fit.intercept)), a=float(fit.slope))

    def n_opt(self, budget: float) -> float:
        if self.G is not None and self.a is not None:
            return self.G * (budget / 6.0) ** self.a
        return math.sqrt(budget / (6.0 * self.tokens_per_param))


Size = Union[float, int, str]


def _check_budgets(budgets) -> None:
    if len(budgets) == 0:
        raise ConfigError("grid.budgets: empty; give at least one FLOP budget, e.g. budgets=(1e13, 3e13, 1e14)")
    for b in budgets:
        if not (isinstance(b, (int, float)) and math.isfinite(b) and b > 0):
            shown = f"{b:g}" if isinstance(b, (int, float)) else repr(b)
            raise ConfigError(f"grid.budgets: {shown} is not a positive FLOP budget; use e.g. 1e14")
    _check_unique("grid.budgets", "budget", budgets)


def _check_unique(field: str, what: str, values) -> None:
    """Each value once: a repeat would plan the same cells twice, and the planner drops the copies."""
    seen = set()
    for v in values:
        if v in seen:
            shown = f"{v:g}" if isinstance(v, (int, float)) else repr(v)
            raise ConfigError(f"{field}: duplicate {what} {shown}; list each {what} once")
        seen.add(v)


def _check_horizons(grid) -> None:
    """Sizes given, and exactly one non-empty list of positive horizons (``tokens`` or ``tokens_per_param``)."""
    if not grid.sizes:
        raise ConfigError("grid.sizes: empty; give at least one size (a parameter count or member name)")
    if bool(grid.tokens) == bool(grid.tokens_per_param):
        raise ConfigError("grid: give exactly one of tokens=(...) or tokens_per_param=(...), non-empty")
    for t in grid.tokens + grid.tokens_per_param:
        if not (isinstance(t, (int, float)) and t > 0):
            raise ConfigError(f"grid token horizon {t!r}: must be positive")
    _check_unique("grid.sizes", "size", grid.sizes)
    _check_unique("grid.tokens" if grid.tokens else "grid.tokens_per_param", "horizon",
                  grid.tokens or grid.tokens_per_param)


def _check_lrs(lrs) -> None:
    for lr in lrs:
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ConfigError(f"grid.peak_lrs: {lr!r} is not a positive learning rate")
    _check_unique("grid.peak_lrs", "learning rate", lrs)


def _fmt_num(x: float) -> str:
    return f"{x:.2g}".replace("e+0", "e").replace("e+", "e")


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

    def validate(self) -> None:
        _check_horizons(self)
        _check_lrs(self.peak_lrs)

    def expand(self, pl: "Planner") -> None:
        for size in self.sizes:
            cfg, counts, fpt = pl.model(size)
            target = float(size) if not isinstance(size, str) else None
            pl.check_moved(target, counts, f"size {size}")
            n = pl.n_of(counts)
            horizons = [float(t) for t in self.tokens] or [k * n for k in self.tokens_per_param]
            for t in horizons:
                steps = int(t // pl.tokens_per_step)
                if steps < 1:
                    r = pl.recipe
                    raise ConfigError(f"grid tokens={t:.3g} for size {size}: below one batch ({r.batch_size} x "
                                      f"{r.seq_len} = {pl.tokens_per_step} tokens); raise the horizon or lower "
                                      f"recipe.batch_size")
                label = f"{cfg.name or _fmt_num(n)}-D{_fmt_num(t)}"
                for lr in (self.peak_lrs or (None,)):
                    pl.add(cfg, counts, fpt, steps, budget=None, group="nxd" if lr is None else "lr_sweep",
                           label=label if lr is None else f"{label}-lr{lr:.2g}", target=target, peak_lr=lr)


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

    def validate(self) -> None:
        _check_budgets(self.budgets)
        if self.n_sizes < 1:
            raise ConfigError(f"grid.n_sizes={self.n_sizes}: must be >= 1 (5-9 recommended)")
        if not self.span > 1:
            raise ConfigError(f"grid.span={self.span}: must be > 1 (ratio of the largest size to the centre)")
        if self.centres and len(self.centres) != len(self.budgets):
            raise ConfigError(f"grid.centres: {len(self.centres)} given for {len(self.budgets)} budgets; "
                              f"give one per budget")

    def expand(self, pl: "Planner") -> None:
        k, conv, tpb = self.n_sizes, pl.recipe.flops_convention, pl.tokens_per_step
        for bi, C in enumerate(self.budgets):
            centre = self.centres[bi] if self.centres else self.prior.n_opt(C)
            exps = [0.0] if k == 1 else [-1 + 2 * i / (k - 1) for i in range(k)]
            kept_n: list[float] = []
            for e in exps:
                target = centre * self.span ** e
                try:
                    cfg, counts, fpt = pl.model(target)
                except ConfigError as err:
                    pl.warn(f"budget {C:.3g}: dropped size {target:.3g} ({err})")
                    continue
                steps = int(round(C / fpt[conv] / tpb))
                if steps < 1:
                    pl.warn(f"budget {C:.3g}: dropped size {target:.3g} (tokens {C / fpt[conv]:.3g} below "
                            f"one batch of {tpb})")
                    continue
                pl.check_moved(target, counts, f"budget {C:.3g} size {target:.3g}")
                if pl.add(cfg, counts, fpt, steps, budget=C, group="isoflop", label=f"C{_fmt_num(C)}-N{_fmt_num(target)}",
                          target=target):
                    kept_n.append(pl.n_of(counts))
                    a = steps * tpb * fpt[conv]
                    if abs(a / C - 1) > 0.05:
                        pl.warn(f"budget {C:.3g} size {target:.3g}: whole batches give {a:.3g} FLOPs "
                                f"({100 * (a / C - 1):+.0f}%)")
            if not kept_n:
                raise ConfigError(f"grid.budgets: budget {C:.3g} leaves no size with at least one batch of "
                                  f"{tpb} tokens; raise the budget or lower recipe.batch_size")
            _check_bracket(pl, C, centre, kept_n)


def _check_bracket(pl: "Planner", C: float, centre: float, kept_n: list[float]) -> None:
    """Warn when a budget's sizes cannot locate an interior IsoFLOP minimum around ``centre``."""
    if len(set(kept_n)) < 3:
        pl.warn(f"budget {C:.3g}: only {len(set(kept_n))} distinct sizes; a parabola needs >= 3 "
                f"to bracket an interior minimum")
    lo, hi = min(kept_n), max(kept_n)
    if not (lo < centre < hi):
        pl.warn(f"budget {C:.3g}: sizes [{lo:.3g}, {hi:.3g}] cannot bracket the predicted "
                f"optimum {centre:.3g}; widen span or move the centre")
    elif hi > lo:
        mid = math.sqrt(lo * hi)
        if abs(math.log(centre / mid)) > 0.25 * math.log(hi / lo):
            pl.warn(f"budget {C:.3g}: grid off-centre: predicted optimum {centre:.3g} vs grid middle {mid:.3g}")


def _add_at_budget(pl: "Planner", target: float, C: float, *, field: str, group: str, label: str):
    """Plan the cell of size ``target`` that spends budget ``C`` (in the recipe's FLOP convention);
    ``(cell or None for a duplicate, its parameter counts)``."""
    cfg, counts, fpt = pl.model(target)
    tpb = pl.tokens_per_step
    steps = int(round(C / fpt[pl.recipe.flops_convention] / tpb))
    if steps < 1:
        raise ConfigError(f"{field}: budget {C:.3g} gives the {group} size {target:.3g} fewer tokens than one batch "
                          f"({tpb}); raise the budget or lower the batch")
    pl.check_moved(target, counts, f"budget {C:.3g} {group}")
    return pl.add(cfg, counts, fpt, steps, budget=C, group=group, label=label, target=target), counts


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

    def validate(self) -> None:
        _check_budgets(self.budgets)
        if self.anchor is not None and not self.anchor > 0:
            raise ConfigError(f"grid.anchor={self.anchor}: must be a positive FLOP budget")

    def expand(self, pl: "Planner") -> None:
        anchor = self.anchor if self.anchor is not None else min(self.budgets) / self.anchor_factor
        n_anchor = self.prior.n_opt(anchor)
        for C in self.budgets:
            for group, target in (("chinchilla_rule", self.prior.n_opt(C)),
                                  ("kaplan_rule", n_anchor * (C / anchor) ** self.kaplan_exponent)):
                _add_at_budget(pl, target, C, field="grid.budgets", group=group,
                               label=f"C{_fmt_num(C)}-{group.split('_')[0]}")




@dataclasses.dataclass(frozen=True)
class Ladder:
    """The next rung of a ladder, pre-registered: per target budget C, the compute-optimal cell of the
    law fitted on a smaller sweep's results (``fit``: its sweep directory or results table), with
    its loss predicted by :func:`analysis.predict` *before* it trains.

    The prediction (N, D, loss, parameter and prediction intervals, the fit it came from) is a
    plan-row field (``prediction``) that ``scaling sweep`` writes into the cell's run directory
    as ``prediction.json`` before any worker starts, and never rewrites; the results table and
    report score it against the measured loss.  Column names are those of our results table;
    N is counted in the sweep's ``n_basis``.
    """

    fit: str
    target_c: tuple[float, ...]
    law: str = "chinchilla"
    level: float = 0.95
    K: int = 200
    loss_col: str = "eval_loss"
    d_col: str = "tokens"
    budget_col: str = "budget"

    def validate(self) -> None:
        if not Path(self.fit).exists():
            raise ConfigError(f"grid.fit: {self.fit} does not exist; pass the smaller sweep's directory or its "
                              f"results table")
        _check_budgets(self.target_c)
        if not 0 < self.level < 1:
            raise ConfigError(f"grid.level={self.level}: must be in (0, 1), e.g. 0.95")

    def expand(self, pl: "Planner") -> None:
        from analysis import approaches as ap
        from analysis.data import done_runs, load_results
        from analysis.prediction import bias_warning, predict

        df, _ = done_runs(load_results(self.fit, what="grid.fit"))
        n_col = {"total": "n_total", "non_embedding": "n_non_embedding"}[pl.sweep.n_basis]
        cols = dict(loss_col=self.loss_col, n_col=n_col, d_col=self.d_col, budget_col=self.budget_col)
        fit3 = ap.fit_approach3(df, **cols, law=self.law)
        largest = float(df[self.budget_col].max()) if self.budget_col in df else float(fit3.c_ref)
        for C in self.target_c:
            if C <= largest:
                raise ConfigError(f"grid.target_c: {C:.3g} is not above the fit's largest budget {largest:.3g}; a "
                                  f"ladder rung predicts beyond its data: raise target_c (e.g. {10 * largest:.3g})")
            cell, counts = _add_at_budget(pl, float(fit3.n_opt(C)), C, field="grid.target_c", group="ladder",
                                          label=f"C{_fmt_num(C)}-ladder")
            if cell is None:
                continue
            N, D = float(pl.n_of(counts)), float(cell.tokens_trained)
            res = predict(df, [(N, D)], **cols, law=self.law, K=self.K, level=self.level)
            p = res["predictions"][0]
            bias = bias_warning(res["calibration"])
            if bias:  # read before the rung is trained, not after
                pl.warn(f"grid.target_c {C:.3g}: {bias}")
            pl.rows[-1]["prediction"] = {
                "N": N, "D": D, "C": p["C"], "loss": p["loss"], "ci": p["ci"], "pi": p["pi"], "level": self.level,
                "extrapolation": p["extrapolation"], "law": res["law"], "calibration": {
                    k: res["calibration"].get(k) for k in ("n_levels", "coverage", "growth_per_decade", "growth_own", "z",
                                                       "mean_signed_rel_error", "share_over_predicted")},
                "warnings": [bias] if bias else [],
                "fit": str(Path(self.fit).resolve()), "fit_runs": int(len(df)), "n_basis": pl.sweep.n_basis}


DECAY_SHAPES = ("linear", "1-sqrt", "cosine")


@dataclasses.dataclass(frozen=True)
class WSDFork:
    """Per size, one warmup-stable trunk and one cooled-down fork per token horizon.

    For horizon H (``tokens`` or ``tokens_per_param`` x N, rounded down to whole batches) the
    fork is a ``wsd`` run of H whose decay covers its last ``decay_frac`` (shape
    ``decay_shape``) down to ``final_lr_frac x peak``.  Up to its decay start, step
    ``H_steps - round(decay_frac x H_steps)``, a WSD run is the stable trunk: so the fork
    starts from the trunk's checkpoint at that step (params, optimizer state, data position,
    PRNG key) and trains only its cooldown.  The trunk (group ``wsd_trunk``: warmup, then the
    constant peak LR; never annealed, so fits exclude it) trains to the largest fork step and
    checkpoints exactly at every fork step, keeping them.  Every member of a size shares the
    warmup (the recipe's, ``warmup_frac`` taken of the shortest horizon) and the peak LR (the
    recipe's ``lr_rule``), so each fork is step for step the independent WSD run of its
    horizon (group ``wsd_fork``).  With ``peak_lrs`` every size gets one trunk (and its forks)
    per learning rate instead: a WSD LR sweep (``experiments/wsd_lr_sweep.py``).
    """

    sizes: tuple[Size, ...]
    tokens: tuple[float, ...] = ()
    tokens_per_param: tuple[float, ...] = ()
    decay_frac: float = 0.2
    decay_shape: str = "linear"
    peak_lrs: tuple[float, ...] = ()  # non-empty: one trunk per (size, LR) (an LR sweep)

    def validate(self) -> None:
        _check_horizons(self)
        _check_lrs(self.peak_lrs)
        if not (isinstance(self.decay_frac, (int, float)) and 0 < self.decay_frac < 1):
            raise ConfigError(f"grid.decay_frac={self.decay_frac!r}: must be in (0, 1) (Hägele et al.: 0.2)")
        if self.decay_shape not in DECAY_SHAPES:
            raise ConfigError(f"grid.decay_shape={self.decay_shape!r}: choose one of {DECAY_SHAPES}")

    def expand(self, pl: "Planner") -> None:
        from scaling.optim import decay_start, effective_warmup

        r, tpb = pl.recipe, pl.tokens_per_step
        for size in self.sizes:
            cfg, counts, fpt = pl.model(size)
            target = float(size) if not isinstance(size, str) else None
            pl.check_moved(target, counts, f"size {size}")
            n = pl.n_of(counts)
            name = cfg.name or _fmt_num(n)
            horizons = sorted({float(t) for t in self.tokens} or {k * n for k in self.tokens_per_param})
            steps = [int(t // tpb) for t in horizons]
            fork_optim = dataclasses.replace(r.optim, schedule="wsd", decay_frac=float(self.decay_frac),
                                             decay_shape=self.decay_shape)
            # the recipe's warmup rule applied to the shortest horizon, shared by the trunk and every fork
            warmup = pl.make_cell(cfg, counts, max(steps[0], 1), budget=None, group="wsd_fork",
                                  label="warmup").optim.warmup_steps
            starts = []
            for t, h in zip(horizons, steps):
                k = decay_start(fork_optim, h) if h >= 2 else 0
                if k <= effective_warmup(dataclasses.replace(fork_optim, warmup_steps=warmup), h) or k < 1:
                    raise ConfigError(f"grid horizon {t:.3g} tokens for size {size}: {h} steps leave no stable "
                                      f"phase between the {warmup}-step warmup and the {h - k}-step cooldown; "
                                      f"lengthen the horizon (at least {warmup + 2} batches of {tpb} tokens)")
                starts.append(k)
            optim = dataclasses.replace(fork_optim, warmup_steps=warmup)
            # The trunk's schedule is constant: the decay numbers do not touch it, so they keep the
            # recipe's values and grids that differ only in their cooldowns share one trunk.
            trunk_optim = dataclasses.replace(optim, schedule="constant", decay_frac=r.optim.decay_frac,
                                              decay_shape=r.optim.decay_shape)
            for lr in (self.peak_lrs or (None,)):
                tag = "" if lr is None else f"-lr{lr:.2g}"
                trunk = pl.add(cfg, counts, fpt, max(starts), budget=None, group="wsd_trunk",
                               label=f"{name}{tag}-trunk", target=target, optim=trunk_optim, peak_lr=lr,
                               checkpoint_steps=tuple(sorted(set(starts))))
                for t, h, k in zip(horizons, steps, starts):
                    pl.add(cfg, counts, fpt, h, budget=None, group="wsd_fork", label=f"{name}-D{_fmt_num(t)}{tag}-wsd",
                           target=target, optim=optim, peak_lr=lr, trunk=trunk.run_id, fork_step=k)


@dataclasses.dataclass(frozen=True)
class HPGrid:
    """A hyperparameter sweep: every size x horizon x peak LR (x batch size) (x parametrization).

    Horizons are ``tokens`` (absolute, the same for every size: what a transfer check wants)
    or ``tokens_per_param``.  Learning rates are ``peak_lrs`` (absolute) or ``lr_factors``
    times the recipe's rule (``Recipe.lr_rule``, else ``optim.peak_lr``) at each cell; under
    ``mup``/``completep`` the rule is read at the ``base`` shape (muTransfer: the base model's
    LR serves every width).  ``batch_sizes``: every cell once per batch (steps =
    tokens // (batch x seq_len)); default the recipe's.  ``parametrizations``: every cell once
    per parametrization; ``base`` (a size of the same family) is the base shape they scale
    from (its d_model, n_layers and head size).  Each cell is an independent cosine (the
    recipe's schedule) run of group ``hp_sweep``; ``scaling fit-hp`` fits the table.
    """

    sizes: tuple[Size, ...]
    tokens: tuple[float, ...] = ()
    tokens_per_param: tuple[float, ...] = ()
    peak_lrs: tuple[float, ...] = ()
    lr_factors: tuple[float, ...] = ()
    batch_sizes: tuple[int, ...] = ()
    parametrizations: tuple[str, ...] = ()
    base: Size | None = None

    def validate(self) -> None:
        _check_horizons(self)
        if bool(self.peak_lrs) == bool(self.lr_factors):
            raise ConfigError("grid: give exactly one of peak_lrs=(...) (absolute) or lr_factors=(...) (times the "
                              "recipe's LR rule), non-empty")
        _check_lrs(self.peak_lrs)
        for f in self.lr_factors:
            if not (isinstance(f, (int, float)) and math.isfinite(f) and f > 0):
                raise ConfigError(f"grid.lr_factors: {f!r} is not a positive factor; use e.g. (0.25, 0.5, 1, 2, 4)")
        _check_unique("grid.lr_factors", "factor", self.lr_factors)
        if 0 < len(self.peak_lrs or self.lr_factors) < 3:
            raise ConfigError(f"grid: {len(self.peak_lrs or self.lr_factors)} learning rate(s) per group; a parabola "
                              f"in log LR needs >= 3 (5 a factor 2 apart is a good start)")
        for b in self.batch_sizes:
            if not (isinstance(b, int) and not isinstance(b, bool) and b >= 1):
                raise ConfigError(f"grid.batch_sizes: {b!r} is not a positive integer batch size")
        _check_unique("grid.batch_sizes", "batch size", self.batch_sizes)
        for p in self.parametrizations:
            if p not in PARAMETRIZATIONS:
                raise ConfigError(f"grid.parametrizations: {p!r}; choose from {PARAMETRIZATIONS}")
        _check_unique("grid.parametrizations", "parametrization", self.parametrizations)
        scaled = [p for p in self.parametrizations if p != "standard"]
        if scaled and self.base is None:
            raise ConfigError(f"grid.base: parametrization {scaled[0]!r} needs a base shape; set HPGrid(base=SIZE) "
                              f"(the size whose hyperparameters transfer, e.g. the smallest)")
        if self.base is not None and not scaled:
            raise ConfigError("grid.base: only mup/completep scale from a base shape; remove base or add "
                              "parametrizations=('standard', 'mup')")

    def expand(self, pl: "Planner") -> None:
        import dataclasses as dc

        base = pl.model(self.base)[0] if self.base is not None else None
        if base is not None:
            # muP's sqrt(D_base)/D attention scale is meant to absorb a head size that grows with the
            # width, but measured here it does not: LR* spread 1.78x with 2 heads at every width vs
            # 1.25x with heads of 8 (experiments/hp_transfer{,_heads}.py, docs/hyperparameters.md)
            sizes = sorted({pl.model(s)[0].kv_size for s in self.sizes} - {base.kv_size})
            if sizes:
                pl.warn(f"grid: head size {base.kv_size} at the base but {', '.join(map(str, sizes))} at other widths; "
                        f"muP transferred LR* far better with a fixed head size (heads = d_model / {base.kv_size}; "
                        f"docs/hyperparameters.md)")
        for param in (self.parametrizations or (None,)):
            for size in self.sizes:
                cfg, counts, fpt = pl.model(size)
                target = float(size) if not isinstance(size, str) else None
                pl.check_moved(target, counts, f"size {size}")
                n = pl.n_of(counts)
                rule_cfg, rule_counts = cfg, counts
                if param not in (None, "standard"):
                    kw = dict(parametrization=param, base_width=base.d_model)
                    if param == "completep":
                        kw["base_depth"] = base.n_layers
                    if base.kv_size * cfg.d_model != cfg.kv_size * base.d_model:  # not the derived default
                        kw["base_kv_size"] = base.kv_size
                    cfg = dc.replace(cfg, **kw).validate()
                    rule_cfg, rule_counts = base, pl.model(self.base)[1]
                name = cfg.name or _fmt_num(n)
                tag = "" if param is None else f"-{param}"
                for t in [float(x) for x in self.tokens] or [k * n for k in self.tokens_per_param]:
                    for b in (self.batch_sizes or (None,)):
                        tps = pl.recipe.seq_len * (b or pl.recipe.batch_size)
                        steps = int(t // tps)
                        if steps < 1:
                            raise ConfigError(f"grid tokens={t:.3g} for size {size}: below one batch ({tps} tokens); "
                                              f"raise the horizon or lower the batch size")
                        if self.peak_lrs:
                            lrs = [float(lr) for lr in self.peak_lrs]
                        else:
                            centre = pl.rule_lr(rule_cfg, rule_counts, steps * tps)
                            lrs = [float(f) * centre for f in self.lr_factors]
                        btag = "" if b is None else f"-b{b}"
                        for lr in lrs:
                            pl.add(cfg, counts, fpt, steps, budget=None, group="hp_sweep",
                                   label=f"{name}-D{_fmt_num(t)}{btag}-lr{lr:.3g}{tag}", target=target, peak_lr=lr,
                                   batch_size=b)
