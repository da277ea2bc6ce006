"""Hyperparameters by law (issue 23): vertices and intervals, law recovery, parametrizations, HPGrid, recipes.

Everything here is synthetic and small: the vertex/law tests are numpy on made-up tables with a
known optimum; the muP coordinate check trains 2-layer models of width 16 and 128 for 4 steps.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis import hp
from scaling.config import Cell, ConfigError, ModelConfig

TRUE = dict(c=0.5, a=-0.6, b=0.25)  # LR*(N, D) = c N^a D^b


def _true_lr(n, d):
    return TRUE["c"] * n ** TRUE["a"] * d ** TRUE["b"]


def synthetic_table(noise=0.002, seed=0, factors=(0.25, 0.5, 1, 2, 4), Ns=(1e4, 4e4, 1.6e5), Ds=(1e6, 4e6, 1.6e7),
                    lr_centre=None):
    """Runs whose loss is a parabola in log LR around the true law, plus noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in Ns:
        for d in Ds:
            opt = _true_lr(n, d)
            centre = lr_centre(n, d) if lr_centre else opt * 1.3  # the grid is not centred on the truth
            for f in factors:
                lr = centre * f
                loss = 2.0 + 0.08 * math.log(lr / opt) ** 2 + noise * rng.standard_normal()
                rows.append(dict(n_total=n, tokens=d, peak_lr=lr, eval_loss=loss, state="done"))
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ stage 1
def test_vertex_and_interval_recover_a_known_optimum():
    df = synthetic_table(noise=0.002)
    g = hp.best_lrs(df, bootstrap=200)
    assert len(g) == 9 and g.included.all()
    ratio = g.lr / _true_lr(g.N, g.D)
    assert np.all(np.abs(np.log(ratio)) < 0.1)  # within 10% of the true optimum
    assert np.all(g.lr_lo < g.lr) and np.all(g.lr < g.lr_hi)
    covered = ((g.lr_lo <= _true_lr(g.N, g.D)) & (_true_lr(g.N, g.D) <= g.lr_hi)).mean()
    assert covered >= 0.6  # a 95% interval on 5 points: most groups cover the truth
    # more noise, wider intervals
    g_noisy = hp.best_lrs(synthetic_table(noise=0.02), bootstrap=200)
    width = lambda t: np.log(t.lr_hi / t.lr_lo).median()  # noqa: E731
    assert width(g_noisy) > 2 * width(g)


def test_a_group_without_interior_minimum_is_reported_and_left_out():
    df = synthetic_table(noise=0.0)
    # every LR of the first group far above its optimum: monotone losses, vertex outside the range
    first = (df.n_total == 1e4) & (df.tokens == 1e6)
    df.loc[first, "peak_lr"] *= 64
    df.loc[first, "eval_loss"] = 2.0 + 0.08 * np.log(df.loc[first, "peak_lr"] / _true_lr(1e4, 1e6)) ** 2
    g = hp.best_lrs(df, bootstrap=0)
    row = g[(g.N == 1e4) & (g.D == 1e6)].iloc[0]
    assert not row.included and "not interior" in row.reason and math.isnan(row.lr)
    law = hp.fit_law(hp.best_lrs(df, bootstrap=20, samples=True), bootstrap=20)
    assert law.n_groups == 8


def _width_table(k, noise, seed=0):
    """One horizon, three widths; the true best LR is 0.01 * (N / 1e4)^k (k = 0: perfect transfer)."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in (1e4, 4e4, 1.6e5):
        opt = 0.01 * (n / 1e4) ** k
        for f in 2.0 ** np.arange(-1.5, 2.0, 0.5):  # 7 LRs sqrt(2) apart, not centred on the truth
            loss = 2.0 + 0.08 * math.log(f) ** 2 + noise * rng.standard_normal()
            rows.append(dict(n_total=n, tokens=1e6, peak_lr=opt * f * 1.2, eval_loss=loss, state="done"))
    return pd.DataFrame(rows)


def test_lr_spread_interval_and_noise_floor():
    # perfect transfer: the spread is noise, inside the noise floor
    flat = hp.lr_spread(hp.best_lrs(_width_table(0.0, noise=0.004), bootstrap=200, samples=True))
    assert flat["n"] == 3 and flat["draws"] > 100
    assert 1.0 <= flat["spread"] < 1.3 and flat["ci"][0] <= flat["spread"] <= flat["ci"][1]
    assert flat["spread"] <= flat["null_hi"] and 1.0 <= flat["null_median"] <= flat["null_hi"]
    # LR* falls 4x over the widths: the spread finds it, its interval covers it and excludes the noise floor
    tilted = hp.lr_spread(hp.best_lrs(_width_table(-0.5, noise=0.004), bootstrap=200, samples=True))
    assert abs(math.log(tilted["spread"] / 4.0)) < 0.15
    # (a range of noisy values is biased upwards, so the interval sits at or above the truth)
    assert tilted["ci"][0] <= 4.0 * 1.1 and tilted["ci"][1] >= 4.0 and tilted["ci"][0] > tilted["null_hi"]
    # more noise, a higher noise floor; without samples, no interval
    noisy = hp.lr_spread(hp.best_lrs(_width_table(0.0, noise=0.03), bootstrap=200, samples=True))
    assert noisy["null_hi"] > flat["null_hi"]
    bare = hp.lr_spread(hp.best_lrs(_width_table(0.0, noise=0.004), bootstrap=0))
    assert math.isfinite(bare["spread"]) and math.isnan(bare["ci"][0]) and bare["draws"] == 0


# ------------------------------------------------------------------------------ stage 2
def test_law_recovered_from_synthetic_vertices_with_intervals():
    out = hp.fit_hp(synthetic_table(noise=0.002), bootstrap=200, at=[(1e5, 1e7)])
    law = out["law"]
    a, b = law.exponents
    assert law.variables == ("N", "D")
    assert abs(a - TRUE["a"]) < 0.05 and abs(b - TRUE["b"]) < 0.05
    assert law.ci["N"][0] <= TRUE["a"] <= law.ci["N"][1]
    assert law.ci["D"][0] <= TRUE["b"] <= law.ci["D"][1]
    p = out["predictions"][0]
    assert abs(math.log(p["lr"] / _true_lr(1e5, 1e7))) < 0.1 and p["lr_ci"][0] < p["lr"] < p["lr_ci"][1]
    # DeepSeek's form in C = 6ND: one exponent; the N-only form on a table with one D
    c_law = hp.fit_hp(synthetic_table(), law="c", bootstrap=0)["law"]
    assert c_law.variables == ("C",) and math.isfinite(c_law.exponents[0])
    one_d = synthetic_table(Ds=(4e6,))
    n_law = hp.fit_hp(one_d, law="n", bootstrap=0)["law"]
    assert abs(n_law.exponents[0] - TRUE["a"]) < 0.05


def test_collinear_design_is_refused_with_the_fix():
    df = synthetic_table(Ds=(1e6,), lr_centre=lambda n, d: _true_lr(n, 100 * n))
    df["tokens"] = 100 * df["n_total"]  # one tokens-per-parameter ratio: log N and log D collinear
    with pytest.raises(ConfigError, match="collinear.*--law n"):
        hp.fit_hp(df, bootstrap=0)


def test_batch_law_when_batch_varies():
    rows = []
    for n in (1e4, 4e4, 1.6e5):
        for d in (1e6, 4e6, 1.6e7):
            b_opt = 0.01 * d ** 0.5
            for bs in (b_opt / 4, b_opt / 2, b_opt, b_opt * 2, b_opt * 4):
                for f in (0.25, 0.5, 1, 2, 4):
                    lr = _true_lr(n, d) * f * 1.2
                    loss = 2 + 0.08 * math.log(f * 1.2) ** 2 + 0.05 * math.log(bs / b_opt) ** 2
                    rows.append(dict(n_total=n, tokens=d, peak_lr=lr, eval_loss=loss, batch_size=bs))
    out = hp.fit_hp(pd.DataFrame(rows), batch_col="batch_size", bootstrap=0, at=[(1e5, 1e7)])
    bl = out["batch_law"]
    assert bl.target == "batch" and abs(dict(zip(bl.variables, bl.exponents))["D"] - 0.5) < 0.05
    assert "B" in out["law"].variables and "B" in out["predictions"][0]
    # a batch law is a recipe batch_rule: the rounded B* at the cell's N and tokens
    import argparse

    b = bl(ModelConfig(vocab_size=64, seq_len=16, d_model=32, n_layers=2, n_heads=2, kv_size=16, ffw_size=128),
           argparse.Namespace(total=4e4), 4e6)
    assert isinstance(b, int) and b == round(bl.predict(N=4e4, D=4e6))


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("mutate, words", [
    (lambda d: d.assign(peak_lr=d.groupby(["n_total", "tokens"]).peak_lr.transform("first")),
     ["'peak_lr' holds one value per", "--lr-col"]),
    (lambda d: d.assign(peak_lr=np.where(d.index == 3, 0.0, d.peak_lr)), ["non-positive", "'peak_lr'"]),
    (lambda d: d.groupby(["n_total", "tokens"]).head(2), ["no (n_total, tokens) group has 3", ">= 3"]),
    (lambda d: d.drop(columns=["tokens"]), ["'tokens' not in table", "--d-col"]),
    (lambda d: d.assign(eval_loss="x"), ["'eval_loss'", "not numeric"]),
])
def test_bad_tables_are_one_line_config_errors(mutate, words):
    with pytest.raises(ConfigError) as e:
        hp.fit_hp(mutate(synthetic_table()), bootstrap=0)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_several_parametrizations_need_a_choice():
    df = pd.concat([synthetic_table().assign(parametrization="standard"),
                    synthetic_table(seed=1).assign(parametrization="mup")])
    with pytest.raises(ConfigError, match="--parametrization"):
        hp.fit_hp(df, bootstrap=0)
    assert hp.fit_hp(df, bootstrap=0, parametrization="mup")["law"].parametrization == "mup"


# ------------------------------------------------------------------------------ recipes read a law file
def test_recipe_reads_a_law_file(tmp_path):
    from scaling.sweep import NxD, Recipe, Sweep, plan

    out = hp.fit_hp(synthetic_table(), bootstrap=20, table="synthetic.csv")
    path = out["law"].save(tmp_path / "hp_law.json")
    law = hp.HPLaw.load(path)
    assert law == dataclasses.replace(out["law"])  # the file round-trips exactly
    saved = json.loads((tmp_path / "hp_law.json").read_text())
    assert saved["table"] == "synthetic.csv" and saved["columns"]["lr_col"] == "peak_lr"
    sweep = Sweep(name="t", recipe=Recipe(seq_len=32, batch_size=4, lr_rule=law, vocab_size=64),
                  grid=NxD(sizes=(2e4, 8e4), tokens=(1e5, 4e5)))
    p = plan(sweep, estimate=False, backend="cpu")
    for c, r in zip(p.cells, p.rows):
        assert c.optim.peak_lr == pytest.approx(law.predict(N=r["n_total"], D=c.tokens))
    assert len({c.optim.peak_lr for c in p.cells}) == 4  # depends on N and on D
    # another parametrization than the law's: refused at planning, naming both
    mup = dataclasses.replace(sweep, recipe=dataclasses.replace(sweep.recipe, model_overrides=(
        ("parametrization", "mup"), ("base_width", 32))))
    with pytest.raises(ConfigError, match="parametrization='standard'.*'mup'"):
        plan(mup, estimate=False, backend="cpu")
    # a law fitted on columns a recipe cannot supply
    other = dataclasses.replace(law, columns=dict(law.columns, n_col="params"))
    with pytest.raises(ConfigError, match="N column 'params'"):
        plan(dataclasses.replace(sweep, recipe=dataclasses.replace(sweep.recipe, lr_rule=other)), estimate=False,
             backend="cpu")
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ConfigError, match="not an HP law file"):
        hp.HPLaw.load(tmp_path / "bad.json")


# ------------------------------------------------------------------------------ parametrizations
def _cfg(d, **kw):
    return ModelConfig(vocab_size=64, seq_len=16, d_model=d, n_layers=2, n_heads=2, kv_size=d // 2, ffw_size=4 * d,
                       scan_layers=False, attention="einsum", compute_dtype="float32", **kw)


def test_parametrization_validation_and_identity():
    with pytest.raises(ConfigError, match="needs a base shape.*base_width"):
        _cfg(32, parametrization="mup").validate()
    with pytest.raises(ConfigError, match="base_depth"):
        _cfg(32, parametrization="completep", base_width=16).validate()
    with pytest.raises(ConfigError, match="does not use it"):
        _cfg(32, base_width=16).validate()
    with pytest.raises(ConfigError, match="choose one of"):
        _cfg(32, parametrization="ntk", base_width=16).validate()
    std = Cell(model=_cfg(32), tokens=4096, batch_size=4)
    mup = dataclasses.replace(std, model=_cfg(32, parametrization="mup", base_width=16))
    assert "parametrization" not in std.result_fields()["model"]  # standard runs keep their ids
    assert mup.run_id != std.run_id


def test_base_shape_computes_what_standard_computes():
    import jax
    import jax.numpy as jnp

    from scaling.model import Decoder

    x = jnp.asarray(np.random.default_rng(0).integers(1, 64, size=(2, 16)), jnp.int32)
    outs = []
    for kw in ({}, dict(parametrization="mup", base_width=32),
               dict(parametrization="completep", base_width=32, base_depth=2)):
        m = Decoder(_cfg(32, **kw))
        params = m.init(jax.random.PRNGKey(0), x)["params"]
        outs.append(np.asarray(m.apply({"params": params}, x)))
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


def _coordinate_check(param, widths=(16, 128), steps=4, lr=3e-2):
    """Per-layer RMS change of the activations (block outputs, logits) after ``steps`` Adam steps."""
    import jax
    import jax.numpy as jnp

    from scaling.model import Decoder
    from scaling.optim import init_opt_state, make_optimizer

    toks = jnp.asarray(np.random.default_rng(0).integers(1, 64, size=(8, 17)), jnp.int32)
    x, y = toks[:, :-1], toks[:, 1:]
    out = []
    for d in widths:
        kw = {} if param == "standard" else dict(parametrization=param, base_width=widths[0])
        model = Decoder(_cfg(d, **kw))
        params = jax.tree.map(lambda b: getattr(b, "value", b), model.init(jax.random.PRNGKey(0), x)["params"],
                              is_leaf=lambda b: hasattr(b, "value"))
        hp_ = {"learning_rate": lr, "b1": 0.9, "b2": 0.95, "eps": 1e-8, "weight_decay": 0.0, "clip_norm": 1e9}
        opt = make_optimizer(hp_, model.cfg)

        @jax.jit
        def step(p, s):
            """One Adam step, and the activations (block outputs, logits) of the parameters it started from."""
            def loss(q):
                lg, st = model.apply({"params": q}, x, capture_intermediates=True, mutable=["intermediates"])
                acts = [st["intermediates"][f"layers_{i}"]["__call__"][0] for i in range(2)] + [lg]
                return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(lg), y[..., None], -1)), acts
            (_, acts), g = jax.value_and_grad(loss, has_aux=True)(p)
            u, s = opt.update(g, s, p)
            return jax.tree.map(jnp.add, p, u), s, acts

        p, s = params, init_opt_state(params)
        for i in range(steps + 1):  # the last call only reads the activations after `steps` updates
            p, s, acts = step(p, s)
            a0 = acts if i == 0 else a0
        out.append([float(jnp.sqrt(jnp.mean((b - a) ** 2))) for a, b in zip(a0, acts)])
    arr = np.asarray(out)
    return arr.max(0) / arr.min(0)


def test_mup_coordinate_check():
    """Across an 8x width range, after 4 steps: under mup every layer's activation change stays
    within 2x; under standard the hidden layers' drift far more (they grow with width)."""
    mup = _coordinate_check("mup")
    std = _coordinate_check("standard")
    assert np.all(mup < 2.0), mup
    assert np.all(std[:2] > 4.0), std


def test_completep_at_one_depth_is_mup_with_width_independent_weight_decay():
    from scaling import parametrization as pz

    mup = _cfg(64, parametrization="mup", base_width=16)
    cp = _cfg(64, parametrization="completep", base_width=16, base_depth=mup.n_layers)
    for group in ("hidden", "block_norm", "vector"):
        (a1, w1, e1), (a2, w2, e2) = pz.adam_multipliers(mup, group), pz.adam_multipliers(cp, group)
        assert (a1, e1) == (a2, e2)
        assert w2 == (4.0 if group == "hidden" else 1.0) and w1 == 1.0  # LR x WD: 1/4 under mup, 1 under completep
    for f in (pz.embed_std, pz.init_depth, pz.residual_multiplier, pz.attention_scale, pz.output_multiplier):
        assert f(mup) == f(cp)


def test_per_parameter_multipliers_are_adamw_per_group_with_the_standard_state():
    """Under completep, a hidden matrix's update is AdamW with LR/m, weight decay x m and eps / (m l);
    an embedding's is AdamW with eps / m; the optimizer state has the standard structure (checkpoints)."""
    import jax
    import jax.numpy as jnp
    import optax

    from scaling.optim import HPARAMS, init_opt_state, make_optimizer
    from scaling.parametrization import adam_multipliers, group_of

    cfg = _cfg(64, parametrization="completep", base_width=16, base_depth=1)  # m = 4, l = 2
    assert group_of(("layers_0", "attn", "q")) == "hidden" and group_of(("final_norm", "scale")) == "vector"
    assert group_of(("layers_1", "pre_mlp_norm", "scale")) == "block_norm"
    assert adam_multipliers(cfg, "hidden") == (0.25, 4.0, 1 / 8)
    assert adam_multipliers(cfg, "vector") == (1.0, 1.0, 0.25)
    rng = np.random.default_rng(0)
    params = {"token_embed": {"embedding": jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)},
              "layers_0": {"attn": {"q": jnp.asarray(rng.normal(size=(4, 2, 3)), jnp.float32)}}}
    grads = jax.tree.map(lambda x: jnp.asarray(1e-6 * rng.normal(size=x.shape), jnp.float32), params)
    hp_ = dict(zip(HPARAMS, (1e-2, 0.9, 0.95, 1e-6, 0.1, 1e9)))
    state = init_opt_state(params)
    assert jax.tree.structure(make_optimizer(hp_, cfg).init(params)) == jax.tree.structure(state)
    u, _ = make_optimizer(hp_, cfg).update(grads, state, params)
    for path, (a, w, k) in ((("layers_0", "attn", "q"), (0.25, 4.0, 1 / 8)), (("token_embed", "embedding"), (1, 1, .25))):
        p, g = params[path[0]][path[1]], grads[path[0]][path[1]]
        if len(path) == 3:
            p, g = p[path[2]], g[path[2]]
        ref = optax.adamw(a * 1e-2, b1=0.9, b2=0.95, eps=k * 1e-6, weight_decay=w * 0.1)
        want, _ = ref.update(g, ref.init(p), p)
        got = u[path[0]][path[1]][path[2]] if len(path) == 3 else u[path[0]][path[1]]
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-5, atol=1e-9)


# ------------------------------------------------------------------------------ HPGrid
def _qs_sweep(grid):
    from scaling.sweep import Recipe, Sweep

    return Sweep(name="g", recipe=Recipe(seq_len=32, batch_size=4, vocab_size=64,
                                         lr_rule=lambda cfg, counts: 1e-3 * (counts.total / 1e4) ** -0.5),
                 grid=grid)


def test_hpgrid_plans_lr_factors_around_the_rule_and_the_base_under_mup():
    from scaling.sweep import HPGrid, plan

    grid = HPGrid(sizes=(2e4, 8e4), tokens=(1e5, 2e5), lr_factors=(0.5, 1, 2), batch_sizes=(4, 8),
                  parametrizations=("standard", "mup"), base=2e4)
    p = plan(_qs_sweep(grid), estimate=False, backend="cpu")
    assert len(p.cells) == 2 * 2 * 3 * 2 * 2
    by = {}
    for c, r in zip(p.cells, p.rows):
        by.setdefault((c.model.parametrization, c.model.d_model, c.batch_size, c.tokens), []).append(c.optim.peak_lr)
        assert c.tokens == c.steps * c.batch_size * 32
    base_d = min(k[1] for k in by)
    for (param, d, b, t), lrs in by.items():
        assert len(lrs) == 3 and lrs[2] / lrs[0] == pytest.approx(4)
        if param == "mup":  # every width centred on the base's LR
            assert lrs == by[("mup", base_d, b, t)]
    wide = [c for c in p.cells if c.model.parametrization == "mup" and c.model.d_model > base_d][0]
    assert wide.model.base_width == base_d


def test_hp_transfer_experiments_plan_an_8x_width_range_from_one_base():
    from pathlib import Path

    from scaling.sweep import load_sweep, plan

    exp = Path(__file__).resolve().parents[1] / "experiments"
    cells = plan(load_sweep(exp / "hp_transfer.py"), estimate=False, backend="cpu").cells
    cells += plan(load_sweep(exp / "hp_transfer_completep.py"), estimate=False, backend="cpu").cells
    by = {}
    for c in cells:
        by.setdefault((c.model.parametrization, c.model.d_model), []).append(c.optim.peak_lr)
    assert sorted({d for _, d in by}) == [16, 48, 128] and len(cells) == 3 * 3 * 7
    for (param, d), lrs in by.items():
        lrs = sorted(lrs)
        assert len(lrs) == 7 and np.allclose(np.diff(np.log(lrs)), math.log(2) / 2, atol=1e-3)
        if param != "standard":  # every width on the base's LRs: what transfer means
            assert lrs == pytest.approx(sorted(by[(param, 16)]))
    assert by[("standard", 16)] == by[("mup", 16)]  # the base computes the standard model
    wide = [c.model for c in cells if c.model.parametrization == "completep" and c.model.d_model == 128][0]
    assert (wide.base_width, wide.base_depth) == (16, wide.n_layers)  # one depth: mup + independent WD


def test_fixed_head_size_transfer_plan_and_the_growing_head_warning():
    """hp_transfer_heads: the same cells with heads of 8 at every width, the base's head size recorded;
    hp_transfer's 2 heads at every width (head size 8 -> 64) is planned with a warning."""
    from pathlib import Path

    from scaling.sweep import load_sweep, plan

    exp = Path(__file__).resolve().parents[1] / "experiments"
    fixed = plan(load_sweep(exp / "hp_transfer_heads.py"), estimate=False, backend="cpu")
    grown = plan(load_sweep(exp / "hp_transfer.py"), estimate=False, backend="cpu")
    assert {c.model.kv_size for c in fixed.cells} == {8} and len(fixed.cells) == len(grown.cells) == 42
    n_heads = {c.model.d_model: c.model.n_heads for c in fixed.cells}
    assert n_heads == {16: 2, 48: 6, 128: 16}
    for a, b in zip(fixed.cells, grown.cells):  # same sizes, parameter counts and LRs; only the heads differ
        assert (a.model.d_model, a.optim.peak_lr, a.steps) == (b.model.d_model, b.optim.peak_lr, b.steps)
    wide = [c.model for c in fixed.cells if c.model.parametrization == "mup" and c.model.d_model == 128][0]
    assert wide.base_kv_size == 8 and wide.base_width == 16  # not the derived default 8 * 16 / 128
    assert not [w for w in fixed.warnings if "head size" in w]
    assert [w for w in grown.warnings if "head size 8 at the base but 24, 64" in w]


@pytest.mark.parametrize("grid, words", [
    (dict(lr_factors=(0.5, 1, 2), peak_lrs=(1e-3, 2e-3, 4e-3)), "exactly one of peak_lrs"),
    (dict(lr_factors=(1, 2)), "needs >= 3"),
    (dict(lr_factors=(0.5, 1, 2), parametrizations=("mup",)), "grid.base"),
    (dict(lr_factors=(0.5, 1, 2), base=2e4), "only mup/completep"),
    (dict(lr_factors=(0.5, -1, 2)), "not a positive factor"),
    (dict(lr_factors=(0.5, 1, 2), batch_sizes=(0,)), "batch_sizes"),
])
def test_bad_hpgrids(grid, words):
    from scaling.sweep import HPGrid, plan

    with pytest.raises(ConfigError, match=words):
        plan(_qs_sweep(HPGrid(sizes=(2e4,), tokens=(1e5,), **grid)), estimate=False, backend="cpu")


# ------------------------------------------------------------------------------ CLI
def test_fit_hp_cli_json(tmp_path, capsys):
    from scaling import cli

    synthetic_table().to_csv(tmp_path / "t.csv", index=False)
    rc = cli.main(["fit-hp", str(tmp_path / "t.csv"), "--bootstrap", "50", "--format", "json", "--at", "1e5,1e7",
                   "--save", str(tmp_path / "law.json")])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"law", "groups", "predictions"}
    assert set(out["predictions"][0]) == {"N", "D", "lr", "lr_ci"}
    assert out["law"]["ci"]["N"][0] < out["law"]["exponents"]["N"] < out["law"]["ci"]["N"][1]
    assert hp.HPLaw.load(tmp_path / "law.json").exponents == pytest.approx(tuple(out["law"]["exponents"].values()))


def test_fit_hp_cli_plots(tmp_path, capsys):
    """--plots writes both figures (PNG and SVG) and names them; nothing opens a pyplot window."""
    from scaling import cli

    synthetic_table().to_csv(tmp_path / "t.csv", index=False)
    assert cli.main(["fit-hp", str(tmp_path / "t.csv"), "--bootstrap", "20", "--plots", str(tmp_path / "figs")]) == 0
    names = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert names == ["loss_vs_lr.png", "loss_vs_lr.svg", "lr_law.png", "lr_law.svg"]
    assert all((tmp_path / "figs" / n).stat().st_size > 1000 for n in names)
    assert "figures:" in capsys.readouterr().out


def test_recipe_batch_rule_sets_each_cells_batch_and_keeps_its_tokens():
    from scaling.sweep import NxD, Recipe, Sweep, WSDFork, plan

    rule = lambda cfg, counts: 8 if counts.total > 5e4 else 2  # noqa: E731
    sweep = Sweep(name="b", recipe=Recipe(seq_len=32, batch_size=4, vocab_size=64, batch_rule=rule),
                  grid=NxD(sizes=(2e4, 8e4), tokens=(8192 * 4,)))
    cells = plan(sweep, estimate=False, backend="cpu").cells
    assert sorted(c.batch_size for c in cells) == [2, 8]
    assert all(c.tokens == 8192 * 4 and c.steps * c.batch_size * 32 == c.tokens for c in cells)
    with pytest.raises(ConfigError, match="batch_rule.*WSDFork"):
        plan(dataclasses.replace(sweep, grid=WSDFork(sizes=(2e4,), tokens=(8192 * 4,))), estimate=False, backend="cpu")
